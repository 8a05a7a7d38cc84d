"""Measuring sample quality with a classifier trained on the dataset itself: FID, KID, attribute accuracy.

- :mod:`~dlcourse.metrics.feature_net`: :class:`FeatureNet`, the small CNN whose features FID and KID compare;
- :mod:`~dlcourse.metrics.feature_training`: train it, or load it from the checkpoint cache;
- :mod:`~dlcourse.metrics.frechet`: the Frechet distance and FID (Heusel et al. 2017);
- :mod:`~dlcourse.metrics.kid`: KID, the unbiased kernel alternative (Binkowski et al. 2018);
- :mod:`~dlcourse.metrics.quality`: :func:`evaluate_samples`, FID and KID next to the reals-vs-reals baseline;
- :mod:`~dlcourse.metrics.attributes`: attribute accuracy (prompt adherence), predicted distribution, confidence;
- :mod:`~dlcourse.metrics.prompts`: prompt adherence and diversity of text-conditioned samples;
- :mod:`~dlcourse.metrics.concept`: the hollow-shape detector that scores a fine-tuned concept;
- :mod:`~dlcourse.metrics.reconstruction`: PSNR of an autoencoder's reconstructions;
- :mod:`~dlcourse.metrics.cost`: FLOPs of a call and the activation memory of a training step.

Taught in notebooks/03_ddpm_training.ipynb, "Measuring quality: FID against a baseline"; used again in
notebooks/04_ddim_sampling.ipynb, "Steps x sampler, measured".
"""

from dlcourse.metrics.attributes import attribute_accuracy, attribute_distribution, confident_fraction
from dlcourse.metrics.concept import concept_examples, concept_rate, load_concept_detector
from dlcourse.metrics.cost import activation_bytes, forward_flops
from dlcourse.metrics.feature_net import FeatureNet, compute_features, predict_probabilities
from dlcourse.metrics.feature_training import load_feature_net, train_feature_net
from dlcourse.metrics.frechet import FewSamplesWarning, feature_statistics, fid, frechet_distance
from dlcourse.metrics.kid import KID, kid, polynomial_mmd2
from dlcourse.metrics.prompts import diversity, prompt_adherence
from dlcourse.metrics.quality import Distances, QualityReport, evaluate_samples, feature_distances, reals_baseline
from dlcourse.metrics.reconstruction import psnr

__all__ = [
    "KID",
    "Distances",
    "FeatureNet",
    "FewSamplesWarning",
    "QualityReport",
    "activation_bytes",
    "attribute_accuracy",
    "attribute_distribution",
    "compute_features",
    "concept_examples",
    "concept_rate",
    "confident_fraction",
    "diversity",
    "evaluate_samples",
    "feature_distances",
    "feature_statistics",
    "fid",
    "forward_flops",
    "frechet_distance",
    "kid",
    "load_concept_detector",
    "load_feature_net",
    "polynomial_mmd2",
    "predict_probabilities",
    "prompt_adherence",
    "psnr",
    "reals_baseline",
    "train_feature_net",
]
