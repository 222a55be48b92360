"""Tests of the GANState pytree, create_state and abstract_state."""

import jax
import numpy as np

from configs import toy_ring
from gan_jax import checkpoint
from gan_jax import state as state_lib
from tests.helpers import tiny_config


def test_state_is_one_pytree_of_arrays():
  state = state_lib.create_state(tiny_config(), jax.random.key(0))
  leaves = jax.tree.leaves(state)
  assert leaves and all(isinstance(x, jax.Array) for x in leaves)
  assert isinstance(state, state_lib.GANState)
  assert state.g_batch_stats and state.d_batch_stats  # DCGAN has BatchNorm in G and D
  assert state.g_params_avg == {} and state.d_params_avg == {}  # historical averaging off


def test_historical_averages_start_as_the_initial_parameters():
  config = toy_ring.get_config('smoke')
  config.loss.hist_avg_weight = 0.1
  state = state_lib.create_state(config, jax.random.key(0))
  for avg, params in ((state.g_params_avg, state.g_params), (state.d_params_avg, state.d_params)):
    for a, p in zip(jax.tree.leaves(avg), jax.tree.leaves(params)):
      np.testing.assert_array_equal(a, p)


def test_abstract_state_has_the_shapes_of_a_real_state_without_allocating():
  config = tiny_config()
  abstract = state_lib.abstract_state(config)
  real = state_lib.create_state(config, jax.random.key(0))
  assert jax.tree.structure(abstract) == jax.tree.structure(real)
  for a, r in zip(jax.tree.leaves(abstract), jax.tree.leaves(real)):
    assert isinstance(a, jax.ShapeDtypeStruct)
    assert (a.shape, a.dtype) == (r.shape, r.dtype)


def test_state_round_trips_device_get_and_orbax(tmp_path):
  state = state_lib.create_state(tiny_config(), jax.random.key(0))
  host = jax.device_get(state)
  assert jax.tree.structure(host) == jax.tree.structure(state)
  ckpt = checkpoint.Checkpointer(str(tmp_path / 'ckpt'), async_save=False)
  ckpt.save(0, state, {'position': 7})
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  restored, data_state, step = ckpt.restore(state_lib.abstract_state(tiny_config(), sharding))
  ckpt.close()
  assert step == 0 and data_state == {'position': 7}
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
