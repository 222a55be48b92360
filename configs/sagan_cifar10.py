"""SAGAN (Zhang et al. 2019) on CIFAR-10: self-attention, spectral norm in G and D.

  python -m gan_jax.main --config=sagan_cifar10

Networks: StudioGAN's SAGAN for CIFAR-10 (its `resnet` backbone with
self-attention at 16x16 in G and D, conditional BN from one-hot labels,
projection D, ngf = ndf = 64, z 128). Training: the SAGAN paper's hinge loss, TTUR
(G 1e-4, D 4e-4), Adam (0.0, 0.9) and one D step per G step, with StudioGAN's batch
64, 100k steps and Adam eps 1e-6; G's BatchNorm running averages move in the G
updates only, as StudioGAN's training loop (`train.g_bn_stats_in_d_updates`).
Published: StudioGAN SAGAN CIFAR-10 FID 10.4
(docs/benchmarks.md), trained with StudioGAN's own settings instead: those are
`:studiogan`.

Variants (combinable):
  `:studiogan`  StudioGAN's training for its SAGAN.yaml, which sets only the networks
                and the loss and keeps src/config.py's defaults: Adam 2e-4 / 2e-4
                (0.5, 0.999, eps 1e-6), 5 D steps per G step, batch 64, 100k steps,
                no EMA, horizontal flips (`data.random_flip`); with `:smoke`, 2 D
                steps per G step;
  `:smoke`.
"""

from configs import common


def get_config(arg=None):
  """Returns the config; `arg`: None or a comma list of 'smoke', 'studiogan'."""
  args = common.parse_arg(arg, smoke=False, studiogan=False)
  smoke = args.smoke
  config = common.tfds_image_config(name='sagan_cifar10', dataset='cifar10', resolution=32,
                                    channels=3, num_steps=100000,
                                    arg='smoke' if smoke else None)
  common.biggan_model(config, name='sagan', resolution=32, ngf=64, ndf=64, z_dim=128,
                      num_classes=10, smoke=smoke)
  config.loss.type = 'hinge'
  config.optim.g.update(name='adam', learning_rate=1e-4, b1=0.0, b2=0.9, eps=1e-6)
  config.optim.d.update(name='adam', learning_rate=4e-4, b1=0.0, b2=0.9, eps=1e-6)
  config.train.n_critic = 1
  config.train.ema_decay = 0.0
  config.train.g_bn_stats_in_d_updates = False  # StudioGAN: G's BN averages move in G updates only
  if args.studiogan:
    for opt in (config.optim.g, config.optim.d):
      opt.update(name='adam', learning_rate=2e-4, b1=0.5, b2=0.999, eps=1e-6)
    config.train.n_critic = 2 if smoke else 5  # smoke: still more than one D step
    config.data.random_flip = True
  if not smoke:
    config.train.batch_size = 64
  return config
