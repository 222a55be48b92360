"""SAGAN (Zhang et al. 2019) on CIFAR-10: self-attention, spectral norm in G and D.

  python -m gan_jax.main --config=sagan_cifar10

Networks: StudioGAN's SAGAN for CIFAR-10 (its `resnet` backbone with
self-attention at 16x16 in G and D, conditional BN from one-hot labels,
projection D, ngf = ndf = 64, z 128). Training: the SAGAN paper's hinge loss, TTUR
(G 1e-4, D 4e-4), Adam (0.0, 0.9) and one D step per G step, with StudioGAN's batch
64, 100k steps and Adam eps 1e-6. Published: StudioGAN SAGAN CIFAR-10 FID 10.4
(docs/benchmarks.md), trained with StudioGAN's own settings instead (Adam 2e-4 /
2e-4 (0.5, 0.999), 5 D steps per G step, horizontal flips: add those with
`--config.data.random_flip=True`), so not the same recipe.

Variants: `:smoke`.
"""

from configs import common


def get_config(arg=None):
  """Returns the config; `arg` is None or 'smoke'."""
  config = common.tfds_image_config(name='sagan_cifar10', dataset='cifar10', resolution=32,
                                    channels=3, num_steps=100000, arg=arg)
  smoke = common.parse_arg(arg, smoke=False).smoke
  common.biggan_model(config, name='sagan', resolution=32, ngf=64, ndf=64, z_dim=128,
                      num_classes=10, smoke=smoke)
  config.loss.type = 'hinge'
  config.optim.g.update(name='adam', learning_rate=1e-4, b1=0.0, b2=0.9, eps=1e-6)
  config.optim.d.update(name='adam', learning_rate=4e-4, b1=0.0, b2=0.9, eps=1e-6)
  config.train.n_critic = 1
  config.train.ema_decay = 0.0
  if not smoke:
    config.train.batch_size = 64
  return config
