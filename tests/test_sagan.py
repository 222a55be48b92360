"""Tests of gan_jax.models.sagan: SAGAN as PyTorch-StudioGAN trains it on CIFAR-10.

Its D is BigGAN's (tests/test_biggan.py covers it); these tests cover what differs:
G conditioned on one-hot labels, no hierarchical z, and the reference counts.
"""

import jax
import jax.numpy as jnp
import pytest

from gan_jax import defaults
from gan_jax import models
from tests.test_biggan import fast_jit
from tests.test_biggan import random_variables

NUM_CLASSES = 5


def model_config(**overrides):
  """config.model of a small conditional 32 px SAGAN; `overrides` replace fields."""
  config = defaults.get_config().model
  config.update(dict(name='sagan', resolution=32, channels=3, ngf=8, ndf=8, z_dim=10,
                     num_classes=NUM_CLASSES,
                     d_norm='none', spectral_norm=True, g_spectral_norm=True))
  config.update(overrides)
  return config


# Read off by instantiating StudioGAN's `src/models/resnet.py` (commit 947b35e,
# 2023-08-06; `utils.misc` stubbed) as src/configs/CIFAR10/SAGAN.yaml builds it: the
# default backbone 'resnet', default g/d_conv_dim 64 and z_dim 128, img_size 32,
# apply_g_sn / apply_d_sn, apply_attn with attn_g_loc [2] / attn_d_loc [1], and
# summing `p.numel()` over `parameters()`.


def test_cifar10_param_counts_match_studiogan():
  # g_cond_mtd 'cBN', d_cond_mtd 'PD', num_classes 10.
  config = model_config(ngf=64, ndf=64, z_dim=128, num_classes=10, attention_resolution=16)
  assert models.count_params(config) == (4_386_308, 1_075_586)


def test_unconditional_param_counts_match_studiogan():
  # The same with g_cond_mtd = d_cond_mtd = 'W/O' (plain BatchNorm2d in G).
  config = model_config(ngf=64, ndf=64, z_dim=128, num_classes=0)
  assert models.count_params(config) == (4_358_660, 1_074_306)


def _generator_params(config):
  generator, _ = models.build(config)
  z, labels = jnp.zeros((2, config.z_dim)), jnp.zeros((2,), jnp.int32)
  return jax.eval_shape(
      lambda: generator.init(jax.random.key(0), z, labels, train=False))['params']


def test_generator_is_conditioned_on_one_hot_labels_and_all_of_z():
  # z_dim 10 could not be split into 4 chunks: SAGAN does not split z.
  params = _generator_params(model_config(shared_dim=64, hierarchical_z=True))
  assert 'shared' not in params
  assert params['linear0']['kernel'].shape == (10, 4 * 4 * 32)   # ngf * 4 channels
  assert params['block0']['bn1']['gain']['kernel'].shape == (NUM_CLASSES, 32)
  assert params['block2']['bn2']['bias']['kernel'].shape == (NUM_CLASSES, 32)


def test_unconditional_generator_uses_affine_batch_norm():
  params = _generator_params(model_config(num_classes=0))
  assert set(params['block0']['bn1']) == {'bn'}
  assert set(params['block0']['bn1']['bn']) == {'scale', 'bias'}


@pytest.mark.parametrize('resolution', [32, 64, 128])
def test_generator_shapes(resolution):
  generator, _ = models.build(model_config(resolution=resolution))
  z, labels = jnp.zeros((2, 10)), jnp.zeros((2,), jnp.int32)
  images, _ = jax.eval_shape(
      lambda: generator.init_with_output(jax.random.key(0), z, labels, train=False))
  assert images.shape == (2, resolution, resolution, 3) and images.dtype == jnp.float32


def test_labels_change_the_generated_images():
  generator, _ = models.build(model_config())
  z = jax.random.normal(jax.random.key(1), (4, 10))
  labels = jnp.arange(4, dtype=jnp.int32)
  g_vars = random_variables(generator, z, labels)
  g_eval = fast_jit(lambda y: generator.apply(g_vars, z, y, train=False))
  images, other = g_eval(labels), g_eval((labels + 1) % NUM_CLASSES)
  assert float(jnp.min(images)) >= -1.0 and float(jnp.max(images)) <= 1.0
  assert float(jnp.max(jnp.abs(other - images))) > 1e-3


def test_registered_with_data_shape():
  assert {'biggan', 'sagan'} <= set(models.names())
  assert models.data_shape(model_config(resolution=64)) == (64, 64, 3)
  assert models.data_shape(model_config(name='biggan', channels=1)) == (32, 32, 1)
