"""python -m gan_jax.main --config=configs/dcgan_celeba.py

DCGAN (Radford et al. 2015) on CelebA at 64x64, as in the PyTorch DCGAN example.
CelebA (TFDS `celeb_a`, aligned 218x178 faces) gets the DCGAN preprocessing: the
central 108x108 crop, resized to 64x64. Prepare once with
`tfds build celeb_a --file_format=array_record`, or train from a folder of the
aligned JPEGs:
`--config.data.source=image_folder --config.data.path=/data/img_align_celeba`.

Variants: `:smoke` (a seconds-long run; tests use it under tfds.testing.mock_data).
"""

from configs import default as default_lib


def get_config(arg=None):
  """Returns the config; `arg` is None or 'smoke'."""
  config = default_lib.tfds_dcgan_config(
      name='dcgan_celeba', dataset='celeb_a', resolution=64, channels=3, num_steps=30000,
      arg=arg)
  config.data.crop = 'celeba'
  # As the PyTorch example: G runs forward once per iteration and the G update
  # back-propagates through the D update's fake batch (~10% less work per step).
  config.train.reuse_fake = True
  if not default_lib.parse_arg(arg, smoke=False).smoke:
    config.eval.every = 10000
    config.eval.metrics = 'fid'
  return config
