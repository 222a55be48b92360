"""SNGAN (Miyato et al. 2018): ResNet networks of torch_mimicry on STL-10 at 48x48.

  python -m gan_jax.main --config=sngan_stl10

Networks: torch_mimicry's SNGANGenerator48 / SNGANDiscriminator48 (ngf 512, ndf
1024, bottom width 6). Data: the 100k unlabelled STL-10 images (TFDS `stl10`,
split 'unlabelled'), resized to 48x48. Training as mimicry's: hinge, Adam 2e-4
(0.0, 0.9), n_critic 5, batch 64, 100k G steps, linear decay. Published: mimicry's
table, FID 39.56 (50k vs 50k; docs/benchmarks.md); the SNGAN paper's STL-10 FID
40.1 is its ResNet's.

Variants: `:smoke`.
"""

from configs import common


def get_config(arg=None):
  """Returns the config; `arg` is None or 'smoke'."""
  config = common.tfds_image_config(name='sngan_stl10', dataset='stl10', resolution=48,
                                    channels=3, num_steps=100000, arg=arg)
  smoke = common.parse_arg(arg, smoke=False).smoke
  config.data.split = 'unlabelled'
  common.sngan_model(config, resolution=48, smoke=smoke)
  common.sngan_training(config)
  if not smoke:
    config.train.batch_size = 64
  return config
