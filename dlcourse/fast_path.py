"""What the fast paths share: the capture mechanism, the check of their first replay, and the fallback warning.

The samplers' denoiser graph (:mod:`dlcourse.cuda_graph`) and the training step's graph
(:mod:`dlcourse.training.graphed`) are the only code of the course that runs only on a GPU, and the code a
learner's run is least able to debug. So neither is trusted: each checks itself the first time it runs, and
when anything goes wrong it warns once (a :class:`FastPathWarning` naming what failed and the card) and the run
goes on with the eager result, only without the speed-up. Three things can go wrong:

- **capture**: the capture raises (a ``.item()`` in the model's forward, say). Before capturing, the last
  warm-up call runs with torch's sync debug mode set to "error", so a call that reads a value back to the host
  (``.item()``, ``.cpu()``, ``print`` of a tensor, ``if tensor > 0``), the usual reason a capture fails, is
  caught by an eager call, before any capture starts. A capture that still fails is the last one tried in the
  process (:attr:`CudaGraphs.failed`): until recent releases (pytorch/pytorch#180395, #190348) a failed capture
  could leave torch's caching allocator believing a capture was still under way, and the next capture, or
  ``torch.cuda.empty_cache()``, could then fail an internal assertion;
- **replay**: the first replay raises;
- **mismatch**: the first replay's result differs from the eager call's on the same input, by more than
  :data:`TOLERANCE` for the autocast dtype.

Tolerances, relative (see :func:`relative_difference`): 5e-3 in fp32 (where cuDNN's TF32 convolutions, on by
default on Ampere and newer, round to 10 bits), 2e-2 in fp16, 5e-2 in bf16 (8 bits). Chosen, not measured on a
GPU: a few times the rounding differences of two kernel orders, and far below what a wrong graph gives (a stale
input, weight, learning rate or random stream moves the result by its own size, a difference of order 1). A
false alarm costs speed, never correctness: the eager result is what the run keeps.

``graphs`` is the mechanism both fast paths call, a :class:`CudaGraphs`. It is the seam of the tests: on a CPU,
tests/test_fast_fallback.py puts in its place an object with the same methods whose capture or replay fails on
purpose, and checks that the run ends with the eager result and exactly one warning.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor

__all__ = [
    "TOLERANCE",
    "CudaGraphs",
    "FastPathWarning",
    "capture_failed",
    "describe",
    "fall_back",
    "graphs",
    "mismatch",
    "relative_difference",
]

TOLERANCE = {torch.float32: 5e-3, torch.float16: 2e-2, torch.bfloat16: 5e-2}  # see the module docstring


class FastPathWarning(UserWarning):
    """A fast path (a CUDA graph) failed its check; the run continues on the eager path with the eager result."""


class CudaGraphs:
    """CUDA graphs as the PyTorch docs use them ("CUDA Graphs", whole-network capture); see the module docstring.

    device_type: the device type it captures on. ``card(device)``: the GPU's name, for the warning.
    ``side_stream(device)``: a block run on a side stream (warm-up, eager steps), ordered with the current stream.
    ``no_host_sync()``: a block in which a host sync raises, as it would inside a capture.
    ``capture(fn, device, generators)``: records fn() and returns ``replay``, which runs it again and returns
    fn's output tensor (the same tensor each time, overwritten by each replay).
    """

    device_type = "cuda"

    def __init__(self) -> None:
        self.failed: str | None = None  # a failed capture's error: no capture is tried after one
        self.streams: dict[int, torch.cuda.Stream] = {}  # one side stream per GPU (each stream gets cuBLAS workspace)

    def card(self, device: torch.device) -> str:
        return torch.cuda.get_device_name(device)

    @contextmanager
    def side_stream(self, device: torch.device) -> Iterator[None]:
        with torch.cuda.device(device):
            index = torch.cuda.current_device()
            if index not in self.streams:
                self.streams[index] = torch.cuda.Stream()
            current, side = torch.cuda.current_stream(), self.streams[index]
            side.wait_stream(current)  # the block starts after the work queued so far
            try:
                with torch.cuda.stream(side):
                    yield
            finally:
                current.wait_stream(side)  # and what follows waits for the block, even one that raised

    @contextmanager
    def no_host_sync(self) -> Iterator[None]:
        previous = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode(previous)

    def capture(
        self, fn: Callable[[], Tensor], device: torch.device, generators: Sequence[torch.Generator] = ()
    ) -> Callable[[], Tensor]:
        if self.failed is not None:
            raise RuntimeError(
                f"not tried: a capture failed earlier in this Python process ({self.failed}), and after that torch's "
                "memory allocator is not trusted with another. Restart the kernel to use the fast path again."
            )
        graph = torch.cuda.CUDAGraph()
        for generator in generators:  # each replay draws the next numbers of these generators' streams
            graph.register_generator_state(generator)
        with torch.cuda.device(device):
            stream = torch.cuda.current_stream()
            try:
                with torch.cuda.graph(graph):  # its own memory pool; nothing runs until a replay
                    output = fn()
            except Exception as error:
                torch.cuda.set_stream(stream)  # a failed capture can leave torch's capture stream current
                self.failed = describe(error)
                raise

        def replay() -> Tensor:
            graph.replay()
            return output

        return replay


graphs = CudaGraphs()  # the mechanism the fast paths call (the tests' seam)


def describe(error: BaseException) -> str:
    """An exception in one line: its type and the first line of its message, and the same of the exception it
    was raised while handling (a failed capture's first error: ``torch.cuda.graph`` then fails to end it)."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0] if lines else ''}"
    return text if error.__context__ is None else f"{text}, after {describe(error.__context__)}"


def capture_failed(error: BaseException) -> str:
    """The failure text of a capture that raised ``error``, with the usual cause."""
    return (
        f"the capture failed ({describe(error)}). A call that can be captured reads nothing back to the host: no "
        ".item(), .cpu(), .tolist(), print of a tensor or Python branch on a tensor value"
    )


def relative_difference(got: Sequence[Tensor], expected: Sequence[Tensor], start: Sequence[Tensor] = ()) -> float:
    """||got - expected|| / ||expected - start||, each norm over all the tensors together (start: zeros if empty).

    0 when got equals expected (NaN and inf matching NaN and inf in place); inf when they differ and expected
    equals start, or got has a NaN where expected has none. For a training step, start is the state before it:
    the difference relative to the update.
    """
    starts = start or [torch.zeros_like(e) for e in expected]
    apart = moved = torch.zeros((), dtype=torch.float64, device=expected[0].device)
    for g, e, s in zip(got, expected, starts, strict=True):
        g, e, s = g.double(), e.double(), s.double()
        same = (g == e) | (g.isnan() & e.isnan())
        apart = apart + torch.where(same, 0.0, g - e).square().sum()
        moved = moved + torch.where(e == s, 0.0, e - s).square().sum()
    apart, moved = apart.sqrt().item(), moved.sqrt().item()  # the one host sync of the check
    if apart == 0.0:
        return 0.0
    return apart / moved if moved > 0.0 and not math.isnan(apart) else float("inf")  # never NaN: max() of two


def mismatch(difference: float, dtype: torch.dtype) -> str | None:
    """None if a first replay ``difference`` (relative) from the eager result passes; else what went wrong."""
    tolerance = TOLERANCE[dtype]
    if difference <= tolerance:
        return None
    return (
        f"its first replay differs from the eager call on the same input by {difference:.3g} (relative; the "
        f"tolerance in {str(dtype).removeprefix('torch.')} is {tolerance:g})"
    )


def fall_back(what: str, failure: str, device: torch.device) -> None:
    """Warn, once per fast path: ``what`` (e.g. "the training step's CUDA graph") failed on ``device``."""
    warnings.warn(
        f"fast=True: {what} fell back to the eager path on {graphs.card(device)}: {failure}. The run goes on "
        "eagerly, with the eager result, only without the speed-up; fast=False skips the attempt.",
        FastPathWarning,
        stacklevel=2,
    )
