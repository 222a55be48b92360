"""Tests of gan_jax.models.resnet (ResNet SNGAN / cGAN-PD of torch_mimicry): parameter
counts read off the reference, blocks against numpy re-implementations, resampling,
shapes at every resolution, init, spectral norm, bf16, config checks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import defaults
from gan_jax import errors
from gan_jax import models
from gan_jax.models import resnet

# Trainable parameter counts (G, D) of torch_mimicry (github.com/kwotsin/mimicry at
# a7fda06), read off its modules instantiated with their default arguments (cGAN-PD:
# num_classes=10): torch_mimicry/nets/sngan/sngan_32.py, sngan_48.py, sngan_64.py,
# sngan_128.py, torch_mimicry/nets/cgan_pd/cgan_pd_32.py, cgan_pd_128.py (blocks from
# torch_mimicry/modules/resblocks.py, layers.py, spectral_norm.py), each counted with
# `sum(p.numel() for p in model.parameters() if p.requires_grad)` by a scratch script
# (/tmp/mimicry/counts.py) that imported those modules directly.
# Key: (resolution, ngf, ndf, bottom_width, num_classes) as the files' defaults.
MIMICRY_COUNTS = {
    'sngan_32': ((32, 256, 128, 4, 0), (4_276_739, 1_053_825)),
    'sngan_48': ((48, 512, 1024, 6, 0), (4_878_083, 10_141_441)),
    'sngan_64': ((64, 1024, 1024, 4, 0), (12_220_675, 10_141_441)),
    'sngan_128': ((128, 1024, 1024, 4, 0), (32_150_787, 29_017_857)),
    'cgan_pd_32': ((32, 256, 128, 4, 10), (4_304_387, 1_055_105)),
    'cgan_pd_128': ((128, 1024, 128, 4, 10), (32_239_491, 455_777)),
}


def model_config(**overrides):
  """config.model of a small resnet (SNGAN D); `overrides` replace fields."""
  config = defaults.get_config().model
  config.update(dict(name='resnet', resolution=32, channels=3, z_dim=8, ngf=16, ndf=16,
                     d_norm='none', spectral_norm=True))
  config.update(overrides)
  return config


def init(config, batch=4):
  generator, discriminator = models.build(config)
  key_g, key_d = jax.random.split(jax.random.key(0))
  z = jnp.zeros((batch, config.z_dim))
  g_vars = generator.init(key_g, z, train=False)
  x = jnp.zeros((batch,) + models.data_shape(config))
  return generator, discriminator, g_vars, discriminator.init(key_d, x, train=False)


@pytest.mark.parametrize('name', sorted(MIMICRY_COUNTS))
def test_param_counts_match_torch_mimicry(name):
  (resolution, ngf, ndf, bottom, num_classes), expected = MIMICRY_COUNTS[name]
  config = model_config(resolution=resolution, z_dim=128, ngf=ngf, ndf=ndf,
                        bottom_width=bottom, num_classes=num_classes)
  assert models.count_params(config) == expected


# ---- numpy references --------------------------------------------------------------


def np_conv(x, params):
  """Stride-1 convolution with padding k // 2 and bias, from the definition."""
  kernel, bias = np.asarray(params['kernel']), np.asarray(params['bias'])
  k = kernel.shape[0]
  h, w = x.shape[1:3]
  xp = np.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
  return sum(xp[:, a:a + h, b:b + w] @ kernel[a, b] for a in range(k) for b in range(k)) + bias


def np_pool(x):
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def np_bilinear_2x(x):
  """PyTorch interpolate(scale_factor=2, mode='bilinear', align_corners=False): output
  pixel o reads input coordinate max((o + 0.5) / 2 - 0.5, 0), linearly interpolated."""
  def axis(x, ax):
    n = x.shape[ax]
    src = np.maximum((np.arange(2 * n) + 0.5) / 2 - 0.5, 0)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    frac = (src - lo).reshape([-1 if i == ax else 1 for i in range(x.ndim)])
    return np.take(x, lo, axis=ax) * (1 - frac) + np.take(x, hi, axis=ax) * frac
  return axis(axis(x, 1), 2)


def np_batch_norm(x, params):
  mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
  return (x - mean) / np.sqrt(var + 1e-5) * params['scale'] + params['bias']


relu = lambda x: np.maximum(x, 0)


# ---- resampling and blocks ---------------------------------------------------------------


def test_bilinear_upsampling_matches_pytorch_formula():
  x = np.random.default_rng(0).standard_normal((2, 5, 3, 2)).astype(np.float32)
  out = resnet.upsample_2x(jnp.asarray(x), method='bilinear')
  np.testing.assert_allclose(out, np_bilinear_2x(x), atol=1e-6)


