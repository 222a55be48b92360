"""python -m gan_jax.main --config=configs/dcgan_digits.py

DCGAN on scikit-learn's bundled handwritten digits (1,797 8x8 images, no
download) at their native 8x8 resolution: the offline default. It trains in a
few minutes on a 2-core CPU; check its samples with
`python -m gan_jax.bench.digits_check --workdir=runs/dcgan_digits`.

Choices (measured with that check, see README): one extra stride-1 3x3 conv
layer in G and D (`model.extra_layers`; at 8x8 a DCGAN has only one stride-2
layer each, i.e. is a one-hidden-layer network, and plateaued at a confident
share of 0.74-0.76 whatever the width, loss or step count; with the extra layer
0.85 after 8,000 steps), widths ngf = ndf = 64, LSGAN loss, batch 128, EMA 0.99
of G, learning rate decayed linearly to 0 over the second half. At 16 or 32 px
the same step budget gave clearly less classifiable samples.

Variants: `:smoke` (seconds; 32x32 with widths 8, so every DCGAN layer type,
BatchNorm in G and D included, runs; the tests use it).
"""

from configs import default as default_lib


def get_config(arg=None):
  """Returns the config; `arg` is None or 'smoke'."""
  args = default_lib.parse_arg(arg, smoke=False)
  config = default_lib.get_config()
  config.name = 'dcgan_digits'
  config.data.source = 'digits'
  config.data.split = 'train'
  config.model.name = 'dcgan'
  config.model.resolution = 8
  config.model.channels = 1
  config.model.z_dim = 64
  config.model.ngf = 64
  config.model.ndf = 64
  config.model.extra_layers = 1
  config.loss.type = 'least_squares'
  config.optim.schedule = 'linear'
  config.optim.decay_start = 0.5
  config.train.batch_size = 128
  config.train.num_steps = 8000
  config.train.ema_decay = 0.99
  config.train.log_every = 500
  config.train.sample_every = 2000
  config.train.checkpoint_every = 2000
  config.eval.every = 4000
  config.eval.metrics = 'proxy'
  config.eval.num_samples = 1000
  if args.smoke:
    default_lib.shrink_for_smoke(config, batch_size=16, num_steps=6)
    config.model.resolution = 32
    config.model.z_dim = 16
    config.loss.type = 'non_saturating'
    config.optim.schedule = 'constant'
  return config
