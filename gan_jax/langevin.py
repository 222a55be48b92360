"""Discriminator-driven latent sampling (DDLS; Che et al. 2020), as StudioGAN's `-lgv`.

A trained D estimates how much more likely the data is than G's samples at x,
d(x) ~ log p_data(x) / p_G(x). Sampling z from p_0(z) exp(d(G(z))) (p_0 = N(0, I))
instead of p_0 corrects G's distribution by D's estimate; DDLS does it with Langevin
dynamics on the latent energy

  E(z) = |z|^2 / 2 - d(G(z)),
  z <- z - step_size / 2 * dE/dz + sqrt(step_size) * noise_std * n,   n ~ N(0, I),

starting from the usual latents, with G and D in eval mode (no statistics change; a D
that compares the rows of a batch, PacGAN's or one with minibatch features, is refused).
Every `decay_every` steps the step size and the noise scale are multiplied by `decay`
(StudioGAN's -lgv_decay / -lgv_decay_steps). Each row's noise comes from the seed's key
folded with a 64-bit hash of the row's starting latent, so a latent follows the same path
in any batch, on any process and at any position (what a sharded evaluation needs).
Differences from StudioGAN's `langevin_sampling`: d is D's estimate of the log density
ratio for the run's loss (`log_density_ratio`; StudioGAN takes D's raw output for
every loss), and `noise_std` is a standard deviation (StudioGAN's -lgv_std is the
variance of its noise).

Off unless `steps` > 0; the sample and evaluate CLIs and the digits check take it as
flags (`add_flags`); the evaluations during training never use it.
"""

import dataclasses

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import errors
from gan_jax import losses
from gan_jax import models
from gan_jax import step as step_lib

# Folded into the sampling seed's key for the Langevin noise, beside the latents'
# own blocks (`metrics.sampling.latents`) and the truncation redraws (2**31 - 1).
_LANGEVIN_STREAM = 2**31 - 2
# An LSGAN D's log-odds are taken inside [EPS, 1 - EPS] and continued by their tangent
# outside, where D's output (not a probability there) would otherwise give no gradient.
LSGAN_EPS = 0.01


@dataclasses.dataclass(frozen=True)
class Options:
  """DDLS settings: `steps` Langevin steps (0 = off) of `step_size`, noise scaled by
  `noise_std`; both multiplied by `decay` every `decay_every` steps (0 = never)."""
  steps: int = 0
  step_size: float = 0.02
  noise_std: float = 1.0
  decay: float = 1.0
  decay_every: int = 0

  def check(self):
    """A ConfigError naming the first bad setting (as the flags name them)."""
    if self.steps < 0:
      raise errors.ConfigError(f'--langevin_steps must be >= 0 (0 = off), got {self.steps}.')
    if not (np.isfinite(self.step_size) and self.step_size > 0):
      raise errors.ConfigError(f'--langevin_step_size must be a finite number > 0, got '
                               f'{self.step_size}.')
    if not (np.isfinite(self.noise_std) and self.noise_std >= 0):
      raise errors.ConfigError(f'--langevin_noise_std must be a finite number >= 0, got '
                               f'{self.noise_std}.')
    if not (np.isfinite(self.decay) and 0 < self.decay <= 1):
      raise errors.ConfigError(f'--langevin_decay must be in (0, 1] (1 = none), got {self.decay}.')
    if self.decay_every < 0:
      raise errors.ConfigError(f'--langevin_decay_every must be >= 0 (0 = never), got '
                               f'{self.decay_every}.')
    if (self.decay != 1) != bool(self.decay_every):
      raise errors.ConfigError(
          f'--langevin_decay={self.decay:g} with --langevin_decay_every={self.decay_every} '
          'would change nothing: set both (e.g. 0.9 every 10 steps), or neither.')

  def describe(self):
    """One line for a report, e.g. 'DDLS: 100 Langevin steps of 0.05, noise std 1'."""
    decay = (f', x{self.decay:g} every {self.decay_every} steps'
             if self.decay_every and self.decay != 1 else '')
    return (f'DDLS: {self.steps} Langevin steps of {self.step_size:g}, noise std '
            f'{self.noise_std:g}{decay}')


