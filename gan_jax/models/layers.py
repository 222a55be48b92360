"""Layers shared by the model families: fast stride-2 convolutions, initialisers, packing.

The 4x4 / stride-2 / padding-1 convolution and transposed convolution of DCGAN keep
the parameter layout of a plain 4x4 kernel (parameter counts equal the PyTorch DCGAN
example's) but are computed, forward and backward, with formulations that XLA
runs well:

  * `lax.conv_general_dilated` with `lhs_dilation` (what `flax.linen.ConvTranspose`
    and XLA's input gradient of a strided convolution lower to) was 2-4x slower on
    XLA:CPU than the sub-pixel form below on 32-64 px outputs (on par or faster on
    8-16 px outputs).
  * The weight gradient XLA derives for a stride-1 "sub-pixel" convolution (a
    convolution whose window is the whole image) is 2-5x slower than the weight
    gradient of the equivalent strided convolution.

So both layers use a custom VJP built from the two fast forward kernels, which are
each other's adjoints (with the kernel's in/out axes swapped):

  conv_4x4_s2(x, w)    forward: strided conv   dx: conv_transpose(dy, w^T)   dw: wgrad
  conv_transpose(x, w) forward: sub-pixel conv dx: conv_4x4_s2(dy, w^T)      dw: wgrad^T

where wgrad is XLA's filter gradient of the strided convolution. The VJPs are
differentiable again (gradient penalties), but forward-mode (`jax.jvp`) is not
available. On CPU the training step is compiled with XLA's Eigen convolution
kernels (`parallel.cpu_compiler_options`); measured per layer at batch 64 on a
2-core AVX-512 CPU they ran 1.3-3.6x faster than the YNNPACK kernels XLA 0.10
picks by default for the strided convolutions and their weight gradients.
With them, XLA's own weight gradient beat every matmul formulation we tried
(space-to-depth taps, im2col, shifted dy, sums over batch chunks).

Kernel orientation (both layers) follows PyTorch: `kernel[a, b, c, o]` multiplies
input channel `c` into output channel `o` at kernel tap `(a, b)`, i.e. it equals
`torch_weight.permute(2, 3, 1, 0)` for `nn.Conv2d` (weight `[out, in, kh, kw]`) and
`torch_weight.permute(2, 3, 0, 1)` for `nn.ConvTranspose2d` (weight `[in, out, kh, kw]`).
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

def normal_init(stddev, mean=0.0):
  """Initialiser drawing N(mean, stddev^2) values.

  The values are drawn as a flat vector and reshaped: with the (default) partitionable
  threefry PRNG, XLA:CPU takes seconds to compile `jax.random.normal` of a 4-D shape
  such as (4, 4, 32, 16) (0.6 s flat), which dominated model init and test time.
  """
  def init(key, shape, dtype=jnp.float32):
    flat = jax.random.normal(key, (math.prod(shape),), dtype)
    return (mean + stddev * flat).reshape(shape)
  return init


# DCGAN initialisation (Radford et al. 2015): conv/dense weights ~ N(0, 0.02) and
# BatchNorm scales ~ N(1, 0.02), as the PyTorch DCGAN example's `weights_init`.
dcgan_kernel_init = normal_init(0.02)
dcgan_scale_init = normal_init(0.02, mean=1.0)


def leaky_relu(x):
  """LeakyReLU with the DCGAN slope 0.2."""
  return nn.leaky_relu(x, negative_slope=0.2)


def _dimension_numbers():
  return ('NHWC', 'HWIO', 'NHWC')


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


def space_to_depth(x, block=2):
  """Inverse of `depth_to_space`: f[B, H, W, C] -> f[B, H/block, W/block, block*block*C]."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // block, block, w // block, block, c)
  x = x.transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // block, w // block, block * block * c)


def _swap_io(kernel):
  return kernel.transpose(0, 1, 3, 2)


def _pad1(x):
  return jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))


def _strided_conv(x, kernel):
  """PyTorch Conv2d(k=4, s=2, p=1) as one strided convolution."""
  return lax.conv_general_dilated(
      x, kernel, window_strides=(2, 2), padding=((1, 1), (1, 1)),
      dimension_numbers=_dimension_numbers())


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
  y = lax.conv_general_dilated(
      _pad1(x), _subpixel_kernel(kernel), window_strides=(1, 1), padding='VALID',
      dimension_numbers=_dimension_numbers())      # [B, H+1, W+1, 4 Cout]
  y = depth_to_space(y)                            # [B, 2H+2, 2W+2, Cout], starts at -1
  return y[:, 1:-1, 1:-1, :]


