"""BigGAN generator and discriminator (Brock et al. 2019), as PyTorch-StudioGAN's `big_resnet`.

Layer for layer StudioGAN's `src/models/big_resnet.py` (equal parameter counts with
its CIFAR-10 and ImageNet configs, tests/test_biggan.py), which is also its `resnet`
backbone apart from how G is conditioned (`sagan.py` builds that variant from here):

  G: z -> [hierarchical split] -> SN linear -> 4x4 x ngf*m0
       -> GBlocks (each doubles H, W) -> [self-attention] -> BN, ReLU, SN 3x3 conv, tanh
     GBlock(x, c): conditional BN(c), ReLU, 2x nearest upsample, SN 3x3 conv,
                   conditional BN(c), ReLU, SN 3x3 conv; plus upsample + SN 1x1 conv of x.
  D: x -> DBlocks (first one 'optimized') -> [self-attention] -> ReLU -> sum over H, W
       -> SN linear to 1 logit (+ projection <embed(y), h>, or an ACGAN class head)
     DBlock(x): x <- ReLU(x); SN 3x3 conv, ReLU, SN 3x3 conv, [2x2 avg pool];
                plus x, or SN 1x1 conv + [avg pool] of x when the shape changes
                (StudioGAN's in-place ReLU also rectifies the shortcut's input).

Conditional BN (BigGAN's "conditional BN from a linear projection"): BatchNorm
without affine parameters, then `(1 + c W_gain) * x_hat + c W_bias` with SN linear
maps (no bias) of the conditioning vector c. With `hierarchical_z` z is split into
num_blocks + 1 equal chunks: the first feeds the linear layer, chunk k + 1 is
concatenated with the shared class embedding (`shared_dim`, one embedding table for
all blocks) to make c of block k. With `shared_dim` = 0 the one-hot label is c
(StudioGAN's `resnet`, i.e. SAGAN). A G without any conditioning uses plain affine BN.

Widths per resolution are StudioGAN's tables (`G_CHANNELS`, `D_CHANNELS`: multiples
of ngf / ndf); every D block halves H, W except the last (at 32 px: the last two).
Self-attention sits after the G block and after the first D block whose output
has side `attention_resolution` (StudioGAN's configs: half the image side in both).
Every G and D weight is spectrally normalised except G's shared class embedding
(as the reference); weights are orthogonally initialised (StudioGAN's 'ortho').
BatchNorm: epsilon 1e-4 as StudioGAN. Spectral norm is the project's one
implementation (flax's, epsilon 1e-12; StudioGAN's own uses 1e-6, which moves sigma
by far less than one power iteration's error).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax import errors
from gan_jax.models import attention as attention_lib
from gan_jax.models import compute
from gan_jax.models import conditional
from gan_jax.models import layers

BOTTOM_WIDTH = 4
G_CHANNELS = {
    32: (4, 4, 4, 4), 64: (16, 8, 4, 2, 1), 128: (16, 16, 8, 4, 2, 1),
    256: (16, 16, 8, 8, 4, 2, 1), 512: (16, 16, 8, 8, 4, 2, 1, 1)}
D_CHANNELS = {
    32: (2, 2, 2, 2), 64: (1, 2, 4, 8, 16), 128: (1, 2, 4, 8, 16, 16),
    256: (1, 2, 4, 8, 8, 16, 16), 512: (1, 1, 2, 4, 8, 8, 16, 16)}
D_CONDITIONING = ('projection', 'acgan')
_BN_EPSILON = 1e-4


def resolutions():
  """Image sides (px) the biggan / sagan families can build, ascending."""
  return sorted(G_CHANNELS)


def check_resolution(resolution):
  """Raises ConfigError unless `resolution` is in `resolutions()`."""
  if resolution not in G_CHANNELS:
    raise errors.ConfigError(
        f'model.resolution must be one of {resolutions()} for biggan / sagan, '
        f'got {resolution}.')


def g_sides(resolution):
  """Output side (px) of every G block: 8, 16, ..., resolution."""
  return [BOTTOM_WIDTH * 2 ** (k + 1) for k in range(len(G_CHANNELS[resolution]) - 1)]


def d_sides(resolution):
  """Output side (px) of every D block (32 px: 16, 8, 8, 8)."""
  downs = _d_downsamples(resolution)
  return [resolution // 2 ** sum(downs[:k + 1]) for k in range(len(downs))]


def _d_downsamples(resolution):
  n = len(D_CHANNELS[resolution])
  num_down = 2 if resolution == 32 else n - 1
  return [k < num_down for k in range(n)]


def _batch_norm(module, *, affine, train, momentum, axis_name, dtype, name):
  # During init there is no mapped axis to average over (init runs outside
  # shard_map / pmap), and the statistics are zeros anyway.
  # Statistics and normalisation in float32 for any compute dtype (as layers.batch_norm).
  return nn.BatchNorm(
      use_running_average=not train, momentum=momentum, epsilon=_BN_EPSILON,
      use_scale=affine, use_bias=affine,
      axis_name=None if module.is_initializing() else axis_name,
      dtype=dtype, param_dtype=jnp.float32, force_float32_reductions=True, name=name)


def _upsample_2x(x):
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _avg_pool_2x2(x):
  return nn.avg_pool(x, (2, 2), strides=(2, 2))


def _block_conv(block, train):
  """conv(h, kernel_size, name): the block's SN 'same' convolution with bias."""
  def conv(h, kernel_size, name):
    return attention_lib.sn_conv(h, block.features, kernel_size, train=train,
                                 use_bias=True, dtype=block.dtype, name=name)
  return conv


