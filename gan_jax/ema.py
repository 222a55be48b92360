"""The generator's exponential moving averages: of its weights, and of its statistics.

Sampling and evaluation use the EMA of G's weights (`train.ema_decay`, from
`train.ema_start`; before it the average copies G). With `train.ema_batch_stats`
the EMA generator also keeps its own average of G's statistics (BatchNorm means
and variances, spectral-norm vectors), as the EMA of PyTorch-StudioGAN
(`src/utils/ema.py`) and BigGAN-PyTorch average G's buffers with its weights. It
lives inside `GANState.g_batch_stats` under `EMA_STATS`, so a run without it keeps
the state, and reads the checkpoints, it always had; `sampling_batch_stats` picks
the statistics that go with the weights a caller samples.
"""

import jax
import jax.numpy as jnp

# The name of the EMA generator's statistics inside G's statistics.
EMA_STATS = 'ema_of_statistics'


def update(average, value, decay):
  """decay * average + (1 - decay) * value, leaf by leaf.

  Args:
    average, value: pytrees of the same structure (floating leaves are averaged;
      any other leaf is taken from `value`).
    decay: f32[] (or float) in [0, 1); 0 copies `value`.

  Returns:
    A pytree like `value`.
  """
  return jax.tree.map(
      lambda a, v: decay * a + (1.0 - decay) * v if jnp.issubdtype(v.dtype, jnp.floating)
      else v, average, value)


def with_batch_stats_average(g_batch_stats):
  """G's initial statistics with their EMA added (`EMA_STATS`, equal to them)."""
  return {**g_batch_stats, EMA_STATS: g_batch_stats}


def sampling_batch_stats(g_batch_stats, *, ema=True):
  """The statistics G samples with.

  Args:
    g_batch_stats: `GANState.g_batch_stats` (a pytree of arrays; {} for none).
    ema: statistics for the EMA weights (True) or for the trained ones (False).

  Returns:
    With `ema`, the EMA generator's own statistics where the run keeps them
    (`EMA_STATS`), else G's; without `ema`, G's (that entry left out).
  """
  if EMA_STATS not in g_batch_stats:
    return g_batch_stats
  if ema:
    return g_batch_stats[EMA_STATS]
  return {name: value for name, value in g_batch_stats.items() if name != EMA_STATS}


def update_batch_stats(g_batch_stats, decay):
  """G's statistics after an update, with their EMA (if kept) moved toward them.

  Args:
    g_batch_stats: G's statistics after a G update (`EMA_STATS` holding the
      previous average, or absent).
    decay: f32[] in [0, 1), the weights' EMA decay of this step.

  Returns:
    `g_batch_stats` with EMA_STATS = update(EMA_STATS, the trained statistics,
    decay); unchanged without that entry.
  """
  if EMA_STATS not in g_batch_stats:
    return g_batch_stats
  trained = sampling_batch_stats(g_batch_stats, ema=False)
  return {**trained, EMA_STATS: update(g_batch_stats[EMA_STATS], trained, decay)}
