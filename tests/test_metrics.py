"""Tests for dlcourse.metrics: the Frechet distance and FID, KID, the FeatureNet, the reals baseline, attributes."""

import itertools
import math

import numpy as np
import pytest
import torch

import dlcourse.metrics.feature_training as feature_training
from dlcourse.data import ATTRIBUTES, Shapes
from dlcourse.data.datasets import SHAPES_TEST_START
from dlcourse.metrics import (
    KID,
    FeatureNet,
    FewSamplesWarning,
    attribute_accuracy,
    attribute_distribution,
    compute_features,
    confident_fraction,
    evaluate_samples,
    feature_statistics,
    fid,
    frechet_distance,
    kid,
    load_feature_net,
    polynomial_mmd2,
    predict_probabilities,
    reals_baseline,
    train_feature_net,
)
from dlcourse.metrics.feature_training import degrade

CPU = "cpu"
F64 = torch.float64


def random_covariance(d: int, generator: torch.Generator) -> torch.Tensor:
    """A well-conditioned random symmetric positive-definite (d, d) matrix."""
    a = torch.randn(d, d, generator=generator, dtype=F64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=F64)


def random_rotation(d: int, generator: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=F64))
    return q


# ----------------------------------------------------------------------------------- Frechet distance


def test_frechet_distance_one_dimensional_closed_form():
    # N(m1, s1^2) vs N(m2, s2^2): d^2 = (m1 - m2)^2 + (s1 - s2)^2
    d2 = frechet_distance(torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([-2.0]), torch.tensor([[9.0]]))
    assert d2.dtype == F64
    assert d2.item() == pytest.approx(3.0**2 + (2.0 - 3.0) ** 2, rel=1e-12)


def test_frechet_distance_commuting_covariances_closed_form():
    # Covariances sharing eigenvectors Q: sqrt(S1 S2) = Q diag(sqrt(a b)) Q^T, so
    # d^2 = ||mu1 - mu2||^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2.
    g = torch.Generator().manual_seed(0)
    d = 16
    a, b = torch.rand(d, generator=g, dtype=F64) + 0.1, torch.rand(d, generator=g, dtype=F64) * 3
    mu1, mu2 = torch.randn(d, generator=g, dtype=F64), torch.randn(d, generator=g, dtype=F64)
    expected = (mu1 - mu2).square().sum() + (a.sqrt() - b.sqrt()).square().sum()
    for q in (torch.eye(d, dtype=F64), random_rotation(d, g)):  # diagonal, then rotated (still commuting)
        sigma1, sigma2 = q @ torch.diag(a) @ q.T, q @ torch.diag(b) @ q.T
        assert frechet_distance(mu1, sigma1, mu2, sigma2).item() == pytest.approx(expected.item(), rel=1e-9)


def test_frechet_distance_non_commuting_matches_numpy_eigenvalues():
    # Independent route: Tr sqrt(S1 S2) = sum of sqrt of the eigenvalues of the (non-symmetric) product S1 S2.
    g = torch.Generator().manual_seed(1)
    d = 12
    sigma1, sigma2 = random_covariance(d, g), random_covariance(d, g)
    assert not torch.allclose(sigma1 @ sigma2, sigma2 @ sigma1)  # the hard case: they do not commute
    mu1, mu2 = torch.randn(d, generator=g, dtype=F64), torch.randn(d, generator=g, dtype=F64)
    s1, s2 = sigma1.numpy(), sigma2.numpy()
    trace_sqrt = np.sqrt(np.linalg.eigvals(s1 @ s2).real.clip(min=0)).sum()
    expected = ((mu1 - mu2).numpy() ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt
    got = frechet_distance(mu1, sigma1, mu2, sigma2)
    assert got.item() == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu2, sigma2, mu1, sigma1).item() == pytest.approx(got.item(), rel=1e-9)  # symmetric


def test_frechet_distance_matches_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    g = torch.Generator().manual_seed(2)
    sigma1, sigma2 = random_covariance(8, g), random_covariance(8, g)
    mu = torch.zeros(8, dtype=F64)
    expected = np.trace(sigma1.numpy() + sigma2.numpy() - 2 * linalg.sqrtm(sigma1.numpy() @ sigma2.numpy()).real)
    assert frechet_distance(mu, sigma1, mu, sigma2).item() == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_of_a_gaussian_with_itself_is_zero_even_when_singular():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 10, generator=g, dtype=F64)
    sigma = x.T @ x  # rank 5 of 10: singular, as with fewer samples than feature dimensions
    mu = torch.randn(10, generator=g, dtype=F64)
    d2 = frechet_distance(mu, sigma, mu, sigma)
    assert 0 <= d2.item() < 1e-9


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(D,\)"):
        frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(4), torch.eye(4))


