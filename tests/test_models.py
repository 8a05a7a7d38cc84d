"""Tests for dlcourse.models: time embedding, blocks, U-Net shapes, conditioning, gradients, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dlcourse.models import (
    CrossAttention,
    Downsample,
    ResBlock,
    SelfAttention,
    TimestepMLP,
    UNet,
    UNetConfig,
    Upsample,
    count_parameters,
    timestep_embedding,
)

# Tiny configs: every test here runs in milliseconds on a CPU.
TINY = dict(base_channels=8, groups=4, num_heads=2)


def _tiny(**overrides) -> UNetConfig:
    return UNetConfig(**{**TINY, **overrides})


def _inputs(config: UNetConfig, batch: int = 2, seq_len: int = 5, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    r = config.resolution
    x = torch.randn(batch, config.in_channels, r, r, generator=gen)
    t = torch.randint(0, 1000, (batch,), generator=gen)
    context = None
    if config.context_dim is not None:
        context = torch.randn(batch, seq_len, config.context_dim, generator=gen)
    return x, t, context


# ------------------------------------------------------------------------------------------- embeddings


@pytest.mark.parametrize("dim", [16, 33])
def test_timestep_embedding_matches_diffusers(dim):
    embeddings = pytest.importorskip("diffusers.models.embeddings")
    t = torch.tensor([0, 1, 17, 500, 999])
    theirs = embeddings.get_timestep_embedding(t, dim, flip_sin_to_cos=True, downscale_freq_shift=0)
    torch.testing.assert_close(timestep_embedding(t, dim), theirs)


def test_timestep_embedding_formula():
    t = torch.tensor([0.0, 3.5])  # fractional timesteps are allowed
    emb = timestep_embedding(t, 8, max_period=100)
    assert emb.shape == (2, 8) and emb.dtype == torch.float32
    freqs = [100 ** (-i / 4) for i in range(4)]
    expected = [math.cos(3.5 * w) for w in freqs] + [math.sin(3.5 * w) for w in freqs]
    torch.testing.assert_close(emb[1], torch.tensor(expected))
    torch.testing.assert_close(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    # Distinct timesteps get distinct embeddings.
    all_t = timestep_embedding(torch.arange(1000), 32)
    assert torch.cdist(all_t, all_t).add(torch.eye(1000) * 10).min() > 1e-3
    with pytest.raises(ValueError, match=r"1-D tensor \(B,\)"):
        timestep_embedding(torch.zeros(2, 1), 8)


def test_timestep_mlp_shape():
    mlp = TimestepMLP(16, 64)
    assert mlp(torch.tensor([1, 2, 3])).shape == (3, 64)


# ----------------------------------------------------------------------------------------------- blocks


def test_blocks_shapes_and_residual_paths():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 8, 8)
    temb = torch.randn(2, 32)
    assert ResBlock(8, 16, 32, groups=4)(x, temb).shape == (2, 16, 8, 8)
    assert SelfAttention(8, num_heads=2, groups=4)(x).shape == (2, 8, 8, 8)
    assert Downsample(8)(x).shape == (2, 8, 4, 4)
    assert Upsample(8)(x).shape == (2, 8, 16, 16)
    # ResBlock with a zeroed second conv is the identity (same channels): the residual path.
    block = ResBlock(8, 8, 32, groups=4)
    nn.init.zeros_(block.conv2.weight)
    nn.init.zeros_(block.conv2.bias)
    torch.testing.assert_close(block(x, temb), x)
    # The time embedding changes a ResBlock's output.
    block = ResBlock(8, 8, 32, groups=4)
    assert not torch.allclose(block(x, temb), block(x, temb + 1))


def test_self_attention_matches_explicit_softmax():
    torch.manual_seed(0)
    attn = SelfAttention(8, num_heads=2, groups=4)
    x = torch.randn(2, 8, 3, 3)
    tokens = attn.norm(x).flatten(2).transpose(1, 2)  # (B, 9, 8)
    q, k, v = attn.qkv(tokens).chunk(3, dim=-1)
    heads = []
    for h in range(2):
        sl = slice(4 * h, 4 * h + 4)
        weights = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(4), dim=-1)
        heads.append(weights @ v[..., sl])
    expected = x + attn.proj_out(torch.cat(heads, -1)).transpose(1, 2).reshape(x.shape)
    torch.testing.assert_close(attn(x), expected)


def test_cross_attention_uses_context_and_mask():
    torch.manual_seed(0)
    attn = CrossAttention(8, context_dim=6, num_heads=2, groups=4)
    x = torch.randn(2, 8, 4, 4)
    context = torch.randn(2, 5, 6)
    mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    out = attn(x, context, mask)
    assert out.shape == x.shape
    assert not torch.allclose(out, attn(x, context + 1, mask))  # the context matters
    # Padding tokens are ignored: changing them does not change the output...
    changed = context.clone()
    changed[0, 3:] = 100.0
    torch.testing.assert_close(attn(x, changed, mask), out)
    # ...and attending to the first 3 tokens with a mask equals passing only those tokens.
    torch.testing.assert_close(out[:1], attn(x[:1], context[:1, :3]))
    with pytest.raises(ValueError, match=r"context must have shape \(B, L, context_dim\) = \(2, L, 6\)"):
        attn(x, torch.randn(2, 5, 7))
    with pytest.raises(ValueError, match=r"context_mask must have shape \(B, L\)"):
        attn(x, context, mask[:, :4])
    with pytest.raises(ValueError, match="divisible by num_heads=3"):
        CrossAttention(8, context_dim=6, num_heads=3)


# ------------------------------------------------------------------------------------------------- U-Net

SHAPE_CASES = {
    "16px-gray-attn": dict(in_channels=1, resolution=16, channel_mults=(1, 2), attention_resolutions=(8,)),
    "28px-gray-3levels": dict(
        in_channels=1, resolution=28, channel_mults=(1, 2, 2), attention_resolutions=(7,)
    ),
    "32px-rgb-default-levels": dict(resolution=32),
    "32px-rgb-no-attention": dict(resolution=32, attention_resolutions=(), mid_attention=False),
    "64px-rgb-4levels": dict(resolution=64, channel_mults=(1, 1, 2, 2), attention_resolutions=(16, 8)),
    "16px-context": dict(resolution=16, channel_mults=(1, 2), attention_resolutions=(8,), context_dim=12),
    "16px-2blocks-learned-var": dict(resolution=16, channel_mults=(1, 2), num_res_blocks=2, out_channels=6),
}


@pytest.mark.parametrize("overrides", SHAPE_CASES.values(), ids=SHAPE_CASES.keys())
def test_unet_output_shape(overrides):
    config = _tiny(**overrides)
    model = UNet(config)
    x, t, context = _inputs(config)
    out = model(x, t, context)
    expected_channels = config.out_channels or config.in_channels
    assert out.shape == (x.shape[0], expected_channels, *x.shape[2:])
    # With zero_init (the default) a fresh model predicts exactly 0 everywhere.
    assert torch.count_nonzero(out) == 0


def test_unet_attention_placement():
    model = UNet(_tiny(resolution=32, channel_mults=(1, 2, 2), attention_resolutions=(16,), context_dim=4))
    n_self = sum(isinstance(m, SelfAttention) for m in model.modules())
    n_cross = sum(isinstance(m, CrossAttention) for m in model.modules())
    # 16x16 is level 1: 1 block down + 2 blocks up, plus the middle.
    assert n_self == n_cross == 4
    no_attention = UNet(_tiny(attention_resolutions=(), mid_attention=False))
    assert not any(isinstance(m, (SelfAttention, CrossAttention)) for m in no_attention.modules())


def test_skip_connections_concat_down_outputs_in_reverse_order():
    """Each up block's input ends with the matching down output: conv_in, each block, each Downsample."""
    config = _tiny(resolution=16, channel_mults=(1, 2), num_res_blocks=2, attention_resolutions=(8,))
    model = _perturbed_model(config)
    down_outputs, up_inputs = [], []
    record_output = lambda module, args, output: down_outputs.append(output)
    hooks = [model.conv_in.register_forward_hook(record_output)]
    for level in model.down:
        hooks += [block.register_forward_hook(record_output) for block in level.blocks]
        if level.resample is not None:
            hooks.append(level.resample.register_forward_hook(record_output))
    for level in model.up:
        hooks += [
            block.register_forward_pre_hook(lambda m, args: up_inputs.append(args[0]))
            for block in level.blocks
        ]
    x, t, _ = _inputs(config)
    with torch.no_grad():
        model(x, t)
    for hook in hooks:
        hook.remove()
    assert len(down_outputs) == len(up_inputs) == 1 + 2 * 2 + 1  # conv_in, 4 blocks, 1 Downsample
    for up_input, skip in zip(up_inputs, reversed(down_outputs), strict=True):
        torch.testing.assert_close(up_input[:, -skip.shape[1] :], skip)


