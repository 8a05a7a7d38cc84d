"""The fast path of the samplers: the denoiser call captured once in a CUDA graph, then replayed every step.

Named in notebooks/03_ddpm_training.ipynb ("Samples and a denoising strip"); notebooks 03 and 04 sample with
``fast=True`` and notebook 04 times it ("Steps x sampler, measured"). The mechanism is explained here, not there.

Why: at course sizes a U-Net forward is hundreds of small kernels and the GPU idles while Python launches them
(the loop is launch-bound). A CUDA graph records those kernels once; each replay launches all of them with one
call. The recipe is the one in the PyTorch docs ("CUDA Graphs", whole-network capture):

1. Static buffers. A graph reads its inputs from, and writes its output to, fixed memory. Each call copies x_t
   and t into the static inputs, replays, and returns a copy of the static output.
2. Warm-up: a few eager calls on a side stream before capture, so cuDNN/cuBLAS choose their kernels and allocate
   their workspaces outside the graph.
3. Capture under torch.no_grad() and outside inference mode, so the static buffers are ordinary tensors that can
   be refilled from inside torch.inference_mode (where the samplers run) or outside it. Autocast runs with
   cache_enabled=False: its weight-cast cache would hand the graph bf16 copies of the weights that are freed when
   the autocast context exits. Each graph gets its own memory pool (the default).
4. Cache: capture costs a few eager forwards plus one synchronisation, so the result is cached per denoiser
   and per (input shape, dtype, device, autocast dtype, timestep dtype, what the denoiser reads: see below), at most
   ``MAX_GRAPHS_PER_DENOISER`` per denoiser (least recently used dropped). A steps x sampler table, or a widget
   moving the step count, captures once.
5. Checked, and falling back loudly (:mod:`dlcourse.fast_path`): the last warm-up call runs with host syncs
   turned into errors; the first call of a graph runs the eager call too and compares the replay's output with
   it. On a capture error (a denoiser that calls .item() or .cpu(), say), a replay error or a mismatch, one
   :class:`~dlcourse.fast_path.FastPathWarning` names what failed and the card, and the graph's calls run
   eagerly from then on (the cache remembers that): the sampler goes on, with the eager result. The first call
   returns the eager result in any case; replays serve the calls after it.

The denoiser is a model or any function ``denoise(x_t, t)`` (see :mod:`dlcourse.sampling.denoiser`). A graph
bakes in everything the call reads other than x_t and t: the memory of every tensor (weights, a text context)
and every Python value (a guidance scale). So the cache key holds, besides the input's layout:

- for a module: the addresses of its parameters and buffers (a Python attribute its forward reads, such as a
  guidance scale, is not seen: keep such a value in a buffer, or wrap the module in a function);
- for a function: the addresses of the tensors and of the weights of the modules it reaches, and the Python
  numbers and strings it reads: in its closure and default arguments, in the globals its code names, in a bound
  method's object, a functools.partial's arguments or a callable object's attributes, through the functions it
  calls, and as attributes of the other objects it names (``ema.model``, ``cfg.scale``). Longer attribute
  chains (``run.cfg.scale``) are not seen: bind such a value to a name of its own first, or use fast=False.

A replay therefore sees in-place changes (an optimizer step, EMA, ``load_state_dict``, ``context.copy_(new)``),
and a new tensor (``model.half()``, ``c = other_context``) or a new number (``scale = 5.0``) captures again.
The cache holds denoisers weakly and is keyed by the object: build a guidance wrapper or ``lambda`` once and
reuse it; a fresh lambda per sampling call means a fresh capture per call (correct, but slow).
Randomness: the samplers draw the per-step noise outside the graph, from their torch.Generator, so a replayed
loop uses exactly the eager loop's random numbers; the denoiser itself must not draw any (eval mode).

The cache is a module-level ``WeakKeyDictionary``: it holds no reference to a denoiser, and its graphs (and their
GPU memory) go when the denoiser does, or with :func:`clear_graph_cache`.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import types
import weakref
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import Tensor, nn

from dlcourse import fast_path
from dlcourse.runtime import Precision

__all__ = [
    "MAX_GRAPHS_PER_DENOISER",
    "GraphedDenoiser",
    "clear_graph_cache",
    "graphed_denoiser",
    "num_cached_graphs",
]

MAX_GRAPHS_PER_DENOISER = 4
WARMUP_CALLS = 3  # eager calls on a side stream before capture, as in the PyTorch docs
MAX_REACH = 4  # how many calls deep the cache key follows a function's closures and globals
WHAT = "the samplers' CUDA graph of the denoiser"  # what the fallback warning names

Denoiser = Callable[[Tensor, Tensor], Tensor]

# denoiser -> {cache key -> GraphedDenoiser}, least recently used first; see the module docstring.
_graphs: weakref.WeakKeyDictionary[Denoiser, OrderedDict[tuple, GraphedDenoiser]] = weakref.WeakKeyDictionary()


def _autocast(device_type: str, dtype: torch.dtype) -> AbstractContextManager:
    """Precision.autocast() without the weight-cast cache, which must stay off during capture (see above)."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype, cache_enabled=False)


