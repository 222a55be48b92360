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

With `model.num_classes` > 0 every BatchNorm of G is a conditional BatchNorm (per-class
gain and bias) and D adds a projection or ACGAN head (`conditional.py`) on phi(x), the
flattened input of its last conv, as StudioGAN's DCGAN does. D sows
`intermediates/features`: its last hidden feature map averaged over space.

`model.d_input_noise` / `model.d_hidden_noise` add Gaussian noise of that standard
deviation to D's input and to the output of each hidden layer in training calls that
pass a 'noise' rng (the step does): the regulariser of the semi-supervised GAN's
discriminator (Salimans et al. 2016, MNIST: 0.3 and 0.5). Evaluation is noise-free.
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from gan_jax import errors
from gan_jax.models import compute
from gan_jax.models import conditional
from gan_jax.models import layers
from gan_jax.models import minibatch


def layout(resolution):
  """Splits a resolution into its start size and number of stride-2 layers.

  Args:
    resolution: image side R in px.

  Returns:
    (start, num_up): R = start * 2**num_up, start >= 4 as small as halving allows.

  Raises:
    ConfigError: if R cannot be halved at least once to a size >= 4.
  """
  start, num_up = resolution, 0
  while start % 2 == 0 and start // 2 >= 4:
    start //= 2
    num_up += 1
  if num_up < 1:
    raise errors.ConfigError(
        f'dcgan cannot build resolution {resolution}: it must be an even size >= 8 '
        'such as 28, 32, 64 or 128 (R = S * 2^n, S >= 4). Set model.resolution.')
  return start, num_up


class Generator(nn.Module):
  """DCGAN generator: z (and labels) -> image.

  Attributes:
    resolution: output side in px (see `layout`).
    channels: output channels (1 or 3).
    ngf: channels of the last hidden layer; earlier layers have ngf * 2^k.
    norm: 'batch' (BatchNorm + ReLU after every hidden layer) or 'none'.
    extra_layers: stride-1 3x3 conv layers (ngf channels) added at the last
      hidden resolution, before the output layer.
    num_classes: > 0: every BatchNorm is a conditional BatchNorm (needs labels).
    bn_momentum: BatchNorm running-average decay (0.9 = PyTorch momentum 0.1).
    bn_axis_name: mapped axis to synchronise BatchNorm statistics over, or None.
    dtype: compute dtype; params are float32 and the output is float32.
    remat: recompute each layer (conv, norm, ReLU) in the backward pass instead of
      storing its activations (`compute.remat_call`).
    stride2_forms: how the transposed convolutions are computed, 'custom' or 'xla'
      (`layers.conv_transpose_4x4_s2`); the same numbers either way.
  """
  resolution: int = 64
  channels: int = 3
  ngf: int = 64
  norm: str = 'batch'
  extra_layers: int = 0
  num_classes: int = 0
  bn_momentum: float = 0.9
  bn_axis_name: Any = None
  dtype: Any = jnp.float32
  remat: bool = False
  stride2_forms: str = 'custom'

  def _norm_relu(self, h, labels, k, train):
    if self.num_classes:
      h = conditional.ConditionalBatchNorm(
          self.num_classes, momentum=self.bn_momentum, axis_name=self.bn_axis_name,
          dtype=self.dtype, name=f'bn{k}')(h, labels, train=train)
    elif self.norm == 'batch':
      h = layers.batch_norm(self, train=train, momentum=self.bn_momentum,
                            axis_name=self.bn_axis_name, dtype=self.dtype, name=f'bn{k}',
                            scale_init=layers.dcgan_scale_init)(h)
    return nn.relu(h)

  def _project(self, z, labels, start, width, train):
    """z -> the first start x start x width map (dense layer `project`, bn0, ReLU)."""
    h = nn.Dense(start * start * width, use_bias=False, kernel_init=layers.dcgan_kernel_init,
                 dtype=self.dtype, param_dtype=jnp.float32, name='project')(z)
    return self._norm_relu(h.reshape(z.shape[0], start, start, width), labels, 0, train)

  def _up(self, h, labels, k, features, last, train):
    """Transposed conv `up<k>` (2x), then norm and ReLU unless it is the `last` layer."""
    h = layers.ConvTranspose2x(features, dtype=self.dtype, forms=self.stride2_forms,
                               name=f'up{k}')(h)
    return h if last else self._norm_relu(h, labels, k, train)

  def _extra(self, h, labels, e, train):
    h = nn.Conv(h.shape[-1], (3, 3), padding=1, use_bias=False,
                kernel_init=layers.dcgan_kernel_init, dtype=self.dtype,
                param_dtype=jnp.float32, name=f'extra{e}')(h)
    return self._norm_relu(h, labels, f'_extra{e}', train)

  @nn.compact
  def __call__(self, z, labels=None, *, train):
    """Generates images.

    Args:
      z: f32[B, z_dim] latent codes.
      labels: int32[B] in [0, num_classes) when conditional; ignored otherwise.
      train: use batch statistics and update the running ones (needs
        `mutable=['batch_stats']` when norm == 'batch').

    Returns:
      f32[B, resolution, resolution, channels] in [-1, 1].
    """
    labels = conditional.check_labels(labels, batch=z.shape[0], num_classes=self.num_classes,
                                      who='generator')
    start, num_up = layout(self.resolution)
    call = functools.partial(compute.remat_call, remat=self.remat)
    h = call(self._project, z, labels, start, self.ngf * 2 ** (num_up - 1), train)
    for k in range(1, num_up):
      h = call(self._up, h, labels, k, self.ngf * 2 ** (num_up - 1 - k), False, train)
    for e in range(self.extra_layers):
      h = call(self._extra, h, labels, e, train)
    h = call(self._up, h, labels, num_up, self.channels, True, train)
    # tanh in float32: bf16 has ~3 significant digits, too coarse near +-1.
    return jnp.tanh(h.astype(jnp.float32))


