"""Layers shared by the model families: DCGAN's stride-2 convolutions, PyTorch-style
initialisers and layers, BatchNorm, spectral norm, packing. Parameters are float32
in every compute dtype (the mixed-precision policy is in `compute.py`).

The 4x4 / stride-2 / padding-1 convolution and transposed convolution of DCGAN keep
the parameter layout of a plain 4x4 kernel (parameter counts equal the PyTorch DCGAN
example's). The transposed convolution is computed as a sub-pixel convolution and
both layers carry a custom VJP made of the two forward kernels (each other's
adjoints), because XLA lowers the textbook forms (input-dilated convolutions) to
much slower kernels:

  conv_4x4_s2(x, w)           forward: strided conv   dx: conv_transpose_4x4_s2(dy, w^T)  dw: wgrad
  conv_transpose_4x4_s2(x, w) forward: sub-pixel conv dx: conv_4x4_s2(dy, w^T)            dw: wgrad^T

where wgrad is the strided convolution's filter gradient, itself such an op with the
other two as its adjoints (`_bilinear_with_adjoints`). All of them are convolutions
in the form XLA:CPU's Eigen kernels take, which XLA's own gradients are not: inside
the n_critic loop (a while loop) XLA:CPU leaves those forms to a naive loop nest.
The VJPs are differentiable again (gradient penalties); forward mode (`jax.jvp`) is
not available.

`model.stride2_forms = 'xla'` (`forms='xla'` below) swaps these forms for the textbook
ones with XLA's own derivatives (a strided convolution, an input-dilated one), which
XLA:GPU hands to cuDNN as forward, backward-data and backward-filter kernels: the same
numbers, for accelerators on which those may be faster (docs/performance.md, Device
check, says what was measured).

The stride-1 'same' convolutions of the ResNet families go through `cpu_same_conv`,
built the same way on the CPU backend.

Kernel orientation (both layers) follows PyTorch: `kernel[a, b, c, o]` multiplies
input channel `c` into output channel `o` at kernel tap `(a, b)`, i.e. it equals
`torch_weight.permute(2, 3, 1, 0)` for `nn.Conv2d` (weight `[out, in, kh, kw]`) and
`torch_weight.permute(2, 3, 0, 1)` for `nn.ConvTranspose2d` (weight `[in, out, kh, kw]`).
"""

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from gan_jax import errors
from gan_jax.models import compute

_DIMENSION_NUMBERS = ('NHWC', 'HWIO', 'NHWC')


# ---- initialisers ----------------------------------------------------------------
# Values are drawn as a flat vector and reshaped: with the (default) partitionable
# threefry PRNG, XLA:CPU takes seconds to compile a draw of a 4-D shape such as
# (4, 4, 32, 16), which dominated model init and test time.


def normal_init(stddev, mean=0.0):
  """Initialiser drawing N(mean, stddev^2) values."""
  def init(key, shape, dtype=jnp.float32):
    flat = jax.random.normal(key, (math.prod(shape),), dtype)
    return (mean + stddev * flat).reshape(shape)
  return init


def uniform_init(bound):
  """Initialiser drawing U(-bound, bound) values."""
  def init(key, shape, dtype=jnp.float32):
    flat = jax.random.uniform(key, (math.prod(shape),), dtype, -bound, bound)
    return flat.reshape(shape)
  return init


def xavier_uniform(gain=1.0):
  """PyTorch's `nn.init.xavier_uniform_(weight, gain)` for flax layouts.

  For a kernel f32[..., Cin, Cout] (Dense: [Cin, Cout]; Conv: [kh, kw, Cin, Cout];
  Embed: [num_embeddings, features]) the bound is
  gain * sqrt(6 / (fan_in + fan_out)), fan_in = Cin * kh * kw, fan_out = Cout * kh * kw.
  """
  def init(key, shape, dtype=jnp.float32):
    receptive = math.prod(shape[:-2])
    bound = gain * math.sqrt(6.0 / (receptive * (shape[-2] + shape[-1])))
    return uniform_init(bound)(key, shape, dtype)
  return init


# DCGAN initialisation (Radford et al. 2015): conv/dense weights ~ N(0, 0.02) and
# BatchNorm scales ~ N(1, 0.02), as the PyTorch DCGAN example's `weights_init`.
dcgan_kernel_init = normal_init(0.02)
dcgan_scale_init = normal_init(0.02, mean=1.0)


# ---- PyTorch-style layers ------------------------------------------------------------


