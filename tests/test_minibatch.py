"""Tests of gan_jax.models.minibatch (minibatch discrimination) and its switch in the
dcgan discriminator: the layer against a direct numpy computation of Salimans et al.'s
formulas, batch dependence, and the config checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import defaults
from gan_jax import errors
from gan_jax import models
from gan_jax.models import minibatch


def numpy_minibatch_features(features, kernel, num_kernels, kernel_dim):
  """o(x_i)_b = sum_j exp(-sum_c |M_ibc - M_jbc|), M = f T, by explicit loops."""
  m = (features.astype(np.float64) @ kernel.astype(np.float64)).reshape(
      len(features), num_kernels, kernel_dim)
  out = np.zeros((len(features), num_kernels))
  for i in range(len(features)):
    for j in range(len(features)):
      for b in range(num_kernels):
        out[i, b] += np.exp(-np.sum(np.abs(m[i, b] - m[j, b])))
  return out


def test_layer_matches_numpy():
  features = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
  layer = minibatch.MinibatchDiscrimination(3, kernel_dim=4)
  variables = layer.init(jax.random.key(0), features)
  kernel = np.asarray(variables['params']['kernel'])
  assert kernel.shape == (6, 12)
  out = layer.apply(variables, features)
  assert out.shape == (5, 3) and out.dtype == jnp.float32
  np.testing.assert_allclose(out, numpy_minibatch_features(features, kernel, 3, 4),
                             rtol=1e-5, atol=1e-6)


def test_identical_rows_give_the_batch_size_and_distant_rows_give_one():
  # Every c_b(x_i, x_j) is 1 for equal projections, ~0 for far-apart ones.
  same = jnp.zeros((4, 2, 3))
  np.testing.assert_allclose(minibatch.minibatch_features(same), np.full((4, 2), 4.0))
  far = jnp.arange(4.0)[:, None, None] * 100.0 * jnp.ones((4, 2, 3))
  np.testing.assert_allclose(minibatch.minibatch_features(far), np.ones((4, 2)), atol=1e-6)


def test_kernel_init_is_normal_with_std_0_05():
  layer = minibatch.MinibatchDiscrimination(50, kernel_dim=10)
  kernel = np.asarray(layer.init(jax.random.key(1), jnp.zeros((2, 100)))['params']['kernel'])
  assert abs(kernel.std() - 0.05) < 0.002 and abs(kernel.mean()) < 0.002


def test_append_to_map_tiles_the_features_over_space():
  h = jnp.ones((2, 3, 3, 4))
  o = jnp.array([[5.0, 6.0], [7.0, 8.0]])
  out = minibatch.append_to_map(h, o)
  assert out.shape == (2, 3, 3, 6)
  np.testing.assert_array_equal(out[1, 2, 0], [1, 1, 1, 1, 7, 8])


def dcgan_config(**overrides):
  config = defaults.get_config().model
  config.update(dict(resolution=8, channels=1, ngf=8, ndf=8, z_dim=4, d_norm='none'))
  config.update(overrides)
  return config


def test_dcgan_discriminator_projects_the_flattened_last_feature_map():
  config = dcgan_config(minibatch_discrimination=6, minibatch_kernel_dim=3)
  _, discriminator = models.build(config)
  variables = discriminator.init(jax.random.key(0), jnp.zeros((2, 8, 8, 1)), train=False)
  # 8 px: one stride-2 conv to a 4x4 map of ndf = 8 channels.
  assert variables['params']['minibatch']['kernel'].shape == (4 * 4 * 8, 6 * 3)
  # The logit conv sees the map and the 6 minibatch features.
  assert variables['params']['logit']['kernel'].shape == (4, 4, 8 + 6, 1)


def test_dcgan_scores_depend_on_the_other_rows_only_with_minibatch_discrimination():
  x = jax.random.uniform(jax.random.key(2), (4, 8, 8, 1), minval=-1, maxval=1)
  other = x.at[3].set(-x[3])
  for kernels, depends in ((0, False), (6, True)):
    _, discriminator = models.build(dcgan_config(minibatch_discrimination=kernels))
    variables = discriminator.init(jax.random.key(0), x, train=False)
    first = discriminator.apply(variables, x, train=False)[:3]
    changed = discriminator.apply(variables, other, train=False)[:3]
    assert bool(jnp.any(jnp.abs(first - changed) > 1e-6)) == depends


@pytest.mark.parametrize('field,value', [
    ('minibatch_discrimination', -1), ('minibatch_kernel_dim', 0)])
def test_bad_fields_are_config_errors(field, value):
  with pytest.raises(errors.ConfigError, match=f'model.{field}'):
    models.build(dcgan_config(**{field: value}))