def _weight_grad(x, dy):
  """Gradient of `sum(_strided_conv(x, w) * dy)` with respect to w.

  XLA's own filter-gradient convolution (see the module docstring for why).

  Args:
    x: f[B, H, W, Cin], H and W even.
    dy: f[B, H/2, W/2, Cout].

  Returns:
    f[4, 4, Cin, Cout]: `sum over n, i, j of pad1(x)[n, 2i+a, 2j+b, c] * dy[n, i, j, o]`.
  """
  kernel = jax.ShapeDtypeStruct((4, 4, x.shape[-1], dy.shape[-1]), x.dtype)
  (grad,) = jax.linear_transpose(lambda k: _strided_conv(x, k), kernel)(dy)
  return grad


@jax.custom_vjp
def _fast_conv(x, kernel):
  return _strided_conv(x, kernel)


def _fast_conv_fwd(x, kernel):
  return _strided_conv(x, kernel), (x, kernel)


def _fast_conv_bwd(residuals, dy):
  x, kernel = residuals
  return _fast_conv_transpose(dy, _swap_io(kernel)), _weight_grad(x, dy)


_fast_conv.defvjp(_fast_conv_fwd, _fast_conv_bwd)


@jax.custom_vjp
def _fast_conv_transpose(x, kernel):
  return _subpixel_conv_transpose(x, kernel)


def _fast_conv_transpose_fwd(x, kernel):
  return _subpixel_conv_transpose(x, kernel), (x, kernel)


def _fast_conv_transpose_bwd(residuals, dy):
  x, kernel = residuals
  # The transposed convolution is the adjoint of the strided one, so its weight
  # gradient is the strided convolution's with the roles of input and output swapped.
  return _fast_conv(dy, _swap_io(kernel)), _swap_io(_weight_grad(dy, x))


_fast_conv_transpose.defvjp(_fast_conv_transpose_fwd, _fast_conv_transpose_bwd)


def conv_transpose_4x4_s2(x, kernel, *, impl='fast'):
  """PyTorch `ConvTranspose2d(kernel_size=4, stride=2, padding=1)` without bias.

  Definition: `out[n, 2i + a - 1, 2j + b - 1, o] += x[n, i, j, c] * kernel[a, b, c, o]`,
  keeping only outputs in `[0, 2H) x [0, 2W)`.

  Args:
    x: f[B, H, W, Cin].
    kernel: f[4, 4, Cin, Cout] in PyTorch orientation (see module docstring).
    impl: 'fast' (default): sub-pixel forward with the custom VJP of the module
      docstring. 'subpixel': the same forward, XLA's derivatives. 'lax': the
      textbook input-dilated convolution (what flax.linen.ConvTranspose does).

  Returns:
    f[B, 2H, 2W, Cout].
  """
  if kernel.shape[:2] != (4, 4):
    raise ValueError(f'conv_transpose_4x4_s2 needs a 4x4 kernel, got {kernel.shape}.')
  if impl == 'fast':
    return _fast_conv_transpose(x, kernel)
  if impl == 'subpixel':
    return _subpixel_conv_transpose(x, kernel)
  if impl == 'lax':
    # Input-dilated correlation with the spatially flipped kernel; PyTorch padding p=1
    # becomes k - 1 - p = 2 on the dilated input.
    return lax.conv_general_dilated(
        x, kernel[::-1, ::-1], window_strides=(1, 1), padding=((2, 2), (2, 2)),
        lhs_dilation=(2, 2), dimension_numbers=_dimension_numbers())
  raise ValueError(f"Unknown impl {impl!r}; expected 'fast', 'subpixel' or 'lax'.")