def test_zero_init_blocks_then_training_step_moves_everything():
    torch.manual_seed(0)
    config = _tiny(resolution=16, channel_mults=(1, 2), attention_resolutions=(8,), context_dim=4)
    model = UNet(config)
    x, t, context = _inputs(config)
    model(x, t, context).sub(x).square().mean().backward()
    # Only conv_out gets a gradient on the first step: everything before it is multiplied by its zero weights.
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad == {"conv_out.weight", "conv_out.bias"}
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.zero_grad()
    out = model(x, t, context)
    assert out.abs().mean() > 0
    out.sub(x).square().mean().backward()
    assert model.conv_in.weight.grad.abs().sum() > 0


def test_zero_init_blocks_start_as_their_skip_path():
    """Each ResBlock starts as skip(x): x itself when the channels stay, its random 1x1 conv when they change."""
    config = _tiny(resolution=16, channel_mults=(1, 2), attention_resolutions=(8,), context_dim=4)
    model = UNet(config)
    calls = []
    hooks = [
        m.register_forward_hook(lambda m, args, out: calls.append((m, args[0], out)))
        for m in model.modules()
        if isinstance(m, (ResBlock, SelfAttention, CrossAttention))
    ]
    x, t, context = _inputs(config)
    with torch.no_grad():
        out = model(x, t, context)
    for hook in hooks:
        hook.remove()
    assert torch.equal(out, torch.zeros_like(out))
    projections = 0
    for module, inputs, output in calls:
        if isinstance(module, ResBlock):
            changes_channels = inputs.shape[1] != output.shape[1]
            assert isinstance(module.skip, nn.Conv2d if changes_channels else nn.Identity)
            if changes_channels:
                assert module.skip.weight.abs().sum() > 0  # the 1x1 conv is random, not zeroed
                projections += 1
            torch.testing.assert_close(output, module.skip(inputs), rtol=0, atol=0)
        else:
            torch.testing.assert_close(output, inputs, rtol=0, atol=0)  # attention starts as the identity
    # 1x1 skips: the first block of level 1 (8 -> 16 channels) and all 2 * 2 up blocks (concatenated inputs).
    assert projections == 1 + 4


