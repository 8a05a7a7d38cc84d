"""The fast path of the samplers: the denoiser call captured once in a CUDA graph, then replayed every step.

Taught in notebooks/04_ddim_sampling.ipynb (the speed table).

Why: at course sizes a U-Net forward is hundreds of small kernels and the GPU idles while Python launches them
(the loop is launch-bound). A CUDA graph records those kernels once; each replay launches all of them with one
call. The recipe is the one in the PyTorch docs ("CUDA Graphs", whole-network capture):

1. Static buffers. A graph reads its inputs from, and writes its output to, fixed memory. Each call copies x_t
   and t into the static inputs, replays, and returns a copy of the static output. model_kwargs tensors (e.g. a
   text context) get static buffers too, refilled once per sampling call.
2. Warm-up: a few eager calls on a side stream before capture, so cuDNN/cuBLAS choose their kernels and allocate
   their workspaces outside the graph.
3. Capture under torch.no_grad() and outside inference mode, so the static buffers are ordinary tensors that can
   be refilled from inside torch.inference_mode (where the samplers run) or outside it. Autocast runs with
   cache_enabled=False: its weight-cast cache would hand the graph bf16 copies of the weights that are freed when
   the autocast context exits. Each graph gets its own memory pool (the default).
4. Cache: capture costs a few eager forwards plus one synchronisation, so the result is cached per model and
   per (input shape, dtype, device, model_kwargs shapes and values, autocast dtype, weight addresses), at most
   ``MAX_GRAPHS_PER_MODEL`` per model (least recently used dropped). A steps x sampler table, or a widget moving
   the step count, captures once.
5. A model that cannot be captured (its forward calls .item() or .cpu(), say) raises a RuntimeError that says
   so; ``fast=False`` runs it eagerly. We do not fall back silently: after a failed capture the CUDA caching
   allocator's state is not something to rely on.

What a replay sees: the current values in the captured memory. In-place weight updates (an optimizer step, EMA,
``load_state_dict``) are therefore picked up; replacing parameter tensors (``model.to(...)``, ``model.half()``)
changes the weight addresses in the cache key, so the next call captures again. What it does not see: new
Python values, so everything that changes per call is a tensor in a static buffer (t is one).
Randomness: the denoiser in eval mode has no random ops; the samplers draw the per-step noise outside the graph,
from their torch.Generator, so a replayed loop uses exactly the eager loop's random numbers.

The cache is a module-level ``WeakKeyDictionary`` keyed by the model: it holds no reference to the model, and a
model's graphs (and their GPU memory) go when the model does, or with :func:`clear_graph_cache`.
"""

from __future__ import annotations

import itertools
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from dlcourse.runtime import Precision

__all__ = ["MAX_GRAPHS_PER_MODEL", "GraphedDenoiser", "clear_graph_cache", "graphed_denoiser", "num_cached_graphs"]

MAX_GRAPHS_PER_MODEL = 4
WARMUP_CALLS = 3  # eager calls on a side stream before capture, as in the PyTorch docs

# model -> {cache key -> GraphedDenoiser}, least recently used first; see the module docstring.
_graphs: weakref.WeakKeyDictionary[nn.Module, OrderedDict[tuple, GraphedDenoiser]] = weakref.WeakKeyDictionary()


