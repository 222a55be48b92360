"""Tests of gan_jax.metrics stats and proxies: FID / KID / IS against the
pytorch-fid / torch-fidelity reference values of ../shared/fixtures/fid_inception
(override with $GAN_JAX_FID_FIXTURES), properties of every metric, the digits
classifier and the toy mode metrics.
"""

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from gan_jax import metrics
from gan_jax.data import digits as digits_lib
from gan_jax.data import toy
from gan_jax.metrics import cache
from gan_jax.metrics import proxies
from gan_jax.metrics import stats

FIXTURES = Path(os.environ.get('GAN_JAX_FID_FIXTURES') or
                Path(__file__).resolve().parents[2] / 'shared' / 'fixtures' / 'fid_inception')
needs_fixtures = pytest.mark.skipif(
    not (FIXTURES / 'metrics_reference.json').is_file(),
    reason=f'FID fixtures not found at {FIXTURES} (set GAN_JAX_FID_FIXTURES)')


def _rel(value, ref):
  return abs(value - ref) / abs(ref)


@pytest.fixture(scope='module')
def fixture():
  with np.load(FIXTURES / 'metrics_features.npz') as z:
    arrays = {k: z[k] for k in z.files}
  with open(FIXTURES / 'metrics_reference.json', encoding='utf-8') as f:
    return arrays, json.load(f)


# ----------------------------------------------------------------------------
# Reference values (pytorch-fid 0.3.0 / torch-fidelity 0.4.0)
# ----------------------------------------------------------------------------

@needs_fixtures
def test_statistics_and_fid_match_pytorch_fid(fixture):
  arrays, ref = fixture
  mu_r, sigma_r = metrics.feature_statistics(arrays['real'])
  mu_f, sigma_f = metrics.feature_statistics(arrays['fake'])
  np.testing.assert_allclose(mu_r, arrays['mu_real'], rtol=0, atol=1e-15)
  np.testing.assert_allclose(sigma_f, arrays['sigma_fake'], rtol=0, atol=1e-14)
  fid = metrics.frechet_distance(mu_r, sigma_r, mu_f, sigma_f)
  swapped = metrics.frechet_distance(mu_f, sigma_f, mu_r, sigma_r)
  print('FID rel diff', _rel(fid, ref['fid']['value']),
        'swapped', _rel(swapped, ref['fid']['value']))
  assert _rel(fid, ref['fid']['value']) <= 1e-8   # README suggests 1e-8; the brief asks 1e-6
  assert _rel(swapped, ref['fid']['value']) <= 1e-8


@needs_fixtures
def test_kid_one_subset_matches_kernel_mmd(fixture):
  arrays, ref = fixture
  # One subset of all 1500 rows is a permutation of the first 1500 rows; the
  # unbiased estimator does not depend on the order.
  mean, std = metrics.kernel_inception_distance(
      arrays['real'][:1500], arrays['fake'][:1500], subset_size=1500, num_subsets=1)
  assert _rel(mean, ref['kid']['value']) <= 1e-10 and std == 0.0


@needs_fixtures
def test_kid_subset_sampling_matches_torch_fidelity(fixture):
  arrays, ref = fixture
  procedure = ref['kid_torch_fidelity_subset_procedure']
  one = procedure['subsets_1_size_1500_rng_seed_2020']
  # The rows our sampling draws are torch-fidelity's rows.
  rng = np.random.RandomState(2020)
  np.testing.assert_array_equal(rng.choice(2000, 1500, replace=False),
                                arrays['kid_rng2020_real_rows'])
  np.testing.assert_array_equal(rng.choice(1500, 1500, replace=False),
                                arrays['kid_rng2020_fake_rows'])
  mean, std = metrics.kernel_inception_distance(arrays['real'], arrays['fake'],
                                                subset_size=1500, num_subsets=1, seed=2020)
  assert _rel(mean, one['kernel_inception_distance_mean']) <= 1e-10 and std == 0.0
  default = procedure['subsets_100_size_1000_rng_seed_2020 (torch-fidelity defaults)']
  mean, std = metrics.kernel_inception_distance(arrays['real'], arrays['fake'], seed=2020)
  print('KID default rel diffs', _rel(mean, default['kernel_inception_distance_mean']),
        _rel(std, default['kernel_inception_distance_std']))
  assert _rel(mean, default['kernel_inception_distance_mean']) <= 1e-10
  assert _rel(std, default['kernel_inception_distance_std']) <= 1e-8


@needs_fixtures
def test_inception_score_matches_torch_fidelity(fixture):
  arrays, ref = fixture
  value, std = metrics.inception_score(arrays['logits'], splits=1, shuffle=False)
  assert _rel(value, ref['inception_score']['value']) <= 1e-10 and std == 0.0
  default = ref['inception_score']['torch_fidelity_defaults_splits_10_shuffle_rng_seed_2020']
  mean, std = metrics.inception_score(arrays['logits'])  # splits=10, shuffled, seed 2020
  assert _rel(mean, default['inception_score_mean']) <= 1e-10
  assert _rel(std, default['inception_score_std']) <= 1e-8


