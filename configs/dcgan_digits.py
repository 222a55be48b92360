"""DCGAN on the bundled 8x8 digits: the offline default (minutes on a laptop CPU).

  python -m gan_jax.main --config=dcgan_digits
  python -m gan_jax.bench.digits_check --workdir=runs/dcgan_digits

scikit-learn's 1,797 handwritten digits (no download) at their native 8x8
resolution. Choices (measured with the digits check, docs/benchmarks.md): one
extra stride-1 3x3 conv layer in G and D (`model.extra_layers`: at 8x8 a DCGAN
has only one stride-2 layer each), widths ngf = ndf = 64, LSGAN loss, batch 128,
EMA 0.99 of G, learning rate decayed linearly to 0 over the second half.

Variants: `:smoke` (seconds; 32x32 with widths 8, so every DCGAN layer type,
BatchNorm in G and D included, runs, with the non-saturating loss and a constant
learning rate, the library defaults; the tests use it); `:few` (10% of the
training split, 134 digits, with DiffAugment: learning from little data, see
docs/benchmarks.md) and `:few,noaug` (the same without augmentation);
`:few,policy=color` trains the 10% subset with another DiffAugment policy, and
`:few,fill=-1` fills what translation and cutout remove with black (the digits'
background) instead of the reference's grey 0 (no gain measured, docs/benchmarks.md).
"""

from configs import common
from gan_jax import defaults
from gan_jax import errors


# 10% of the 1,347 training digits, and the DiffAugment policy that helped them: of
# translation, color and cutout only cutout lowered the proxy FD (docs/benchmarks.md).
FEW_EXAMPLES = 134
FEW_POLICY = 'cutout'


def get_config(arg=None):
  """Returns the config; `arg`: None or a comma list of 'smoke', 'few', 'noaug', 'policy=P',
  'fill=F'."""
  args = common.parse_arg(arg, smoke=False, few=False, noaug=False, policy=None, fill=None)
  config = defaults.get_config()
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
  if args.few:
    config.data.train_examples = FEW_EXAMPLES
    config.augment.policy = '' if args.noaug else (args.policy or FEW_POLICY)
    if args.fill is not None:
      config.augment.fill = float(args.fill)
  elif args.policy is not None or args.fill is not None:
    raise errors.ConfigError("policy=P and fill=F are variants of ':few' (e.g. --config=dcgan_digits:"
                     "few,policy=color); for the full split set --config.augment.policy / .fill.")
  if args.smoke:
    common.shrink_for_smoke(config, batch_size=16, num_steps=6)
    config.model.resolution = 32
    config.loss.type = 'non_saturating'
    config.optim.schedule = 'constant'
  return config
