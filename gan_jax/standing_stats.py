"""Standing statistics: G's BatchNorm statistics re-estimated for the weights that sample.

A generator with BatchNorm samples in eval mode with running averages of its batch
statistics, and those were gathered by the *trained* G over the last few hundred
steps. The weights that sample are usually another set: the EMA of G's weights
(`train.ema_decay`), whose activations have other means and variances. BigGAN
(Brock et al. 2019, appendix; BigGAN-PyTorch's `accumulate_standing_stats`, and
PyTorch-StudioGAN's `-std_stat`) therefore recomputes them before sampling: G runs
in train mode on `num_batches` batches of fresh latents (and uniformly drawn
labels), and each BatchNorm's mean and variance become the averages of its batch
means and batch variances over those batches. BigGAN-PyTorch accumulates 16
batches of its training batch size; StudioGAN draws random batch sizes, which here
would recompile G for every size, so every batch has `batch_size` rows. Training and
evaluation pass the global training batch, the rows G normalised over in training
with the default `parallel.sync_batch_stats=True`; a run trained with per-device
statistics normalised over fewer rows, whose biased batch variances are on average
smaller by (n - 1) / n for n rows (under 7% from n = 16), as the references' single-
device sampling batches differ from their training batches too.

Only the BatchNorm entries ('mean', 'var') change. The spectral-norm state of G
(SAGAN, BigGAN: 'u' and 'sigma') is read as it is and returned unchanged: the
train-mode calls run their power iteration, and it is thrown away (BigGAN-PyTorch
keeps it), so G samples with the very weights the statistics were measured on.

The latents come from `standing_key(seed, step)`, so the evaluations during
training (`eval.standing_stats`) and `gan_jax.evaluate --seed=config.seed` of the
same checkpoint use the same statistics. Each call runs the whole batch where it is
called (every device of a mesh computes the same statistics).
"""

import jax
import jax.numpy as jnp
import ml_collections

from gan_jax import ema as ema_lib
from gan_jax import errors
from gan_jax import models
from gan_jax import state as state_lib
from gan_jax import step as step_lib

# BigGAN-PyTorch's default number of accumulated batches (`--num_standing_accumulations`).
DEFAULT_BATCHES = 16
# Folded into the seed's key, so the standing latents are not the latents scored.
_KEY_SALT = 0x5374


def _check_has_batch_norm(model_config, g_batch_stats, what='--standing_stats'):
  if not models.count_batch_norm_leaves(g_batch_stats):
    raise errors.ConfigError(
        f'This generator (model.name={model_config.name!r}, g_norm='
        f'{model_config.get("g_norm", "batch")!r}) has no BatchNorm statistics, so standing '
        f'statistics would change nothing; set {what} to 0.')


def check_config(config, num_batches, what='--standing_stats'):
  """Raises ConfigError unless `num_batches` standing-statistics batches (0 = off) suit
  the run's generator (`config`, the whole run config): >= 0, and G has BatchNorm when
  > 0. `what` names the setting in the message. Traces shapes only, so bad requests
  fail before a checkpoint loads."""
  if num_batches < 0:
    raise errors.ConfigError(f'{what} must be >= 0 (0 = off), got {num_batches}.')
  if num_batches:
    _check_has_batch_norm(config.model, state_lib.abstract_state(config).g_batch_stats, what)


def standing_key(seed, step):
  """The key of the standing-statistics latents for checkpoint `step` of a run sampled
  with `seed`: the same for the evaluations during training (seed = config.seed) and
  for `gan_jax.evaluate` / `gan_jax.sample --seed`, so those reproduce the former."""
  return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), _KEY_SALT), step)


def standing_latents(model_config, key, *, num_batches, batch_size):
  """Latents for `standing_statistics`: z ~ N(0, I) and uniform labels.

  Args:
    model_config: `config.model` of the run.
    key: a PRNG key.
    num_batches, batch_size: >= 1.

  Returns:
    (z f32[num_batches, batch_size, z_dim], labels int32[num_batches, batch_size]
    in [0, K) for a class-conditional G, else None).
  """
  z = jax.random.normal(key, (num_batches, batch_size, model_config.z_dim), jnp.float32)
  num_classes = models.generator_classes(model_config)
  if not num_classes:
    return z, None
  labels = jax.random.randint(jax.random.fold_in(key, 1), (num_batches, batch_size), 0,
                              num_classes, jnp.int32)
  return z, labels


