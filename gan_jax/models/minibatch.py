"""Minibatch discrimination (Salimans et al. 2016, "Improved Techniques for Training
GANs", section 3.2): D sees how close each example is to the others of its batch.

For features f(x_i) in R^A and a learned tensor T in R^{A x B x C}:

  M_i = f(x_i) T                                   (B x C, one row per kernel b)
  c_b(x_i, x_j) = exp(-||M_{i,b} - M_{j,b}||_1)
  o(x_i)_b = sum_j c_b(x_i, x_j)                   (j over the whole batch, i included)

and o(x_i) in R^B is concatenated to the features before D's output layer. A batch
of near-identical samples (mode collapse) gets large o, which D learns to reject.

The sum runs over the rows D is applied to: D sees real and fake batches in
separate calls, so o compares reals with reals and fakes with fakes, and under
`shard_map` / `pmap` it runs over the device's own rows (the global batch is not
gathered). The authors' code leaves out the j = i term (it is the constant 1
here, absorbed by the next layer). T is initialised N(0, 0.05^2) as theirs.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from gan_jax import errors
from gan_jax.models import layers


def validate(model_config):
  """Checks `model.minibatch_discrimination` (kernels B >= 0) and `model.minibatch_kernel_dim`.

  Raises:
    ConfigError: naming the bad field.
  """
  for name, minimum in (('minibatch_discrimination', 0), ('minibatch_kernel_dim', 1)):
    value = model_config[name]
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
      raise errors.ConfigError(f'model.{name} must be an integer >= {minimum}, got {value!r}.')


def minibatch_features(m):
  """o(x_i)_b = sum_j exp(-||M_{i,b} - M_{j,b}||_1) for projected features.

  Args:
    m: f[N, B, C], the rows M_i = f(x_i) T.

  Returns:
    f32[N, B], each entry in [1, N] (the j = i term is 1).
  """
  m = m.astype(jnp.float32)
  distances = jnp.sum(jnp.abs(m[:, None] - m[None, :]), axis=-1)  # [N, N, B]
  return jnp.sum(jnp.exp(-distances), axis=1)


class MinibatchDiscrimination(nn.Module):
  """The tensor-T layer: features f[N, A] -> o f32[N, num_kernels].

  Attributes:
    num_kernels: B, the number of closeness features.
    kernel_dim: C, the dimension each kernel projects to.
    dtype: compute dtype of the projection; T is float32 and so is the output.
  """
  num_kernels: int
  kernel_dim: int = 5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features):
    """features: f[N, A] (flattened) -> f32[N, num_kernels]; see `minibatch_features`."""
    kernel = self.param('kernel', layers.normal_init(0.05),
                        (features.shape[-1], self.num_kernels * self.kernel_dim), jnp.float32)
    m = jnp.dot(features.astype(self.dtype), kernel.astype(self.dtype))
    return minibatch_features(m.reshape(features.shape[0], self.num_kernels, self.kernel_dim))


def append_to_map(h, o):
  """Appends per-example features to a feature map as constant channels.

  A linear layer (or a VALID conv over the whole map) on the result sees o as
  extra inputs: the concatenation of the flattened map and o, up to a
  reparameterisation of the weights.

  Args:
    h: f[N, H, W, F].
    o: f[N, B].

  Returns:
    f[N, H, W, F + B] in h's dtype.
  """
  tiled = jnp.broadcast_to(o[:, None, None, :].astype(h.dtype), h.shape[:3] + (o.shape[-1],))
  return jnp.concatenate([h, tiled], axis=-1)
