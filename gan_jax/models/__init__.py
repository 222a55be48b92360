"""Model families and their name registry.

`build(config.model)` returns a (generator, discriminator) pair of flax linen modules;
the family is picked by `config.model.name`. Contracts (see DESIGN.md):

  G.apply(vars, z, labels=None, *, train, mutable=['batch_stats'] if train else False)
      z: f32[B, z_dim], labels: int32[B] in [0, num_classes) (conditional models only)
      -> f32[B, H, W, C] in [-1, 1]   (mlp: f32[B, channels])
  D.apply(vars, x, labels=None, *, train, mutable=...)
      x -> logits f32[B // pack] (no sigmoid); with 'intermediates' mutable, D also
      sows 'features' f32[B // pack, F] (its last hidden features, pooled) and, with
      an ACGAN or semi-supervised head (model.d_cond 'acgan' / 'semi_supervised'),
      'class_logits' f32[B, num_classes]. The semi-supervised D's logits are the
      logsumexp of its class logits, it ignores labels, and its G is unconditional.

BatchNorm statistics and spectral-norm power-iteration state share the `batch_stats`
collection; a model with neither has no such collection.

Each family is a module with `build(model_config, *, bn_axis_name=None, remat=False)`
and `data_shape(model_config) -> tuple`:
  dcgan   DCGAN of Radford et al. (also SNGAN-style D with spectral_norm=True,
          d_norm='none', and WGAN-GP-style D with d_norm='layer'); class-conditional
          with model.num_classes > 0.
  mlp     MLPs for 2-D toy mixtures (PacGAN / minibatch-stddev switches).
  image_mlp  MLP G and weight-normalised MLP D with Gaussian noise for small images:
          the semi-supervised GAN of Salimans et al. 2016 (MNIST).
  resnet  ResNet SNGAN / cGAN-PD of torch_mimicry (32, 48, 64, 128 px).
  biggan  BigGAN of Brock et al. as StudioGAN's big_resnet (32-512 px).
  sagan   SAGAN of Zhang et al. as StudioGAN trains it (its resnet + self-attention).
"""

import math

import jax
import jax.numpy as jnp

from gan_jax import errors
from gan_jax.models import biggan
from gan_jax.models import conditional
from gan_jax.models import dcgan
from gan_jax.models import image_mlp
from gan_jax.models import layers
from gan_jax.models import mlp
from gan_jax.models import resnet
from gan_jax.models import sagan

# name -> family module (with `build` and `data_shape`).
_FAMILIES = {
    'biggan': biggan,
    'dcgan': dcgan,
    'image_mlp': image_mlp,
    'mlp': mlp,
    'resnet': resnet,
    'sagan': sagan,
}


# D's Gaussian noise (Salimans et al. 2016).
_NOISE_FIELDS = ('d_input_noise', 'd_hidden_noise')
# Switches, the network each is part of, when each is on, and the families that
# implement it: every other family refuses it rather than silently training without it.
_SWITCHES = (
    ('d_input_noise / model.d_hidden_noise', 'discriminator', '0',
     lambda m: has_discriminator_noise(m), (dcgan, image_mlp)),
    ('pack', 'discriminator', '1', lambda m: m.pack != 1, (dcgan, mlp, resnet)),
    ('minibatch_std', 'discriminator', 'False', lambda m: bool(m.minibatch_std),
     (dcgan, mlp, resnet)),
    ('minibatch_discrimination', 'discriminator', '0',
     lambda m: bool(m.minibatch_discrimination), (dcgan,)),
    ('g_spectral_norm', 'generator', 'False', lambda m: bool(m.g_spectral_norm),
     (resnet, biggan, sagan)),
    ('extra_layers', 'network', '0', lambda m: m.extra_layers != 0, (dcgan,)),
    ('attention_resolution', 'network', '-1', lambda m: m.attention_resolution != -1,
     (biggan, sagan)),
    ('upsample', 'generator', "'bilinear'", lambda m: m.upsample != 'bilinear', (resnet,)),
    ('stride2_forms', 'network', "'custom'", lambda m: m.stride2_forms != 'custom', (dcgan,)),
)


