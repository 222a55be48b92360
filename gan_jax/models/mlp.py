"""MLP generator and discriminator for 2-D toy mixtures (the PacGAN / Unrolled-GAN setup).

G: z -> num_layers x (Dense(hidden) [+ BatchNorm] + ReLU) -> Dense(channels). There is
no output squashing: the toy data spans [-4, 4] (grid) and a tanh would cap it at 1.

D: x f32[B, channels] -> PacGAN packing to f32[B // pack, pack * channels]
-> [minibatch-stddev feature] -> num_layers x (Dense(hidden) [+ norm] + LeakyReLU(0.2))
-> Dense(1). Spectral norm, when on, wraps every Dense of D.

Initialisation is flax's default (LeCun normal weights, zero biases); unlike DCGAN the
toy-GAN papers use their framework's default init. D sows `intermediates/features`, its
last hidden layer. There is no class-conditional variant (`model.num_classes` must be 0).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from gan_jax import errors
from gan_jax.models import compute
from gan_jax.models import layers


def generator_layer(generator, h, k, *, train, activation):
  """One hidden layer of an MLP generator, made inside `generator`'s compact call.

  Args:
    generator: the calling module, with fields hidden, norm, bn_momentum,
      bn_axis_name and dtype.
    h: f[B, F] input.
    k: the layer's index (names `dense<k>`, `bn<k>`).
    train: BatchNorm mode.
    activation: the nonlinearity (ReLU here, softplus in image_mlp).

  Returns:
    f[B, hidden]: activation(Dense(h) [then BatchNorm when norm == 'batch']).
  """
  h = compute.Dense(generator.hidden, dtype=generator.dtype, param_dtype=jnp.float32,
                    name=f'dense{k}')(h)
  if generator.norm == 'batch':
    h = layers.batch_norm(generator, train=train, momentum=generator.bn_momentum,
                          axis_name=generator.bn_axis_name, dtype=generator.dtype,
                          name=f'bn{k}')(h)
  return activation(h)


class Generator(nn.Module):
  """MLP generator: z -> point.

  Attributes:
    channels: data dimension (2 for the toy mixtures).
    hidden: hidden width.
    num_layers: hidden layers.
    norm: 'batch' (BatchNorm before each ReLU) or 'none'.
    bn_momentum: BatchNorm running-average decay.
    bn_axis_name: mapped axis for synchronised BatchNorm, or None.
    dtype: compute dtype; params and output are float32.
    remat: recompute each hidden layer in the backward pass (`compute.remat_call`).
  """
  channels: int = 2
  hidden: int = 512
  num_layers: int = 3
  norm: str = 'none'
  bn_momentum: float = 0.9
  bn_axis_name: Any = None
  dtype: Any = jnp.float32
  remat: bool = False

  def _layer(self, h, k, train):
    return generator_layer(self, h, k, train=train, activation=nn.relu)

  @nn.compact
  def __call__(self, z, labels=None, *, train):
    """Generates points.

    Args:
      z: f32[B, z_dim].
      labels: ignored (unconditional).
      train: BatchNorm mode (irrelevant when norm == 'none').

    Returns:
      f32[B, channels], unbounded.
    """
    del labels
    h = z.astype(self.dtype)
    for k in range(self.num_layers):
      h = compute.remat_call(self._layer, h, k, train, remat=self.remat)
    return compute.OutputDense(self.channels, dtype=self.dtype, param_dtype=jnp.float32,
                               name='out')(h)


class Discriminator(nn.Module):
  """MLP discriminator: points -> one logit per (packed) input.

  Attributes:
    hidden: hidden width.
    num_layers: hidden layers.
    norm: 'batch', 'layer' or 'none' after each hidden Dense.
    spectral_norm: spectrally normalise every Dense kernel (state in `batch_stats`).
    pack: PacGAN packing degree.
    minibatch_std: append the minibatch-stddev feature to the (packed) input.
    bn_momentum: BatchNorm running-average decay.
    bn_axis_name: mapped axis for synchronised BatchNorm (and minibatch std), or None.
    dtype: compute dtype; params and logits are float32.
    remat: recompute each hidden layer in the backward pass.
  """
  hidden: int = 512
  num_layers: int = 3
  norm: str = 'none'
  spectral_norm: bool = False
  pack: int = 1
  minibatch_std: bool = False
  bn_momentum: float = 0.9
  bn_axis_name: Any = None
  dtype: Any = jnp.float32
  remat: bool = False

  def _dense(self, features, name, h, train, *, logit=False):
    if logit:   # float32 logits from bf16 operands
      module = nn.Dense(features, dtype=self.dtype, param_dtype=jnp.float32,
                        dot_general=compute.dot_f32_output, name=name)
    else:
      module = compute.Dense(features, dtype=self.dtype, param_dtype=jnp.float32, name=name)
    return layers.maybe_spectral_normalized(module, h, spectral_norm=self.spectral_norm,
                                            train=train)

  def _layer(self, h, k, train):
    h = self._dense(self.hidden, f'dense{k}', h, train)
    if self.norm == 'batch':
      h = layers.batch_norm(self, train=train, momentum=self.bn_momentum,
                            axis_name=self.bn_axis_name, dtype=self.dtype, name=f'bn{k}')(h)
    elif self.norm == 'layer':
      h = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, param_dtype=jnp.float32,
                       force_float32_reductions=True, name=f'ln{k}')(h)
    return layers.leaky_relu(h)

  @nn.compact
  def __call__(self, x, labels=None, *, train):
    """Scores points.

    Args:
      x: f32[B, d], B divisible by `pack`.
      labels: ignored (unconditional).
      train: BatchNorm / spectral-norm update mode.

    Returns:
      f32[B // pack] logits (no sigmoid).
    """
    del labels
    if x.ndim != 2:
      raise ValueError(f'mlp discriminator expects f32[B, d] points, got shape {x.shape}.')

    h = layers.pack_inputs(x, self.pack)
    if self.minibatch_std:
      h = layers.minibatch_stddev(h, self.bn_axis_name)
    h = h.astype(self.dtype)
    for k in range(self.num_layers):
      h = compute.remat_call(self._layer, h, k, train, remat=self.remat)
    self.sow('intermediates', 'features', h.astype(jnp.float32))
    h = self._dense(1, 'logit', h, train, logit=True)
    return h.reshape(h.shape[0]).astype(jnp.float32)


def _validate(m):
  if m.g_norm not in ('batch', 'none'):
    raise errors.ConfigError(f"model.g_norm must be 'batch' or 'none' for mlp, got {m.g_norm!r}.")
  if m.d_norm not in ('batch', 'layer', 'none'):
    raise errors.ConfigError(
        f"model.d_norm must be 'batch', 'layer' or 'none' for mlp, got {m.d_norm!r}.")
  if m.pack < 1:
    raise errors.ConfigError(f'model.pack must be >= 1, got {m.pack}.')
  if m.num_classes != 0:
    raise errors.ConfigError(
        f'model.num_classes must be 0 for mlp (it has no class-conditional variant), '
        f'got {m.num_classes!r}.')


def data_shape(model_config):
  """(channels,): one point of the toy data."""
  return (model_config.channels,)


def build(model_config, *, bn_axis_name=None, remat=False):
  """Builds the MLP pair from `config.model`.

  Args:
    model_config: ConfigDict with channels, hidden, num_layers, g_norm, d_norm,
      spectral_norm, bn_momentum, pack, minibatch_std, dtype (num_classes must be 0).
    bn_axis_name: mapped axis name for synchronised BatchNorm, or None.
    remat: rematerialise every hidden layer of G and D (`config.train.remat`).

  Returns:
    (generator, discriminator) flax modules.

  Raises:
    ConfigError: naming the first bad field.
  """
  dtype = layers.compute_dtype(model_config.dtype)
  _validate(model_config)
  generator = Generator(
      channels=model_config.channels, hidden=model_config.hidden,
      num_layers=model_config.num_layers, norm=model_config.g_norm,
      bn_momentum=model_config.bn_momentum, bn_axis_name=bn_axis_name, dtype=dtype,
      remat=remat)
  discriminator = Discriminator(
      hidden=model_config.hidden, num_layers=model_config.num_layers,
      norm=model_config.d_norm, spectral_norm=model_config.spectral_norm,
      pack=model_config.pack, minibatch_std=model_config.minibatch_std,
      bn_momentum=model_config.bn_momentum, bn_axis_name=bn_axis_name, dtype=dtype,
      remat=remat)
  return generator, discriminator
