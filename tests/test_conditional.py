"""Tests of gan_jax.models.conditional and of class conditioning in the families:
conditional BatchNorm and the projection / ACGAN heads against numpy, labels changing
(or, unconditionally, not changing) outputs, and the config checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import defaults
from gan_jax import errors
from gan_jax import losses
from gan_jax import models
from gan_jax.models import conditional

LABELS = jnp.array([0, 1, 2, 1])


def model_config(name, **overrides):
  """config.model of a small conditional model of family `name`."""
  config = defaults.get_config().model
  config.update(dict(name=name, z_dim=8, ngf=8, ndf=8, num_classes=3))
  if name == 'dcgan':
    config.update(dict(resolution=8, channels=1))
  else:
    config.update(dict(resolution=32, channels=3, ngf=16, ndf=16, d_norm='none',
                       spectral_norm=True, g_spectral_norm=name in ('biggan', 'sagan')))
  config.update(overrides)
  return config


def init(config, labels=LABELS):
  generator, discriminator = models.build(config)
  key_g, key_d = jax.random.split(jax.random.key(0))
  z = jnp.zeros((labels.shape[0], config.z_dim))
  g_vars = generator.init(key_g, z, labels, train=False)
  x = jnp.zeros((labels.shape[0],) + models.data_shape(config))
  return generator, discriminator, g_vars, discriminator.init(key_d, x, labels, train=False)


# ---- the layers, against numpy --------------------------------------------------------


def test_conditional_batch_norm_matches_numpy():
  x = np.random.default_rng(0).standard_normal((4, 2, 3, 5)).astype(np.float32) * 2 + 1
  layer = conditional.ConditionalBatchNorm(3)
  variables = layer.init(jax.random.key(0), x, LABELS, train=False)
  assert set(variables['params']) == {'gain', 'bias'}
  rng = np.random.default_rng(1)
  gain, bias = rng.standard_normal((2, 3, 5)).astype(np.float32)
  out, _ = layer.apply({'params': {'gain': gain, 'bias': bias},
                        'batch_stats': variables['batch_stats']}, x, LABELS, train=True,
                       mutable=['batch_stats'])
  normed = (x - x.mean(axis=(0, 1, 2))) / np.sqrt(x.var(axis=(0, 1, 2)) + 1e-5)
  y = np.asarray(LABELS)
  np.testing.assert_allclose(out, normed * gain[y][:, None, None] + bias[y][:, None, None],
                             atol=1e-5)


def test_conditional_batch_norm_init_as_torch_mimicry():
  layer = conditional.ConditionalBatchNorm(10)
  params = layer.init(jax.random.key(0), jnp.zeros((2, 64)), jnp.zeros(2, jnp.int32),
                      train=False)['params']
  gain, bias = np.asarray(params['gain']), np.asarray(params['bias'])
  assert gain.shape == bias.shape == (10, 64)
  assert abs(gain.mean() - 1) < 0.005 and abs(gain.std() - 0.02) < 0.003  # N(1, 0.02)
  assert np.all(bias == 0)


def test_projection_matches_numpy():
  features = np.random.default_rng(2).standard_normal((4, 6)).astype(np.float32)
  head = conditional.Projection(3, spectral_norm=False)
  variables = head.init(jax.random.key(0), features, LABELS, train=False)
  embedding = np.asarray(variables['params']['embed']['embedding'])
  assert embedding.shape == (3, 6)
  out = head.apply(variables, features, LABELS, train=False)
  np.testing.assert_allclose(out, np.sum(embedding[np.asarray(LABELS)] * features, axis=1),
                             rtol=1e-5, atol=1e-6)


def test_projection_embedding_is_spectrally_normalised():
  features = np.random.default_rng(3).standard_normal((4, 6)).astype(np.float32)
  head = conditional.Projection(3, spectral_norm=True)
  variables = head.init(jax.random.key(0), features, LABELS, train=False)
  for _ in range(30):  # converge the stored power iteration
    _, updates = head.apply(variables, features, LABELS, train=True, mutable=['batch_stats'])
    variables = {'params': variables['params'], **updates}
  embedding = np.asarray(variables['params']['embed']['embedding'])
  sigma = np.linalg.svd(embedding, compute_uv=False)[0]
  out = head.apply(variables, features, LABELS, train=False)
  expected = np.sum(embedding[np.asarray(LABELS)] / sigma * features, axis=1)
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


# ---- discriminator heads in the families -------------------------------------------------


def test_resnet_projection_logits_equal_numpy_on_the_sown_features():
  config = model_config('resnet', spectral_norm=False)
  _, discriminator, _, d_vars = init(config)
  x = jax.random.uniform(jax.random.key(1), (4, 32, 32, 3), minval=-1, maxval=1)
  logits, state = discriminator.apply(d_vars, x, LABELS, train=False,
                                      mutable=['intermediates'])
  phi = np.asarray(state['intermediates']['features'][0])
  params = jax.tree.map(np.asarray, d_vars['params'])
  embedding = params['projection']['embed']['embedding']
  expected = (phi @ params['linear']['kernel'][:, 0] + params['linear']['bias'][0]
              + np.sum(embedding[np.asarray(LABELS)] * phi, axis=1))
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('name', ['resnet', 'dcgan'])
def test_acgan_class_logits_are_sown(name):
  config = model_config(name, d_cond='acgan')
  _, discriminator, _, d_vars = init(config)
  assert 'projection' not in d_vars['params']
  x = jnp.zeros((4,) + models.data_shape(config))
  logits, state = discriminator.apply(d_vars, x, LABELS, train=True,
                                      mutable=['batch_stats', 'intermediates'])
  (class_logits,) = state['intermediates']['class_logits']
  assert logits.shape == (4,) and class_logits.shape == (4, 3)
  assert class_logits.dtype == jnp.float32
  # ACGAN: the adversarial logits do not depend on the labels.
  other, _ = discriminator.apply(d_vars, x, LABELS[::-1], train=True, mutable=['batch_stats'])
  np.testing.assert_array_equal(logits, other)


@pytest.mark.parametrize('name', ['resnet', 'dcgan', 'biggan'])
def test_the_acgan_discriminator_needs_no_labels(name):
  # A classifier reads D without labels (`gan_jax.classify`, `--metrics=accuracy`).
  config = model_config(name, d_cond='acgan')
  _, discriminator, _, d_vars = init(config)
  x = jax.random.uniform(jax.random.key(3), (4,) + models.data_shape(config), minval=-1,
                         maxval=1)
  with_labels, state = discriminator.apply(d_vars, x, LABELS, train=False,
                                           mutable=['intermediates'])
  without, state_without = discriminator.apply(d_vars, x, train=False,
                                               mutable=['intermediates'])
  np.testing.assert_array_equal(with_labels, without)
  np.testing.assert_array_equal(state['intermediates']['class_logits'][0],
                                state_without['intermediates']['class_logits'][0])
  # The projection head does read them.
  _, projection, _, p_vars = init(model_config(name))
  with pytest.raises(ValueError, match='needs labels'):
    projection.apply(p_vars, x, train=False)


def test_acgan_class_logits_are_linear_in_the_features():
  config = model_config('resnet', d_cond='acgan', spectral_norm=False)
  _, discriminator, _, d_vars = init(config)
  x = jax.random.uniform(jax.random.key(2), (4, 32, 32, 3), minval=-1, maxval=1)
  _, state = discriminator.apply(d_vars, x, LABELS, train=False, mutable=['intermediates'])
  phi = np.asarray(state['intermediates']['features'][0])
  dense = d_vars['params']['classifier']['dense']
  np.testing.assert_allclose(state['intermediates']['class_logits'][0],
                             phi @ dense['kernel'] + dense['bias'], rtol=1e-4, atol=1e-4)


# ---- labels change conditional outputs, not unconditional ones -----------------------------


@pytest.mark.parametrize('name', ['resnet', 'dcgan'])
def test_labels_change_the_conditional_generator(name):
  config = model_config(name)
  generator, _, g_vars, _ = init(config)
  z = jnp.tile(jax.random.normal(jax.random.key(3), (1, 8)), (4, 1))
  # Random per-class gains / biases (init makes them nearly equal across classes).
  params = jax.tree_util.tree_map_with_path(
      lambda path, p: (jax.random.normal(jax.random.key(len(path)), p.shape) + 1
                       if 'gain' in jax.tree_util.keystr(path) else p), g_vars['params'])
  images = generator.apply({**g_vars, 'params': params}, z, LABELS, train=False)
  # Same z: examples 1 and 3 share label 1, examples 0 and 1 do not.
  np.testing.assert_allclose(images[1], images[3], atol=1e-6)
  assert float(jnp.abs(images[0] - images[1]).max()) > 1e-3


@pytest.mark.parametrize('name', ['resnet', 'dcgan'])
def test_labels_change_the_projection_discriminator(name):
  config = model_config(name)
  _, discriminator, _, d_vars = init(config)
  x = jnp.tile(jax.random.uniform(jax.random.key(4), (1,) + models.data_shape(config),
                                  minval=-1, maxval=1), (4, 1, 1, 1))
  logits = discriminator.apply(d_vars, x, LABELS, train=False)
  np.testing.assert_allclose(logits[1], logits[3], rtol=1e-6)
  assert float(jnp.abs(logits[0] - logits[1])) > 1e-4


@pytest.mark.parametrize('name', ['resnet', 'dcgan'])
def test_unconditional_models_ignore_labels(name):
  config = model_config(name, num_classes=0)
  generator, discriminator, g_vars, d_vars = init(config, labels=jnp.zeros(4, jnp.int32))
  z = jax.random.normal(jax.random.key(5), (4, 8))
  images = generator.apply(g_vars, z, train=False)
  np.testing.assert_array_equal(generator.apply(g_vars, z, LABELS, train=False), images)
  np.testing.assert_array_equal(discriminator.apply(d_vars, images, LABELS, train=False),
                                discriminator.apply(d_vars, images, train=False))


def test_conditional_models_need_labels():
  generator, discriminator, g_vars, d_vars = init(model_config('dcgan'))
  with pytest.raises(ValueError, match='needs labels'):
    generator.apply(g_vars, jnp.zeros((4, 8)), train=False)
  with pytest.raises(ValueError, match='needs labels'):
    discriminator.apply(d_vars, jnp.zeros((4, 8, 8, 1)), LABELS[:3], train=False)


# ---- config checks -------------------------------------------------------------------------


@pytest.mark.parametrize('name', ['resnet', 'dcgan'])
@pytest.mark.parametrize('overrides,field', [
    (dict(num_classes=-1), 'model.num_classes'),
    (dict(d_cond='auxiliary'), 'model.d_cond'),
    (dict(pack=2), 'model.pack'),
])
def test_bad_conditioning_fields_are_config_errors(name, overrides, field):
  with pytest.raises(errors.ConfigError, match=field):
    models.build(model_config(name, **overrides))


# ---- the semi-supervised head (d_cond='semi_supervised') -----------------------------------

# Unlabelled examples carry -1.
PARTLY_LABELLED = jnp.array([2, -1, 0, -1])


def semi_supervised(**overrides):
  return model_config('dcgan', d_cond='semi_supervised', d_norm='none', **overrides)


def init_semi_supervised(config):
  generator, discriminator = models.build(config)
  g_vars = generator.init(jax.random.key(0), jnp.zeros((4, config.z_dim)), train=False)
  d_vars = discriminator.init(jax.random.key(1), jnp.zeros((4, 8, 8, 1)), train=False)
  return generator, discriminator, g_vars, d_vars


def test_semi_supervised_logit_is_the_logsumexp_of_the_sown_class_logits():
  _, discriminator, _, d_vars = init_semi_supervised(semi_supervised())
  x = jax.random.uniform(jax.random.key(6), (4, 8, 8, 1), minval=-1, maxval=1)
  logits, state = discriminator.apply(d_vars, x, train=False, mutable=['intermediates'])
  class_logits = np.asarray(state['intermediates']['class_logits'][0], np.float64)
  assert class_logits.shape == (4, 3)
  top = class_logits.max(axis=1)
  expected = top + np.log(np.sum(np.exp(class_logits - top[:, None]), axis=1))
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_semi_supervised_head_replaces_the_logit_layer():
  _, _, _, d_vars = init_semi_supervised(semi_supervised())
  assert 'classifier' in d_vars['params'] and 'logit' not in d_vars['params']


def test_semi_supervised_generator_is_unconditional():
  config = semi_supervised()
  assert not models.generator_is_conditional(config)
  assert models.generator_is_conditional(model_config('dcgan', d_cond='acgan'))
  generator, _, g_vars, _ = init_semi_supervised(config)
  # Plain BatchNorm (scale / bias), no per-class gains.
  assert 'gain' not in str(jax.tree_util.tree_structure(g_vars['params']))
  z = jax.random.normal(jax.random.key(7), (4, 8))
  np.testing.assert_array_equal(generator.apply(g_vars, z, train=False),
                                generator.apply(g_vars, z, LABELS, train=False))


def test_semi_supervised_discriminator_ignores_labels_and_accepts_unlabelled():
  _, discriminator, _, d_vars = init_semi_supervised(semi_supervised())
  x = jax.random.uniform(jax.random.key(8), (4, 8, 8, 1), minval=-1, maxval=1)
  plain = discriminator.apply(d_vars, x, train=False)
  np.testing.assert_array_equal(discriminator.apply(d_vars, x, PARTLY_LABELLED, train=False),
                                plain)
  np.testing.assert_array_equal(discriminator.apply(d_vars, x, LABELS, train=False), plain)


def test_semi_supervised_is_refused_by_families_without_the_head():
  with pytest.raises(errors.ConfigError, match="model.d_cond='semi_supervised'"):
    models.build(model_config('resnet', d_cond='semi_supervised'))


@pytest.mark.parametrize('loss_type', ['hinge', 'wasserstein', 'least_squares'])
def test_semi_supervised_needs_a_cross_entropy_loss(loss_type):
  loss = defaults.get_config().loss
  loss.type = loss_type
  with pytest.raises(errors.ConfigError, match='loss.type'):
    models.check_loss(semi_supervised(), loss)


@pytest.mark.parametrize('d_cond', ['projection', 'acgan'])
@pytest.mark.parametrize('loss_type', losses.LOSS_TYPES)
def test_other_heads_take_any_loss(d_cond, loss_type):
  loss = defaults.get_config().loss
  loss.type = loss_type
  assert models.check_loss(model_config('dcgan', d_cond=d_cond), loss) is None  # no error
  # ... but not the semi-supervised head's entropy term.
  loss.entropy_weight = 0.1
  with pytest.raises(errors.ConfigError, match='entropy_weight'):
    models.check_loss(model_config('dcgan', d_cond=d_cond), loss)
