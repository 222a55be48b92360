"""Tests of gan_jax.models: registry, shapes, parameter counts, BN sync, fast convs.

Widths and batches are tiny so the whole file runs in well under a minute on CPU.
"""

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn
import pytest

from configs import default
from gan_jax import models
from gan_jax.models import layers


def model_config(**overrides):
  """config.model with small widths; `overrides` replace fields."""
  config = default.get_config().model
  config.update(dict(ngf=4, ndf=4, z_dim=8, hidden=16, num_layers=2))
  config.update(overrides)
  return config


def init(generator, discriminator, z_dim, batch=4, seed=0):
  """Initialises both nets (eval mode, as a trainer would) and returns their variables."""
  key_g, key_d = jax.random.split(jax.random.key(seed))
  z = jnp.zeros((batch, z_dim))
  g_vars = generator.init(key_g, z, train=False)
  x = apply(generator, g_vars, z, train=False)
  d_vars = discriminator.init(key_d, x, train=False)
  return g_vars, d_vars


def apply(module, variables, inputs, *, train, mutable=False):
  """`module.apply(variables, inputs, train=train, mutable=mutable)`.

  Eager on purpose: op-by-op executables are cached across tests, so this is cheaper
  in total than compiling every small model with jit.
  """
  return module.apply(variables, inputs, train=train, mutable=mutable)


# ---- registry ---------------------------------------------------------------------


def test_registry_names_and_unknown_name():
  assert {'dcgan', 'mlp'} <= set(models.names())
  assert models.get('dcgan') is not None
  with pytest.raises(ValueError) as error:
    models.get('no_such_gan')
  for name in models.names():
    assert name in str(error.value)


# ---- DCGAN shapes, dtypes, ranges ----------------------------------------------------


@pytest.mark.parametrize('resolution', [28, 32, 64, 128])
def test_dcgan_shapes_dtype_range(resolution):
  config = model_config(resolution=resolution, channels=3)
  generator, discriminator = models.build(config)
  g_vars, d_vars = init(generator, discriminator, config.z_dim)
  z = jax.random.normal(jax.random.key(1), (4, config.z_dim)) * 3.0
  images, g_updates = apply(generator, g_vars, z, train=True, mutable=['batch_stats'])
  assert images.shape == (4, resolution, resolution, 3)
  assert images.dtype == jnp.float32
  assert float(jnp.min(images)) >= -1.0 and float(jnp.max(images)) <= 1.0
  assert set(g_updates) == {'batch_stats'}
  logits, d_updates = apply(discriminator, d_vars, images, train=True, mutable=['batch_stats'])
  assert logits.shape == (4,) and logits.dtype == jnp.float32
  assert set(d_updates) == {'batch_stats'}
  # Eval mode needs no mutable collections.
  assert apply(discriminator, d_vars, images, train=False).shape == (4,)


def test_dcgan_bad_resolution_and_input_errors():
  with pytest.raises(ValueError, match='resolution'):
    models.build(model_config(resolution=5))
  generator, discriminator = models.build(model_config(resolution=32))
  _, d_vars = init(generator, discriminator, 8)
  with pytest.raises(ValueError, match='32'):
    apply(discriminator, d_vars, jnp.zeros((2, 28, 28, 1)), train=False)


# ---- parameter counts vs the PyTorch DCGAN example -----------------------------------


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


def test_dcgan_param_counts_match_pytorch_example():
  expected_g, expected_d = pytorch_dcgan_counts(nz=100, ngf=64, ndf=64, nc=3)
  assert (expected_g, expected_d) == (3_576_704, 2_765_568)
  config = model_config(resolution=64, channels=3, ngf=64, ndf=64, z_dim=100)
  generator, discriminator = models.build(config)
  # eval_shape: counts need shapes only, not 6M random numbers.
  g_vars = jax.eval_shape(
      lambda: generator.init(jax.random.key(0), jnp.zeros((2, 100)), train=False))
  d_vars = jax.eval_shape(
      lambda: discriminator.init(jax.random.key(0), jnp.zeros((2, 64, 64, 3)), train=False))
  assert models.param_count(g_vars['params']) == expected_g
  assert models.param_count(d_vars['params']) == expected_d


