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
  assert config.train.batch_size == BATCH and config.model.d_norm == 'none'
  return config


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


def _supervised_gradient(config, state, batch):
  """D's gradient with aux_weight 1 minus the one with aux_weight 0: the class term's."""
  setup = step_lib.make_train_step(config).args[0]
  fake = np.zeros_like(batch['images'][0])
  grads = []
  for weight in (1.0, 0.0):
    grad_fn = jax.grad(objectives.discriminator_objective, argnums=1, has_aux=True)
    grad, _ = grad_fn(dataclasses.replace(setup, aux_weight=weight), state.d_params, state,
                      batch['images'][0], batch['labels'][0], fake, None, jax.random.key(2))
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
  full = smoke_config()
  assert config.model == full.model and config.data == full.data