class Discriminator(nn.Module):
  """DCGAN discriminator: image (and labels) -> one logit per (packed) image.

  Sows `intermediates/features` f32[B // pack, C] (the last hidden feature map
  averaged over space) and, with an ACGAN or semi-supervised head,
  `intermediates/class_logits`.

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
    minibatch_kernels: > 0: append this many minibatch-discrimination features
      (`minibatch.py`, from the flattened last feature map) before the last conv.
    minibatch_kernel_dim: dimension of each minibatch-discrimination kernel.
    num_classes: > 0: class-conditional head `d_cond` (needs labels, but for
      'semi_supervised', which ignores them).
    d_cond: 'projection', 'acgan' or 'semi_supervised' (K-class head, no logit conv).
    bn_momentum: BatchNorm running-average decay.
    bn_axis_name: mapped axis to synchronise BatchNorm statistics (and the
      minibatch std) over, or None.
    dtype: compute dtype; params are float32 and the logits are float32.
    remat: recompute each layer (conv, norm, LeakyReLU) in the backward pass.
    input_noise: std of the Gaussian noise added to the input in training calls
      with a 'noise' rng (0 = none).
    hidden_noise: the same for the output of every hidden layer (after the
      features are sown, before the heads).
    stride2_forms: how the strided convolutions are computed, 'custom' or 'xla'
      (`layers.conv_4x4_s2`); the same numbers either way.
  """
  resolution: int = 64
  ndf: int = 64
  norm: str = 'batch'
  extra_layers: int = 0
  spectral_norm: bool = False
  pack: int = 1
  minibatch_std: bool = False
  minibatch_kernels: int = 0
  minibatch_kernel_dim: int = 5
  num_classes: int = 0
  d_cond: str = 'projection'
  bn_momentum: float = 0.9
  bn_axis_name: Any = None
  dtype: Any = jnp.float32
  remat: bool = False
  input_noise: float = 0.0
  hidden_noise: float = 0.0
  stride2_forms: str = 'custom'

  def _noisy(self, h, std, train):
    return layers.gaussian_noise(self, h, std, train=train)

  def _conv(self, module, h, train):
    return layers.maybe_spectral_normalized(module, h, spectral_norm=self.spectral_norm,
                                            train=train)

  def _norm_lrelu(self, h, k, train):
    if self.norm == 'batch':
      h = layers.batch_norm(self, train=train, momentum=self.bn_momentum,
                            axis_name=self.bn_axis_name, dtype=self.dtype, name=f'bn{k}',
                            scale_init=layers.dcgan_scale_init)(h)
    elif self.norm == 'layer':
      h = nn.LayerNorm(epsilon=1e-5, reduction_axes=(-3, -2, -1), feature_axes=-1,
                       dtype=self.dtype, param_dtype=jnp.float32,
                       force_float32_reductions=True, name=f'ln{k}')(h)
    return layers.leaky_relu(h)

  def _down(self, h, k, train):
    """Strided conv `conv<k>` (H / 2), then norm (not after the first) and LeakyReLU."""
    conv = layers.Conv2x(self.ndf * 2 ** k, dtype=self.dtype, forms=self.stride2_forms,
                         name=f'conv{k}')
    h = self._conv(conv, h, train)
    return self._norm_lrelu(h, k, train) if k > 0 else layers.leaky_relu(h)

  def _extra(self, h, e, train):
    h = self._conv(nn.Conv(self.ndf, (3, 3), padding=1, use_bias=False,
                           kernel_init=layers.dcgan_kernel_init, dtype=self.dtype,
                           param_dtype=jnp.float32, name=f'extra{e}'), h, train)
    return self._norm_lrelu(h, f'_extra{e}', train)

  @nn.compact
  def __call__(self, x, labels=None, *, train):
    """Scores images.

    Args:
      x: f32[B, resolution, resolution, C] in [-1, 1], B divisible by `pack`.
      labels: int32[B] in [0, num_classes) when conditional; ignored otherwise.
      train: use batch statistics / update running statistics and spectral-norm
        vectors (needs `mutable=['batch_stats']` when the model has that collection).

    Returns:
      f32[B // pack] logits (no sigmoid).
    """
    start, num_down = layout(self.resolution)
    if x.ndim != 4 or x.shape[1:3] != (self.resolution, self.resolution):
      raise ValueError(
          f'dcgan discriminator expects f32[B, {self.resolution}, {self.resolution}, C] '
          f'images (model.resolution), got shape {x.shape}.')
    labels = conditional.check_labels(labels, batch=x.shape[0] // self.pack,
                                      num_classes=self.num_classes, who='discriminator',
                                      d_cond=self.d_cond)

    call = functools.partial(compute.remat_call, remat=self.remat)
    h = layers.pack_inputs(x, self.pack).astype(self.dtype)
    h = self._noisy(h, self.input_noise, train)
    for k in range(num_down):
      if k:
        h = self._noisy(h, self.hidden_noise, train)
      h = call(self._down, h, k, train)
      if k == 0:
        for e in range(self.extra_layers):
          h = self._noisy(h, self.hidden_noise, train)
          h = call(self._extra, h, e, train)
    self.sow('intermediates', 'features', jnp.mean(h.astype(jnp.float32), axis=(1, 2)))
    h = self._noisy(h, self.hidden_noise, train)
    if self.minibatch_std:
      h = layers.minibatch_stddev(h, self.bn_axis_name)
    if self.minibatch_kernels:
      h = minibatch.append_to_map(h, minibatch.MinibatchDiscrimination(
          self.minibatch_kernels, self.minibatch_kernel_dim, dtype=self.dtype,
          name='minibatch')(h.reshape(h.shape[0], -1)))
    logits = None
    if conditional.has_logit_layer(self.num_classes, self.d_cond):
      logits = self._conv(nn.Conv(1, (start, start), padding='VALID', use_bias=False,
                                  kernel_init=layers.dcgan_kernel_init, dtype=self.dtype,
                                  param_dtype=jnp.float32,
                                  conv_general_dilated=compute.conv_f32_output, name='logit'),
                          h, train)
      logits = logits.reshape(h.shape[0]).astype(jnp.float32)
    # phi(x) of the class heads: the input of the SxS logit conv, i.e. of a linear layer.
    # The heads and the logit conv give float32 results (bf16 would round the logits).
    return conditional.discriminator_output(
        self, h.reshape(h.shape[0], -1), logits, labels, num_classes=self.num_classes,
        d_cond=self.d_cond, spectral_norm=self.spectral_norm, train=train, dtype=jnp.float32)