class GraphedDenoiser:
    """``denoiser(x_t, t)`` captured in a CUDA graph, checked on its first call; see the module docstring.

    ``graphed(x_t, t, eager)``: x_t (B, C, H, W) with the shape, dtype and device it was captured for, t an int
    (a float for a graph captured with timestep_dtype=torch.float32: the Euler and Heun solvers' fractional t),
    eager the eager per-step call (``make_denoiser(..., fast=False)``'s) that the first call checks the replay
    against and that runs instead after a fallback; returns the denoiser's output (B, C', H, W) in float32 (a
    fresh tensor, not the static buffer). Build it through :func:`graphed_denoiser`, which caches it. A module
    must be in eval mode while capturing. It keeps no reference to the denoiser (the cache holds denoisers
    weakly). ``replay`` is None once it has fallen back to the eager call.
    """

    def __init__(
        self, denoiser: Denoiser, x: Tensor, autocast_dtype: torch.dtype, timestep_dtype: torch.dtype = torch.long
    ):
        if x.device.type != fast_path.graphs.device_type:
            raise ValueError(f"CUDA graphs need a CUDA tensor; x is on {x.device}. Use the eager path on a CPU.")
        self.device = x.device
        self.autocast_dtype = autocast_dtype
        self.checked = False  # the first call compares the replay with the eager call
        self.replay: Callable[[], Tensor] | None = None
        with torch.inference_mode(False), torch.no_grad():
            self.static_x = x.clone()  # ordinary tensors (created outside inference mode)
            self.static_t = torch.zeros(x.shape[0], dtype=timestep_dtype, device=x.device)

            def forward() -> Tensor:
                with _autocast(x.device.type, autocast_dtype):
                    output = denoiser(self.static_x, self.static_t)
                if not isinstance(output, Tensor):
                    raise TypeError(f"The denoiser must return a tensor (B, C, H, W); got {type(output).__name__}.")
                return output.float()

            try:
                with fast_path.graphs.side_stream(x.device):
                    for _ in range(WARMUP_CALLS - 1):
                        forward()
                    with fast_path.graphs.no_host_sync():  # a host sync fails here, before any capture
                        forward()
                self.replay = fast_path.graphs.capture(forward, x.device)
            except Exception as error:
                fast_path.fall_back(WHAT, fast_path.capture_failed(error), self.device)

    def __call__(self, x_t: Tensor, t: int | float, eager: Callable[[Tensor, int | float], Tensor]) -> Tensor:
        if self.replay is None:
            return eager(x_t, t)
        if self.checked:
            return self._replay(x_t, t)
        expected = eager(x_t, t)  # the first call: the eager result, and the replay's on the same input
        self.checked = True
        try:
            difference = fast_path.relative_difference([self._replay(x_t, t)], [expected])
            failure = fast_path.mismatch(difference, self.autocast_dtype)
        except Exception as error:
            failure = f"its first replay failed ({fast_path.describe(error)})"
        if failure is not None:
            self.replay = None  # the graph and its memory go; this input's calls run eagerly from now on
            fast_path.fall_back(WHAT, failure, self.device)
        return expected

    def _replay(self, x_t: Tensor, t: int | float) -> Tensor:
        self.static_x.copy_(x_t)
        self.static_t.fill_(t)  # a kernel with t as its argument: no host->device copy
        return self.replay().clone()  # the next replay overwrites the static output


def _global_names(code: types.CodeType) -> list[str]:
    """The global (and attribute) names a code object and the code nested in it (lambdas, comprehensions) use."""
    nested = (const for const in code.co_consts if isinstance(const, types.CodeType))
    return [*code.co_names, *itertools.chain.from_iterable(_global_names(c) for c in nested)]


