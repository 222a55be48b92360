"""The one pytree that holds a whole GAN training run, and how it is created.

`GANState` holds arrays only: parameters, BatchNorm / spectral-norm statistics,
optax optimiser states, the EMA of the generator, the historical averages used by
the historical-averaging penalty, and the step counter. Optimisers and Flax
modules are *not* in the state; the step (`gan_jax.step`) rebuilds them from the
config. That keeps the state serialisable with orbax, movable with
`jax.device_get` / `jax.device_put`, and mappable with `jax.tree.*`.
"""

from typing import Any

import flax
import jax
import jax.numpy as jnp

from gan_jax import ema
from gan_jax import models
from gan_jax import objectives
from gan_jax import optim

PyTree = Any


@flax.struct.dataclass
class GANState:
  """Everything a GAN run needs to continue, as one immutable pytree.

  Attributes:
    step: i32[] number of completed train steps (G updates).
    g_params: generator parameters.
    d_params: discriminator parameters.
    g_batch_stats: generator BatchNorm / spectral-norm statistics ({} when none);
      with `train.ema_batch_stats` also their EMA (`ema.EMA_STATS`).
    d_batch_stats: discriminator BatchNorm statistics and spectral-norm vectors
      ({} when none); with LeCam regularisation also its running averages of D's
      outputs (`objectives.LECAM_STATS`), with ADA its probability p and verdicts
      (`objectives.ADA_STATS`).
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


def create_state(config, key):
  """Initialises parameters, statistics and optimiser states.

  Args:
    config: the experiment ConfigDict.
    key: a typed PRNG key for parameter initialisation.

  Returns:
    A `GANState` at step 0 (compile it with `jax.jit` for speed: one compiled
    init is much faster than hundreds of eager initialiser ops).
  """
  generator, discriminator = models.build(config.model)
  g_key, d_key = jax.random.split(key)
  batch = max(2, config.model.pack)
  z = jnp.zeros((batch, config.model.z_dim), jnp.float32)
  x = jnp.zeros((batch,) + models.data_shape(config.model), jnp.float32)
  labels = (jnp.zeros((batch,), jnp.int32),) if config.model.num_classes else ()
  g_vars = generator.init({'params': g_key}, z, *labels, train=False)
  d_vars = discriminator.init({'params': d_key}, x, *labels, train=False)
  g_params, d_params = g_vars['params'], d_vars['params']
  g_tx, d_tx = optim.make_optimizers(config)
  hist = config.loss.hist_avg_weight > 0
  d_batch_stats = d_vars.get('batch_stats', {})
  g_batch_stats = g_vars.get('batch_stats', {})
  if config.train.ema_batch_stats:
    g_batch_stats = ema.with_batch_stats_average(g_batch_stats)
  if config.loss.lecam_weight:
    d_batch_stats = {**d_batch_stats, objectives.LECAM_STATS: objectives.initial_lecam_stats()}
  if config.augment.ada_target:
    d_batch_stats = {**d_batch_stats, objectives.ADA_STATS: objectives.initial_ada_stats()}
  return GANState(
      step=jnp.zeros((), jnp.int32),
      g_params=g_params,
      d_params=d_params,
      g_batch_stats=g_batch_stats,
      d_batch_stats=d_batch_stats,
      g_opt_state=g_tx.init(g_params),
      d_opt_state=d_tx.init(d_params),
      ema_g_params=g_params,
      g_params_avg=g_params if hist else {},
      d_params_avg=d_params if hist else {},
  )


def abstract_state(config, sharding=None):
  """The state's shapes and dtypes (placed with `sharding` if given), without allocating it.

  Returns:
    A `GANState` of `jax.ShapeDtypeStruct`s.
  """
  shapes = jax.eval_shape(lambda: create_state(config, jax.random.key(0)))
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                      shapes)
