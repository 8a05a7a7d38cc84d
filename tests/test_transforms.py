import torch

from dlcourse.data import to_display_range, to_model_range


def test_to_model_range_maps_endpoints_and_midpoint():
    x = torch.tensor([0.0, 0.25, 0.5, 1.0])
    assert torch.equal(to_model_range(x), torch.tensor([-1.0, -0.5, 0.0, 1.0]))


def test_to_display_range_maps_endpoints_and_clamps_overshoot():
    x = torch.tensor([-3.0, -1.0, 0.0, 0.5, 1.0, 1.7])
    assert torch.equal(to_display_range(x), torch.tensor([0.0, 0.0, 0.5, 0.75, 1.0, 1.0]))


def test_round_trip_keeps_shape_dtype_and_values():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 8, 8, generator=generator)
    y = to_model_range(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= -1 and y.max() <= 1
    torch.testing.assert_close(to_display_range(y), x, atol=1e-6, rtol=0)
    # and the other way round, for images already in [-1, 1]
    z = x * 2 - 1
    torch.testing.assert_close(to_model_range(to_display_range(z)), z, atol=1e-6, rtol=0)
