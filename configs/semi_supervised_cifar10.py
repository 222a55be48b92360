"""Semi-supervised GAN (Salimans et al. 2016) on CIFAR-10 with 4,000 labels (400 per class).

  python -m gan_jax.main --config=semi_supervised_cifar10 --workdir=runs/ssl_cifar10
  python -m gan_jax.bench.semi_supervised --configs=semi_supervised_cifar10,semi_supervised_cifar10:supervised_only --seeds=0

Prepare the data once: `tfds build cifar10 --file_format=array_record` (README, Data).
Published (Salimans et al. 2016, Table 3, feature matching, 4,000 labels): test error
18.63 ± 2.32 %, i.e. accuracy about 81.4 %.

The recipe of `semi_supervised_svhn` (see there for what matches the paper's code,
openai/improved-gan mnist_svhn_cifar10/train_cifar_feature_matching.py, and what
differs), with the paper's CIFAR-10 settings: D widths 96 -> 192 -> 384 (the paper:
3x3 convs 96-96-96/2-192-192-192/2-192, NIN 192 x 2, global pooling), 1,200 epochs of
the 50,000 'train' images at the paper's 100 unlabelled images per step (600k steps;
each batch of 200 adds 100 labelled ones), the learning rate 3e-4 decayed linearly to 0
over the last 400 epochs.

Variants: `:supervised_only` (no GAN terms), `:smoke`.
"""

from configs import semi_supervised_svhn

LABELS_PER_CLASS = 400
EPOCH_STEPS = 500   # 50,000 images / 100 unlabelled images per step


def get_config(arg=None):
  """Returns the config; `arg`: None or a comma list of 'smoke', 'supervised_only'."""
  return semi_supervised_svhn.paper_config(
      name='semi_supervised_cifar10', dataset='cifar10', labels_per_class=LABELS_PER_CLASS,
      ndf=96, num_steps=1200 * EPOCH_STEPS, arg=arg)
