"""Tests of gan_jax.models.layers: the fast stride-2 convolutions against their
definitions and the textbook XLA forms (defined here, the library keeps only the
fast path), initialisers, spectral norm, BatchNorm, packing, minibatch stddev.
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np
import pytest

from gan_jax import errors
from gan_jax.models import layers

_DN = ('NHWC', 'HWIO', 'NHWC')


# ---- reference definitions ------------------------------------------------------------


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


def lax_conv_transpose(x, w):
  """The textbook form (what flax.linen.ConvTranspose does): an input-dilated
  correlation with the flipped kernel; PyTorch padding 1 becomes 4 - 1 - 1 = 2."""
  return lax.conv_general_dilated(x, w[::-1, ::-1], window_strides=(1, 1),
                                  padding=((2, 2), (2, 2)), lhs_dilation=(2, 2),
                                  dimension_numbers=_DN)


def lax_conv(x, w):
  """The strided convolution with XLA's own derivatives."""
  return lax.conv_general_dilated(x, w, window_strides=(2, 2), padding=((1, 1), (1, 1)),
                                  dimension_numbers=_DN)


def space_to_depth(x):
  """f[B, H, W, C] -> f[B, H/2, W/2, 4C], channels ordered (row phase, column phase, C)."""
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(
      b, h // 2, w // 2, 4 * c)


# ---- fast stride-2 convolutions ---------------------------------------------------------


def test_conv_transpose_forward_matches_pytorch_definition_and_flax():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 5, 6, 3)).astype(np.float32)
  w = (rng.standard_normal((4, 4, 3, 7)) / np.sqrt(12)).astype(np.float32)
  out = layers.ConvTranspose2x(7).apply({'params': {'kernel': w}}, x)
  np.testing.assert_allclose(out, numpy_conv_transpose(x, w), atol=1e-5)
  # flax's transpose_kernel layout is ours with in/out swapped.
  flax_layer = nn.ConvTranspose(7, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)),
                                transpose_kernel=True, use_bias=False)
  flax_out = flax_layer.apply({'params': {'kernel': w.transpose(0, 1, 3, 2)}}, x)
  np.testing.assert_allclose(out, flax_out, atol=1e-5)


@pytest.mark.parametrize('forms', layers.STRIDE2_FORMS)
def test_conv_transpose_gradients_match_definition(forms):
  rng = np.random.default_rng(1)
  x = rng.standard_normal((2, 5, 6, 3)).astype(np.float32)
  w = (rng.standard_normal((4, 4, 3, 7)) / np.sqrt(12)).astype(np.float32)
  g = rng.standard_normal((2, 10, 12, 7)).astype(np.float32)
  np.testing.assert_allclose(layers.conv_transpose_4x4_s2(x, w, forms=forms),
                             numpy_conv_transpose(x, w), atol=1e-5)
  dx, dw = jax.grad(lambda x, w: jnp.sum(layers.conv_transpose_4x4_s2(x, w, forms=forms) * g),
                    argnums=(0, 1))(x, w)
  ref_dx, ref_dw = numpy_conv_transpose_grads(x, w, g)
  np.testing.assert_allclose(dx, ref_dx, atol=1e-5)
  np.testing.assert_allclose(dw, ref_dw, atol=1e-5)


@pytest.mark.parametrize('forms', layers.STRIDE2_FORMS)
@pytest.mark.parametrize('cin', [3, 20])
def test_conv_down_matches_pytorch_definition(cin, forms):
  rng = np.random.default_rng(2)
  # Unit-scale outputs, so the 1e-5 tolerance is about 1e-5 relative too.
  x = rng.standard_normal((2, 6, 8, cin)).astype(np.float32)
  w = (rng.standard_normal((4, 4, cin, 5)) / np.sqrt(16 * cin)).astype(np.float32)
  out = layers.Conv2x(5, forms=forms).apply({'params': {'kernel': w}}, x)
  np.testing.assert_allclose(out, numpy_conv(x, w), atol=1e-5)
  # Gradients from the definition: the strided convolution's adjoint is the
  # transposed convolution with in/out swapped, so the scatter reference serves.
  g = rng.standard_normal(out.shape).astype(np.float32)
  dx, dw = jax.grad(lambda x, w: jnp.sum(layers.conv_4x4_s2(x, w, forms=forms) * g),
                    argnums=(0, 1))(x, w)
  np.testing.assert_allclose(dx, numpy_conv_transpose(g, w.transpose(0, 1, 3, 2)), atol=1e-5)
  ref_dw = numpy_conv_transpose_grads(g, w.transpose(0, 1, 3, 2), x)[1]
  np.testing.assert_allclose(dw, ref_dw.transpose(0, 1, 3, 2), atol=1e-5)