# ----------------------------------------------------------------------------
# Properties
# ----------------------------------------------------------------------------

def _gaussian(n, d, seed, shift=0.0):
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((d, d)) / np.sqrt(d)
  return (rng.standard_normal((n, d)) @ a.T + shift).astype(np.float32)


def test_fid_of_a_set_with_itself_is_zero_and_fid_is_symmetric():
  x, y = _gaussian(400, 16, 0), _gaussian(300, 16, 1, shift=0.3)
  mx, sx = metrics.feature_statistics(x)
  my, sy = metrics.feature_statistics(y)
  assert abs(metrics.frechet_distance(mx, sx, mx, sx)) <= 1e-10 * np.trace(sx)
  forward, backward = metrics.frechet_distance(mx, sx, my, sy), metrics.frechet_distance(
      my, sy, mx, sx)
  assert forward > 0.1 and abs(forward - backward) <= 1e-10 * forward


def test_fid_closed_form_for_diagonal_covariances():
  a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.0])  # one singular
  mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  got = metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
  assert abs(got - expected) <= 1e-12 * expected


def test_fid_with_fewer_samples_than_dimensions_is_finite():
  x, y = _gaussian(20, 64, 2), _gaussian(30, 64, 3)  # rank-deficient covariances
  value = metrics.frechet_distance(*metrics.feature_statistics(x), *metrics.feature_statistics(y))
  assert np.isfinite(value) and value > 0


def test_kid_of_the_same_distribution_is_zero_on_average():
  same, shifted = [], []
  for seed in range(12):
    x = np.random.default_rng(seed).standard_normal((300, 8))
    y = np.random.default_rng(100 + seed).standard_normal((300, 8))
    same.append(metrics.kernel_inception_distance(x, y, subset_size=100, num_subsets=10,
                                                  seed=seed)[0])
    shifted.append(metrics.kernel_inception_distance(x, y + 0.5, subset_size=100,
                                                     num_subsets=10, seed=seed)[0])
  standard_error = np.std(same) / np.sqrt(len(same))
  assert abs(np.mean(same)) <= 3 * standard_error + 1e-12
  assert min(shifted) > 10 * (abs(np.mean(same)) + standard_error)
  assert min(same) < 0 < max(same)  # unbiased: negative values occur


def test_kid_whole_set_and_per_subset_computations_agree():
  x, y = _gaussian(50, 6, 4), _gaussian(40, 6, 5, shift=0.2)
  rng = np.random.RandomState(3)
  rows = [(rng.choice(50, 30, replace=False), rng.choice(40, 30, replace=False))
          for _ in range(7)]
  rows_x, rows_y = np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])
  x64, y64 = x.astype(np.float64), y.astype(np.float64)
  whole = stats._kid_all_subsets(x64, y64, rows_x, rows_y)  # pylint: disable=protected-access
  each = [stats._polynomial_mmd2(x64[a], y64[b])  # pylint: disable=protected-access
          for a, b in zip(rows_x, rows_y)]
  np.testing.assert_allclose(whole, each, rtol=1e-12, atol=1e-15)


def test_kid_subset_larger_than_the_sets_is_clipped_with_a_warning(caplog):
  x, y = _gaussian(40, 4, 6), _gaussian(30, 4, 7)
  with caplog.at_level(logging.WARNING):
    clipped = metrics.kernel_inception_distance(x, y, subset_size=1000, num_subsets=3)
  assert 'using 30' in caplog.text
  assert clipped == metrics.kernel_inception_distance(x, y, subset_size=30, num_subsets=3)
  with pytest.raises(ValueError, match='at least 2'):
    metrics.kernel_inception_distance(x[:1], y)


def test_inception_score_extremes():
  uniform = np.zeros((50, 10))
  assert metrics.inception_score(uniform, splits=5)[0] == pytest.approx(1.0, abs=1e-12)
  confident = np.full((100, 10), -50.0)
  confident[np.arange(100), np.arange(100) % 10] = 50.0  # each class equally often
  mean, std = metrics.inception_score(confident, splits=10, shuffle=False)
  assert mean == pytest.approx(10.0, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)
  with pytest.raises(ValueError, match='splits'):
    metrics.inception_score(uniform[:5], splits=10)


def test_precision_recall_identical_shifted_and_brute_force():
  real, fake = _gaussian(300, 8, 8), _gaussian(250, 8, 9)
  assert metrics.precision_recall(real, real) == (1.0, 1.0)
  p_near, r_near = metrics.precision_recall(real, real + 0.1)
  p_far, r_far = metrics.precision_recall(real, real + 3.0)
  assert p_far < p_near < 1.0 + 1e-12 and r_far < r_near and p_far < 0.2 and r_far < 0.2

  def brute(a, b, k=3):
    d = lambda u, v: ((u[:, None, :] - v[None, :, :]) ** 2).sum(-1)
    ra, rb = np.sort(d(a, a), axis=1)[:, k], np.sort(d(b, b), axis=1)[:, k]
    return (d(b, a) <= ra[None]).any(1).mean(), (d(a, b) <= rb[None]).any(1).mean()

  # Small blocks force several padded blocks per set.
  got = metrics.precision_recall(real, fake, block_size=64)
  np.testing.assert_allclose(got, brute(real.astype(np.float64), fake.astype(np.float64)))
  with pytest.raises(ValueError, match='more than 3'):
    metrics.precision_recall(real[:3], fake)


