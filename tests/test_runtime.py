"""dlcourse.runtime: precision per GPU generation (faked capability), device choice, seeding, data folder."""

import random

import numpy as np
import pytest
import torch

from dlcourse import runtime


@pytest.mark.parametrize(
    ("capability", "dtype", "scaler"),
    [
        ((7, 5), torch.float16, True),  # T4: fp16 tensor cores, no bf16 hardware
        ((7, 0), torch.float16, True),  # V100
        ((8, 0), torch.bfloat16, False),  # A100
        ((8, 9), torch.bfloat16, False),  # L4
        ((9, 0), torch.bfloat16, False),  # H100
        ((6, 1), torch.float32, False),  # Pascal: no tensor cores
    ],
)
def test_precision_follows_compute_capability(monkeypatch, capability, dtype, scaler):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    # A T4 may claim emulated bf16 support; the choice must not depend on it.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    precision = runtime.select_precision("cuda")
    assert precision.dtype == dtype
    assert precision.use_grad_scaler is scaler
    assert f"{capability[0]}.{capability[1]}" in precision.reason


def test_cpu_precision_is_fp32_and_autocast_is_off():
    precision = runtime.select_precision("cpu")
    assert precision.dtype == torch.float32 and not precision.use_grad_scaler
    with precision.autocast():
        y = torch.nn.Linear(4, 4)(torch.randn(2, 4))
    assert y.dtype == torch.float32
    assert not precision.grad_scaler().is_enabled()


def test_get_device_defaults_and_rejects_missing_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.get_device() == torch.device("cpu")
    assert runtime.get_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        runtime.get_device("cuda")


def test_seed_everything_makes_all_generators_repeat():
    def draw(seed):
        g = runtime.seed_everything(seed)
        return random.random(), np.random.rand(), torch.rand(3), torch.rand(3, generator=g)

    a, b, c = draw(5), draw(5), draw(6)
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2]) and torch.equal(a[3], b[3])
    assert a[0] != c[0] and not torch.equal(a[2], c[2])
    with pytest.raises(ValueError, match="non-negative int"):
        runtime.seed_everything(-1)


def test_data_dir_honours_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("DLCOURSE_DATA", str(tmp_path / "cache"))
    assert runtime.data_dir() == tmp_path / "cache"
    assert runtime.checkpoint_dir() == tmp_path / "cache" / "checkpoints"
    assert runtime.checkpoint_dir().is_dir()


def test_data_dir_is_the_checkout_data_folder_by_default(monkeypatch):
    monkeypatch.delenv("DLCOURSE_DATA", raising=False)
    assert runtime.data_dir() == (runtime.Path(runtime.__file__).resolve().parent.parent / "data")
