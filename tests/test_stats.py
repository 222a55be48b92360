"""Tests of gan_jax.metrics.stats: FID / KID / IS against the pytorch-fid /
torch-fidelity reference values of the FID fixtures (fid_fixtures.py), and
properties of every metric.
"""

import json
import logging

import numpy as np
import pytest

from gan_jax.metrics import stats

import fid_fixtures


def _rel(value, ref):
  return abs(value - ref) / abs(ref)


@pytest.fixture(scope='module')
def fixture():
  with np.load(fid_fixtures.FIXTURES / 'metrics_features.npz') as z:
    arrays = {k: z[k] for k in z.files}
  with open(fid_fixtures.FIXTURES / 'metrics_reference.json', encoding='utf-8') as f:
    return arrays, json.load(f)


# ----------------------------------------------------------------------------
# Reference values (pytorch-fid 0.3.0 / torch-fidelity 0.4.0)
# ----------------------------------------------------------------------------

@fid_fixtures.needs_fixtures
def test_statistics_and_fid_match_pytorch_fid(fixture):
  arrays, ref = fixture
  mu_r, sigma_r = stats.feature_statistics(arrays['real'])
  mu_f, sigma_f = stats.feature_statistics(arrays['fake'])
  np.testing.assert_allclose(mu_r, arrays['mu_real'], rtol=0, atol=1e-15)
  np.testing.assert_allclose(sigma_f, arrays['sigma_fake'], rtol=0, atol=1e-14)
  fid = stats.frechet_distance(mu_r, sigma_r, mu_f, sigma_f)
  swapped = stats.frechet_distance(mu_f, sigma_f, mu_r, sigma_r)
  print('FID rel diff', _rel(fid, ref['fid']['value']),
        'swapped', _rel(swapped, ref['fid']['value']))
  assert _rel(fid, ref['fid']['value']) <= 1e-8   # README suggests 1e-8; the brief asks 1e-6
  assert _rel(swapped, ref['fid']['value']) <= 1e-8


@fid_fixtures.needs_fixtures
def test_kid_one_subset_matches_kernel_mmd(fixture):
  arrays, ref = fixture
  # One subset of all 1500 rows is a permutation of the first 1500 rows; the
  # unbiased estimator does not depend on the order.
  mean, std = stats.kernel_inception_distance(
      arrays['real'][:1500], arrays['fake'][:1500], subset_size=1500, num_subsets=1)
  assert _rel(mean, ref['kid']['value']) <= 1e-10 and std == 0.0


@fid_fixtures.needs_fixtures
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
  mean, std = stats.kernel_inception_distance(arrays['real'], arrays['fake'],
                                                subset_size=1500, num_subsets=1, seed=2020)
  assert _rel(mean, one['kernel_inception_distance_mean']) <= 1e-10 and std == 0.0
  default = procedure['subsets_100_size_1000_rng_seed_2020 (torch-fidelity defaults)']
  mean, std = stats.kernel_inception_distance(arrays['real'], arrays['fake'], seed=2020)
  print('KID default rel diffs', _rel(mean, default['kernel_inception_distance_mean']),
        _rel(std, default['kernel_inception_distance_std']))
  assert _rel(mean, default['kernel_inception_distance_mean']) <= 1e-10
  assert _rel(std, default['kernel_inception_distance_std']) <= 1e-8


@fid_fixtures.needs_fixtures
def test_inception_score_matches_torch_fidelity(fixture):
  arrays, ref = fixture
  value, std = stats.inception_score(arrays['logits'], splits=1, shuffle=False)
  assert _rel(value, ref['inception_score']['value']) <= 1e-10 and std == 0.0
  default = ref['inception_score']['torch_fidelity_defaults_splits_10_shuffle_rng_seed_2020']
  mean, std = stats.inception_score(arrays['logits'])  # splits=10, shuffled, seed 2020
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
  mx, sx = stats.feature_statistics(x)
  my, sy = stats.feature_statistics(y)
  assert abs(stats.frechet_distance(mx, sx, mx, sx)) <= 1e-10 * np.trace(sx)
  forward, backward = stats.frechet_distance(mx, sx, my, sy), stats.frechet_distance(
      my, sy, mx, sx)
  assert forward > 0.1 and abs(forward - backward) <= 1e-10 * forward


def test_fid_closed_form_for_diagonal_covariances():
  a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.0])  # one singular
  mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  got = stats.frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
  assert abs(got - expected) <= 1e-12 * expected


def test_fid_with_fewer_samples_than_dimensions_is_finite():
  x, y = _gaussian(20, 64, 2), _gaussian(30, 64, 3)  # rank-deficient covariances
  value = stats.frechet_distance(*stats.feature_statistics(x), *stats.feature_statistics(y))
  assert np.isfinite(value) and value > 0