def _autocast(device_type: str, dtype: torch.dtype) -> AbstractContextManager:
    """Precision.autocast() without the weight-cast cache, which must stay off during capture (see above)."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype, cache_enabled=False)


class GraphedDenoiser:
    """``model(x_t, t, **model_kwargs)`` captured in a CUDA graph; called like the eager denoiser.

    ``denoiser(x_t, t)``: x_t (B, C, H, W) with the shape, dtype and device it was captured for, t an int;
    returns the model output (B, C', H, W) in float32 (a fresh tensor, not the static buffer). Build it through
    :func:`graphed_denoiser`, which caches it. The model must be in eval mode while capturing.

    Taught in notebooks/04_ddim_sampling.ipynb.
    """

    def __init__(
        self, model: nn.Module, x: Tensor, model_kwargs: Mapping[str, Any], autocast_dtype: torch.dtype
    ):
        if not x.is_cuda:
            raise ValueError(f"CUDA graphs need a CUDA tensor; x is on {x.device}. Use the eager path on a CPU.")
        with torch.cuda.device(x.device), torch.inference_mode(False), torch.no_grad():
            self.static_x = x.clone()  # ordinary tensors (created outside inference mode)
            self.static_t = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
            self.static_kwargs = {k: v.clone() if isinstance(v, Tensor) else v for k, v in model_kwargs.items()}

            def forward() -> Tensor:
                with _autocast(x.device.type, autocast_dtype):
                    return model(self.static_x, self.static_t, **self.static_kwargs).float()

            side_stream = torch.cuda.Stream()
            side_stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side_stream):
                for _ in range(WARMUP_CALLS):
                    forward()
            torch.cuda.current_stream().wait_stream(side_stream)

            self.graph = torch.cuda.CUDAGraph()
            stream = torch.cuda.current_stream()
            try:
                with torch.cuda.graph(self.graph):
                    self.static_out = forward()
            except RuntimeError as error:
                torch.cuda.set_stream(stream)  # a failed capture can leave torch's capture stream current
                raise RuntimeError(
                    f"Could not capture {type(model).__name__} in a CUDA graph: {error}\nA capturable forward pass "
                    "has no .item(), .cpu(), .tolist(), print of tensor values or Python branch on tensor values. "
                    "Remove those from the model's forward, or pass fast=False to run it eagerly."
                ) from error

    def set_model_kwargs(self, model_kwargs: Mapping[str, Any]) -> None:
        """Copy this call's model_kwargs tensors into the static buffers (same shapes: the cache key ensures it)."""
        for name, value in model_kwargs.items():
            if isinstance(value, Tensor):
                self.static_kwargs[name].copy_(value)

    def __call__(self, x_t: Tensor, t: int) -> Tensor:
        self.static_x.copy_(x_t)
        self.static_t.fill_(t)  # a kernel with t as its argument: no host->device copy
        self.graph.replay()
        return self.static_out.clone()  # the next replay overwrites static_out


def _describe(name: str, value: Any) -> tuple:
    """The part of the cache key for one model kwarg: a tensor's layout, or a (hashable) Python value."""
    if isinstance(value, Tensor):
        return (name, "tensor", tuple(value.shape), value.dtype, value.device)
    try:
        hash(value)
    except TypeError:
        raise TypeError(
            f"model_kwargs[{name!r}] = {value!r} is neither a tensor nor hashable, so the CUDA-graph cache cannot "
            "tell whether a captured graph used the same value. Pass tensors (or None, numbers, strings), or "
            "use fast=False."
        ) from None
    return (name, "value", value)


def _cache_key(model: nn.Module, x: Tensor, model_kwargs: Mapping[str, Any], autocast_dtype: torch.dtype) -> tuple:
    weights = tuple((w.data_ptr(), w.dtype) for w in itertools.chain(model.parameters(), model.buffers()))
    kwargs = tuple(sorted(_describe(name, value) for name, value in model_kwargs.items()))
    return (tuple(x.shape), x.dtype, x.device, autocast_dtype, kwargs, weights)


def graphed_denoiser(
    model: nn.Module,
    x: Tensor,
    model_kwargs: Mapping[str, Any] | None = None,
    precision: Precision | None = None,
) -> GraphedDenoiser:
    """The cached :class:`GraphedDenoiser` for ``model`` at x's shape, captured on first use.

    x: (B, C, H, W) CUDA tensor, an example input; model_kwargs: extra model arguments (tensors are copied into
    the graph's static buffers now); precision: its autocast dtype is used inside the graph (None: fp32).
    The model must be in eval mode. Raises a RuntimeError that says what to change when the model cannot be
    captured (its forward calls .item() or .cpu(), say); ``fast=False`` then runs it eagerly.

    Taught in notebooks/04_ddim_sampling.ipynb.
    """
    model_kwargs = dict(model_kwargs or {})
    autocast_dtype = precision.dtype if precision is not None else torch.float32
    key = _cache_key(model, x, model_kwargs, autocast_dtype)
    graphs = _graphs.setdefault(model, OrderedDict())
    if key in graphs:
        graphs.move_to_end(key)
        graphs[key].set_model_kwargs(model_kwargs)
    else:
        graphs[key] = GraphedDenoiser(model, x, model_kwargs, autocast_dtype)
        while len(graphs) > MAX_GRAPHS_PER_MODEL:
            graphs.popitem(last=False)  # least recently used; its memory pool goes with it
    return graphs[key]


def num_cached_graphs(model: nn.Module) -> int:
    """How many captured graphs are cached for ``model``."""
    return len(_graphs.get(model, ()))


def clear_graph_cache(model: nn.Module | None = None) -> None:
    """Drop the cached graphs of ``model`` (of every model if None), freeing their GPU memory pools."""
    if model is None:
        _graphs.clear()
    else:
        _graphs.pop(model, None)