def test_dcgan_extra_layers_match_wgan_reference_counts_and_run_at_8px():
  # The WGAN reference DCGAN (n_extra_layers) adds, per extra layer, a 3x3 conv
  # without bias (C * C * 9 weights) and a BatchNorm2d (2 * C) at width ngf in G
  # and ndf in D; written from that definition, not from our code.
  base_g, base_d = pytorch_dcgan_counts(nz=100, ngf=64, ndf=64, nc=3)
  extra = 2
  config = model_config(resolution=64, channels=3, ngf=64, ndf=64, z_dim=100,
                        extra_layers=extra)
  generator, discriminator = models.build(config)
  g_vars = jax.eval_shape(
      lambda: generator.init(jax.random.key(0), jnp.zeros((2, 100)), train=False))
  d_vars = jax.eval_shape(
      lambda: discriminator.init(jax.random.key(0), jnp.zeros((2, 64, 64, 3)), train=False))
  assert models.param_count(g_vars['params']) == base_g + extra * (64 * 64 * 9 + 2 * 64)
  assert models.param_count(d_vars['params']) == base_d + extra * (64 * 64 * 9 + 2 * 64)

  # 8x8 digits layout: one stride-2 layer each, the extra layers at 4x4.
  config = model_config(resolution=8, channels=1, ngf=8, ndf=4, z_dim=6, extra_layers=1)
  generator, discriminator = models.build(config)
  g_vars, d_vars = init(generator, discriminator, z_dim=6)
  assert g_vars['params']['extra0']['kernel'].shape == (3, 3, 8, 8)
  assert d_vars['params']['extra0']['kernel'].shape == (3, 3, 4, 4)
  assert 'bn_extra0' in g_vars['batch_stats'] and 'bn_extra0' in d_vars['batch_stats']
  z = jax.random.normal(jax.random.key(1), (4, 6))
  images, _ = apply(generator, g_vars, z, train=True, mutable=['batch_stats'])
  assert images.shape == (4, 8, 8, 1) and np.all(np.abs(np.asarray(images)) <= 1)
  logits, _ = apply(discriminator, d_vars, images, train=True, mutable=['batch_stats'])
  assert logits.shape == (4,) and np.all(np.isfinite(np.asarray(logits)))
  with pytest.raises(ValueError, match='extra_layers'):
    models.build(model_config(resolution=8, extra_layers=-1))


def test_dcgan_init_statistics():
  config = model_config(resolution=32, ngf=32, ndf=32)
  generator, discriminator = models.build(config)
  g_vars, d_vars = init(generator, discriminator, config.z_dim)
  kernel = np.asarray(g_vars['params']['up1']['kernel'])
  assert abs(kernel.std() - 0.02) < 0.002 and abs(kernel.mean()) < 0.002
  scale = np.asarray(d_vars['params']['bn1']['scale'])
  assert abs(scale.mean() - 1.0) < 0.01 and 0.01 < scale.std() < 0.03
  assert np.all(np.asarray(d_vars['params']['bn1']['bias']) == 0)


# ---- synchronised BatchNorm ------------------------------------------------------


@pytest.mark.parametrize('name', ['dcgan', 'mlp'])
def test_bn_axis_name_synchronises_statistics(name):
  config = model_config(name=name, resolution=32, channels=3, g_norm='batch', d_norm='batch')
  generator, discriminator = models.build(config, bn_axis_name='data')
  g_vars, d_vars = init(generator, discriminator, config.z_dim, batch=8)
  z = jax.random.normal(jax.random.key(2), (8, config.z_dim))

  def g_apply(z):
    return apply(generator, g_vars, z, train=True, mutable=['batch_stats'])

  def d_apply(x):
    return apply(discriminator, d_vars, x, train=True, mutable=['batch_stats'])

  # Reference: the same modules without an axis name on the whole batch.
  ref_g, ref_d = models.build(config)
  images, g_stats = apply(ref_g, g_vars, z, train=True, mutable=['batch_stats'])
  logits, d_stats = apply(ref_d, d_vars, images, train=True, mutable=['batch_stats'])

  chunked = lambda a: a.reshape((2, a.shape[0] // 2) + a.shape[1:])
  images_2, g_stats_2 = jax.vmap(g_apply, axis_name='data')(chunked(z))
  logits_2, d_stats_2 = jax.vmap(d_apply, axis_name='data')(chunked(images))
  np.testing.assert_allclose(images_2.reshape(images.shape), images, atol=1e-5)
  np.testing.assert_allclose(logits_2.reshape(logits.shape), logits, atol=1e-4)
  for stats, stats_2 in ((g_stats, g_stats_2), (d_stats, d_stats_2)):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(b[0], a, atol=1e-5), stats, stats_2)


# ---- PacGAN, minibatch stddev, spectral norm, layer norm -------------------------------


def test_dcgan_pack_and_minibatch_std():
  config = model_config(resolution=32, channels=3, pack=2, minibatch_std=True)
  generator, discriminator = models.build(config)
  g_vars, d_vars = init(generator, discriminator, config.z_dim, batch=4)
  # Packing folds two 3-channel images into 6 input channels; the stddev map adds one
  # input channel to the last conv (4x4 kernel at 32 px: start size 4).
  assert d_vars['params']['conv0']['kernel'].shape == (4, 4, 6, 4)
  assert d_vars['params']['logit']['kernel'].shape == (4, 4, 4 * 4 + 1, 1)
  images = apply(generator, g_vars, jnp.ones((6, config.z_dim)), train=False)
  logits, _ = apply(discriminator, d_vars, images, train=True, mutable=['batch_stats'])
  assert logits.shape == (3,)
  with pytest.raises(ValueError, match='multiple of pack=2'):
    apply(discriminator, d_vars, images[:5], train=False)


def test_pack_inputs_layout():
  x = jnp.arange(4 * 3, dtype=jnp.float32).reshape(4, 3)
  packed = layers.pack_inputs(x, 2)
  np.testing.assert_array_equal(packed, [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]])
  images = jnp.arange(2 * 2 * 2 * 1, dtype=jnp.float32).reshape(2, 2, 2, 1)
  np.testing.assert_array_equal(layers.pack_inputs(images, 2)[0, ..., 1], images[1, ..., 0])