def test_kid_of_the_same_distribution_is_zero_on_average():
  same, shifted = [], []
  for seed in range(12):
    x = np.random.default_rng(seed).standard_normal((300, 8))
    y = np.random.default_rng(100 + seed).standard_normal((300, 8))
    same.append(stats.kernel_inception_distance(x, y, subset_size=100, num_subsets=10,
                                                  seed=seed)[0])
    shifted.append(stats.kernel_inception_distance(x, y + 0.5, subset_size=100,
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
    clipped = stats.kernel_inception_distance(x, y, subset_size=1000, num_subsets=3)
  assert 'using 30' in caplog.text
  assert clipped == stats.kernel_inception_distance(x, y, subset_size=30, num_subsets=3)
  with pytest.raises(ValueError, match='at least 2'):
    stats.kernel_inception_distance(x[:1], y)


def test_inception_score_extremes():
  uniform = np.zeros((50, 10))
  assert stats.inception_score(uniform, splits=5)[0] == pytest.approx(1.0, abs=1e-12)
  confident = np.full((100, 10), -50.0)
  confident[np.arange(100), np.arange(100) % 10] = 50.0  # each class equally often
  mean, std = stats.inception_score(confident, splits=10, shuffle=False)
  assert mean == pytest.approx(10.0, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)
  with pytest.raises(ValueError, match='splits'):
    stats.inception_score(uniform[:5], splits=10)


def test_precision_recall_identical_shifted_and_brute_force():
  real, fake = _gaussian(300, 8, 8), _gaussian(250, 8, 9)
  assert stats.precision_recall(real, real) == (1.0, 1.0)
  p_near, r_near = stats.precision_recall(real, real + 0.1)
  p_far, r_far = stats.precision_recall(real, real + 3.0)
  assert p_far < p_near < 1.0 + 1e-12 and r_far < r_near and p_far < 0.2 and r_far < 0.2

  def brute(a, b, k=3):
    d = lambda u, v: ((u[:, None, :] - v[None, :, :]) ** 2).sum(-1)
    ra, rb = np.sort(d(a, a), axis=1)[:, k], np.sort(d(b, b), axis=1)[:, k]
    return (d(b, a) <= ra[None]).any(1).mean(), (d(a, b) <= rb[None]).any(1).mean()

  # Small blocks force several padded blocks per set.
  got = stats.precision_recall(real, fake, block_size=64)
  np.testing.assert_allclose(got, brute(real.astype(np.float64), fake.astype(np.float64)))
  with pytest.raises(ValueError, match='more than 3'):
    stats.precision_recall(real[:3], fake)


def test_density_coverage_on_a_line_by_hand():
  # Real points 0, 1, 3, 7 with k = 1: ball radii 1, 1, 2, 4. The fake at 0.5 lies in
  # the balls of 0 and 1, the fake at 6 in that of 7, the fake at 2 in that of 3 only:
  # it is exactly on the boundary of 1's ball, which counts as outside (prdc's strict <;
  # with <= density would be 5 / 3). Every real ball then holds a fake.
  real = np.array([[0.0], [1.0], [3.0], [7.0]], np.float32)
  fake = np.array([[0.5], [6.0], [2.0]], np.float32)
  density, coverage = stats.density_coverage(real, fake, k=1)
  assert density == pytest.approx(4 / 3, rel=1e-12) and coverage == 1.0
  # Without the fake at 2 the ball of 3 is empty: 3 of 4 covered, density (2 + 1) / 2.
  assert stats.density_coverage(real, fake[:2], k=1) == pytest.approx((1.5, 0.75), rel=1e-12)


def test_density_coverage_match_clovaai_prdc():
  # prdc 0.2 (clovaai, numpy 2.4.6, scikit-learn 1.9.1), run outside this project:
  #   rng = np.random.default_rng(2026)
  #   real = rng.standard_normal((400, 16)).astype(np.float32)
  #   fake = (rng.standard_normal((300, 16)) * 1.2 + 0.3).astype(np.float32)
  #   prdc.compute_prdc(real, fake, nearest_k=5)  # float32 and float64 inputs alike
  #   -> density 0.36933333333333335, coverage 0.645
  #   prdc.compute_prdc(real, fake, nearest_k=3) -> density 0.32999999999999996, coverage 0.4375
  rng = np.random.default_rng(2026)
  real = rng.standard_normal((400, 16)).astype(np.float32)
  fake = (rng.standard_normal((300, 16)) * 1.2 + 0.3).astype(np.float32)
  np.testing.assert_allclose(stats.density_coverage(real, fake), (0.36933333333333335, 0.645),
                             rtol=1e-12)
  # Small blocks force several padded blocks per set.
  np.testing.assert_allclose(stats.density_coverage(real, fake, k=3, block_size=64),
                             (0.32999999999999996, 0.4375), rtol=1e-12)


def test_density_coverage_identical_far_and_brute_force():
  real, fake = _gaussian(300, 8, 8), _gaussian(250, 8, 9)
  assert stats.density_coverage(real, real)[1] == 1.0
  assert stats.density_coverage(real, real + 100.0) == (0.0, 0.0)
  # Every fake piled on one real point: coverage counts the real balls that point is
  # strictly inside, density the same count over k.
  piled = np.repeat(real[:1], 40, axis=0)

  def brute(a, b, k=5):
    d = lambda u, v: ((u[:, None, :] - v[None, :, :]) ** 2).sum(-1)
    radii = np.sort(d(a, a), axis=1)[:, k]
    inside = d(b, a) < radii[None]
    return inside.sum() / (k * len(b)), (d(a, b).min(axis=1) < radii).mean()

  for f in (fake, piled, fake[:1]):
    np.testing.assert_allclose(stats.density_coverage(real, f, block_size=64),
                               brute(real.astype(np.float64), f.astype(np.float64)),
                               rtol=1e-12)
  with pytest.raises(ValueError, match='more than 5 real'):
    stats.density_coverage(real[:5], fake)
  with pytest.raises(ValueError, match='at least one fake'):
    stats.density_coverage(real, fake[:0])


def test_kl_to_uniform_closed_forms():
  assert stats.kl_to_uniform([5, 5, 5, 5]) == pytest.approx(0.0, abs=1e-15)
  assert stats.kl_to_uniform([0, 7, 0, 0]) == pytest.approx(np.log(4))
  # Two of four bins equally full: KL = log(4 / 2); empty bins add nothing.
  assert stats.kl_to_uniform(np.array([3.0, 0.0, 3.0, 0.0])) == pytest.approx(np.log(2))


def _is_by_hand(logits, splits, seed=2020):
  """Inception Score from the definition with 0 log 0 = 0 (scipy's xlogy), rows
  permuted as torch-fidelity does."""
  from scipy import special  # pylint: disable=g-import-not-at-top
  z = np.asarray(logits, np.float64)[np.random.RandomState(seed).permutation(len(logits))]
  p = special.softmax(z, axis=1)
  scores = []
  for i in range(splits):
    part = p[i * len(p) // splits:(i + 1) * len(p) // splits]
    q = part.mean(axis=0, keepdims=True)
    scores.append(np.exp((special.xlogy(part, part) - special.xlogy(part, q)).sum(1).mean()))
  return np.mean(scores), np.std(scores)


@pytest.mark.parametrize('case', ['underflow', 'minus_inf'])
def test_inception_score_takes_0_log_0_as_0(case):
  # A probability that underflows to 0 (or a -inf logit) gave NaN: 0 * (-inf).
  from gan_jax.metrics import sharded  # pylint: disable=g-import-not-at-top
  if case == 'underflow':
    logits = np.random.RandomState(3).randn(40, 10)
    logits[:, 9] = -800.0
  else:
    logits = np.full((40, 10), -np.inf)
    logits[np.arange(40), np.arange(40) % 5] = 0.0
  expected = _is_by_hand(logits, splits=4)
  assert np.all(np.isfinite(expected)) and expected[0] > 1
  with np.errstate(divide='raise', invalid='raise'):  # no log 0 or 0 * inf on the way
    np.testing.assert_allclose(stats.inception_score(logits, splits=4), expected, rtol=1e-12)
    np.testing.assert_allclose(
        sharded.inception_score(logits, start=0, num_rows=40, splits=4), expected, rtol=1e-12)


def test_non_finite_features_are_refused_by_every_distance():
  good = np.random.default_rng(0).standard_normal((20, 4))
  bad = good.copy()
  bad[3, 1] = np.nan
  with pytest.raises(ValueError, match='1 of 80 values are NaN or infinite'):
    stats.feature_statistics(bad)
  mu, sigma = stats.feature_statistics(good)
  with pytest.raises(ValueError, match='sigma2: 4 of 16'):
    stats.frechet_distance(mu, sigma, mu, np.where(np.eye(4) > 0, np.inf, sigma))
  with pytest.raises(ValueError, match='fake: 1 of 80'):
    stats.kernel_inception_distance(good, bad, subset_size=10, num_subsets=2)
  with pytest.raises(ValueError, match='real: 1 of 80'):
    stats.precision_recall(bad, good)
