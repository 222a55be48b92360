"""Tests of gan_jax.models.attention: the SAGAN / BigGAN self-attention block."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.models import attention
from tests.test_biggan import fast_jit

SHAPE = (2, 4, 6, 16)   # B, H, W, C: C / 8 = 2 query channels, N = 24, N / 4 = 6 keys


@pytest.fixture(scope='module')
def block_and_vars():
  block = attention.SelfAttention()
  x = jax.random.normal(jax.random.key(0), SHAPE)
  variables = fast_jit(lambda key: block.init(key, x, train=False))(jax.random.key(1))
  return block, variables, x


def test_gamma_starts_at_zero_so_the_block_is_the_identity(block_and_vars):
  block, variables, x = block_and_vars
  assert float(variables['params']['gamma']) == 0.0
  np.testing.assert_array_equal(block.apply(variables, x, train=False), x)


def test_attention_rows_are_distributions_over_pooled_keys(block_and_vars):
  block, variables, x = block_and_vars
  _, attn = block.apply(variables, x, train=False, return_attention=True)
  b, h, w, _ = SHAPE
  assert attn.shape == (b, h * w, h * w // 4) and attn.dtype == jnp.float32
  assert float(jnp.min(attn)) >= 0.0
  np.testing.assert_allclose(jnp.sum(attn, axis=-1), np.ones((b, h * w)), atol=1e-6)


def _numpy_block(x, kernels, gamma):
  """SAGAN / BigGAN self-attention written from the paper, with normalised kernels."""
  def max_pool(a):   # [B, H, W, C] -> [B, H/2, W/2, C]
    b, h, w, c = a.shape
    return a.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))

  b, h, w, c = x.shape
  theta = (x @ kernels['theta']).reshape(b, h * w, -1)
  phi = max_pool(x @ kernels['phi']).reshape(b, h * w // 4, -1)
  g = max_pool(x @ kernels['g']).reshape(b, h * w // 4, -1)
  logits = theta @ phi.transpose(0, 2, 1)
  weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
  weights /= weights.sum(axis=-1, keepdims=True)
  out = (weights @ g).reshape(b, h, w, -1) @ kernels['o']
  return x + gamma * out


def test_block_matches_numpy_reimplementation():
  rng = np.random.default_rng(0)
  b, h, w, c = SHAPE
  x = rng.normal(size=SHAPE).astype(np.float32)
  shapes = {'theta': (c, c // 8), 'phi': (c, c // 8), 'g': (c, c // 2), 'o': (c // 2, c)}
  kernels = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
  params, stats = {'gamma': np.float32(0.7)}, {}
  normalised = {}
  for name, kernel in kernels.items():
    _, singular_values, vt = np.linalg.svd(kernel.astype(np.float64))
    normalised[name] = kernel / singular_values[0]
    params[name] = {'kernel': kernel[None, None]}   # 1x1 conv kernel
    # With u the top right singular vector, one power iteration gives sigma exactly.
    stats[f'sn_{name}'] = {f'{name}/kernel/u': vt[:1].astype(np.float32),
                           f'{name}/kernel/sigma': np.float32(1.0)}
  block = attention.SelfAttention()
  got = block.apply({'params': params, 'batch_stats': stats}, jnp.asarray(x), train=False)
  want = _numpy_block(x.astype(np.float64), normalised, 0.7)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_channels_not_divisible_by_8_raise():
  x = jnp.zeros((1, 4, 4, 12))
  with pytest.raises(ValueError, match='divisible by 8'):
    attention.SelfAttention().init(jax.random.key(0), x, train=False)
