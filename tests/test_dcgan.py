"""Tests of gan_jax.models.dcgan: shapes, parameter counts against the PyTorch DCGAN
example, init, PacGAN / minibatch stddev / spectral / layer norm, bf16, the sown
features and the class-conditional variant's structure.

Widths and batches are tiny; modules run eagerly (op-by-op executables are cached
across tests, cheaper in total than compiling every small model with jit).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import defaults
from gan_jax import errors
from gan_jax import models


def model_config(**overrides):
  """config.model of a small dcgan; `overrides` replace fields."""
  config = defaults.get_config().model
  config.update(dict(name='dcgan', ngf=4, ndf=4, z_dim=8))
  config.update(overrides)
  return config


def init(config, batch=4, seed=0):
  """Builds and initialises both nets (eval mode, as a trainer would)."""
  generator, discriminator = models.build(config)
  key_g, key_d = jax.random.split(jax.random.key(seed))
  labels = jnp.arange(batch) % config.num_classes if config.num_classes else None
  z = jnp.zeros((batch, config.z_dim))
  g_vars = generator.init(key_g, z, labels, train=False)
  x = generator.apply(g_vars, z, labels, train=False)
  d_vars = discriminator.init(key_d, x, labels, train=False)
  return generator, discriminator, g_vars, d_vars


def abstract_params(config):
  """Parameter shapes of both nets, via eval_shape (no allocation)."""
  generator, discriminator = models.build(config)
  size = config.resolution
  g_vars = jax.eval_shape(lambda: generator.init(
      jax.random.key(0), jnp.zeros((2, config.z_dim)), train=False))
  d_vars = jax.eval_shape(lambda: discriminator.init(
      jax.random.key(0), jnp.zeros((2, size, size, config.channels)), train=False))
  return g_vars['params'], d_vars['params']


# ---- shapes, dtypes, ranges ---------------------------------------------------------------


@pytest.mark.parametrize('resolution', [28, 32, 64, 128])
def test_shapes_dtype_range(resolution):
  config = model_config(resolution=resolution, channels=3)
  generator, discriminator, g_vars, d_vars = init(config)
  z = jax.random.normal(jax.random.key(1), (4, config.z_dim)) * 3.0
  images, g_updates = generator.apply(g_vars, z, train=True, mutable=['batch_stats'])
  assert images.shape == (4, resolution, resolution, 3)
  assert images.dtype == jnp.float32
  assert float(jnp.min(images)) >= -1.0 and float(jnp.max(images)) <= 1.0
  assert set(g_updates) == {'batch_stats'}
  logits, d_updates = discriminator.apply(d_vars, images, train=True, mutable=['batch_stats'])
  assert logits.shape == (4,) and logits.dtype == jnp.float32
  assert set(d_updates) == {'batch_stats'}
  # Eval mode needs no mutable collections.
  assert discriminator.apply(d_vars, images, train=False).shape == (4,)


def test_bad_resolution_is_a_config_error():
  with pytest.raises(errors.ConfigError, match='model.resolution'):
    models.build(model_config(resolution=5))


def test_discriminator_rejects_wrong_image_size():
  _, discriminator, _, d_vars = init(model_config(resolution=32))
  with pytest.raises(ValueError, match='32'):
    discriminator.apply(d_vars, jnp.zeros((2, 28, 28, 1)), train=False)


# ---- parameter counts vs the PyTorch DCGAN example ------------------------------------


def pytorch_dcgan_counts(nz, ngf, ndf, nc):
  """Parameter counts of the PyTorch DCGAN example's nets, from its layer list.

  Written from the PyTorch module definitions (ConvTranspose2d/Conv2d with
  bias=False: in * out * k * k weights; BatchNorm2d: 2 * C), not from our code.
  """
  g_convs = [(nz, ngf * 8), (ngf * 8, ngf * 4), (ngf * 4, ngf * 2), (ngf * 2, ngf), (ngf, nc)]
  g_bns = [ngf * 8, ngf * 4, ngf * 2, ngf]
  d_convs = [(nc, ndf), (ndf, ndf * 2), (ndf * 2, ndf * 4), (ndf * 4, ndf * 8), (ndf * 8, 1)]
  d_bns = [ndf * 2, ndf * 4, ndf * 8]
  g = sum(i * o * 16 for i, o in g_convs) + sum(2 * c for c in g_bns)
  d = sum(i * o * 16 for i, o in d_convs) + sum(2 * c for c in d_bns)
  return g, d


def test_param_counts_match_pytorch_example():
  expected_g, expected_d = pytorch_dcgan_counts(nz=100, ngf=64, ndf=64, nc=3)
  assert (expected_g, expected_d) == (3_576_704, 2_765_568)
  config = model_config(resolution=64, channels=3, ngf=64, ndf=64, z_dim=100)
  g_params, d_params = abstract_params(config)
  assert models.param_count(g_params) == expected_g
  assert models.param_count(d_params) == expected_d


def test_extra_layers_match_wgan_reference_counts():
  # The WGAN reference DCGAN (n_extra_layers) adds, per extra layer, a 3x3 conv
  # without bias (C * C * 9 weights) and a BatchNorm2d (2 * C) at width ngf in G
  # and ndf in D; written from that definition, not from our code.
  base_g, base_d = pytorch_dcgan_counts(nz=100, ngf=64, ndf=64, nc=3)
  config = model_config(resolution=64, channels=3, ngf=64, ndf=64, z_dim=100, extra_layers=2)
  g_params, d_params = abstract_params(config)
  assert models.param_count(g_params) == base_g + 2 * (64 * 64 * 9 + 2 * 64)
  assert models.param_count(d_params) == base_d + 2 * (64 * 64 * 9 + 2 * 64)


def test_extra_layers_run_at_8px():
  # 8x8 digits layout: one stride-2 layer each, the extra layers at 4x4.
  config = model_config(resolution=8, channels=1, ngf=8, ndf=4, z_dim=6, extra_layers=1)
  generator, discriminator, g_vars, d_vars = init(config)
  assert g_vars['params']['extra0']['kernel'].shape == (3, 3, 8, 8)
  assert d_vars['params']['extra0']['kernel'].shape == (3, 3, 4, 4)
  assert 'bn_extra0' in g_vars['batch_stats'] and 'bn_extra0' in d_vars['batch_stats']
  z = jax.random.normal(jax.random.key(1), (4, 6))
  images, _ = generator.apply(g_vars, z, train=True, mutable=['batch_stats'])
  assert images.shape == (4, 8, 8, 1) and np.all(np.abs(np.asarray(images)) <= 1)
  logits, _ = discriminator.apply(d_vars, images, train=True, mutable=['batch_stats'])
  assert logits.shape == (4,) and np.all(np.isfinite(np.asarray(logits)))


def test_negative_extra_layers_is_a_config_error():
  with pytest.raises(errors.ConfigError, match='model.extra_layers'):
    models.build(model_config(resolution=8, extra_layers=-1))


def test_init_statistics():
  _, _, g_vars, d_vars = init(model_config(resolution=32, ngf=32, ndf=32))
  kernel = np.asarray(g_vars['params']['up1']['kernel'])
  assert abs(kernel.std() - 0.02) < 0.002 and abs(kernel.mean()) < 0.002
  scale = np.asarray(d_vars['params']['bn1']['scale'])
  assert abs(scale.mean() - 1.0) < 0.01 and 0.01 < scale.std() < 0.03
  assert np.all(np.asarray(d_vars['params']['bn1']['bias']) == 0)


# ---- PacGAN, minibatch stddev, spectral norm, layer norm -------------------------------


def test_pack_and_minibatch_std():
  config = model_config(resolution=32, channels=3, pack=2, minibatch_std=True)
  generator, discriminator, g_vars, d_vars = init(config, batch=4)
  # Packing folds two 3-channel images into 6 input channels; the stddev map adds one
  # input channel to the last conv (4x4 kernel at 32 px: start size 4).
  assert d_vars['params']['conv0']['kernel'].shape == (4, 4, 6, 4)
  assert d_vars['params']['logit']['kernel'].shape == (4, 4, 4 * 4 + 1, 1)
  images = generator.apply(g_vars, jnp.ones((6, config.z_dim)), train=False)
  logits, _ = discriminator.apply(d_vars, images, train=True, mutable=['batch_stats'])
  assert logits.shape == (3,)
  with pytest.raises(ValueError, match='multiple of pack=2'):
    discriminator.apply(d_vars, images[:5], train=False)


def test_spectral_norm_state_in_batch_stats_and_updated():
  config = model_config(resolution=32, spectral_norm=True, d_norm='none', g_norm='none')
  _, discriminator, g_vars, d_vars = init(config)
  assert set(g_vars) == {'params'}  # neither BN nor SN: no batch_stats collection
  assert set(d_vars) == {'params', 'batch_stats'}
  # conv0, conv1, conv2 and logit, each wrapped as sn_<name>.
  assert set(d_vars['batch_stats']) == {'sn_conv0', 'sn_conv1', 'sn_conv2', 'sn_logit'}
  x = jnp.ones((4, 32, 32, 1))
  _, updates = discriminator.apply(d_vars, x, train=True, mutable=['batch_stats'])
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)),
                         d_vars['batch_stats'], updates['batch_stats'])
  assert any(jax.tree.leaves(changed))
  # Eval mode uses, but does not update, the stored vectors.
  assert discriminator.apply(d_vars, x, train=False).shape == (4,)


def test_layer_norm_discriminator():
  _, discriminator, _, d_vars = init(model_config(resolution=32, d_norm='layer'))
  assert 'batch_stats' not in d_vars and 'ln1' in d_vars['params']
  assert discriminator.apply(d_vars, jnp.ones((3, 32, 32, 1)), train=True).shape == (3,)


@pytest.mark.parametrize('field,value', [('d_norm', 'group'), ('g_norm', 'layer'),
                                         ('pack', 0), ('stride2_forms', 'cudnn')])
def test_bad_fields_are_config_errors(field, value):
  with pytest.raises(errors.ConfigError, match=f'model.{field}'):
    models.build(model_config(**{field: value}))


# ---- sown features ------------------------------------------------------------------------


def test_features_are_the_last_hidden_map_averaged_over_space():
  config = model_config(resolution=32, d_norm='none')
  _, discriminator, _, d_vars = init(config)
  x = jax.random.uniform(jax.random.key(2), (4, 32, 32, 1), minval=-1, maxval=1)
  logits, state = discriminator.apply(d_vars, x, train=False, mutable=['intermediates'],
                                      capture_intermediates=True)
  (features,) = state['intermediates']['features']
  assert features.shape == (4, 16) and features.dtype == jnp.float32
  assert 'class_logits' not in state['intermediates']
  # The last hidden map is LeakyReLU(conv2 output); the 4x4 logit conv reads all of it.
  (conv2,) = state['intermediates']['conv2']['__call__']
  hidden = np.where(conv2 > 0, conv2, 0.2 * np.asarray(conv2))
  np.testing.assert_allclose(features, hidden.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
  kernel = np.asarray(d_vars['params']['logit']['kernel'])[..., 0]
  np.testing.assert_allclose(logits, np.einsum('bhwc,hwc->b', hidden, kernel), rtol=1e-4,
                             atol=1e-6)


# ---- bfloat16 compute -----------------------------------------------------------


def test_bfloat16_compute_float32_outputs():
  config = model_config(resolution=32, channels=3, ngf=8, ndf=8)
  generator, discriminator, g_vars, d_vars = init(config)
  bf_generator, bf_discriminator = models.build(model_config(
      resolution=32, channels=3, ngf=8, ndf=8, dtype='bfloat16'))
  z = jax.random.normal(jax.random.key(3), (8, config.z_dim))
  images, _ = generator.apply(g_vars, z, train=True, mutable=['batch_stats'])
  bf_images, _ = bf_generator.apply(g_vars, z, train=True, mutable=['batch_stats'])
  assert bf_images.dtype == jnp.float32
  # bfloat16 keeps 8 significant bits (relative rounding 2^-9); with images and logits
  # below 1 in size the roundings through these few layers stay a few times below 0.01.
  np.testing.assert_allclose(bf_images, images, rtol=0, atol=0.01)
  logits, _ = discriminator.apply(d_vars, images, train=True, mutable=['batch_stats'])
  bf_logits, _ = bf_discriminator.apply(d_vars, images, train=True, mutable=['batch_stats'])
  assert bf_logits.dtype == jnp.float32
  np.testing.assert_allclose(bf_logits, logits, rtol=0, atol=0.01)
  # Params stay float32 under bf16 compute.
  bf_vars = bf_generator.init(jax.random.key(0), z, train=False)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(bf_vars))


# ---- class-conditional structure -----------------------------------------------------------


def test_conditional_generator_uses_conditional_batch_norm_everywhere():
  config = model_config(resolution=8, ngf=8, z_dim=6, extra_layers=1, num_classes=10)
  _, _, g_vars, _ = init(config)
  # project -> bn0 (8 channels), extra0 -> bn_extra0: per-class gains and biases,
  # BatchNorm statistics without affine parameters.
  for name in ('bn0', 'bn_extra0'):
    assert g_vars['params'][name]['gain'].shape == (10, 8)
    assert g_vars['params'][name]['bias'].shape == (10, 8)
    assert set(g_vars['batch_stats'][name]['bn']) == {'mean', 'var'}


def test_conditional_heads_see_the_flattened_last_map():
  # 8 px: phi(x) is the 4x4 x ndf map that the 4x4 logit conv reads, flattened.
  projection = model_config(resolution=8, ndf=4, z_dim=6, num_classes=10)
  _, _, _, d_vars = init(projection)
  assert d_vars['params']['projection']['embed']['embedding'].shape == (10, 4 * 4 * 4)
  acgan = model_config(resolution=8, ndf=4, z_dim=6, num_classes=10, d_cond='acgan')
  _, _, _, d_vars = init(acgan)
  assert d_vars['params']['classifier']['dense']['kernel'].shape == (4 * 4 * 4, 10)


def _last_map_and_params(d_cond):
  """(phi f64[B, 4 * 4 * 8], labels, params as numpy, logits, sown intermediates) of
  one eval call of a 16 px conditional D.

  phi, the flattened last feature map, is LeakyReLU(0.2) of the captured output of
  the last BatchNorm (bn1), so it comes from the layers before the heads only.
  """
  config = model_config(resolution=16, ndf=4, z_dim=6, num_classes=3, d_cond=d_cond,
                        spectral_norm=False)
  _, discriminator, _, d_vars = init(config)
  x = jax.random.uniform(jax.random.key(5), (4, 16, 16, 1), minval=-1, maxval=1)
  labels = jnp.array([2, 0, 1, 2])
  logits, state = discriminator.apply(d_vars, x, labels, train=False,
                                      mutable=['intermediates'], capture_intermediates=True)
  normed = np.asarray(state['intermediates']['bn1']['__call__'][0], np.float64)
  # A LeakyReLU output has negative entries, which a head fed |h| would not see.
  phi = np.where(normed > 0, normed, 0.2 * normed).reshape(4, -1)
  assert phi.shape == (4, 4 * 4 * 8) and (phi < 0).any()
  params = jax.tree.map(lambda p: np.asarray(p, np.float64), d_vars['params'])
  return phi, np.asarray(labels), params, np.asarray(logits), state['intermediates']


def test_dcgan_projection_logits_are_the_logit_conv_plus_the_embedding_term():
  # Miyato & Koyama: logit = psi(phi) + <embed(y), phi>, where the 4x4 VALID logit
  # conv on a 4x4 map is the dot product of its flattened kernel with phi.
  phi, labels, params, logits, _ = _last_map_and_params('projection')
  unconditional = phi @ params['logit']['kernel'].reshape(-1)
  embedding = params['projection']['embed']['embedding']
  expected = unconditional + np.sum(embedding[labels] * phi, axis=1)
  # DCGAN's N(0, 0.02) init makes these logits small: the bound is float32 rounding
  # relative to their scale.
  np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_dcgan_acgan_class_logits_are_a_linear_layer_of_the_last_map():
  phi, _, params, logits, intermediates = _last_map_and_params('acgan')
  dense = params['classifier']['dense']
  expected = phi @ dense['kernel'] + dense['bias']
  np.testing.assert_allclose(intermediates['class_logits'][0], expected, rtol=0,
                             atol=1e-5 * np.abs(expected).max())
  # ACGAN's real-vs-fake logit is the logit conv alone.
  unconditional = phi @ params['logit']['kernel'].reshape(-1)
  np.testing.assert_allclose(logits, unconditional, rtol=0,
                             atol=1e-5 * np.abs(unconditional).max())


def test_conditional_generator_needs_batch_norm():
  with pytest.raises(errors.ConfigError, match='model.g_norm'):
    models.build(model_config(num_classes=10, g_norm='none'))


# ---- Gaussian noise in D (semi-supervised GAN regulariser) --------------------------------


def _conv_outputs(discriminator, d_vars, x, *, rngs, train=True):
  """(logits, {'conv0': f32[B, H, W, C], 'conv1': ...}) of one D call."""
  logits, state = discriminator.apply(d_vars, x, train=train, rngs=rngs,
                                      mutable=['intermediates'], capture_intermediates=True)
  convs = {name: np.asarray(state['intermediates'][name]['__call__'][0])
           for name in ('conv0', 'conv1')}
  return np.asarray(logits), convs


@pytest.mark.parametrize('layer,input_noise,hidden_noise', [
    ('conv0', 0.3, 0.0), ('conv1', 0.0, 0.5)])
def test_discriminator_noise_has_the_stated_std(layer, input_noise, hidden_noise):
  # No norm and no bias: conv_k(h + n) - conv_k(h) = conv_k(n), whose std per output
  # channel c is std(n) * ||kernel[..., c]||.
  config = model_config(resolution=32, d_norm='none', ndf=8)
  _, clean_d, _, d_vars = init(config)
  _, noisy_d = models.build(model_config(resolution=32, d_norm='none', ndf=8,
                                         d_input_noise=input_noise,
                                         d_hidden_noise=hidden_noise))
  x = jax.random.uniform(jax.random.key(2), (64, 32, 32, 1), minval=-1, maxval=1)
  _, clean = _conv_outputs(clean_d, d_vars, x, rngs={})
  _, noisy = _conv_outputs(noisy_d, d_vars, x, rngs={'noise': jax.random.key(3)})
  if layer == 'conv1':   # input noise off: the first layer is untouched
    np.testing.assert_array_equal(noisy['conv0'], clean['conv0'])
  kernel = np.asarray(d_vars['params'][layer]['kernel'])
  kernel_norm = np.sqrt((kernel ** 2).sum(axis=(0, 1, 2)))
  # Away from the border, where the zero padding adds no noise.
  diff = (noisy[layer] - clean[layer])[:, 1:-1, 1:-1]
  measured = diff.std(axis=(0, 1, 2)) / kernel_norm
  np.testing.assert_allclose(measured, input_noise or hidden_noise, rtol=0.05)


def test_discriminator_noise_only_in_training_calls_with_a_noise_rng():
  config = model_config(resolution=32, d_norm='none', d_input_noise=0.3, d_hidden_noise=0.5)
  _, discriminator, _, d_vars = init(config)
  _, clean_d, _, _ = init(model_config(resolution=32, d_norm='none'))
  x = jax.random.uniform(jax.random.key(2), (4, 32, 32, 1), minval=-1, maxval=1)
  clean, _ = _conv_outputs(clean_d, d_vars, x, rngs={})
  first, _ = _conv_outputs(discriminator, d_vars, x, rngs={'noise': jax.random.key(1)})
  again, _ = _conv_outputs(discriminator, d_vars, x, rngs={'noise': jax.random.key(1)})
  other, _ = _conv_outputs(discriminator, d_vars, x, rngs={'noise': jax.random.key(2)})
  np.testing.assert_array_equal(first, again)
  assert np.abs(first - other).max() > 1e-4 and np.abs(first - clean).max() > 1e-4
  # Evaluation, and training calls without the rng (the penalties'), are noise-free.
  for train, rngs in ((False, {'noise': jax.random.key(1)}), (True, {})):
    logits, _ = _conv_outputs(discriminator, d_vars, x, rngs=rngs, train=train)
    np.testing.assert_array_equal(logits, clean)


@pytest.mark.parametrize('overrides,match', [
    (dict(d_input_noise=-0.1), 'model.d_input_noise'),
    (dict(name='resnet', resolution=32, d_hidden_noise=-0.5), 'model.d_hidden_noise'),
    (dict(name='resnet', resolution=32, d_hidden_noise=0.5), 'dcgan and image_mlp discriminators only')])
def test_bad_discriminator_noise_is_a_config_error(overrides, match):
  with pytest.raises(errors.ConfigError, match=match):
    models.build(model_config(**overrides))


# ---- model.stride2_forms ------------------------------------------------------------------


def test_xla_stride2_forms_give_the_same_outputs_and_gradients():
  """'xla' computes the stride-2 layers another way; the numbers must not change."""
  config = model_config(resolution=32, channels=3)
  generator, discriminator, g_vars, d_vars = init(config, batch=3)
  g_xla, d_xla = models.build(model_config(resolution=32, channels=3, stride2_forms='xla'))
  z = jax.random.normal(jax.random.key(1), (3, config.z_dim))

  def d_of_g(gen, disc, g_params, d_params):
    x = gen.apply({**g_vars, 'params': g_params}, z, train=False)
    return jnp.sum(jnp.sin(disc.apply({**d_vars, 'params': d_params}, x, train=False)))

  grads = {}
  for name, gen, disc in (('custom', generator, discriminator), ('xla', g_xla, d_xla)):
    value, g = jax.value_and_grad(d_of_g, argnums=(2, 3))(
        gen, disc, g_vars['params'], d_vars['params'])
    grads[name] = (value, g)
  np.testing.assert_allclose(grads['xla'][0], grads['custom'][0], rtol=1e-5)
  leaves = zip(jax.tree_util.tree_leaves(grads['xla'][1]),
               jax.tree_util.tree_leaves(grads['custom'][1]))
  for got, want in leaves:
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
  # Both forms have the same parameters (a checkpoint serves either).
  assert (jax.tree_util.tree_structure(g_xla.init(jax.random.key(0), z, train=False))
          == jax.tree_util.tree_structure(g_vars))
