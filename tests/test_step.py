"""Tests of the per-device train step (gan_jax.step) on one and many devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import toy_ring
from gan_jax import augment
from gan_jax import config_files
from gan_jax import ema as ema_lib
from gan_jax import losses
from gan_jax import models
from gan_jax import objectives
from gan_jax import parallel
from gan_jax import state as state_lib
from gan_jax import step as step_lib
from tests.helpers import max_rel_diff
from tests.helpers import random_batch
from tests.helpers import run_steps
from tests.helpers import tiny_config


@pytest.fixture(scope='module')
def config():
  return tiny_config()


@pytest.fixture(scope='module')
def state0(config):
  return state_lib.create_state(config, jax.random.key(0))


def _on_one_and_eight_devices(config, state, batches, key, *, fast_compile=True):
  """((state, metrics) on one device, the same on eight) after `batches` (shard_map);
  `fast_compile`: `run_steps`'."""
  return tuple(run_steps(config, parallel.DataParallel('shard_map', devices=jax.devices()[:n]),
                         state, batches, key, fast_compile=fast_compile) for n in (1, 8))


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
  state = state_lib.create_state(config, jax.random.key(0))
  dp = parallel.DataParallel('shard_map', devices=jax.devices()[:1])
  batch = random_batch(config, n_critic=2)
  other = {'images': batch['images'].copy()}
  other['images'][1] = -other['images'][1]
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


# Every loss: a loss that coupled the examples of a batch (e.g. a batch mean) would
# see one device's examples, and only this comparison would notice.
@pytest.mark.parametrize('loss_type', losses.LOSS_TYPES)
def test_several_sgd_steps_on_eight_devices_equal_one_device(loss_type):
  config = tiny_config(**{'optim.g.name': 'sgd', 'optim.d.name': 'sgd',
                          'optim.g.b1': 0.0, 'optim.d.b1': 0.0, 'loss.type': loss_type})
  state = state_lib.create_state(config, jax.random.key(0))
  batches = [random_batch(config, seed=s) for s in range(3)]
  key = jax.random.key(3)
  (single, _), (multi, _) = _on_one_and_eight_devices(config, state, batches, key)
  assert max_rel_diff(multi.g_params, single.g_params) < 1e-5
  assert max_rel_diff(multi.d_params, single.d_params) < 1e-5


def test_per_device_bn_differs_only_through_bn_statistics(state0):
  key = jax.random.key(3)
  batches = [random_batch(tiny_config(), seed=0)]
  eight = jax.devices()[:8]

  def run(config, devices):
    state = state_lib.create_state(config, jax.random.key(0))
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
  step = step_lib.make_train_step(config)
  images = batches[0]['images']
  batch = {'images': jnp.asarray(images).reshape((1, 8, 2) + images.shape[2:]).transpose(
      1, 0, 2, 3, 4, 5)}
  states = jax.tree.map(lambda x: jnp.stack([x] * 8), state0)
  grouped, _ = jax.jit(jax.vmap(step, in_axes=(0, 0, None), axis_name='data'))(
      states, batch, key)
  grouped = jax.tree.map(lambda x: x[0], grouped)
  assert max_rel_diff(per_device.g_params, grouped.g_params) < 1e-5
  assert max_rel_diff(per_device.d_batch_stats, grouped.d_batch_stats) < 1e-5


def run_counting_traces(config, state, steps):
  """Runs `steps` compiled steps on 2 devices; returns (times traced, compiled step)."""
  traces = []
  inner = step_lib.make_train_step(config)

  def counted(state, batch, key):
    traces.append(1)
    return inner(state, batch, key)

  dp = parallel.DataParallel('shard_map', devices=jax.devices()[:2])
  step = dp.compile(counted)
  state = dp.put_state(state)
  for i in range(steps):
    state, _ = step(state, dp.put_batch(random_batch(config, seed=i)), jax.random.key(0))
  return len(traces), step


def test_compiled_step_is_traced_once_and_reused(config, state0):
  traces, step = run_counting_traces(config, state0, steps=4)
  assert traces == 1
  assert step._cache_size() == 1  # pylint: disable=protected-access


def test_no_host_transfers_inside_the_step(config, state0):
  dp = parallel.DataParallel('shard_map', devices=jax.devices()[:2])
  step = dp.compile(step_lib.make_train_step(config))
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
  state = state_lib.create_state(config, jax.random.key(0))
  assert state.g_params_avg and state.d_params_avg
  batch = {'images': np.random.default_rng(0).normal(
      size=(1, config.train.batch_size, 2)).astype(np.float32)}
  dp = parallel.DataParallel('shard_map', devices=jax.devices()[:2])
  once, _ = run_steps(config, dp, state, [batch], jax.random.key(0))
  new, metrics = run_steps(config, dp, once, [batch], jax.random.key(0))
  for key in ('gp', 'r1', 'd_hist_avg', 'g_hist_avg'):
    assert np.isfinite(metrics[key]) and metrics[key] > 0, key
  # After 2 steps the average holds 3 snapshots: initial, after step 1, after step 2.
  for avg, snapshots in ((new.g_params_avg, (state.g_params, once.g_params, new.g_params)),
                         (new.d_params_avg, (state.d_params, once.d_params, new.d_params))):
    expected = jax.tree.map(lambda a, b, c: (np.asarray(a, np.float64) + np.asarray(b)
                                             + np.asarray(c)) / 3, *snapshots)
    assert max_rel_diff(avg, expected) < 1e-5
  assert max_rel_diff(new.g_params, once.g_params) > 1e-4  # the snapshots differ


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


def _conditional_config(d_cond, **overrides):
  return tiny_config(**{'model.num_classes': 10, 'model.d_cond': d_cond, **overrides})


_ICR = {'augment.bcr_policy': augment.CR_POLICY, 'loss.bcr_real_weight': 10.0,
        'loss.bcr_fake_weight': 10.0, 'loss.zcr_d_weight': 20.0, 'loss.zcr_g_weight': 0.5}


@pytest.mark.parametrize('d_cond,extra', [('projection', {}), ('acgan', {}), ('acgan', _ICR)])
def test_conditional_step_on_eight_devices_equals_one_device(d_cond, extra):
  # SGD: Adam's first step, lr * g / (|g| + eps), turns float32 rounding in the
  # near-zero gradients of rarely drawn classes' embeddings into large relative
  # differences (see the unconditional tests above). `extra`: ICR's consistency terms,
  # which compare an ACGAN D's class logits too; G's gradient then has near-cancelling
  # sums whose rounding the unoptimised compile changes by up to 1e-2 of a leaf, so
  # that case compiles as a run does.
  config = _conditional_config(d_cond, **{'optim.g.name': 'sgd', 'optim.d.name': 'sgd',
                                          'optim.g.learning_rate': 0.1,
                                          'optim.d.learning_rate': 0.1, **extra})
  state = state_lib.create_state(config, jax.random.key(0))
  batches = [random_batch(config, seed=0)]
  key = jax.random.key(3)
  (single, m1), (multi, m8) = _on_one_and_eight_devices(config, state, batches, key,
                                                        fast_compile=not extra)
  assert max_rel_diff(multi.g_params, single.g_params) < 1e-5
  assert max_rel_diff(multi.d_params, single.d_params) < 1e-5
  assert max_rel_diff(multi.g_params, state.g_params) > 1e-4  # not vacuous
  if d_cond == 'acgan':
    assert np.isfinite(m1['d_class']) and np.isfinite(m1['g_class'])
    np.testing.assert_allclose(m8['d_class'], m1['d_class'], rtol=1e-5)
  if extra:
    assert m1['bcr_real'] > 0 and m1['bcr_fake'] > 0 and m1['zcr_d'] > 0
    np.testing.assert_allclose([m8[k] for k in ('bcr_real', 'bcr_fake', 'zcr_d')],
                               [m1[k] for k in ('bcr_real', 'bcr_fake', 'zcr_d')], rtol=1e-4)


