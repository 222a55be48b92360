"""Tests of the semi-supervised GAN (Salimans et al. 2016) in the train step, with
configs/semi_supervised_digits: the step trains D's classifier and G by feature
matching, and unlabelled examples (label -1) add nothing to the supervised term."""

import dataclasses

import jax
import numpy as np
import pytest

from configs import semi_supervised_digits
from gan_jax import objectives
from gan_jax import parallel
from gan_jax import state as state_lib
from gan_jax import step as step_lib
from tests.helpers import max_rel_diff
from tests.helpers import run_steps

BATCH = 16
UNLABELLED = -1


def smoke_config(arg='smoke'):
  config = semi_supervised_digits.get_config(arg)
  assert config.train.batch_size == BATCH and config.model.name == 'image_mlp'
  return config


def on_one_device(setup, fn, *args):
  """fn(*args) mapped over a one-device axis, as the step runs (D's noise key is
  folded with the device index, which needs the mapped axis)."""
  out = jax.vmap(lambda _: fn(*args), axis_name=setup.axis_name)(np.zeros(1))
  return jax.tree.map(lambda v: v[0], out)


def partly_labelled_batch(seed=0):
  """{'images': f32[1, 16, 8, 8, 1], 'labels': int32[1, 16]}, every other label -1."""
  rng = np.random.default_rng(seed)
  images = rng.uniform(-1, 1, (1, BATCH, 8, 8, 1)).astype(np.float32)
  labels = rng.integers(0, 10, (1, BATCH)).astype(np.int32)
  labels[:, 1::2] = UNLABELLED
  return {'images': images, 'labels': labels}


@pytest.fixture(scope='module')
def config():
  return smoke_config()


@pytest.fixture(scope='module')
def state0(config):
  return state_lib.create_state(config, jax.random.key(0))


def test_smoke_step_trains_the_classifier_and_feature_matching(config, state0):
  dp = parallel.DataParallel('shard_map', devices=jax.devices()[:1])
  new, metrics = run_steps(config, dp, state0, [partly_labelled_batch()], jax.random.key(1))
  assert np.isfinite(metrics['d_class']) and metrics['d_class'] > 0
  assert np.isfinite(metrics['feature_matching']) and metrics['feature_matching'] > 0
  # Pure feature matching: G's loss is the feature-matching term, no class term.
  np.testing.assert_allclose(metrics['g_loss'], metrics['feature_matching'], rtol=1e-6)
  assert 'g_class' not in metrics
  assert max_rel_diff(new.d_params, state0.d_params) > 1e-5
  assert max_rel_diff(new.g_params, state0.g_params) > 1e-5


def _max_abs_diff(first, second):
  """The largest absolute difference between two pytrees of the same structure."""
  return max(np.abs(np.asarray(a) - np.asarray(b)).max()
             for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second)))


def _supervised_gradient(config, state, batch):
  """D's gradient with aux_weight 1 minus the one with aux_weight 0: the class term's."""
  setup = step_lib.make_train_step(config).args[0]
  fake = np.zeros_like(batch['images'][0])
  grads = []
  for weight in (1.0, 0.0):
    grad_fn = jax.grad(objectives.discriminator_objective, argnums=1, has_aux=True)
    grad, _ = on_one_device(setup, grad_fn, dataclasses.replace(setup, aux_weight=weight),
                            state.d_params, state, batch['images'][0], batch['labels'][0],
                            fake, None, jax.random.key(2))
    grads.append(grad)
  return jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b), *grads)


def test_unlabelled_examples_add_no_supervised_gradient(config, state0):
  batch = partly_labelled_batch()
  # New pixels in the unlabelled rows only: the class term must not see them.
  other = {'images': batch['images'].copy(), 'labels': batch['labels']}
  other['images'][:, 1::2] = np.random.default_rng(5).uniform(-1, 1, (1, BATCH // 2, 8, 8, 1))
  first = _supervised_gradient(config, state0, batch)
  second = _supervised_gradient(config, state0, other)
  assert max(np.abs(leaf).max() for leaf in jax.tree.leaves(first)) > 1e-4  # not vacuous
  for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second)):
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_batch_without_labels_has_no_supervised_gradient(config, state0):
  batch = partly_labelled_batch()
  batch['labels'][:] = UNLABELLED
  for leaf in jax.tree.leaves(_supervised_gradient(config, state0, batch)):
    np.testing.assert_array_equal(leaf, 0.0)


def test_supervised_only_variant_has_no_gan_terms():
  config = smoke_config('smoke,supervised_only')
  loss = config.loss
  assert loss.d_adversarial_weight == 0 and loss.feature_matching_weight == 0
  assert loss.g_adversarial_weight == 0 and loss.aux_weight > 0
  assert loss.entropy_weight == 0  # it uses the unlabelled images
  full = smoke_config()
  assert config.model == full.model and config.data == full.data


