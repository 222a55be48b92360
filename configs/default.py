"""Every configuration field of gan_jax, with its default and a one-line meaning.

COMMAND: (not run directly) experiment files call `get_config()` here and override fields.

Experiment configs (`configs/dcgan_digits.py` etc.) start from this and change what
they need; any field can also be overridden on the command line, for example
`--config.train.num_steps=100` or `--config.seed=3`.
"""

import ml_collections


def parse_arg(arg, **defaults):
  """Parses a config argument `"a=1,b=x"` or a bare variant name `"smoke"`.

  Args:
    arg: the text after `:` in `--config=configs/x.py:ARG`, or None.
    **defaults: the known keys and their default values (types are kept).

  Returns:
    A ConfigDict with every key of `defaults`; a bare word `w` sets `w=True`.

  Raises:
    ValueError: for a key that is not in `defaults`.
  """
  result = ml_collections.ConfigDict(dict(defaults))
  if not arg:
    return result
  for item in arg.split(','):
    item = item.strip()
    if not item:
      continue
    key, _, value = item.partition('=')
    if key not in defaults:
      raise ValueError(
          f'Unknown config argument {key!r}; known: {sorted(defaults)}. '
          'Use e.g. --config=configs/dcgan_digits.py:smoke')
    default = defaults[key]
    if not _:
      result[key] = True
    elif isinstance(default, bool):
      result[key] = value.lower() in ('1', 'true', 'yes')
    elif default is None:
      result[key] = value
    else:
      result[key] = type(default)(value)
  return result


def get_config():
  """Returns the default ConfigDict (a 32x32 DCGAN on bundled digits)."""
  config = ml_collections.ConfigDict()
  config.name = 'default'           # experiment name; the workdir defaults to runs/<name>
  config.seed = 0                   # seeds params, noise, and data shuffling

  # ---- model ---------------------------------------------------------------
  config.model = m = ml_collections.ConfigDict()
  m.name = 'dcgan'                  # registry name: see gan_jax.models.names()
  m.resolution = 32                 # output image side in px (dcgan: 28, 32, 64, 128)
  m.channels = 1                    # image channels (1 or 3); for 'mlp' the data dim
  m.z_dim = 100                     # latent dimension; z ~ N(0, I)
  m.ngf = 64                        # generator base width (dcgan: channels of the last hidden layer)
  m.ndf = 64                        # discriminator base width (channels of the first conv)
  m.g_norm = 'batch'                # generator normalisation: 'batch' or 'none'
  m.d_norm = 'batch'                # discriminator normalisation: 'batch', 'layer' or 'none'
  m.extra_layers = 0                # dcgan: extra stride-1 3x3 conv layers in G and D (WGAN code's n_extra_layers)
  m.spectral_norm = False           # spectral normalisation of every D weight (SNGAN)
  m.bn_momentum = 0.9               # BatchNorm running-average decay (PyTorch momentum 0.1)
  m.hidden = 512                    # mlp: hidden width of G and D
  m.num_layers = 3                  # mlp: hidden layers of G and D
  m.pack = 1                        # PacGAN packing: D sees `pack` samples concatenated
  m.minibatch_std = False           # append the minibatch-stddev feature in D
  m.dtype = 'float32'               # compute dtype ('float32' or 'bfloat16'); params stay float32

  # ---- loss ----------------------------------------------------------------
  config.loss = l = ml_collections.ConfigDict()
  l.type = 'non_saturating'         # minimax | non_saturating | wasserstein | hinge | least_squares
  l.label_smoothing = 0.0           # one-sided smoothing of real targets (BCE losses only)
  l.gp_weight = 0.0                 # WGAN-GP weight lambda (0 = off)
  l.r1_weight = 0.0                 # R1 penalty weight gamma; the loss adds gamma/2 * R1 (0 = off)
  l.hist_avg_weight = 0.0           # historical-averaging weight for G and D (0 = off)
  l.g_top_k = 1.0                   # top-k training: G's loss uses this share of the fakes D rates highest (1 = all)

  # ---- optimisers ------------------------------------------------------------
  config.optim = o = ml_collections.ConfigDict()
  o.g = ml_collections.ConfigDict(dict(
      name='adam',                  # adam | rmsprop | sgd
      learning_rate=2e-4,           # generator learning rate
      b1=0.5, b2=0.999, eps=1e-8))  # Adam betas / epsilon (RMSprop uses `decay`=b2, eps)
  o.d = ml_collections.ConfigDict(dict(
      name='adam', learning_rate=2e-4, b1=0.5, b2=0.999, eps=1e-8))
  o.weight_clip = 0.0               # clip D params to [-c, c] after each D update (WGAN; 0 = off)
  o.schedule = 'constant'           # learning-rate schedule of G and D: 'constant', 'linear' or 'cosine'
  o.decay_start = 0.5               # fraction of training after which 'linear'/'cosine' decay to 0 starts

  # ---- training --------------------------------------------------------------
  config.train = t = ml_collections.ConfigDict()
  t.num_steps = 2000                # G updates (each preceded by n_critic D updates)
  t.batch_size = 64                 # global batch size per D update (split over all devices)
  t.n_critic = 1                    # D updates per G update
  # True: one G forward per iteration; the G update reuses the D update's fake batch
  # (same z) through G's saved VJP, as the PyTorch DCGAN example does (needs n_critic 1).
  # False: the G update draws a fresh z and runs G again.
  t.reuse_fake = False
  t.ema_decay = 0.999               # EMA of G params used for sampling/eval (0 = off)
  t.log_every = 50                  # steps between metric fetches / log lines
  t.sample_every = 500              # steps between sample grids
  t.checkpoint_every = 500          # steps between checkpoints (and at the end)
  t.max_to_keep = 3                 # checkpoints kept on disk
  t.num_sample_images = 64          # images in each sample grid (fixed z)
  t.progress_bar = True             # tqdm progress bar on process 0

  # ---- data ------------------------------------------------------------------
  config.data = d = ml_collections.ConfigDict()
  d.source = 'digits'               # digits | tfds | image_folder | toy
  d.name = ''                       # tfds: dataset name (mnist, cifar10, celeb_a, ...)
  d.split = 'train'                 # tfds split / digits split ('train' or 'test')
  d.data_dir = ''                   # tfds data_dir ('' = TFDS default, $TFDS_DATA_DIR)
  d.path = ''                       # image_folder: root folder (searched recursively)
  d.crop = 'center'                 # image preprocessing: 'center' crop to square, 'celeba' (DCGAN crop), or 'none'
  d.toy = 'ring'                    # toy: 'ring' (8 modes) or 'grid' (25 modes)
  d.num_workers = 0                 # grain worker processes for decoding (0 = in-process)
  d.prefetch = 2                    # batches prefetched to the device
  d.cache = 'auto'                  # decoded-image cache: 'auto' (if it fits in RAM), 'memory' or 'none'

  # ---- parallelism -------------------------------------------------------------
  config.parallel = p = ml_collections.ConfigDict()
  p.mode = 'shard_map'              # 'shard_map' (jit over a 1-axis mesh) or 'pmap'
  p.sync_batch_stats = True         # BatchNorm statistics over the global batch (False: per device)
  p.cpu_conv_kernels = 'eigen'      # XLA:CPU convolution kernels: 'eigen' (faster for DCGAN) or 'xla_default' (YNNPACK)

  # ---- evaluation during training -------------------------------------------------
  config.eval = e = ml_collections.ConfigDict()
  e.every = 0                       # steps between evaluations (0 = only at the end; -1 = never)
  e.metrics = ''                    # comma list: proxy (digits/toy), fid, is, kid, pr
  e.num_samples = 1000              # generated samples per evaluation
  e.num_reference = 0               # real images for reference statistics (0 = num_samples)
  e.reference_split = ''            # split of the reference images ('' = data.split)
  e.inception_weights = ''          # path to pt_inception-2015-12-05-6726825d.pth ('' = search)
  return config