# Size fields, the families that read each, and what sizes the same part in some of
# the others: a family that does not read a field refuses a value other than the
# default, which a sweep over it would otherwise run as identical trials.
_SIZE_FIELDS = (
    ('ngf', (dcgan, resnet, biggan, sagan), {'mlp': 'model.hidden', 'image_mlp': 'model.hidden'}),
    ('ndf', (dcgan, resnet, biggan, sagan), {'mlp': 'model.hidden',
                                             'image_mlp': 'model.d_widths'}),
    ('hidden', (mlp, image_mlp), {'dcgan': 'model.ngf / model.ndf',
                                  'resnet': 'model.ngf / model.ndf',
                                  'biggan': 'model.ngf / model.ndf',
                                  'sagan': 'model.ngf / model.ndf'}),
    ('num_layers', (mlp, image_mlp), {}),
    ('d_widths', (image_mlp,), {'mlp': 'model.hidden', 'dcgan': 'model.ndf',
                                'resnet': 'model.ndf', 'biggan': 'model.ndf',
                                'sagan': 'model.ndf'}),
    ('resolution', (dcgan, resnet, biggan, sagan, image_mlp), {}),
    ('bottom_width', (resnet, biggan, sagan), {}),
    ('shared_dim', (biggan,), {}),
    ('hierarchical_z', (biggan,), {}),
)


def check_fields_read(model_config, default_model_config):
  """A ConfigError for a size field `model_config.name`'s family does not read, set
  to another value than in `default_model_config` (gan_jax.defaults' config.model),
  and for a minibatch-discrimination kernel size with the layer off.

  Checked when a run or a benchmark starts (`config_check.validate`), not when a
  saved run is loaded, so runs made before this check still sample and evaluate.
  """
  family = _family(model_config.name)
  for field, families, sized_by in _SIZE_FIELDS:
    value, default = model_config[field], default_model_config[field]
    if family in families or value == default:
      continue
    readers = sorted(n for n, f in _FAMILIES.items() if f in families)
    instead = sized_by.get(model_config.name)
    use = f' (its widths are {instead})' if instead else ''
    raise errors.ConfigError(
        f'model.{field}={value!r} is read by the {", ".join(readers)} families only: '
        f'model.name={model_config.name!r}{use} would train the same networks as with the '
        f'default {default!r}. Leave model.{field} at {default!r}.')
  if (not model_config.minibatch_discrimination and model_config.minibatch_kernel_dim !=
      default_model_config.minibatch_kernel_dim):
    on = ('turn the layer on (e.g. --config.model.minibatch_discrimination=100), or '
          if family is dcgan else f'the {model_config.name} family has no such layer; ')
    raise errors.ConfigError(
        f'model.minibatch_kernel_dim={model_config.minibatch_kernel_dim} sizes the '
        'minibatch-discrimination kernels, and model.minibatch_discrimination is 0 (off): '
        f'{on}leave the size at its default {default_model_config.minibatch_kernel_dim}.')
  if (family is biggan and not generator_classes(model_config) and
      model_config.shared_dim != default_model_config.shared_dim):
    raise errors.ConfigError(
        f'model.shared_dim={model_config.shared_dim} sizes the shared class embedding, and '
        'this BigGAN is unconditional (model.num_classes=0): it would train the same '
        f'networks as with the default {default_model_config.shared_dim}; leave it there.')


def reads_field(model_name, field):
  """Whether family `model_name` reads the size field `field` (one of `_SIZE_FIELDS`)."""
  family = _family(model_name)
  return any(family in families for name, families, _ in _SIZE_FIELDS if name == field)


def names():
  """Registered model family names, sorted."""
  return sorted(_FAMILIES)


def _family(name):
  if name not in _FAMILIES:
    raise errors.ConfigError(f'Unknown model {name!r}; known models: {names()}. Set model.name.')
  return _FAMILIES[name]


def get(name):
  """Returns the builder `build(model_config, *, bn_axis_name=None, remat=False)` of a family.

  Raises:
    ConfigError: for an unknown name, listing the known ones.
  """
  return _family(name).build


def build(model_config, *, bn_axis_name=None, remat=False):
  """Builds (generator, discriminator) for `model_config.name`.

  Args:
    model_config: the `config.model` ConfigDict (see gan_jax/defaults.py).
    bn_axis_name: when set, every BatchNorm averages its batch statistics over this
      mapped axis (e.g. 'data' under shard_map / pmap): synchronised BatchNorm.
    remat: rematerialise G's and D's layers / blocks in the backward pass
      (`config.train.remat`): less activation memory, more compute, the same
      parameters, statistics and numbers.

  Returns:
    (generator, discriminator) flax modules.

  Raises:
    ConfigError: an unknown name or a bad field of the family.
  """
  family = _family(model_config.name)
  layers.check_stride2_forms(model_config.stride2_forms)
  z_dim = model_config.z_dim
  if not isinstance(z_dim, int) or isinstance(z_dim, bool) or z_dim < 1:
    raise errors.ConfigError(f'model.z_dim must be an integer >= 1 (the latent size), got '
                             f'{z_dim!r}.')
  for name in _NOISE_FIELDS:
    if model_config.get(name, 0.0) < 0:
      raise errors.ConfigError(f'model.{name} must be >= 0 (a standard deviation), '
                               f'got {model_config[name]}.')
  for field, network, off, is_on, families in _SWITCHES:
    if is_on(model_config) and family not in families:
      having = sorted(n for n, f in _FAMILIES.items() if f in families)
      implemented = ' and '.join([', '.join(having[:-1]), having[-1]] if len(having) > 1
                                 else having)
      raise errors.ConfigError(
          f'model.{field} is implemented for the {implemented} {network}s only; '
          f'model.name={model_config.name!r} would ignore it: set it to {off} (a family '
          'of your own that implements it: list it in gan_jax/models/__init__.py\'s '
          '_SWITCHES).')
  return family.build(model_config, bn_axis_name=bn_axis_name, remat=remat)