# ---------------------------------------------------------------------------------------------- FID


def test_feature_statistics_match_numpy():
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(4))
    mu, sigma = feature_statistics(x)
    assert mu.dtype == sigma.dtype == F64
    np.testing.assert_allclose(sigma.numpy(), np.cov(x.numpy().astype(np.float64), rowvar=False), rtol=1e-12)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_shift_and_noise():
    g = torch.Generator().manual_seed(5)
    a = torch.randn(2000, 8, generator=g)
    assert fid(a, a) < 1e-8
    b = torch.randn(2000, 8, generator=g)
    shifted = [fid(a, b + shift) for shift in (0.0, 0.3, 1.0)]
    noised = [fid(a, b + scale * torch.randn(2000, 8, generator=g)) for scale in (0.0, 0.5, 1.5)]
    assert shifted[0] < shifted[1] < shifted[2] and noised[0] < noised[1] < noised[2]
    assert shifted[2] == pytest.approx(8 * 1.0**2, rel=0.1)  # ||mu1 - mu2||^2 = 8 dominates


def test_fid_errors_and_warning_for_few_samples():
    g = torch.Generator().manual_seed(6)
    with pytest.raises(ValueError, match="at least 2"):
        fid(torch.randn(1, 4, generator=g), torch.randn(10, 4, generator=g))
    with pytest.raises(ValueError, match="different dimensions"):
        fid(torch.randn(10, 4, generator=g), torch.randn(10, 5, generator=g))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        fid(torch.randn(10, 4, 2, generator=g), torch.randn(10, 4, generator=g))
    with pytest.warns(FewSamplesWarning, match="singular"):
        value = fid(torch.randn(20, 32, generator=g), torch.randn(20, 32, generator=g))
    assert math.isfinite(value) and value > 0


# ---------------------------------------------------------------------------------------------- KID


def test_polynomial_mmd2_matches_the_formula_written_out():
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(6, 3, generator=g, dtype=F64), torch.randn(5, 3, generator=g, dtype=F64)
    k = lambda a, b: (float(a @ b) / 3 + 1) ** 3
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    assert polynomial_mmd2(x, y).item() == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_polynomial_mmd2_is_unbiased():
    # Averaged over many small independent draws from one distribution, the estimate is ~0. The biased
    # estimator (keeping the i == j terms) would average clearly above 0 at this size.
    g = torch.Generator().manual_seed(8)
    x, y = torch.randn(400, 10, 4, generator=g, dtype=F64), torch.randn(400, 10, 4, generator=g, dtype=F64)
    estimates = torch.stack([polynomial_mmd2(a, b) for a, b in zip(x, y, strict=True)])
    standard_error = estimates.std() / math.sqrt(len(estimates))
    assert abs(estimates.mean()) < 3 * standard_error


def test_kid_near_zero_for_same_distribution_and_clearly_positive_otherwise():
    g = torch.Generator().manual_seed(9)
    a, b = torch.randn(600, 16, generator=g), torch.randn(600, 16, generator=g)
    same = kid(a, b, num_subsets=50)
    assert isinstance(same, KID) and same.std > 0
    assert abs(same.mean) < 3 * same.std
    different = kid(a, b + 0.5, num_subsets=50)
    assert different.mean > 10 * different.std > 0
    assert kid(a, b, num_subsets=50) == same  # the default generator is seeded: reproducible
    assert kid(a, b, num_subsets=50, generator=torch.Generator().manual_seed(1)) != same


def test_kid_rejects_bad_subset_sizes():
    a = torch.randn(10, 4, generator=torch.Generator().manual_seed(10))
    with pytest.raises(ValueError, match="subset_size"):
        kid(a, a, subset_size=11)
    with pytest.raises(ValueError, match="subset_size"):
        kid(a, a, subset_size=1)
    with pytest.raises(ValueError, match="different dimensions"):
        kid(a, a[:, :3])


# ----------------------------------------------------------------------------------------- FeatureNet

