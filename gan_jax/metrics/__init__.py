"""Sample-quality metrics: FID / IS / KID / precision-recall / density-coverage and
offline proxies.

Modules:
  stats.py              FID, KID, IS, precision / recall, density / coverage on feature
                        arrays (numpy float64).
  inception.py          `extract_features`: pool3 / logits of images, as pytorch-fid.
  inception_net.py      pytorch-fid's FID InceptionV3 network in Flax.
  inception_weights.py  finding, verifying and converting pytorch-fid's weights file.
  torch_pickle.py       a restricted, torch-free reader of `.pth` state dicts.
  digits_judge.py       the calibrated digits classifier behind the digits proxies
                        and `gan_jax.bench.digits_check`.
  toy_modes.py          mode-collapse metrics of the 2-D toy mixtures.
  reference.py          features and statistics of the real reference set, cached.
  sampling.py           the evaluation latents; one process's share of the samples.
  exchange.py           what processes share: row shares, exact gathers and sums.
  sharded.py            FID / IS / KID / PR / DC of samples split over processes.
  class_metrics.py      intra-class FID and the classification accuracy score.
  classifier.py         the discriminator as a classifier: its softmax, accuracy on a
                        labelled split ('accuracy'; runs whose D has class logits).
  protocols.py          each metric's settings and its description for the record.
  evaluator.py          `make_evaluator(config, *, data_shape)`.
  cache.py              the cache folder and keyed `.npz` files.

Public API:
  feature_statistics(features) -> (mu, sigma)
  frechet_distance(mu1, sigma1, mu2, sigma2) -> float
  kernel_inception_distance(real, fake, *, subset_size=1000, num_subsets=100, seed=0)
      -> (mean, std)
  inception_score(logits, *, splits=10) -> (mean, std)
  precision_recall(real, fake, *, k=3) -> (precision, recall)
  density_coverage(real, fake, *, k=5) -> (density, coverage)
  class_metrics.check_config(metrics, *, source, num_classes, num_samples=None)  (ConfigError if unfit)
  toy_mode_metrics(samples, centers, std, *, num_std=3.0) -> dict
  digits_judge.fitted_judge() -> DigitsJudge (the digits proxies' classifier)
  parse_metrics(spec, *, flag='--config.eval.metrics') -> tuple[str, ...]
  make_evaluator(config, *, data_shape) -> evaluator(generate, *, seed) -> dict[str, float]
      (`evaluator.run(generate, *, seed)` -> {'results', 'per_class'})
"""

from gan_jax.metrics import class_metrics
from gan_jax.metrics import digits_judge
from gan_jax.metrics import inception
from gan_jax.metrics.evaluator import Evaluator
from gan_jax.metrics.evaluator import make_evaluator
from gan_jax.metrics.evaluator import METRICS
from gan_jax.metrics.evaluator import parse_metrics
from gan_jax.metrics.reference import reference_features
from gan_jax.metrics.stats import density_coverage
from gan_jax.metrics.stats import feature_statistics
from gan_jax.metrics.stats import frechet_distance
from gan_jax.metrics.stats import inception_score
from gan_jax.metrics.stats import kernel_inception_distance
from gan_jax.metrics.stats import precision_recall
from gan_jax.metrics.toy_modes import toy_mode_metrics

__all__ = [
    'Evaluator', 'METRICS', 'class_metrics', 'density_coverage', 'digits_judge',
    'feature_statistics',
    'frechet_distance', 'inception', 'inception_score', 'kernel_inception_distance',
    'make_evaluator', 'parse_metrics', 'precision_recall', 'reference_features',
    'toy_mode_metrics',
]
