"""DCGAN on CIFAR-10 (TFDS `cifar10`, 32x32 RGB).

  python -m gan_jax.main --config=dcgan_cifar10

Prepare the data once: `tfds build cifar10 --file_format=array_record` (README, Data).
Variants: `:smoke` (a seconds-long run; tests use it under tfds.testing.mock_data).
"""

from configs import common


def get_config(arg=None):
  """Returns the config; `arg` is None or 'smoke'."""
  return common.tfds_image_config(
      name='dcgan_cifar10', dataset='cifar10', resolution=32, channels=3, num_steps=50000,
      arg=arg)
