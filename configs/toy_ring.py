"""python -m gan_jax.main --config=configs/toy_ring.py

2-D ring of 8 Gaussians (unit circle, std 0.01), the PacGAN mode-collapse
benchmark. Variants: `:baseline` (plain non-saturating GAN, the honest
reference row), `:smoke` (seconds), combinable as `:baseline,smoke`.
Benchmark: `python -m gan_jax.bench.toy --configs toy_ring,toy_ring:baseline`.
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
  config.train.batch_size = 128
  config.train.num_steps = 10000
  config.train.ema_decay = 0.0
  config.train.log_every = 500
  config.train.sample_every = 2500
  config.train.checkpoint_every = 5000
  config.train.num_sample_images = 2500
  config.eval.every = -1
  config.eval.metrics = 'proxy'
  config.eval.num_samples = 2500
  if not args.baseline:
    # Best config: PacGAN packing + R1 on the real data.
    config.model.pack = 2
    config.loss.r1_weight = 0.1
  else:
    config.name = 'toy_ring_baseline'
  if args.smoke:
    config.train.num_steps = 20
    config.train.log_every = 5
    config.train.sample_every = 10
    config.train.checkpoint_every = 10
    config.train.progress_bar = False
  return config
