"""SNGAN (Miyato et al. 2018): ResNet networks of torch_mimicry on CelebA 64x64.

  python -m gan_jax.main --config=sngan_celeba

Networks: torch_mimicry's SNGANGenerator64 / SNGANDiscriminator64 (ngf = ndf =
1024). Data: CelebA with the DCGAN crop (TFDS `celeb_a`, or an image folder as
configs/dcgan_celeba.py explains). Training as mimicry's: hinge, Adam 2e-4 (0.0,
0.9), n_critic 5, batch 64, 100k G steps, linear decay.

Variants: `:smoke`.
"""

from configs import common


def get_config(arg=None):
  """Returns the config; `arg` is None or 'smoke'."""
  config = common.tfds_image_config(name='sngan_celeba', dataset='celeb_a', resolution=64,
                                    channels=3, num_steps=100000, arg=arg)
  smoke = common.parse_arg(arg, smoke=False).smoke
  config.data.crop = 'celeba'
  common.sngan_model(config, resolution=64, smoke=smoke)
  common.sngan_training(config)
  if not smoke:
    config.train.batch_size = 64
  return config
