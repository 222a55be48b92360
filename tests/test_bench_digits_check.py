"""Tests of gan_jax.bench.digits_check: the calibrated check passes real held-out
digits and fails noise and a one-class generator, and reports the same confident
share as the evaluator's digits proxy for the same samples.
"""

import numpy as np
import pytest

from configs import dcgan_digits
from gan_jax import errors
from gan_jax import metrics
from gan_jax import sample
from gan_jax.bench import digits_check
from gan_jax.data import digits as digits_lib
from gan_jax.metrics import digits_judge


def _as_images(digits):
  """f[N, 8, 8] on the 0..16 scale -> f32[N, 8, 8, 1] in [-1, 1]."""
  return digits_judge.from_digits_scale(digits)


@pytest.fixture(scope='module')
def real_test():
  return _as_images(digits_lib.digits_split('test')[0])


def test_real_held_out_digits_pass(real_test):
  # The 'test' split as a "generator", upsampled to 32x32 as a 32 px run's data is.
  as_generated = digits_lib.digits_images('test', size=(32, 32))
  result = digits_check.check_samples(as_generated, real_test=real_test, logistic=False)
  assert result['passed'] and result['judge']['classes_balanced']
  assert result['judge']['ratio'] >= digits_check.MIN_RATIO


def test_noise_fails(real_test):
  noise = np.random.default_rng(0).uniform(-1, 1, (500, 8, 8, 1)).astype(np.float32)
  result = digits_check.check_samples(noise, real_test=real_test, logistic=False)
  assert not result['passed'] and result['judge']['generated_confident_share'] < 0.02


def test_a_confident_one_class_generator_fails(real_test):
  images, labels = digits_lib.digits_split('train')
  threes = _as_images(images[labels == 3])
  result = digits_check.check_samples(threes, real_test=real_test, logistic=False)
  assert result['judge']['ratio'] >= digits_check.MIN_RATIO  # confident enough ...
  assert result['judge']['class_shares'][3] > 0.95               # ... but all threes
  assert not result['judge']['classes_balanced'] and not result['passed']


def _pool_generator(pool):
  """Returns pool images chosen deterministically from z."""
  def generate(z):
    return pool[(np.abs(z[:, 0]) * 1e6).astype(np.int64) % len(pool)]
  generate.step, generate.standing_stats = 1234, None   # as load_generator's
  return generate


def test_the_check_and_the_digits_proxy_report_the_same_confident_share(tmp_path, monkeypatch):
  config = dcgan_digits.get_config()
  config.eval.num_samples = 300
  images, _ = digits_lib.digits_split('test')
  # Real digits, blurred a little so that some are not confident.
  pool = _as_images(0.6 * images + 0.2 * np.roll(images, 1, axis=2) +
                    0.2 * np.roll(images, 1, axis=1))
  generate = _pool_generator(pool)
  monkeypatch.setattr(sample, 'load_generator', lambda workdir, step=None, **_: (config, generate))
  result = digits_check.run_check(str(tmp_path), num_samples=300, seed=0, logistic=False)
  evaluator = metrics.make_evaluator(config, data_shape=(8, 8, 1), cache_dir=tmp_path)
  proxy = evaluator(generate, seed=0)
  share = result['judge']['generated_confident_share']
  assert 0.05 < share < 0.95  # a share that can differ between two computations
  assert proxy['proxy_confident'] == share
  assert evaluator.protocol['proxy']['judge_test_confident_share'] == pytest.approx(
      result['judge']['real_confident_share'])  # at 8x8 both are the raw 'test' split


def test_the_report_names_the_classifiers_and_splits(real_test):
  result = digits_check.check_samples(real_test, real_test=real_test)
  result.update(workdir='runs/x', step=10, seed=0, resolution=[8, 8, 1])
  report = digits_check.format_report(result)
  assert "real 'test' split (450 digits at 8x8)" in report
  assert 'RBF SVC' in report and "'train' split" in report
  assert 'secondary (not part of the check): LogisticRegression' in report
  logistic = result['logistic_regression']['generated_confident_share']
  assert report.endswith(f'generated {logistic:.4f}') and 'PASSED: True' in report


def test_a_conditional_generator_is_checked_on_cycled_labels(tmp_path, monkeypatch):
  # Row i is drawn as class i mod 10 (the evaluator's rows), here a real 'train'
  # digit of that class: balanced and confident, as the digits are.
  config = dcgan_digits.get_config()
  config.model.num_classes = 10
  images, labels = digits_lib.digits_split('train')
  by_class = [_as_images(images[labels == c]) for c in range(10)]
  seen = []

  def generate(z, labels):
    seen.append(np.asarray(labels))
    return np.stack([by_class[c][i % len(by_class[c])] for i, c in enumerate(labels)])
  generate.step, generate.standing_stats = 7, None

  monkeypatch.setattr(sample, 'load_generator', lambda workdir, step=None, **_: (config, generate))
  result = digits_check.run_check(str(tmp_path), num_samples=300, seed=0, logistic=False)
  assert np.concatenate(seen)[:300].tolist() == [i % 10 for i in range(300)]
  np.testing.assert_allclose(result['judge']['class_shares'], 0.1, atol=0.02)
  assert result['passed']


@pytest.mark.parametrize('threshold', [float('nan'), -0.5, 1.5])
def test_a_threshold_that_is_not_a_probability_is_refused(threshold):
  with pytest.raises(errors.ConfigError, match='--threshold must be a probability'):
    digits_check.run_check('/nonexistent', threshold=threshold)


def test_a_threshold_no_real_digit_reaches_is_refused_not_scored_zero(real_test):
  # The judge's probabilities stay below 1: at 1.0 the real share was 0 and the check
  # printed a ratio of 0.
  with pytest.raises(errors.ConfigError, match=r'--threshold=1.0: no real held-out digit is '
                     r'judged that confidently, so the ratio to real digits is undefined'):
    digits_check.check_samples(real_test[:50], real_test=real_test, threshold=1.0,
                               logistic=False)
