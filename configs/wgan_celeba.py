"""WGAN (Arjovsky et al. 2017) on CelebA 64x64 with the DCGAN networks.

  python -m gan_jax.main --config=wgan_celeba

Weight clipping 0.01, RMSprop 5e-5, n_critic 5, batch 64. Data as configs/dcgan_celeba.py.

Variants: `:smoke` (a seconds-long run, n_critic 2).
"""

from configs import dcgan_celeba
from configs import common


def get_config(arg=None):
  """Returns the config; `arg` is None or 'smoke'."""
  config = dcgan_celeba.get_config(arg)
  config.name = 'wgan_celeba'
  config.loss.type = 'wasserstein'
  config.optim.weight_clip = 0.01
  for opt in (config.optim.g, config.optim.d):
    opt.update(name='rmsprop', learning_rate=5e-5, b2=0.99, eps=1e-8)
  smoke = common.parse_arg(arg, smoke=False).smoke
  config.train.batch_size = 8 if smoke else 64
  config.train.n_critic = 2 if smoke else 5
  config.train.reuse_fake = False  # a fresh G forward after the n_critic D updates
  return config
