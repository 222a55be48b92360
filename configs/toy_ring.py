"""8-Gaussian ring (2-D, MLP GAN): the PacGAN mode-collapse benchmark.

  python -m gan_jax.main --config=toy_ring
  python -m gan_jax.bench.toy --configs=toy_ring,toy_ring:baseline     (docs/benchmarks.md)

Modes on the unit circle, std 0.01. Variants: `:baseline` (the plain
non-saturating GAN with the same network, batch and steps: the honest reference
row), `:smoke` (seconds), combinable as `:baseline,smoke`.

What makes the best config precise (3 std = 0.03 around each mode):
  * the generator learns 3x faster than the discriminator (3e-3 vs 1e-3): the
    thin bridges between modes shrink only as G's transitions in z-space get
    steep, which needs large G weights, i.e. large G steps. With a larger ratio
    some seeds end with modes of very unequal mass (docs/benchmarks.md): G's steps
    are then large enough to keep moving mass between modes late in training;
  * EMA of G (0.995) averages the noise of G's steps, and both learning rates
    decay linearly to 0 over the whole run, so the late steps are small;
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
  config.optim.g.learning_rate = 3e-3
  config.train.ema_decay = 0.995
  config.optim.schedule = 'linear'
  config.optim.decay_start = 0.0
  return config
