"""DCGAN on MNIST (TFDS `mnist`, 28x28 grey).

  python -m gan_jax.main --config=dcgan_mnist

Prepare the data once: `tfds build mnist --file_format=array_record` (README, Data).
Variants: `:smoke` (a seconds-long run; tests use it under tfds.testing.mock_data).
"""

from configs import common


def get_config(arg=None):
  """Returns the config; `arg` is None or 'smoke'."""
  return common.tfds_image_config(
      name='dcgan_mnist', dataset='mnist', resolution=28, channels=1, num_steps=20000,
      arg=arg)