def standing_statistics(model_config, g_params, g_batch_stats, z, labels=None):
  """G's statistics with every BatchNorm mean / var averaged over train-mode batches.

  Args:
    model_config: `config.model` of the run (any family; G must have BatchNorm).
    g_params, g_batch_stats: the generator's parameters (e.g. the EMA ones) and the
      statistics it samples with (BatchNorm, spectral norm;
      `ema.sampling_batch_stats` of the state's).
    z: f32[num_batches, batch_size, z_dim] latents, one batch per train-mode call.
    labels: int32[num_batches, batch_size] in [0, K) for a class-conditional G, else None.

  Returns:
    A pytree like `g_batch_stats`: each BatchNorm 'mean' / 'var' is the average,
    over the batches, of that layer's batch mean / (biased) batch variance when G
    runs on them in train mode; every other entry (spectral-norm state) is the input's.

  Raises:
    errors.ConfigError: G has no BatchNorm statistics (standing statistics would
      change nothing).
    ValueError: `g_batch_stats` is the state's whole entry, holding the EMA
      generator's own statistics beside G's (pick one with `ema.sampling_batch_stats`).
  """
  if ema_lib.EMA_STATS in g_batch_stats:
    raise ValueError('standing_statistics takes the statistics G samples with: pass '
                     'ema.sampling_batch_stats(g_batch_stats), not the state\'s whole entry.')
  _check_has_batch_norm(model_config, g_batch_stats)
  # With momentum 0 a train-mode call leaves exactly its batch's statistics behind.
  batch_stats_only = ml_collections.ConfigDict(model_config.to_dict())
  batch_stats_only.bn_momentum = 0.0
  generator, _ = models.build(batch_stats_only)

  def one_batch(inputs):
    z_batch, label_batch = inputs
    _, stats = step_lib.apply_model(generator, g_params, g_batch_stats, z_batch, label_batch,
                                    train=True)
    return stats

  per_batch = jax.lax.map(one_batch, (z, labels))
  means = jax.tree.map(lambda stacked: jnp.mean(stacked, axis=0), per_batch)
  return models.with_batch_norm_averages_of(g_batch_stats, means)


def make_standing_fn(model_config, *, num_batches=DEFAULT_BATCHES, batch_size):
  """Compiles `standing_statistics` on `standing_latents(key, ...)` once, for repeated use.

  Args:
    model_config: `config.model` of the run.
    num_batches: train-mode batches (>= 1; BigGAN-PyTorch: 16).
    batch_size: rows per batch (>= 1; e.g. `config.train.batch_size`).

  Returns:
    `fn(g_params, g_batch_stats, key) -> g_batch_stats` with standing BatchNorm
    statistics (see `standing_statistics`); ConfigError for a G without BatchNorm.

  Raises:
    errors.ConfigError: a count below 1.
  """
  if num_batches < 1 or batch_size < 1:
    raise errors.ConfigError(
        f'Standing statistics need at least one batch of at least one row; got '
        f'{num_batches} batches of {batch_size}.')

  # A G without BatchNorm raises (from standing_statistics) while this traces.
  @jax.jit
  def fn(g_params, g_batch_stats, key):
    z, labels = standing_latents(model_config, key, num_batches=num_batches,
                                 batch_size=batch_size)
    return standing_statistics(model_config, g_params, g_batch_stats, z, labels)

  return fn


def apply(model_config, g_params, g_batch_stats, key, *, num_batches=DEFAULT_BATCHES,
          batch_size):
  """`make_standing_fn(model_config, ...)(g_params, g_batch_stats, key)`: the one-call form.

  Returns:
    G's statistics with standing BatchNorm statistics (see `standing_statistics`).

  Raises:
    errors.ConfigError: a count below 1, or a G without BatchNorm.
  """
  return make_standing_fn(model_config, num_batches=num_batches,
                          batch_size=batch_size)(g_params, g_batch_stats, key)
