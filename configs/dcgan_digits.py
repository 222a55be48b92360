"""python -m gan_jax.main --config=configs/dcgan_digits.py

DCGAN on scikit-learn's bundled handwritten digits (1,797 8x8 images, no
download), upsampled to 32x32 grey images. The offline default: it trains in a
few minutes on a 2-core CPU and its samples pass the digits classifier check
(`python -m gan_jax.bench.digits_check --workdir=runs/dcgan_digits`).

Variants: `:smoke` (a seconds-long run for tests).
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
  config.model.resolution = 32
  config.model.channels = 1
  config.model.z_dim = 64
  config.model.ngf = 32
  config.model.ndf = 32
  config.train.batch_size = 64
  config.train.num_steps = 3000
  config.train.ema_decay = 0.999
  config.train.log_every = 100
  config.train.sample_every = 500
  config.train.checkpoint_every = 500
  config.eval.every = 1000
  config.eval.metrics = 'proxy'
  config.eval.num_samples = 1000
  if args.smoke:
    default_lib.shrink_for_smoke(config, batch_size=16, num_steps=6)
  return config