class ConditionalBatchNorm(nn.Module):
  """BatchNorm whose gain and bias are SN linear maps of a conditioning vector
  (`bn_axis_name`: mapped axis to synchronise the statistics over, or None)."""
  bn_momentum: float = 0.9
  bn_axis_name: Any = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, cond, *, train):
    """x: f[B, H, W, C]; cond: f[B, D] or None (plain affine BN) -> f[B, H, W, C]."""
    bn = _batch_norm(self, affine=cond is None, train=train, momentum=self.bn_momentum,
                     axis_name=self.bn_axis_name, dtype=self.dtype, name='bn')
    x = bn(x)
    if cond is None:
      return x
    def linear(name):
      return attention_lib.sn_dense(cond, x.shape[-1], train=train, use_bias=False,
                                    dtype=self.dtype, name=name)

    gain, bias = (linear(name).astype(jnp.float32)[:, None, None, :] for name in ('gain', 'bias'))
    # In float32: the gradients of gain and bias sum over every position of the map.
    return (x.astype(jnp.float32) * (1 + gain) + bias).astype(x.dtype)


class GBlock(nn.Module):
  """BigGAN G block: f[B, H, W, Cin] -> f[B, 2H, 2W, features] (module docstring)."""
  features: int
  bn_momentum: float = 0.9
  bn_axis_name: Any = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, cond, *, train):
    """x: f[B, H, W, Cin]; cond: f[B, D] or None -> f[B, 2H, 2W, features]."""
    def norm(h, name):
      return ConditionalBatchNorm(
          bn_momentum=self.bn_momentum, bn_axis_name=self.bn_axis_name, dtype=self.dtype,
          name=name)(h, cond, train=train)

    conv = _block_conv(self, train)
    h = _upsample_2x(nn.relu(norm(x, 'bn1')))
    h = conv(h, 3, 'conv1')
    h = conv(nn.relu(norm(h, 'bn2')), 3, 'conv2')
    return h + conv(_upsample_2x(x), 1, 'conv0')


class DBlock(nn.Module):
  """BigGAN D block; `downsample`: 2x2 average pooling; `first`: StudioGAN's optimized
  first block (no ReLU before its first conv; its shortcut pools, then convolves)."""
  features: int
  downsample: bool = True
  first: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train):
    """x: f[B, H, W, Cin] -> f[B, H', W', features] (H' = H / 2 when downsampling)."""
    conv = _block_conv(self, train)
    pool = _avg_pool_2x2 if self.downsample else (lambda h: h)
    if not self.first:
      # StudioGAN's DiscBlock applies this ReLU in place (nn.ReLU(inplace=True)) to the
      # block input itself, so its shortcut, 1x1 conv or identity, sees relu(x) too.
      x = nn.relu(x)
    h = conv(x, 3, 'conv1')
    h = pool(conv(nn.relu(h), 3, 'conv2'))
    if self.first:
      return h + conv(pool(x), 1, 'conv0')
    if self.downsample or x.shape[-1] != self.features:
      return h + pool(conv(x, 1, 'conv0'))
    return h + x


