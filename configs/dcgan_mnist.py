"""python -m gan_jax.main --config=configs/dcgan_mnist.py

DCGAN on MNIST (TFDS `mnist`, 28x28 grey).
Prepare once: `tfds build mnist --file_format=array_record` (or see the README).

Variants: `:smoke` (a seconds-long run; tests use it under tfds.testing.mock_data).
"""

from configs import default as default_lib


def get_config(arg=None):
  """Returns the config; `arg` is None or 'smoke'."""
  args = default_lib.parse_arg(arg, smoke=False)
  config = default_lib.get_config()
  config.name = 'dcgan_mnist'
  config.data.source = 'tfds'
  config.data.name = 'mnist'
  config.data.split = 'train'
  config.model.name = 'dcgan'
  config.model.resolution = 28
  config.model.channels = 1
  config.train.batch_size = 128
  config.train.num_steps = 20000
  config.train.log_every = 100
  config.train.sample_every = 1000
  config.train.checkpoint_every = 2000
  config.eval.every = 5000
  config.eval.metrics = 'fid,is'
  config.eval.num_samples = 10000
  if args.smoke:
    config.model.ngf = 8
    config.model.ndf = 8
    config.model.z_dim = 16
    config.train.batch_size = 8
    config.train.num_steps = 4
    config.train.log_every = 2
    config.train.sample_every = 2
    config.train.checkpoint_every = 2
    config.train.num_sample_images = 8
    config.train.progress_bar = False
    config.eval.every = -1
    config.eval.metrics = ''
  return config
