"""Tests of data parallelism: compiler options, batch placement, global slices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import errors
from gan_jax import parallel
from gan_jax import state as state_lib
from gan_jax import step as step_lib
from tests.helpers import max_rel_diff
from tests.helpers import random_batch
from tests.helpers import tiny_config


def ynn_convolutions(hlo_text):
  """How many convolutions of a compiled module XLA handed to YNNPACK."""
  bodies, name = {}, None
  for line in hlo_text.splitlines():
    if line and not line.startswith(' ') and line.endswith('{'):
      name = line.split()[0].lstrip('%')
      bodies[name] = []
    elif name is not None:
      bodies[name].append(line)
  callees = [line.split('calls=%')[1].split(',')[0].split()[0]
             for line in hlo_text.splitlines() if '__ynn_fusion' in line and 'calls=%' in line]
  return sum(any('convolution(' in b for b in bodies.get(c, [])) for c in callees)


@pytest.mark.parametrize('mode', ['shard_map', 'pmap'])
def test_cpu_conv_kernels_option_reaches_xla_and_keeps_the_numbers(mode):
  config = tiny_config()
  state0 = state_lib.create_state(config, jax.random.key(0))
  key = jax.random.key(3)
  batch = random_batch(config, seed=0)
  results = {}
  for kernels in ('eigen', 'xla_default'):
    dp = parallel.DataParallel(mode, devices=jax.devices()[:1], cpu_conv_kernels=kernels)
    step = dp.compile(step_lib.make_train_step(config), donate=False)
    state = dp.put_state(state0)
    text = step.lower(state, dp.put_batch(batch), key).compile().as_text()
    results[kernels] = (ynn_convolutions(text), text.count('convolution('))
    new_state, _ = step(state, dp.put_batch(batch), key)
    results[kernels] += (jax.device_get(dp.get_state(new_state)),)
  eigen_ynn, eigen_convs, eigen_state = results['eigen']
  default_ynn, _, default_state = results['xla_default']
  assert eigen_convs > 10 and eigen_ynn == 0  # every convolution left to Eigen
  assert default_ynn > 0  # XLA's default gives (some of) them to YNNPACK
  assert max_rel_diff(eigen_state.g_params, default_state.g_params) < 1e-5
  assert max_rel_diff(eigen_state.d_params, default_state.d_params) < 1e-5


def test_unknown_mode_and_kernels_are_config_errors():
  with pytest.raises(errors.ConfigError, match='cpu_conv_kernels'):
    parallel.DataParallel('shard_map', cpu_conv_kernels='mkl')
  with pytest.raises(errors.ConfigError, match=r"parallel.mode 'vmap'.*shard_map"):
    parallel.DataParallel('vmap')


@pytest.mark.parametrize('batch', [0, 12, -8])
def test_a_batch_that_does_not_split_over_the_devices_is_refused(batch):
  dp = parallel.DataParallel('shard_map', devices=jax.devices()[:8])
  with pytest.raises(errors.ConfigError, match=f'batch_size={batch} must be a positive multiple'):
    dp.local_batch_size(batch)
  assert dp.local_batch_size(16) == 16  # one process: its share is the whole batch


@pytest.mark.parametrize('mode', ['shard_map', 'pmap'])
def test_put_batch_splits_every_array_of_the_batch_over_the_devices(mode):
  dp = parallel.DataParallel(mode, devices=jax.devices()[:4])
  images = np.arange(2 * 8 * 3, dtype=np.float32).reshape(2, 8, 3)
  labels = np.arange(16, dtype=np.int32).reshape(2, 8)
  placed = dp.put_batch({'images': images, 'labels': labels})
  assert set(placed) == {'images', 'labels'}
  if mode == 'pmap':
    assert placed['images'].shape == (4, 2, 2, 3)
    np.testing.assert_array_equal(np.asarray(placed['labels'][1]), labels[:, 2:4])
  else:
    assert placed['images'].shape == (2, 8, 3)
    shard = placed['labels'].addressable_shards[1]
    np.testing.assert_array_equal(np.asarray(shard.data), labels[:, 2:4])


def test_global_slice_gives_each_device_its_rows():
  values = jnp.arange(8.0)
  sliced = jax.vmap(lambda _: parallel.global_slice(values, 'i'), axis_name='i')(jnp.zeros(4))
  np.testing.assert_array_equal(np.asarray(sliced), np.arange(8.0).reshape(4, 2))
