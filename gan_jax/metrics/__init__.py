"""Sample-quality metrics: FID / IS / KID / precision-recall and offline proxies.

Modules:
  inception.py  pytorch-fid's FID InceptionV3 in Flax, a torch-free `.pth` reader,
                weight conversion / loading, `extract_features`.
  stats.py      FID, KID, IS, precision / recall on feature arrays (numpy float64).
  proxies.py    offline metrics: digits classifier (FD, class coverage) and the
                toy-mixture mode metrics.
  evaluator.py  `make_evaluator(config, *, data_shape)` and cached reference features.
  cache.py      the cache folder and keyed `.npz` files.

Public API:
  feature_statistics(features) -> (mu, sigma)
  frechet_distance(mu1, sigma1, mu2, sigma2) -> float
  kernel_inception_distance(real, fake, *, subset_size=1000, num_subsets=100, seed=0)
      -> (mean, std)
  inception_score(logits, *, splits=10) -> (mean, std)
  precision_recall(real, fake, *, k=3) -> (precision, recall)
  make_evaluator(config, *, data_shape) -> evaluator(generate, *, seed) -> dict[str, float]
"""

from gan_jax.metrics import inception
from gan_jax.metrics import proxies
from gan_jax.metrics.evaluator import Evaluator
from gan_jax.metrics.evaluator import make_evaluator
from gan_jax.metrics.evaluator import METRICS
from gan_jax.metrics.evaluator import parse_metrics
from gan_jax.metrics.evaluator import reference_features
from gan_jax.metrics.proxies import toy_mode_metrics
from gan_jax.metrics.stats import feature_statistics
from gan_jax.metrics.stats import frechet_distance
from gan_jax.metrics.stats import inception_score
from gan_jax.metrics.stats import kernel_inception_distance
from gan_jax.metrics.stats import precision_recall

__all__ = [
    'Evaluator', 'METRICS', 'feature_statistics', 'frechet_distance', 'inception',
    'inception_score', 'kernel_inception_distance', 'make_evaluator', 'parse_metrics',
    'precision_recall', 'proxies', 'reference_features', 'toy_mode_metrics',
]
