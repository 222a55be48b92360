"""25-Gaussian grid (2-D, MLP GAN): the PacGAN mode-collapse benchmark.

  python -m gan_jax.main --config=toy_grid
  python -m gan_jax.bench.toy --configs=toy_grid,toy_grid:baseline     (docs/benchmarks.md)

Modes at {-4,-2,0,2,4}^2, std 0.05. Variants: `:baseline` (the plain
non-saturating GAN, trained longer: 16,000 steps), `:smoke` (seconds),
combinable as `:baseline,smoke`.

What the best config needs (3 std = 0.15 around each of 25 modes, spacing 2):
  * R1 (gamma 0.1) on real points keeps D smooth, so no mode is dropped;
  * Adam steps of 3e-3 for G and D, decayed linearly to 0 over the whole run,
    and EMA of G (0.995): precision comes late, as G's transitions between modes
    in z-space (the thin bridges a continuous G draws between modes) steepen;
  * 12,000 steps of batch 512 (PacGAN packing hurt here; tuning notes in
    docs/benchmarks.md).
"""

from configs import common


def get_config(arg=None):
  """Returns the config; `arg`: None, 'baseline', 'smoke' or 'baseline,smoke'."""
  args = common.parse_arg(arg, baseline=False, smoke=False)
  config = common.toy_config(mixture='grid', smoke=args.smoke)
  if args.baseline:
    config.name = 'toy_grid_baseline'
    if not args.smoke:
      config.train.num_steps = 16000
    return config
  config.loss.r1_weight = 0.1
  config.optim.g.learning_rate = 3e-3
  config.optim.d.learning_rate = 3e-3
  config.optim.schedule = 'linear'
  config.optim.decay_start = 0.0
  config.train.ema_decay = 0.995
  if not args.smoke:
    config.train.num_steps = 12000
  return config