class Generator(nn.Module):
  """BigGAN / SAGAN generator: (z, labels) -> image (module docstring).

  Attributes:
    resolution: output side in px (`resolutions()`).
    channels: output channels.
    ngf: base width (StudioGAN's g_conv_dim).
    num_classes: classes (0 = unconditional: labels are ignored).
    shared_dim: dim of the shared class embedding feeding every conditional BN
      (BigGAN); 0 = the one-hot label instead (StudioGAN's resnet / SAGAN).
    hierarchical_z: split z into one chunk for the linear layer and one per block.
    attention_resolution: side of the G block output followed by self-attention
      (0 = none).
    bn_momentum: BatchNorm running-average decay.
    bn_axis_name: mapped axis to synchronise BatchNorm statistics over, or None.
    dtype: compute dtype; params and the output are float32.
    remat: recompute each G block and the attention block in the backward pass.
  """
  resolution: int = 32
  channels: int = 3
  ngf: int = 96
  num_classes: int = 0
  shared_dim: int = 128
  hierarchical_z: bool = True
  attention_resolution: int = 16
  bn_momentum: float = 0.9
  bn_axis_name: Any = None
  dtype: Any = jnp.float32
  remat: bool = False

  def _block(self, h, cond, k, features, train):
    return GBlock(features, bn_momentum=self.bn_momentum, bn_axis_name=self.bn_axis_name,
                  dtype=self.dtype, name=f'block{k}')(h, cond, train=train)

  def _attention(self, h, train):
    return attention_lib.SelfAttention(self.dtype, name='attention')(h, train=train)

  def _block_conditions(self, z, labels):
    """(input of the linear layer, [cond f[B, D] or None for every block])."""
    num_blocks = len(G_CHANNELS[self.resolution]) - 1
    z_chunks = [None] * num_blocks
    if self.hierarchical_z:   # `build` checks that z_dim is a multiple of num_blocks + 1
      z, *z_chunks = jnp.split(z, num_blocks + 1, axis=-1)
    class_cond = None
    if self.num_classes:
      labels = conditional.check_labels(labels, batch=z.shape[0], num_classes=self.num_classes,
                                        who='generator')
      if self.shared_dim:
        class_cond = nn.Embed(self.num_classes, self.shared_dim,
                              embedding_init=attention_lib.orthogonal_init,
                              dtype=self.dtype, param_dtype=jnp.float32, name='shared')(labels)
      else:
        class_cond = jax.nn.one_hot(labels, self.num_classes, dtype=self.dtype)
    conds = []
    for chunk in z_chunks:
      parts = [p.astype(self.dtype) for p in (class_cond, chunk) if p is not None]
      conds.append(jnp.concatenate(parts, axis=-1) if parts else None)
    return z, conds

  @nn.compact
  def __call__(self, z, labels=None, *, train):
    """Generates images.

    Args:
      z: f32[B, z_dim] (z_dim divisible by num_blocks + 1 with `hierarchical_z`).
      labels: int32[B] in [0, num_classes), required when num_classes > 0.
      train: batch statistics and spectral-norm updates (`mutable=['batch_stats']`).

    Returns:
      f32[B, resolution, resolution, channels] in [-1, 1].
    """
    check_resolution(self.resolution)
    widths = [self.ngf * m for m in G_CHANNELS[self.resolution]]
    z, conds = self._block_conditions(z, labels)
    h = attention_lib.sn_dense(z.astype(self.dtype), BOTTOM_WIDTH ** 2 * widths[0],
                               train=train, use_bias=True, dtype=self.dtype, name='linear0')
    h = h.reshape(h.shape[0], BOTTOM_WIDTH, BOTTOM_WIDTH, widths[0])
    for k, cond in enumerate(conds):
      h = compute.remat_call(self._block, h, cond, k, widths[k + 1], train, remat=self.remat)
      if h.shape[1] == self.attention_resolution:
        h = compute.remat_call(self._attention, h, train, remat=self.remat)
    h = _batch_norm(self, affine=True, train=train, momentum=self.bn_momentum,
                    axis_name=self.bn_axis_name, dtype=self.dtype, name='bn_out')(h)
    h = attention_lib.sn_conv(nn.relu(h), self.channels, 3, train=train, use_bias=True,
                              dtype=self.dtype, name='conv_out')
    # tanh in float32: bf16 has ~3 significant digits, too coarse near +-1.
    return jnp.tanh(h.astype(jnp.float32))


