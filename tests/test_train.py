"""Tests of the state pytree and the compiled train step on one and many devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import dcgan_digits
from configs import toy_ring
from gan_jax import checkpoint
from gan_jax import parallel
from gan_jax import train
from gan_jax.state import GANState


def tiny_config(**overrides):
  """A 32x32 DCGAN small enough for a CPU test (widths 8, batch 16)."""
  config = dcgan_digits.get_config('smoke')
  config.train.ema_decay = 0.5
  config.update_from_flattened_dict(overrides)
  return config


def random_batch(config, seed=0, n_critic=None):
  n_critic = n_critic or config.train.n_critic
  rng = np.random.default_rng(seed)
  shape = (n_critic, config.train.batch_size) + train.data_shape(config)
  return rng.uniform(-1, 1, shape).astype(np.float32)


def run_steps(config, dp, state, batches, key):
  step = dp.compile(train.make_train_step(config))
  state = dp.put_state(state)
  metrics = None
  for batch in batches:
    state, metrics = step(state, dp.put_batch(batch), key)
  return jax.device_get(dp.get_state(state)), dp.get_metrics(metrics)


def max_rel_diff(a, b):
  """max |a - b| / max |b| over every leaf of two pytrees."""
  diffs = jax.tree.leaves(jax.tree.map(
      lambda x, y: float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))
                         / max(float(np.max(np.abs(np.asarray(y, np.float64)))), 1e-12)), a, b))
  return max(diffs)


@pytest.fixture(scope='module')
def config():
  return tiny_config()


@pytest.fixture(scope='module')
def state0(config):
  return train.create_state(config, jax.random.key(0))


def test_state_is_one_pytree_of_arrays(state0):
  leaves = jax.tree.leaves(state0)
  assert leaves and all(isinstance(x, jax.Array) for x in leaves)
  assert isinstance(state0, GANState)
  assert state0.g_batch_stats and state0.d_batch_stats  # DCGAN has BatchNorm in G and D
  assert state0.g_params_avg == {} and state0.d_params_avg == {}  # historical averaging off


def test_state_round_trips_tree_device_get_and_orbax(state0, tmp_path):
  flat, treedef = jax.tree.flatten(state0)
  rebuilt = jax.tree.unflatten(treedef, flat)
  assert jax.tree.structure(rebuilt) == jax.tree.structure(state0)
  host = jax.device_get(state0)
  assert jax.tree.structure(host) == jax.tree.structure(state0)
  for a, b in zip(jax.tree.leaves(host), jax.tree.leaves(state0)):
    np.testing.assert_array_equal(a, np.asarray(b))

  ckpt = checkpoint.Checkpointer(str(tmp_path / 'ckpt'), async_save=False)
  ckpt.save(0, state0, {'position': 7})
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  restored, data_state, step = ckpt.restore(train.abstract_state(tiny_config(), sharding))
  ckpt.close()
  assert step == 0 and data_state == {'position': 7}
  assert jax.tree.structure(restored) == jax.tree.structure(state0)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state0)):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_train_step_updates_g_and_d_and_stays_finite(config, state0):
  dp = parallel.DataParallel('shard_map')
  new, metrics = run_steps(config, dp, state0, [random_batch(config)], jax.random.key(1))
  assert int(new.step) == 1
  for name in ('g_params', 'd_params', 'ema_g_params', 'g_batch_stats', 'd_batch_stats'):
    before, after = getattr(state0, name), getattr(new, name)
    changed = [not np.array_equal(a, b) for a, b in
               zip(jax.tree.leaves(before), jax.tree.leaves(after))]
    assert all(changed), f'{name}: some leaves did not change'
  assert jax.tree.all(jax.tree.map(lambda x: bool(np.all(np.isfinite(x))), new))
  for key in ('d_loss', 'g_loss', 'd_real', 'd_fake', 'd_real_prob', 'd_fake_prob',
              'd_grad_norm', 'g_grad_norm'):
    assert np.isfinite(metrics[key]), key
  assert 0 < metrics['d_real_prob'] < 1 and metrics['d_grad_norm'] > 0
  assert metrics['finite'] == 1.0
  # EMA with decay 0.5 from equal starts: ema = (g0 + g1) / 2 exactly.
  for e, g0, g1 in zip(jax.tree.leaves(new.ema_g_params), jax.tree.leaves(state0.g_params),
                       jax.tree.leaves(new.g_params)):
    np.testing.assert_allclose(e, 0.5 * np.asarray(g0) + 0.5 * np.asarray(g1), rtol=1e-6, atol=1e-7)


def test_n_critic_runs_that_many_d_updates_per_g_update(state0):
  config = tiny_config(**{'train.n_critic': 3})
  dp = parallel.DataParallel('shard_map', devices=jax.devices()[:2])
  new, metrics = run_steps(config, dp, state0, [random_batch(config, n_critic=3)] * 2,
                           jax.random.key(1))
  assert int(new.step) == 2
  # optax Adam keeps its update count: 3 D updates and 1 G update per train step.
  assert int(new.d_opt_state[0].count) == 6
  assert int(new.g_opt_state[0].count) == 2
  assert np.isfinite(metrics['d_loss'])


def test_n_critic_uses_each_critic_slice():
  # The D update only sees critic slice i at iteration i: changing slice 1 of 2 changes D.
  config = tiny_config(**{'train.n_critic': 2})
  state = train.create_state(config, jax.random.key(0))
  dp = parallel.DataParallel('shard_map', devices=jax.devices()[:1])
  batch = random_batch(config, n_critic=2)
  other = batch.copy()
  other[1] = -other[1]
  a, _ = run_steps(config, dp, state, [batch], jax.random.key(1))
  b, _ = run_steps(config, dp, state, [other], jax.random.key(1))
  assert max_rel_diff(a.d_params, b.d_params) > 1e-4


@pytest.mark.parametrize('mode', ['shard_map', 'pmap'])
def test_eight_devices_equal_one_device_with_synchronised_bn(config, state0, mode):
  # One train step, as the acceptance asks. (Over several Adam steps float32
  # rounding differences in near-cancelling moments grow past 1e-5; with SGD
  # several steps stay within 1e-6: see the next test.)
  assert jax.device_count() >= 8
  batches = [random_batch(config, seed=0)]
  key = jax.random.key(3)
  single, m1 = run_steps(config, parallel.DataParallel('shard_map', devices=jax.devices()[:1]),
                         state0, batches, key)
  multi, m8 = run_steps(config, parallel.DataParallel(mode, devices=jax.devices()[:8]),
                        state0, batches, key)
  assert max_rel_diff(multi.g_params, single.g_params) < 1e-5
  assert max_rel_diff(multi.d_params, single.d_params) < 1e-5
  assert max_rel_diff(multi.d_batch_stats, single.d_batch_stats) < 1e-5
  assert max_rel_diff(multi.ema_g_params, single.ema_g_params) < 1e-5
  np.testing.assert_allclose(m8['d_loss'], m1['d_loss'], rtol=1e-5)


def test_several_sgd_steps_on_eight_devices_equal_one_device():
  config = tiny_config(**{'optim.g.name': 'sgd', 'optim.d.name': 'sgd',
                          'optim.g.b1': 0.0, 'optim.d.b1': 0.0})
  state = train.create_state(config, jax.random.key(0))
  batches = [random_batch(config, seed=s) for s in range(3)]
  key = jax.random.key(3)
  single, _ = run_steps(config, parallel.DataParallel('shard_map', devices=jax.devices()[:1]),
                        state, batches, key)
  multi, _ = run_steps(config, parallel.DataParallel('shard_map', devices=jax.devices()[:8]),
                       state, batches, key)
  assert max_rel_diff(multi.g_params, single.g_params) < 1e-5
  assert max_rel_diff(multi.d_params, single.d_params) < 1e-5


def test_per_device_bn_differs_only_through_bn_statistics(state0):
  key = jax.random.key(3)
  batches = [random_batch(tiny_config(), seed=0)]
  eight = jax.devices()[:8]

  def run(config, devices):
    state = train.create_state(config, jax.random.key(0))
    return run_steps(config, parallel.DataParallel('shard_map', devices=devices), state,
                     batches, key)[0]

  # Without any normalisation, per-device and synchronised settings are identical.
  no_norm = {'model.g_norm': 'none', 'model.d_norm': 'none'}
  a = run(tiny_config(**no_norm, **{'parallel.sync_batch_stats': False}), eight)
  b = run(tiny_config(**no_norm, **{'parallel.sync_batch_stats': True}), eight)
  assert max_rel_diff(a.g_params, b.g_params) == 0.0
  assert max_rel_diff(a.d_params, b.d_params) == 0.0

  # With BatchNorm, per-device statistics change the result ...
  per_device = run(tiny_config(**{'parallel.sync_batch_stats': False}), eight)
  synced = run(tiny_config(**{'parallel.sync_batch_stats': True}), eight)
  assert max_rel_diff(per_device.g_params, synced.g_params) > 1e-4
  # ... and equal normalising each device's 2 rows on its own (vmap over 8 groups on one device).
  config = tiny_config(**{'parallel.sync_batch_stats': False})
  step = train.make_train_step(config)
  batch = jnp.asarray(batches[0]).reshape((1, 8, 2) + batches[0].shape[2:]).transpose(
      1, 0, 2, 3, 4, 5)
  states = jax.tree.map(lambda x: jnp.stack([x] * 8), state0)
  grouped, _ = jax.jit(jax.vmap(step, in_axes=(0, 0, None), axis_name='data'))(
      states, batch, key)
  grouped = jax.tree.map(lambda x: x[0], grouped)
  assert max_rel_diff(per_device.g_params, grouped.g_params) < 1e-5
  assert max_rel_diff(per_device.d_batch_stats, grouped.d_batch_stats) < 1e-5


def test_compiled_step_is_traced_once_and_reused(config, state0):
  traces = []
  inner = train.make_train_step(config)

  def counted(state, batch, key):
    traces.append(1)
    return inner(state, batch, key)

  dp = parallel.DataParallel('shard_map', devices=jax.devices()[:2])
  step = dp.compile(counted)
  state = dp.put_state(state0)
  for i in range(4):
    state, _ = step(state, dp.put_batch(random_batch(config, seed=i)), jax.random.key(0))
  assert len(traces) == 1
  assert step._cache_size() == 1  # pylint: disable=protected-access


def test_no_host_transfers_inside_the_step(config, state0):
  dp = parallel.DataParallel('shard_map', devices=jax.devices()[:2])
  step = dp.compile(train.make_train_step(config))
  state = dp.put_state(state0)
  batches = [dp.put_batch(random_batch(config, seed=i)) for i in range(3)]
  key = jax.device_put(jax.random.key(0), dp.replicated)
  state, metrics = step(state, batches[0], key)  # compile outside the guard
  jax.block_until_ready(state)
  with jax.transfer_guard('disallow'):
    for batch in batches[1:]:
      state, metrics = step(state, batch, key)
    jax.block_until_ready((state, metrics))
  assert int(jax.device_get(state.step)) == 3


def test_toy_mlp_step_with_penalties_and_historical_averaging():
  config = toy_ring.get_config('smoke')
  config.loss.gp_weight = 1.0
  config.loss.r1_weight = 1.0
  config.loss.hist_avg_weight = 0.1
  state = train.create_state(config, jax.random.key(0))
  assert state.g_params_avg and state.d_params_avg
  batch = np.random.default_rng(0).normal(size=(1, config.train.batch_size, 2)).astype(np.float32)
  new, metrics = run_steps(config, parallel.DataParallel('shard_map', devices=jax.devices()[:2]),
                           state, [batch, batch], jax.random.key(0))
  for key in ('gp', 'r1', 'd_hist_avg', 'g_hist_avg'):
    assert np.isfinite(metrics[key]) and metrics[key] >= 0, key
  # After 2 steps the average holds 3 snapshots: initial, after step 1, after step 2.
  assert max_rel_diff(new.g_params_avg, new.g_params) > 0


def test_bad_config_names_are_rejected_with_the_known_names():
  with pytest.raises(ValueError, match='known'):
    train.validate_config(tiny_config(**{'model.name': 'nope'}))
  with pytest.raises(ValueError, match='non_saturating'):
    train.validate_config(tiny_config(**{'loss.type': 'nope'}))
  with pytest.raises(ValueError, match='adam'):
    train.validate_config(tiny_config(**{'optim.g.name': 'nope'}))
  with pytest.raises(ValueError, match='shard_map'):
    train.validate_config(tiny_config(**{'parallel.mode': 'nope'}))
  with pytest.raises(ValueError, match='BCE'):
    train.validate_config(tiny_config(**{'loss.type': 'hinge', 'loss.label_smoothing': 0.1}))


def test_learning_rate_schedules_decay_to_zero_after_decay_start():
  constant = train.learning_rate_schedule(2e-4)
  assert constant == 2e-4
  linear = train.learning_rate_schedule(2e-4, schedule='linear', num_updates=100,
                                        decay_start=0.5)
  np.testing.assert_allclose([float(linear(i)) for i in (0, 50, 75, 100)],
                             [2e-4, 2e-4, 1e-4, 0.0], atol=1e-10)
  cosine = train.learning_rate_schedule(1.0, schedule='cosine', num_updates=10, decay_start=0.0)
  np.testing.assert_allclose(float(cosine(5)), 0.5 * (1 + np.cos(np.pi * 0.5)), rtol=1e-6)
  with pytest.raises(ValueError, match='linear'):
    train.learning_rate_schedule(1.0, schedule='step')


def test_discriminator_schedule_spans_n_critic_updates_per_step():
  config = tiny_config(**{'optim.schedule': 'linear', 'optim.decay_start': 0.0,
                          'train.num_steps': 10, 'train.n_critic': 5})
  g_tx, d_tx = train.make_optimizers(config)
  params = {'w': jnp.zeros(())}
  grads = {'w': jnp.ones(())}
  # Half way through each schedule (D: 50 updates, G: 10) the rate is half the peak.
  def lr_after(tx, n):
    state = tx.init(params)
    for _ in range(n):
      updates, state = tx.update(grads, state, params)
    return -float(updates['w'])
  # Adam's first-moment-normalised step is ~lr for a constant gradient.
  assert abs(lr_after(d_tx, 26) - 2e-4 * (1 - 25 / 50)) < 2e-6
  assert abs(lr_after(g_tx, 6) - 2e-4 * (1 - 5 / 10)) < 2e-6


def test_reuse_fake_g_update_equals_a_fresh_g_forward_on_the_same_z(state0):
  # With D frozen (learning rate 0), D's outputs do not depend on which fakes its
  # update saw (train-mode BatchNorm normalises with batch statistics), so the G
  # update through the reused fake batch (G's saved VJP) must equal the G update
  # that runs G again on the same z; only G's running statistics differ (one G
  # forward per iteration instead of two).
  dp = parallel.DataParallel('shard_map')
  batch = random_batch(tiny_config())
  results = {}
  for reuse in (False, True):
    config = tiny_config(**{'train.reuse_fake': reuse, 'optim.d.learning_rate': 0.0})
    results[reuse], metrics = run_steps(config, dp, state0, [batch], jax.random.key(3))
    assert np.isfinite(metrics['g_loss'])
  fresh, reused = results[False], results[True]
  assert max_rel_diff(reused.d_params, fresh.d_params) == 0.0
  assert max_rel_diff(reused.g_params, fresh.g_params) < 1e-5
  changed = max_rel_diff(reused.g_params, state0.g_params)
  assert changed > 1e-3  # the comparison above is not vacuous
  assert max_rel_diff(reused.g_batch_stats, fresh.g_batch_stats) > 1e-4


def test_reuse_fake_with_several_critic_updates_is_rejected():
  config = tiny_config(**{'train.reuse_fake': True, 'train.n_critic': 2})
  with pytest.raises(ValueError, match='reuse_fake needs config.train.n_critic == 1'):
    train.validate_config(config)


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
def test_cpu_conv_kernels_option_reaches_xla_and_keeps_the_numbers(config, state0, mode):
  key = jax.random.key(3)
  batch = random_batch(config, seed=0)
  results = {}
  for kernels in ('eigen', 'xla_default'):
    dp = parallel.DataParallel(mode, devices=jax.devices()[:1], cpu_conv_kernels=kernels)
    step = dp.compile(train.make_train_step(config), donate=False)
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


def test_unknown_cpu_conv_kernels_is_rejected_with_the_known_names():
  config = tiny_config(**{'parallel.cpu_conv_kernels': 'mkl'})
  with pytest.raises(ValueError, match=r"cpu_conv_kernels 'mkl'.*eigen.*xla_default"):
    train.validate_config(config)
  with pytest.raises(ValueError, match='cpu_conv_kernels'):
    parallel.DataParallel('shard_map', cpu_conv_kernels='mkl')
