"""ResNet SNGAN generator and discriminator (Miyato et al. 2018), as torch_mimicry's
`nets/sngan/sngan_{32,48,64,128}.py` with the blocks of `modules/resblocks.py`, and
their class-conditional form (cGAN-PD, `nets/cgan_pd/cgan_pd_{32,128}.py`).

  G: z -> Linear(bottom_width^2 * ngf) -> GBlocks (BN, ReLU, 2x upsampling, 3x3 conv,
     BN, ReLU, 3x3 conv; a 1x1 shortcut conv after upsampling) -> BN -> ReLU
     -> 3x3 conv to `channels` -> tanh.
  D: optimised first block (conv, ReLU, conv, 2x2 average pool; shortcut: pool, 1x1 conv)
     -> DBlocks (ReLU, then on that: 3x3 conv, ReLU, 3x3 conv [, pool]; shortcut 1x1 conv
     [, pool] when the width changes or it pools) -> ReLU -> global sum pool -> Linear(1).
     No normalisation.

Widths per resolution (ngf / ndf as the reference files' defaults: 32 px 256 / 128,
48 px 512 / 1024 with bottom_width 6, 64 px 1024 / 1024, 128 px 1024 / 1024):

  G out widths  32: ngf ngf ngf          48: ngf/2 ngf/4 ngf/8
                64: ngf/2 .. ngf/16      128: ngf ngf/2 .. ngf/16
  D widths      32: ndf, ndf (pool), ndf, ndf
                48: ndf/16, ndf/8, ndf/4, ndf/2 (each pooling), ndf
                64: ndf/16, ndf/8, ndf/4, ndf/2, ndf (all pooling)
                128: as 64, then ndf without pooling

Every conv and linear layer has a bias; weights are xavier-uniform with gain sqrt(2)
for the 3x3 block convs and 1 elsewhere, biases keep PyTorch's default
U(+-1/sqrt(fan_in)). With `model.num_classes` > 0 every GBlock uses conditional
BatchNorm (the last BN stays unconditional) and D adds a projection or ACGAN head.
`model.upsample` picks torch_mimicry's bilinear upsampling or the Chainer code's nearest.
"""

import functools
import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from gan_jax import errors
from gan_jax.models import compute
from gan_jax.models import conditional
from gan_jax.models import layers

# resolution -> (G block output widths as right shifts of ngf,
#                D first-block width as a right shift of ndf,
#                D blocks as (right shift of ndf, downsample)).
LAYOUTS = {
    32: ((0, 0, 0), 0, ((0, True), (0, False), (0, False))),
    48: ((1, 2, 3), 4, ((3, True), (2, True), (1, True), (0, False))),
    64: ((1, 2, 3, 4), 4, ((3, True), (2, True), (1, True), (0, True))),
    128: ((0, 1, 2, 3, 4), 4, ((3, True), (2, True), (1, True), (0, True), (0, False))),
}

_SQRT2 = math.sqrt(2.0)
UPSAMPLE_METHODS = ('bilinear', 'nearest')


def _linear_upsample_axis(x, axis):
  """Doubles one axis as PyTorch's bilinear `interpolate(align_corners=False)` does.

  Output 2i sits at input coordinate i - 1/4 and output 2i + 1 at i + 1/4, so they
  are 3/4 x[i] + 1/4 x[i -+ 1], with the edge sample repeated past the border.
  """
  n = x.shape[axis]
  edge = lambda i: lax.slice_in_dim(x, i, i + 1, axis=axis)
  previous = jnp.concatenate([edge(0), lax.slice_in_dim(x, 0, n - 1, axis=axis)], axis)
  following = jnp.concatenate([lax.slice_in_dim(x, 1, n, axis=axis), edge(n - 1)], axis)
  y = jnp.stack([0.75 * x + 0.25 * previous, 0.75 * x + 0.25 * following], axis=axis + 1)
  return y.reshape(x.shape[:axis] + (2 * n,) + x.shape[axis + 1:])


