"""The one pytree that holds a whole GAN training run.

`GANState` holds arrays only: parameters, BatchNorm / spectral-norm statistics,
optax optimiser states, the EMA of the generator, the historical averages used by
the historical-averaging penalty, and the step counter. Optimisers and Flax
modules are *not* in the state; they live in the closures built by `train.py`.
That keeps the state serialisable with orbax, movable with `jax.device_get` /
`jax.device_put`, and mappable with `jax.tree.*`.
"""

from typing import Any

import flax
import jax.numpy as jnp

PyTree = Any


@flax.struct.dataclass
class GANState:
  """Everything a GAN run needs to continue, as one immutable pytree.

  Attributes:
    step: i32[] number of completed train steps (G updates).
    g_params: generator parameters.
    d_params: discriminator parameters.
    g_batch_stats: generator BatchNorm running statistics ({} when none).
    d_batch_stats: discriminator BatchNorm statistics and spectral-norm vectors
      ({} when none).
    g_opt_state: optax state of the generator optimiser.
    d_opt_state: optax state of the discriminator optimiser.
    ema_g_params: exponential moving average of `g_params` (equal to
      `g_params` when EMA is off); used for sampling and evaluation.
    g_params_avg: running mean of past generator params for the historical
      averaging penalty ({} when that penalty is off).
    d_params_avg: same for the discriminator.
  """

  step: jnp.ndarray
  g_params: PyTree
  d_params: PyTree
  g_batch_stats: PyTree
  d_batch_stats: PyTree
  g_opt_state: PyTree
  d_opt_state: PyTree
  ema_g_params: PyTree
  g_params_avg: PyTree
  d_params_avg: PyTree

  def generator_variables(self, *, ema=True):
    """Flax variables of the generator for `generator.apply`.

    Args:
      ema: use the EMA parameters (True) or the raw ones.

    Returns:
      {'params': ..., 'batch_stats': ...} (no 'batch_stats' key when G has none).
    """
    variables = {'params': self.ema_g_params if ema else self.g_params}
    if self.g_batch_stats:
      variables['batch_stats'] = self.g_batch_stats
    return variables

  def discriminator_variables(self):
    """Flax variables of the discriminator for `discriminator.apply`."""
    variables = {'params': self.d_params}
    if self.d_batch_stats:
      variables['batch_stats'] = self.d_batch_stats
    return variables
