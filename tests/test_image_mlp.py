"""Tests of gan_jax.models.image_mlp: shapes, weight normalisation against numpy, the
Gaussian noise, the semi-supervised head, parameter counts and config checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import defaults
from gan_jax import errors
from gan_jax import models
from gan_jax.models import image_mlp


def model_config(**overrides):
  """config.model of a small image_mlp (8x8x1, semi-supervised head); `overrides` win."""
  config = defaults.get_config().model
  config.update(dict(name='image_mlp', resolution=8, channels=1, z_dim=6, hidden=12,
                     num_layers=2, g_norm='batch', d_norm='weight', d_widths='10,7',
                     num_classes=3, d_cond='semi_supervised'))
  config.update(overrides)
  return config


def init(config, batch=5):
  generator, discriminator = models.build(config)
  z = jax.random.normal(jax.random.key(0), (batch, config.z_dim))
  g_vars = generator.init(jax.random.key(1), z, train=False)
  images = generator.apply(g_vars, z, train=False)
  d_vars = discriminator.init(jax.random.key(2), images, train=False)
  return generator, discriminator, g_vars, d_vars, images


def _randomise(params, key):
  """Every leaf replaced by N(0, 1) values (so scales and biases are not their init)."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(tree, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])


def _numpy_discriminator(params, images, widths):
  """D by hand: w = scale * v / ||v|| per output unit, ReLU, the class layer."""
  def dense(name, h):
    v = np.asarray(params[name]['kernel'], np.float64)
    scale = np.asarray(params[f'wn_{name}'][f'{name}/kernel/scale'], np.float64)
    w = v / np.linalg.norm(v, axis=0, keepdims=True) * scale
    return h @ w + np.asarray(params[name]['bias'], np.float64)
  h = np.asarray(images, np.float64).reshape(len(images), -1)
  for k in range(len(widths)):
    h = np.maximum(dense(f'dense{k}', h), 0.0)
  features = h
  return dense('classifier', h), features


def test_shapes_and_ranges():
  config = model_config(resolution=4, channels=3)
  generator, discriminator, g_vars, d_vars, images = init(config)
  assert images.shape == (5, 4, 4, 3) and images.dtype == jnp.float32
  assert float(jnp.abs(images).max()) <= 1.0
  logits = discriminator.apply(d_vars, images, train=False)
  assert logits.shape == (5,) and logits.dtype == jnp.float32
  fakes, _ = generator.apply(g_vars, jnp.ones((5, config.z_dim)), train=True,
                             mutable=['batch_stats'])
  assert fakes.shape == (5, 4, 4, 3)


def test_weight_normalised_discriminator_matches_numpy():
  config = model_config()
  _, discriminator, _, d_vars, images = init(config)
  params = _randomise(d_vars['params'], jax.random.key(7))
  logits, state = discriminator.apply({'params': params}, images, train=False,
                                      mutable=['intermediates'])
  class_logits, features = _numpy_discriminator(params, images, (10, 7))
  got = state['intermediates']
  np.testing.assert_allclose(got['class_logits'][0], class_logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got['features'][0], features, rtol=1e-5, atol=1e-5)
  # The real-vs-fake logit of the semi-supervised head: log sum_k exp(l_k).
  lse = np.log(np.sum(np.exp(class_logits), axis=1))
  np.testing.assert_allclose(logits, lse, rtol=1e-5, atol=1e-5)


def test_weight_norm_makes_d_invariant_to_the_kernel_scale():
  _, discriminator, _, d_vars, images = init(model_config())
  params = d_vars['params']
  scaled = dict(params, dense0=dict(params['dense0'], kernel=params['dense0']['kernel'] * 7.0))
  np.testing.assert_allclose(discriminator.apply({'params': scaled}, images, train=False),
                             discriminator.apply({'params': params}, images, train=False),
                             rtol=1e-5)
  unnormalised = model_config(d_norm='none')
  _, plain, _, plain_vars, _ = init(unnormalised)
  assert 'wn_dense0' not in plain_vars['params']
  doubled = dict(plain_vars['params'], dense0=dict(
      plain_vars['params']['dense0'], kernel=plain_vars['params']['dense0']['kernel'] * 7.0))
  assert not np.allclose(plain.apply({'params': doubled}, images, train=False),
                         plain.apply(plain_vars, images, train=False))


def test_noise_only_in_training_calls_with_a_noise_rng():
  config = model_config(d_input_noise=0.3, d_hidden_noise=0.5)
  _, discriminator, _, d_vars, images = init(config)
  clean = discriminator.apply(d_vars, images, train=False)
  np.testing.assert_allclose(discriminator.apply(d_vars, images, train=True), clean, rtol=1e-6)
  noisy = lambda key: discriminator.apply(d_vars, images, train=True, rngs={'noise': key})
  first = noisy(jax.random.key(3))
  assert not np.allclose(first, clean, atol=1e-3)
  np.testing.assert_array_equal(first, noisy(jax.random.key(3)))
  assert not np.allclose(first, noisy(jax.random.key(4)), atol=1e-3)


