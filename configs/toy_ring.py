"""python -m gan_jax.main --config=configs/toy_ring.py

2-D ring of 8 Gaussians (unit circle, std 0.01), the PacGAN mode-collapse
benchmark. Variants: `:baseline` (plain non-saturating GAN, the honest
reference row), `:smoke` (seconds), combinable as `:baseline,smoke`.
Benchmark (10 seeds, mean +- s.e.; README "Mode-collapse benchmark"):
  python -m gan_jax.bench.toy --configs=toy_ring,toy_ring:baseline

What makes the best config precise (3 std = 0.03 around each mode):
  * the generator learns 6x faster than the discriminator (6e-3 vs 1e-3): the
    thin bridges between modes shrink only as G's transitions in z-space get
    steep, which needs large G weights, i.e. large G steps;
  * EMA of G (0.995) averages the noise those large steps cause, and both
    learning rates decay linearly to 0 over the second half of training;
  * batch 512 for low-noise gradients, PacGAN packing (pack=2) for coverage.
The baseline keeps the network, batch, steps and Adam settings, and drops
packing, the fast G learning rate, the decay and EMA.
"""

from configs import default as default_lib


def get_config(arg=None):
  """Returns the config; `arg`: None, 'baseline', 'smoke' or 'baseline,smoke'."""
  args = default_lib.parse_arg(arg, baseline=False, smoke=False)
  config = default_lib.get_config()
  config.name = 'toy_ring'
  config.data.source = 'toy'
  config.data.toy = 'ring'
  config.model.name = 'mlp'
  config.model.channels = 2
  config.model.z_dim = 2
  config.model.hidden = 128
  config.model.num_layers = 3
  config.model.g_norm = 'none'
  config.model.d_norm = 'none'
  config.loss.type = 'non_saturating'
  config.optim.g.learning_rate = 1e-3
  config.optim.d.learning_rate = 1e-3
  config.optim.g.b1 = config.optim.d.b1 = 0.5
  config.train.batch_size = 512
  config.train.num_steps = 10000
  config.train.ema_decay = 0.0
  config.train.log_every = 500
  config.train.sample_every = 10000
  config.train.checkpoint_every = 10000
  config.train.max_to_keep = 1
  config.train.num_sample_images = 2500
  config.eval.every = -1
  config.eval.metrics = 'proxy'
  config.eval.num_samples = 2500
  if not args.baseline:
    config.model.pack = 2
    config.optim.g.learning_rate = 6e-3
    config.train.ema_decay = 0.995
    config.optim.schedule = 'linear'
    config.optim.decay_start = 0.5
  else:
    config.name = 'toy_ring_baseline'
  if args.smoke:
    config.model.hidden = 16
    config.train.batch_size = 64
    config.train.num_steps = 4
    config.train.log_every = 2
    config.train.sample_every = 4
    config.train.checkpoint_every = 4
    config.train.num_sample_images = 64
    config.train.progress_bar = False
  return config