# ----------------------------------------------------------------------------
# Offline proxies
# ----------------------------------------------------------------------------

def test_toy_mode_metrics_perfect_collapsed_and_empty():
  centers, std = toy.mixture('grid')
  rng = np.random.default_rng(0)
  perfect = np.repeat(centers, 40, axis=0) + 0.5 * std * rng.standard_normal((25 * 40, 2))
  out = metrics.toy_mode_metrics(perfect, centers, std)
  assert out == {'modes_captured': 25, 'high_quality': 1.0, 'reverse_kl': pytest.approx(0.0)}
  collapsed = centers[3] + 0.5 * std * rng.standard_normal((500, 2))
  out = metrics.toy_mode_metrics(collapsed, centers, std)
  assert out['modes_captured'] == 1 and out['reverse_kl'] == pytest.approx(np.log(25))
  far = np.full((10, 2), 1.0)  # between modes: no high-quality sample
  out = metrics.toy_mode_metrics(far, centers, std)
  assert out == {'modes_captured': 0, 'high_quality': 0.0,
                 'reverse_kl': pytest.approx(np.log(25))}


def test_toy_reverse_kl_ignores_empty_modes_and_low_quality_samples():
  centers, std = toy.mixture('ring')  # 8 modes
  good = np.concatenate([np.repeat(centers[:4], 10, axis=0)])  # 4 modes, equal counts
  off = centers[5] + 10 * std  # nearest mode 5 but not high quality
  out = metrics.toy_mode_metrics(np.concatenate([good, off[None]]), centers, std)
  assert out['modes_captured'] == 4
  assert out['high_quality'] == pytest.approx(40 / 41)
  assert out['reverse_kl'] == pytest.approx(np.log(2))  # 0 log 0 = 0 for the empty modes


def test_class_coverage_conventions():
  probs = np.eye(10)[np.arange(200) % 10] * 0.95 + 0.005
  assert proxies.class_coverage(probs) == {'proxy_coverage_kl': pytest.approx(0.0),
                                           'proxy_confident': 1.0}
  unsure = np.full((30, 10), 0.1)
  assert proxies.class_coverage(unsure) == {'proxy_coverage_kl': pytest.approx(np.log(10)),
                                            'proxy_confident': 0.0}


@pytest.fixture(scope='module')
def classifier_cache(tmp_path_factory):
  return tmp_path_factory.mktemp('cache')


@pytest.fixture(scope='module')
def classifier(classifier_cache):
  return proxies.digits_classifier((32, 32), cache_dir=classifier_cache)


def test_digits_classifier_is_accurate_and_cached(classifier, classifier_cache):
  assert classifier.test_accuracy >= 0.94
  cached = list(classifier_cache.glob('digits_classifier-32x32-*.npz'))
  assert len(cached) == 1
  again = proxies.digits_classifier((32, 32), cache_dir=classifier_cache)
  for k in classifier.params:
    np.testing.assert_array_equal(again.params[k], classifier.params[k])
  assert again.test_accuracy == classifier.test_accuracy


def test_digits_proxy_separates_real_digits_from_noise(classifier):
  real = digits_lib.digits_images('test', size=(32, 32))
  features, probs = classifier(real)
  coverage = proxies.class_coverage(probs)
  assert coverage['proxy_confident'] >= 0.85 and coverage['proxy_coverage_kl'] < 0.05
  noise = np.random.default_rng(0).uniform(-1, 1, real.shape).astype(np.float32)
  noise_features, noise_probs = classifier(noise)
  assert proxies.class_coverage(noise_probs)['proxy_confident'] < 0.1
  train_features, _ = classifier(digits_lib.digits_images('train', size=(32, 32)))
  ref = metrics.feature_statistics(train_features)
  fd_real = metrics.frechet_distance(*ref, *metrics.feature_statistics(features))
  fd_noise = metrics.frechet_distance(*ref, *metrics.feature_statistics(noise_features))
  assert fd_noise > 20 * fd_real


def test_cache_npz_is_keyed(tmp_path):
  path = tmp_path / 'x.npz'
  cache.save_npz(path, {'a': 1, 'b': [2, 3]}, {'v': np.arange(3)})
  np.testing.assert_array_equal(cache.load_npz(path, {'b': [2, 3], 'a': 1})['v'], np.arange(3))
  assert cache.load_npz(path, {'a': 2, 'b': [2, 3]}) is None
  assert cache.load_npz(tmp_path / 'missing.npz', {}) is None


def test_unknown_metric_names_list_the_known_ones():
  assert metrics.parse_metrics(' fid, KID ,fid') == ('fid', 'kid')
  with pytest.raises(ValueError, match="known: \\['proxy', 'fid', 'is', 'kid', 'pr'\\]"):
    metrics.parse_metrics('fid,lpips')