def torch_conv(features, kernel_size, *, in_features, gain=1.0, dtype=jnp.float32,
               name=None):
  """PyTorch `Conv2d(in, out, k, stride=1, padding=k // 2)` re-initialised by xavier_uniform_.

  Weights ~ xavier_uniform(gain); the bias keeps PyTorch's default U(+-1/sqrt(fan_in)),
  fan_in = in_features * k * k (as torch_mimicry). Params are float32, compute in `dtype`
  (the bias is added in float32: `compute.Conv`).

  Returns:
    A `compute.Conv` mapping f[B, H, W, in_features] -> f[B, H, W, features].
  """
  return compute.Conv(
      features, (kernel_size, kernel_size), padding=kernel_size // 2,
      conv_general_dilated=cpu_same_conv, kernel_init=xavier_uniform(gain),
      bias_init=uniform_init(1.0 / math.sqrt(in_features * kernel_size ** 2)),
      dtype=dtype, param_dtype=jnp.float32, name=name)


def torch_dense(features, *, in_features, gain=1.0, dtype=jnp.float32, name=None):
  """PyTorch `Linear(in, out)` re-initialised by xavier_uniform_(gain); bias as PyTorch's.

  Returns:
    A `compute.Dense` mapping f[..., in_features] -> f[..., features].
  """
  return compute.Dense(
      features, kernel_init=xavier_uniform(gain),
      bias_init=uniform_init(1.0 / math.sqrt(in_features)),
      dtype=dtype, param_dtype=jnp.float32, name=name)


def batch_norm(module, *, train, momentum, axis_name, dtype, name,
               scale_init=nn.initializers.ones, affine=True):
  """An `nn.BatchNorm` over the last axis (epsilon 1e-5, as PyTorch) created inside `module`.

  `module` is the calling module: while it initialises (outside shard_map / pmap, where
  the mapped axis does not exist; the statistics are zeros then anyway) the statistics
  are not synchronised over `axis_name`. `train` uses and updates batch statistics;
  `momentum` is the running-average decay (0.9 = PyTorch momentum 0.1); `affine=False`
  drops the scale and shift (conditional BatchNorm). Params and statistics are float32,
  and so are the batch mean and variance (and the normalisation) for any `dtype`:
  the output alone is cast to `dtype`.
  """
  return nn.BatchNorm(
      use_running_average=not train, momentum=momentum, epsilon=1e-5,
      axis_name=None if module.is_initializing() else axis_name,
      dtype=dtype, param_dtype=jnp.float32, scale_init=scale_init,
      use_scale=affine, use_bias=affine, force_float32_reductions=True, name=name)


def spectral_normalized(module, x, *, train, name=None):
  """Applies `module` to `x` with its weight spectrally normalised (Miyato et al. 2018).

  The one spectral-norm implementation of every model family: flax's
  `nn.SpectralNorm` with one power iteration per call, its state (the vector `u` and
  the last `sigma`) in the `batch_stats` collection, stored only when `train`.
  `module` is a layer with one weight (Dense, Conv, Conv2x, Embed ...); the wrapper is
  named `name` (default `sn_<module name>`); the layer's params keep their place.
  The power iteration runs on the float32 kernel and u, sigma are stored in float32
  whatever the layer's compute dtype: the layer casts the normalised kernel itself.

  Returns:
    The layer's output computed with weight / sigma.
  """
  return nn.SpectralNorm(module, param_dtype=jnp.float32, name=name or f'sn_{module.name}')(
      x, update_stats=train)


def maybe_spectral_normalized(module, x, *, spectral_norm, train):
  """`spectral_normalized(module, x, train=train)` if `spectral_norm`, else `module(x)`.

  x is whatever `module` takes (e.g. f32[B, H, W, C] for a conv, f32[B, F] for Dense);
  the result is `module`'s output.
  """
  if spectral_norm:
    return spectral_normalized(module, x, train=train)
  return module(x)


# ---- DCGAN's fast stride-2 convolutions ----------------------------------------------


def depth_to_space(x, block=2):
  """Moves `block * block` channel groups into space.

  Args:
    x: f[B, H, W, block * block * C], channels ordered (row phase, column phase, C).

  Returns:
    f[B, H * block, W * block, C] with `out[:, block*i + r, block*j + s] = x[:, i, j, (r, s)]`.
  """
  b, h, w, c = x.shape
  c_out = c // (block * block)
  x = x.reshape(b, h, w, block, block, c_out)
  x = x.transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h * block, w * block, c_out)


