"""DCGAN generator and discriminator (Radford et al. 2015), as the PyTorch DCGAN example.

At 64 px, ngf = ndf = 64, 3 channels and z_dim = 100 the parameter counts equal the
PyTorch example's (G 3,576,704; D 2,765,568), and so do the layer shapes:

  G: z -> 4x4 x ngf*8 -> 8x8 x ngf*4 -> 16x16 x ngf*2 -> 32x32 x ngf -> 64x64 x channels
  D: 64x64 x channels -> 32x32 x ndf -> 16x16 x ndf*2 -> 8x8 x ndf*4 -> 4x4 x ndf*8 -> 1

Other resolutions change the number of stride-2 layers. A resolution R is written as
R = S * 2^n with the smallest start size S >= 4 reachable by halving (R = 28: S = 7,
n = 2, the usual MNIST layout 7 -> 14 -> 28; R = 32: S = 4, n = 3; R = 128: n = 5).
G's first layer maps z to an S x S map (PyTorch: a transposed conv with kernel S,
stride 1, padding 0 on a 1x1 input, which is exactly a dense layer, so we use
`nn.Dense` with the same parameter count) and D's last layer is an S x S VALID conv to
one logit. Widths double away from the image: the layer at 2^k * S px has
ngf * 2^(n-1-k) (G) or ndf * 2^(n-1-k) (D) channels.

`extra_layers` = E adds E stride-1 3x3 convolutions (padding 1, BatchNorm, ReLU in G /
LeakyReLU in D) at the last hidden resolution of G (ngf channels, before the output
layer) and after D's first conv (ndf channels), as the `n_extra_layers` option of the
WGAN reference DCGAN (Arjovsky et al. 2017): depth without another stride-2 layer,
which small images (8x8 digits: one stride-2 layer each) otherwise cannot get.

Like the PyTorch example no layer has a bias (BatchNorm follows almost every one), and
weights are initialised N(0, 0.02), BatchNorm scales N(1, 0.02), shifts 0.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from gan_jax.models import layers


def layout(resolution):
  """Splits a resolution into its start size and number of stride-2 layers.

  Args:
    resolution: image side R in px.

  Returns:
    (start, num_up): R = start * 2**num_up, start >= 4 as small as halving allows.

  Raises:
    ValueError: if R cannot be halved at least once to a size >= 4.
  """
  start, num_up = resolution, 0
  while start % 2 == 0 and start // 2 >= 4:
    start //= 2
    num_up += 1
  if num_up < 1:
    raise ValueError(
        f'dcgan cannot build resolution {resolution}: it must be an even size >= 8 '
        'such as 28, 32, 64 or 128 (R = S * 2^n, S >= 4). Set model.resolution.')
  return start, num_up


def _batch_norm(module, *, train, momentum, axis_name, dtype, name):
  # During init there is no mapped axis to average over (init runs outside
  # shard_map/pmap), and the statistics are zeros anyway.
  return nn.BatchNorm(
      use_running_average=not train, momentum=momentum, epsilon=1e-5,
      axis_name=None if module.is_initializing() else axis_name,
      dtype=dtype, param_dtype=jnp.float32, scale_init=layers.dcgan_scale_init,
      name=name)


class Generator(nn.Module):
  """DCGAN generator: z -> image.

  Attributes:
    resolution: output side in px (see `layout`).
    channels: output channels (1 or 3).
    ngf: channels of the last hidden layer; earlier layers have ngf * 2^k.
    norm: 'batch' (BatchNorm + ReLU after every hidden layer) or 'none'.
    extra_layers: stride-1 3x3 conv layers (ngf channels) added at the last
      hidden resolution, before the output layer.
    bn_momentum: BatchNorm running-average decay (0.9 = PyTorch momentum 0.1).
    bn_axis_name: mapped axis to synchronise BatchNorm statistics over, or None.
    dtype: compute dtype; params are float32 and the output is float32.
  """
  resolution: int = 64
  channels: int = 3
  ngf: int = 64
  norm: str = 'batch'
  extra_layers: int = 0
  bn_momentum: float = 0.9
  bn_axis_name: Any = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z, *, train):
    """Generates images.

    Args:
      z: f32[B, z_dim] latent codes.
      train: use batch statistics and update the running ones (needs
        `mutable=['batch_stats']` when norm == 'batch').

    Returns:
      f32[B, resolution, resolution, channels] in [-1, 1].
    """
    if self.norm not in ('batch', 'none'):
      raise ValueError(f"model.g_norm must be 'batch' or 'none' for dcgan, got {self.norm!r}.")
    start, num_up = layout(self.resolution)

    def norm_relu(h, k):
      if self.norm == 'batch':
        h = _batch_norm(self, train=train, momentum=self.bn_momentum,
                        axis_name=self.bn_axis_name, dtype=self.dtype, name=f'bn{k}')(h)
      return nn.relu(h)

    width = self.ngf * 2 ** (num_up - 1)
    h = nn.Dense(start * start * width, use_bias=False, kernel_init=layers.dcgan_kernel_init,
                 dtype=self.dtype, param_dtype=jnp.float32, name='project')(z)
    h = norm_relu(h.reshape(z.shape[0], start, start, width), 0)
    for k in range(1, num_up):
      h = layers.ConvTranspose2x(self.ngf * 2 ** (num_up - 1 - k), dtype=self.dtype,
                                 name=f'up{k}')(h)
      h = norm_relu(h, k)
    for e in range(self.extra_layers):
      h = nn.Conv(h.shape[-1], (3, 3), padding=1, use_bias=False,
                  kernel_init=layers.dcgan_kernel_init, dtype=self.dtype,
                  param_dtype=jnp.float32, name=f'extra{e}')(h)
      h = norm_relu(h, f'_extra{e}')
    h = layers.ConvTranspose2x(self.channels, dtype=self.dtype, name=f'up{num_up}')(h)
    # tanh in float32: bf16 has ~3 significant digits, too coarse near +-1.
    return jnp.tanh(h.astype(jnp.float32))


class Discriminator(nn.Module):
  """DCGAN discriminator: image -> one logit per (packed) image.

  Attributes:
    resolution: input side in px (see `layout`).
    ndf: channels of the first conv; later layers have ndf * 2^k.
    norm: 'batch', 'layer' (over H, W, C per sample; for WGAN-GP) or 'none',
      applied after every conv but the first and the last.
    extra_layers: stride-1 3x3 conv layers (ndf channels) added after the first
      conv, at half the input resolution.
    spectral_norm: spectrally normalise every conv kernel (SNGAN); the power-iteration
      state lives in `batch_stats` and is updated when `train`.
    pack: PacGAN packing degree; `pack` consecutive images are concatenated along
      channels, so D sees B // pack inputs.
    minibatch_std: append the minibatch-stddev feature map before the last conv.
    bn_momentum: BatchNorm running-average decay.
    bn_axis_name: mapped axis to synchronise BatchNorm statistics over, or None.
    dtype: compute dtype; params are float32 and the logits are float32.
  """
  resolution: int = 64
  ndf: int = 64
  norm: str = 'batch'
  extra_layers: int = 0
  spectral_norm: bool = False
  pack: int = 1
  minibatch_std: bool = False
  bn_momentum: float = 0.9
  bn_axis_name: Any = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train):
    """Scores images.

    Args:
      x: f32[B, resolution, resolution, C] in [-1, 1], B divisible by `pack`.
      train: use batch statistics / update running statistics and spectral-norm
        vectors (needs `mutable=['batch_stats']` when the model has that collection).

    Returns:
      f32[B // pack] logits (no sigmoid).
    """
    if self.norm not in ('batch', 'layer', 'none'):
      raise ValueError(
          f"model.d_norm must be 'batch', 'layer' or 'none' for dcgan, got {self.norm!r}.")
    start, num_down = layout(self.resolution)
    if x.ndim != 4 or x.shape[1:3] != (self.resolution, self.resolution):
      raise ValueError(
          f'dcgan discriminator expects f32[B, {self.resolution}, {self.resolution}, C] '
          f'images (model.resolution), got shape {x.shape}.')

    def conv(module, h):
      if self.spectral_norm:
        return nn.SpectralNorm(module, name=f'sn_{module.name}')(h, update_stats=train)
      return module(h)

    def norm_lrelu(h, k):
      if self.norm == 'batch':
        h = _batch_norm(self, train=train, momentum=self.bn_momentum,
                        axis_name=self.bn_axis_name, dtype=self.dtype, name=f'bn{k}')(h)
      elif self.norm == 'layer':
        h = nn.LayerNorm(epsilon=1e-5, reduction_axes=(-3, -2, -1), feature_axes=-1,
                         dtype=self.dtype, param_dtype=jnp.float32, name=f'ln{k}')(h)
      return layers.leaky_relu(h)

    h = layers.pack_inputs(x, self.pack).astype(self.dtype)
    for k in range(num_down):
      h = conv(layers.Conv2x(self.ndf * 2 ** k, dtype=self.dtype, name=f'conv{k}'), h)
      h = norm_lrelu(h, k) if k > 0 else layers.leaky_relu(h)
      if k == 0:
        for e in range(self.extra_layers):
          h = conv(nn.Conv(self.ndf, (3, 3), padding=1, use_bias=False,
                           kernel_init=layers.dcgan_kernel_init, dtype=self.dtype,
                           param_dtype=jnp.float32, name=f'extra{e}'), h)
          h = norm_lrelu(h, f'_extra{e}')
    if self.minibatch_std:
      h = layers.minibatch_stddev(h)
    h = conv(nn.Conv(1, (start, start), padding='VALID', use_bias=False,
                     kernel_init=layers.dcgan_kernel_init, dtype=self.dtype,
                     param_dtype=jnp.float32, name='logit'), h)
    return h.reshape(h.shape[0]).astype(jnp.float32)


def build(model_config, *, bn_axis_name=None):
  """Builds the DCGAN pair from `config.model`.

  Args:
    model_config: ConfigDict with resolution, channels, ngf, ndf, g_norm, d_norm,
      extra_layers, spectral_norm, bn_momentum, pack, minibatch_std, dtype (z_dim is
      implied by the z passed to the generator).
    bn_axis_name: mapped axis name for synchronised BatchNorm, or None.

  Returns:
    (generator, discriminator) flax modules.
  """
  dtype = layers.compute_dtype(model_config.dtype)
  if model_config.pack < 1:
    raise ValueError(f'model.pack must be >= 1, got {model_config.pack}.')
  if model_config.extra_layers < 0:
    raise ValueError(f'model.extra_layers must be >= 0, got {model_config.extra_layers}.')
  layout(model_config.resolution)  # fail early with the resolution error
  generator = Generator(
      resolution=model_config.resolution, channels=model_config.channels,
      ngf=model_config.ngf, norm=model_config.g_norm,
      extra_layers=model_config.extra_layers, bn_momentum=model_config.bn_momentum,
      bn_axis_name=bn_axis_name, dtype=dtype)
  discriminator = Discriminator(
      resolution=model_config.resolution, ndf=model_config.ndf, norm=model_config.d_norm,
      extra_layers=model_config.extra_layers, spectral_norm=model_config.spectral_norm,
      pack=model_config.pack,
      minibatch_std=model_config.minibatch_std, bn_momentum=model_config.bn_momentum,
      bn_axis_name=bn_axis_name, dtype=dtype)
  return generator, discriminator