def test_minibatch_stddev_value():
  x = jnp.array([[0.0, 1.0], [2.0, 5.0]])
  out = layers.minibatch_stddev(x)
  # Per-feature std over the batch: 1 and 2; their mean 1.5.
  np.testing.assert_allclose(out[:, 2], [1.5, 1.5], atol=1e-4)


def test_spectral_norm_state_in_batch_stats_and_updated():
  config = model_config(resolution=32, spectral_norm=True, d_norm='none', g_norm='none')
  generator, discriminator = models.build(config)
  g_vars, d_vars = init(generator, discriminator, config.z_dim)
  assert set(g_vars) == {'params'}  # neither BN nor SN: no batch_stats collection
  assert set(d_vars) == {'params', 'batch_stats'}
  sigmas = {k: v for k, v in jax.tree_util.tree_leaves_with_path(d_vars['batch_stats'])
            if 'sigma' in jax.tree_util.keystr(k)}
  assert len(sigmas) == 4  # conv0, conv1, conv2, logit
  x = jnp.ones((4, 32, 32, 1))
  _, updates = apply(discriminator, d_vars, x, train=True, mutable=['batch_stats'])
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)),
                         d_vars['batch_stats'], updates['batch_stats'])
  assert any(jax.tree.leaves(changed))
  # Eval mode uses, but does not update, the stored vectors.
  assert apply(discriminator, d_vars, x, train=False).shape == (4,)


def test_layer_norm_discriminator():
  config = model_config(resolution=32, d_norm='layer')
  generator, discriminator = models.build(config)
  _, d_vars = init(generator, discriminator, config.z_dim)
  assert 'batch_stats' not in d_vars and 'ln1' in d_vars['params']
  assert apply(discriminator, d_vars, jnp.ones((3, 32, 32, 1)), train=True).shape == (3,)


def test_unknown_norm_and_dtype_errors():
  with pytest.raises(ValueError, match='d_norm'):
    generator, discriminator = models.build(model_config(d_norm='group'))
    init(generator, discriminator, 8)
  with pytest.raises(ValueError, match='float32'):
    models.build(model_config(dtype='float16'))


# ---- bfloat16 compute -----------------------------------------------------------


def test_bfloat16_compute_float32_outputs():
  config = model_config(resolution=32, channels=3, ngf=8, ndf=8)
  generator, discriminator = models.build(config)
  g_vars, d_vars = init(generator, discriminator, config.z_dim)
  bf_generator, bf_discriminator = models.build(model_config(
      resolution=32, channels=3, ngf=8, ndf=8, dtype='bfloat16'))
  z = jax.random.normal(jax.random.key(3), (8, config.z_dim))
  images, _ = apply(generator, g_vars, z, train=True, mutable=['batch_stats'])
  bf_images, _ = apply(bf_generator, g_vars, z, train=True, mutable=['batch_stats'])
  assert bf_images.dtype == jnp.float32
  np.testing.assert_allclose(bf_images, images, atol=0.05)
  logits, _ = apply(discriminator, d_vars, images, train=True, mutable=['batch_stats'])
  bf_logits, _ = apply(bf_discriminator, d_vars, images, train=True, mutable=['batch_stats'])
  assert bf_logits.dtype == jnp.float32
  np.testing.assert_allclose(bf_logits, logits, atol=0.1 + 0.05 * float(jnp.abs(logits).max()))
  # Params stay float32 under bf16 compute.
  bf_vars = bf_generator.init(jax.random.key(0), z, train=False)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(bf_vars))


