"""DCGAN on SVHN (TFDS `svhn_cropped`, 32x32 RGB).

  python -m gan_jax.main --config=dcgan_svhn

Prepare the data once: `tfds build svhn_cropped --file_format=array_record` (README, Data).
Variants: `:smoke` (a seconds-long run; tests use it under tfds.testing.mock_data).
"""

from configs import common


def get_config(arg=None):
  """Returns the config; `arg` is None or 'smoke'."""
  return common.tfds_image_config(
      name='dcgan_svhn', dataset='svhn_cropped', resolution=32, channels=3, num_steps=30000,
      arg=arg)
