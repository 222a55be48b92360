"""Do a digits run's samples look like digits? A classifier that never saw them decides.

  python -m gan_jax.bench.digits_check --workdir=runs/dcgan_digits [--num_samples=1000]

Protocol (issue 3's acceptance check):
  1. Fit scikit-learn's LogisticRegression on the digits *train* split at 8x8
     (values 0..16).
  2. Confident share on real data: the fraction of the held-out *test* split
     classified with probability >= 0.9.
  3. Draw `num_samples` samples from the final (EMA) generator, downsample them
     to 8x8 (mean over equal blocks, e.g. 4x4 for 32 px), map [-1, 1] back to
     the 0..16 scale, and classify them.
  4. Pass when the samples' confident share is >= 80% of the real one and every
     digit class gets between 5% and 15% of the samples.

Prints a report and exits with status 1 when the check fails.
"""

import json
import sys

from absl import app
from absl import flags
from absl import logging
import numpy as np

def to_digits_scale(images):
  """Maps generated images to the bundled digits' format.

  Args:
    images: f32[N, H, W, 1] (or [N, H, W]) in [-1, 1]; H and W multiples of 8.

  Returns:
    f64[N, 64]: 8x8 block means on the 0..16 scale, flattened like
    `sklearn.datasets.load_digits().data`.
  """
  images = np.asarray(images, np.float64)
  if images.ndim == 4:
    images = images[..., 0]
  n, h, w = images.shape
  if h % 8 or w % 8:
    raise ValueError(f'Image size {h}x{w} is not a multiple of 8; cannot block-average to 8x8.')
  blocks = images.reshape(n, 8, h // 8, 8, w // 8).mean(axis=(2, 4))
  return ((np.clip(blocks, -1, 1) + 1) * 8.0).reshape(n, 64)


def fit_classifier():
  """LogisticRegression fitted on the digits train split (8x8, 0..16)."""
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  from gan_jax.data import digits_split  # pylint: disable=g-import-not-at-top
  images, labels = digits_split('train')
  classifier = LogisticRegression(max_iter=5000)
  classifier.fit(images.reshape(len(images), 64), labels)
  return classifier


def evaluate_samples(classifier, samples_64, *, threshold=0.9):
  """Confident share and class histogram of flattened 8x8 digits-scale samples.

  Returns:
    dict with 'confident_share' (float in [0, 1]) and 'class_shares' (10 floats).
  """
  probs = classifier.predict_proba(samples_64)
  predicted = classifier.classes_[np.argmax(probs, axis=1)]
  shares = np.bincount(predicted, minlength=10)[:10] / len(predicted)
  return {'confident_share': float(np.mean(probs.max(axis=1) >= threshold)),
          'class_shares': [float(s) for s in shares]}


def run_check(workdir, *, num_samples=1000, seed=0, threshold=0.9):
  """Runs the whole protocol; returns a JSON-ready dict with 'passed'."""
  from gan_jax import sample  # pylint: disable=g-import-not-at-top
  from gan_jax.data import digits_split  # pylint: disable=g-import-not-at-top
  classifier = fit_classifier()
  test_images, test_labels = digits_split('test')
  real = evaluate_samples(classifier, test_images.reshape(len(test_images), 64),
                          threshold=threshold)
  real['accuracy'] = float(classifier.score(test_images.reshape(len(test_images), 64),
                                            test_labels))
  config, generate = sample.load_generator(workdir)
  if config.data.source != 'digits':
    raise ValueError(f'{workdir} is a {config.data.source!r} run; this check needs a digits run.')
  images = sample.generate_samples(generate, z_dim=config.model.z_dim,
                                   num_samples=num_samples, seed=seed)
  fake = evaluate_samples(classifier, to_digits_scale(images), threshold=threshold)
  ratio = fake['confident_share'] / max(real['confident_share'], 1e-12)
  balanced = all(0.05 <= s <= 0.15 for s in fake['class_shares'])
  return {
      'workdir': workdir, 'step': int(generate.step), 'num_samples': num_samples,
      'threshold': threshold, 'real_test': real, 'generated': fake,
      'confident_ratio': ratio, 'classes_within_5_to_15_percent': balanced,
      'passed': bool(ratio >= 0.8 and balanced),
  }


def format_report(result):
  """Human-readable lines for a `run_check` result."""
  real, fake = result['real_test'], result['generated']
  lines = [
      f"digits check of {result['workdir']} (step {result['step']}, "
      f"{result['num_samples']} samples, threshold {result['threshold']})",
      f"  classifier accuracy on real test split: {real['accuracy']:.4f}",
      f"  confident share, real test split:  {real['confident_share']:.4f}",
      f"  confident share, generated:        {fake['confident_share']:.4f}",
      f"  ratio generated / real:            {result['confident_ratio']:.4f}  (need >= 0.80)",
      '  class shares of generated samples: ' +
      ' '.join(f'{d}:{s:.3f}' for d, s in enumerate(fake['class_shares'])) +
      '  (need each in [0.05, 0.15])',
      f"  PASSED: {result['passed']}",
  ]
  return '\n'.join(lines)


def _define_flags():
  """Command-line flags, defined only when run as a program."""
  flags.DEFINE_string('workdir', 'runs/dcgan_digits', 'A digits training run folder.')
  flags.DEFINE_integer('num_samples', 1000, 'Generated samples to classify.')
  flags.DEFINE_integer('seed', 0, 'Seed of the latent vectors.')
  flags.DEFINE_float('threshold', 0.9, 'Confidence threshold.')
  flags.DEFINE_string('json', None, 'Optional path for the result as JSON.')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
  f = flags.FLAGS
  result = run_check(f.workdir, num_samples=f.num_samples, seed=f.seed, threshold=f.threshold)
  print(format_report(result))
  if f.json:
    with open(f.json, 'w', encoding='utf-8') as out:
      json.dump(result, out, indent=2)
  sys.exit(0 if result['passed'] else 1)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