class Discriminator(nn.Module):
  """BigGAN / SAGAN discriminator: (image, labels) -> one logit per image.

  Sows `intermediates/features` (the pooled features f32[B, F]) and, for
  `conditioning='acgan'`, `intermediates/class_logits` f32[B, num_classes].

  Attributes:
    resolution: input side in px (`resolutions()`).
    ndf: base width (StudioGAN's d_conv_dim).
    num_classes: classes (0 = unconditional: labels are ignored).
    conditioning: 'projection' (adds <SN embed(y), h>) or 'acgan' (an SN linear
      class head, sown; the logit does not see the label).
    attention_resolution: side of the first D block output followed by
      self-attention (0 = none).
    dtype: compute dtype; params and outputs are float32.
    remat: recompute each D block and the attention block in the backward pass.
  """
  resolution: int = 32
  ndf: int = 96
  num_classes: int = 0
  conditioning: str = 'projection'
  attention_resolution: int = 16
  dtype: Any = jnp.float32
  remat: bool = False

  def _block(self, h, k, features, downsample, train):
    return DBlock(features, downsample=downsample, first=k == 0, dtype=self.dtype,
                  name=f'block{k}')(h, train=train)

  def _attention(self, h, train):
    return attention_lib.SelfAttention(self.dtype, name='attention')(h, train=train)

  @nn.compact
  def __call__(self, x, labels=None, *, train):
    """Scores images.

    Args:
      x: f32[B, resolution, resolution, C] in [-1, 1].
      labels: int32[B] in [0, num_classes), required for a conditional projection D.
      train: spectral-norm updates (needs `mutable=['batch_stats']`).

    Returns:
      f32[B] logits (no sigmoid).
    """
    check_resolution(self.resolution)
    if x.ndim != 4 or x.shape[1:3] != (self.resolution, self.resolution):
      raise ValueError(
          f'biggan / sagan discriminator expects f32[B, {self.resolution}, '
          f'{self.resolution}, C] images (model.resolution), got shape {x.shape}.')
    outs = [self.ndf * m for m in D_CHANNELS[self.resolution]]
    h, attended = x.astype(self.dtype), False
    for k, (features, down) in enumerate(zip(outs, _d_downsamples(self.resolution))):
      h = compute.remat_call(self._block, h, k, features, down, train, remat=self.remat)
      if h.shape[1] == self.attention_resolution and not attended:
        h = compute.remat_call(self._attention, h, train, remat=self.remat)
        attended = True
    features = jnp.sum(nn.relu(h).astype(jnp.float32), axis=(1, 2))
    self.sow('intermediates', 'features', features)
    def dense(n, use_bias, name):
      return attention_lib.sn_dense(features, n, train=train, use_bias=use_bias,
                                    dtype=jnp.float32, name=name)

    logits = dense(1, True, 'linear1')[:, 0]
    if not self.num_classes:
      return logits
    if self.conditioning == 'acgan':
      self.sow('intermediates', 'class_logits', dense(self.num_classes, False, 'linear2'))
      return logits
    labels = conditional.check_labels(labels, batch=x.shape[0], num_classes=self.num_classes,
                                      who='discriminator', d_cond=self.conditioning)
    embed = nn.Embed(self.num_classes, features.shape[-1],
                     embedding_init=attention_lib.orthogonal_init, name='embedding')
    class_embedding = layers.spectral_normalized(embed, labels, train=train)
    return logits + jnp.sum(class_embedding * features, axis=-1)


def attention_side(model_config):
  """model.attention_resolution, with -1 resolved to half the image side."""
  side = model_config.attention_resolution
  return model_config.resolution // 2 if side == -1 else side