def shrink_for_smoke(config, *, batch_size=8, num_steps=4):
  """Turns a config into a seconds-long smoke run (tiny widths, a few steps).

  Args:
    config: the ConfigDict to change in place.
    batch_size: global batch of the smoke run.
    num_steps: train steps; logs every 2 steps, samples and checkpoints at half way
      and at the end.

  Returns:
    `config`, for chaining.
  """
  config.model.ngf = 8
  config.model.ndf = 8
  config.model.z_dim = 16
  config.train.batch_size = batch_size
  config.train.num_steps = num_steps
  config.train.log_every = 2
  config.train.sample_every = num_steps // 2
  config.train.checkpoint_every = num_steps // 2
  config.train.num_sample_images = batch_size
  config.train.progress_bar = False
  config.eval.every = -1
  config.eval.metrics = ''
  return config


def tfds_dcgan_config(*, name, dataset, resolution, channels, num_steps, arg=None):
  """A DCGAN config on a TFDS image dataset, with the `smoke` variant.

  Args:
    name: experiment name (the workdir defaults to runs/<config file>).
    dataset: TFDS name (mnist, cifar10, svhn_cropped, celeb_a, ...).
    resolution: image side in px.
    channels: 1 or 3.
    num_steps: train steps of the full run.
    arg: the config argument (None or 'smoke').

  Returns:
    A ConfigDict evaluated with FID / IS every 5000 steps on 10k samples.
  """
  args = parse_arg(arg, smoke=False)
  config = get_config()
  config.name = name
  config.data.source = 'tfds'
  config.data.name = dataset
  config.data.split = 'train'
  config.model.name = 'dcgan'
  config.model.resolution = resolution
  config.model.channels = channels
  config.train.batch_size = 128
  config.train.num_steps = num_steps
  config.train.log_every = 100
  config.train.sample_every = 1000
  config.train.checkpoint_every = 2000
  config.eval.every = 5000
  config.eval.metrics = 'fid,is'
  config.eval.num_samples = 10000
  if args.smoke:
    shrink_for_smoke(config)
  return config