def test_entropy_variants_add_the_entropy_term_with_and_without_the_gan():
  plain, gan, alone = (smoke_config(arg) for arg in
                       ('smoke', 'smoke,entropy', 'smoke,entropy_only'))
  assert plain.loss.entropy_weight == 0
  assert gan.loss.entropy_weight == alone.loss.entropy_weight > 0
  # ':entropy' is the GAN plus the term; ':entropy_only' has no GAN terms.
  for name in ('d_adversarial_weight', 'feature_matching_weight', 'aux_weight'):
    assert gan.loss[name] == plain.loss[name]
  assert alone.loss.d_adversarial_weight == 0 and alone.loss.feature_matching_weight == 0
  assert alone.loss.aux_weight > 0
  for config in (gan, alone):
    assert config.model == plain.model and config.data == plain.data
  with pytest.raises(ValueError, match='Pick one'):
    smoke_config('smoke,entropy,entropy_only')


def test_supervised_only_d_ignores_the_fakes_and_its_loss_is_the_class_loss(state0):
  config = smoke_config('smoke,supervised_only')
  setup = step_lib.make_train_step(config).args[0]
  batch = partly_labelled_batch()
  grad_fn = jax.grad(objectives.discriminator_objective, argnums=1, has_aux=True)
  results = []
  for fake_seed in (3, 4):
    fake = np.random.default_rng(fake_seed).uniform(-1, 1, batch['images'][0].shape)
    results.append(on_one_device(setup, grad_fn, setup, state0.d_params, state0,
                                 batch['images'][0], batch['labels'][0],
                                 fake.astype(np.float32), None, jax.random.key(2)))
  (grad_a, (_, aux_a)), (grad_b, _) = results
  # d_adversarial_weight = 0: the real-vs-fake term is gone, only the class loss is left.
  np.testing.assert_allclose(aux_a['d_loss'], aux_a['d_class'], rtol=1e-6)
  assert max(np.abs(leaf).max() for leaf in jax.tree.leaves(grad_a)) > 1e-4
  for a, b in zip(jax.tree.leaves(grad_a), jax.tree.leaves(grad_b)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('noise', [0.0, 0.3])
def test_d_objective_draws_noise_from_its_key_only_when_noise_is_on(state0, noise):
  config = smoke_config()
  config.model.d_input_noise = config.model.d_hidden_noise = noise
  setup = step_lib.make_train_step(config).args[0]
  assert setup.d_noise == bool(noise)
  batch = partly_labelled_batch()
  fake = np.random.default_rng(3).uniform(-1, 1, batch['images'][0].shape).astype(np.float32)
  losses = []
  for key in (jax.random.key(2), jax.random.key(7)):
    # Augmentation is off, so the key can only matter through D's noise. The step
    # runs mapped over devices (the noise key is folded with the device index): one here.
    loss, _ = on_one_device(setup, objectives.discriminator_objective, setup, state0.d_params,
                            state0, batch['images'][0], batch['labels'][0], fake, None, key)
    losses.append(float(loss))
  if noise:
    assert abs(losses[0] - losses[1]) > 1e-4
  else:
    assert losses[0] == losses[1]


def _entropy(logits):
  """Mean entropy of softmax(logits) in numpy (float64)."""
  logits = np.asarray(logits, np.float64)
  p = np.exp(logits - logits.max(axis=1, keepdims=True))
  p /= p.sum(axis=1, keepdims=True)
  return float(np.mean(-np.sum(p * np.log(p), axis=1)))


def test_entropy_term_adds_the_mean_class_entropy_of_every_real(state0):
  config = smoke_config()
  config.model.d_input_noise = config.model.d_hidden_noise = 0.0  # D's logits below are noise-free
  setup = step_lib.make_train_step(config).args[0]
  batch = partly_labelled_batch()
  real = batch['images'][0]
  fake = np.random.default_rng(3).uniform(-1, 1, real.shape).astype(np.float32)
  _, extras = setup.discriminator.apply({'params': state0.d_params}, real, train=True,
                                        mutable=['intermediates'])
  want = _entropy(extras['intermediates']['class_logits'][0])
  assert want > 0.1  # an untrained D is unsure: the term is not vacuous
  results = {}
  for weight in (0.0, 2.0):
    results[weight] = on_one_device(
        setup, objectives.discriminator_objective, dataclasses.replace(setup, entropy_weight=weight),
        state0.d_params, state0, real, batch['labels'][0], fake, None, jax.random.key(2))
  (loss_off, (_, aux_off)), (loss_on, (_, aux_on)) = results[0.0], results[2.0]
  assert 'd_class_entropy' not in aux_off
  np.testing.assert_allclose(aux_on['d_class_entropy'], want, rtol=1e-5)
  np.testing.assert_allclose(loss_on - loss_off, 2.0 * want, rtol=1e-4)


def test_entropy_term_sees_the_unlabelled_examples(state0):
  # Unlike the supervised term, the entropy term's gradient changes with the
  # pixels of unlabelled rows (label -1).
  config = smoke_config()
  setup = step_lib.make_train_step(config).args[0]
  setup = dataclasses.replace(setup, entropy_weight=1.0, d_adv_weight=0.0, aux_weight=0.0)
  batch = partly_labelled_batch()
  other = batch['images'][0].copy()
  other[1::2] = np.random.default_rng(5).uniform(-1, 1, other[1::2].shape)
  fake = np.zeros_like(other)
  grad_fn = jax.grad(objectives.discriminator_objective, argnums=1, has_aux=True)
  grads = [on_one_device(setup, grad_fn, setup, state0.d_params, state0, images,
                         batch['labels'][0], fake, None, jax.random.key(2))[0]
           for images in (batch['images'][0], other)]
  assert _max_abs_diff(grads[0], grads[1]) > 1e-4


def test_translation_variants_shift_the_labelled_digits_of_gan_and_baseline(state0):
  gan, alone = smoke_config('smoke,translation'), smoke_config('smoke,translation,supervised_only')
  plain = smoke_config()
  assert plain.augment.policy == ''
  assert gan.augment.policy == alone.augment.policy == 'translation'
  # The same networks, labels and loss as without it: only the augmentation differs.
  assert gan.model == plain.model and gan.data == plain.data and gan.loss == plain.loss
  baseline = smoke_config('smoke,supervised_only')
  assert alone.loss == baseline.loss
  # The shifted labelled digits change the class term's gradient (same key).
  batch = partly_labelled_batch()
  shifted = _supervised_gradient(alone, state0, batch)
  unshifted = _supervised_gradient(baseline, state0, batch)
  assert _max_abs_diff(shifted, unshifted) > 1e-4


def test_dcgan_variant_is_the_earlier_conv_discriminator_with_the_same_labels():
  conv, mlp = semi_supervised_digits.get_config('smoke,dcgan'), smoke_config()
  assert conv.model.name == 'dcgan' and conv.model.extra_layers == 1
  assert conv.model.d_norm == 'none' and conv.model.d_cond == 'semi_supervised'
  assert conv.data.labels_per_class == mlp.data.labels_per_class
  assert conv.loss == mlp.loss


def test_main_config_is_the_papers_mnist_recipe_with_a_narrower_generator():
  config = semi_supervised_digits.get_config()
  m = config.model
  assert (m.name, m.d_widths, m.d_input_noise, m.d_hidden_noise) == (
      'image_mlp', '1000,500,250,250,250', 0.3, 0.5)
  # The paper's G: z of 100, two BatchNorm + softplus layers; 100 wide, not 500.
  assert (m.z_dim, m.num_layers, m.g_norm, m.hidden) == (100, 2, 'batch', 100)
  # The baseline has the same D and trains no G term, so G's width does not change it.
  baseline = semi_supervised_digits.get_config('supervised_only').model
  assert (baseline.d_widths, baseline.d_input_noise, baseline.d_hidden_noise) == (
      m.d_widths, m.d_input_noise, m.d_hidden_noise)
  assert config.optim.d.learning_rate == config.optim.g.learning_rate == 0.003
  # Each D update sees 100 labelled and 100 other training digits.
  assert config.train.batch_size == 200 and config.data.labelled_fraction == 0.5


@pytest.mark.parametrize('spread', ['even', 'uneven'])
def test_image_mlp_step_on_eight_devices_equals_one_device(spread):
  # Noise off (each device draws its own) and SGD (see tests/test_step.py). 'even':
  # every device holds one labelled and one unlabelled row; 'uneven': devices hold 0,
  # 1 or 2 labelled rows, as real batches do (the class loss must still be the mean
  # over the global batch's labelled rows, not a mean of per-device means).
  config = smoke_config()
  config.model.d_input_noise = config.model.d_hidden_noise = 0.0
  for opt in (config.optim.g, config.optim.d):
    opt.update(name='sgd', learning_rate=0.1)
  state = state_lib.create_state(config, jax.random.key(0))
  batch = partly_labelled_batch()
  if spread == 'uneven':
    batch['labels'][:, :8] = np.random.default_rng(1).integers(0, 10, 8)
    batch['labels'][:, 8:] = UNLABELLED
    batch['labels'][:, 1] = UNLABELLED
  batches, key = [batch], jax.random.key(3)
  single, m1 = run_steps(config, parallel.DataParallel('shard_map', devices=jax.devices()[:1]),
                         state, batches, key)
  multi, m8 = run_steps(config, parallel.DataParallel('shard_map', devices=jax.devices()[:8]),
                        state, batches, key)
  # atol: G's Dense biases sit before BatchNorm, so their gradient is 0 up to rounding
  # (~1e-10), which a relative comparison would magnify.
  for multi_params, single_params in ((multi.d_params, single.d_params),
                                      (multi.g_params, single.g_params)):
    for a, b in zip(jax.tree.leaves(multi_params), jax.tree.leaves(single_params)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
  assert max_rel_diff(multi.d_params, state.d_params) > 1e-4  # not vacuous
  assert max_rel_diff(multi.g_params, state.g_params) > 1e-4
  np.testing.assert_allclose(m8['d_class'], m1['d_class'], rtol=1e-5)
  np.testing.assert_allclose(m8['feature_matching'], m1['feature_matching'], rtol=1e-5)