def check_config(model_config):
  """Raises ConfigError for settings no biggan / sagan network can be built with."""
  check_resolution(model_config.resolution)
  resolution, side = model_config.resolution, attention_side(model_config)
  if side and (side not in g_sides(resolution) or side not in d_sides(resolution)):
    valid = sorted(set(g_sides(resolution)) & set(d_sides(resolution)))
    raise errors.ConfigError(
        f'model.attention_resolution must be 0 (none), -1 (half the image side) or one '
        f'of {valid} at {resolution} px, got {model_config.attention_resolution}.')
  conditional.validate(model_config)
  if model_config.d_cond not in D_CONDITIONING:
    raise errors.ConfigError(
        f'model.d_cond must be one of {list(D_CONDITIONING)}, got {model_config.d_cond!r}.')
  if model_config.bottom_width != BOTTOM_WIDTH:
    raise errors.ConfigError(
        f'biggan / sagan start from a {BOTTOM_WIDTH}x{BOTTOM_WIDTH} map; set '
        f'model.bottom_width to {BOTTOM_WIDTH}, got {model_config.bottom_width}.')
  # PacGAN and minibatch features are refused by `models.build`.
  if model_config.shared_dim < 0:
    raise errors.ConfigError(
        'model.shared_dim must be >= 0 (0: one-hot labels), got '
        f'{model_config.shared_dim}.')
  # These networks are fixed in what they normalise: a config must say so, not ask for
  # something else and silently get this.
  fixed = dict(d_norm='none', g_norm='batch', spectral_norm=True, g_spectral_norm=True)
  wrong = {k: model_config[k] for k, v in fixed.items() if model_config[k] != v}
  if wrong:
    raise errors.ConfigError(
        'biggan / sagan spectrally normalise every layer of G and D, use BatchNorm (class-'
        'conditional when labelled) in G and no normalisation layer in D; set ' +
        ', '.join(f'model.{k}={v!r}' for k, v in fixed.items()) + ' (got ' +
        ', '.join(f'{k}={v!r}' for k, v in wrong.items()) + ').')


def build_networks(model_config, *, shared_dim, hierarchical_z, bn_axis_name=None,
                   remat=False):
  """The (generator, discriminator) pair of `model_config` with the given G conditioning.

  Spectral normalisation is part of these architectures (`check_config` asks the config
  to say so: model.spectral_norm and model.g_spectral_norm True, d_norm 'none', g_norm
  'batch').
  """
  check_config(model_config)
  num_blocks = len(G_CHANNELS[model_config.resolution]) - 1
  if hierarchical_z and model_config.z_dim % (num_blocks + 1):
    raise errors.ConfigError(
        f'hierarchical z at {model_config.resolution} px splits z into {num_blocks + 1} '
        f'chunks: model.z_dim must be a multiple of {num_blocks + 1}, got '
        f'{model_config.z_dim} (or set model.hierarchical_z=False).')
  dtype = layers.compute_dtype(model_config.dtype)
  side = attention_side(model_config)
  generator = Generator(
      resolution=model_config.resolution, channels=model_config.channels,
      ngf=model_config.ngf, num_classes=model_config.num_classes, shared_dim=shared_dim,
      hierarchical_z=hierarchical_z, attention_resolution=side,
      bn_momentum=model_config.bn_momentum, bn_axis_name=bn_axis_name, dtype=dtype,
      remat=remat)
  discriminator = Discriminator(
      resolution=model_config.resolution, ndf=model_config.ndf,
      num_classes=model_config.num_classes, conditioning=model_config.d_cond,
      attention_resolution=side, dtype=dtype, remat=remat)
  return generator, discriminator


def build(model_config, *, bn_axis_name=None, remat=False):
  """Builds the BigGAN pair from `config.model`.

  Args:
    model_config: ConfigDict with resolution, channels, z_dim, ngf, ndf, num_classes,
      d_cond, shared_dim, hierarchical_z, attention_resolution, bottom_width,
      bn_momentum, dtype. StudioGAN's CIFAR-10 BigGAN: resolution 32, ngf = ndf = 96,
      z_dim 80, shared_dim 128, attention_resolution 16, num_classes 10; ImageNet
      128 px: z_dim 120, attention_resolution 64, num_classes 1000.
    bn_axis_name: mapped axis name for synchronised BatchNorm, or None.
    remat: rematerialise every G and D block and the attention blocks
      (`config.train.remat`).

  Returns:
    (generator, discriminator) flax modules.
  """
  return build_networks(model_config, shared_dim=model_config.shared_dim,
                        hierarchical_z=model_config.hierarchical_z, bn_axis_name=bn_axis_name,
                        remat=remat)


def data_shape(model_config):
  """(H, W, C) of the images the model makes and scores."""
  return (model_config.resolution, model_config.resolution, model_config.channels)