def test_nearest_upsampling_and_average_pooling():
  x = np.random.default_rng(1).standard_normal((2, 4, 6, 3)).astype(np.float32)
  np.testing.assert_array_equal(resnet.upsample_2x(jnp.asarray(x), method='nearest'),
                                x.repeat(2, axis=1).repeat(2, axis=2))
  np.testing.assert_allclose(resnet.avg_pool_2x(jnp.asarray(x)), np_pool(x), atol=1e-6)


@pytest.mark.parametrize('optimized', [False, True])
def test_dblock_matches_numpy(optimized):
  x = np.random.default_rng(2).standard_normal((2, 4, 4, 3)).astype(np.float32)
  block = resnet.DBlock(5, downsample=True, optimized=optimized, spectral_norm=False)
  params = block.init(jax.random.key(0), x, train=False)['params']
  out = block.apply({'params': params}, x, train=False)
  # torch_mimicry: a plain block's in-place first ReLU also feeds its shortcut.
  inp = x if optimized else relu(x)
  h = np_pool(np_conv(relu(np_conv(inp, params['conv1'])), params['conv2']))
  np.testing.assert_allclose(out, h + np_conv(np_pool(inp), params['shortcut']), atol=1e-5)
  hidden = 5 if optimized else 3  # a plain DBlock's hidden width is its input width
  assert params['conv1']['kernel'].shape == (3, 3, 3, hidden)


def test_dblock_without_resampling_or_new_width_has_identity_shortcut():
  x = np.random.default_rng(3).standard_normal((2, 4, 4, 3)).astype(np.float32)
  block = resnet.DBlock(3, downsample=False, spectral_norm=False)
  params = block.init(jax.random.key(0), x, train=False)['params']
  assert 'shortcut' not in params
  h = np_conv(relu(np_conv(relu(x), params['conv1'])), params['conv2'])
  np.testing.assert_allclose(block.apply({'params': params}, x, train=False), h + relu(x),
                             atol=1e-5)


def test_gblock_matches_numpy():
  x = np.random.default_rng(4).standard_normal((3, 2, 2, 4)).astype(np.float32)
  block = resnet.GBlock(5, upsample=True)
  variables = block.init(jax.random.key(0), x, train=False)
  params = jax.tree.map(np.asarray, variables['params'])
  rng = np.random.default_rng(5)
  for bn in ('bn1', 'bn2'):  # non-trivial affine BN parameters
    params[bn] = {k: rng.uniform(0.5, 1.5, v.shape).astype(np.float32)
                  for k, v in params[bn].items()}
  out, _ = block.apply({'params': params, 'batch_stats': variables['batch_stats']}, x,
                       train=True, mutable=['batch_stats'])
  h = np_conv(np_bilinear_2x(relu(np_batch_norm(x, params['bn1']))), params['conv1'])
  h = np_conv(relu(np_batch_norm(h, params['bn2'])), params['conv2'])
  np.testing.assert_allclose(out, h + np_conv(np_bilinear_2x(x), params['shortcut']),
                             atol=1e-4)


# ---- whole nets ------------------------------------------------------------------------


def resolution_config(resolution):
  return model_config(resolution=resolution, bottom_width=6 if resolution == 48 else 4)


@pytest.mark.parametrize('resolution', [32, 48, 64, 128])
def test_shapes_and_state_at_every_resolution(resolution):
  # Shapes only (jax.eval_shape traces without compiling); values: the slow test below.
  config = resolution_config(resolution)
  generator, discriminator = models.build(config)

  def forward(key):
    z = jax.random.normal(key, (4, config.z_dim))
    g_vars = generator.init(key, z, train=False)
    images, g_updates = generator.apply(g_vars, z, train=True, mutable=['batch_stats'])
    d_vars = discriminator.init(key, images, train=False)
    logits, d_updates = discriminator.apply(d_vars, images, train=True,
                                            mutable=['batch_stats', 'intermediates'])
    return images, logits, g_updates, d_updates

  images, logits, g_updates, d_updates = jax.eval_shape(forward, jax.random.key(0))
  assert images.shape == (4, resolution, resolution, 3) and images.dtype == jnp.float32
  assert logits.shape == (4,) and logits.dtype == jnp.float32
  assert d_updates['intermediates']['features'][0].shape == (4, 16)
  num_g_blocks = {32: 3, 48: 3, 64: 4, 128: 5}[resolution]
  assert {f'block{k}' for k in range(num_g_blocks)} | {'bn_out'} == set(g_updates['batch_stats'])
  assert {'bn1', 'bn2'} == set(g_updates['batch_stats']['block0'])
  num_d_blocks = {32: 4, 48: 5, 64: 5, 128: 6}[resolution]
  assert {f'block{k}' for k in range(num_d_blocks)} | {'sn_linear'} == set(
      d_updates['batch_stats'])