def upsample_2x(x, *, method):
  """Doubles H and W of f[B, H, W, C] -> f[B, 2H, 2W, C] (x's dtype).

  method: 'bilinear' (PyTorch `interpolate(scale_factor=2, mode='bilinear',
  align_corners=False)`, as torch_mimicry's GBlock) or 'nearest' (each pixel becomes a
  2x2 block, as the SNGAN Chainer code).
  """
  if method == 'nearest':
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  if method == 'bilinear':
    return _linear_upsample_axis(_linear_upsample_axis(x, 1), 2).astype(x.dtype)
  raise errors.ConfigError(
      f'model.upsample must be one of {list(UPSAMPLE_METHODS)}, got {method!r}.')


def avg_pool_2x(x):
  """2x2 average pooling, stride 2: f[B, H, W, C] -> f[B, H // 2, W // 2, C].

  As PyTorch's `avg_pool2d(x, 2)`, an odd last row / column is dropped.
  """
  b, h, w, c = x.shape
  x = x[:, :h // 2 * 2, :w // 2 * 2]
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def _conv(x, features, kernel_size, *, gain, spectral_norm, train, dtype, name):
  conv = layers.torch_conv(features, kernel_size, in_features=x.shape[-1], gain=gain,
                           dtype=dtype, name=name)
  return layers.maybe_spectral_normalized(conv, x, spectral_norm=spectral_norm, train=train)


class GBlock(nn.Module):
  """Generator residual block (torch_mimicry `GBlock`, hidden width = output width).

  Attributes:
    features: output channels.
    upsample: double H and W (then the shortcut is a 1x1 conv too).
    upsample_method: 'bilinear' or 'nearest' (see `upsample_2x`).
    num_classes: > 0: conditional BatchNorm (needs labels).
    spectral_norm: spectrally normalise the convolutions.
    bn_momentum: BatchNorm running-average decay.
    bn_axis_name: mapped axis for synchronised BatchNorm, or None.
    dtype: compute dtype; params are float32.
  """
  features: int
  upsample: bool = True
  upsample_method: str = 'bilinear'
  num_classes: int = 0
  spectral_norm: bool = False
  bn_momentum: float = 0.9
  bn_axis_name: Any = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, labels=None, *, train):
    """x: f[B, H, W, Cin] (labels: int32[B] when conditional) -> f[B, H', W', features]."""
    def norm_relu(h, name):
      if self.num_classes:
        h = conditional.ConditionalBatchNorm(
            self.num_classes, momentum=self.bn_momentum, axis_name=self.bn_axis_name,
            dtype=self.dtype, name=name)(h, labels, train=train)
      else:
        h = layers.batch_norm(self, train=train, momentum=self.bn_momentum,
                              axis_name=self.bn_axis_name, dtype=self.dtype, name=name)(h)
      return nn.relu(h)

    def resize(h):
      return upsample_2x(h, method=self.upsample_method) if self.upsample else h

    conv = dict(spectral_norm=self.spectral_norm, train=train, dtype=self.dtype)
    h = resize(norm_relu(x, 'bn1'))
    h = _conv(h, self.features, 3, gain=_SQRT2, name='conv1', **conv)
    h = norm_relu(h, 'bn2')
    h = _conv(h, self.features, 3, gain=_SQRT2, name='conv2', **conv)
    shortcut = x
    if self.upsample or x.shape[-1] != self.features:
      shortcut = _conv(resize(x), self.features, 1, gain=1.0, name='shortcut', **conv)
    return h + shortcut


