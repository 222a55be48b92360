"""DCGAN (Radford et al. 2015) on CelebA 64x64, as the PyTorch DCGAN example.

  python -m gan_jax.main --config=dcgan_celeba

CelebA (TFDS `celeb_a`, aligned 218x178 faces) gets the DCGAN preprocessing: the
central 108x108 crop, resized to 64x64. Prepare once with
`tfds build celeb_a --file_format=array_record`, or train from a folder of the
aligned JPEGs:
`--config.data.source=image_folder --config.data.path=/data/img_align_celeba`.

Variants: `:smoke` (a seconds-long run; tests use it under tfds.testing.mock_data).
"""

from configs import common


def get_config(arg=None):
  """Returns the config; `arg` is None or 'smoke'."""
  config = common.tfds_image_config(
      name='dcgan_celeba', dataset='celeb_a', resolution=64, channels=3, num_steps=30000,
      arg=arg)
  config.data.crop = 'celeba'
  # As the PyTorch example: G runs forward once per iteration and the G update
  # back-propagates through the D update's fake batch (one G forward pass fewer).
  config.train.reuse_fake = True
  if not common.parse_arg(arg, smoke=False).smoke:
    config.eval.every = 10000
    config.eval.metrics = 'fid'
  return config