# ---- MLP --------------------------------------------------------------------------


@pytest.mark.parametrize('pack,minibatch_std,spectral_norm', [
    (1, False, False), (4, True, True)])
def test_mlp_shapes(pack, minibatch_std, spectral_norm):
  config = model_config(name='mlp', channels=2, g_norm='none', d_norm='none', pack=pack,
                        minibatch_std=minibatch_std, spectral_norm=spectral_norm)
  generator, discriminator = models.build(config)
  g_vars, d_vars = init(generator, discriminator, config.z_dim, batch=8)
  z = jax.random.normal(jax.random.key(4), (8, config.z_dim)) * 10.0
  points = apply(generator, g_vars, z, train=True)
  assert points.shape == (8, 2) and points.dtype == jnp.float32
  assert float(jnp.abs(points).max()) > 1.0  # no tanh: toy data spans [-4, 4]
  logits, updates = apply(discriminator, d_vars, points, train=True, mutable=['batch_stats'])
  assert logits.shape == (8 // pack,)
  assert d_vars['params']['dense0']['kernel'].shape[0] == 2 * pack + int(minibatch_std)
  assert ('batch_stats' in d_vars) == spectral_norm
  assert set(g_vars) == {'params'}
  if pack > 1:
    with pytest.raises(ValueError, match='multiple of pack'):
      apply(discriminator, d_vars, points[:7], train=False)


# ---- fast stride-2 convolutions -------------------------------------------------------


def numpy_conv_transpose(x, w):
  """PyTorch ConvTranspose2d(k=4, s=2, p=1) by its scatter definition.

  out[n, 2i + a - 1, 2j + b - 1, o] += x[n, i, j, c] * w[a, b, c, o].
  """
  n, h, wd, _ = x.shape
  out = np.zeros((n, 2 * h + 2, 2 * wd + 2, w.shape[-1]))
  for i in range(h):
    for j in range(wd):
      for a in range(4):
        for b in range(4):
          out[:, 2 * i + a, 2 * j + b] += x[:, i, j] @ w[a, b]
  return out[:, 1:-1, 1:-1]


def numpy_conv_transpose_grads(x, w, g):
  """Gradients of sum(conv_transpose(x, w) * g) w.r.t. x and w, from the definition."""
  n, h, wd, _ = x.shape
  g_pad = np.pad(g, ((0, 0), (1, 1), (1, 1), (0, 0)))
  dx = np.zeros(x.shape)
  dw = np.zeros(w.shape)
  for i in range(h):
    for j in range(wd):
      for a in range(4):
        for b in range(4):
          go = g_pad[:, 2 * i + a, 2 * j + b]       # [n, o]
          dx[:, i, j] += go @ w[a, b].T
          dw[a, b] += x[:, i, j].T @ go
  return dx, dw


def numpy_conv(x, w):
  """PyTorch Conv2d(k=4, s=2, p=1): out[n,i,j,o] = sum x[n,2i+a-1,2j+b-1,c] w[a,b,c,o]."""
  n, h, wd, _ = x.shape
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = np.zeros((n, h // 2, wd // 2, w.shape[-1]))
  for i in range(h // 2):
    for j in range(wd // 2):
      for a in range(4):
        for b in range(4):
          out[:, i, j] += xp[:, 2 * i + a, 2 * j + b] @ w[a, b]
  return out


@pytest.mark.parametrize('impl', ['fast', 'subpixel', 'lax'])
def test_conv_transpose_matches_pytorch_definition_and_flax(impl):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 5, 6, 3)).astype(np.float32)
  w = (rng.standard_normal((4, 4, 3, 7)) / np.sqrt(12)).astype(np.float32)
  g = rng.standard_normal((2, 10, 12, 7)).astype(np.float32)
  layer = layers.ConvTranspose2x(7, impl=impl)
  out = layer.apply({'params': {'kernel': w}}, x)
  np.testing.assert_allclose(out, numpy_conv_transpose(x, w), atol=1e-5)
  # flax's transpose_kernel layout is ours with in/out swapped.
  flax_layer = nn.ConvTranspose(7, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)),
                                transpose_kernel=True, use_bias=False)
  flax_vars = {'params': {'kernel': w.transpose(0, 1, 3, 2)}}
  np.testing.assert_allclose(out, flax_layer.apply(flax_vars, x), atol=1e-5)

  def loss(fn):
    return lambda x, w: jnp.sum(fn(x, w) * g)

  dx, dw = jax.grad(loss(lambda x, w: layer.apply({'params': {'kernel': w}}, x)),
                    argnums=(0, 1))(x, w)
  ref_dx, ref_dw = numpy_conv_transpose_grads(x, w, g)
  np.testing.assert_allclose(dx, ref_dx, atol=1e-5)
  np.testing.assert_allclose(dw, ref_dw, atol=1e-5)
  flax_dx, flax_dw = jax.grad(
      loss(lambda x, w: flax_layer.apply({'params': {'kernel': w.transpose(0, 1, 3, 2)}}, x)),
      argnums=(0, 1))(x, w)
  np.testing.assert_allclose(dx, flax_dx, atol=1e-5)
  np.testing.assert_allclose(dw, flax_dw, atol=1e-5)


@pytest.mark.parametrize('impl', ['fast', 'lax', 'space_to_depth'])
@pytest.mark.parametrize('cin', [3, 20])
def test_conv_down_matches_pytorch_definition(impl, cin):
  rng = np.random.default_rng(1)
  # Unit-scale outputs, so the 1e-5 tolerance is about 1e-5 relative too.
  x = rng.standard_normal((2, 6, 8, cin)).astype(np.float32)
  w = (rng.standard_normal((4, 4, cin, 5)) / np.sqrt(16 * cin)).astype(np.float32)
  layer = layers.Conv2x(5, impl=impl)
  out = layer.apply({'params': {'kernel': w}}, x)
  np.testing.assert_allclose(out, numpy_conv(x, w), atol=1e-5)
  flax_layer = nn.Conv(5, (4, 4), strides=(2, 2), padding=1, use_bias=False)
  np.testing.assert_allclose(out, flax_layer.apply({'params': {'kernel': w}}, x), atol=1e-5)
  # Gradients from the definition: the strided convolution's adjoint is the
  # transposed convolution with in/out swapped, so the scatter reference serves.
  g = rng.standard_normal(out.shape).astype(np.float32)
  dx, dw = jax.grad(lambda x, w: jnp.sum(layers.conv_4x4_s2(x, w, impl=impl) * g),
                    argnums=(0, 1))(x, w)
  np.testing.assert_allclose(dx, numpy_conv_transpose(g, w.transpose(0, 1, 3, 2)), atol=1e-5)
  ref_dw = numpy_conv_transpose_grads(g, w.transpose(0, 1, 3, 2), x)[1]
  np.testing.assert_allclose(dw, ref_dw.transpose(0, 1, 3, 2), atol=1e-5)


def test_fast_convs_second_order_gradients():
  """Gradient penalties differentiate D's input gradient again: the custom VJPs must match."""
  rng = np.random.default_rng(2)
  x = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
  w_down = rng.standard_normal((4, 4, 3, 6)).astype(np.float32) * 0.3
  w_up = rng.standard_normal((4, 4, 6, 4)).astype(np.float32) * 0.3

  def penalty(impl_down, impl_up):
    def net(x, w_down, w_up):
      h = jnp.tanh(layers.conv_4x4_s2(x, w_down, impl=impl_down))
      return jnp.sum(jnp.sin(layers.conv_transpose_4x4_s2(h, w_up, impl=impl_up)))

    def gp(x, w_down, w_up):
      return jnp.sum(jax.grad(net)(x, w_down, w_up) ** 2)
    return jax.grad(gp, argnums=(1, 2))(x, w_down, w_up)

  for fast, reference in zip(penalty('fast', 'fast'), penalty('lax', 'lax')):
    np.testing.assert_allclose(fast, reference, rtol=1e-4, atol=1e-4)


def test_depth_to_space_inverts_space_to_depth():
  x = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 6, 3)
  np.testing.assert_array_equal(layers.depth_to_space(layers.space_to_depth(x)), x)
