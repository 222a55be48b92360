"""Tests of gan_jax.models.mlp: shapes, PacGAN / minibatch stddev / spectral norm, the
sown features, and its config checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import defaults
from gan_jax import errors
from gan_jax import models


def model_config(**overrides):
  """config.model of a small mlp; `overrides` replace fields."""
  config = defaults.get_config().model
  config.update(dict(name='mlp', channels=2, z_dim=8, hidden=16, num_layers=2,
                     g_norm='none', d_norm='none'))
  config.update(overrides)
  return config


def init(config, batch=8):
  generator, discriminator = models.build(config)
  key_g, key_d = jax.random.split(jax.random.key(0))
  z = jnp.zeros((batch, config.z_dim))
  g_vars = generator.init(key_g, z, train=False)
  d_vars = discriminator.init(key_d, generator.apply(g_vars, z, train=False), train=False)
  return generator, discriminator, g_vars, d_vars


@pytest.mark.parametrize('pack,minibatch_std,spectral_norm', [
    (1, False, False), (4, True, True)])
def test_shapes(pack, minibatch_std, spectral_norm):
  config = model_config(pack=pack, minibatch_std=minibatch_std, spectral_norm=spectral_norm)
  generator, discriminator, g_vars, d_vars = init(config)
  z = jax.random.normal(jax.random.key(4), (8, config.z_dim)) * 10.0
  points = generator.apply(g_vars, z, train=True)
  assert points.shape == (8, 2) and points.dtype == jnp.float32
  assert float(jnp.abs(points).max()) > 1.0  # no tanh: toy data spans [-4, 4]
  logits, _ = discriminator.apply(d_vars, points, train=True, mutable=['batch_stats'])
  assert logits.shape == (8 // pack,)
  assert d_vars['params']['dense0']['kernel'].shape[0] == 2 * pack + int(minibatch_std)
  assert ('batch_stats' in d_vars) == spectral_norm
  assert set(g_vars) == {'params'}


def test_pack_needs_a_multiple_of_pack():
  _, discriminator, _, d_vars = init(model_config(pack=4))
  with pytest.raises(ValueError, match='multiple of pack'):
    discriminator.apply(d_vars, jnp.zeros((7, 2)), train=False)


def test_features_feed_the_output_layer():
  config = model_config(pack=2)
  _, discriminator, _, d_vars = init(config)
  x = jax.random.normal(jax.random.key(1), (8, 2))
  logits, state = discriminator.apply(d_vars, x, train=False, mutable=['intermediates'])
  (features,) = state['intermediates']['features']
  assert features.shape == (4, 16)
  logit = d_vars['params']['logit']
  np.testing.assert_allclose(logits, features @ logit['kernel'][:, 0] + logit['bias'][0],
                             rtol=1e-5, atol=1e-6)


def test_labels_are_ignored():
  generator, discriminator, g_vars, d_vars = init(model_config())
  z = jax.random.normal(jax.random.key(2), (8, 8))
  points = generator.apply(g_vars, z, train=False)
  np.testing.assert_array_equal(generator.apply(g_vars, z, jnp.arange(8), train=False), points)
  np.testing.assert_array_equal(
      discriminator.apply(d_vars, points, jnp.arange(8), train=False),
      discriminator.apply(d_vars, points, train=False))


@pytest.mark.parametrize('field,value', [('num_classes', 10), ('g_norm', 'layer'),
                                         ('d_norm', 'group'), ('pack', 0)])
def test_bad_fields_are_config_errors(field, value):
  with pytest.raises(errors.ConfigError, match=f'model.{field}'):
    models.build(model_config(**{field: value}))


def test_bf16_points_are_not_rounded_to_bf16():
  # The toy modes are 0.01-0.05 wide at radius up to 4, where bf16's spacing is 0.03:
  # G's output layer gives float32 points (bf16 operands, float32 accumulation).
  f32_config, bf16_config = model_config(hidden=64), model_config(hidden=64, dtype='bfloat16')
  generator, _, g_vars, _ = init(f32_config)
  bf16_generator, _ = models.build(bf16_config)
  z = jax.random.normal(jax.random.key(1), (4096, f32_config.z_dim))
  g_vars = jax.tree.map(lambda x: x * 20.0, g_vars)  # points out to a few units
  points = np.asarray(generator.apply(g_vars, z, train=False))
  bf16_points = np.asarray(bf16_generator.apply(g_vars, z, train=False))
  assert bf16_points.dtype == np.float32 and np.abs(points).max() > 2
  snapped = np.asarray(jnp.asarray(bf16_points).astype(jnp.bfloat16).astype(jnp.float32))
  assert np.mean(snapped == bf16_points) < 0.05   # not on bf16's lattice
  assert len(np.unique(bf16_points[:, 0])) > 0.9 * len(z)
  # Still close to float32 (the hidden layers run in bf16).
  assert np.max(np.abs(bf16_points - points)) < 0.05 * np.abs(points).max()
