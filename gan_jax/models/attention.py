"""Self-attention block of SAGAN (Zhang et al. 2019) as BigGAN and StudioGAN use it.

Also home of `sn_conv` / `sn_dense`, the spectrally normalised, orthogonally
initialised layers that this block and the `biggan` / `sagan` families are built from.

The block, on a feature map x f[B, H, W, C] (N = H * W positions):

  theta = x W_theta                      f[B, N, C/8]     queries
  phi   = maxpool2x2(x W_phi)            f[B, N/4, C/8]   keys
  g     = maxpool2x2(x W_g)              f[B, N/4, C/2]   values
  A     = softmax_rows(theta phi^T)      f[B, N, N/4]     each row sums to 1
  out   = x + gamma * (A g) W_o          f[B, H, W, C]

All four W are 1x1 convolutions without bias, spectrally normalised; the 2x2 max
pooling of keys and values (BigGAN's change to SAGAN) quarters the attention map.
gamma is a learned scalar initialised to 0, so the block starts as the identity.
The parameter count equals StudioGAN's `ops.SelfAttention`: C^2 / 8 * 2 + C^2 / 2 * 2 + 1.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax import errors
from gan_jax.models import compute
from gan_jax.models import layers

# StudioGAN's `g_init = d_init = 'ortho'`: torch.nn.init.orthogonal_ on every conv,
# linear and embedding weight (biases 0). flax's orthogonal init of a [..., in, out]
# kernel makes the same matrix (flattened to [fan_in, out]) orthogonal.
orthogonal_init = nn.initializers.orthogonal()


def sn_conv(x, features, kernel_size, *, train, use_bias, dtype, name):
  """Spectrally normalised stride-1 'same' convolution (call inside a compact module).

  Args:
    x: f[B, H, W, Cin].
    features: Cout.
    kernel_size: 1 or 3 (odd; padding keeps H and W).
    train: run and store one power iteration.
    use_bias: add a bias (initialised to 0; added in float32, `compute.Conv`).
    dtype: compute dtype; params are float32.
    name: name of the convolution (its wrapper is `sn_<name>`).

  Returns:
    f[B, H, W, Cout] in `dtype`.
  """
  conv = compute.Conv(features, (kernel_size, kernel_size), padding=kernel_size // 2,
                      conv_general_dilated=layers.cpu_same_conv, use_bias=use_bias,
                      kernel_init=orthogonal_init, dtype=dtype,
                      param_dtype=jnp.float32, name=name)
  return layers.spectral_normalized(conv, x, train=train)


def sn_dense(x, features, *, train, use_bias, dtype, name):
  """Spectrally normalised dense layer: f[..., Din] -> f[..., features] in `dtype`."""
  dense = compute.Dense(features, use_bias=use_bias, kernel_init=orthogonal_init,
                        dtype=dtype, param_dtype=jnp.float32, name=name)
  return layers.spectral_normalized(dense, x, train=train)


def _max_pool_2x2(x):
  return nn.max_pool(x, (2, 2), strides=(2, 2))


class SelfAttention(nn.Module):
  """The SAGAN / BigGAN self-attention block (see the module docstring).

  Attributes:
    dtype: compute dtype of the convolutions; the softmax runs in float32.
  """
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train, return_attention=False):
    """Adds gamma times the attended features to x.

    Args:
      x: f[B, H, W, C], H and W even, C divisible by 8.
      train: run and store one power iteration of every spectral norm.
      return_attention: also return the attention map.

    Returns:
      f[B, H, W, C] in x's dtype; with `return_attention` also the map
      f32[B, H * W, H * W / 4] (rows: query positions, columns: pooled key
      positions, both in row-major (h, w) order; each row sums to 1).
    """
    b, h, w, c = x.shape
    if c % 8 or h % 2 or w % 2:
      raise errors.ConfigError(
          f'SelfAttention needs C divisible by 8 and even H, W; got shape {x.shape}. '
          'Change model.ngf / model.ndf or model.attention_resolution.')

    def conv(inputs, features, name):
      return sn_conv(inputs, features, 1, train=train, use_bias=False, dtype=self.dtype,
                     name=name)

    theta = conv(x, c // 8, 'theta').reshape(b, h * w, c // 8)
    phi = _max_pool_2x2(conv(x, c // 8, 'phi')).reshape(b, h * w // 4, c // 8)
    g = _max_pool_2x2(conv(x, c // 2, 'g')).reshape(b, h * w // 4, c // 2)
    logits = jnp.einsum('bqc,bkc->bqk', theta, phi, preferred_element_type=jnp.float32)
    attention = jax.nn.softmax(logits, axis=-1)
    attended = jnp.einsum('bqk,bkc->bqc', attention.astype(g.dtype), g)
    out = conv(attended.reshape(b, h, w, c // 2), c, 'o')
    gamma = self.param('gamma', nn.initializers.zeros, (), jnp.float32)
    # gamma * out in float32: gamma's gradient sums over every element of the map.
    y = (x + (gamma * out.astype(jnp.float32)).astype(out.dtype)).astype(x.dtype)
    return (y, attention) if return_attention else y
