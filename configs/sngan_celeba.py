"""SNGAN (Miyato et al. 2018): ResNet networks of torch_mimicry on CelebA 64x64.

  python -m gan_jax.main --config=sngan_celeba

Networks: torch_mimicry's SNGANGenerator64 / SNGANDiscriminator64 (ngf = ndf =
1024). Data: CelebA center-cropped to 178x178 and resized, as mimicry's
`CenterCrop(178)` (TFDS `celeb_a`, or an image folder as configs/dcgan_celeba.py
explains); mimicry trains on all 202,599 images, this config on the 'train' split
(`--config.data.split=train+validation+test` for all, where TFDS takes it). Training
as mimicry's: hinge, Adam 2e-4 (0.0, 0.9), n_critic 5, batch 64, 100k G steps,
linear decay. Published: mimicry FID 5.71 (50k vs 50k; docs/benchmarks.md).

Variants: `:smoke`.
"""

from configs import common


def get_config(arg=None):
  """Returns the config; `arg` is None or 'smoke'."""
  config = common.tfds_image_config(name='sngan_celeba', dataset='celeb_a', resolution=64,
                                    channels=3, num_steps=100000, arg=arg)
  smoke = common.parse_arg(arg, smoke=False).smoke
  config.data.crop = 'center'  # mimicry: CenterCrop(178) of the 178x218 images, then resize
  common.sngan_model(config, resolution=64, smoke=smoke)
  common.sngan_training(config)
  if not smoke:
    config.train.batch_size = 64
  return config