RESOLUTION = 32
# Smaller and shorter than load_feature_net's defaults (which reach >= 99.5% on every attribute in about a
# minute on this CPU), so the test takes seconds: about 98% on shape, 100% on the rest; we require 90%.
SMALL_NET = {"widths": (12, 24, 48), "feature_dim": 64, "n_train": 4000, "n_test": 1000, "steps": 300, "lr": 4e-3,
             "augment": False}  # fmt: skip


@pytest.fixture(scope="module")
def net(tmp_path_factory) -> FeatureNet:
    """A briefly trained Shapes FeatureNet (about 8 s on an idle 2-core CPU), shared by the tests below."""
    directory = tmp_path_factory.mktemp("checkpoints")
    return load_feature_net("shapes", RESOLUTION, device=CPU, directory=directory, **SMALL_NET)


@pytest.fixture(scope="module")
def heldout():
    """Shapes the net never trained on (indices from 2**40), and more for reals-vs-reals comparisons."""
    return Shapes(RESOLUTION, seed=0, device=CPU).batch(SHAPES_TEST_START + 10_000, 1200)


def test_feature_net_shapes_and_heads():
    model = FeatureNet({"shape": 5, "colour": 6}, in_channels=3, resolution=16, widths=(8, 16), feature_dim=24)
    x = torch.randn(7, 3, 16, 16)
    assert model.features(x).shape == (7, 24)
    assert {k: v.shape for k, v in model(x).items()} == {"shape": (7, 5), "colour": (7, 6)}
    with pytest.raises(ValueError, match="class counts"):
        FeatureNet({"class": 1})


def test_briefly_trained_net_reads_attributes_of_unseen_images(net, heldout):
    # load_feature_net measured it on n_test unseen images; check again on other unseen ones.
    assert set(net.test_accuracy) == {*ATTRIBUTES, "all"}
    accuracy = attribute_accuracy(net, heldout.images, heldout.attributes)
    assert all(accuracy[name] >= 0.9 for name in ATTRIBUTES), accuracy
    predicted = {k: p.argmax(-1) for k, p in predict_probabilities(net, heldout.images).items()}
    every = torch.stack([predicted[k] == heldout.attributes[k] for k in ATTRIBUTES]).all(0).float().mean()
    assert accuracy["all"] == pytest.approx(every.item())
    assert min(accuracy.values()) == pytest.approx(accuracy["all"], abs=0.1)
    # with the labels shuffled, accuracy falls to chance
    shuffled = heldout.attributes["position"][torch.randperm(len(heldout), generator=torch.Generator().manual_seed(0))]
    assert attribute_accuracy(net, heldout.images, {"position": shuffled})["position"] < 0.25


def test_attribute_distribution_and_confident_fraction(net, heldout):
    distribution = attribute_distribution(net, heldout.images)
    for name, values in ATTRIBUTES.items():
        truth = torch.bincount(heldout.attributes[name], minlength=len(values)).float() / len(heldout)
        assert distribution[name].sum().item() == pytest.approx(1.0)
        assert 0.5 * (distribution[name] - truth).abs().sum() < 0.08  # total variation distance
    blank = torch.full((200, 3, RESOLUTION, RESOLUTION), -0.9)  # the background alone: no shape drawn
    noise = torch.rand(200, 3, RESOLUTION, RESOLUTION, generator=torch.Generator().manual_seed(1)) * 2 - 1
    # The briefly trained net is sure of all four heads on about 60% of the real images (load_feature_net's
    # default, trained longer, on about 98%), on none of the blank ones and on few noise images.
    real = confident_fraction(net, heldout.images)
    assert real > 0.4 > 0.05 > confident_fraction(net, blank)
    assert real > 3 * confident_fraction(net, noise)
    with pytest.raises(ValueError, match="threshold"):
        confident_fraction(net, heldout.images, threshold=90)


def test_compute_features_is_batch_independent_and_checks_its_input(net, heldout):
    x = heldout.images[:40]
    features = compute_features(net, x, batch_size=256)
    assert features.shape == (40, net.feature_dim) and features.dtype == torch.float32
    torch.testing.assert_close(compute_features(net, x, batch_size=7), features, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="channel"):
        compute_features(net, x[:, :1])
    with pytest.raises(ValueError, match="N >= 1"):
        compute_features(net, x[:0])
    with pytest.raises(ValueError, match="32x32"):
        compute_features(net, x[:, :, :16, :16])
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        compute_features(net, (x + 1) * 127.5)  # 0..255 pixels
    net.train()
    try:
        with pytest.raises(ValueError, match="eval"):
            compute_features(net, x)
    finally:
        net.eval()