def _swap_io(kernel):
  return kernel.transpose(0, 1, 3, 2)


def _strided_conv(x, kernel):
  """PyTorch Conv2d(k=4, s=2, p=1) as one strided convolution."""
  return lax.conv_general_dilated(
      x, kernel, window_strides=(2, 2), padding=((1, 1), (1, 1)),
      dimension_numbers=_DIMENSION_NUMBERS)


def _subpixel_kernel(kernel):
  """f[4, 4, Cin, Cout] -> f[2, 2, Cin, 4 * Cout] for `_subpixel_conv_transpose`.

  Window p of the 1-padded input covers x[p-1], x[p] (taps t = 0, 1) and produces
  outputs 2p - 1 + s (s = 0, 1). From the definition, that output receives
  x[p - 1 + t] * kernel[2 + s - 2t]; so tap t, phase s uses kernel index 2(1 - t) + s.
  """
  cin, cout = kernel.shape[2:]
  k = kernel.reshape(2, 2, 2, 2, cin, cout)       # (uy, sy, ux, sx, c, o), a = 2u + s
  k = k[::-1, :, ::-1]                             # u = 1 - t  ->  index by t
  return k.transpose(0, 2, 4, 1, 3, 5).reshape(2, 2, cin, 4 * cout)


def _subpixel_conv_transpose(x, kernel):
  """PyTorch ConvTranspose2d(k=4, s=2, p=1): a 2x2 VALID conv + depth-to-space.

  All four output phases come from one stride-1 convolution of the 1-padded input
  into 4 * Cout channels; every kernel tap is used exactly once (no wasted FLOPs).
  """
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  y = lax.conv_general_dilated(
      padded, _subpixel_kernel(kernel), window_strides=(1, 1), padding='VALID',
      dimension_numbers=_DIMENSION_NUMBERS)       # [B, H+1, W+1, 4 Cout]
  y = depth_to_space(y)                            # [B, 2H+2, 2W+2, Cout], starts at -1
  return y[:, 1:-1, 1:-1, :]


def _bilinear_with_adjoints(primal, adjoints):
  """`primal(a, b)`, linear in each argument, differentiated by `adjoints(a, b, g) -> (da, db)`.

  Every convolution below is such an op whose adjoints are again fast ops of this
  kind, all in the form XLA:CPU's Eigen kernels take. The VJP's forward pass calls
  the op itself, so a second derivative (gradient penalties) goes through the
  adjoints too, never through XLA's own convolution rules: their forms run tens of
  times slower inside a while loop (the n_critic `lax.scan`), where XLA:CPU does not
  rewrite them into the canonical one.
  """
  op = jax.custom_vjp(primal)
  op.defvjp(lambda a, b: (op(a, b), (a, b)), lambda residuals, g: adjoints(*residuals, g))
  return op


def _strided_conv_weight_grad(x, dy):
  """Gradient of `sum(_strided_conv(x, w) * dy)` with respect to w.

  The convolution of the padded x with dy as a 2-dilated window, batch and channel
  roles swapped, written in the canonical form (XLA's own filter gradient is not).

  Args:
    x: f[B, H, W, Cin], H and W even.
    dy: f[B, H/2, W/2, Cout].

  Returns:
    f[4, 4, Cin, Cout]: `sum over n, i, j of pad1(x)[n, 2i+a, 2j+b, c] * dy[n, i, j, o]`.
  """
  grad = lax.conv_general_dilated(
      x.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3), (1, 1), ((1, 1), (1, 1)),
      rhs_dilation=(2, 2), dimension_numbers=_DIMENSION_NUMBERS)   # [Cin, 4, 4, Cout]
  return grad.transpose(1, 2, 0, 3)


# The strided convolution, its adjoint (the transposed convolution) and its filter
# gradient: each one's adjoints are the other two (the transposed convolution's
# filter gradient is the strided one's with input and output swapped).
_fast_conv = _bilinear_with_adjoints(
    _strided_conv,
    lambda x, kernel, dy: (_fast_conv_transpose(dy, _swap_io(kernel)), _weight_grad(x, dy)))
_fast_conv_transpose = _bilinear_with_adjoints(
    _subpixel_conv_transpose,
    lambda x, kernel, dy: (_fast_conv(dy, _swap_io(kernel)), _swap_io(_weight_grad(dy, x))))