def _validate(model_config):
  m = model_config
  layout(m.resolution)
  if m.g_norm not in ('batch', 'none'):
    raise errors.ConfigError(f"model.g_norm must be 'batch' or 'none' for dcgan, got {m.g_norm!r}.")
  if m.d_norm not in ('batch', 'layer', 'none'):
    raise errors.ConfigError(
        f"model.d_norm must be 'batch', 'layer' or 'none' for dcgan, got {m.d_norm!r}.")
  if m.pack < 1:
    raise errors.ConfigError(f'model.pack must be >= 1, got {m.pack}.')
  if m.extra_layers < 0:
    raise errors.ConfigError(f'model.extra_layers must be >= 0, got {m.extra_layers}.')
  conditional.validate(m, semi_supervised=True)
  minibatch.validate(m)
  if conditional.generator_classes(m) and m.g_norm != 'batch':
    raise errors.ConfigError(
        "model.g_norm must be 'batch' for a class-conditional dcgan (its generator is "
        f'conditioned through conditional BatchNorm), got {m.g_norm!r}.')


def data_shape(model_config):
  """(resolution, resolution, channels): the shape of one image."""
  return (model_config.resolution, model_config.resolution, model_config.channels)


def build(model_config, *, bn_axis_name=None, remat=False):
  """Builds the DCGAN pair from `config.model`.

  Args:
    model_config: ConfigDict with resolution, channels, ngf, ndf, g_norm, d_norm,
      extra_layers, spectral_norm, num_classes, d_cond, bn_momentum, pack,
      minibatch_std, minibatch_discrimination, minibatch_kernel_dim, dtype and
      (optional, default 0) d_input_noise, d_hidden_noise, (optional, default
      'custom') stride2_forms (z_dim is implied by the z passed to the generator).
    bn_axis_name: mapped axis name for synchronised BatchNorm, or None.
    remat: rematerialise every layer of G and D (`config.train.remat`); the
      parameters are the same either way.

  Returns:
    (generator, discriminator) flax modules.

  Raises:
    ConfigError: naming the first bad field.
  """
  dtype = layers.compute_dtype(model_config.dtype)
  _validate(model_config)
  m = model_config
  stride2_forms = m.stride2_forms
  generator = Generator(
      resolution=m.resolution, channels=m.channels, ngf=m.ngf, norm=m.g_norm,
      extra_layers=m.extra_layers, num_classes=conditional.generator_classes(m),
      bn_momentum=m.bn_momentum, bn_axis_name=bn_axis_name, dtype=dtype, remat=remat,
      stride2_forms=stride2_forms)
  discriminator = Discriminator(
      resolution=m.resolution, ndf=m.ndf, norm=m.d_norm, extra_layers=m.extra_layers,
      spectral_norm=m.spectral_norm, pack=m.pack, minibatch_std=m.minibatch_std,
      minibatch_kernels=m.minibatch_discrimination, minibatch_kernel_dim=m.minibatch_kernel_dim,
      num_classes=m.num_classes, d_cond=m.d_cond, bn_momentum=m.bn_momentum,
      input_noise=float(m.d_input_noise),
      hidden_noise=float(m.d_hidden_noise),
      bn_axis_name=bn_axis_name, dtype=dtype, remat=remat,
      stride2_forms=stride2_forms)
  return generator, discriminator