class DBlock(nn.Module):
  """Discriminator residual block (torch_mimicry `DBlock` / `DBlockOptimized`).

  Attributes:
    features: output channels.
    downsample: 2x2 average pooling at the end of both paths.
    optimized: the first block of D: no pre-activation, first conv straight to
      `features` (a plain DBlock's first conv keeps the input width) and always a
      1x1 shortcut conv.
    spectral_norm: spectrally normalise the convolutions.
    dtype: compute dtype; params are float32.
  """
  features: int
  downsample: bool = True
  optimized: bool = False
  spectral_norm: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train):
    """x: f[B, H, W, Cin] -> f[B, H', W', features] (H' = H // 2 when downsampling)."""
    conv = dict(spectral_norm=self.spectral_norm, train=train, dtype=self.dtype)
    pool = avg_pool_2x if self.downsample else (lambda h: h)
    hidden = self.features if self.optimized else x.shape[-1]
    if not self.optimized:
      # torch_mimicry's DBlock applies this ReLU in place (nn.ReLU(inplace=True)) to
      # the block input itself, so its shortcut sees relu(x) too; we compute the same.
      x = nn.relu(x)
    h = _conv(x, hidden, 3, gain=_SQRT2, name='conv1', **conv)
    h = _conv(nn.relu(h), self.features, 3, gain=_SQRT2, name='conv2', **conv)
    h = pool(h)
    shortcut = x
    if self.optimized or self.downsample or x.shape[-1] != self.features:
      # Pooling before the 1x1 conv equals pooling after it (both are linear, and the
      # pool preserves the bias), at a quarter of the cost.
      shortcut = _conv(pool(x), self.features, 1, gain=1.0, name='shortcut', **conv)
    return h + shortcut


class Generator(nn.Module):
  """ResNet SNGAN generator: z (and labels) -> image.

  Attributes:
    resolution: output side in px (a key of LAYOUTS).
    channels: output channels.
    ngf: generator width (see the module docstring).
    bottom_width: side of the first feature map (resolution / 2^num_blocks).
    num_classes: > 0: conditional BatchNorm in every block (cGAN-PD).
    spectral_norm: spectrally normalise every conv and linear layer (as SAGAN's G).
    upsample_method: 'bilinear' or 'nearest'.
    bn_momentum: BatchNorm running-average decay.
    bn_axis_name: mapped axis for synchronised BatchNorm, or None.
    dtype: compute dtype; params and output are float32.
    remat: recompute each GBlock in the backward pass (`compute.remat_call`).
  """
  resolution: int = 32
  channels: int = 3
  ngf: int = 256
  bottom_width: int = 4
  num_classes: int = 0
  spectral_norm: bool = False
  upsample_method: str = 'bilinear'
  bn_momentum: float = 0.9
  bn_axis_name: Any = None
  dtype: Any = jnp.float32
  remat: bool = False

  def _block(self, h, labels, k, features, train):
    return GBlock(features, upsample=True, upsample_method=self.upsample_method,
                  num_classes=self.num_classes, spectral_norm=self.spectral_norm,
                  bn_momentum=self.bn_momentum, bn_axis_name=self.bn_axis_name,
                  dtype=self.dtype, name=f'block{k}')(h, labels, train=train)

  @nn.compact
  def __call__(self, z, labels=None, *, train):
    """Generates images.

    Args:
      z: f32[B, z_dim].
      labels: int32[B] in [0, num_classes) when conditional; ignored otherwise.
      train: use and update BatchNorm batch statistics (`mutable=['batch_stats']`).

    Returns:
      f32[B, resolution, resolution, channels] in [-1, 1].
    """
    batch, width = z.shape[0], self.bottom_width
    labels = conditional.check_labels(labels, batch=batch, num_classes=self.num_classes,
                                      who='generator')
    g_shifts = LAYOUTS[self.resolution][0]
    dense = layers.torch_dense(width * width * self.ngf, in_features=z.shape[-1],
                               dtype=self.dtype, name='linear')
    h = layers.maybe_spectral_normalized(dense, z, spectral_norm=self.spectral_norm,
                                         train=train)
    # (H, W, C) order; PyTorch's view is (C, H, W): the same layer up to a permutation
    # of its output units (mind it when porting weights).
    h = h.reshape(batch, width, width, self.ngf)
    for k, shift in enumerate(g_shifts):
      h = compute.remat_call(self._block, h, labels, k, self.ngf >> shift, train,
                            remat=self.remat)
    h = layers.batch_norm(self, train=train, momentum=self.bn_momentum,
                          axis_name=self.bn_axis_name, dtype=self.dtype, name='bn_out')(h)
    h = _conv(nn.relu(h), self.channels, 3, gain=1.0, spectral_norm=self.spectral_norm,
              train=train, dtype=self.dtype, name='conv_out')
    # tanh in float32: bf16 has ~3 significant digits, too coarse near +-1.
    return jnp.tanh(h.astype(jnp.float32))