def conv_4x4_s2(x, kernel, *, impl='fast'):
  """PyTorch `Conv2d(kernel_size=4, stride=2, padding=1)` without bias.

  Definition: `out[n, i, j, o] = sum x[n, 2i + a - 1, 2j + b - 1, c] * kernel[a, b, c, o]`.

  Args:
    x: f[B, H, W, Cin] with H, W even.
    kernel: f[4, 4, Cin, Cout].
    impl: 'fast' (default): the strided convolution with the custom VJP of the
      module docstring. 'lax': the strided convolution with XLA's derivatives.
      'space_to_depth': pad, fold 2x2 pixel blocks into channels, 2x2 VALID conv.

  Returns:
    f[B, H/2, W/2, Cout].
  """
  if kernel.shape[:2] != (4, 4):
    raise ValueError(f'conv_4x4_s2 needs a 4x4 kernel, got {kernel.shape}.')
  if x.shape[1] % 2 or x.shape[2] % 2:
    raise ValueError(f'conv_4x4_s2 needs even height and width, got {x.shape}.')
  if impl == 'fast':
    return _fast_conv(x, kernel)
  if impl == 'lax':
    return _strided_conv(x, kernel)
  if impl == 'space_to_depth':
    cin, cout = kernel.shape[2:]
    # Tap a = 2u + s: block offset u, phase s inside the block; channels (sy, sx, c).
    k = kernel.reshape(2, 2, 2, 2, cin, cout).transpose(0, 2, 1, 3, 4, 5)
    return lax.conv_general_dilated(
        space_to_depth(_pad1(x)), k.reshape(2, 2, 4 * cin, cout), window_strides=(1, 1),
        padding='VALID', dimension_numbers=_dimension_numbers())
  raise ValueError(
      f"Unknown impl {impl!r}; expected 'fast', 'lax' or 'space_to_depth'.")


class ConvTranspose2x(nn.Module):
  """4x4, stride-2, padding-1 transposed convolution that doubles H and W.

  Same parameters as `nn.ConvTranspose(features, (4, 4), strides=(2, 2),
  padding=((2, 2), (2, 2)), transpose_kernel=True)` up to the kernel layout: this
  kernel is f32[4, 4, Cin, Cout] (PyTorch orientation), flax's is its
  `.transpose(0, 1, 3, 2)`.

  Attributes:
    features: output channels Cout.
    use_bias: add a bias (off in DCGAN, where BatchNorm follows).
    dtype: compute dtype; params are `param_dtype`.
    impl: see `conv_transpose_4x4_s2`.
  """
  features: int
  use_bias: bool = False
  kernel_init: Any = dcgan_kernel_init
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  impl: str = 'fast'

  @nn.compact
  def __call__(self, x):
    """x: f[B, H, W, Cin] -> f[B, 2H, 2W, Cout] in `dtype`."""
    kernel = self.param('kernel', self.kernel_init, (4, 4, x.shape[-1], self.features),
                        self.param_dtype)
    y = conv_transpose_4x4_s2(x.astype(self.dtype), kernel.astype(self.dtype),
                              impl=self.impl)
    if self.use_bias:
      bias = self.param('bias', nn.initializers.zeros, (self.features,), self.param_dtype)
      y = y + bias.astype(self.dtype)
    return y


class Conv2x(nn.Module):
  """4x4, stride-2, padding-1 convolution that halves H and W (DCGAN discriminator).

  Parameters are those of `nn.Conv(features, (4, 4), strides=(2, 2), padding=1)`.

  Attributes:
    features: output channels Cout.
    use_bias: add a bias.
    dtype: compute dtype; params are `param_dtype`.
    impl: see `conv_4x4_s2`.
  """
  features: int
  use_bias: bool = False
  kernel_init: Any = dcgan_kernel_init
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  impl: str = 'fast'

  @nn.compact
  def __call__(self, x):
    """x: f[B, H, W, Cin] -> f[B, H/2, W/2, Cout] in `dtype`."""
    kernel = self.param('kernel', self.kernel_init, (4, 4, x.shape[-1], self.features),
                        self.param_dtype)
    y = conv_4x4_s2(x.astype(self.dtype), kernel.astype(self.dtype), impl=self.impl)
    if self.use_bias:
      bias = self.param('bias', nn.initializers.zeros, (self.features,), self.param_dtype)
      y = y + bias.astype(self.dtype)
    return y


def minibatch_stddev(x):
  """Appends the minibatch-standard-deviation feature (Karras et al. 2018).

  The std over the batch of every feature, averaged over all features, is one scalar
  that tells D how diverse the batch is; it is appended as a constant channel.

  Args:
    x: f[B, ..., C] (B >= 2 for a meaningful std; B = 1 gives 0).

  Returns:
    f[B, ..., C + 1].
  """
  # Statistics in float32 even under bf16 compute: the variance of nearly equal
  # values cancels badly in low precision.
  xf = x.astype(jnp.float32)
  std = jnp.sqrt(jnp.var(xf, axis=0) + 1e-8)
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
  """'float32' | 'bfloat16' -> jnp dtype; a clear error otherwise."""
  dtypes = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
  if name not in dtypes:
    raise ValueError(f'model.dtype must be one of {sorted(dtypes)}, got {name!r}.')
  return dtypes[name]
