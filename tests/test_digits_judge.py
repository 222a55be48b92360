"""Tests of gan_jax.metrics.digits_judge: the calibrated digits classifier behind the
digits proxies and bench/digits_check.

The judge is fitted once per test process (`fitted_judge()` is cached; about a
second). Its pieces are checked against closed forms (pairwise coupling), an
independent minimiser (Platt's sigmoids) and libsvm's own Platt probabilities.
"""

import itertools
import warnings

import numpy as np
import pytest
from scipy import ndimage
from scipy import optimize

from gan_jax.data import digits as digits_lib
from gan_jax.metrics import digits_judge
from gan_jax.metrics import stats


@pytest.fixture(scope='module')
def judge():
  return digits_judge.fitted_judge()


@pytest.fixture(scope='module')
def splits():
  """{'train': (images f32[N, 8, 8, 1] in [-1, 1], labels), 'test': ...}."""
  out = {}
  for split in ('train', 'test'):
    images, labels = digits_lib.digits_split(split)
    out[split] = ((images / 8.0 - 1.0)[..., None].astype(np.float32), labels)
  return out


def _fd(reference, features):
  return stats.frechet_distance(*stats.feature_statistics(reference),
                                *stats.feature_statistics(features))


# ----------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------

def test_images_become_8x8_block_means_on_the_0_to_16_scale():
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (3, 32, 32, 3))
  want = ((images.mean(axis=-1) + 1) * 8).reshape(3, 8, 4, 8, 4).mean(axis=(2, 4))
  np.testing.assert_allclose(digits_judge.to_digits_scale(images), want, rtol=0, atol=1e-12)
  native = rng.integers(0, 17, (2, 8, 8)).astype(np.float64)
  np.testing.assert_array_equal(
      digits_judge.to_digits_scale(digits_judge.from_digits_scale(native)), native)


