"""LoRA (dlcourse.finetune.lora): starts as the identity update, trains only A and B, merges and unmerges exactly,
and equals peft's LoRA for the same weights, rank and alpha."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlcourse.finetune.lora import (
    LoRAConv2d,
    LoRALinear,
    inject_lora,
    lora_layers,
    lora_parameters,
    merge_lora,
    set_lora_scale,
    unmerge_lora,
)
from dlcourse.models import UNet, UNetConfig
from dlcourse.schedules import NoiseSchedule
from dlcourse.training import TrainConfig, train


def _unet(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(UNetConfig(resolution=16, base_channels=16, channel_mults=(1, 2), attention_resolutions=(8,),
                           num_heads=2, zero_init=False)).eval()  # fmt: skip


def _randomise_updates(model: nn.Module) -> None:
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_up.weight.normal_(std=0.1)  # B != 0, so the update shows


def test_at_init_the_wrapped_model_predicts_exactly_what_the_base_does():
    base, wrapped = _unet(), _unet()
    names = inject_lora(wrapped, rank=2)
    assert names and all(".attn." in n for n in names)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([3, 70])
    with torch.no_grad():
        assert torch.equal(wrapped(x, t), base(x, t))


def test_only_lora_parameters_train_and_change():
    model = _unet()
    inject_lora(model, rank=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = lora_parameters(model)
    assert {id(p) for p in trainable} == {id(p) for p in model.parameters() if p.requires_grad}
    data = torch.rand(16, 3, 16, 16) * 2 - 1
    result = train(model, data, NoiseSchedule.from_name("cosine", 100),
                   TrainConfig(steps=3, batch_size=4, lr=1e-2, warmup_steps=1), trainable=trainable,
                   progress=False)  # fmt: skip
    after = result.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".lora_" in k for k in changed), sorted(changed)[:5]
    assert any(".lora_up." in k for k in changed)  # B moved away from zero


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_merged_equals_unmerged_and_unmerge_restores_the_weights_bitwise(kind):
    torch.manual_seed(0)
    layer = nn.Linear(12, 8) if kind == "linear" else nn.Conv2d(6, 8, 3, stride=2, padding=1)
    original = layer.weight.detach().clone()
    lora = (LoRALinear if kind == "linear" else LoRAConv2d)(layer, rank=3, alpha=6)
    nn.init.normal_(lora.lora_up.weight, std=0.1)
    x = torch.randn(4, 12) if kind == "linear" else torch.randn(2, 6, 9, 9)
    with torch.no_grad():
        unmerged = lora(x)
        lora.merge()
        assert lora.merged and not torch.equal(layer.weight, original)
        torch.testing.assert_close(lora(x), unmerged, rtol=1e-5, atol=1e-5)
        lora.unmerge()
    assert torch.equal(layer.weight, original) and not lora.merged
    assert not torch.allclose(unmerged, layer(x))  # the update is not nothing


def test_the_scale_turns_the_update_off_and_is_refused_while_merged():
    base, model = _unet(), _unet()
    inject_lora(model, rank=2)
    _randomise_updates(model)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([3, 70])
    with torch.no_grad():
        assert not torch.allclose(model(x, t), base(x, t))
        set_lora_scale(model, 0.0)
        assert torch.equal(model(x, t), base(x, t))
        set_lora_scale(model, 1.0)
        merge_lora(model)
        with pytest.raises(ValueError, match="unmerge_lora"):
            set_lora_scale(model, 0.5)
        unmerge_lora(model)


def test_bad_ranks_and_patterns_are_refused_clearly():
    with pytest.raises(ValueError, match="from 1 to 4"):
        LoRALinear(nn.Linear(4, 16), rank=5)
    with pytest.raises(ValueError, match="from 1 to 6"):
        LoRAConv2d(nn.Conv2d(6, 8, 3), rank=0)
    with pytest.raises(ValueError, match="match no Linear or Conv2d layer"):
        inject_lora(_unet(), targets=("*.nothing",))
    model = _unet()
    inject_lora(model)
    with pytest.raises(ValueError, match="already has LoRA"):
        inject_lora(model)


def test_our_lora_linear_equals_peft():
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(10, 7))
    ours = LoRALinear(nn.Linear(10, 7), rank=3, alpha=5)
    ours.base.load_state_dict(base[0].state_dict())
    nn.init.normal_(ours.lora_up.weight)
    theirs = peft.get_peft_model(base, peft.LoraConfig(r=3, lora_alpha=5, target_modules=["0"], lora_dropout=0.0))
    layer = theirs.base_model.model[0]
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(ours.lora_down.weight)
        layer.lora_B["default"].weight.copy_(ours.lora_up.weight)
        x = torch.randn(5, 10)
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-6, atol=1e-6)


def test_a_saved_adapter_reloads_into_a_fresh_model_and_reproduces_its_outputs(tmp_path):
    from dlcourse.checkpoints import CheckpointError
    from dlcourse.finetune import load_adapter, save_adapter

    model = _unet()
    inject_lora(model, rank=2, alpha=4)
    _randomise_updates(model)
    path = save_adapter(model, tmp_path / "adapter.pt")
    assert path.stat().st_size < 0.2 * sum(p.numel() * 4 for p in _unet().parameters())  # the adapter alone: small
    fresh = _unet()
    names = load_adapter(fresh, path)
    assert names == list(lora_layers(model))
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([3, 70])
    with torch.no_grad():
        assert torch.equal(fresh(x, t), model(x, t))
    merge_lora(model)
    with pytest.raises(ValueError, match="unmerge_lora"):
        save_adapter(model, tmp_path / "merged.pt")
    with pytest.raises(ValueError, match="no LoRA layers"):
        save_adapter(_unet(), tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"nope")
    with pytest.raises(CheckpointError):
        load_adapter(_unet(), tmp_path / "bad.pt")


def test_float32_lora_on_a_half_precision_layer():
    """SD's U-Net runs in fp16; its LoRA trains in float32 (an fp16 Adam step loses small updates), under autocast
    or not."""
    base = nn.Linear(16, 8).to(torch.bfloat16)
    layer = LoRALinear(base, rank=2, dtype=torch.float32)
    assert layer.lora_down.weight.dtype == layer.lora_up.weight.dtype == torch.float32
    with torch.no_grad():
        layer.lora_up.weight.normal_()
    x = torch.randn(3, 16, dtype=torch.bfloat16)
    y = layer(x)
    assert y.dtype == torch.bfloat16
    expected = base(x).float() + layer.lora_up(layer.lora_down(x.float()))
    torch.testing.assert_close(y.float(), expected, atol=0.05, rtol=0.02)
    y.float().sum().backward()
    assert layer.lora_down.weight.grad.dtype == torch.float32 and base.weight.grad is None
