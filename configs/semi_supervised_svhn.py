"""Semi-supervised GAN (Salimans et al. 2016) on SVHN with 1,000 labels (100 per class).

  python -m gan_jax.main --config=semi_supervised_svhn --workdir=runs/ssl_svhn
  python -m gan_jax.bench.semi_supervised --configs=semi_supervised_svhn,semi_supervised_svhn:supervised_only --seeds=0

Prepare the data once: `tfds build svhn_cropped --file_format=array_record` (README,
Data). Published (Salimans et al. 2016, Table 2, feature matching, 1,000 labels):
test error 8.11 ± 1.3 %, i.e. accuracy about 91.9 %.

The paper's recipe as far as it maps onto our networks (its code:
openai/improved-gan, mnist_svhn_cifar10/train_svhn_feature_matching.py):
  same: K = 10 class logits with the fake class at logit 0, D trained on the
  labelled cross-entropy plus 0.5 (-log D(real) - log(1 - D(fake)))
  (`loss.d_adversarial_weight=0.5`), G by feature matching alone; G z (100) -> 4x4x512 -> 8x8x256 -> 16x16x128 -> 32x32x3 with BatchNorm and
  tanh; Adam 3e-4 (b1 0.5), 100 labelled and 100 other images per D update
  (`data.labelled_fraction=0.5`, batch 200), the learning rate decayed linearly to 0 over
  the last third; 900 epochs of the 73,257 'train' images (660k steps).
  different: D is our DCGAN D (4x4 stride-2 convs 64 -> 128 -> 256, one extra 3x3
  conv, the class layer on the flattened 4x4 map) instead of the paper's 3x3 convs
  64-64-64/2-128-128-128/2-128, two NIN layers and global pooling; no dropout (0.2 on
  the input, 0.5 twice; not implemented, though `model.d_input_noise` /
  `d_hidden_noise` add Gaussian noise to this D) and no weight normalisation in D
  (it exists only in `image_mlp`'s D); feature matching is the squared L2 distance of the mean spatially pooled last
  hidden map (the paper: mean absolute difference of the pooled features); the
  other 100 rows of a batch are drawn from all images (labelled ones included), and
  the unsupervised loss sees all 200 real rows, and G draws 200 fakes per step (the
  paper: 100, with its real features from a separate unlabelled batch); z ~ N(0, I)
  (the paper: U(0, 1)); G's convolutions are DCGAN's 4x4 (the paper: 5x5, the last
  weight-normalised); the final D is evaluated, not a Polyak average (decay 0.9999)
  of D's parameters.

Variants: `:supervised_only` (no GAN terms), `:smoke`.
"""

from configs import common

LABELS_PER_CLASS = 100
EPOCH_STEPS = 733   # 73,257 images / 100 unlabelled images per step


def paper_config(*, name, dataset, labels_per_class, ndf, num_steps, arg=None):
  """The semi-supervised GAN of the paper's SVHN / CIFAR-10 code on our 32 px DCGAN.

  Args:
    name: experiment name.
    dataset: TFDS name ('svhn_cropped', 'cifar10').
    labels_per_class: labelled training images per class.
    ndf: D's first width (later layers 2x, 4x).
    num_steps: train steps.
    arg: None or a comma list of 'smoke', 'supervised_only'.

  Returns:
    The ConfigDict.
  """
  args = common.parse_arg(arg, smoke=False, supervised_only=False)
  config = common.tfds_image_config(name=name, dataset=dataset, resolution=32, channels=3,
                                    num_steps=num_steps, arg='smoke' if args.smoke else None)
  config.data.labels_per_class = labels_per_class
  m = config.model
  if not args.smoke:
    m.ngf, m.ndf, m.z_dim = 128, ndf, 100
  for opt in (config.optim.g, config.optim.d):
    opt.update(name='adam', learning_rate=3e-4, b1=0.5, b2=0.999)
  config.optim.schedule = 'linear'
  config.optim.decay_start = 2 / 3
  if not args.smoke:
    # Each D update sees 100 labelled and 100 other images, as the paper's code draws
    # a labelled batch of 100 next to an unlabelled one.
    config.train.batch_size = 200
    config.data.labelled_fraction = 0.5
  config.train.ema_decay = 0.0
  common.semi_supervised(config, supervised_only=args.supervised_only)
  if not args.supervised_only:
    # The paper's code halves D's GAN term: loss_unl = 0.5 (-log D(real) - log(1 - D(fake))).
    config.loss.d_adversarial_weight = 0.5
  m.extra_layers = 1   # D: one stride-1 layer, no normalisation
  m.d_norm = 'none'
  return config


def get_config(arg=None):
  """Returns the config; `arg`: None or a comma list of 'smoke', 'supervised_only'."""
  return paper_config(name='semi_supervised_svhn', dataset='svhn_cropped',
                      labels_per_class=LABELS_PER_CLASS, ndf=64,
                      num_steps=900 * EPOCH_STEPS, arg=arg)
