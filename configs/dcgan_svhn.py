"""python -m gan_jax.main --config=configs/dcgan_svhn.py

DCGAN on SVHN (TFDS `svhn_cropped`, 32x32 RGB).
Prepare the data once: `tfds build svhn_cropped --file_format=array_record` (README, Data).
Variants: `:smoke` (a seconds-long run; tests use it under tfds.testing.mock_data).
"""

from configs import default as default_lib


def get_config(arg=None):
  """Returns the config; `arg` is None or 'smoke'."""
  return default_lib.tfds_dcgan_config(
      name='dcgan_svhn', dataset='svhn_cropped', resolution=32, channels=3, num_steps=30000,
      arg=arg)