def test_sizes_that_are_not_multiples_of_8_are_area_averaged():
  columns = np.linspace(-1, 1, 12)                 # 12 columns -> 8 cells of 1.5 columns
  images = np.broadcast_to(columns, (1, 12, 12))
  got = digits_judge.to_digits_scale(images)[0, 0]
  a = (columns + 1) * 8
  want = [(a[3 * (k // 2)] + 0.5 * a[3 * (k // 2) + 1]) / 1.5 if k % 2 == 0 else
          (0.5 * a[3 * (k // 2) + 1] + a[3 * (k // 2) + 2]) / 1.5 for k in range(8)]
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_values_outside_minus_one_to_one_are_clipped():
  images = np.full((1, 8, 8, 1), 3.0)
  assert digits_judge.to_digits_scale(images).max() == 16.0
  assert digits_judge.to_digits_scale(-images).min() == 0.0


# ----------------------------------------------------------------------------
# Calibration pieces
# ----------------------------------------------------------------------------

def test_pairwise_coupling_recovers_the_probabilities_behind_the_pairs():
  p = np.random.default_rng(1).dirichlet(np.ones(10), size=50)
  pairs = np.array(list(itertools.combinations(range(10), 2)))
  r = p[:, pairs[:, 0]] / (p[:, pairs[:, 0]] + p[:, pairs[:, 1]])  # consistent pairs
  np.testing.assert_allclose(digits_judge._couple(r), p, rtol=0, atol=1e-10)  # pylint: disable=protected-access


def test_platt_sigmoids_match_a_general_minimiser():
  rng = np.random.default_rng(2)
  values = np.concatenate([rng.normal(1.5, 1.0, (2, 60)), rng.normal(-1.0, 1.2, (2, 90))], 1)
  positive = np.zeros((2, 150), bool)
  positive[:, :60] = True
  values[1, ::3] = np.nan                            # the second row uses two thirds
  got = digits_judge._fit_platt(values, positive)    # pylint: disable=protected-access
  for row in range(2):
    keep = ~np.isnan(values[row])
    f, pos = values[row, keep], positive[row, keep]
    t = np.where(pos, (pos.sum() + 1) / (pos.sum() + 2), 1 / ((~pos).sum() + 2))

    def nll(ab, f=f, t=t):
      p = 1 / (1 + np.exp(ab[0] * f + ab[1]))
      return -np.sum(t * np.log(p) + (1 - t) * np.log(1 - p))

    want = optimize.minimize(nll, [0.0, 0.0], method='Nelder-Mead',
                             options=dict(xatol=1e-10, fatol=1e-12, maxiter=10000)).x
    np.testing.assert_allclose(got[row], want, rtol=0, atol=1e-5)


def test_probabilities_agree_with_libsvm_platt_scaling(judge, splits):
  from sklearn import svm  # pylint: disable=g-import-not-at-top
  (train, labels), (test, _) = splits['train'], splits['test']
  pixels = lambda x: (x[..., 0].reshape(len(x), 64) + 1) / 2
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', FutureWarning)  # deprecated in scikit-learn 1.9
    try:
      libsvm = svm.SVC(probability=True, random_state=0).fit(pixels(train), labels)
    except TypeError:
      pytest.fail('this scikit-learn has no SVC(probability=True) to compare the judge with: '
                  'compare with its replacement, or keep scikit-learn below 1.11 (pyproject.toml)')
  ours, theirs = judge.probabilities(test), libsvm.predict_proba(pixels(test))
  # Same SVC and Platt + coupling method; only the cross-validation folds differ.
  assert np.abs(ours - theirs).max() < 0.1
  assert abs(digits_judge.confident_share(ours) - digits_judge.confident_share(theirs)) < 0.02


def test_fitting_is_deterministic(judge):
  images, labels = digits_lib.digits_split('train')
  assert digits_judge.fit_digits_judge(images, labels).digest == judge.digest


# ----------------------------------------------------------------------------
# The fitted judge
# ----------------------------------------------------------------------------

def test_real_test_digits_are_classified_and_mostly_confident(judge, splits):
  test, labels = splits['test']
  probs = judge.probabilities(test)
  np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)
  assert (probs.argmax(axis=1) == labels).mean() >= 0.97
  assert judge.test_accuracy >= 0.97
  assert 0.75 <= judge.test_confident_share <= 0.95
  assert judge.train_confident_share > judge.test_confident_share  # it saw those
  assert np.all(np.abs(digits_judge.class_shares(probs) - 0.1) < 0.02)


def test_noise_gets_no_confident_class(judge):
  noise = np.random.default_rng(3).uniform(-1, 1, (400, 8, 8, 1))
  probs = judge.probabilities(noise)
  assert digits_judge.confident_share(probs) < 0.02 and probs.min() >= 0.0


def test_frechet_distance_separates_real_digits_from_noise_and_blur(judge, splits):
  (train, _), (test, _) = splits['train'], splits['test']
  reference = judge.features(train)
  blurred = np.stack([ndimage.gaussian_filter(x[..., 0], 1.0) for x in test])
  noise = np.random.default_rng(4).uniform(-1, 1, test.shape)
  fd_real = _fd(reference, judge.features(test))
  fd_blur = _fd(reference, judge.features(blurred))
  fd_noise = _fd(reference, judge.features(noise))
  assert fd_blur > 10 * fd_real and fd_noise > 50 * fd_real


def test_probabilities_from_features_match_the_direct_call(judge, splits):
  test, _ = splits['test']
  features, probs = judge(test[:20])
  np.testing.assert_array_equal(judge.probabilities_from_features(features), probs)


# ----------------------------------------------------------------------------
# Shares and coverage
# ----------------------------------------------------------------------------

def test_shares_of_hand_built_probabilities():
  probs = np.array([[0.95, 0.05], [0.5, 0.5], [0.1, 0.9], [0.2, 0.8]])
  assert digits_judge.confident_share(probs) == 0.5
  np.testing.assert_array_equal(digits_judge.class_shares(probs), [0.5, 0.5])


def test_class_coverage_conventions():
  probs = np.eye(10)[np.arange(200) % 10] * 0.95 + 0.005
  assert digits_judge.class_coverage(probs) == {'proxy_coverage_kl': pytest.approx(0.0),
                                                'proxy_confident': 1.0}
  unsure = np.full((30, 10), 0.1)
  assert digits_judge.class_coverage(unsure) == {'proxy_coverage_kl': pytest.approx(np.log(10)),
                                                 'proxy_confident': 0.0}