def log_density_ratio(d_logits, *, loss_type):
  """D's estimate of log p_data(x) / p_G(x) from its outputs.

  Args:
    d_logits: f32[B] D's outputs (`models` contract: no sigmoid).
    loss_type: the run's `config.loss.type` (`losses.LOSS_TYPES`).

  Returns:
    f32[B]. minimax / non_saturating: the logit itself (the optimal D is
    sigmoid(log p_data / p_G)); least_squares (targets 0 and 1): the log-odds of the
    output (the optimal D is p_data / (p_data + p_G)) inside [LSGAN_EPS, 1 - LSGAN_EPS],
    continued linearly outside with the slope at the bound, so that the fakes D is
    surest of (outputs <= 0) still move up its gradient; wasserstein / hinge: the
    critic's output, which estimates no ratio (DDLS reads it as a negative energy, as
    StudioGAN does for every loss).
  """
  d = jnp.asarray(d_logits, jnp.float32)
  if loss_type == 'least_squares':
    inside = jnp.clip(d, LSGAN_EPS, 1 - LSGAN_EPS)
    # d - inside is 0 inside the bounds; outside, `inside` is constant and the tangent
    # term carries the slope 1 / (c (1 - c)) of the log-odds at the bound c.
    return (jnp.log(inside) - jnp.log1p(-inside) +
            (d - inside) / (inside * (1 - inside)))
  if loss_type not in losses.LOSS_TYPES:
    raise errors.ConfigError(f'loss.type must be one of {losses.LOSS_TYPES}, got {loss_type!r}.')
  return d


def row_keys(key, z):
  """One key per row of z f32[B, D]: `key` folded with two 32-bit hashes of the row's
  bits (rows with equal entries get equal keys; two of 10^6 different rows share one
  with a chance of about 3e-8)."""
  bits = jax.lax.bitcast_convert_type(jnp.asarray(z, jnp.float32), jnp.uint32)
  keys = jnp.broadcast_to(key, z.shape[:1])
  for part in range(2):
    # Odd multipliers, one per entry: a multiplicative hash that wraps mod 2**32.
    multipliers = jax.random.bits(jax.random.fold_in(jax.random.key(_LANGEVIN_STREAM), part),
                                  z.shape[1:], jnp.uint32) | 1
    hashes = jnp.sum(bits * multipliers, axis=-1, dtype=jnp.uint32)
    keys = jax.vmap(jax.random.fold_in)(keys, hashes)
  return keys


def langevin(energy, z, key, options):
  """Runs `options.steps` Langevin steps on `energy` from z.

  Args:
    energy: f(z f32[B, D]) -> f32[B], each row's energy depending on that row only.
    z: f32[B, D] start points.
    key: a JAX key; each row's noise comes from `row_keys(key, z)`.
    options: `Options`.

  Returns:
    f32[B, D] the latents after the steps (z itself for 0 steps).
  """
  z = jnp.asarray(z, jnp.float32)
  if options.steps == 0:
    return z
  keys = row_keys(key, z)
  grad = jax.grad(lambda v: jnp.sum(energy(v)))

  def one_step(t, carry):
    z, step_size, scale = carry
    noise = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, t), z.shape[1:]))(keys)
    z = z - 0.5 * step_size * grad(z) + jnp.sqrt(step_size) * scale * noise
    if options.decay_every:
      decays = (t + 1) % options.decay_every == 0
      step_size = jnp.where(decays, step_size * options.decay, step_size)
      scale = jnp.where(decays, scale * options.decay, scale)
    return z, step_size, scale

  start = (z, jnp.float32(options.step_size), jnp.float32(options.noise_std))
  return jax.lax.fori_loop(0, options.steps, one_step, start)[0]


def check_model(config):
  """A ConfigError when the run's D cannot score each sample on its own (PacGAN's D
  scores groups; minibatch features compare a row with the others of its batch, so
  a latent's path would depend on its batch), or its loss makes D's output no log
  density ratio DDLS knows (label smoothing)."""
  m = config.model
  batchwise = [name for name, on in (
      (f'model.pack={m.pack} (PacGAN)', m.pack != 1),
      ('model.minibatch_std', m.minibatch_std),
      (f'model.minibatch_discrimination={m.minibatch_discrimination}',
       m.minibatch_discrimination)) if on]
  if batchwise:
    raise errors.ConfigError(
        f'--langevin_steps needs a D that scores each sample on its own; this run\'s D '
        f'({", ".join(batchwise)}) looks across the rows of a batch, so each latent\'s path '
        'would depend on the others in its batch.')
  if config.loss.label_smoothing:
    raise errors.ConfigError(
        f'--langevin_steps reads D\'s logit as log p_data / p_G, which it is not with '
        f'loss.label_smoothing={config.loss.label_smoothing} (this run\'s).')