# ------------------------------------------------------------------------------ baseline and report


def test_reals_baseline_compares_two_disjoint_sets_of_n(net, heldout):
    n = 300
    reals = heldout.images[: 2 * n]
    features = compute_features(net, reals)
    baseline = reals_baseline(net, reals, n)
    assert (baseline.n_a, baseline.n_b) == (n, n)
    assert baseline.fid == pytest.approx(fid(features[n:], features[:n]), rel=1e-9)
    assert baseline.fid > 0.01  # two different sets of images
    # The same n images twice: if the halves overlapped, every baseline would look like this.
    assert reals_baseline(net, torch.cat([reals[:n], reals[:n]]), n).fid < 1e-6
    # Only the first 2n images are used; anything after them does not matter.
    junk = torch.zeros(50, 3, RESOLUTION, RESOLUTION)
    assert reals_baseline(net, torch.cat([reals, junk]), n).fid == pytest.approx(baseline.fid, rel=1e-9)
    with pytest.raises(ValueError, match="at least 2n"):
        reals_baseline(net, reals, n + 1)


def test_evaluate_samples_reports_counts_baseline_and_ratio(net, heldout):
    n = 300
    reals = heldout.images[300 : 300 + 2 * n]
    good = heldout.images[:n]  # other real images: as good as the data
    report = evaluate_samples(net, good, reals)
    assert (report.n_samples, report.n_reals, report.feature_dim) == (n, n, net.feature_dim)
    assert report.baseline.fid == pytest.approx(reals_baseline(net, reals, n).fid, rel=1e-9)
    reference = compute_features(net, reals[:n])
    assert report.fid == pytest.approx(fid(compute_features(net, good), reference), rel=1e-9)
    assert report.fid_ratio < 2.0
    assert abs(report.kid) < 3 * report.kid_std + 1e-3
    text = str(report)
    assert f"reals vs reals at n={n}" in text and "ratio" in text and f"{n} samples" in text

    g = torch.Generator().manual_seed(2)
    fids = [evaluate_samples(net, (good + s * torch.randn(good.shape, generator=g)).clamp(-1, 1), reals).fid
            for s in (0.1, 0.3, 0.6)]  # fmt: skip
    assert report.fid < fids[0] < fids[1] < fids[2]
    assert fids[2] > 5 * report.baseline.fid
    with pytest.raises(ValueError, match="at least 2n"):
        evaluate_samples(net, good, reals[: 2 * n - 1])


# ------------------------------------------------------------------------------ training and caching


def tiny_settings() -> dict:
    return {"widths": (8,), "feature_dim": 8, "n_train": 64, "n_test": 32, "steps": 3, "batch_size": 16}


def test_load_feature_net_caches_under_dlcourse_data(tmp_path, monkeypatch):
    monkeypatch.setenv("DLCOURSE_DATA", str(tmp_path))
    first = load_feature_net("shapes", 16, device=CPU, **tiny_settings())
    files = list((tmp_path / "checkpoints").glob("feature_net-*.pt"))
    assert len(files) == 1
    assert not first.training and set(first.test_accuracy) == {*ATTRIBUTES, "all"}

    def must_not_train(*args, **kwargs):
        raise AssertionError("load_feature_net retrained although a cached net exists")

    monkeypatch.setattr(feature_training, "train_feature_net", must_not_train)
    second = load_feature_net("shapes", 16, device=CPU, **tiny_settings())
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert second.test_accuracy == first.test_accuracy and not second.training
    with pytest.raises(AssertionError, match="retrained"):  # another setting is another cache entry
        load_feature_net("shapes", 16, device=CPU, **(tiny_settings() | {"steps": 4}))


def test_load_feature_net_rejects_wrong_channels():
    with pytest.raises(ValueError, match="1 channel"):
        load_feature_net("mnist", 28, in_channels=3, device=CPU)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_feature_net("imagenet", device=CPU)


def test_train_feature_net_is_deterministic_and_learns():
    batch = Shapes(16, seed=1, device=CPU).batch(0, 256)
    heads = {name: len(values) for name, values in ATTRIBUTES.items()}
    histories = []
    for _ in range(2):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = FeatureNet(heads, resolution=16, widths=(8, 16), feature_dim=16)
        history = train_feature_net(model, batch.images, batch.attributes, steps=50, batch_size=32, lr=1e-2)
        histories.append(history["loss"])
        assert not model.training
    assert histories[0] == histories[1]
    assert np.mean(histories[0][-5:]) < 0.7 * np.mean(histories[0][:5])
    with pytest.raises(ValueError, match="no targets"):
        train_feature_net(model, batch.images, {"shape": batch.attributes["shape"]}, steps=1)