def test_fast_convs_second_order_gradients_match_xla_forms():
  """Gradient penalties differentiate D's input gradient again: the custom VJPs must match."""
  rng = np.random.default_rng(3)
  x = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
  w_down = rng.standard_normal((4, 4, 3, 6)).astype(np.float32) * 0.3
  w_up = rng.standard_normal((4, 4, 6, 4)).astype(np.float32) * 0.3

  def penalty_grads(down, up):
    def net(x, w_down, w_up):
      return jnp.sum(jnp.sin(up(jnp.tanh(down(x, w_down)), w_up)))

    def gp(x, w_down, w_up):
      return jnp.sum(jax.grad(net)(x, w_down, w_up) ** 2)
    return jax.grad(gp, argnums=(1, 2))(x, w_down, w_up)

  fast = penalty_grads(layers.conv_4x4_s2, layers.conv_transpose_4x4_s2)
  reference = penalty_grads(lax_conv, lax_conv_transpose)
  for a, b in zip(fast, reference):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  # forms='xla' is XLA's own derivatives (forward mode works there too).
  xla = penalty_grads(functools.partial(layers.conv_4x4_s2, forms='xla'),
                      functools.partial(layers.conv_transpose_4x4_s2, forms='xla'))
  for a, b in zip(xla, reference):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  jax.jvp(lambda v: layers.conv_4x4_s2(v, w_down, forms='xla'), (x,), (x,))


def test_unknown_stride2_forms_name_the_known_ones():
  with pytest.raises(errors.ConfigError, match=r"stride2_forms.*'custom', 'xla'.*'cudnn'"):
    layers.conv_4x4_s2(jnp.ones((1, 4, 4, 2)), jnp.ones((4, 4, 2, 3)), forms='cudnn')


# ---- stride-1 'same' convolutions (the ResNet families) ------------------------------


def numpy_same_conv_grads(x, w, g):
  """Gradients of sum(conv(x, w) * g), conv the k x k 'same' correlation, from the
  definition out[n, i, j, o] = sum x_pad[n, i + a, j + b, c] w[a, b, c, o]."""
  k = w.shape[0]
  p = k // 2
  xp = np.pad(x.astype(np.float64), ((0, 0), (p, p), (p, p), (0, 0)))
  dxp = np.zeros(xp.shape)
  dw = np.zeros(w.shape)
  h, wd = x.shape[1:3]
  for a in range(k):
    for b in range(k):
      window = xp[:, a:a + h, b:b + wd]                         # [n, h, w, c]
      dw[a, b] = np.einsum('nhwc,nhwo->co', window, g)
      dxp[:, a:a + h, b:b + wd] += np.einsum('nhwo,co->nhwc', g, w[a, b])
  return dxp[:, p:p + h, p:p + wd], dw