def has_discriminator_noise(model_config):
  """Whether D adds Gaussian noise in training (model.d_input_noise / d_hidden_noise > 0)."""
  return any(model_config.get(name, 0.0) > 0 for name in _NOISE_FIELDS)


def data_shape(model_config):
  """Shape of one example: (H, W, C) for image families, (channels,) for 'mlp'."""
  return tuple(_family(model_config.name).data_shape(model_config))


def generator_classes(model_config):
  """K, the classes G is conditioned on (labels int32 in [0, K)): model.num_classes,
  or 0 (an unconditional G) when there are none or D's head is 'semi_supervised'
  (the semi-supervised GAN's labels train D only)."""
  return conditional.generator_classes(model_config)


def generator_is_conditional(model_config):
  """Whether G takes labels (`generator_classes(model_config) > 0`)."""
  return bool(generator_classes(model_config))


def check_loss(model_config, loss_config):
  """Raises ConfigError (naming loss.type or loss.entropy_weight) when the loss does not
  suit D's head."""
  conditional.check_loss(model_config, loss_config)


def variables(params, batch_stats):
  """The variables dict that `G.apply` / `D.apply` take.

  Args:
    params: the module's parameters (a pytree).
    batch_stats: its BatchNorm statistics and spectral-norm state, or {} / None
      for a model without that collection (flax refuses an empty collection it
      does not declare).

  Returns:
    {'params': params} plus {'batch_stats': batch_stats} when there are any.
  """
  out = {'params': params}
  if batch_stats:
    out['batch_stats'] = batch_stats
  return out


# The leaves of a BatchNorm layer's running averages in `batch_stats` (flax's names);
# the collection's other leaves are spectral-norm state ('u', 'sigma').
_BATCH_NORM_LEAVES = ('mean', 'var')


def is_batch_norm_leaf(path):
  """Whether a `jax.tree_util` key path in a `batch_stats` pytree names a BatchNorm
  running average (mean or var), not spectral-norm state."""
  return getattr(path[-1], 'key', None) in _BATCH_NORM_LEAVES


def count_batch_norm_leaves(batch_stats):
  """The number of BatchNorm mean / var arrays in a `batch_stats` pytree (0: no BatchNorm)."""
  return sum(is_batch_norm_leaf(path)
             for path, _ in jax.tree_util.tree_leaves_with_path(batch_stats))


def with_batch_norm_averages_of(batch_stats, source):
  """`batch_stats` with its BatchNorm running averages taken from `source`.

  Args:
    batch_stats: a `batch_stats` pytree (e.g. after a train-mode call).
    source: a pytree of the same structure (e.g. the statistics before that call).

  Returns:
    A pytree like `batch_stats`: BatchNorm means and variances from `source`, every
    other leaf (spectral-norm state) from `batch_stats`.
  """
  return jax.tree_util.tree_map_with_path(
      lambda path, new, old: old if is_batch_norm_leaf(path) else new, batch_stats, source)


def param_count(params):
  """Number of scalars in a pytree of arrays (or of shape-dtype structs)."""
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))


def count_params(model_config):
  """Trainable parameters of the pair `model_config` builds, without allocating them.

  Counts the 'params' collection (what the optimisers update), not BatchNorm
  statistics or spectral-norm vectors; shapes come from `jax.eval_shape` of `init`.

  Returns:
    (generator_count, discriminator_count) ints.
  """
  generator, discriminator = build(model_config)
  batch = 2 * model_config.pack
  labels = jnp.zeros((batch,), jnp.int32) if model_config.num_classes else None

  def init():
    key_g, key_d = jax.random.split(jax.random.key(0))
    g_vars = generator.init(key_g, jnp.zeros((batch, model_config.z_dim)), labels,
                            train=False)
    x = jnp.zeros((batch,) + data_shape(model_config))
    return g_vars, discriminator.init(key_d, x, labels, train=False)

  g_vars, d_vars = jax.eval_shape(init)
  return param_count(g_vars['params']), param_count(d_vars['params'])
