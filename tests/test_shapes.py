import itertools
import math
import time

import pytest
import torch

from dlcourse.data import (
    ATTRIBUTES,
    COLOUR_RGB,
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    Shapes,
    ShapesBatch,
    attributes_from_captions,
    captions_from_attributes,
    parse_caption,
    render,
    to_display_range,
)
from dlcourse.data.rendering import BACKGROUND

CPU = "cpu"


def all_combinations() -> dict[str, torch.Tensor]:
    """Every (shape, colour, size, position), as attribute index tensors."""
    table = torch.tensor(list(itertools.product(*(range(len(v)) for v in ATTRIBUTES.values()))))
    return {name: table[:, k] for k, name in enumerate(ATTRIBUTES)}


def coverage(images: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """How much of each pixel the shape covers, read back from the image: (N, 3, H, W) -> (N, H, W)."""
    rgb = torch.tensor([COLOUR_RGB[c] for c in COLOURS])[colour] - BACKGROUND  # (N, 3)
    channel = rgb.abs().argmax(dim=1)  # the channel where the colour differs most from the background
    pixels = to_display_range(images)[torch.arange(len(images)), channel]  # (N, H, W)
    return (pixels - BACKGROUND) / rgb[torch.arange(len(images)), channel].view(-1, 1, 1)


# ------------------------------------------------------------------------------------- determinism


def test_same_seed_gives_same_bytes_and_another_seed_differs():
    a = Shapes(resolution=24, seed=3, device=CPU).batch(0, 64)
    b = Shapes(resolution=24, seed=3, device=CPU).batch(0, 64)
    c = Shapes(resolution=24, seed=4, device=CPU).batch(0, 64)
    assert torch.equal(a.images, b.images)
    assert all(torch.equal(a.attributes[k], b.attributes[k]) for k in ATTRIBUTES)
    assert a.captions == b.captions
    assert (a.images != c.images).flatten(1).any(dim=1).all()  # every image differs
    assert sum(x != y for x, y in zip(a.captions, c.captions, strict=True)) > 48


def test_index_addressable():
    shapes = Shapes(resolution=16, seed=11, device=CPU)
    whole = shapes.batch(0, 100)
    tail = shapes.batch(50, 50)
    assert torch.equal(whole.images[50:], tail.images)
    assert all(torch.equal(whole.attributes[k][50:], tail.attributes[k]) for k in ATTRIBUTES)
    assert torch.equal(shapes[7].images, whole.images[7:8])
    assert torch.equal(shapes[10:20:3].images, whole.images[[10, 13, 16, 19]])
    assert len(shapes[3:9]) == 6
    # far-away indices (64-bit) are addressable without generating what comes before them
    far = 2**40 + 123
    assert torch.equal(shapes.batch(far - 3, 5).images[3], shapes[far].images[0])
    assert not torch.equal(shapes[far].images, shapes[123].images)


def test_images_are_not_repeated():
    images = Shapes(resolution=16, seed=0, device=CPU).batch(0, 500).images.flatten(1)
    assert len(torch.unique(images, dim=0)) == 500  # the jitter makes every image unique


def test_attributes_are_uniform_and_independent():
    attributes = Shapes(resolution=8, seed=5, device=CPU).batch(0, 5400).attributes
    for name, values in ATTRIBUTES.items():
        counts = torch.bincount(attributes[name], minlength=len(values)).float()
        expected = 5400 / len(values)
        assert ((counts - expected).abs() < 0.15 * expected).all(), (name, counts)
    joint = torch.bincount(attributes["shape"] * len(COLOURS) + attributes["colour"], minlength=30).float()
    chi2 = ((joint - joint.mean()) ** 2 / joint.mean()).sum()
    assert chi2 < 60  # 29 degrees of freedom: p < 0.001 above ~58


# ------------------------------------------------------------------------------------------ captions


def test_captions_match_attributes():
    batch = Shapes(resolution=8, seed=2, device=CPU).batch(0, 400)
    assert len(batch.captions) == 400
    for i, caption in enumerate(batch.captions):
        expected = {name: values[batch.attributes[name][i]] for name, values in ATTRIBUTES.items()}
        assert parse_caption(caption) == expected
    parsed = attributes_from_captions(batch.captions, device=CPU)
    assert all(torch.equal(parsed[k], batch.attributes[k]) for k in ATTRIBUTES)


def test_caption_wording():
    attributes = {
        "shape": torch.tensor([SHAPES.index("circle"), SHAPES.index("square"), SHAPES.index("cross")]),
        "colour": torch.tensor([COLOURS.index("red"), COLOURS.index("blue"), COLOURS.index("cyan")]),
        "size": torch.tensor([SIZES.index("small"), SIZES.index("large"), SIZES.index("small")]),
        "position": torch.tensor([POSITIONS.index(p) for p in ("top left", "centre", "right")]),
    }
    assert captions_from_attributes(attributes) == [
        "a small red circle at the top left",
        "a large blue square in the centre",
        "a small cyan cross on the right",
    ]


def test_parse_caption_partial_and_loose_text():
    assert parse_caption("a red triangle") == {"colour": "red", "shape": "triangle"}
    assert parse_caption("  A Large  BLUE square, in the centre ") == {
        "size": "large",
        "colour": "blue",
        "shape": "square",
        "position": "centre",
    }
    assert parse_caption("a diamond at the bottom") == {"shape": "diamond", "position": "bottom"}
    assert parse_caption("a diamond at the bottom right") == {"shape": "diamond", "position": "bottom right"}


def test_partial_captions_name_each_attribute_at_the_given_rate_and_parse_back():
    from dlcourse.data import partial_captions

    batch = Shapes(resolution=16, seed=0).batch(0, 2000)
    captions = partial_captions(batch.attributes, 0.6, torch.Generator().manual_seed(0))
    parsed = [parse_caption(c) for c in captions]
    for name in ("size", "colour", "position"):
        rate = sum(name in p for p in parsed) / len(parsed)
        assert abs(rate - 0.6) < 0.04, (name, rate)
    assert all("shape" in p for p in parsed)
    full = [parse_caption(c) for c in batch.captions]
    assert all(p.items() <= f.items() for p, f in zip(parsed, full, strict=True))  # never a wrong attribute
    assert partial_captions(batch.attributes, 1.0) == batch.captions
    with pytest.raises(ValueError, match="p_name"):
        partial_captions(batch.attributes, 0.0)


def test_parse_caption_errors_teach():
    with pytest.raises(ValueError, match="'purple'.*red, green, blue"):
        parse_caption("a small purple circle at the top left")
    with pytest.raises(ValueError, match="colour twice"):
        parse_caption("a red blue circle")
    with pytest.raises(ValueError, match="no attribute"):
        parse_caption("a")
    with pytest.raises(ValueError, match="size, position"):
        attributes_from_captions(["a red circle"], device=CPU)
    with pytest.raises(TypeError, match="list"):
        attributes_from_captions("a small red circle at the top left", device=CPU)


# ------------------------------------------------------------------------------------------- holdout


def test_heldout_combinations_never_appear_in_train_and_only_in_heldout():
    holdout = [{"shape": "triangle", "colour": "red"}, {"size": "small", "position": "centre"}]

    def held_out(attributes):
        red_triangle = (attributes["shape"] == SHAPES.index("triangle")) & (
            attributes["colour"] == COLOURS.index("red")
        )
        small_centre = (attributes["size"] == SIZES.index("small")) & (
            attributes["position"] == POSITIONS.index("centre")
        )
        return red_triangle, small_centre

    train = Shapes(resolution=8, seed=1, holdout=holdout, device=CPU).batch(0, 5000).attributes
    red_triangle, small_centre = held_out(train)
    assert not red_triangle.any() and not small_centre.any()
    # the rest of the world is still there: red things, triangles, small things, centred things
    assert (train["colour"] == COLOURS.index("red")).sum() > 500
    assert (train["shape"] == SHAPES.index("triangle")).sum() > 500

    heldout = Shapes(resolution=8, seed=1, holdout=holdout, split="heldout", device=CPU)
    attributes = heldout.batch(0, 2000).attributes
    red_triangle, small_centre = held_out(attributes)
    assert (red_triangle | small_centre).all()
    assert red_triangle.sum() > 500 and small_centre.sum() > 500  # both rules are represented
    again = Shapes(resolution=8, seed=1, holdout=holdout, split="heldout", device=CPU).batch(0, 2000)
    assert all(torch.equal(attributes[k], again.attributes[k]) for k in ATTRIBUTES)


def test_holdout_accepts_a_single_dict():
    shapes = Shapes(resolution=8, holdout={"shape": "circle"}, device=CPU)
    assert not (shapes.batch(0, 1000).attributes["shape"] == 0).any()
    assert len(shapes.combinations) == 540 - 108


# ------------------------------------------------------------------------------------------- pixels


def test_range_dtype_and_background():
    images = Shapes(resolution=32, seed=0, device=CPU).batch(0, 64).images
    assert images.dtype == torch.float32 and images.shape == (64, 3, 32, 32)
    assert images.min() >= -1 and images.max() <= 1
    corner = images[:, :, 0, 0]  # shapes stay inside their cells, so corner pixels show the background
    background = BACKGROUND * 2 - 1
    assert ((corner - background).abs() < 1e-6).float().mean() > 0.8


def test_shape_colour_appears_at_its_position():
    batch = Shapes(resolution=48, seed=9, device=CPU).batch(0, 300)  # 48 = 3 cells of 16 pixels
    difference = (to_display_range(batch.images) - BACKGROUND).abs().sum(dim=1)  # (N, 48, 48)
    per_cell = difference.view(300, 3, 16, 3, 16).sum(dim=(2, 4)).flatten(1)  # (N, 9) in POSITIONS order
    assert torch.equal(per_cell.argmax(dim=1), batch.attributes["position"])
    inside = per_cell.max(dim=1).values
    others = per_cell.topk(2, dim=1).values[:, 1]
    assert (inside > 5 * others).all()  # almost all the ink is in the right cell
    # the most strongly coloured pixel is exactly the shape's colour (it is fully covered)
    flat = to_display_range(batch.images).flatten(2)  # (N, 3, H*W)
    brightest = flat[torch.arange(300), :, difference.flatten(1).argmax(dim=1)]  # (N, 3)
    expected = torch.tensor([COLOUR_RGB[c] for c in COLOURS])[batch.attributes["colour"]]
    torch.testing.assert_close(brightest, expected, atol=1e-5, rtol=0)


def test_every_combination_renders_in_its_cell_with_its_colour():
    attributes = all_combinations()
    images = render(attributes, 48)
    difference = (to_display_range(images) - BACKGROUND).abs().sum(dim=1)
    per_cell = difference.view(len(images), 3, 16, 3, 16).sum(dim=(2, 4)).flatten(1)
    assert torch.equal(per_cell.argmax(dim=1), attributes["position"])
    cells = to_display_range(images).view(len(images), 3, 3, 16, 3, 16)  # (N, RGB, row, y, column, x)
    cell_rows, cell_cols = attributes["position"] // 3, attributes["position"] % 3
    middle = cells[torch.arange(len(images)), :, cell_rows, 8, cell_cols, 8]  # (N, RGB) at the cell's centre
    expected = torch.tensor([COLOUR_RGB[c] for c in COLOURS])[attributes["colour"]]
    torch.testing.assert_close(middle, expected, atol=1e-5, rtol=0)


def test_small_shapes_cover_less_than_large_ones():
    batch = Shapes(resolution=32, seed=4, device=CPU).batch(0, 500)
    area = coverage(batch.images, batch.attributes["colour"]).sum(dim=(1, 2))
    large = batch.attributes["size"] == SIZES.index("large")
    for shape in range(len(SHAPES)):
        this = batch.attributes["shape"] == shape
        assert area[this & ~large].max() < area[this & large].min(), SHAPES[shape]
    # without jitter the area ratio is the square of the radius ratio, (0.27 / 0.14)^2 = 3.7
    canonical = all_combinations()
    area = coverage(render(canonical, 32), canonical["colour"]).sum(dim=(1, 2))
    ratio = area[canonical["size"] == 1] / area[canonical["size"] == 0]
    assert ((ratio > 3.2) & (ratio < 4.3)).all(), ratio


def test_anti_aliasing_gives_partial_pixels_and_exact_area():
    one = {
        "shape": torch.tensor([SHAPES.index("circle"), SHAPES.index("square")]),
        "colour": torch.tensor([COLOURS.index("red"), COLOURS.index("green")]),
        "size": torch.tensor([1, 1]),
        "position": torch.tensor([POSITIONS.index("centre")] * 2),
    }
    images = render(one, 64)
    cover = coverage(images, one["colour"])  # (2, 64, 64)
    assert cover.min() > -1e-5 and cover.max() < 1 + 1e-5
    partial = ((cover > 0.02) & (cover < 0.98)).sum(dim=(1, 2))
    radius_px = 0.27 * 32  # large radius in pixels at 64x64
    assert (partial >= 2 * math.pi * radius_px * 0.8).all()  # a ring of edge pixels, not a hard step
    # box-filter coverage integrates to the true area: pi r^2 for the circle, (2 * 0.85 r)^2 for the square
    area = cover.sum(dim=(1, 2))
    true_area = torch.tensor([math.pi * radius_px**2, (2 * 0.85 * radius_px) ** 2])
    torch.testing.assert_close(area, true_area, rtol=0.01, atol=0)


def test_render_canonical_matches_caption_example():
    attributes = attributes_from_captions(["a small red triangle at the top left"], device=CPU)
    image = render(attributes, 30)  # 3 cells of 10 pixels
    assert image.shape == (1, 3, 30, 30)
    ink = (to_display_range(image[0]) - BACKGROUND).abs().sum(dim=0)
    assert ink[:10, :10].sum() > 0.99 * ink.sum()
    # a triangle pointing up: more ink in the bottom half of its cell than in the top half
    assert ink[5:10, :10].sum() > 1.5 * ink[0:5, :10].sum()
    # plain lists work too, and jitter moves the shape
    lists = {name: t.tolist() for name, t in attributes.items()}
    assert torch.equal(render(lists, 30, device=CPU), image)
    moved = render(attributes, 30, jitter=torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    assert not torch.equal(moved, image)


@pytest.mark.parametrize("resolution", range(16, 65))
def test_every_resolution_from_16_to_64(resolution):
    batch = Shapes(resolution=resolution, seed=0, device=CPU).batch(0, 6)
    assert batch.images.shape == (6, 3, resolution, resolution)
    assert torch.isfinite(batch.images).all()
    assert batch.images.min() >= -1 and batch.images.max() <= 1
    assert (batch.images.amax(dim=(1, 2, 3)) > 0).all()  # every image shows a shape


def test_extreme_resolutions_and_empty_batches():
    assert Shapes(resolution=8, device=CPU).batch(0, 2).images.shape == (2, 3, 8, 8)
    assert Shapes(resolution=512, device=CPU).batch(0, 2).images.shape == (2, 3, 512, 512)  # notebook 08's gpu size
    assert Shapes(resolution=16, device=CPU).batch(5, 0).images.shape == (0, 3, 16, 16)


def test_batch_len_and_to():
    batch = Shapes(resolution=8, device=CPU).batch(0, 5)
    assert isinstance(batch, ShapesBatch) and len(batch) == 5
    moved = batch.to("cpu")
    assert torch.equal(moved.images, batch.images) and moved.captions == batch.captions


def test_generation_is_fast_on_cpu():
    shapes = Shapes(resolution=32, seed=0, device=CPU)
    start = time.perf_counter()
    shapes.batch(0, 5000)
    assert time.perf_counter() - start < 5.0  # about 0.1 s on a laptop core; no per-image Python loop


# ---------------------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("resolution", [7, 513, 0, 32.0, True, "32"])
def test_bad_resolution(resolution):
    with pytest.raises(ValueError, match="8 to 512"):
        Shapes(resolution=resolution, device=CPU)


def test_bad_holdout_split_seed_and_indices():
    with pytest.raises(ValueError, match=r"'purple'.*'red', 'green'"):
        Shapes(holdout=[{"colour": "purple"}], device=CPU)
    with pytest.raises(ValueError, match=r"'color'.*'colour'"):
        Shapes(holdout=[{"color": "red"}], device=CPU)
    with pytest.raises(ValueError, match="non-empty dicts"):
        Shapes(holdout=[{}], device=CPU)
    with pytest.raises(ValueError, match="non-empty dicts"):
        Shapes(holdout=["triangle"], device=CPU)
    with pytest.raises(ValueError, match="'train', 'heldout'"):
        Shapes(split="test", device=CPU)
    with pytest.raises(ValueError, match="needs a holdout"):
        Shapes(split="heldout", device=CPU)
    with pytest.raises(ValueError, match="every combination"):
        Shapes(holdout=[{"size": "small"}, {"size": "large"}], device=CPU)
    with pytest.raises(ValueError, match="seed"):
        Shapes(seed=-1, device=CPU)
    shapes = Shapes(resolution=8, device=CPU)
    with pytest.raises(ValueError, match="start must be an int >= 0"):
        shapes.batch(-1, 4)
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        shapes.batch(0, -4)
    with pytest.raises(ValueError, match="unlimited"):
        shapes[5:]
    with pytest.raises(TypeError, match="ints or slices"):
        shapes["a"]
    with pytest.raises(TypeError, match="unlimited"):
        iter(shapes)


def test_bad_render_inputs():
    good = attributes_from_captions(["a large green cross on the left"], device=CPU)
    with pytest.raises(ValueError, match="lack"):
        render({"shape": good["shape"]})
    with pytest.raises(ValueError, match=r"indices 0\.\.5"):
        render({**good, "colour": torch.tensor([6])})
    with pytest.raises(ValueError, match="LongTensor"):
        render({**good, "size": torch.tensor([1.0])})
    with pytest.raises(ValueError, match=r"\(1, 4\)"):
        render(good, jitter=torch.zeros(1, 3))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    cpu = Shapes(resolution=32, seed=7, holdout={"shape": "cross"}, device="cpu").batch(1000, 512)
    gpu = Shapes(resolution=32, seed=7, holdout={"shape": "cross"}, device="cuda").batch(1000, 512)
    assert gpu.images.is_cuda
    assert all(torch.equal(cpu.attributes[k], gpu.attributes[k].cpu()) for k in ATTRIBUTES)
    torch.testing.assert_close(gpu.images.cpu(), cpu.images, atol=1e-4, rtol=0)


def test_hollow_shapes_keep_only_an_outline_of_at_least_a_pixel():
    one = {
        "shape": torch.tensor([SHAPES.index("square"), SHAPES.index("circle")]),
        "colour": torch.tensor([COLOURS.index("red"), COLOURS.index("green")]),
        "size": torch.tensor([1, 0]),
        "position": torch.tensor([POSITIONS.index("centre")] * 2),
    }
    for resolution in (24, 64):
        filled = coverage(render(one, resolution), one["colour"])
        hollow = coverage(render(one, resolution, hollow=True), one["colour"])
        middle = resolution // 2
        assert (filled[:, middle - 1 : middle + 1, middle - 1 : middle + 1] > 0.9).all()  # filled at the centre
        assert hollow[0, middle - 1 : middle + 1, middle - 1 : middle + 1].max() < 0.1  # the big square's hole
        assert (hollow.amax(dim=(1, 2)) > 0.9).all()  # even the small circle's outline covers whole pixels
    mixed = render(one, 32, hollow=torch.tensor([True, False]))
    assert torch.equal(mixed[0], render(one, 32, hollow=True)[0]) and torch.equal(mixed[1], render(one, 32)[1])
    with pytest.raises(ValueError, match="hollow must be"):
        render(one, 32, hollow=torch.tensor([1, 0]))