_weight_grad = _bilinear_with_adjoints(
    _strided_conv_weight_grad,
    lambda x, dy, g: (_fast_conv_transpose(dy, _swap_io(g)), _fast_conv(x, g)))


def _same_padding(kernel_shape):
  return tuple((k // 2, k // 2) for k in kernel_shape[:2])


def _same_conv(x, kernel):
  """Stride-1 'same' convolution of an odd k x k kernel (padding k // 2)."""
  return lax.conv_general_dilated(x, kernel, (1, 1), _same_padding(kernel.shape),
                                  dimension_numbers=_DIMENSION_NUMBERS)


def _same_conv_adjoints(x, kernel, dy):
  # The adjoint of a 'same' convolution is the 'same' convolution with the kernel
  # flipped in space and its channel axes swapped: a forward convolution again.
  dx = _fast_same_conv(dy, _swap_io(kernel[::-1, ::-1]))
  dw = _same_conv_weight_grad(kernel.shape[0])(x, dy).astype(kernel.dtype)
  return dx, dw


_fast_same_conv = _bilinear_with_adjoints(_same_conv, _same_conv_adjoints)


@functools.cache
def _same_conv_weight_grad(k):
  """The filter gradient of the k x k 'same' convolution, as a fast bilinear op of (x, dy).

  `(x: f[B, H, W, Cin], dy: f[B, H, W, Cout]) -> f[k, k, Cin, Cout]` (x's dtype): the
  convolution of x with dy as its (H x W) window, batch and channel roles swapped,
  written in the canonical form (x as [Cin, H, W, B], dy as an [H, W, B, Cout]
  kernel). XLA's own filter gradient has other dimension labels. Its adjoints are
  the 'same' convolution's input gradient and forward pass with kernel g.
  """
  def weight_grad(x, dy):
    grad = lax.conv_general_dilated(
        x.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3), (1, 1),
        _same_padding((k, k)), dimension_numbers=_DIMENSION_NUMBERS)   # [Cin, k, k, Cout]
    return grad.transpose(1, 2, 0, 3)

  def adjoints(x, dy, g):
    g = g.astype(x.dtype)
    return _fast_same_conv(dy, _swap_io(g[::-1, ::-1])), _fast_same_conv(x, g)

  return _bilinear_with_adjoints(weight_grad, adjoints)


def cpu_same_conv(lhs, rhs, window_strides, padding, *, lhs_dilation=None,
                  rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                  precision=None):
  """`lax.conv_general_dilated` whose stride-1 'same' convolutions train fast on CPU.

  For the convolutions of the ResNet families (NHWC, odd k x k kernel, stride 1,
  padding k // 2, no dilation or groups) on the CPU backend, both gradients are
  written as convolutions in the form XLA:CPU's Eigen kernels take: the input
  gradient as the forward convolution with the flipped, channel-swapped kernel,
  the filter gradient as `_same_conv_weight_grad`. XLA's own gradients are the
  same convolutions with other dimension labels, which XLA:CPU does not rewrite
  inside a while loop (the n_critic D updates run in a `lax.scan`), where they run
  tens of times slower. The results equal XLA's own gradients. The VJP is
  differentiable again (gradient penalties, R1); forward mode (`jax.jvp`) is not
  available on that path. Anything else, and every other backend, is
  `lax.conv_general_dilated` itself. Pass as `nn.Conv(conv_general_dilated=...)`;
  docs/performance.md has the speed-ups.
  """
  plain = dict(lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
               dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
               precision=precision)
  kh, kw = rhs.shape[:2]
  same = (jax.default_backend() == 'cpu' and lhs.ndim == 4 and kh == kw and kh % 2 == 1
          and tuple(window_strides) == (1, 1) and feature_group_count == 1
          and precision is None and all(d in (None, (1, 1)) for d in (lhs_dilation, rhs_dilation))
          and tuple(map(tuple, padding)) == ((kh // 2, kh // 2),) * 2
          and dimension_numbers == lax.conv_dimension_numbers(lhs.shape, rhs.shape,
                                                              _DIMENSION_NUMBERS))
  if not same:
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, **plain)
  return _fast_same_conv(lhs, rhs)


def _xla_conv_transpose(x, kernel):
  """PyTorch ConvTranspose2d(k=4, s=2, p=1) in the textbook form, with XLA's own VJP.

  The input-dilated correlation with the flipped kernel (PyTorch padding 1 becomes
  4 - 1 - 1 = 2), as `flax.linen.ConvTranspose` computes it.
  """
  return lax.conv_general_dilated(
      x, kernel[::-1, ::-1], window_strides=(1, 1), padding=((2, 2), (2, 2)),
      lhs_dilation=(2, 2), dimension_numbers=_DIMENSION_NUMBERS)


# model.stride2_forms: how the stride-2 layers are computed (module docstring).
STRIDE2_FORMS = ('custom', 'xla')


def check_stride2_forms(forms):
  """Raises a ConfigError unless `forms` is one of STRIDE2_FORMS."""
  if forms not in STRIDE2_FORMS:
    raise errors.ConfigError(
        f'model.stride2_forms must be one of {list(STRIDE2_FORMS)}, got {forms!r}: '
        "'custom' (sub-pixel forms with custom VJPs, fast on XLA:CPU) or 'xla' "
        "(XLA's own convolutions and derivatives).")


def conv_transpose_4x4_s2(x, kernel, *, forms='custom'):
  """PyTorch `ConvTranspose2d(kernel_size=4, stride=2, padding=1)` without bias.

  Definition: `out[n, 2i + a - 1, 2j + b - 1, o] += x[n, i, j, c] * kernel[a, b, c, o]`,
  keeping only outputs in `[0, 2H) x [0, 2W)`.

  Args:
    x: f[B, H, W, Cin].
    kernel: f[4, 4, Cin, Cout] in PyTorch orientation (see module docstring).
    forms: 'custom' (sub-pixel convolution, custom VJP) or 'xla' (input-dilated
      convolution, XLA's derivatives); the same numbers either way.

  Returns:
    f[B, 2H, 2W, Cout].
  """
  if kernel.shape[:2] != (4, 4):
    raise ValueError(f'conv_transpose_4x4_s2 needs a 4x4 kernel, got {kernel.shape}.')
  check_stride2_forms(forms)
  return (_fast_conv_transpose if forms == 'custom' else _xla_conv_transpose)(x, kernel)


def conv_4x4_s2(x, kernel, *, forms='custom'):
  """PyTorch `Conv2d(kernel_size=4, stride=2, padding=1)` without bias.

  Definition: `out[n, i, j, o] = sum x[n, 2i + a - 1, 2j + b - 1, c] * kernel[a, b, c, o]`.

  Args:
    x: f[B, H, W, Cin] with H, W even.
    kernel: f[4, 4, Cin, Cout].
    forms: 'custom' (custom VJP) or 'xla' (XLA's derivatives); the same numbers.

  Returns:
    f[B, H/2, W/2, Cout].
  """
  if kernel.shape[:2] != (4, 4):
    raise ValueError(f'conv_4x4_s2 needs a 4x4 kernel, got {kernel.shape}.')
  if x.shape[1] % 2 or x.shape[2] % 2:
    raise ValueError(f'conv_4x4_s2 needs even height and width, got {x.shape}.')
  check_stride2_forms(forms)
  return (_fast_conv if forms == 'custom' else _strided_conv)(x, kernel)


class _Stride2Conv(nn.Module):
  """Shared body of Conv2x / ConvTranspose2x: a 4x4 kernel, an optional bias.

  Attributes:
    features: output channels Cout.
    use_bias: add a bias (off in DCGAN, where BatchNorm follows).
    kernel_init: kernel initialiser.
    dtype: compute dtype; params are `param_dtype`.
    forms: 'custom' or 'xla' (`model.stride2_forms`; see the module docstring).
  """
  features: int
  use_bias: bool = False
  kernel_init: Any = dcgan_kernel_init
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  forms: str = 'custom'

  def _convolve(self, x, op):
    kernel = self.param('kernel', self.kernel_init, (4, 4, x.shape[-1], self.features),
                        self.param_dtype)
    y = op(x.astype(self.dtype), kernel.astype(self.dtype), forms=self.forms)
    if self.use_bias:
      # Added in float32, as `compute.Conv`: its gradient sums over B x H x W.
      bias = self.param('bias', nn.initializers.zeros, (self.features,), self.param_dtype)
      y = (y + bias).astype(self.dtype)
    return y


class ConvTranspose2x(_Stride2Conv):
  """4x4, stride-2, padding-1 transposed convolution that doubles H and W.

  Same parameters as `nn.ConvTranspose(features, (4, 4), strides=(2, 2),
  padding=((2, 2), (2, 2)), transpose_kernel=True)` up to the kernel layout: this
  kernel is f32[4, 4, Cin, Cout] (PyTorch orientation), flax's is its
  `.transpose(0, 1, 3, 2)`. Attributes: see `_Stride2Conv`.
  """

  @nn.compact
  def __call__(self, x):
    """x: f[B, H, W, Cin] -> f[B, 2H, 2W, Cout] in `dtype`."""
    return self._convolve(x, conv_transpose_4x4_s2)


class Conv2x(_Stride2Conv):
  """4x4, stride-2, padding-1 convolution that halves H and W (DCGAN discriminator).

  Parameters are those of `nn.Conv(features, (4, 4), strides=(2, 2), padding=1)`.
  Attributes: see `_Stride2Conv`.
  """

  @nn.compact
  def __call__(self, x):
    """x: f[B, H, W, Cin] -> f[B, H/2, W/2, Cout] in `dtype`."""
    return self._convolve(x, conv_4x4_s2)


# ---- activations, packing, minibatch statistics ------------------------------------------


def gaussian_noise(module, h, std, *, train):
  """h + N(0, std^2) noise drawn from `module`'s 'noise' rng in a training call; else h.

  The regulariser of the semi-supervised GAN's discriminator (Salimans et al. 2016):
  without a 'noise' rng (evaluation, the penalties' calls), with std 0, or when not
  `train`, `h` is returned unchanged.

  Args:
    module: the calling module (inside its compact call).
    h: f[...] activations.
    std: the noise's standard deviation (>= 0).
    train: a training call.

  Returns:
    f[...] like `h`, in its dtype (the noise is drawn in float32).
  """
  if not (train and std and module.has_rng('noise')):
    return h
  noise = jax.random.normal(module.make_rng('noise'), h.shape, jnp.float32)
  return h + (std * noise).astype(h.dtype)


def leaky_relu(x):
  """LeakyReLU with the DCGAN slope 0.2: any shape and float dtype, elementwise."""
  return nn.leaky_relu(x, negative_slope=0.2)


def minibatch_stddev(x, axis_name=None):
  """Appends the minibatch-standard-deviation feature (Karras et al. 2018).

  The std over the batch of every feature, averaged over all features, is one scalar
  that tells D how diverse the batch is; it is appended as a constant channel.

  Args:
    x: f[B, ..., C] (B >= 2 for a meaningful std; B = 1 gives 0).
    axis_name: the mapped axis a batch is split over, to take the std over the
      global batch (as synchronised BatchNorm does), or None for this batch alone.

  Returns:
    f[B, ..., C + 1].
  """
  # Statistics in float32 even under bf16 compute: the variance of nearly equal
  # values cancels badly in low precision.
  xf = x.astype(jnp.float32)
  if axis_name is None:
    variance = jnp.var(xf, axis=0)
  else:  # equal shares per device, so the mean of the means is the global mean
    mean = jax.lax.pmean(jnp.mean(xf, axis=0), axis_name)
    variance = jax.lax.pmean(jnp.mean(jnp.square(xf - mean), axis=0), axis_name)
  std = jnp.sqrt(variance + 1e-8)
  feature = jnp.broadcast_to(jnp.mean(std), x.shape[:-1] + (1,)).astype(x.dtype)
  return jnp.concatenate([x, feature], axis=-1)


def pack_inputs(x, pack):
  """PacGAN packing: groups of `pack` consecutive samples become one D input.

  Args:
    x: f[B, ..., C] with B divisible by `pack`.
    pack: samples per packed input (1 = no packing).

  Returns:
    f[B // pack, ..., pack * C]; sample k of a group fills channels [k*C, (k+1)*C).

  Raises:
    ValueError: if B is not a multiple of `pack`.
  """
  if pack == 1:
    return x
  b = x.shape[0]
  if b % pack:
    raise ValueError(
        f'PacGAN packing needs the batch size to be a multiple of pack={pack}, got '
        f'{b}. Change train.batch_size (per device) or model.pack.')
  x = x.reshape((b // pack, pack) + x.shape[1:])
  # Move the pack axis next to channels so that it folds into them.
  x = jnp.moveaxis(x, 1, -2)
  return x.reshape(x.shape[:-2] + (pack * x.shape[-1],))


def compute_dtype(name):
  """'float32' | 'bfloat16' -> jnp dtype; a ConfigError naming model.dtype otherwise."""
  dtypes = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
  if name not in dtypes:
    raise errors.ConfigError(f'model.dtype must be one of {sorted(dtypes)}, got {name!r}.')
  return dtypes[name]
