"""8-Gaussian ring (2-D, MLP GAN): the PacGAN mode-collapse benchmark.

  python -m gan_jax.main --config=toy_ring
  python -m gan_jax.bench.toy --configs=toy_ring,toy_ring:baseline     (docs/benchmarks.md)

Modes on the unit circle, std 0.01. Variants: `:baseline` (the plain
non-saturating GAN with the same network, batch and steps: the honest reference
row), `:smoke` (seconds), combinable as `:baseline,smoke`.

What makes the best config precise (3 std = 0.03 around each mode):
  * the generator learns 6x faster than the discriminator (6e-3 vs 1e-3): the
    thin bridges between modes shrink only as G's transitions in z-space get
    steep, which needs large G weights, i.e. large G steps;
  * EMA of G (0.995) averages the noise those large steps cause, and both
    learning rates decay linearly to 0 over the second half of training;
  * PacGAN packing (pack=2) for coverage.
"""

from configs import common


def get_config(arg=None):
  """Returns the config; `arg`: None, 'baseline', 'smoke' or 'baseline,smoke'."""
  args = common.parse_arg(arg, baseline=False, smoke=False)
  config = common.toy_config(mixture='ring', smoke=args.smoke)
  if args.baseline:
    config.name = 'toy_ring_baseline'
    return config
  config.model.pack = 2
  config.optim.g.learning_rate = 6e-3
  config.train.ema_decay = 0.995
  config.optim.schedule = 'linear'
  config.optim.decay_start = 0.5
  return config