class Discriminator(nn.Module):
  """ResNet SNGAN discriminator: image (and labels) -> one logit per (packed) image.

  Sows `intermediates/features` f32[B // pack, width of the last block] (the ReLU'd,
  sum-pooled features that feed the output layer) and, with an ACGAN head,
  `intermediates/class_logits` f32[B, num_classes].

  Attributes:
    resolution: input side in px (a key of LAYOUTS).
    ndf: discriminator width (see the module docstring).
    num_classes: > 0: class-conditional head `d_cond`.
    d_cond: 'projection' or 'acgan'.
    spectral_norm: spectrally normalise every layer (SNGAN; state in `batch_stats`).
    pack: PacGAN packing degree.
    minibatch_std: append the minibatch-stddev feature map before the last block.
    bn_axis_name: mapped axis to take the minibatch std over the global batch (as
      synchronised BatchNorm), or None.
    dtype: compute dtype; params and logits are float32.
    remat: recompute each DBlock in the backward pass (`compute.remat_call`).
  """
  resolution: int = 32
  ndf: int = 128
  num_classes: int = 0
  d_cond: str = 'projection'
  spectral_norm: bool = True
  pack: int = 1
  minibatch_std: bool = False
  bn_axis_name: Any = None
  dtype: Any = jnp.float32
  remat: bool = False

  def _block(self, h, k, features, downsample, train):
    return DBlock(features, downsample=downsample, optimized=k == 0,
                  spectral_norm=self.spectral_norm, dtype=self.dtype, name=f'block{k}')(
                      h, train=train)

  @nn.compact
  def __call__(self, x, labels=None, *, train):
    """Scores images.

    Args:
      x: f32[B, resolution, resolution, C] in [-1, 1], B divisible by `pack`.
      labels: int32[B] in [0, num_classes) when conditional; ignored otherwise.
      train: update the spectral-norm state (`mutable=['batch_stats']`).

    Returns:
      f32[B // pack] logits (no sigmoid).
    """
    if x.ndim != 4 or x.shape[1:3] != (self.resolution, self.resolution):
      raise ValueError(
          f'resnet discriminator expects f32[B, {self.resolution}, {self.resolution}, C] '
          f'images (model.resolution), got shape {x.shape}.')
    labels = conditional.check_labels(labels, batch=x.shape[0] // self.pack,
                                      num_classes=self.num_classes, who='discriminator',
                                      d_cond=self.d_cond)
    _, first_shift, d_blocks = LAYOUTS[self.resolution]
    call = functools.partial(compute.remat_call, self._block, remat=self.remat)
    h = layers.pack_inputs(x, self.pack).astype(self.dtype)
    h = call(h, 0, self.ndf >> first_shift, True, train)
    for k, (shift, downsample) in enumerate(d_blocks, start=1):
      if self.minibatch_std and k == len(d_blocks):
        h = layers.minibatch_stddev(h, self.bn_axis_name)
      h = call(h, k, self.ndf >> shift, downsample, train)
    features = jnp.sum(nn.relu(h).astype(jnp.float32), axis=(1, 2))
    self.sow('intermediates', 'features', features)
    # The output layers in float32 (as biggan's): they are small, and bf16 would
    # round the logits (spacing 0.25 at 40) and the class logits.
    dense = layers.torch_dense(1, in_features=features.shape[-1], dtype=jnp.float32,
                               name='linear')
    logits = layers.maybe_spectral_normalized(
        dense, features, spectral_norm=self.spectral_norm, train=train)
    logits = logits.reshape(-1).astype(jnp.float32)
    return conditional.discriminator_output(
        self, features, logits, labels, num_classes=self.num_classes, d_cond=self.d_cond,
        spectral_norm=self.spectral_norm, train=train, dtype=jnp.float32)