def _perturbed_model(config: UNetConfig, seed: int = 0) -> UNet:
    """A model whose weights are all random (as after training), so every input matters."""
    model = UNet(config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return model.eval()


def test_unet_output_depends_on_t_and_context_and_not_across_batch():
    config = _tiny(resolution=16, channel_mults=(1, 2), attention_resolutions=(8,), context_dim=6)
    model = _perturbed_model(config)
    x, _, context = _inputs(config, batch=3)
    t = torch.tensor([10, 500, 999])
    with torch.no_grad():
        out = model(x, t, context)
        out_other_t = model(x, t.flip(0), context)
        out_other_context = model(x, t, context.flip(-1))
        out_float_t = model(x, t.float(), context)
        out_one = model(x[1:2], t[1:2], context[1:2])
        out_scalar_t = model(x, 500, context)
    scale = out.abs().mean()
    assert (out - out_other_t)[[0, 2]].abs().mean() > 1e-2 * scale  # t changed for images 0 and 2
    torch.testing.assert_close(out_other_t[1], out[1])  # same t for image 1: same output
    assert (out - out_other_context).abs().mean() > 1e-2 * scale
    torch.testing.assert_close(out_float_t, out)
    torch.testing.assert_close(out_one, out[1:2], rtol=1e-4, atol=1e-5)  # no mixing across the batch
    torch.testing.assert_close(out_scalar_t[1], out[1], rtol=1e-4, atol=1e-5)


def test_unet_zero_init_false_gives_nonzero_output():
    config = _tiny(resolution=16, channel_mults=(1, 2), zero_init=False)
    x, t, _ = _inputs(config)
    assert UNet(config)(x, t).abs().mean() > 1e-3


@pytest.mark.parametrize("context_dim", [None, 6])
def test_gradients_reach_every_parameter(context_dim):
    config = _tiny(
        resolution=16,
        channel_mults=(1, 2),
        num_res_blocks=2,
        attention_resolutions=(16, 8),
        context_dim=context_dim,
    )
    model = _perturbed_model(config).train()
    x, t, context = _inputs(config)
    model(x, t, context).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def test_channels_last_and_autocast():
    config = _tiny(resolution=16, channel_mults=(1, 2), attention_resolutions=(8,), context_dim=6)
    model = _perturbed_model(config)
    x, t, context = _inputs(config)
    with torch.no_grad():
        reference = model(x, t, context)
        model_cl = model.to(memory_format=torch.channels_last)
        out_cl = model_cl(x.to(memory_format=torch.channels_last), t, context)
        torch.testing.assert_close(out_cl, reference, rtol=1e-4, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out_bf16 = model(x, t, context)
    assert out_bf16.dtype == torch.bfloat16
    assert torch.isfinite(out_bf16).all()
    rel_err = (out_bf16.float() - reference).norm() / reference.norm()
    assert rel_err < 0.1


def test_count_parameters():
    assert count_parameters(nn.Linear(3, 4)) == 16
    model = UNet(_tiny())
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())
    model.conv_in.requires_grad_(False)
    frozen = model.conv_in.weight.numel() + model.conv_in.bias.numel()
    assert count_parameters(model, trainable_only=True) == count_parameters(model) - frozen


def test_default_config_is_small():
    model = UNet()
    assert 0.5e6 < count_parameters(model) < 3e6
    assert UNetConfig().level_resolutions == (32, 16, 8)


# ---------------------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    "overrides, match",
    [
        (
            dict(resolution=28, channel_mults=(1, 2, 2, 2)),
            r"resolution=28 cannot be halved 3 times.*at most 3 level",
        ),
        (dict(resolution=30, channel_mults=(1, 2, 2)), r"divisible by 4.*at most 2 level.*e.g. 32"),
        (
            dict(resolution=32, attention_resolutions=(4,)),
            r"attention_resolutions \[4\] never occur.*\[32, 16, 8\]",
        ),
        (dict(base_channels=12, groups=8), r"GroupNorm needs channels divisible by groups=8.*\[12, 24\]"),
        (dict(base_channels=8, groups=4, num_heads=3), r"num_heads=3 must divide the channels.*\[16\]"),
        (
            dict(attention_resolutions=(), mid_attention=False, context_dim=8),
            r"context_dim=8 adds cross-attention.*would be ignored",
        ),
        (dict(channel_mults=()), "channel_mults must be a non-empty tuple"),
        (dict(in_channels=0), "in_channels must be a positive integer"),
        (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
    ],
)
def test_bad_configs_raise(overrides, match):
    with pytest.raises(ValueError, match=match):
        UNetConfig(**{"base_channels": 8, "groups": 4, "num_heads": 2, **overrides})


def test_config_edited_after_construction_is_revalidated():
    config = _tiny()
    config.attention_resolutions = (5,)
    with pytest.raises(ValueError, match="never occur"):
        UNet(config)


# ----------------------------------------------------------------------------------------- input errors


def test_bad_inputs_raise():
    model = UNet(_tiny(resolution=16, channel_mults=(1, 2, 2), in_channels=3))
    t = torch.tensor([1, 2])
    with pytest.raises(
        ValueError, match=r"expected x of shape \(B, 3, 16, 16\).*UNetConfig\(in_channels=1\)"
    ):
        model(torch.zeros(2, 1, 16, 16), t)
    with pytest.raises(ValueError, match=r"built for 16x16.*UNetConfig\(resolution=32\)"):
        model(torch.zeros(2, 3, 32, 32), t)
    with pytest.raises(ValueError, match=r"built for 16x16.*divisible by 4; resize or pad"):
        model(torch.zeros(2, 3, 18, 18), t)
    with pytest.raises(ValueError, match=r"expected x of shape \(B, 3, 16, 16\)"):
        model(torch.zeros(3, 16, 16), t)
    with pytest.raises(ValueError, match=r"t must have shape \(B,\) = \(2,\).*got shape \(3,\)"):
        model(torch.zeros(2, 3, 16, 16), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"no cross-attention \(UNetConfig.context_dim=None\)"):
        model(torch.zeros(2, 3, 16, 16), t, torch.zeros(2, 4, 8))


def test_conditional_model_input_errors():
    model = UNet(_tiny(resolution=16, channel_mults=(1, 2), context_dim=6))
    x, t = torch.zeros(2, 3, 16, 16), torch.tensor([1, 2])
    with pytest.raises(ValueError, match=r"conditional \(UNetConfig.context_dim=6\).*empty prompt"):
        model(x, t)
    with pytest.raises(ValueError, match=r"context must have shape \(B, L, context_dim\) = \(2, L, 6\)"):
        model(x, t, torch.zeros(2, 4, 5))
    with pytest.raises(ValueError, match=r"context_mask must be a \(B, L\) bool tensor"):
        model(x, t, torch.zeros(2, 4, 6), torch.ones(2, 3, dtype=torch.bool))
    model(x, t, torch.zeros(2, 4, 6), torch.ones(2, 4, dtype=torch.bool))


# ----------------------------------------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_unet_forward_on_gpu_has_no_host_sync():
    config = _tiny(resolution=16, channel_mults=(1, 2), attention_resolutions=(8,), context_dim=6)
    model = _perturbed_model(config).cuda().to(memory_format=torch.channels_last)
    x, t, context = (z.cuda() for z in _inputs(config))
    x = x.to(memory_format=torch.channels_last)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.autocast("cuda", dtype=dtype):
            out = model(x, t, context)  # raises if the forward synchronises with the host
    finally:
        torch.cuda.set_sync_debug_mode("default")
    out.float().square().mean().backward()
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert all(p.grad is not None for p in model.parameters())
