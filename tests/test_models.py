"""Tests of gan_jax.models itself: the registry, data_shape, count_params, and
synchronised BatchNorm across the families."""

import jax
import numpy as np
import pytest

from gan_jax import config_files
from gan_jax import defaults
from gan_jax import errors
from gan_jax import models


def model_config(**overrides):
  """config.model with small widths; `overrides` replace fields."""
  config = defaults.get_config().model
  config.update(dict(ngf=16, ndf=16, z_dim=8, hidden=16, num_layers=2))
  config.update(overrides)
  return config


# ---- registry -------------------------------------------------------------------------


def test_registry_lists_the_families():
  assert {'dcgan', 'mlp', 'resnet'} <= set(models.names())
  assert models.names() == sorted(models.names())


def test_unknown_name_is_a_config_error_listing_the_known_ones():
  with pytest.raises(errors.ConfigError, match='model.name') as error:
    models.get('no_such_gan')
  for name in models.names():
    assert name in str(error.value)


def test_build_dispatches_on_the_name():
  generator, discriminator = models.build(model_config(name='mlp'))
  assert type(generator).__module__ == 'gan_jax.models.mlp'
  assert type(discriminator).__module__ == 'gan_jax.models.mlp'
  assert models.get('resnet') is not models.get('dcgan')


# ---- variables ------------------------------------------------------------------------


@pytest.mark.parametrize('name', ['mlp', 'dcgan'])
def test_variables_apply_with_and_without_batch_stats(name):
  # The MLP D has no batch_stats collection (flax refuses an empty one it does not
  # declare); the DCGAN G has BatchNorm statistics, which eval mode must read.
  config = model_config(name=name, channels=2 if name == 'mlp' else 1, resolution=8,
                        g_norm='batch', d_norm='none')
  generator, discriminator = models.build(config)
  z = np.zeros((2, config.z_dim), np.float32)
  g_vars = generator.init(jax.random.key(0), z, train=False)
  x = np.zeros((2,) + models.data_shape(config), np.float32)
  d_vars = discriminator.init(jax.random.key(1), x, train=False)
  assert set(models.variables(d_vars['params'], d_vars.get('batch_stats', {}))) == (
      set(d_vars))
  built = models.variables(g_vars['params'], g_vars['batch_stats'])
  assert set(built) == {'params', 'batch_stats'}
  np.testing.assert_array_equal(generator.apply(built, z, train=False),
                                generator.apply(g_vars, z, train=False))
  assert models.variables({'w': 1}, None) == {'params': {'w': 1}}


# ---- data_shape ---------------------------------------------------------------------


@pytest.mark.parametrize('overrides,shape', [
    (dict(name='dcgan', resolution=28, channels=1), (28, 28, 1)),
    (dict(name='resnet', resolution=48, channels=3), (48, 48, 3)),
    (dict(name='mlp', channels=2), (2,)),
])
def test_data_shape_per_family(overrides, shape):
  assert models.data_shape(model_config(**overrides)) == shape


# ---- count_params -------------------------------------------------------------------------


def test_count_params_counts_trainable_params_only():
  # The PyTorch DCGAN example at 64 px, ngf = ndf = 64, nz = 100 (3,576,704 / 2,765,568,
  # derived in test_dcgan.py): neither BatchNorm statistics nor spectral-norm vectors
  # (both in batch_stats) may add to these.
  config = model_config(name='dcgan', resolution=64, channels=3, ngf=64, ndf=64, z_dim=100,
                        spectral_norm=True)
  assert models.count_params(config) == (3_576_704, 2_765_568)


def test_count_params_of_an_mlp_by_hand():
  config = model_config(name='mlp', channels=2, z_dim=8, hidden=16, num_layers=2,
                        g_norm='batch', d_norm='none', pack=2)
  # G: Dense 8->16, BN(16), Dense 16->16, BN(16), Dense 16->2 (weights + biases, BN 2C).
  g = (8 * 16 + 16) + 2 * 16 + (16 * 16 + 16) + 2 * 16 + (16 * 2 + 2)
  # D on pairs of packed points: Dense 4->16, Dense 16->16, Dense 16->1.
  d = (4 * 16 + 16) + (16 * 16 + 16) + (16 + 1)
  assert models.count_params(config) == (g, d)


@pytest.mark.parametrize('name', config_files.names())
def test_count_params_on_every_config_file(name):
  config = config_files.load(name)
  g_count, d_count = models.count_params(config.model)
  assert isinstance(g_count, int) and g_count > 0
  assert isinstance(d_count, int) and d_count > 0


# ---- synchronised BatchNorm ------------------------------------------------------


