"""BigGAN (Brock et al. 2019) on ImageNet 128x128, as StudioGAN's ImageNet/BigGAN-256.yaml.

  python -m gan_jax.main --config=biggan_imagenet128 --config.data.data_dir=...

Data: TFDS `imagenet2012`, which TFDS cannot download: prepare it yourself from
the ILSVRC2012 tar files (`tfds build imagenet2012 --manual_dir=... 
--file_format=array_record`), then pass its data_dir. Networks: StudioGAN's
`big_resnet` at 128 px (ngf = ndf = 96, z 120, shared embedding 128, attention
at 64x64, 1000 classes). Training: hinge, Adam G 5e-5 / D 2e-4 (0.0, 0.999, eps
1e-6), 2 D steps per G step, batch 256, 200k steps, EMA 0.9999 from step 20000
(weights and BatchNorm statistics, `train.ema_batch_stats`), and horizontal
flips (`data.random_flip`: the yaml sets none, StudioGAN's `src/config.py`
defaults `PRE.apply_rflip` to True); G's BatchNorm running averages move in the G
updates only (`train.g_bn_stats_in_d_updates`, StudioGAN's `untrack_bn_statistics`
in D steps). StudioGAN's command also uses
synchronised BatchNorm (here `parallel.sync_batch_stats`, on by default) and samples
with standing statistics (here `--standing_stats=N` of `gan_jax.evaluate` and
`gan_jax.sample`, `eval.standing_stats` during training; BigGAN-PyTorch accumulates
16 batches). Published:
StudioGAN's ImageNet 128 table (docs/benchmarks.md): FID 20.57, IS 40.78 for this
recipe (its reproducibility table: FID 16.36); BigGAN-PyTorch's own checkpoint
(IS 97 with TF Inception, FID ~8.4) came from a batch of 2,048, another recipe.

Variants: `:smoke` (narrow networks at 128 px, a few steps).
"""

from configs import common


def get_config(arg=None):
  """Returns the config; `arg` is None or 'smoke'."""
  args = common.parse_arg(arg, smoke=False)
  config = common.tfds_image_config(name='biggan_imagenet128', dataset='imagenet2012',
                                    resolution=128, channels=3, num_steps=200000, arg=arg)
  common.biggan_model(config, name='biggan', resolution=128, ngf=96, ndf=96, z_dim=120,
                      num_classes=1000, smoke=args.smoke)
  config.loss.type = 'hinge'
  config.optim.g.update(name='adam', learning_rate=5e-5, b1=0.0, b2=0.999, eps=1e-6)
  config.optim.d.update(name='adam', learning_rate=2e-4, b1=0.0, b2=0.999, eps=1e-6)
  config.train.n_critic = 2
  config.train.ema_decay = 0.9999
  config.train.ema_batch_stats = True  # StudioGAN's Ema averages G's buffers too
  config.train.ema_start = 20000
  config.train.g_bn_stats_in_d_updates = False  # StudioGAN: G's BN averages move in G updates only
  config.data.random_flip = True
  if args.smoke:
    config.train.n_critic = 1
    config.train.ema_start = 0
  else:
    config.train.batch_size = 256
  return config
