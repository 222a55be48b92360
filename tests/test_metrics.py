"""Tests of the gan_jax.metrics package: its public names and the keyed cache (cache.py).

Each module has its own test file: test_stats, test_inception, test_inception_weights,
test_torch_pickle, test_digits_judge, test_toy_modes, test_evaluator.
"""

import numpy as np

from gan_jax import metrics
from gan_jax.metrics import cache


def test_the_public_names_are_importable_from_the_package():
  assert sorted(metrics.__all__) == sorted([
      'Evaluator', 'METRICS', 'class_metrics', 'density_coverage', 'digits_judge',
      'feature_statistics',
      'frechet_distance', 'inception', 'inception_score', 'kernel_inception_distance',
      'make_evaluator', 'parse_metrics', 'precision_recall', 'reference_features',
      'toy_mode_metrics'])
  for name in metrics.__all__:
    assert getattr(metrics, name) is not None, name
  assert callable(metrics.digits_judge.fitted_judge) and callable(metrics.make_evaluator)


def test_cache_npz_is_keyed(tmp_path):
  path = tmp_path / 'x.npz'
  cache.save_npz(path, {'a': 1, 'b': [2, 3]}, {'v': np.arange(3)})
  np.testing.assert_array_equal(cache.load_npz(path, {'b': [2, 3], 'a': 1})['v'], np.arange(3))
  assert cache.load_npz(path, {'a': 2, 'b': [2, 3]}) is None
  assert cache.load_npz(tmp_path / 'missing.npz', {}) is None


def test_a_cache_file_never_loads_pickled_objects(tmp_path):
  path = tmp_path / 'evil.npz'
  np.savez(path, __cache_key__=np.array(cache.key_json({})),
           v=np.array([object()], dtype=object))
  assert cache.load_npz(path, {}) is None  # allow_pickle=False refuses it
