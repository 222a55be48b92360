"""MLP generator and discriminator for 2-D toy mixtures (the PacGAN / Unrolled-GAN setup).

G: z -> num_layers x (Dense(hidden) [+ BatchNorm] + ReLU) -> Dense(channels). There is
no output squashing: the toy data spans [-4, 4] (grid) and a tanh would cap it at 1.

D: x f32[B, channels] -> PacGAN packing to f32[B // pack, pack * channels]
-> [minibatch-stddev feature] -> num_layers x (Dense(hidden) [+ norm] + LeakyReLU(0.2))
-> Dense(1). Spectral norm, when on, wraps every Dense of D.

Initialisation is flax's default (LeCun normal weights, zero biases); unlike DCGAN the
toy-GAN papers use their framework's default init.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from gan_jax.models import layers


def _batch_norm(module, *, train, momentum, axis_name, dtype, name):
  # No mapped axis exists during init (and the statistics are zeros then).
  return nn.BatchNorm(
      use_running_average=not train, momentum=momentum, epsilon=1e-5,
      axis_name=None if module.is_initializing() else axis_name,
      dtype=dtype, param_dtype=jnp.float32, name=name)


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
  """
  channels: int = 2
  hidden: int = 512
  num_layers: int = 3
  norm: str = 'none'
  bn_momentum: float = 0.9
  bn_axis_name: Any = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z, *, train):
    """Generates points.

    Args:
      z: f32[B, z_dim].
      train: BatchNorm mode (irrelevant when norm == 'none').

    Returns:
      f32[B, channels], unbounded.
    """
    if self.norm not in ('batch', 'none'):
      raise ValueError(f"model.g_norm must be 'batch' or 'none' for mlp, got {self.norm!r}.")
    h = z.astype(self.dtype)
    for k in range(self.num_layers):
      h = nn.Dense(self.hidden, dtype=self.dtype, param_dtype=jnp.float32, name=f'dense{k}')(h)
      if self.norm == 'batch':
        h = _batch_norm(self, train=train, momentum=self.bn_momentum,
                        axis_name=self.bn_axis_name, dtype=self.dtype, name=f'bn{k}')(h)
      h = nn.relu(h)
    h = nn.Dense(self.channels, dtype=self.dtype, param_dtype=jnp.float32, name='out')(h)
    return h.astype(jnp.float32)


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
    bn_axis_name: mapped axis for synchronised BatchNorm, or None.
    dtype: compute dtype; params and logits are float32.
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

  @nn.compact
  def __call__(self, x, *, train):
    """Scores points.

    Args:
      x: f32[B, d], B divisible by `pack`.
      train: BatchNorm / spectral-norm update mode.

    Returns:
      f32[B // pack] logits (no sigmoid).
    """
    if self.norm not in ('batch', 'layer', 'none'):
      raise ValueError(
          f"model.d_norm must be 'batch', 'layer' or 'none' for mlp, got {self.norm!r}.")
    if x.ndim != 2:
      raise ValueError(f'mlp discriminator expects f32[B, d] points, got shape {x.shape}.')

    def dense(features, name, h):
      module = nn.Dense(features, dtype=self.dtype, param_dtype=jnp.float32, name=name)
      if self.spectral_norm:
        return nn.SpectralNorm(module, name=f'sn_{module.name}')(h, update_stats=train)
      return module(h)

    h = layers.pack_inputs(x, self.pack)
    if self.minibatch_std:
      h = layers.minibatch_stddev(h)
    h = h.astype(self.dtype)
    for k in range(self.num_layers):
      h = dense(self.hidden, f'dense{k}', h)
      if self.norm == 'batch':
        h = _batch_norm(self, train=train, momentum=self.bn_momentum,
                        axis_name=self.bn_axis_name, dtype=self.dtype, name=f'bn{k}')(h)
      elif self.norm == 'layer':
        h = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, param_dtype=jnp.float32,
                         name=f'ln{k}')(h)
      h = layers.leaky_relu(h)
    h = dense(1, 'logit', h)
    return h.reshape(h.shape[0]).astype(jnp.float32)


def build(model_config, *, bn_axis_name=None):
  """Builds the MLP pair from `config.model`.

  Args:
    model_config: ConfigDict with channels, hidden, num_layers, g_norm, d_norm,
      spectral_norm, bn_momentum, pack, minibatch_std, dtype.
    bn_axis_name: mapped axis name for synchronised BatchNorm, or None.

  Returns:
    (generator, discriminator) flax modules.
  """
  dtype = layers.compute_dtype(model_config.dtype)
  if model_config.pack < 1:
    raise ValueError(f'model.pack must be >= 1, got {model_config.pack}.')
  generator = Generator(
      channels=model_config.channels, hidden=model_config.hidden,
      num_layers=model_config.num_layers, norm=model_config.g_norm,
      bn_momentum=model_config.bn_momentum, bn_axis_name=bn_axis_name, dtype=dtype)
  discriminator = Discriminator(
      hidden=model_config.hidden, num_layers=model_config.num_layers,
      norm=model_config.d_norm, spectral_norm=model_config.spectral_norm,
      pack=model_config.pack, minibatch_std=model_config.minibatch_std,
      bn_momentum=model_config.bn_momentum, bn_axis_name=bn_axis_name, dtype=dtype)
  return generator, discriminator
