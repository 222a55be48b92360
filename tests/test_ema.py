"""Tests of the generator's moving averages (gan_jax/ema.py)."""

import jax.numpy as jnp
import numpy as np

from gan_jax import ema


def test_update_averages_floating_leaves_and_takes_the_rest_from_the_new_value():
  average = {'w': jnp.array([1.0, 3.0]), 'count': jnp.array(4, jnp.int32)}
  value = {'w': jnp.array([3.0, -1.0]), 'count': jnp.array(9, jnp.int32)}
  out = ema.update(average, value, 0.75)
  np.testing.assert_allclose(out['w'], [0.75 * 1 + 0.25 * 3, 0.75 * 3 + 0.25 * -1])
  assert int(out['count']) == 9
  np.testing.assert_array_equal(ema.update(average, value, 0.0)['w'], value['w'])


def test_the_statistics_a_sampler_uses():
  trained = {'bn': {'mean': jnp.zeros(2), 'var': jnp.ones(2)}}
  averaged = {'bn': {'mean': jnp.full(2, 0.5), 'var': jnp.full(2, 2.0)}}
  stats = {**trained, ema.EMA_STATS: averaged}
  assert ema.sampling_batch_stats(stats) is averaged
  assert ema.sampling_batch_stats(stats, ema=False) == trained
  # A run without the EMA of statistics samples with G's own, whatever the weights.
  assert ema.sampling_batch_stats(trained) is trained
  assert ema.sampling_batch_stats(trained, ema=False) is trained
  assert ema.with_batch_stats_average(trained) == {**trained, ema.EMA_STATS: trained}


def test_update_batch_stats_moves_only_the_average():
  trained = {'bn': {'mean': jnp.array([2.0]), 'var': jnp.array([4.0])}}
  stats = {**trained, ema.EMA_STATS: {'bn': {'mean': jnp.array([0.0]), 'var': jnp.array([1.0])}}}
  out = ema.update_batch_stats(stats, 0.9)
  np.testing.assert_allclose(out['bn']['mean'], [2.0])  # G's own are untouched
  np.testing.assert_allclose(out[ema.EMA_STATS]['bn']['mean'], [0.2], rtol=1e-6)
  np.testing.assert_allclose(out[ema.EMA_STATS]['bn']['var'], [0.9 + 0.4], rtol=1e-6)
  assert ema.update_batch_stats(trained, 0.9) is trained  # nothing to move