def test_features_are_sown_before_the_hidden_noise():
  # One hidden layer and no input noise: its output noise is the only noise.
  config = model_config(d_input_noise=0.0, d_hidden_noise=2.0, d_widths='10')
  _, discriminator, _, d_vars, images = init(config)
  _, clean = discriminator.apply(d_vars, images, train=False, mutable=['intermediates'])
  _, noisy = discriminator.apply(d_vars, images, train=True, mutable=['intermediates'],
                                 rngs={'noise': jax.random.key(0)})
  # The features are equal, the class logits (computed from the noisy features) not.
  np.testing.assert_allclose(noisy['intermediates']['features'][0],
                             clean['intermediates']['features'][0], rtol=1e-6)
  assert not np.allclose(noisy['intermediates']['class_logits'][0],
                         clean['intermediates']['class_logits'][0], atol=1e-3)


def test_unconditional_discriminator_has_one_weight_normalised_logit():
  config = model_config(num_classes=0)
  _, discriminator, _, d_vars, images = init(config)
  assert d_vars['params']['logit']['kernel'].shape == (7, 1)
  assert 'classifier' not in d_vars['params']
  assert discriminator.apply(d_vars, images, train=False).shape == (5,)


def test_gradients_reach_every_parameter():
  config = model_config(d_input_noise=0.3, d_hidden_noise=0.5)
  generator, discriminator, g_vars, d_vars, _ = init(config)
  z = jax.random.normal(jax.random.key(5), (5, config.z_dim))

  def loss(g_params, d_params):
    fakes, _ = generator.apply({'params': g_params, 'batch_stats': g_vars['batch_stats']}, z,
                               train=True, mutable=['batch_stats'])
    _, state = discriminator.apply({'params': d_params}, fakes, train=True,
                                   mutable=['intermediates'],
                                   rngs={'noise': jax.random.key(6)})
    return jnp.sum(state['intermediates']['class_logits'][0] ** 2)

  grads = jax.grad(loss, argnums=(0, 1))(g_vars['params'], d_vars['params'])
  for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
    assert np.all(np.isfinite(leaf)), path
    assert np.any(leaf != 0), path


def test_count_params_of_the_papers_mnist_networks_by_hand():
  config = model_config(resolution=28, channels=1, z_dim=100, hidden=500, num_layers=2,
                        d_widths='1000,500,250,250,250', num_classes=10)
  # G: two Dense(500) + BatchNorm (scale, bias), then Dense(784) + its WN scale.
  g = (100 * 500 + 500 + 2 * 500) + (500 * 500 + 500 + 2 * 500) + (500 * 784 + 784 + 784)
  # D: kernel + bias + WN scale per layer, the 10-class layer likewise.
  widths = [784, 1000, 500, 250, 250, 250, 10]
  d = sum(a * b + 2 * b for a, b in zip(widths[:-1], widths[1:]))
  assert models.count_params(config) == (g, d)


def test_parse_widths():
  assert image_mlp.parse_widths('1000,500, 250') == (1000, 500, 250)
  for bad in ('', 'a,b', '10,0', '10,-5'):
    with pytest.raises(errors.ConfigError, match='model.d_widths'):
      image_mlp.parse_widths(bad)


def test_wrong_input_shape_is_refused():
  _, discriminator, _, d_vars, _ = init(model_config())
  with pytest.raises(ValueError, match='model.resolution'):
    discriminator.apply(d_vars, jnp.zeros((2, 16, 16, 1)), train=False)


@pytest.mark.parametrize('overrides,match', [
    (dict(d_norm='batch'), 'model.d_norm'),
    (dict(g_norm='layer'), 'model.g_norm'),
    (dict(spectral_norm=True), 'spectral'),
    (dict(pack=2, num_classes=0), 'model.pack'),
    (dict(d_cond='projection'), "d_cond='semi_supervised'"),
    (dict(d_widths='x'), 'model.d_widths'),
    (dict(d_input_noise=-1.0), 'model.d_input_noise'),
])
def test_bad_fields_are_config_errors(overrides, match):
  with pytest.raises(errors.ConfigError, match=match):
    models.build(model_config(**overrides))


def test_other_families_still_refuse_the_noise_and_the_semi_supervised_head():
  resnet = defaults.get_config().model
  resnet.update(dict(name='resnet', resolution=32, d_input_noise=0.3))
  with pytest.raises(errors.ConfigError, match='dcgan and image_mlp'):
    models.build(resnet)
