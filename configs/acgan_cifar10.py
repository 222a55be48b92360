"""ACGAN (Odena et al. 2017) on CIFAR-10: SNGAN networks with an auxiliary classifier D.

  python -m gan_jax.main --config=acgan_cifar10

After StudioGAN's `ACGAN-Mod` (CIFAR10/ACGAN-Mod.yaml): conditional-BN generator, a
discriminator whose head also predicts the class (cross-entropy weight
`loss.aux_weight` 1.0), hinge loss. Networks: torch_mimicry's 32 px ResNet (the
same G as cGAN-PD, spectral norm in D); training as the SNGAN configs (Adam 2e-4
(0, 0.9), n_critic 5, batch 64, 100k steps, linear decay). StudioGAN's ACGAN-Mod
differs: no spectral norm in D but BatchNorm in its blocks (`apply_d_sn` False turns
StudioGAN's resnet D blocks to BatchNorm), the class loss in D on real images only (here on
real and fake; in G on fake in both), a class head without bias (here with one,
as the semi-supervised D's head), Adam (0.5, 0.999, eps 1e-6) at a constant
rate, nearest (not bilinear) upsampling, horizontal flips (`--config.data.random_flip=True`
adds those). Published: StudioGAN
ACGAN-Mod CIFAR-10 FID 33.39 (docs/benchmarks.md).

Variants: `:smoke`.
"""

from configs import common


def get_config(arg=None):
  """Returns the config; `arg` is None or 'smoke'."""
  config = common.tfds_image_config(name='acgan_cifar10', dataset='cifar10', resolution=32,
                                    channels=3, num_steps=100000, arg=arg)
  smoke = common.parse_arg(arg, smoke=False).smoke
  common.sngan_model(config, resolution=32, num_classes=10, d_cond='acgan', smoke=smoke)
  common.sngan_training(config)
  config.loss.aux_weight = 1.0
  if not smoke:
    config.train.batch_size = 64
  return config
