"""python -m gan_jax.main --config=configs/dcgan_mnist.py

DCGAN on MNIST (TFDS `mnist`, 28x28 grey).
Prepare the data once: `tfds build mnist --file_format=array_record` (README, Data).
Variants: `:smoke` (a seconds-long run; tests use it under tfds.testing.mock_data).
"""

from configs import default as default_lib


def get_config(arg=None):
  """Returns the config; `arg` is None or 'smoke'."""
  return default_lib.tfds_dcgan_config(
      name='dcgan_mnist', dataset='mnist', resolution=28, channels=1, num_steps=20000,
      arg=arg)