@pytest.mark.slow
@pytest.mark.parametrize('resolution', [32, 48, 64, 128])
def test_forward_outputs_are_bounded_and_finite_at_every_resolution(resolution):
  config = resolution_config(resolution)
  generator, discriminator, g_vars, d_vars = init(config)
  z = jax.random.normal(jax.random.key(1), (4, config.z_dim)) * 3
  images, _ = generator.apply(g_vars, z, train=True, mutable=['batch_stats'])
  assert float(jnp.abs(images).max()) <= 1.0 and float(jnp.std(images)) > 0
  logits, _ = discriminator.apply(d_vars, images, train=True, mutable=['batch_stats'])
  assert bool(jnp.all(jnp.isfinite(logits)))
  assert bool(jnp.all(jnp.isfinite(discriminator.apply(d_vars, images, train=False))))


def test_block_gradients_are_finite_and_nonzero():
  x = jax.random.normal(jax.random.key(6), (2, 4, 4, 3))
  g_block = resnet.GBlock(4, spectral_norm=True)
  d_block = resnet.DBlock(4, spectral_norm=True)
  g_vars = g_block.init(jax.random.key(0), x, train=False)
  d_vars = d_block.init(jax.random.key(1), jnp.zeros((2, 8, 8, 4)), train=False)

  def loss(g_params, d_params):
    h, _ = g_block.apply({**g_vars, 'params': g_params}, x, train=True,
                         mutable=['batch_stats'])
    out, _ = d_block.apply({**d_vars, 'params': d_params}, h, train=True,
                           mutable=['batch_stats'])
    return jnp.sum(jnp.sin(out))

  grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(g_vars['params'], d_vars['params'])
  for g in jax.tree.leaves(grads):
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0


@pytest.mark.slow
def test_gradients_are_finite():
  generator, discriminator, g_vars, d_vars = init(model_config())
  z = jax.random.normal(jax.random.key(2), (4, 8))

  def loss(g_params, d_params):
    images, _ = generator.apply({**g_vars, 'params': g_params}, z, train=True,
                                mutable=['batch_stats'])
    logits, _ = discriminator.apply({**d_vars, 'params': d_params}, images, train=True,
                                    mutable=['batch_stats'])
    return jnp.mean(jax.nn.relu(1.0 + logits))

  # jit: one compilation of the whole backward pass is cheaper than op by op.
  grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(g_vars['params'], d_vars['params'])
  leaves = jax.tree.leaves(grads)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  assert all(float(jnp.abs(g).max()) > 0 for g in leaves)


def test_init_matches_torch_mimicry():
  block = resnet.GBlock(64)
  params = block.init(jax.random.key(0), jnp.zeros((1, 4, 4, 64)), train=False)['params']
  # 3x3 block convs: xavier_uniform(gain sqrt 2); 1x1 shortcut: gain 1.
  bound = math.sqrt(2) * math.sqrt(6 / (9 * (64 + 64)))
  conv1 = np.asarray(params['conv1']['kernel'])
  assert bound * 0.95 < np.abs(conv1).max() <= bound
  shortcut_bound = math.sqrt(6 / (64 + 64))
  shortcut = np.asarray(params['shortcut']['kernel'])
  assert shortcut_bound * 0.95 < np.abs(shortcut).max() <= shortcut_bound
  # PyTorch's default bias init U(+-1/sqrt(fan_in)); BatchNorm scale 1 and shift 0.
  assert np.abs(np.asarray(params['conv1']['bias'])).max() <= 1 / math.sqrt(9 * 64)
  assert np.all(np.asarray(params['bn1']['scale']) == 1)
  assert np.all(np.asarray(params['bn1']['bias']) == 0)


def test_features_feed_the_output_layer():
  _, discriminator, _, d_vars = init(model_config(spectral_norm=False))
  assert 'batch_stats' not in d_vars  # no normalisation and no spectral norm in D
  x = jax.random.uniform(jax.random.key(3), (4, 32, 32, 3), minval=-1, maxval=1)
  logits, state = discriminator.apply(d_vars, x, train=False, mutable=['intermediates'])
  (features,) = state['intermediates']['features']
  assert features.shape == (4, 16) and bool(jnp.all(features >= 0))  # ReLU, sum-pooled
  linear = d_vars['params']['linear']
  np.testing.assert_allclose(logits, features @ linear['kernel'][:, 0] + linear['bias'][0],
                             rtol=1e-5, atol=1e-5)


