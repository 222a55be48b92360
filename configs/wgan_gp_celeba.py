"""WGAN-GP (Gulrajani et al. 2017) on CelebA 64x64, layer-norm critic.

  python -m gan_jax.main --config=wgan_gp_celeba

Adam 1e-4 with betas (0, 0.9),
gradient penalty lambda 10, n_critic 5, batch 64. The critic has no BatchNorm
(the penalty is per sample): layer norm instead, as in the paper. Data as
configs/dcgan_celeba.py.

Variants: `:smoke` (a seconds-long run, n_critic 2).
"""

from configs import dcgan_celeba
from configs import common


def get_config(arg=None):
  """Returns the config; `arg` is None or 'smoke'."""
  config = dcgan_celeba.get_config(arg)
  config.name = 'wgan_gp_celeba'
  config.loss.type = 'wasserstein'
  config.loss.gp_weight = 10.0
  config.model.d_norm = 'layer'
  for opt in (config.optim.g, config.optim.d):
    opt.update(name='adam', learning_rate=1e-4, b1=0.0, b2=0.9, eps=1e-8)
  smoke = common.parse_arg(arg, smoke=False).smoke
  config.train.batch_size = 8 if smoke else 64
  config.train.n_critic = 2 if smoke else 5
  config.train.reuse_fake = False  # a fresh G forward after the n_critic D updates
  return config
