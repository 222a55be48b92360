"""Every configuration field of gan_jax, with its default and a one-line meaning.

Experiment configs (`configs/*.py`) start from `get_config()` and change what
they need; any field can also be overridden on the command line, e.g.
`--config.train.num_steps=100` or `--config.seed=3`. A workdir's saved
`config.json` is read back on top of these defaults (`workdir.load_config`), so
a run saved before a field existed gets that field's default.
`check_types_and_counts` holds every value to its default's type and every count
to its least value (what no network, loader or step could run with).
"""

import ml_collections

from gan_jax import errors


def get_config():
  """Returns the default ConfigDict (a 32x32 DCGAN on the bundled digits)."""
  # One flat list of every field with its comment: long on purpose, so that a
  # reader finds every setting in one place.
  config = ml_collections.ConfigDict()
  config.name = 'default'           # experiment name
  config.seed = 0                   # seeds params, noise, and data shuffling

  # ---- model ---------------------------------------------------------------
  config.model = m = ml_collections.ConfigDict()
  m.name = 'dcgan'                  # registry name: see gan_jax.models.names()
  m.resolution = 32                 # output image side in px (dcgan: 8, 28, 32, 64, 128)
  m.channels = 1                    # image channels (1 or 3); for 'mlp' the data dim
  m.z_dim = 100                     # latent dimension; z ~ N(0, I)
  m.ngf = 64                        # generator base width (dcgan: channels of the last hidden layer)
  m.ndf = 64                        # discriminator base width (channels of the first conv)
  m.g_norm = 'batch'                # generator normalisation: 'batch' or 'none'
  m.d_norm = 'batch'                # discriminator normalisation: 'batch', 'layer' or 'none' (image_mlp: 'weight' or 'none')
  m.extra_layers = 0                # dcgan: extra stride-1 3x3 conv layers in G and D (WGAN code's n_extra_layers)
  m.spectral_norm = False           # spectral normalisation of every D weight (SNGAN)
  m.bn_momentum = 0.9               # BatchNorm running-average decay (PyTorch momentum 0.1)
  m.hidden = 512                    # mlp: hidden width of G and D; image_mlp: of G
  m.num_layers = 3                  # mlp: hidden layers of G and D; image_mlp: of G
  m.d_widths = '1000,500,250,250,250'  # image_mlp: D's hidden layer widths, input to output (Salimans et al. MNIST)
  m.pack = 1                        # PacGAN packing: D sees `pack` samples concatenated
  m.minibatch_std = False           # append the minibatch-stddev feature in D
  m.dtype = 'float32'               # compute dtype ('float32' or 'bfloat16'); params stay float32
  m.stride2_forms = 'custom'        # dcgan stride-2 convs: 'custom' (custom VJPs, fast on XLA:CPU) or 'xla' (XLA's own derivatives); same numbers in float32 (bf16: within its rounding)
  m.num_classes = 0                 # classes of a class-conditional model (0 = unconditional)
  m.d_cond = 'projection'           # conditional D: 'projection' (Miyato & Koyama), 'acgan' (auxiliary classifier) or 'semi_supervised' (K-class D, unconditional G; Salimans et al.)
  m.minibatch_discrimination = 0    # dcgan D: minibatch-discrimination kernels B (Salimans et al. 2016; 0 = off; over each device's rows)
  m.minibatch_kernel_dim = 5        # dcgan D: dimension C of each minibatch-discrimination kernel
  m.d_input_noise = 0.0             # dcgan / image_mlp D: std of Gaussian noise on its input in training (Salimans et al. 2016; 0 = off)
  m.d_hidden_noise = 0.0            # dcgan / image_mlp D: std of Gaussian noise on each hidden layer's output in training (0 = off)
  m.g_spectral_norm = False         # spectral normalisation of every G weight (SAGAN, BigGAN)
  m.bottom_width = 4                # resnet / biggan: side of G's first feature map
  m.upsample = 'bilinear'           # resnet G blocks' 2x upsampling: 'bilinear' (torch_mimicry) or 'nearest' (SNGAN Chainer code)
  m.shared_dim = 128                # biggan: dim of the shared class embedding feeding G's conditional BNs (0 = one-hot labels)
  m.hierarchical_z = True           # biggan: split z into one chunk for G's linear layer and one per G block
  m.attention_resolution = -1       # biggan / sagan: feature-map side of the self-attention block in G and D (0 = none, -1 = resolution // 2)

  # ---- loss ----------------------------------------------------------------
  config.loss = l = ml_collections.ConfigDict()
  l.type = 'non_saturating'         # minimax | non_saturating | wasserstein | hinge | least_squares
  l.label_smoothing = 0.0           # one-sided smoothing of real targets (BCE losses only)
  l.gp_weight = 0.0                 # WGAN-GP weight lambda (0 = off); per-sample only without BatchNorm in D (d_norm 'layer'/'none')
  l.r1_weight = 0.0                 # R1 penalty weight gamma; the loss adds gamma/2 * R1 (0 = off)
  l.hist_avg_weight = 0.0           # historical-averaging weight for G and D (0 = off)
  l.g_top_k = 1.0                   # top-k training: G's loss uses this share of the fakes D rates highest (1 = all)
  l.g_top_k_decay = 0.0             # top-k annealing (Sinha et al.: 0.99 per epoch): the share starts at 1 and is multiplied by this every g_top_k_decay_steps steps, down to g_top_k (0 = g_top_k from the first step)
  l.g_top_k_decay_steps = 0         # steps between two decays of the top-k share (an epoch: training examples / batch size)
  l.g_adversarial_weight = 1.0      # weight of G's adversarial loss (0 = feature matching only, as the semi-supervised GAN)
  l.d_adversarial_weight = 1.0      # weight of D's adversarial loss (0 = D trained on its class loss only: a supervised baseline)
  l.aux_weight = 1.0                # weight of D's class-logit loss: ACGAN (real + fake, and G's fakes), semi-supervised (labelled reals)
  l.entropy_weight = 0.0            # semi-supervised D: mean entropy of its K-class softmax on the real batch (entropy minimisation; 0 = off)
  l.feature_matching_weight = 0.0   # G: ||mean D features(real) - mean D features(fake)||^2 (Salimans et al. 2016; 0 = off)
  l.ortho_weight = 0.0              # BigGAN orthogonal regularisation of G's weights (0 = off; BigGAN: 1e-4)
  l.bcr_real_weight = 0.0           # bCR: ||D(x) - D(T(x))||^2 on the reals D's loss sees, T = augment.bcr_policy (0 = off)
  l.bcr_fake_weight = 0.0           # bCR on generated images (0 = off)
  # With an ACGAN D (model.d_cond='acgan') both bCR terms and zCR's D term also add the
  # mean squared difference of D's class logits, as StudioGAN does for its 'AC' D.
  l.lecam_weight = 0.0              # LeCam regularisation (Tseng et al. 2021): D's outputs on reals held below the average of its outputs on fakes, and vice versa (0 = off; StudioGAN CIFAR-10: 0.3)
  l.lecam_decay = 0.99              # decay of LeCam's running averages of D's mean outputs on reals and fakes
  l.lecam_start = 1000              # LeCam's averages decay from this step (before: the last batch's means) and its term is added after it (StudioGAN, the authors' code: 1000)
  l.zcr_d_weight = 0.0              # zCR (Zhao et al. 2021's ICR): mean (D(G(z)) - D(G(z + r n)))^2 in D's loss, n ~ N(0, I), r = zcr_radius (0 = off; StudioGAN BigGAN-ICR: 20)
  l.zcr_g_weight = 0.0              # zCR: -mean (G(z) - G(z + r n))^2 over pixels in G's loss, keeping nearby latents apart (images only; 0 = off; StudioGAN BigGAN-ICR: 0.5)
  l.zcr_radius = 0.05               # zCR's latent perturbation r (StudioGAN: 0.05; the paper: 0.03)

  # ---- optimisers ------------------------------------------------------------
  config.optim = o = ml_collections.ConfigDict()
  o.g = ml_collections.ConfigDict(dict(
      name='adam',                  # adam | rmsprop | sgd
      learning_rate=2e-4,           # generator learning rate
      b1=0.5, b2=0.999, eps=1e-8))  # Adam betas / epsilon (RMSprop uses `decay`=b2, eps)
  o.d = ml_collections.ConfigDict(dict(  # discriminator optimiser, the same fields as o.g
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
  # True: G's BatchNorm running averages also move in the G forwards of the D updates
  # (torch_mimicry, the PyTorch DCGAN example); False: in the G update's only, as
  # StudioGAN's `untrack_bn_statistics` (its BigGAN / SAGAN configs).
  t.g_bn_stats_in_d_updates = True
  t.ema_decay = 0.999               # EMA of G params used for sampling/eval (0 = off)
  t.ema_start = 0                   # step from which the EMA averages (before it, EMA = G's params; BigGAN: 20000)
  t.ema_batch_stats = False         # the EMA generator keeps its own EMA of G's BatchNorm statistics and spectral-norm vectors (StudioGAN, BigGAN-PyTorch); False: it samples with the trained G's
  t.remat = False                   # rematerialise G and D blocks in the backward pass (less memory, more compute)
  t.log_every = 50                  # steps between metric fetches / log lines
  t.sample_every = 500              # steps between sample grids (0 = only at the end)
  t.checkpoint_every = 500          # steps between checkpoints (and at the end)
  t.max_to_keep = 3                 # checkpoints kept on disk
  t.num_sample_images = 64          # images in each sample grid (fixed z)
  t.progress_bar = True             # tqdm progress bar on process 0

  # ---- data ------------------------------------------------------------------
  config.data = d = ml_collections.ConfigDict()
  d.source = 'digits'               # digits | tfds | image_folder | toy
  d.name = ''                       # tfds: dataset name (mnist, cifar10, celeb_a, ...)
  d.split = 'train'                 # tfds split / digits split ('train', 'test' or 'all')
  d.data_dir = ''                   # tfds data_dir ('' = TFDS default, $TFDS_DATA_DIR)
  d.path = ''                       # image_folder: root folder (searched recursively)
  d.crop = 'center'                 # image preprocessing: 'center' crop to square, 'celeba' (DCGAN crop), or 'none'
  d.toy = 'ring'                    # toy: 'ring' (8 modes) or 'grid' (25 modes)
  d.num_workers = 0                 # grain worker processes for decoding (0 = in-process)
  d.prefetch = 2                    # batches prefetched to the device
  d.cache = 'auto'                  # decoded-image cache: 'auto' (if it fits in RAM), 'memory' or 'none'
  d.train_examples = 0              # train on N examples of the split, class-balanced, picked by config.seed (0 = all)
  d.labels_per_class = 0            # with labels: keep N labels per class (seeded), the rest become -1 = unlabelled (0 = all)
  d.labelled_fraction = 0.0         # share of every D update's global batch (train.batch_size rows) drawn from the labelled examples, spread evenly (0 = batches drawn from all alike)
  d.random_flip = False             # mirror each real training image left-right with probability 1/2, in the step (StudioGAN's PRE.apply_rflip)

  # ---- differentiable augmentation (DiffAugment, Zhao et al. 2020) ---------------
  config.augment = a = ml_collections.ConfigDict()
  a.policy = ''                     # ops applied to every image D sees, e.g. 'color,translation,cutout' ('' = off)
  a.fill = 0.0                      # value translation / cutout write where they remove content (0: the reference's; -1: black)
  a.translation_ratio = 0.125       # largest 'translation' / 'reflect_translation' shift, a fraction of each side (the reference's 1/8)
  a.cutout_ratio = 0.5              # side of the 'cutout' square, a fraction of each side (the reference's 1/2)
  a.bcr_policy = ''                 # bCR's augmentation T, applied on top of `policy` ('' = the same ops as `policy`; CR's own: 'flip,reflect_translation')
  a.ada_target = 0.0                # ADA (Karras et al. 2020): each op of `policy` applied per image with probability p, adapted so that this share of augmented reals gets D's "real" verdict (0 = off, every op always; the paper: 0.6)
  a.ada_interval = 4                # ADA: D updates between adjustments of p (StyleGAN2-ADA, StudioGAN: 4, which counts G steps)
  a.ada_kimg = 500.0                # ADA: thousands of real images for p to move from 0 to 1 (StyleGAN2-ADA, StudioGAN: 500)

  # ---- parallelism -------------------------------------------------------------
  config.parallel = p = ml_collections.ConfigDict()
  p.mode = 'shard_map'              # 'shard_map' (jit over a 1-axis mesh) or 'pmap'
  p.sync_batch_stats = True         # BatchNorm statistics and D's minibatch std over the global batch (False: per device)
  p.cpu_conv_kernels = 'eigen'      # XLA:CPU convolution kernels: 'eigen' (faster for DCGAN) or 'xla_default' (YNNPACK)

  # ---- evaluation during training -------------------------------------------------
  config.eval = e = ml_collections.ConfigDict()
  e.every = 0                       # steps between evaluations (0 = only at the end; -1 = never)
  e.metrics = ''                    # comma list: proxy (digits/toy), fid, is, kid, pr, dc (density / coverage), cas, intra_fid, accuracy (D as a classifier)
  e.num_samples = 1000              # generated samples per evaluation
  e.num_reference = 0               # real images for reference statistics (0 = num_samples)
  e.reference_split = ''            # split of the reference images ('' = data.split)
  e.inception_weights = ''          # path to pt_inception-2015-12-05-6726825d.pth ('' = search)
  e.accuracy_split = 'test'         # labelled split the 'accuracy' metric classifies
  e.standing_stats = 0              # sample metrics with G's BatchNorm statistics averaged over N train-mode batches (BigGAN's standing statistics; 0 = off)
  return config


def flatten(tree, prefix=''):
  """{'a': {'b': 1}} -> {'a.b': 1} (lists and scalars are leaves)."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[prefix + key] = value
  return flat


# The largest seed: JAX's keys keep a seed's low 32 bits, so seed 2**32 would draw
# seed 0's numbers (config.seed and the tools' --seed flags alike).
MAX_SEED = 2**32 - 1

# (field, smallest allowed value): the counts, intervals and network sizes.
_MINIMA = (
    ('train.num_steps', 0), ('train.batch_size', 1), ('train.n_critic', 1),
    ('train.log_every', 1), ('train.sample_every', 0), ('train.checkpoint_every', 1),
    ('train.max_to_keep', 1), ('train.num_sample_images', 1), ('eval.every', -1),
    ('train.ema_start', 0), ('eval.num_samples', 2), ('eval.num_reference', 0),
    ('data.prefetch', 1), ('eval.standing_stats', 0),
    ('data.num_workers', 0), ('seed', 0),
    # Sizes of the networks (a family reads those it has).
    ('model.resolution', 1), ('model.channels', 1), ('model.z_dim', 1), ('model.ngf', 1),
    ('model.ndf', 1), ('model.hidden', 1), ('model.num_layers', 0), ('model.extra_layers', 0),
    ('model.minibatch_discrimination', 0), ('model.minibatch_kernel_dim', 1),
    ('model.bottom_width', 1))


def _get(config, dotted):
  value = config
  for name in dotted.split('.'):
    value = value[name]
  return value


def check_types_and_counts(config):
  """Raises ConfigError for a value of the wrong type or a count below its minimum:
  what no network, loader or step could run with (also checked on saved configs)."""
  _check_types(config)
  for field, minimum in _MINIMA:
    value = _get(config, field)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
      raise errors.ConfigError(f'config.{field} must be an integer >= {minimum}, got {value!r}.')


def _check_types(config):
  """Raises ConfigError for a field whose value is not of its default's type (a
  number where text belongs, or text where a number does: a config file's or a
  saved record's mistake that the command line's typed flags cannot make)."""
  expected = flatten(get_config().to_dict())
  for field, value in flatten(config.to_dict()).items():
    default = expected.get(field)
    if isinstance(default, bool):
      ok = isinstance(value, bool)
    elif isinstance(default, int):
      ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
      ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, str):
      ok = isinstance(value, str)
    else:
      continue
    if not ok:
      raise errors.ConfigError(
          f'config.{field} must be {_KIND[type(default)]}, got {value!r} (its default is '
          f'{default!r}).')


_KIND = {bool: 'True or False', int: 'an integer', float: 'a number', str: 'text'}