def make_refiner(config, state, g_params, g_batch_stats, options, *, seed):
  """The DDLS of one checkpoint, compiled.

  Args:
    config: the run's config; state: its restored `GANState` (D's variables are read).
    g_params, g_batch_stats: the generator's sampling variables (those the samples
      are drawn with: EMA or not, standing statistics or not).
    options: `Options` (checked here).
    seed: the noise's seed (the CLIs pass the latents' own).

  Returns:
    `refine(z f32[B, z_dim], labels int32[B] | None = None) -> np.float32[B, z_dim]`:
    the latents after DDLS; labels as G takes them (None for an unconditional G).
  """
  options.check()
  check_model(config)
  generator, discriminator = models.build(config.model)
  loss_type = config.loss.type
  key = jax.random.fold_in(jax.random.key(seed), _LANGEVIN_STREAM)

  # The variables are arguments, not constants of the compiled function (one
  # compilation serves any checkpoint of the run).
  @jax.jit
  def run(g_vars, d_vars, z, labels):
    def energy(v):
      x, _ = step_lib.apply_model(generator, *g_vars, v, labels, train=False)
      d, _ = step_lib.apply_model(discriminator, *d_vars, x, labels, train=False)
      return 0.5 * jnp.sum(jnp.square(v), axis=-1) - log_density_ratio(d, loss_type=loss_type)
    return langevin(energy, z, key, options)

  def refine(z, labels=None):
    moved = np.asarray(run((g_params, g_batch_stats), (state.d_params, state.d_batch_stats),
                           jnp.asarray(z, jnp.float32), labels))
    bad = int(np.sum(~np.all(np.isfinite(moved), axis=-1)))
    # With several processes each moves its own rows: one raising alone would leave
    # the others in the evaluator's next exchange; their samples are NaN there, and
    # its check, which all processes make together, stops them all.
    if bad and jax.process_count() == 1:
      raise errors.NonFiniteError(
          f'The latents diverged ({options.describe()}): {bad} of a batch of {len(moved)} '
          f'became NaN or infinite. Lower --langevin_step_size (default '
          f'{Options().step_size:g}) or --langevin_steps.')
    return moved

  return refine


def refined_generator(generate, refine):
  """`generate(z, labels=None)` on the latents `refine` moved: a sampler for code that
  takes a generator (the evaluator, `sample.generate_in_batches`), with the step and
  statistics of `generate`."""
  def generate_refined(z, labels=None):
    moved = refine(z, labels)
    return generate(moved) if labels is None else generate(moved, labels)
  generate_refined.step = generate.step
  generate_refined.standing_stats = generate.standing_stats
  return generate_refined


def add_flags():
  """Defines the --langevin_* flags (for a program's flag definitions)."""
  d = Options()
  flags.DEFINE_integer('langevin_steps', d.steps, 'Discriminator-driven latent sampling '
                       '(DDLS, Che et al. 2020; StudioGAN -lgv): Langevin steps on '
                       '|z|^2/2 - D\'s log density ratio before generating (0 = off).',
                       lower_bound=0)
  flags.DEFINE_float('langevin_step_size', d.step_size, 'DDLS step size (StudioGAN '
                     '-lgv_rate).')
  flags.DEFINE_float('langevin_noise_std', d.noise_std, 'DDLS noise standard deviation '
                     '(1: Langevin dynamics; StudioGAN\'s -lgv_std is its square).')
  flags.DEFINE_float('langevin_decay', d.decay, 'DDLS: multiply the step size and noise '
                     'scale by this every --langevin_decay_every steps.')
  flags.DEFINE_integer('langevin_decay_every', d.decay_every, 'DDLS: steps between decays '
                       '(0 = never).', lower_bound=0)


def options_from_flags(f):
  """The `Options` the --langevin_* flags of `f` (absl FLAGS) ask for, checked."""
  options = Options(steps=f.langevin_steps, step_size=f.langevin_step_size,
                    noise_std=f.langevin_noise_std, decay=f.langevin_decay,
                    decay_every=f.langevin_decay_every)
  options.check()
  given = [f'--{name}' for name in ('langevin_step_size', 'langevin_noise_std',
                                    'langevin_decay', 'langevin_decay_every')
           if f[name].present]
  if given and not options.steps:
    # A sampler setting without the sampler: the samples would be G's own.
    raise errors.ConfigError(
        f'{", ".join(given)} set(s) DDLS, which is off: add --langevin_steps=N (N > 0), '
        'or leave the other --langevin_* flags out.')
  return options
