"""SNGAN (Miyato et al. 2018): ResNet networks of torch_mimicry on CIFAR-10 32x32.

  python -m gan_jax.main --config=sngan_cifar10

Networks: torch_mimicry's SNGANGenerator32 / SNGANDiscriminator32 (ngf 256, ndf
128, nz 128, spectral norm on every D layer). Training as mimicry's CIFAR-10
example: hinge loss, Adam 2e-4 (0.0, 0.9), 5 D steps per G step, batch 64,
100k G steps, learning rate decayed linearly to 0. Published: mimicry reports
FID 16.8 (50k vs 50k: `python -m gan_jax.evaluate --num_samples=50000
--num_reference=50000`; training evaluates 10k) for this setting. StudioGAN's
SNGAN (CIFAR-10 FID 9.0, docs/benchmarks.md) is class-conditional (cBN G,
projection D) and trains otherwise (docs/benchmarks.md): `cgan_pd_cifar10` has its
conditioning. Prepare the data: `tfds build cifar10 --file_format=array_record`.

Variants: `:smoke` (narrow networks, a few steps; the tests run it on mock data).
"""

from configs import common


def get_config(arg=None):
  """Returns the config; `arg` is None or 'smoke'."""
  config = common.tfds_image_config(name='sngan_cifar10', dataset='cifar10', resolution=32,
                                    channels=3, num_steps=100000, arg=arg)
  smoke = common.parse_arg(arg, smoke=False).smoke
  common.sngan_model(config, resolution=32, smoke=smoke)
  common.sngan_training(config)
  if not smoke:
    config.train.batch_size = 64
  return config
