"""The fast paths cannot break a run: a capture error, a replay error or a wrong replay gives one warning and the
eager result (dlcourse.fast_path), for the samplers' denoiser graph and for train(fast=True).

CUDA graphs need a GPU, so these tests run on a CPU through the fast paths' seam, ``dlcourse.fast_path.graphs``:
:class:`FakeGraphs` "captures" a function by keeping it and "replays" it by calling it again, eagerly, and fails on
purpose in the way a test asks. A healthy fake shows the checked graph is really used; a failing one that the run
ends with exactly the eager result (bit for bit: the eager path is the same code as fast=False) and one warning.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager, nullcontext

import pytest
import torch

from dlcourse import fast_path
from dlcourse.cuda_graph import clear_graph_cache, num_cached_graphs
from dlcourse.data import Shapes
from dlcourse.fast_path import CudaGraphs, FastPathWarning
from dlcourse.models import UNet, UNetConfig
from dlcourse.sampling import ddim_sample, ddpm_sample
from dlcourse.schedules import NoiseSchedule
from dlcourse.training import TrainConfig, train
from dlcourse.training.graphed import WARMUP_STEPS

SCHEDULE = NoiseSchedule.from_name("linear", 50, beta_start=1e-3, beta_end=0.2)
CARD = "a fake graph on the CPU"
# How each failure is named in the warning.
NAMED = {
    "sync": "the capture failed",
    "capture": "the capture failed",
    "replay": "its first replay failed",
    "wrong": "differs from the eager call",
    "twice": "differs from the eager call",
}


class FakeGraphs:
    """The seam's methods (see dlcourse.fast_path.CudaGraphs), on the CPU.

    failure: None (a healthy graph), "sync" (the host-sync check raises, as for a step with .item()), "capture"
    (capture raises), "replay" (replay raises), "wrong" (replay returns the output plus 0.5), "twice" (replay
    runs the function twice and returns the first output: a training step's weights take two steps), "later"
    (right on the first replay, wrong after it).
    """

    device_type = "cpu"

    def __init__(self, failure: str | None = None):
        self.failure = failure
        self.captures = 0
        self.replays = 0

    def card(self, device: torch.device) -> str:
        return CARD

    def side_stream(self, device: torch.device):
        return nullcontext()

    @contextmanager
    def no_host_sync(self):
        if self.failure == "sync":
            raise RuntimeError("called a synchronizing CUDA operation (a fake one)")
        yield

    def capture(self, fn, device, generators=()):
        if self.failure == "capture":
            raise RuntimeError("operation not permitted when stream is capturing (a fake one)")
        self.captures += 1

        def replay():
            self.replays += 1
            if self.failure == "replay":
                raise RuntimeError("CUDA error: an illegal memory access was encountered (a fake one)")
            output = fn()
            if self.failure == "twice":
                fn()
            wrong = self.failure == "wrong" or (self.failure == "later" and self.replays > 1)
            return output + 0.5 if wrong else output

        return replay


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def use(monkeypatch):
    """Put a FakeGraphs in the seam; no graph cached before or after the test."""
    clear_graph_cache()

    def install(failure: str | None) -> FakeGraphs:
        fake = FakeGraphs(failure)
        monkeypatch.setattr(fast_path, "graphs", fake)
        return fake

    yield install
    clear_graph_cache()


def fallbacks(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, FastPathWarning)]


def tiny_unet(seed: int = 0, **overrides) -> UNet:
    torch.manual_seed(seed)
    config = {"in_channels": 3, "resolution": 8, "base_channels": 8, "channel_mults": (1, 2),
              "attention_resolutions": (4,), "num_heads": 2, "groups": 4, "zero_init": False}  # fmt: skip
    return UNet(UNetConfig(**{**config, **overrides}))


def noise(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------ sampling


@pytest.mark.parametrize("failure", ["sync", "capture", "replay", "wrong"])
def test_sampling_falls_back_once_with_the_eager_result(use, failure):
    model = tiny_unet()
    eager = ddim_sample(model, SCHEDULE, noise(), num_steps=5, progress=False)
    fake = use(failure)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = ddim_sample(model, SCHEDULE, noise(), num_steps=5, fast=True, progress=False)
        again = ddim_sample(model, SCHEDULE, noise(), num_steps=5, fast=True, progress=False)  # cached: eager
    (message,) = fallbacks(caught)
    assert NAMED[failure] in message and CARD in message and "the samplers' CUDA graph" in message
    assert torch.equal(fast, eager) and torch.equal(again, eager)
    assert num_cached_graphs(model) == 1  # the eager decision is cached: no capture tried again
    assert fake.replays == (1 if failure in ("replay", "wrong") else 0)  # one replay, the check's


def test_a_healthy_sampler_graph_is_checked_once_then_replayed(use):
    model, schedule = tiny_unet(), NoiseSchedule.from_name("linear", 50, beta_start=1e-3, beta_end=0.2)
    eager = ddpm_sample(model, schedule, noise(), generator=torch.Generator().manual_seed(1), progress=False)
    fake = use(None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FastPathWarning)
        fast = ddpm_sample(model, schedule, noise(), generator=torch.Generator().manual_seed(1), fast=True,
                           progress=False)
        ddim_sample(model, schedule, noise(), num_steps=5, fast=True, progress=False)
    assert fake.captures == 1  # one graph for both samplers (same denoiser, same input shape)
    assert fake.replays == 50 + 5  # the first call's check, then every other call (the check is not repeated)
    torch.testing.assert_close(fast, eager, rtol=0, atol=0)  # the fake replays the eager call itself


def test_the_replays_after_the_check_are_what_the_sampler_uses(use):
    """A graph that goes wrong after its checked first replay changes the samples: the replays are used (and the
    check is once per graph, not per call: this is what it cannot catch)."""
    model = tiny_unet()
    eager = ddim_sample(model, SCHEDULE, noise(), num_steps=5, progress=False)
    use("later")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = ddim_sample(model, SCHEDULE, noise(), num_steps=5, fast=True, progress=False)
    assert not fallbacks(caught)
    assert not torch.allclose(fast, eager, atol=1e-3)


def test_a_denoiser_error_is_still_raised(use):
    """Falling back is not hiding the learner's bug: the eager call raises it, after the one warning."""
    use(None)
    with pytest.warns(FastPathWarning, match="the capture failed"), pytest.raises(TypeError, match="as a tensor"):
        ddim_sample(lambda x, t: (x,), SCHEDULE, noise(), num_steps=3, fast=True, progress=False)


def test_no_capture_after_a_failed_one():
    """After a failed capture torch's allocator is not trusted with another: CudaGraphs refuses, saying why."""
    graphs = CudaGraphs()
    graphs.failed = "RuntimeError: operation not permitted when stream is capturing"
    with pytest.raises(RuntimeError, match="not tried: a capture failed earlier .* Restart the kernel"):
        graphs.capture(lambda: torch.zeros(()), torch.device("cuda"))


def test_relative_difference():
    a, b = torch.tensor([1.0, 2.0, float("nan"), float("inf")]), torch.tensor([1.0, 2.0, float("nan"), float("inf")])
    assert fast_path.relative_difference([a], [b]) == 0.0  # NaN and inf in place: equal
    assert fast_path.relative_difference([torch.tensor([3.0, 4.0])], [torch.zeros(2)]) == float("inf")
    assert fast_path.relative_difference([torch.tensor([float("nan")])], [torch.ones(1)]) == float("inf")
    got, expected, start = torch.tensor([1.1, 2.0]), torch.tensor([1.0, 2.0]), torch.tensor([0.0, 2.0])
    assert fast_path.relative_difference([got], [expected], [start]) == pytest.approx(0.1)  # of the update
    assert fast_path.mismatch(4e-3, torch.float32) is None
    assert "by 0.006 (relative; the tolerance in float32 is 0.005)" in fast_path.mismatch(6e-3, torch.float32)


# ------------------------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def shapes8() -> torch.Tensor:
    return Shapes(resolution=8, seed=0, device="cpu").batch(0, 64).images


CONFIG = TrainConfig(steps=WARMUP_STEPS + 4, batch_size=4, warmup_steps=3, log_every=2)


def weights(result) -> dict[str, torch.Tensor]:
    return {**result.model.state_dict(), **{f"ema.{k}": v for k, v in result.ema.state_dict()["model"].items()}}


def assert_same_run(fast, eager, exact: bool) -> None:
    assert fast.ema.num_updates == eager.ema.num_updates == CONFIG.steps
    a, b = weights(fast), weights(eager)
    if exact:
        assert fast.loss_history == eager.loss_history
        assert all(torch.equal(a[k], b[k]) for k in b), [k for k in b if not torch.equal(a[k], b[k])]
    else:
        torch.testing.assert_close(fast.loss_history, eager.loss_history, rtol=1e-4, atol=0)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("failure", ["sync", "capture", "replay", "wrong", "twice"])
def test_training_falls_back_once_with_the_eager_result(use, shapes8, failure):
    """Dropout on, so the random states the check restores matter; the same weights, EMA and losses, bit for bit."""
    options = {"device": "cpu", "progress": False}
    eager = train(tiny_unet(dropout=0.1), shapes8, SCHEDULE, CONFIG, **options)
    fake = use(failure)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = train(tiny_unet(dropout=0.1), shapes8, SCHEDULE, CONFIG, fast=True, **options)
    (message,) = fallbacks(caught)
    assert NAMED[failure] in message and CARD in message and "the training step's CUDA graph" in message
    assert_same_run(fast, eager, exact=True)
    assert fake.replays == (1 if failure in ("replay", "wrong", "twice") else 0)


def test_a_healthy_training_graph_is_checked_then_replayed(use, shapes8):
    options = {"device": "cpu", "progress": False}
    eager = train(tiny_unet(dropout=0.1), shapes8, SCHEDULE, CONFIG, **options)
    fake = use(None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FastPathWarning)
        fast = train(tiny_unet(dropout=0.1), shapes8, SCHEDULE, CONFIG, fast=True, **options)
    assert fake.captures == 1
    assert fake.replays == CONFIG.steps - WARMUP_STEPS  # the check's replay of step 4, then steps 5, 6, 7
    # The replays read the learning rate from a float32 tensor, the eager steps from a Python float: close.
    assert_same_run(fast, eager, exact=False)


def test_a_failed_capture_is_described_by_its_first_error():
    """torch.cuda.graph ends a capture whose body raised, and ending it raises too: the warning names both."""
    error = RuntimeError("operation failed due to a previous error during capture")
    error.__context__ = RuntimeError("operation not permitted when stream is capturing\nCUDA kernel errors might ...")
    text = fast_path.describe(error)
    assert text == ("RuntimeError: operation failed due to a previous error during capture, after RuntimeError: "
                    "operation not permitted when stream is capturing")