def _validate(model_config):
  m = model_config
  if m.resolution not in LAYOUTS:
    raise errors.ConfigError(
        f'resnet builds resolutions {sorted(LAYOUTS)} (torch_mimicry sngan_<R>), got '
        f'model.resolution={m.resolution}.')
  g_shifts, first_shift, d_blocks = LAYOUTS[m.resolution]
  bottom = m.resolution // 2 ** len(g_shifts)
  if m.bottom_width != bottom:
    raise errors.ConfigError(
        f'model.bottom_width must be {bottom} for resnet at model.resolution={m.resolution} '
        f'({len(g_shifts)} upsampling blocks), got {m.bottom_width}.')
  for field, width, shift in (('ngf', m.ngf, max(g_shifts)),
                              ('ndf', m.ndf, max(first_shift, *(s for s, _ in d_blocks)))):
    if width >> shift < 1:
      raise errors.ConfigError(
          f'model.{field} must be >= {2 ** shift} for resnet at {m.resolution} px (its '
          f'narrowest layer has {field} / {2 ** shift} channels), got {width}.')
  if m.g_norm != 'batch':
    raise errors.ConfigError(
        f"model.g_norm must be 'batch' for resnet (its blocks use BatchNorm), got {m.g_norm!r}.")
  if m.d_norm != 'none':
    raise errors.ConfigError(
        "model.d_norm must be 'none' for resnet (the SNGAN discriminator has no "
        f'normalisation layers), got {m.d_norm!r}.')
  if m.upsample not in UPSAMPLE_METHODS:
    raise errors.ConfigError(
        f'model.upsample must be one of {list(UPSAMPLE_METHODS)}, got {m.upsample!r}.')
  if m.pack < 1:
    raise errors.ConfigError(f'model.pack must be >= 1, got {m.pack}.')
  conditional.validate(m)


def data_shape(model_config):
  """(resolution, resolution, channels): the shape of one image."""
  return (model_config.resolution, model_config.resolution, model_config.channels)


def build(model_config, *, bn_axis_name=None, remat=False):
  """Builds the ResNet SNGAN pair from `config.model`.

  Args:
    model_config: ConfigDict with resolution, channels, ngf, ndf, bottom_width, g_norm
      ('batch'), d_norm ('none'), spectral_norm (D), g_spectral_norm, upsample,
      num_classes, d_cond, bn_momentum, pack, minibatch_std, dtype.
    bn_axis_name: mapped axis name for synchronised BatchNorm, or None.
    remat: rematerialise every G and D block (`config.train.remat`).

  Returns:
    (generator, discriminator) flax modules.

  Raises:
    ConfigError: naming the first bad field.
  """
  dtype = layers.compute_dtype(model_config.dtype)
  _validate(model_config)
  m = model_config
  generator = Generator(
      resolution=m.resolution, channels=m.channels, ngf=m.ngf, bottom_width=m.bottom_width,
      num_classes=m.num_classes, spectral_norm=m.g_spectral_norm, upsample_method=m.upsample,
      bn_momentum=m.bn_momentum, bn_axis_name=bn_axis_name, dtype=dtype, remat=remat)
  discriminator = Discriminator(
      resolution=m.resolution, ndf=m.ndf, num_classes=m.num_classes, d_cond=m.d_cond,
      spectral_norm=m.spectral_norm, pack=m.pack, minibatch_std=m.minibatch_std,
      bn_axis_name=bn_axis_name, dtype=dtype, remat=remat)
  return generator, discriminator
