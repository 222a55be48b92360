"""cGAN-PD (Miyato & Koyama 2018): class-conditional SNGAN with a projection D, CIFAR-10.

  python -m gan_jax.main --config=cgan_pd_cifar10

Networks: torch_mimicry's CGANPDGenerator32 / CGANPDDiscriminator32 (conditional
BatchNorm in every G block, projection discriminator, 10 classes). Training as
mimicry's: hinge, Adam 2e-4 (0.0, 0.9), n_critic 5, batch 64, 100k G steps,
linear decay. Published: mimicry FID 10.8 (50k vs 50k; docs/benchmarks.md).

Variants: `:smoke`.
"""

from configs import common


def get_config(arg=None):
  """Returns the config; `arg` is None or 'smoke'."""
  config = common.tfds_image_config(name='cgan_pd_cifar10', dataset='cifar10', resolution=32,
                                    channels=3, num_steps=100000, arg=arg)
  smoke = common.parse_arg(arg, smoke=False).smoke
  common.sngan_model(config, resolution=32, num_classes=10, d_cond='projection', smoke=smoke)
  common.sngan_training(config)
  if not smoke:
    config.train.batch_size = 64
    config.eval.metrics = 'fid,is,intra_fid'
  return config