@pytest.mark.parametrize('d_cond', ['projection', 'acgan'])
def test_conditional_step_is_traced_once(d_cond):
  config = _conditional_config(d_cond)
  traces, _ = run_counting_traces(config, state_lib.create_state(config, jax.random.key(0)),
                                  steps=3)
  assert traces == 1


def test_labels_of_the_real_batch_reach_a_projection_discriminator():
  config = _conditional_config('projection')
  state = state_lib.create_state(config, jax.random.key(0))
  dp = parallel.DataParallel('shard_map', devices=jax.devices()[:1])
  batch = random_batch(config, seed=0)
  other = {'images': batch['images'], 'labels': (batch['labels'] + 1) % 10}
  a, _ = run_steps(config, dp, state, [batch], jax.random.key(3))
  b, _ = run_steps(config, dp, state, [other], jax.random.key(3))
  assert max_rel_diff(a.d_params, b.d_params) > 1e-5


def test_augmented_step_with_consistency_on_eight_devices_equals_one_device():
  config = tiny_config(**{'augment.policy': 'color,translation,cutout',
                          'loss.bcr_real_weight': 10.0, 'loss.bcr_fake_weight': 10.0})
  state = state_lib.create_state(config, jax.random.key(0))
  batches = [random_batch(config, seed=0)]
  key = jax.random.key(3)
  (single, m1), (multi, m8) = _on_one_and_eight_devices(config, state, batches, key)
  assert m1['bcr_real'] > 0 and m1['bcr_fake'] > 0
  np.testing.assert_allclose(m8['bcr_real'], m1['bcr_real'], rtol=1e-5)
  assert max_rel_diff(multi.d_params, single.d_params) < 1e-5
  assert max_rel_diff(multi.g_params, single.g_params) < 1e-5


def _one_step_metrics(**overrides):
  config = tiny_config(**overrides)
  state = state_lib.create_state(config, jax.random.key(0))
  dp = parallel.DataParallel('shard_map', devices=jax.devices()[:1])
  return run_steps(config, dp, state, [random_batch(config, seed=0)], jax.random.key(3))


def test_bcr_alone_compares_d_on_the_images_and_on_their_augmentation():
  bcr = {'augment.bcr_policy': 'translation', 'loss.bcr_real_weight': 10.0,
         'loss.bcr_fake_weight': 10.0}
  _, metrics = _one_step_metrics(**bcr)  # no DiffAugment on D's loss: the paper's bCR
  assert metrics['bcr_real'] > 0 and metrics['bcr_fake'] > 0
  # A translation of at most 0 pixels is the identity: D(x) and D(T(x)) agree.
  _, metrics = _one_step_metrics(**bcr, **{'augment.translation_ratio': 0.0})
  assert metrics['bcr_real'] == pytest.approx(0.0, abs=1e-10)
  assert metrics['bcr_fake'] == pytest.approx(0.0, abs=1e-10)


def test_bcr_weights_scale_their_terms_in_d_loss():
  base = {'augment.policy': 'translation,cutout'}
  _, without = _one_step_metrics(**base)
  _, weighted = _one_step_metrics(**base, **{'loss.bcr_real_weight': 10.0,
                                             'loss.bcr_fake_weight': 3.0})
  # The adversarial terms are computed before bCR's extra D calls, so they agree.
  np.testing.assert_allclose(
      weighted['d_loss'] - without['d_loss'],
      10.0 * weighted['bcr_real'] + 3.0 * weighted['bcr_fake'], rtol=1e-4)


def test_the_generator_update_sees_augmented_fakes():
  # D does not move (learning rate 0), so G's update differs only through what D
  # sees of G's fakes in the G update.
  frozen_d = {'optim.d.learning_rate': 0.0}
  plain, _ = _one_step_metrics(**frozen_d)
  augmented, _ = _one_step_metrics(**frozen_d, **{'augment.policy': 'translation'})
  assert max_rel_diff(augmented.d_params, plain.d_params) == 0.0
  assert max_rel_diff(augmented.g_params, plain.g_params) > 1e-5


def test_augmentation_changes_what_d_sees():
  dp = parallel.DataParallel('shard_map', devices=jax.devices()[:1])
  plain = tiny_config()
  state = state_lib.create_state(plain, jax.random.key(0))
  batch = random_batch(plain, seed=0)
  a, _ = run_steps(plain, dp, state, [batch], jax.random.key(3))
  b, _ = run_steps(tiny_config(**{'augment.policy': 'translation'}), dp, state, [batch],
                   jax.random.key(3))
  assert max_rel_diff(a.d_params, b.d_params) > 1e-5


@pytest.mark.parametrize('field,value', [
    ('augment.fill', -1.0), ('augment.translation_ratio', 0.25), ('augment.cutout_ratio', 0.25)])
def test_augment_settings_reach_the_step(field, value):
  # The same keys and batch: only the fill value or the size of the ops differs.
  dp = parallel.DataParallel('shard_map', devices=jax.devices()[:1])
  base = tiny_config(**{'augment.policy': 'translation,cutout'})
  state = state_lib.create_state(base, jax.random.key(0))
  batch = random_batch(base, seed=0)
  a, _ = run_steps(base, dp, state, [batch], jax.random.key(3))
  b, _ = run_steps(tiny_config(**{'augment.policy': 'translation,cutout', field: value}), dp,
                   state, [batch], jax.random.key(3))
  assert max_rel_diff(a.d_params, b.d_params) > 1e-5


def test_ema_follows_the_generator_until_ema_start():
  config = tiny_config(**{'train.ema_start': 2, 'train.ema_decay': 0.9})
  state = state_lib.create_state(config, jax.random.key(0))
  dp = parallel.DataParallel('shard_map', devices=jax.devices()[:1])
  one, _ = run_steps(config, dp, state, [random_batch(config)], jax.random.key(1))
  assert max_rel_diff(one.ema_g_params, one.g_params) == 0.0  # step 0 < ema_start
  two, _ = run_steps(config, dp, one, [random_batch(config, seed=1)], jax.random.key(1))
  assert max_rel_diff(two.ema_g_params, two.g_params) == 0.0  # step 1 < ema_start
  three, _ = run_steps(config, dp, two, [random_batch(config, seed=2)], jax.random.key(1))
  # From step 2 on: ema = 0.9 ema + 0.1 G.
  expected = jax.tree.map(lambda e, g: 0.9 * np.asarray(e, np.float64) + 0.1 * np.asarray(g),
                          two.ema_g_params, three.g_params)
  assert max_rel_diff(three.ema_g_params, expected) < 1e-6
  assert max_rel_diff(three.ema_g_params, three.g_params) > 1e-4


def test_feature_matching_and_orthogonal_regularisation_are_reported():
  config = tiny_config(**{'loss.feature_matching_weight': 1.0, 'loss.ortho_weight': 1e-4})
  state = state_lib.create_state(config, jax.random.key(0))
  dp = parallel.DataParallel('shard_map', devices=jax.devices()[:2])
  _, metrics = run_steps(config, dp, state, [random_batch(config)], jax.random.key(1))
  assert metrics['feature_matching'] > 0 and metrics['g_ortho'] > 0


