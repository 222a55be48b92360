"""Model families and their name registry.

`build(config.model)` returns a (generator, discriminator) pair of flax linen modules;
the family is picked by `config.model.name`. Contracts (see DESIGN.md):

  G.apply(vars, z, train=bool, mutable=['batch_stats'] if train else False)
      z: f32[B, z_dim] -> f32[B, H, W, C] in [-1, 1]   (mlp: f32[B, channels])
  D.apply(vars, x, train=bool, mutable=...)
      x -> logits f32[B // pack] (no sigmoid)

BatchNorm statistics and spectral-norm power-iteration state share the `batch_stats`
collection; a model with neither has no such collection.

Families:
  dcgan   DCGAN of Radford et al. (also SNGAN-style D with spectral_norm=True,
          d_norm='none', and WGAN-GP-style D with d_norm='layer').
  mlp     MLPs for 2-D toy mixtures (PacGAN / minibatch-stddev switches).
"""

import math

import jax

from gan_jax.models import dcgan
from gan_jax.models import mlp

_FAMILIES = {
    'dcgan': dcgan.build,
    'mlp': mlp.build,
}


def names():
  """Registered model family names, sorted."""
  return sorted(_FAMILIES)


def get(name):
  """Returns the builder `build(model_config, *, bn_axis_name=None)` of a family.

  Raises:
    ValueError: for an unknown name, listing the known ones.
  """
  if name not in _FAMILIES:
    raise ValueError(f'Unknown model {name!r}; known models: {names()}. Set model.name.')
  return _FAMILIES[name]


def build(model_config, *, bn_axis_name=None):
  """Builds (generator, discriminator) for `model_config.name`.

  Args:
    model_config: the `config.model` ConfigDict (see configs/default.py).
    bn_axis_name: when set, every BatchNorm averages its batch statistics over this
      mapped axis (e.g. 'data' under shard_map / pmap): synchronised BatchNorm.

  Returns:
    (generator, discriminator) flax linen modules.
  """
  return get(model_config.name)(model_config, bn_axis_name=bn_axis_name)


def param_count(params):
  """Number of scalars in a pytree of arrays."""
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))
