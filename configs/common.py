"""Helpers shared by the experiment configs (not an experiment itself).

  parse_arg          the `:VARIANT` argument of `--config=NAME:VARIANT`
  shrink_for_smoke   turn any config into a seconds-long run
  tfds_image_config  a GAN on a TFDS image dataset (mnist, svhn, cifar10, celeba, ...)
  sngan_model        the ResNet SNGAN networks of torch_mimicry at a resolution
  biggan_model       StudioGAN's BigGAN / SAGAN networks
  toy_config         the MLP GAN of the 2-D ring / grid benchmarks
"""

import ml_collections

from gan_jax import defaults
from gan_jax import errors


class UnknownVariant(errors.ConfigError):
  """A config argument names a variant the config does not have; `known` lists its
  variants (name -> default: False for a switch, else the default value)."""

  # The message comes first and `known` has a default: absl re-raises flag errors as
  # `type(e)(message)`.
  def __init__(self, message, known=()):
    super().__init__(message)
    self.known = dict(known)


# The spellings of a variant switched on or off: `:smoke`, `:smoke=true`, `:smoke=0`.
_TRUE, _FALSE = ('1', 'true', 'yes', 'on'), ('0', 'false', 'no', 'off')


def parse_arg(arg, **known):
  """Parses a config argument `"a=1,b=x"` or bare variant names `"smoke,baseline"`.

  Args:
    arg: the text after `:` in `--config=NAME:ARG`, or None.
    **known: the known keys and their default values (types are kept).

  Returns:
    A ConfigDict with every key of `known`; a bare word `w` sets `w=True`.

  Raises:
    UnknownVariant: for a key that is not in `known` (listing the known ones).
    ConfigError: a value that is not of its default's type.
  """
  result = ml_collections.ConfigDict(dict(known))
  for item in (arg or '').split(','):
    item = item.strip()
    if not item:
      continue
    key, has_value, value = item.partition('=')
    if key not in known:
      raise UnknownVariant(f'unknown config variant {key!r}; known: {sorted(known)} '
                           '(variants follow the name: --config=NAME:VARIANT,...)', known)
    default = known[key]
    if not has_value:
      result[key] = True
    elif isinstance(default, bool):
      if value.lower() not in _TRUE + _FALSE:
        raise errors.ConfigError(f'config variant {key}={value!r}: {key} is on or off; write '
                                 f'{key} (on), or {key}=true / {key}=false.')
      result[key] = value.lower() in _TRUE
    elif default is None:
      result[key] = value
    else:
      try:
        result[key] = type(default)(value)
      except ValueError:
        raise errors.ConfigError(f'config variant {key}={value!r}: {key} takes a value like '
                                 f'{key}={default} ({type(default).__name__})') from None
  return result


def shrink_for_smoke(config, *, batch_size=8, num_steps=4, width=8):
  """Turns a config into a smoke run (tiny widths, a few steps; compile-bound on CPU).

  The log, sample and checkpoint intervals follow `train.num_steps` (they are
  references to it), so `--config.train.num_steps=1000` on a smoke config logs
  about three times and checkpoints about twice, not every few steps.

  Args:
    config: the ConfigDict to change in place.
    batch_size: global batch of the smoke run.
    num_steps: train steps.
    width: G and D base widths (model.ngf / model.ndf of the families that read them;
      an MLP config sizes its own model.hidden).

  Returns:
    `config`, for chaining.
  """
  if config.model.name not in ('mlp', 'image_mlp'):
    config.model.ngf = width
    config.model.ndf = width
  config.model.z_dim = 16
  config.train.batch_size = batch_size
  t = config.train
  t.num_steps = ml_collections.FieldReference(num_steps)
  t.log_every = t.get_ref('num_steps') // 3 + 1
  t.sample_every = t.get_ref('num_steps') // 2 + 1
  t.checkpoint_every = t.get_ref('num_steps') // 2 + 1
  t.num_sample_images = batch_size
  t.progress_bar = False
  config.eval.every = -1
  config.eval.metrics = ''
  return config


def tfds_image_config(*, name, dataset, resolution, channels, num_steps, arg=None,
                      **variants):
  """A DCGAN config on a TFDS image dataset, with the `smoke` variant.

  Args:
    name: experiment name.
    dataset: TFDS name (mnist, cifar10, svhn_cropped, celeb_a, ...).
    resolution: image side in px.
    channels: 1 or 3.
    num_steps: train steps of the full run.
    arg: the config argument ('smoke', and the keys of `variants`).
    **variants: further variant names the config accepts, with their defaults.

  Returns:
    A ConfigDict evaluated with FID / IS every 5000 steps on 10k samples; callers
    parse their own variants again with `parse_arg`.
  """
  args = parse_arg(arg, smoke=False, **variants)
  config = defaults.get_config()
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


