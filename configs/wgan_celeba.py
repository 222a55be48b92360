"""python -m gan_jax.main --config=configs/wgan_celeba.py

WGAN (Arjovsky et al. 2017) on CelebA 64x64: weight clipping 0.01, RMSprop 5e-5, n_critic 5.
CelebA (TFDS `celeb_a`, aligned 218x178 faces), DCGAN preprocessing: a centre
crop then a resize to 64x64 (see gan_jax/data for the exact crop). Prepare once
with `tfds build celeb_a --file_format=array_record`, or train from a folder of
the aligned JPEGs: `--config.data.source=image_folder --config.data.path=/data/img_align_celeba`.

Variants: `:smoke` (a seconds-long run; tests use it under tfds.testing.mock_data).
"""

from configs import default as default_lib


def get_config(arg=None):
  """Returns the config; `arg` is None or 'smoke'."""
  args = default_lib.parse_arg(arg, smoke=False)
  config = default_lib.get_config()
  config.name = 'wgan_celeba'
  config.data.source = 'tfds'
  config.data.name = 'celeb_a'
  config.data.split = 'train'
  config.model.name = 'dcgan'
  config.model.resolution = 64
  config.model.channels = 3
  config.data.crop = 'celeba'
  config.train.batch_size = 128
  config.train.num_steps = 30000
  config.train.log_every = 100
  config.train.sample_every = 1000
  config.train.checkpoint_every = 2000
  config.eval.every = 10000
  config.eval.metrics = 'fid'
  config.eval.num_samples = 10000
  config.loss.type = 'wasserstein'
  config.model.d_norm = 'batch'
  config.optim.weight_clip = 0.01
  config.optim.g = dict(name='rmsprop', learning_rate=5e-5, b1=0.0, b2=0.99, eps=1e-8)
  config.optim.d = dict(name='rmsprop', learning_rate=5e-5, b1=0.0, b2=0.99, eps=1e-8)
  config.train.batch_size = 64
  config.train.n_critic = 5
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
    config.train.n_critic = 2
  return config
