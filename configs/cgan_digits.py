"""Class-conditional DCGAN on the bundled 8x8 digits: the offline conditional default.

  python -m gan_jax.main --config=cgan_digits
  python -m gan_jax.sample --workdir=runs/cgan_digits --labels=3 --num_samples=64 --output=threes.png
  python -m gan_jax.evaluate --workdir=runs/cgan_digits --metrics=proxy,cas --num_samples=1000

scikit-learn's digits (no download) with their labels: conditional BatchNorm in
every G layer (per-class gain and bias) and a projection discriminator (Miyato &
Koyama 2018), otherwise the networks of `dcgan_digits`. Sampling grids show one
row per class. Results in docs/benchmarks.md.

Variants: `:smoke` (seconds; the tests use it).
"""

from configs import common
from configs import dcgan_digits


def get_config(arg=None):
  """Returns the config; `arg` is None or 'smoke'."""
  args = common.parse_arg(arg, smoke=False)
  config = dcgan_digits.get_config('smoke' if args.smoke else None)
  config.name = 'cgan_digits'
  config.model.num_classes = 10
  config.model.d_cond = 'projection'
  config.train.num_sample_images = 100
  config.eval.metrics = '' if args.smoke else 'proxy'
  return config
