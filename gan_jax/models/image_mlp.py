"""MLP generator and weight-normalised MLP discriminator for small images: the
semi-supervised GAN of Salimans et al. 2016 on MNIST ("Improved Techniques for
Training GANs", its `train_mnist_feature_matching.py`).

G: z -> num_layers x (Dense(hidden) [+ BatchNorm] + softplus)
     -> weight-normalised Dense(H * W * C) -> tanh -> f32[B, H, W, C] in [-1, 1].
(The paper's MNIST G ends in a sigmoid for [0, 1] pixels; tanh is the same map
rescaled to the project's [-1, 1].)

D: x f32[B, H, W, C] -> flatten -> [+ N(0, d_input_noise^2)]
     -> for each width w of `model.d_widths`: weight-normalised Dense(w) + ReLU
        [+ N(0, d_hidden_noise^2)]
     -> weight-normalised Dense(1) (unconditional) or the K class logits of the
        semi-supervised head (`model.d_cond='semi_supervised'`).
The paper's MNIST D: widths 1000, 500, 250, 250, 250, noise 0.3 on the input and 0.5
on every hidden layer. D sows `intermediates/features`, its last hidden layer before
the noise (what feature matching compares).

Weight normalisation (Salimans & Kingma 2016, `nn.WeightNorm`): w = g * v / ||v||
per output unit, g initialised to 1, v ~ N(0, 0.05^2) as the paper's code (without
its data-dependent initialisation of g and b). `model.d_norm='none'` drops it.

Noise is drawn in training calls given a 'noise' rng (the step passes one when
either std is > 0); evaluation is noise-free.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from gan_jax import errors
from gan_jax.models import compute
from gan_jax.models import conditional
from gan_jax.models import layers
from gan_jax.models import mlp

# std of the weight-normalised layers' direction init (the paper's code).
_DIRECTION_STD = 0.05


def parse_widths(text):
  """'1000,500,250' -> (1000, 500, 250).

  Raises:
    ConfigError: an empty list or a width that is not a positive integer.
  """
  try:
    widths = tuple(int(part) for part in str(text).split(','))
  except ValueError:
    widths = ()
  if not widths or min(widths) < 1:
    raise errors.ConfigError(
        f"model.d_widths must be a comma list of positive layer widths such as "
        f"'1000,500,250,250,250', got {text!r}.")
  return widths


def dense(features, *, weight_norm, dtype, name):
  """A Dense layer f[..., F] -> f[..., features], weight-normalised when `weight_norm`.

  Returns:
    A module; its kernel ~ N(0, 0.05^2), bias 0, params float32, compute in `dtype`.
  """
  layer = compute.Dense(features, kernel_init=layers.normal_init(_DIRECTION_STD),
                        dtype=dtype, param_dtype=jnp.float32, name=name)
  if not weight_norm:
    return layer
  # Only the kernel is normalised (the bias is not a direction).
  return nn.WeightNorm(layer, variable_filter={'kernel'}, param_dtype=jnp.float32,
                       name=f'wn_{name}')


class Generator(mlp.Generator):
  """MLP generator: z -> images; `mlp.Generator` with softplus and an image output.

  Attributes:
    resolution: image side H = W in px.
    channels: image channels C.
    (hidden, num_layers, norm, bn_momentum, bn_axis_name, dtype, remat: as
    `mlp.Generator`; the defaults here are the paper's MNIST G.)
  """
  resolution: int = 8
  channels: int = 1
  hidden: int = 500
  num_layers: int = 2
  norm: str = 'batch'

  def _layer(self, h, k, train):
    return mlp.generator_layer(self, h, k, train=train, activation=nn.softplus)

  @nn.compact
  def __call__(self, z, labels=None, *, train):
    """Generates images.

    Args:
      z: f32[B, z_dim].
      labels: ignored (G is unconditional).
      train: BatchNorm mode.

    Returns:
      f32[B, resolution, resolution, channels] in [-1, 1].
    """
    del labels
    h = z.astype(self.dtype)
    for k in range(self.num_layers):
      h = compute.remat_call(self._layer, h, k, train, remat=self.remat)
    size = self.resolution * self.resolution * self.channels
    h = dense(size, weight_norm=True, dtype=self.dtype, name='out')(h)
    images = jnp.tanh(h.astype(jnp.float32))
    return images.reshape(z.shape[0], self.resolution, self.resolution, self.channels)


class Discriminator(nn.Module):
  """Weight-normalised MLP discriminator with Gaussian noise: images -> logits.

  Attributes:
    resolution: input side in px.
    widths: hidden layer widths, input to output.
    weight_norm: weight-normalise every Dense layer (the paper's D).
    num_classes: > 0 with d_cond 'semi_supervised': the K-class head.
    d_cond: the class head ('semi_supervised' only; see `_validate`).
    input_noise: std of the Gaussian noise added to the flattened input in training
      calls with a 'noise' rng (0 = none).
    hidden_noise: the same for every hidden layer's output (after the features are
      sown for the last one).
    dtype: compute dtype; params and logits are float32.
    remat: recompute each hidden layer in the backward pass.
  """
  resolution: int = 8
  widths: tuple = (1000, 500, 250, 250, 250)
  weight_norm: bool = True
  num_classes: int = 0
  d_cond: str = 'semi_supervised'
  input_noise: float = 0.0
  hidden_noise: float = 0.0
  dtype: Any = jnp.float32
  remat: bool = False

  def _noisy(self, h, std, train):
    return layers.gaussian_noise(self, h, std, train=train)

  def _layer(self, h, k):
    return nn.relu(dense(self.widths[k], weight_norm=self.weight_norm, dtype=self.dtype,
                         name=f'dense{k}')(h))

  @nn.compact
  def __call__(self, x, labels=None, *, train):
    """Scores images.

    Args:
      x: f32[B, resolution, resolution, C] in [-1, 1].
      labels: ignored (unconditional, or the semi-supervised head, which takes none).
      train: draw the Gaussian noise (given a 'noise' rng).

    Returns:
      f32[B] logits (no sigmoid); for the semi-supervised head logsumexp of the
      class logits, which are sown as `intermediates/class_logits`.
    """
    del labels
    if x.ndim != 4 or x.shape[1:3] != (self.resolution, self.resolution):
      raise ValueError(
          f'image_mlp discriminator expects f32[B, {self.resolution}, {self.resolution}, C] '
          f'images (model.resolution), got shape {x.shape}.')
    h = x.reshape(x.shape[0], -1).astype(self.dtype)
    h = self._noisy(h, self.input_noise, train)
    for k in range(len(self.widths)):
      h = compute.remat_call(self._layer, h, k, remat=self.remat)
      if k == len(self.widths) - 1:
        self.sow('intermediates', 'features', h.astype(jnp.float32))
      h = self._noisy(h, self.hidden_noise, train)
    if not self.num_classes:
      logits = dense(1, weight_norm=self.weight_norm, dtype=jnp.float32, name='logit')(h)
      return logits.reshape(x.shape[0]).astype(jnp.float32)
    return conditional.discriminator_output(
        self, h, None, None, num_classes=self.num_classes, d_cond=self.d_cond,
        spectral_norm=False, train=train, dtype=jnp.float32,
        head=dense(self.num_classes, weight_norm=self.weight_norm, dtype=jnp.float32,
                   name='classifier'))


def _validate(m):
  if m.resolution < 1 or m.channels < 1:
    raise errors.ConfigError(
        f'model.resolution and model.channels must be >= 1 for image_mlp, got '
        f'{m.resolution} and {m.channels}.')
  if m.g_norm not in ('batch', 'none'):
    raise errors.ConfigError(
        f"model.g_norm must be 'batch' or 'none' for image_mlp, got {m.g_norm!r}.")
  if m.d_norm not in ('weight', 'none'):
    raise errors.ConfigError(
        f"model.d_norm must be 'weight' (weight normalisation) or 'none' for image_mlp, "
        f"got {m.d_norm!r}.")
  # PacGAN, minibatch features and G's spectral norm are refused by `models.build`.
  if m.spectral_norm:
    raise errors.ConfigError('image_mlp has no spectral-norm option (its D is '
                             "weight-normalised, model.d_norm='weight'); set "
                             'model.spectral_norm to False.')
  conditional.validate(m, semi_supervised=True)
  if m.num_classes and m.d_cond != conditional.SEMI_SUPERVISED:
    raise errors.ConfigError(
        f"image_mlp is unconditional or the semi-supervised GAN: with model.num_classes="
        f"{m.num_classes} it needs model.d_cond='semi_supervised', got {m.d_cond!r}.")
  parse_widths(m.d_widths)


def data_shape(model_config):
  """(resolution, resolution, channels)."""
  return (model_config.resolution, model_config.resolution, model_config.channels)


def build(model_config, *, bn_axis_name=None, remat=False):
  """Builds the image-MLP pair from `config.model`.

  Args:
    model_config: ConfigDict with resolution, channels, hidden, num_layers (G),
      d_widths (D), g_norm ('batch' / 'none'), d_norm ('weight' / 'none'),
      bn_momentum, num_classes, d_cond, d_input_noise, d_hidden_noise, dtype.
    bn_axis_name: mapped axis name for synchronised BatchNorm, or None.
    remat: rematerialise every hidden layer of G and D (`config.train.remat`).

  Returns:
    (generator, discriminator) flax modules.

  Raises:
    ConfigError: naming the first bad field.
  """
  _validate(model_config)
  dtype = layers.compute_dtype(model_config.dtype)
  generator = Generator(
      resolution=model_config.resolution, channels=model_config.channels,
      hidden=model_config.hidden, num_layers=model_config.num_layers,
      norm=model_config.g_norm, bn_momentum=model_config.bn_momentum,
      bn_axis_name=bn_axis_name, dtype=dtype, remat=remat)
  discriminator = Discriminator(
      resolution=model_config.resolution, widths=parse_widths(model_config.d_widths),
      weight_norm=model_config.d_norm == 'weight', num_classes=model_config.num_classes,
      d_cond=model_config.d_cond, input_noise=float(model_config.d_input_noise),
      hidden_noise=float(model_config.d_hidden_noise), dtype=dtype, remat=remat)
  return generator, discriminator
