"""Class-aware metrics of conditional generators: intra-class FID and the accuracy score.

Fake labels cycle over the classes: global sample row i (of the evaluation's
fixed latents) is generated with label i mod K, so N samples give N / K per
class (the first N mod K classes one more), whatever the number of processes.

  intra_fid   for each class c, the FID between the generated samples of label
              c and the real reference images of class c (pool3 features);
              `intra_fid` is the mean over classes, per-class values beside it.
  cas         the share of generated samples that a classifier (the digits
              judge) assigns to the class they were generated with, and
              `cas_confident`, the share both so assigned and with a top
              probability >= `digits_judge.CONFIDENCE`.

Collectives (see `exchange`): every process calls these in the same order.
"""

import numpy as np

from gan_jax import errors
from gan_jax.metrics import digits_judge
from gan_jax.metrics import exchange
from gan_jax.metrics import sharded
from gan_jax.metrics import stats


def row_labels(start, stop, num_classes):
  """int32[stop - start]: the label of each global sample row i in [start, stop), i mod K
  (the evaluations' labels; `sample.cycled_labels` is the sample CLI's, of chosen classes)."""
  return (np.arange(start, stop) % num_classes).astype(np.int32)


def fake_per_class(num_samples, num_classes):
  """int[K]: generated samples per class when labels cycle over `num_samples` rows."""
  return np.bincount(row_labels(0, num_samples, num_classes), minlength=num_classes)


def check_config(metrics, *, source, num_classes, num_samples=None):
  """Raises ConfigError when a requested class-aware metric does not fit the run.

  Args:
    metrics: the requested metric names (`parse_metrics`).
    source: config.data.source.
    num_classes: the classes the generator is conditioned on
      (`models.generator_classes`; 0: an unconditional G).
    num_samples: the generated samples (cycled over the classes), or None to skip
      the check that 'cas' gets at least one of every class.
  """
  for metric in ('intra_fid', 'cas'):
    if metric in metrics and num_classes < 1:
      raise errors.ConfigError(
          f'metric {metric!r} needs a class-conditional generator (config.model.num_classes '
          '> 0; the semi-supervised GAN\'s is unconditional); this generator is '
          'unconditional: drop it from config.eval.metrics / --metrics.')
  if 'cas' in metrics and (source != 'digits' or num_classes != digits_judge.NUM_DIGITS):
    raise errors.ConfigError(
        f'metric "cas" needs a classifier of the generated classes; one exists for '
        f'data.source digits with model.num_classes={digits_judge.NUM_DIGITS} (the digits '
        f'judge), not {source!r} with {num_classes} classes.')
  if 'cas' in metrics and num_samples is not None and num_samples < num_classes:
    raise errors.ConfigError(
        f'metric "cas" reports the accuracy of every class, and {num_samples} samples cycled '
        f'over {num_classes} classes leave classes without one: use --num_samples / '
        f'config.eval.num_samples >= {num_classes}.')


def check_intra_fid_counts(num_samples, real_labels, num_classes):
  """Raises ConfigError unless every class has >= 2 generated and >= 2 real images.

  Returns:
    int[K]: real images per class.
  """
  fake = fake_per_class(num_samples, num_classes)
  if fake.min() < 2:
    raise errors.ConfigError(
        f'intra_fid needs >= 2 generated samples per class: config.eval.num_samples / '
        f'--num_samples={num_samples} gives {fake.min()} for some of the {num_classes} '
        f'classes; use at least {2 * num_classes}.')
  real = np.bincount(np.asarray(real_labels), minlength=num_classes)[:num_classes]
  if real.min() < 2:
    short = [int(c) for c in np.flatnonzero(real < 2)]
    raise errors.ConfigError(
        f'intra_fid needs >= 2 real reference images per class; classes {short[:10]} have '
        'fewer: raise config.eval.num_reference / --num_reference or pick another '
        '--reference_split.')
  return real


def intra_fid(real, real_labels, fake, fake_labels, *, num_classes):
  """FID of each class: generated samples of label c against real images of class c.

  Classes are dealt out to the processes (class c on process c mod P).

  Args:
    real: f[N_r, D] reference features; real_labels: int[N_r].
    fake: f[N_f, D] generated features of *all* processes; fake_labels: int[N_f].
    num_classes: K.

  Returns:
    f64[K], the FID of every class, on every process.
  """
  real_labels, fake_labels = np.asarray(real_labels), np.asarray(fake_labels)

  def fids(classes):
    out = []
    for c in classes:
      mu_r, sigma_r = stats.feature_statistics(real[real_labels == c])
      mu_f, sigma_f = stats.feature_statistics(fake[fake_labels == c])
      out.append(stats.frechet_distance(mu_r, sigma_r, mu_f, sigma_f))
    return out

  return sharded.dealt_out(num_classes, fids)


def classification_accuracy(probs, labels, *, num_classes,
                            confidence=digits_judge.CONFIDENCE):
  """The classification accuracy score of samples split over processes.

  Args:
    probs: f[N_p, K] the classifier's class probabilities of this process's samples.
    labels: int[N_p] the labels they were generated with.
    num_classes: K.
    confidence: the top probability a sample needs for `cas_confident`.

  Returns:
    ({'cas': share classified as their label, 'cas_confident': share so
      classified with top probability >= confidence},
     f64[K] the accuracy of each class), on every process.
  """
  probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
  right = probs.argmax(axis=1) == labels
  sure = right & (probs.max(axis=1) >= confidence)
  per_class = np.stack([np.bincount(labels, weights=w.astype(np.float64),
                                    minlength=num_classes)
                        for w in (np.ones(len(labels)), right, sure)])
  counts = exchange.sum_across(per_class)  # [3, K]: samples, right, right and sure
  total = counts.sum(axis=1)
  results = {'cas': float(total[1] / total[0]), 'cas_confident': float(total[2] / total[0])}
  return results, counts[1] / np.maximum(counts[0], 1)