def _flips_on_devices(images, key, devices):
  """step.flip_real_images on `devices` slices of the global batch (vmap as the mapped axis)."""
  n_critic, batch = images.shape[:2]
  split = images.reshape((n_critic, devices, batch // devices) + images.shape[2:])
  out = jax.vmap(lambda x: step_lib.flip_real_images(x, key, 'data'), in_axes=1, out_axes=1,
                 axis_name='data')(split)
  return np.asarray(out).reshape(images.shape)


def _which_mirrored(images, out):
  """bool[n_critic, B]: rows of `out` that are the mirror of the input (all others must be equal)."""
  same = np.all(out == images, axis=(2, 3, 4))
  mirrored = np.all(out == images[:, :, :, ::-1, :], axis=(2, 3, 4))
  assert np.all(same ^ mirrored), 'a row is neither the image nor its mirror'
  return mirrored


def test_flip_real_images_mirrors_about_half_the_same_rows_on_any_device_count():
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (2, 64, 4, 6, 1)).astype(np.float32)  # no row is symmetric
  key = jax.random.key(7)
  one = _flips_on_devices(images, key, 1)
  flipped = _which_mirrored(images, one)
  np.testing.assert_array_equal(_flips_on_devices(images, key, 8), one)
  # 128 fair coins: the share is 0.5 +- 0.044 (one standard deviation).
  assert 0.3 < flipped.mean() < 0.7
  assert not np.array_equal(flipped[0], flipped[1]), 'both D updates got the same flips'
  other = _which_mirrored(images, _flips_on_devices(images, jax.random.key(8), 1))
  assert not np.array_equal(other, flipped), 'another key gave the same flips'


def test_random_flip_trains_on_exactly_the_mirrored_batch():
  # The step with flips equals the step without them on the batch that
  # flip_real_images returns for the step's flip key (the run key folded with the
  # step, then with 2), on eight devices against a mirror made on one.
  flip = tiny_config(**{'data.random_flip': True, 'train.n_critic': 2})
  plain = tiny_config(**{'train.n_critic': 2})
  state = state_lib.create_state(plain, jax.random.key(0))
  batch = random_batch(plain, seed=0)
  key = jax.random.key(3)
  flip_key = jax.random.fold_in(jax.random.fold_in(key, int(state.step)), 2)
  mirrored = {'images': _flips_on_devices(batch['images'], flip_key, 1)}
  assert 0 < _which_mirrored(batch['images'], mirrored['images']).mean() < 1
  eight = parallel.DataParallel('shard_map', devices=jax.devices()[:8])
  one = parallel.DataParallel('shard_map', devices=jax.devices()[:1])
  with_flips, m8 = run_steps(flip, eight, state, [batch], key)
  by_hand, m1 = run_steps(plain, one, state, [mirrored], key)
  unflipped, _ = run_steps(plain, one, state, [batch], key)
  assert max_rel_diff(with_flips.d_params, by_hand.d_params) < 1e-5
  assert max_rel_diff(with_flips.g_params, by_hand.g_params) < 1e-5
  np.testing.assert_allclose(m8['d_loss'], m1['d_loss'], rtol=1e-5)
  assert max_rel_diff(unflipped.d_params, by_hand.d_params) > 1e-4


def test_random_flip_leaves_symmetric_images_unchanged():
  # Mirror-symmetric real images: flips or not, D sees the same batch, bit for bit.
  plain = tiny_config()
  state = state_lib.create_state(plain, jax.random.key(0))
  images = random_batch(plain, seed=0)['images']
  half = images[..., :images.shape[3] // 2, :]
  batch = {'images': np.concatenate([half, half[..., ::-1, :]], axis=3)}
  dp = parallel.DataParallel('shard_map', devices=jax.devices()[:1])
  a, _ = run_steps(plain, dp, state, [batch], jax.random.key(3))
  b, _ = run_steps(tiny_config(**{'data.random_flip': True}), dp, state, [batch],
                   jax.random.key(3))
  assert max_rel_diff(a.d_params, b.d_params) == 0.0
  assert max_rel_diff(a.g_params, b.g_params) == 0.0


_ZCR = {'loss.zcr_d_weight': 20.0, 'loss.zcr_g_weight': 0.5, 'loss.zcr_radius': 0.05}


def test_zcr_step_on_eight_devices_equals_one_device():
  config = tiny_config(**_ZCR, **{'augment.policy': 'color,translation,cutout'})
  state = state_lib.create_state(config, jax.random.key(0))
  (single, m1), (multi, m8) = _on_one_and_eight_devices(
      config, state, [random_batch(config, seed=0)], jax.random.key(3))
  assert m1['zcr_d'] > 0 and m1['zcr_g'] < 0
  # The terms are squares of differences of near-equal values (1e-5 to 1e-4 here), so
  # summation order moves them by more than the states it moves.
  np.testing.assert_allclose([m8['zcr_d'], m8['zcr_g']], [m1['zcr_d'], m1['zcr_g']], rtol=1e-4)
  assert max_rel_diff(multi.d_params, single.d_params) < 1e-5
  assert max_rel_diff(multi.g_params, single.g_params) < 1e-5
  assert max_rel_diff(multi.g_batch_stats, single.g_batch_stats) < 1e-5


def test_icr_recipe_on_eight_devices_equals_one_device():
  # StudioGAN's BigGAN-ICR terms (biggan_cifar10:icr): bCR with CR's flip and
  # reflection-padded shift as T on un-augmented images, and both zCR terms.
  config = tiny_config(**_ZCR, **{'augment.bcr_policy': augment.CR_POLICY,
                                  'loss.bcr_real_weight': 10.0, 'loss.bcr_fake_weight': 10.0})
  state = state_lib.create_state(config, jax.random.key(0))
  (single, m1), (multi, m8) = _on_one_and_eight_devices(
      config, state, [random_batch(config, seed=0)], jax.random.key(3))
  assert m1['bcr_real'] > 0 and m1['bcr_fake'] > 0 and m1['zcr_d'] > 0
  np.testing.assert_allclose([m8['bcr_real'], m8['bcr_fake']], [m1['bcr_real'], m1['bcr_fake']],
                             rtol=1e-5)
  assert max_rel_diff(multi.d_params, single.d_params) < 1e-5
  assert max_rel_diff(multi.g_params, single.g_params) < 1e-5


def test_zcr_terms_each_change_only_their_own_update():
  plain, plain_metrics = _one_step_metrics()
  # G's term alone: the D update is the plain one (its z and fakes are unchanged, no
  # extra G call), G's differs.
  g_only, metrics = _one_step_metrics(**{'loss.zcr_g_weight': 0.5})
  assert 'zcr_d' not in metrics and metrics['zcr_g'] < 0
  assert max_rel_diff(g_only.d_params, plain.d_params) == 0.0
  assert max_rel_diff(g_only.g_params, plain.g_params) > 1e-5
  # D's term alone: D's update differs, G's loss has no zCR term.
  d_only, metrics = _one_step_metrics(**{'loss.zcr_d_weight': 20.0})
  assert 'zcr_g' not in metrics and metrics['zcr_d'] > 0
  assert max_rel_diff(d_only.d_params, plain.d_params) > 1e-5
  assert 'zcr_d' not in plain_metrics and 'zcr_g' not in plain_metrics


def test_zcr_radius_sets_the_size_of_the_latent_step():
  # A smaller step in z gives closer images and D outputs: both terms shrink.
  _, wide = _one_step_metrics(**_ZCR)
  _, narrow = _one_step_metrics(**{**_ZCR, 'loss.zcr_radius': 0.005})
  assert 0 < narrow['zcr_d'] < wide['zcr_d']
  assert wide['zcr_g'] < narrow['zcr_g'] < 0


def test_zcr_d_term_compares_d_under_one_augmentation_draw():
  # With DiffAugment on, G(z + dz) gets the draw of A that G(z) got: identical inputs
  # give identical outputs, so the term is exactly 0 (independent draws would not).
  config = tiny_config(**_ZCR, **{'augment.policy': 'color,translation,cutout'})
  state = state_lib.create_state(config, jax.random.key(0))
  rng = np.random.default_rng(0)
  real, fake = (rng.uniform(-1, 1, (16, 32, 32, 1)).astype(np.float32) for _ in range(2))
  _, _, aux, _ = _d_objective(config, state, real, fake, jax.random.key(5), perturbed=fake)
  assert float(aux['zcr_d']) == 0.0


def test_zcr_d_term_and_gradient_by_hand():
  config = tiny_config(**_ZCR)
  state = state_lib.create_state(config, jax.random.key(0))
  rng = np.random.default_rng(1)
  real, fake = (rng.uniform(-1, 1, (16, 32, 32, 1)).astype(np.float32) for _ in range(2))
  perturbed = np.clip(fake + rng.normal(0, 0.1, fake.shape), -1, 1).astype(np.float32)
  setup = step_lib.make_train_step(config).args[0]
  d_out = jax.jit(lambda p, x: jax.vmap(
      lambda xx: objectives.run_discriminator(setup, p, state.d_batch_stats, xx, None)[0],
      axis_name=parallel.DATA_AXIS)(x[None])[0])
  fake, perturbed = jnp.asarray(fake), jnp.asarray(perturbed)
  term = np.mean((np.asarray(d_out(state.d_params, fake), np.float64)
                  - np.asarray(d_out(state.d_params, perturbed), np.float64)) ** 2)
  assert term > 1e-4
  key = jax.random.key(5)
  loss, _, aux, grads = _d_objective(config, state, real, fake, key, perturbed=perturbed)
  plain_loss, _, _, plain_grads = _d_objective(config, state, real, fake, key)
  assert float(aux['zcr_d']) == pytest.approx(term, rel=1e-4)
  assert loss - plain_loss == pytest.approx(20.0 * term, rel=1e-3)
  reg = lambda p: 20.0 * jnp.mean(jnp.square(d_out(p, fake) - d_out(p, perturbed)))
  expected = jax.tree.map(jnp.add, plain_grads, jax.jit(jax.grad(reg))(state.d_params))
  assert max_rel_diff(grads, expected) < 1e-4


def test_zcr_g_term_by_hand():
  config = tiny_config(**_ZCR)
  state = state_lib.create_state(config, jax.random.key(0))
  setup = step_lib.make_train_step(config).args[0]
  rng = np.random.default_rng(2)
  real, fake, perturbed = (jnp.asarray(rng.uniform(-1, 1, (16, 32, 32, 1)).astype(np.float32))
                           for _ in range(3))

  def g_objective(fake, perturbed):
    loss, (_, aux) = jax.vmap(
        lambda f, p: objectives.generator_objective(
            setup, state.d_params, state.d_batch_stats, f, None, real, None,
            jax.random.key(5), perturbed_fake=p),
        axis_name=parallel.DATA_AXIS)(fake[None], None if perturbed is None else perturbed[None])
    return loss[0], jax.tree.map(lambda v: v[0], aux)

  loss, aux = jax.jit(g_objective)(fake, perturbed)
  plain_loss, _ = jax.jit(lambda f: g_objective(f, None))(fake)
  distance = np.mean((np.asarray(fake, np.float64) - np.asarray(perturbed, np.float64)) ** 2)
  assert float(aux['zcr_g']) == pytest.approx(-distance, rel=1e-5)
  assert loss - plain_loss == pytest.approx(-0.5 * distance, rel=1e-3)


def test_acgan_consistency_terms_add_the_class_logits_mean_squared_difference():
  # StudioGAN, for an auxiliary-classifier D (d_cond_mtd 'AC'): bCR's and zCR's D terms
  # are MSELoss of the adversarial outputs plus MSELoss of the class logits f32[B, K]
  # (a mean over samples and classes).
  config = _conditional_config('acgan', **_ZCR, **{
      'augment.bcr_policy': 'translation', 'loss.bcr_real_weight': 10.0,
      'loss.bcr_fake_weight': 10.0})
  state = state_lib.create_state(config, jax.random.key(0))
  setup = step_lib.make_train_step(config).args[0]
  rng = np.random.default_rng(3)
  real, fake = (rng.uniform(-1, 1, (16, 32, 32, 1)).astype(np.float32) for _ in range(2))
  perturbed = np.clip(fake + rng.normal(0, 0.1, fake.shape), -1, 1).astype(np.float32)
  real_labels, fake_labels = (rng.integers(0, 10, 16).astype(np.int32) for _ in range(2))
  key = jax.random.key(5)
  loss, _, aux, _ = _d_objective(config, state, real, fake, key, perturbed=perturbed,
                                 labels=(real_labels, fake_labels))

  def outputs(x, labels):  # D in train mode (batch statistics, no spectral norm here)
    logits, extras, _ = objectives.run_discriminator(setup, state.d_params, state.d_batch_stats,
                                                     x, labels, collect=True)
    return logits, extras['class_logits']

  def translate(x, k):  # bCR's T with the key the objective gives it (keys 2 and 3 of 5)
    return objectives._augment(setup, x, k, policy='translation')

  keys = jax.random.split(key, 5)
  on_device = lambda fn, *args: jax.jit(jax.vmap(fn, axis_name=parallel.DATA_AXIS))(
      *(jnp.asarray(a)[None] for a in args))
  expected = {}
  for name, x, labels, k in (('bcr_real', real, real_labels, keys[2]),
                             ('bcr_fake', fake, fake_labels, keys[3])):
    (logits, classes), (t_logits, t_classes) = on_device(
        lambda x, y: (outputs(x, y), outputs(translate(x, k), y)), x, labels)
    adversarial = np.mean((np.float64(logits) - np.float64(t_logits)) ** 2)
    class_part = np.mean((np.float64(classes) - np.float64(t_classes)) ** 2)
    assert classes.shape == (1, 16, 10) and class_part > 0.01 * adversarial > 0
    expected[name] = adversarial + class_part
  (logits, classes), (p_logits, p_classes) = on_device(
      lambda a, b, y: (outputs(a, y), outputs(b, y)), fake, perturbed, fake_labels)
  expected['zcr_d'] = (np.mean((np.float64(logits) - np.float64(p_logits)) ** 2)
                       + np.mean((np.float64(classes) - np.float64(p_classes)) ** 2))
  for name, value in expected.items():
    assert float(aux[name]) == pytest.approx(value, rel=1e-4), name


def test_zcr_step_is_traced_once():
  config = tiny_config(**_ZCR)
  traces, _ = run_counting_traces(config, state_lib.create_state(config, jax.random.key(0)),
                                  steps=3)
  assert traces == 1


def test_ada_step_is_traced_once():
  # p changes every D update (interval 1); it is state, not a constant of the program.
  config = tiny_config(**{'augment.policy': 'cutout', 'augment.ada_target': 0.6,
                          'augment.ada_interval': 1, 'augment.ada_kimg': 0.1})
  traces, _ = run_counting_traces(config, state_lib.create_state(config, jax.random.key(0)),
                                  steps=3)
  assert traces == 1


def _d_objective(config, state, real, fake, key, perturbed=None, labels=(None, None)):
  """objectives.discriminator_objective on one device (a mapped axis of size 1):
  (loss, D's statistics after it, metrics, gradient w.r.t. D's parameters).
  `labels`: (real labels, fake labels), int32[B] each for a conditional model."""
  setup = step_lib.make_train_step(config).args[0]
  one = lambda a: None if a is None else jnp.asarray(a)[None]

  def objective(d_params, state, real, fake, perturbed, real_labels, fake_labels):
    loss, (stats, aux) = jax.vmap(
        lambda r, f, p, rl, fl: objectives.discriminator_objective(
            setup, d_params, state, r, rl, f, fl, key, perturbed_fake=p),
        axis_name=parallel.DATA_AXIS)(real, fake, perturbed, real_labels, fake_labels)
    return loss[0], (jax.tree.map(lambda v: v[0], stats), jax.tree.map(lambda v: v[0], aux))

  # Compiled as one program rather than dispatched op by op.
  (loss, (stats, aux)), grads = jax.jit(jax.value_and_grad(objective, has_aux=True))(
      state.d_params, state, one(real), one(fake), one(perturbed), *map(one, labels))
  return float(loss), stats, aux, grads


def _d_inputs(config):
  """(initial state, real, fake f32[16, 32, 32, 1] uniform in [-1, 1], key) for one call
  of D's objective under a `tiny_config`."""
  rng = np.random.default_rng(1)
  real, fake = (rng.uniform(-1, 1, (16, 32, 32, 1)).astype(np.float32) for _ in range(2))
  return state_lib.create_state(config, jax.random.key(0)), real, fake, jax.random.key(5)


def test_r1_is_the_gradient_with_respect_to_the_raw_real_images():
  # StudioGAN / StyleGAN2-ADA: with DiffAugment, R1 differentiates D(A(x)) with respect
  # to x, not D with respect to A(x) (cutout's hole then has no gradient at all).
  config = tiny_config(**{'augment.policy': 'cutout', 'loss.r1_weight': 1.0})
  state, real, fake, key = _d_inputs(config)
  _, _, aux, _ = _d_objective(config, state, real, fake, key)
  setup = step_lib.make_train_step(config).args[0]
  augment_key = jax.random.split(key, 5)[0]   # the draw D's loss used for the reals
  mapped = lambda fn: lambda x: jax.vmap(fn, axis_name=parallel.DATA_AXIS)(x[None])[0]
  d_raw = mapped(lambda x: objectives.run_discriminator(
      setup, state.d_params, state.d_batch_stats, x, None)[0])
  augmented = mapped(lambda x: objectives._augment(setup, x, augment_key))  # pylint: disable=protected-access
  norms = lambda g: np.mean(np.sum(np.square(np.asarray(g, np.float64)), axis=(1, 2, 3)))
  wrt_raw = norms(jax.grad(lambda x: jnp.sum(d_raw(augmented(x))))(jnp.asarray(real)))
  wrt_augmented = norms(jax.grad(lambda x: jnp.sum(d_raw(x)))(augmented(jnp.asarray(real))))
  assert float(aux['r1']) == pytest.approx(wrt_raw, rel=1e-4)
  assert abs(wrt_raw - wrt_augmented) > 1e-3 * wrt_augmented


@pytest.mark.parametrize('step,start,added', [(3, 1, True), (1, 1, False), (0, 1, False)])
def test_lecam_term_and_averages_by_hand(step, start, added):
  # The references' rule, worked here with D's own outputs: from averages (0.2,
  # -0.1), a = decay * a + (1 - decay) * mean(D) with decay 0.99 from step `start`
  # (0 before it); the term mean(relu(D(real) - a_fake)^2) + mean(relu(a_real -
  # D(fake))^2) uses the new averages as constants and joins D's loss, times 0.3,
  # only after `start`.
  config = tiny_config(**{'loss.lecam_weight': 0.3, 'loss.lecam_decay': 0.99,
                          'loss.lecam_start': start})
  state = state_lib.create_state(config, jax.random.key(0))
  stats = dict(state.d_batch_stats)
  stats['lecam'] = {'real': jnp.float32(0.2), 'fake': jnp.float32(-0.1)}
  state = state.replace(step=jnp.int32(step), d_batch_stats=stats)
  rng = np.random.default_rng(0)
  real, fake = (rng.uniform(-1, 1, (16, 32, 32, 1)).astype(np.float32) for _ in range(2))
  key = jax.random.key(5)
  setup = step_lib.make_train_step(config).args[0]
  d_out = jax.jit(lambda p, x: jax.vmap(
      lambda xx: objectives.run_discriminator(setup, p, state.d_batch_stats, xx, None)[0],
      axis_name=parallel.DATA_AXIS)(x[None])[0])
  real, fake = jnp.asarray(real), jnp.asarray(fake)
  real_logits, fake_logits = (np.asarray(d_out(state.d_params, x), np.float64)
                              for x in (real, fake))
  decay = 0.99 if step >= start else 0.0
  a_real = decay * 0.2 + (1 - decay) * real_logits.mean()
  a_fake = decay * -0.1 + (1 - decay) * fake_logits.mean()
  term = (np.mean(np.maximum(real_logits - a_fake, 0) ** 2)
          + np.mean(np.maximum(a_real - fake_logits, 0) ** 2))
  assert term > 1e-3  # the inputs exercise both hinges' active sides

  loss, new_stats, aux, grads = _d_objective(config, state, real, fake, key)
  plain_loss, _, _, plain_grads = _d_objective(
      tiny_config(**{'loss.lecam_start': start}), state, real, fake, key)
  assert float(new_stats['lecam']['real']) == pytest.approx(a_real, rel=1e-5, abs=1e-7)
  assert float(new_stats['lecam']['fake']) == pytest.approx(a_fake, rel=1e-5, abs=1e-7)
  assert float(aux['lecam']) == pytest.approx(term, rel=1e-4)
  assert loss - plain_loss == pytest.approx(0.3 * term if added else 0.0, rel=1e-3, abs=1e-6)
  # D's gradient gains that of 0.3 * term with the averages held constant.
  reg = lambda p: 0.3 * (
      jnp.mean(jnp.square(jax.nn.relu(d_out(p, real) - a_fake)))
      + jnp.mean(jnp.square(jax.nn.relu(a_real - d_out(p, fake)))))
  expected = (jax.tree.map(jnp.add, plain_grads, jax.jit(jax.grad(reg))(state.d_params)) if added
              else plain_grads)
  assert max_rel_diff(grads, expected) < 1e-4


def test_lecam_step_on_eight_devices_equals_one_device():
  # SGD: over several Adam steps last-bit differences in near-cancelling moments grow
  # past 1e-5 (the first test above).
  config = tiny_config(**{'loss.lecam_weight': 1.0, 'loss.lecam_decay': 0.5,
                          'loss.lecam_start': 0, 'train.n_critic': 2,
                          'optim.g.name': 'sgd', 'optim.d.name': 'sgd',
                          'optim.g.b1': 0.0, 'optim.d.b1': 0.0})
  state = state_lib.create_state(config, jax.random.key(0))
  batches = [random_batch(config, seed=s) for s in range(2)]
  key = jax.random.key(3)
  (single, m1), (multi, m8) = _on_one_and_eight_devices(config, state, batches, key)
  assert m1['lecam'] > 0
  np.testing.assert_allclose(m8['lecam'], m1['lecam'], rtol=1e-5)
  for side in ('real', 'fake'):
    np.testing.assert_allclose(multi.d_batch_stats['lecam'][side],
                               single.d_batch_stats['lecam'][side], rtol=1e-5)
  assert max_rel_diff(multi.d_params, single.d_params) < 1e-5


def test_top_k_step_on_eight_devices_equals_one_device():
  # The k fakes G learns from are the global batch's k best, not each device's.
  config = tiny_config(**{'loss.g_top_k': 0.25})
  state = state_lib.create_state(config, jax.random.key(0))
  batches = [random_batch(config, seed=0)]
  key = jax.random.key(3)
  (single, m1), (multi, m8) = _on_one_and_eight_devices(config, state, batches, key)
  np.testing.assert_allclose(m8['g_loss'], m1['g_loss'], rtol=1e-5)
  assert max_rel_diff(multi.g_params, single.g_params) < 1e-5
  plain, m_all = run_steps(tiny_config(), parallel.DataParallel(
      'shard_map', devices=jax.devices()[:1]), state, batches, key)
  assert abs(m1['g_loss'] - m_all['g_loss']) > 1e-3  # top-k changed G's loss
  assert max_rel_diff(plain.g_params, single.g_params) > 1e-4


@pytest.mark.parametrize('name', ['dcgan', 'mlp'])
def test_minibatch_std_step_on_eight_devices_equals_one_device(name):
  # D's minibatch std is a batch statistic: over the global batch, as synchronised BN.
  if name == 'mlp':
    config = toy_ring.get_config('smoke')
    config.model.minibatch_std = True
    batches = [{'images': np.random.default_rng(0).normal(
        size=(1, config.train.batch_size, 2)).astype(np.float32)}]
  else:
    config = tiny_config(**{'model.minibatch_std': True})
    batches = [random_batch(config, seed=0)]
  state = state_lib.create_state(config, jax.random.key(0))
  (single, m1), (multi, m8) = _on_one_and_eight_devices(config, state, batches,
                                                        jax.random.key(3))
  np.testing.assert_allclose(m8['g_loss'], m1['g_loss'], rtol=1e-5)
  assert max_rel_diff(multi.d_params, single.d_params) < 1e-5
  assert max_rel_diff(multi.g_params, single.g_params) < 1e-5


@pytest.mark.parametrize('decay, step, kept', [(0.0, 0, 4), (0.0, 50, 4), (0.5, 0, 16),
                                               (0.5, 9, 16), (0.5, 10, 8), (0.5, 35, 4)])
def test_top_k_loss_is_the_mean_over_the_kept_fakes(decay, step, kept):
  # In the step's own terms: per-device sums scaled by devices / k average (pmean)
  # to the mean of the global top-k terms; annealed, k starts at the whole batch and
  # halves every 10 steps down to a quarter of it.
  logits = jnp.asarray(np.random.default_rng(0).normal(size=16), jnp.float32)
  setup = type('Setup', (), dict(g_top_k=0.25, g_top_k_decay=decay, g_top_k_decay_steps=10,
                                 loss_type='non_saturating', axis_name=parallel.DATA_AXIS))()
  mesh = parallel.make_mesh(jax.devices()[:8])
  logits = jax.device_put(logits, jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec(parallel.DATA_AXIS)))
  loss = objectives._generator_adversarial_loss  # pylint: disable=protected-access
  per_device = jax.jit(jax.shard_map(
      lambda l: jax.lax.pmean(loss(setup, l, step, {}), parallel.DATA_AXIS),
      mesh=mesh, in_specs=jax.sharding.PartitionSpec(parallel.DATA_AXIS),
      out_specs=jax.sharding.PartitionSpec(), check_vma=False))(logits)
  best = np.sort(np.asarray(logits))[-kept:]
  np.testing.assert_allclose(float(per_device), np.mean(np.log1p(np.exp(-best))), rtol=1e-6)


def test_the_ema_generator_keeps_an_ema_of_g_s_statistics_when_asked():
  # StudioGAN's / BigGAN-PyTorch's EMA averages G's buffers (BatchNorm statistics) with
  # its weights: ema_stats <- decay * ema_stats + (1 - decay) * trained statistics.
  config = tiny_config(**{'train.ema_batch_stats': True})  # ema_decay 0.5 from step 0
  state = state_lib.create_state(config, jax.random.key(0))
  initial = state.g_batch_stats[ema_lib.EMA_STATS]
  assert jax.tree.structure(initial) == jax.tree.structure(
      ema_lib.sampling_batch_stats(state.g_batch_stats, ema=False))
  dp = parallel.DataParallel('shard_map', devices=jax.devices()[:1])
  new, _ = run_steps(config, dp, state, [random_batch(config, seed=0)], jax.random.key(1))
  trained = ema_lib.sampling_batch_stats(new.g_batch_stats, ema=False)
  ema = ema_lib.sampling_batch_stats(new.g_batch_stats)
  assert max_rel_diff(trained, initial) > 1e-3  # the statistics moved
  for e, i, t in zip(jax.tree.leaves(ema), jax.tree.leaves(initial), jax.tree.leaves(trained)):
    np.testing.assert_allclose(e, 0.5 * np.asarray(i) + 0.5 * np.asarray(t), rtol=1e-6,
                               atol=1e-7)
  # The trained G's statistics are what a run without the switch computes.
  plain = tiny_config()
  plain_new, _ = run_steps(plain, dp, state_lib.create_state(plain, jax.random.key(0)),
                           [random_batch(plain, seed=0)], jax.random.key(1))
  assert ema_lib.EMA_STATS not in plain_new.g_batch_stats
  assert max_rel_diff(trained, plain_new.g_batch_stats) == 0.0
  assert max_rel_diff(new.g_params, plain_new.g_params) == 0.0


def test_before_ema_start_the_ema_statistics_copy_the_trained_ones():
  config = tiny_config(**{'train.ema_batch_stats': True, 'train.ema_start': 5})
  state = state_lib.create_state(config, jax.random.key(0))
  dp = parallel.DataParallel('shard_map', devices=jax.devices()[:1])
  new, _ = run_steps(config, dp, state, [random_batch(config, seed=0)], jax.random.key(1))
  assert max_rel_diff(ema_lib.sampling_batch_stats(new.g_batch_stats),
                      ema_lib.sampling_batch_stats(new.g_batch_stats, ema=False)) == 0.0


def test_ema_statistics_on_eight_devices_equal_one_device():
  config = tiny_config(**{'train.ema_batch_stats': True})
  state = state_lib.create_state(config, jax.random.key(0))
  (single, _), (multi, _) = _on_one_and_eight_devices(
      config, state, [random_batch(config, seed=0)], jax.random.key(3))
  assert max_rel_diff(multi.g_batch_stats, single.g_batch_stats) < 1e-5


# ---- each weight reaches the update it is for ----------------------------------


def _toy_with(**overrides):
  """toy_ring's smoke config (an MLP on 2-D points), constant learning rates."""
  config = toy_ring.get_config('smoke')
  config.optim.schedule = 'constant'
  config.update_from_flattened_dict(overrides)
  return config


def test_d_penalties_enter_d_loss_with_their_weights():
  weights = {'loss.gp_weight': 2.0, 'loss.r1_weight': 3.0, 'loss.hist_avg_weight': 0.5}
  config = _toy_with(**weights)
  state = state_lib.create_state(config, jax.random.key(0))
  # A historical average away from the parameters, so its penalty is not 0.
  state = state.replace(d_params_avg=jax.tree.map(lambda p: 0.5 * p, state.d_params))
  rng = np.random.default_rng(2)
  real, fake = (rng.normal(size=(config.train.batch_size, 2)).astype(np.float32)
                for _ in range(2))
  key = jax.random.key(4)
  plain, _, _, _ = _d_objective(_toy_with(), state, real, fake, key)
  weighted, _, aux, _ = _d_objective(config, state, real, fake, key)
  hist = sum(float(np.sum(np.square(0.5 * np.asarray(p, np.float64))))
             for p in jax.tree.leaves(state.d_params))          # ||theta - theta / 2||^2
  assert float(aux['d_hist_avg']) == pytest.approx(hist, rel=1e-5)
  assert aux['gp'] > 0 and aux['r1'] > 0
  # WGAN-GP's lambda, R1's gamma / 2 (Mescheder et al.), Salimans et al.'s weight.
  assert weighted - plain == pytest.approx(
      2.0 * float(aux['gp']) + 0.5 * 3.0 * float(aux['r1']) + 0.5 * hist, rel=1e-4)


def test_g_regularisers_enter_g_update_with_their_weights():
  # Plain SGD for G, D frozen: G's step with the regularisers differs from its step
  # without them by -lr times their gradient alone, which is known in closed form:
  # historical averaging w ||theta - avg||^2 -> 2 w (theta - avg); orthogonal
  # regularisation (BigGAN-PyTorch's ortho) on each kernel K[in, out] ->
  # w 2 K ((K^T K) * (1 - I)).
  lr, hist_w, ortho_w = 0.1, 0.3, 0.05
  base = {'optim.g.name': 'sgd', 'optim.g.b1': 0.0, 'optim.g.learning_rate': lr,
          'optim.d.learning_rate': 0.0}
  config = _toy_with(**base, **{'loss.hist_avg_weight': hist_w, 'loss.ortho_weight': ortho_w})
  state = state_lib.create_state(config, jax.random.key(0))
  state = state.replace(g_params_avg=jax.tree.map(lambda p: 0.5 * p, state.g_params))
  batch = {'images': np.random.default_rng(0).normal(
      size=(1, config.train.batch_size, 2)).astype(np.float32)}
  dp = parallel.DataParallel('shard_map', devices=jax.devices()[:1])
  regularised, metrics = run_steps(config, dp, state, [batch], jax.random.key(1))
  plain, _ = run_steps(_toy_with(**base), dp, state, [batch], jax.random.key(1))
  assert metrics['g_hist_avg'] > 0 and metrics['g_ortho'] > 0

  def expected_gradient(path, theta):
    theta = np.asarray(theta, np.float64)
    grad = 2 * hist_w * (theta - 0.5 * theta)
    if jax.tree_util.keystr(path).endswith("['kernel']") and theta.ndim >= 2:
      k = theta.reshape(-1, theta.shape[-1])
      gram = (k.T @ k) * (1 - np.eye(k.shape[1]))
      grad = grad + ortho_w * 2 * (k @ gram).reshape(theta.shape)
    return grad

  want = jax.tree_util.tree_map_with_path(expected_gradient, state.g_params)
  for got_r, got_p, grad in zip(jax.tree.leaves(regularised.g_params),
                                jax.tree.leaves(plain.g_params), jax.tree.leaves(want)):
    np.testing.assert_allclose(np.asarray(got_r, np.float64) - np.asarray(got_p, np.float64),
                               -lr * grad, rtol=1e-3, atol=1e-6)
  assert max_rel_diff(regularised.d_params, state.d_params) == 0.0


def test_weight_clipping_keeps_every_d_parameter_within_the_bound():
  clip = 0.01
  config = tiny_config(**{'optim.weight_clip': clip, 'optim.d.name': 'sgd', 'optim.d.b1': 0.0,
                          'optim.d.learning_rate': 1.0})
  state = state_lib.create_state(config, jax.random.key(0))
  assert max(float(np.max(np.abs(p))) for p in jax.tree.leaves(state.d_params)) > 10 * clip
  dp = parallel.DataParallel('shard_map', devices=jax.devices()[:1])
  new, _ = run_steps(config, dp, state, [random_batch(config)], jax.random.key(1))
  d_leaves = [np.asarray(p) for p in jax.tree.leaves(new.d_params)]
  assert all(np.all(np.abs(p) <= clip) for p in d_leaves)
  assert sum(int(np.sum(np.abs(p) == np.float32(clip))) for p in d_leaves) > 0
  # G is not clipped (WGAN clips the critic only).
  assert max(float(np.max(np.abs(p))) for p in jax.tree.leaves(new.g_params)) > 10 * clip


def _d_loss_by_hand(config, state, real, fake, key, *, smoothing=0.0, augmented=True):
  """D's cross-entropy loss recomputed from D's logits: D(A(real)), D(A(fake)) with the
  augmentation draws of keys[0] and keys[1] of split(key, 5) (as D's loss draws them)."""
  setup = step_lib.make_train_step(config).args[0]
  keys = jax.random.split(key, 5)
  mapped = lambda fn: lambda x: jax.vmap(fn, axis_name=parallel.DATA_AXIS)(x[None])[0]

  def logits(x, draw):
    if augmented:
      x = mapped(lambda v: objectives._augment(setup, v, keys[draw]))(jnp.asarray(x))  # pylint: disable=protected-access
    out, _, stats = jax.vmap(
        lambda v, bs: objectives.run_discriminator(setup, state.d_params, bs, v, None),
        in_axes=(0, None), axis_name=parallel.DATA_AXIS)(jnp.asarray(x)[None],
                                                         state.d_batch_stats)
    return np.asarray(out[0], np.float64), stats

  real_logits, _ = logits(real, 0)
  fake_logits, _ = logits(fake, 1)
  log_sigmoid = lambda l: -np.logaddexp(0.0, -l)
  # One-sided label smoothing (Salimans et al. 2016): real targets 1 - s.
  real_term = -((1 - smoothing) * log_sigmoid(real_logits)
                + smoothing * log_sigmoid(-real_logits))
  return float(np.mean(real_term) + np.mean(-log_sigmoid(-fake_logits)))


def test_d_loss_sees_augmented_real_and_fake_images():
  # DiffAugment augments D's real inputs as well as its fakes (augmenting the fakes
  # alone lets D tell them apart by the augmentation).
  config = tiny_config(**{'augment.policy': 'translation', 'loss.type': 'non_saturating'})
  state, real, fake, key = _d_inputs(config)
  loss, _, _, _ = _d_objective(config, state, real, fake, key)
  assert loss == pytest.approx(_d_loss_by_hand(config, state, real, fake, key), rel=1e-5)
  assert abs(loss - _d_loss_by_hand(config, state, real, fake, key, augmented=False)) > 1e-4


def test_label_smoothing_reaches_d_loss():
  config = tiny_config(**{'loss.type': 'non_saturating', 'loss.label_smoothing': 0.2})
  state, real, fake, key = _d_inputs(config)
  loss, _, _, _ = _d_objective(config, state, real, fake, key)
  by_hand = lambda s: _d_loss_by_hand(config, state, real, fake, key, smoothing=s,
                                      augmented=False)
  assert loss == pytest.approx(by_hand(0.2), rel=1e-5)
  assert abs(by_hand(0.2) - by_hand(0.0)) > 1e-3


def test_ada_probability_moves_by_its_pace_every_interval_by_hand():
  # StyleGAN2-ADA's rule: every `interval` D updates, p += sign(r_t - target) *
  # images * interval / (kimg * 1000), clipped to [0, 1]; r_t the mean verdict.
  # Here the pace is 128 * 2 / 500 = 0.512 per adjustment.
  update = lambda s, v: objectives.ada_update(s, jnp.float32(v), target=0.6, interval=2,
                                              images=128, kimg=0.5)
  value = lambda s: {k: float(v) for k, v in s.items()}
  s = update(objectives.initial_ada_stats(), 1.0)  # the first of two: only accumulated
  assert value(s) == {'p': 0.0, 'sign_sum': 1.0, 'updates': 1.0}
  s = update(s, 0.6)  # r_t = 0.8 > 0.6
  assert value(s) == pytest.approx({'p': 0.512, 'sign_sum': 0.0, 'updates': 0.0})
  s = update(update(s, 1.0), 1.0)  # 1.024, clipped
  assert value(s)['p'] == 1.0
  s = update(update(s, -1.0), 0.0)  # r_t = -0.5 < 0.6
  assert value(s)['p'] == pytest.approx(0.488)
  s = update(update(s, 0.6), 0.6)  # r_t at the target: sign 0, p stays
  assert value(s)['p'] == pytest.approx(0.488)
  s = update(update(s, -1.0), -1.0)
  s = update(update(s, -1.0), -1.0)  # 0.488 - 1.024, clipped
  assert value(s) == {'p': 0.0, 'sign_sum': 0.0, 'updates': 0.0}


@pytest.mark.parametrize('loss_type,threshold', [('non_saturating', 0.0),
                                                 ('least_squares', 0.5)])
def test_ada_p_gates_the_policy_and_d_counts_its_verdicts_on_the_reals(loss_type, threshold):
  policy = {'augment.policy': 'translation,cutout', 'loss.type': loss_type}
  ada = tiny_config(**policy, **{'augment.ada_target': 0.6})
  state, real, fake, key = _d_inputs(ada)
  assert float(state.d_batch_stats['ada']['p']) == 0.0  # a run starts unaugmented

  def at(p):
    stats = dict(state.d_batch_stats)
    stats['ada'] = {**stats['ada'], 'p': jnp.float32(p)}
    return _d_objective(ada, state.replace(d_batch_stats=stats), real, fake, key)

  plain_state, *_ = _d_inputs(tiny_config(**{'loss.type': loss_type}))
  assert 'ada' not in plain_state.d_batch_stats
  plain = _d_objective(tiny_config(**{'loss.type': loss_type}), plain_state, real, fake, key)
  fixed = _d_objective(tiny_config(**policy), plain_state, real, fake, key)
  assert abs(plain[0] - fixed[0]) > 1e-4
  # p = 0 skips every op, p = 1 applies each as the fixed policy draws it.
  loss_0, stats_0, aux_0, _ = at(0.0)
  assert loss_0 == pytest.approx(plain[0], rel=1e-6)
  assert at(1.0)[0] == pytest.approx(fixed[0], rel=1e-6)
  half = at(0.5)[0]
  assert abs(half - plain[0]) > 1e-5 and abs(half - fixed[0]) > 1e-5
  # The verdict: the mean sign of D's output on the (here unaugmented) reals minus the
  # loss's threshold, accumulated for the interval's adjustment; p is left as it was.
  setup = step_lib.make_train_step(ada).args[0]
  d_out = jax.jit(lambda x: jax.vmap(
      lambda xx: objectives.run_discriminator(setup, state.d_params, state.d_batch_stats, xx,
                                              None)[0],
      axis_name=parallel.DATA_AXIS)(x[None])[0])
  verdict = np.mean(np.sign(np.asarray(d_out(jnp.asarray(real)), np.float64) - threshold))
  assert float(aux_0['ada_sign']) == pytest.approx(verdict, abs=1e-6)
  assert {k: float(v) for k, v in stats_0['ada'].items()} == pytest.approx(
      {'p': 0.0, 'sign_sum': verdict, 'updates': 1.0}, abs=1e-6)


def test_ada_step_on_eight_devices_equals_one_device():
  # An adjustment after each of the two D updates, at a pace of 16 / 100 = 0.16, from
  # p = 0.5: p and every draw it gates are the same on one device and on eight.
  config = tiny_config(**{'augment.policy': 'translation,cutout', 'augment.ada_target': 0.6,
                          'augment.ada_interval': 1, 'augment.ada_kimg': 0.1,
                          'train.n_critic': 2})
  state = state_lib.create_state(config, jax.random.key(0))
  stats = dict(state.d_batch_stats)
  stats['ada'] = {**stats['ada'], 'p': jnp.float32(0.5)}
  state = state.replace(d_batch_stats=stats)
  (single, m1), (multi, m8) = _on_one_and_eight_devices(config, state, [random_batch(config)],
                                                        jax.random.key(3))
  p1, p8 = (float(s.d_batch_stats['ada']['p']) for s in (single, multi))
  assert p8 == pytest.approx(p1, abs=1e-6)
  assert min(abs(p1 - 0.18), abs(p1 - 0.82)) < 1e-6  # two steps of 0.16 the same way
  assert m1['ada_p'] == pytest.approx(p1, abs=1e-6)
  np.testing.assert_allclose(m8['ada_sign'], m1['ada_sign'], rtol=1e-5)
  assert max_rel_diff(multi.d_params, single.d_params) < 1e-5
  assert max_rel_diff(multi.g_params, single.g_params) < 1e-5


def _scrambled_power_iteration(g_batch_stats, key):
  """G's statistics with every spectral-norm vector u replaced by a random unit vector,
  so that each further power iteration moves it."""
  leaves, treedef = jax.tree_util.tree_flatten_with_path(g_batch_stats)
  keys = jax.random.split(key, len(leaves))
  out = []
  for (path, leaf), k in zip(leaves, keys):
    if str(getattr(path[-1], 'key', '')).endswith('u'):
      u = jax.random.normal(k, leaf.shape, leaf.dtype)
      leaf = u / jnp.linalg.norm(u)
    out.append(leaf)
  return jax.tree_util.tree_unflatten(treedef, out)


def _g_statistics_after_one_step(config, *, n_critic, in_d_updates, scrambled=False):
  """(BatchNorm averages, spectral-norm vectors) of G (leaf lists) after one step of
  `config` with G's statistics kept in its EMA too; `scrambled`: from spectral-norm
  vectors far from converged."""
  config = config.copy_and_resolve_references()
  config.train.update(n_critic=n_critic, g_bn_stats_in_d_updates=in_d_updates, batch_size=8,
                      ema_decay=0.5, ema_batch_stats=True)
  state = state_lib.create_state(config, jax.random.key(0))
  if scrambled:
    state = state.replace(g_batch_stats=_scrambled_power_iteration(state.g_batch_stats,
                                                                   jax.random.key(5)))
  dp = parallel.DataParallel('shard_map', devices=jax.devices()[:1])
  new, _ = run_steps(config, dp, state, [random_batch(config, seed=0)], jax.random.key(1))
  stats = jax.tree_util.tree_leaves_with_path(
      ema_lib.sampling_batch_stats(new.g_batch_stats, ema=False))
  batch_norm = [leaf for path, leaf in stats if models.is_batch_norm_leaf(path)]
  spectral = [leaf for path, leaf in stats if not models.is_batch_norm_leaf(path)]
  assert batch_norm
  return batch_norm, spectral


def test_g_s_batch_norm_averages_move_in_the_g_update_only_when_asked():
  # StudioGAN untracks G's BatchNorm statistics in the D steps: G's averages then
  # depend on the G update's batch only, not on how many D updates ran before it
  # (G's weights, and the G update's z, are the same either way).
  config = _toy_with(**{'model.g_norm': 'batch'})  # an MLP: quick to compile
  one, _ = _g_statistics_after_one_step(config, n_critic=1, in_d_updates=False)
  three, _ = _g_statistics_after_one_step(config, n_critic=3, in_d_updates=False)
  assert max_rel_diff(three, one) < 1e-6


def test_without_g_bn_stats_in_d_updates_g_s_spectral_norm_still_moves_in_them():
  # As PyTorch's spectral_norm, G's power iteration moves in every train-mode call,
  # the D updates' included; only the BatchNorm averages stay.
  config = config_files.load('sngan_cifar10:smoke')
  config.model.g_spectral_norm = True
  bn, sn = _g_statistics_after_one_step(config, n_critic=3, in_d_updates=False,
                                        scrambled=True)
  tracked_bn, tracked_sn = _g_statistics_after_one_step(config, n_critic=3, in_d_updates=True,
                                                        scrambled=True)
  assert sn and max_rel_diff(sn, tracked_sn) < 1e-6
  assert max_rel_diff(bn, tracked_bn) > 1e-3  # the default moves them in the D updates
