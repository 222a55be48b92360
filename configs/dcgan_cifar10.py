"""python -m gan_jax.main --config=configs/dcgan_cifar10.py

DCGAN on CIFAR-10 (TFDS `cifar10`, 32x32 RGB).
Prepare the data once: `tfds build cifar10 --file_format=array_record` (README, Data).
Variants: `:smoke` (a seconds-long run; tests use it under tfds.testing.mock_data).
"""

from configs import default as default_lib


def get_config(arg=None):
  """Returns the config; `arg` is None or 'smoke'."""
  return default_lib.tfds_dcgan_config(
      name='dcgan_cifar10', dataset='cifar10', resolution=32, channels=3, num_steps=50000,
      arg=arg)
