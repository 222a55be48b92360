"""BigGAN (Brock et al. 2019) on CIFAR-10, as PyTorch-StudioGAN's CIFAR10/BigGAN.yaml.

  python -m gan_jax.main --config=biggan_cifar10
  python -m gan_jax.main --config=biggan_cifar10:diffaug,data=10    # 10% of the data

Networks: StudioGAN's `big_resnet` at 32 px (ngf = ndf = 96, z 80 split
hierarchically, shared class embedding 128, self-attention at 16x16 in G and D,
spectral norm in G and D, projection D, 10 classes). Training as StudioGAN's
defaults: hinge loss, Adam 2e-4 / 2e-4 (0.5, 0.999, eps 1e-6), 5 D steps per G
step, batch 64, 100k G steps, EMA 0.9999 from step 1000 (of G's weights and, as
StudioGAN's `Ema`, its BatchNorm statistics: `train.ema_batch_stats`), each
training image mirrored with probability 1/2 (`data.random_flip`, StudioGAN's
`PRE.apply_rflip`). G's BatchNorm running averages move in the G updates only
(`train.g_bn_stats_in_d_updates`, StudioGAN's `untrack_bn_statistics` in D steps).
Published (docs/benchmarks.md): StudioGAN BigGAN CIFAR-10 FID 4.2 (50k); with LeCam
3.23, DiffAug 3.35, CR 3.16, ICR 3.54 (its benchmark table).

Variants (combinable, e.g. `:diffaug,data=20`; `:cr` and `:icr` exclude each other):
  `:diffaug`  DiffAugment 'translation,cutout' on every image D sees, for 200k
              steps (the policy of Zhao et al.'s BigGAN CIFAR scripts, whose numbers
              are below; StudioGAN's BigGAN-DiffAug.yaml uses 'color,translation,
              cutout'). The networks and optimiser stay StudioGAN's; Zhao et al.'s
              scripts (DiffAugment-biggan-cifar) differ: widths 64, z 128 neither
              split nor shared, N(0, 0.02) init, Adam beta1 0 and eps 1e-8, batch 50,
              4 D steps, no attention, about 250k G steps (125k at 10% data). With
              `:diffaug` or `:data=P` the evaluations during training use their
              FID-10k protocol: 10k samples against the 10k test images (they report
              the best checkpoint: `best/`);
  `:lecam`    LeCam regularisation as StudioGAN's BigGAN-LeCam.yaml: weight 0.3,
              averages decaying 0.99 from step 1000 (`loss.lecam_*`), 200k steps;
              with `:diffaug`, its BigGAN-DiffAug-LeCam.yaml (but for the policy);
  `:cr`       consistency regularisation as StudioGAN's BigGAN-CR.yaml (CR-GAN, Zhang
              et al. 2020: weight 10 on ||D(x) - D(T(x))||^2 for real x, T a random
              flip and a reflection-padded shift of up to 4 px, `augment.CR_POLICY`);
  `:icr`      improved CR as StudioGAN's BigGAN-ICR.yaml (Zhao et al. 2021): bCR with
              the same T on real and fake images (weights 10, 10) and zCR (D 20, G
              0.5, radius 0.05). Published with their own BigGAN (docs/benchmarks.md):
              conditional CIFAR-10 FID 14.73 without CR, 11.48 with CR, 9.21 with ICR;
  `:data=P`   train on P% of the training split (class-balanced, seeded): the
              data-efficiency setting of Zhao et al. 2020, whose BigGAN FID-10k
              with DiffAugment at 100 / 20 / 10% data was 8.70 / 14.04 / 22.40,
              and without 9.59 / 21.58 / 39.78;
  `:smoke`.
"""

from configs import common
from gan_jax import augment
from gan_jax import errors

CIFAR10_TRAIN_EXAMPLES = 50000


def get_config(arg=None):
  """Returns the config; `arg`: 'smoke', 'diffaug', 'lecam', 'cr'/'icr', 'data=P' (joined by ,)."""
  args = common.parse_arg(arg, smoke=False, diffaug=False, lecam=False, cr=False, icr=False,
                          data=100)
  config = common.tfds_image_config(name='biggan_cifar10', dataset='cifar10', resolution=32,
                                    channels=3, num_steps=100000,
                                    arg='smoke' if args.smoke else None)
  common.biggan_model(config, name='biggan', resolution=32, ngf=96, ndf=96, z_dim=80,
                      num_classes=10, smoke=args.smoke)
  config.loss.type = 'hinge'
  for opt in (config.optim.g, config.optim.d):
    opt.update(name='adam', learning_rate=2e-4, b1=0.5, b2=0.999, eps=1e-6)
  config.train.n_critic = 5
  config.train.ema_decay = 0.9999
  config.train.ema_batch_stats = True  # StudioGAN's Ema averages G's buffers too
  config.train.ema_start = 1000
  config.train.g_bn_stats_in_d_updates = False  # StudioGAN: G's BN averages move in G updates only
  config.data.random_flip = True
  if not 0 < args.data <= 100:
    raise errors.ConfigError(f'biggan_cifar10:data=P needs 0 < P <= 100, got {args.data}.')
  if args.data < 100:
    config.data.train_examples = CIFAR10_TRAIN_EXAMPLES * args.data // 100
  if args.diffaug:
    config.augment.policy = 'translation,cutout'
    config.train.num_steps = 200000
  if args.diffaug or args.data < 100:
    # Zhao et al.'s FID-10k: 10k samples against the 10k test images (their
    # inception_tf.py reads the loader with train=False), best checkpoint of the run.
    config.eval.reference_split = 'test'
    config.eval.num_reference = 10000
  if args.lecam:
    config.loss.update(lecam_weight=0.3, lecam_decay=0.99, lecam_start=1000)
    config.train.num_steps = 200000
  if args.cr and args.icr:
    raise errors.ConfigError('biggan_cifar10: choose one of :cr and :icr (ICR contains CR on '
                             'real images, and adds it on fakes and zCR).')
  if args.cr or args.icr:
    config.augment.bcr_policy = augment.CR_POLICY
    config.loss.bcr_real_weight = 10.0
  if args.icr:
    config.loss.update(bcr_fake_weight=10.0, zcr_d_weight=20.0, zcr_g_weight=0.5,
                       zcr_radius=0.05)
  if args.smoke:
    config.train.n_critic = 1
    config.train.ema_start = 0
    if args.lecam:  # LeCam's term is added from its start step: in the smoke steps too
      config.loss.lecam_start = 0
    config.train.num_steps = 4
  else:
    config.train.batch_size = 64
  return config