def _same(conv, k):
  dn = lax.conv_dimension_numbers((1, 1, 1, 1), (k, k, 1, 1), _DN)
  return lambda x, w: conv(x, w, (1, 1), [(k // 2, k // 2)] * 2, dimension_numbers=dn)


@pytest.mark.parametrize('k', [1, 3])
def test_cpu_same_conv_forward_and_gradients_match_the_definition(k):
  rng = np.random.default_rng(k)
  x = rng.standard_normal((2, 6, 5, 3)).astype(np.float32)
  w = rng.standard_normal((k, k, 3, 4)).astype(np.float32)
  g = rng.standard_normal((2, 6, 5, 4)).astype(np.float32)
  conv = _same(layers.cpu_same_conv, k)
  np.testing.assert_allclose(conv(x, w), _same(lax.conv_general_dilated, k)(x, w),
                             rtol=1e-6, atol=1e-6)
  dx, dw = jax.grad(lambda x, w: jnp.sum(conv(x, w) * g), argnums=(0, 1))(x, w)
  want_dx, want_dw = numpy_same_conv_grads(x, w, g)
  np.testing.assert_allclose(dx, want_dx, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dw, want_dw, rtol=1e-5, atol=1e-5)


def test_cpu_same_conv_second_order_gradients_match_xla():
  rng = np.random.default_rng(7)
  x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
  w1 = rng.standard_normal((3, 3, 3, 5)).astype(np.float32) * 0.3
  w2 = rng.standard_normal((1, 1, 5, 2)).astype(np.float32) * 0.3

  def penalty_grads(conv):
    def net(x, w1, w2):
      return jnp.sum(jnp.sin(_same(conv, 1)(jnp.tanh(_same(conv, 3)(x, w1)), w2)))

    def gp(x, w1, w2):
      return jnp.sum(jax.grad(net)(x, w1, w2) ** 2)
    return jax.grad(gp, argnums=(1, 2))(x, w1, w2)

  for a, b in zip(penalty_grads(layers.cpu_same_conv),
                  penalty_grads(lax.conv_general_dilated)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_cpu_same_conv_leaves_other_convolutions_to_xla():
  x = jnp.ones((1, 8, 8, 2))
  w = jnp.ones((4, 4, 2, 3))
  dn = lax.conv_dimension_numbers(x.shape, w.shape, _DN)
  strided = layers.cpu_same_conv(x, w, (2, 2), [(1, 1), (1, 1)], dimension_numbers=dn)
  assert strided.shape == (1, 4, 4, 3)
  # Forward mode works on this path (XLA's own convolution), not on the custom one.
  jax.jvp(lambda v: layers.cpu_same_conv(v, w, (2, 2), [(1, 1), (1, 1)],
                                         dimension_numbers=dn), (x,), (x,))


@pytest.mark.parametrize('layer', ['same_3x3', 'conv_4x4_s2', 'conv_transpose_4x4_s2'])
def test_gradients_inside_a_scan_compile_to_canonical_convolutions(layer):
  # XLA:CPU runs a convolution with its Eigen kernels only in the canonical form
  # (batch-spatial-feature input, spatial-in-out kernel). It rewrites other forms,
  # e.g. its own filter gradients, in straight-line code but not inside a while
  # loop, where they run tens of times slower: the n_critic D updates are a
  # `lax.scan`. The layers must emit the canonical form themselves.
  if jax.default_backend() != 'cpu':
    pytest.skip('a property of the XLA:CPU compiler')
  x = jnp.ones((2, 8, 8, 4))
  conv, w, y_shape = {
      'same_3x3': (_same(layers.cpu_same_conv, 3), jnp.ones((3, 3, 4, 5)), (2, 8, 8, 5)),
      'conv_4x4_s2': (layers.conv_4x4_s2, jnp.ones((4, 4, 4, 5)), (2, 4, 4, 5)),
      'conv_transpose_4x4_s2': (layers.conv_transpose_4x4_s2, jnp.ones((4, 4, 4, 5)),
                                (2, 16, 16, 5)),
  }[layer]
  g = jnp.ones(y_shape)

  def d_updates(x, w):
    def body(w, _):
      dx, dw = jax.grad(lambda x, w: jnp.sum(jnp.tanh(conv(x, w)) * g), argnums=(0, 1))(x, w)
      return w - 0.1 * dw - 0.1 * jnp.mean(dx), None
    return lax.scan(body, w, None, length=3)[0]

  hlo = jax.jit(d_updates).lower(x, w).compile().as_text()
  labels = [line.split('dim_labels=')[1].split(',')[0]
            for line in hlo.splitlines() if ' convolution(' in line]
  assert len(labels) >= 3, hlo   # forward, input gradient, filter gradient
  assert set(labels) == {'b01f_01io->b01f'}, labels


def test_depth_to_space_layout():
  x = np.arange(2 * 3 * 4 * 8, dtype=np.float32).reshape(2, 3, 4, 8)
  out = np.asarray(layers.depth_to_space(jnp.asarray(x)))
  assert out.shape == (2, 6, 8, 2)
  for r in range(2):
    for s in range(2):
      np.testing.assert_array_equal(out[:, r::2, s::2], x[..., (2 * r + s) * 2:(2 * r + s + 1) * 2])
  np.testing.assert_array_equal(space_to_depth(out), x)


def test_stride2_conv_bias_and_kernel_shape():
  layer = layers.Conv2x(5, use_bias=True)
  variables = layer.init(jax.random.key(0), jnp.zeros((1, 4, 4, 3)))
  assert variables['params']['kernel'].shape == (4, 4, 3, 5)
  bias = jnp.arange(5.0)
  out = layer.apply({'params': {'kernel': jnp.zeros((4, 4, 3, 5)), 'bias': bias}},
                    jnp.ones((1, 4, 4, 3)))
  np.testing.assert_array_equal(out[0, 1, 1], bias)


# ---- initialisers and PyTorch-style layers -----------------------------------------------


@pytest.mark.parametrize('shape,gain', [((3, 3, 64, 32), math.sqrt(2)), ((128, 256), 1.0)])
def test_xavier_uniform_matches_pytorch_bound(shape, gain):
  # torch.nn.init.xavier_uniform_: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)),
  # fans include the receptive field (3 * 3 for the conv).
  receptive = 9 if len(shape) == 4 else 1
  bound = gain * math.sqrt(6 / (receptive * (shape[-2] + shape[-1])))
  w = np.asarray(layers.xavier_uniform(gain)(jax.random.key(0), shape))
  assert w.shape == shape and np.abs(w).max() <= bound
  assert np.abs(w).max() > 0.99 * bound
  np.testing.assert_allclose(w.var(), bound ** 2 / 3, rtol=0.05)


def test_torch_conv_bias_uses_pytorch_default_bound():
  conv = layers.torch_conv(64, 3, in_features=16)
  variables = conv.init(jax.random.key(0), jnp.zeros((1, 5, 5, 16)))
  bias = np.asarray(variables['params']['bias'])
  bound = 1 / math.sqrt(16 * 9)
  assert np.abs(bias).max() <= bound and np.abs(bias).max() > 0.8 * bound
  assert variables['params']['kernel'].shape == (3, 3, 16, 64)
  # padding k // 2: same spatial size.
  assert conv.apply(variables, jnp.zeros((1, 5, 5, 16))).shape == (1, 5, 5, 64)


def test_normal_init_statistics():
  w = np.asarray(layers.normal_init(0.02, mean=1.0)(jax.random.key(0), (64, 64)))
  assert abs(w.mean() - 1.0) < 0.002 and abs(w.std() - 0.02) < 0.002


class _SNDense(nn.Module):
  @nn.compact
  def __call__(self, x, *, train):
    return layers.spectral_normalized(nn.Dense(3, use_bias=False, name='dense'), x, train=train)


def test_spectral_normalized_divides_by_largest_singular_value():
  module = _SNDense()
  x = jax.random.normal(jax.random.key(1), (4, 5))
  variables = module.init(jax.random.key(0), x, train=False)
  assert set(variables) == {'params', 'batch_stats'}
  assert set(variables['batch_stats']) == {'sn_dense'}
  kernel = np.asarray(variables['params']['dense']['kernel'])
  sigma = np.linalg.svd(kernel, compute_uv=False)[0]
  for _ in range(30):  # power iterations, stored only in train mode
    _, updates = module.apply(variables, x, train=True, mutable=['batch_stats'])
    variables = {'params': variables['params'], **updates}
  stored = variables['batch_stats']['sn_dense']['dense/kernel/sigma']
  np.testing.assert_allclose(stored, sigma, rtol=1e-4)
  out = module.apply(variables, x, train=False)
  np.testing.assert_allclose(out, np.asarray(x) @ kernel / sigma, rtol=1e-4, atol=1e-5)


class _SNConv(nn.Module):
  @nn.compact
  def __call__(self, x, *, train):
    return layers.spectral_normalized(nn.Conv(4, (3, 3), use_bias=False, name='conv'), x,
                                      train=train)


def _power_iteration(w, u):
  """One step of PyTorch's spectral_norm power iteration on w f32[out, fan_in]."""
  v = w.T @ u
  v /= np.linalg.norm(v)
  u = w @ v
  u /= np.linalg.norm(u)
  return u, v, u @ w @ v


def test_spectral_normalized_runs_one_power_iteration_per_training_call():
  # PyTorch's spectral_norm (n_power_iterations=1), which the SN-GAN results use:
  # each training call advances the stored u by exactly one step from its last
  # value, so sigma only converges over many updates. The conv kernel is treated as
  # the matrix [out, kh * kw * in], as torch reshapes weight [out, in, kh, kw].
  module = _SNConv()
  x = jax.random.normal(jax.random.key(1), (2, 5, 5, 2))
  variables = module.init(jax.random.key(0), x, train=False)
  kernel = np.asarray(variables['params']['conv']['kernel'], np.float64)
  w = kernel.reshape(-1, kernel.shape[-1]).T
  stats = variables['batch_stats']['sn_conv']
  u0 = np.asarray(stats['conv/kernel/u'], np.float64)[0]

  # Evaluation reads u and sigma but leaves them where they were.
  _, eval_updates = module.apply(variables, x, train=False, mutable=['batch_stats'])
  np.testing.assert_array_equal(eval_updates['batch_stats']['sn_conv']['conv/kernel/u'],
                                stats['conv/kernel/u'])

  out, updates = module.apply(variables, x, train=True, mutable=['batch_stats'])
  stored = updates['batch_stats']['sn_conv']
  u1, _, sigma1 = _power_iteration(w, u0)
  u2, _, sigma2 = _power_iteration(w, u1)
  np.testing.assert_allclose(np.asarray(stored['conv/kernel/u'])[0], u1, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(float(stored['conv/kernel/sigma']), sigma1, rtol=1e-5)
  # From a random u0 a second step still moves u and sigma, so the checks above
  # tell one step from two.
  assert np.abs(u2 - u1).max() > 1e-2 and abs(sigma2 - sigma1) / sigma1 > 1e-3
  # The layer's output uses this call's sigma.
  normalised = kernel.astype(np.float32) / np.float32(sigma1)
  expected = lax.conv_general_dilated(x, normalised, (1, 1), 'SAME', dimension_numbers=_DN)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_batch_norm_without_affine_has_no_params():
  class Norm(nn.Module):
    @nn.compact
    def __call__(self, x):
      return layers.batch_norm(self, train=True, momentum=0.9, axis_name=None,
                               dtype=jnp.float32, name='bn', affine=False)(x)

  x = jax.random.normal(jax.random.key(0), (8, 3)) * 3 + 2
  variables = Norm().init(jax.random.key(0), x)
  assert 'params' not in variables and set(variables['batch_stats']['bn']) == {'mean', 'var'}
  out, _ = Norm().apply(variables, x, mutable=['batch_stats'])
  xn = np.asarray(x)
  np.testing.assert_allclose(out, (xn - xn.mean(0)) / np.sqrt(xn.var(0) + 1e-5), atol=1e-5)


# ---- packing, minibatch stddev, dtype -------------------------------------------------------


def test_pack_inputs_layout():
  x = jnp.arange(4 * 3, dtype=jnp.float32).reshape(4, 3)
  packed = layers.pack_inputs(x, 2)
  np.testing.assert_array_equal(packed, [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]])
  images = jnp.arange(2 * 2 * 2 * 1, dtype=jnp.float32).reshape(2, 2, 2, 1)
  np.testing.assert_array_equal(layers.pack_inputs(images, 2)[0, ..., 1], images[1, ..., 0])


def test_pack_inputs_needs_a_multiple_of_pack():
  with pytest.raises(ValueError, match='multiple of pack=3'):
    layers.pack_inputs(jnp.zeros((4, 2)), 3)


def test_minibatch_stddev_value():
  x = jnp.array([[0.0, 1.0], [2.0, 5.0]])
  out = layers.minibatch_stddev(x)
  # Per-feature std over the batch: 1 and 2; their mean 1.5.
  np.testing.assert_allclose(out[:, 2], [1.5, 1.5], atol=1e-4)


def test_compute_dtype_error_names_the_field():
  assert layers.compute_dtype('bfloat16') == jnp.bfloat16
  with pytest.raises(errors.ConfigError, match='model.dtype'):
    layers.compute_dtype('float16')