def sngan_model(config, *, resolution, num_classes=0, d_cond='projection', smoke=False):
  """Sets torch_mimicry's ResNet SNGAN networks (sngan_<R>, cgan_pd_<R>) on a config.

  Widths, z_dim and bottom width are mimicry's defaults: at 32 px ngf 256 / ndf 128
  / nz 128 / bottom 4; at 48 px ngf 512 / ndf 1024 / bottom 6; at 64 and 128 px
  ngf 1024 / ndf 1024 / bottom 4. Spectral norm on every D layer, BatchNorm in G.
  """
  widths = {32: (256, 128, 4), 48: (512, 1024, 6), 64: (1024, 1024, 4), 128: (1024, 1024, 4)}
  ngf, ndf, bottom = widths[resolution]
  config.model.update(dict(name='resnet', resolution=resolution, ngf=ngf, ndf=ndf,
                           z_dim=128, bottom_width=bottom, spectral_norm=True, d_norm='none',
                           g_norm='batch', num_classes=num_classes, d_cond=d_cond))
  if smoke:  # the narrowest widths the layouts allow
    config.model.ngf = 16 if resolution == 32 else 32
    config.model.ndf = 16 if resolution == 32 else 32
  return config


def sngan_training(config):
  """torch_mimicry's SNGAN training: hinge loss, Adam 2e-4 (0, 0.9), 5 D steps per G
  step, learning rate decayed linearly to 0 over the run, no EMA."""
  config.loss.type = 'hinge'
  for opt in (config.optim.g, config.optim.d):
    opt.update(name='adam', learning_rate=2e-4, b1=0.0, b2=0.9)
  config.optim.schedule = 'linear'
  config.optim.decay_start = 0.0
  config.train.n_critic = 5
  config.train.ema_decay = 0.0
  return config


def biggan_model(config, *, name, resolution, ngf, ndf, z_dim, num_classes, smoke=False,
                 shared_dim=128):
  """Sets StudioGAN's BigGAN ('biggan') or SAGAN ('sagan') networks on a config."""
  config.model.update(dict(name=name, resolution=resolution, ngf=ngf, ndf=ndf, z_dim=z_dim,
                           num_classes=num_classes, d_cond='projection', shared_dim=shared_dim,
                           bottom_width=4, g_norm='batch', d_norm='none', spectral_norm=True,
                           g_spectral_norm=True))
  if smoke:  # BigGAN's deep channel multipliers make 128 px large even at small widths
    config.model.ngf = config.model.ndf = 8 if resolution >= 128 else 16
  return config


def toy_config(*, mixture, smoke):
  """The MLP GAN on a 2-D Gaussian mixture ('ring' or 'grid'), before tuning.

  The plain non-saturating GAN of the mode-collapse benchmarks (the `:baseline`
  rows): 3 hidden layers of 128, no normalisation, z_dim 2, Adam 1e-3 (0.5,
  0.999), batch 512, no EMA; samples and checkpoints only at the end.
  """
  config = defaults.get_config()
  config.name = f'toy_{mixture}'
  config.data.source = 'toy'
  config.data.toy = mixture
  config.model.name = 'mlp'
  config.model.channels = 2
  config.model.z_dim = 2
  config.model.hidden = 128
  config.model.num_layers = 3
  config.model.g_norm = 'none'
  config.model.d_norm = 'none'
  config.loss.type = 'non_saturating'
  config.optim.g.learning_rate = 1e-3
  config.optim.d.learning_rate = 1e-3
  config.optim.g.b1 = config.optim.d.b1 = 0.5
  config.train.batch_size = 512
  config.train.ema_decay = 0.0
  t = config.train
  t.num_steps = ml_collections.FieldReference(10000)
  t.log_every = 500
  # Derived references (`+ 0`), not the reference itself: setting one of these
  # intervals must not set num_steps.
  t.sample_every = t.get_ref('num_steps') + 0
  t.checkpoint_every = t.get_ref('num_steps') + 0
  t.max_to_keep = 1
  t.num_sample_images = 2500
  config.eval.every = -1
  config.eval.metrics = 'proxy'
  config.eval.num_samples = 2500
  if smoke:
    config.model.hidden = 16
    config.train.batch_size = 64
    config.train.num_sample_images = 64
    config.train.num_steps = 4
    config.train.log_every = 2
    config.train.progress_bar = False
  return config


def semi_supervised(config, *, supervised_only):
  """Makes `config` the semi-supervised GAN of Salimans et al. 2016 (in place).

  D gets K class logits with the fake class's logit fixed at 0 (`d_cond=
  'semi_supervised'`); G is trained by feature matching only. The networks are the
  caller's (dcgan or image_mlp). `supervised_only` keeps the network and the labelled
  subset but drops every GAN term and the entropy term (`loss.entropy_weight`,
  which uses the unlabelled images): the baseline.
  """
  m, l = config.model, config.loss
  m.num_classes = 10
  m.d_cond = 'semi_supervised'
  l.type = 'non_saturating'
  l.aux_weight = 1.0
  l.feature_matching_weight = 1.0
  l.g_adversarial_weight = 0.0
  config.eval.every = -1
  config.eval.metrics = ''
  if supervised_only:
    config.name += '_supervised_only'
    l.d_adversarial_weight = 0.0
    l.feature_matching_weight = 0.0
    l.entropy_weight = 0.0
  return config