@pytest.mark.parametrize('overrides', [
    dict(name='dcgan', resolution=32, channels=3, ngf=4, ndf=4),
    dict(name='mlp', g_norm='batch', d_norm='batch'),
    dict(name='resnet', resolution=32, channels=3, ngf=8, ndf=8, d_norm='none'),
], ids=lambda overrides: overrides['name'])
def test_bn_axis_name_synchronises_statistics(overrides):
  config = model_config(**overrides)
  generator, discriminator = models.build(config, bn_axis_name='data')
  key_g, key_d = jax.random.split(jax.random.key(0))
  z = jax.random.normal(jax.random.key(2), (8, config.z_dim))
  # Compiled (jit), not run op by op: the same numbers, a fraction of the time.
  g_vars = jax.jit(lambda z: generator.init(key_g, z, train=False))(z)
  d_vars = jax.jit(lambda z: discriminator.init(
      key_d, generator.apply(g_vars, z, train=False), train=False))(z)

  def g_apply(z):
    return generator.apply(g_vars, z, train=True, mutable=['batch_stats'])

  def d_apply(x):
    return discriminator.apply(d_vars, x, train=True, mutable=['batch_stats'])

  # Reference: the same modules without an axis name on the whole batch.
  ref_g, ref_d = models.build(config)
  images, g_stats = jax.jit(
      lambda z: ref_g.apply(g_vars, z, train=True, mutable=['batch_stats']))(z)
  logits, d_stats = jax.jit(
      lambda x: ref_d.apply(d_vars, x, train=True, mutable=['batch_stats']))(images)

  chunked = lambda a: a.reshape((2, a.shape[0] // 2) + a.shape[1:])
  images_2, g_stats_2 = jax.jit(jax.vmap(g_apply, axis_name='data'))(chunked(z))
  logits_2, d_stats_2 = jax.jit(jax.vmap(d_apply, axis_name='data'))(chunked(images))
  np.testing.assert_allclose(images_2.reshape(images.shape), images, atol=1e-5)
  np.testing.assert_allclose(logits_2.reshape(logits.shape), logits, atol=1e-4, rtol=1e-4)
  for stats, stats_2 in ((g_stats, g_stats_2), (d_stats, d_stats_2)):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(b[0], a, atol=1e-5), stats, stats_2)


@pytest.mark.parametrize('name,field,value', [
    ('resnet', 'minibatch_discrimination', 8), ('sagan', 'minibatch_discrimination', 8),
    ('biggan', 'minibatch_discrimination', 8), ('mlp', 'minibatch_discrimination', 8),
    ('sagan', 'pack', 2), ('sagan', 'minibatch_std', True), ('resnet', 'd_input_noise', 0.1),
    # G's spectral norm: only resnet, sagan and biggan generators have it.
    ('dcgan', 'g_spectral_norm', True), ('mlp', 'g_spectral_norm', True),
    ('image_mlp', 'g_spectral_norm', True),
    # Read by one family each: DCGAN's extra layers, BigGAN / SAGAN's attention side,
    # the ResNet G's upsampling.
    ('resnet', 'extra_layers', 2), ('biggan', 'extra_layers', 1), ('mlp', 'extra_layers', 1),
    ('dcgan', 'attention_resolution', 16), ('resnet', 'attention_resolution', 0),
    ('biggan', 'upsample', 'nearest'), ('dcgan', 'upsample', 'nearest'),
    ('resnet', 'stride2_forms', 'xla'), ('sagan', 'stride2_forms', 'xla'),
])
def test_switches_a_family_does_not_implement_are_refused(name, field, value):
  model_config = defaults.get_config().model
  model_config.name = name
  model_config[field] = value
  with pytest.raises(errors.ConfigError, match=f'model.{field}.*would ignore it'):
    models.build(model_config)


def test_d_switches_are_accepted_and_used_by_the_families_that_implement_them():
  # image_mlp's d_input_noise adds no parameters: built through models.build and shown
  # to change training calls only in
  # tests/test_image_mlp.py::test_noise_only_in_training_calls_with_a_noise_rng.
  for name, field, value in (('dcgan', 'minibatch_discrimination', 8), ('mlp', 'pack', 2),
                             ('resnet', 'pack', 2), ('resnet', 'minibatch_std', True),
                             ('mlp', 'minibatch_std', True)):
    off = defaults.get_config().model
    off.name = name
    off.d_norm = 'none'  # one every family here accepts
    on = off.copy_and_resolve_references()
    on[field] = value
    models.build(on)
    # Each of these switches gives D parameters of its own (or wider first-layer
    # inputs), so a family that took the field and ignored it fails here.
    assert models.count_params(on)[1] != models.count_params(off)[1], (name, field)


# A config of each family (the defaults hold settings some families refuse).
FAMILY_CONFIGS = ('dcgan_digits', 'sngan_cifar10', 'biggan_cifar10', 'sagan_cifar10',
                  'toy_ring', 'semi_supervised_digits')


def test_the_family_configs_cover_every_family():
  covered = {config_files.load(n).model.name for n in FAMILY_CONFIGS}
  assert covered == set(models.names()), (
      f'families without a config in FAMILY_CONFIGS: {sorted(set(models.names()) - covered)}; '
      'add a config file of each (DESIGN.md, "Adding a family")')


@pytest.mark.parametrize('config_name', FAMILY_CONFIGS)
@pytest.mark.parametrize('num_classes', [-1, True])
def test_every_family_refuses_a_class_count_that_is_not_a_count(config_name, num_classes):
  model_config = config_files.load(config_name).model
  model_config.num_classes = num_classes
  with pytest.raises(errors.ConfigError, match=f'model.num_classes must be .*got {num_classes}'):
    models.build(model_config)