def test_degrade_is_seeded_and_mild():
    x = Shapes(16, seed=0, device=CPU).batch(0, 64).images
    a = degrade(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, degrade(x, torch.Generator().manual_seed(0)))
    assert a.shape == x.shape and not torch.equal(a, x)
    assert 0.005 < (a - x).abs().mean() < 0.2


def test_psnr_of_a_known_error_and_of_a_perfect_reconstruction():
    from dlcourse.metrics import psnr

    images = torch.zeros(2, 3, 4, 4)
    noisy = images + 0.1  # MSE 0.01 on a range of width 2: 10 log10(4 / 0.01) = 26.02 dB
    torch.testing.assert_close(psnr(images, noisy), torch.full((2,), 10 * math.log10(400.0)))
    assert torch.isinf(psnr(images, images)).all()
    assert psnr(images, images + 0.05)[0] - psnr(images, noisy)[0] == pytest.approx(20 * math.log10(2), abs=1e-4)
    with pytest.raises(ValueError, match="same shape"):
        psnr(images, torch.zeros(2, 4, 1, 1))


def test_forward_flops_and_activation_bytes_count_what_they_claim():
    from dlcourse.metrics import activation_bytes, forward_flops

    layer = torch.nn.Linear(8, 5, bias=False)
    x = torch.randn(3, 8)
    assert forward_flops(lambda: layer(x)) == 2 * 3 * 8 * 5  # one multiply-add per weight per row
    w = torch.randn(16, 16, requires_grad=True)
    for batch in (4, 8):
        inputs = torch.randn(batch, 16, 16)
        # (inputs * w) saves inputs for w's gradient (w itself is not needed: inputs needs no gradient)
        assert activation_bytes(lambda inputs=inputs: (inputs * w).sum()) == inputs.nbytes


def test_prompt_adherence_scores_the_attributes_each_prompt_names(net, heldout):
    from dlcourse.data import COLOURS
    from dlcourse.metrics import prompt_adherence

    images, attributes = heldout.images[:400], {k: v[:400] for k, v in heldout.attributes.items()}
    full = prompt_adherence(net, images, heldout.captions[:400])
    assert full == attribute_accuracy(net, images, attributes)  # full captions: the attribute accuracy
    assert full["all"] > 0.8
    # Prompts that name only the colour are scored on the colour alone; the wrong colour scores 0.
    right = [f"a {COLOURS[c]}" for c in attributes["colour"].tolist()]
    wrong = [f"a {COLOURS[(c + 1) % len(COLOURS)]}" for c in attributes["colour"].tolist()]
    assert set(prompt_adherence(net, images, right)) == {"colour", "all"}
    assert prompt_adherence(net, images, right)["all"] > 0.95 > 0.05 > prompt_adherence(net, images, wrong)["all"]
    # Empty prompts are not scored; only empty prompts is an error; so is a count mismatch.
    mixed = prompt_adherence(net, images[:2], [right[0], ""])
    assert mixed["all"] == prompt_adherence(net, images[:1], right[:1])["all"]
    with pytest.raises(ValueError, match="nothing to score"):
        prompt_adherence(net, images[:3], "")
    with pytest.raises(ValueError, match="one prompt per image"):
        prompt_adherence(net, images[:3], right[:2])


def test_diversity_is_the_mean_pairwise_feature_distance(net, heldout):
    from dlcourse.metrics import diversity

    images = heldout.images[:50]
    features = compute_features(net, images).double()
    pairs = [(features[i] - features[j]).norm() for i in range(50) for j in range(i + 1, 50)]
    assert diversity(net, images) == pytest.approx(torch.stack(pairs).mean().item(), rel=1e-6)
    same = images[:1].expand(20, -1, -1, -1)
    assert diversity(net, same) == pytest.approx(0.0, abs=1e-5)
    assert diversity(net, images) > 5 * diversity(net, same + 0.01 * torch.randn_like(same).clamp(-1, 1))
    with pytest.raises(ValueError, match="images must be .* N >= 2"):
        diversity(net, images[:1])