def test_generator_spectral_norm_wraps_every_weight_layer():
  plain = models.count_params(model_config())
  config = model_config(g_spectral_norm=True)
  _, _, g_vars, _ = init(config)
  stats = g_vars['batch_stats']
  assert {'sn_linear', 'sn_conv_out'} <= set(stats)
  assert {'sn_conv1', 'sn_conv2', 'sn_shortcut'} <= set(stats['block0'])
  assert models.count_params(config) == plain


def test_pack_and_minibatch_std():
  config = model_config(pack=2, minibatch_std=True)
  _, discriminator, _, d_vars = init(config)
  # Packing doubles the input channels; the stddev map widens the last block's input.
  assert d_vars['params']['block0']['conv1']['kernel'].shape == (3, 3, 6, 16)
  assert d_vars['params']['block3']['conv1']['kernel'].shape == (3, 3, 17, 17)
  logits, _ = discriminator.apply(d_vars, jnp.zeros((4, 32, 32, 3)), train=True,
                                  mutable=['batch_stats'])
  assert logits.shape == (2,)


def test_bfloat16_compute_keeps_float32_params_and_outputs():
  generator, discriminator = models.build(model_config(dtype='bfloat16'))

  def forward(key):
    z = jax.random.normal(key, (4, 8))
    g_vars = generator.init(key, z, train=False)
    images, _ = generator.apply(g_vars, z, train=True, mutable=['batch_stats'])
    d_vars = discriminator.init(key, images, train=False)
    return g_vars, d_vars, images, discriminator.apply(d_vars, images, train=False)

  g_vars, d_vars, images, logits = jax.eval_shape(forward, jax.random.key(0))
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves((g_vars, d_vars)))
  assert images.dtype == jnp.float32 and logits.dtype == jnp.float32
  # The convolutions themselves run in bfloat16.
  jaxpr = jax.make_jaxpr(lambda v, x: discriminator.apply(v, x, train=False))(d_vars, images)
  convs = [e for e in _equations(jaxpr.jaxpr) if e.primitive.name == 'conv_general_dilated']
  assert convs and all(e.outvars[0].aval.dtype == jnp.bfloat16 for e in convs)


def _equations(jaxpr):
  """Every equation of a jaxpr, including those inside calls (e.g. the custom-VJP
  convolutions of `layers.cpu_same_conv`)."""
  for eqn in jaxpr.eqns:
    yield eqn
    for value in eqn.params.values():
      inner = getattr(value, 'jaxpr', value)
      if hasattr(inner, 'eqns'):
        yield from _equations(inner)


@pytest.mark.slow
def test_bfloat16_outputs_are_close_to_float32():
  generator, discriminator, g_vars, d_vars = init(model_config())
  bf_generator, bf_discriminator = models.build(model_config(dtype='bfloat16'))
  z = jax.random.normal(jax.random.key(4), (4, 8))
  images, _ = generator.apply(g_vars, z, train=True, mutable=['batch_stats'])
  bf_images, _ = bf_generator.apply(g_vars, z, train=True, mutable=['batch_stats'])
  error = np.abs(np.asarray(bf_images) - np.asarray(images))
  assert error.max() < 0.1 and error.mean() < 0.01  # bf16: ~3 significant digits per op
  logits = discriminator.apply(d_vars, images, train=False)
  bf_logits = bf_discriminator.apply(d_vars, images, train=False)
  np.testing.assert_allclose(bf_logits, logits, atol=0.05 + 0.05 * float(jnp.abs(logits).max()))


@pytest.mark.parametrize('overrides,field', [
    (dict(resolution=40), 'model.resolution'),
    (dict(resolution=48), 'model.bottom_width'),
    (dict(resolution=64, ngf=8), 'model.ngf'),
    (dict(resolution=64, ndf=8), 'model.ndf'),
    (dict(d_norm='batch'), 'model.d_norm'),
    (dict(g_norm='none'), 'model.g_norm'),
    (dict(upsample='bicubic'), 'model.upsample'),
    (dict(dtype='float16'), 'model.dtype'),
])
def test_bad_fields_are_config_errors(overrides, field):
  with pytest.raises(errors.ConfigError, match=field):
    models.build(model_config(**overrides))