def _read_by(fn: Callable) -> list:
    """The objects a callable reads besides its arguments; see the module docstring."""
    if isinstance(fn, functools.partial):
        return [fn.func, *fn.args, *fn.keywords.values()]
    if inspect.ismethod(fn):
        return [fn.__self__, fn.__func__]
    if inspect.isfunction(fn):
        cells = []
        for cell in fn.__closure__ or ():
            try:
                cells.append(cell.cell_contents)
            except ValueError:  # a closure variable not assigned yet
                pass
        defaults = [*(fn.__defaults__ or ()), *(fn.__kwdefaults__ or {}).values()]
        names = _global_names(fn.__code__)
        return cells + defaults + [fn.__globals__[name] for name in names if name in fn.__globals__]
    return list(vars(fn).values()) if hasattr(fn, "__dict__") else []


def _state(denoiser: Denoiser) -> tuple:
    """The part of the cache key for what a graph of ``denoiser`` bakes in: tensor addresses and Python values."""
    key: list = []
    seen: set[int] = set()

    def visit(obj: object, depth: int) -> None:
        if isinstance(obj, bool | int | float | complex | str | types.NoneType):
            key.append(obj)
            return
        if id(obj) in seen or depth > MAX_REACH:
            return
        seen.add(id(obj))
        if isinstance(obj, nn.Module):
            key.extend((w.data_ptr(), w.dtype) for w in itertools.chain(obj.parameters(), obj.buffers()))
        elif isinstance(obj, Tensor):
            key.append((obj.data_ptr(), tuple(obj.shape), obj.dtype, obj.device))
        elif isinstance(obj, list | tuple | dict):
            for value in obj.values() if isinstance(obj, dict) else obj:
                visit(value, depth + 1)
        elif callable(obj) and not isinstance(obj, type):
            for value in _read_by(obj):
                visit(value, depth + 1)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type | types.ModuleType):  # ema.model, cfg.scale
            for value in vars(obj).values():
                if isinstance(value, nn.Module | Tensor | bool | int | float | complex | str):
                    visit(value, depth + 1)

    visit(denoiser, 0)
    return tuple(key)


def _cache_key(
    denoiser: Denoiser, x: Tensor, autocast_dtype: torch.dtype, timestep_dtype: torch.dtype = torch.long
) -> tuple:
    return (tuple(x.shape), x.dtype, x.device, autocast_dtype, timestep_dtype, _state(denoiser))


def graphed_denoiser(
    denoiser: Denoiser, x: Tensor, precision: Precision | None = None, timestep_dtype: torch.dtype = torch.long
) -> GraphedDenoiser:
    """The cached :class:`GraphedDenoiser` for ``denoiser`` at x's shape, captured on first use.

    denoiser: a model or a function called as ``denoiser(x_t, t)``, t a (B,) tensor of timestep_dtype (torch.long,
    or torch.float32 for fractional timesteps); x: (B, C, H, W) CUDA tensor, an example input; precision: its
    autocast dtype is used inside the graph (None: fp32). A module must be in eval mode. A denoiser that cannot be
    captured (it calls .item() or .cpu(), say) gives a :class:`~dlcourse.fast_path.FastPathWarning` and a graphed
    denoiser that runs the eager call.
    """
    autocast_dtype = precision.dtype if precision is not None else torch.float32
    key = _cache_key(denoiser, x, autocast_dtype, timestep_dtype)
    try:
        graphs = _graphs.setdefault(denoiser, OrderedDict())
    except TypeError:
        raise TypeError(
            f"fast=True caches CUDA graphs per denoiser through a weak reference, and a {type(denoiser).__name__} "
            "cannot be weakly referenced. Wrap it once in a function, denoise = lambda x, t: obj(x, t), and pass "
            "that; or use fast=False."
        ) from None
    if key in graphs:
        graphs.move_to_end(key)
    else:
        graphs[key] = GraphedDenoiser(denoiser, x, autocast_dtype, timestep_dtype)
        while len(graphs) > MAX_GRAPHS_PER_DENOISER:
            graphs.popitem(last=False)  # least recently used; its memory pool goes with it
    return graphs[key]


def num_cached_graphs(denoiser: Denoiser) -> int:
    """How many captured graphs are cached for ``denoiser``."""
    return len(_graphs.get(denoiser, ()))


def clear_graph_cache(denoiser: Denoiser | None = None) -> None:
    """Drop the cached graphs of ``denoiser`` (of every denoiser if None), freeing their GPU memory pools."""
    if denoiser is None:
        _graphs.clear()
    else:
        _graphs.pop(denoiser, None)
