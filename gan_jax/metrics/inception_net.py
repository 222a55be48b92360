"""pytorch-fid's FID InceptionV3 network in Flax (NHWC).

Reproduces `pytorch_fid.inception.InceptionV3([3])` of pytorch-fid 0.3.0 with
`use_fid_inception=True`: the FID variants of the Inception blocks (Mixed_5b..6e
pool branches average 3x3 windows without counting the padding; Mixed_7c's pool
branch is a max pool), BatchNorm eps 1e-3 with running statistics, and a global
average pool giving the 2048-d pool3 features. The input is 299x299 in [-1, 1]
(the resize lives in `inception.py`). `logits` are torch-fidelity's
`logits_unbiased`: pool3 @ fc.weight^T without the bias.
"""

import functools

import flax.linen as nn
from jax import lax
import jax.numpy as jnp
import numpy as np

INPUT_SIZE = 299
POOL3_DIM = 2048
NUM_CLASSES = 1008
BN_EPSILON = 1e-3  # pytorch-fid's BasicConv2d, not torch's default 1e-5.


Precision = lax.Precision


class BasicConv(nn.Module):
  """Conv (no bias) -> BatchNorm (eps 1e-3, running statistics) -> ReLU.

  f32[B, H, W, C] -> f32[B, H', W', features] (H' = (H + 2 pad - kernel) // stride + 1), >= 0.
  """
  features: int
  kernel: tuple[int, int]
  stride: int = 1
  pad: tuple[int, int] = (0, 0)
  precision: Precision = Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.features, self.kernel, strides=(self.stride, self.stride),
                padding=((self.pad[0], self.pad[0]), (self.pad[1], self.pad[1])),
                use_bias=False, precision=self.precision, name='conv')(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPSILON, name='bn')(x)
    return nn.relu(x)


def _max_pool_3x3(x, stride, pad=0):
  return nn.max_pool(x, (3, 3), strides=(stride, stride),
                     padding=((pad, pad), (pad, pad)))


def _avg_pool_3x3_same(x):
  """3x3 average, stride 1, padding 1, padded zeros not counted (count_include_pad=False)."""
  summed = lax.reduce_window(x, jnp.zeros((), x.dtype), lax.add, (1, 3, 3, 1),
                             (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0)))
  h, w = x.shape[1:3]
  # Window sizes are 9 inside, 6 on edges, 4 in corners; static, so computed in numpy.
  rows = np.full(h, 3.0)
  rows[[0, -1]] = 2.0
  cols = np.full(w, 3.0)
  cols[[0, -1]] = 2.0
  counts = (rows[:, None] * cols[None, :])[None, :, :, None]
  return summed / jnp.asarray(counts, x.dtype)


class InceptionA(nn.Module):
  """Mixed_5b/5c/5d (pytorch-fid's FIDInceptionA): f32[B, 35, 35, C] -> f32[B, 35, 35,
  224 + pool_features]."""
  pool_features: int
  precision: Precision = Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv, precision=self.precision)
    b1 = conv(64, (1, 1), name='branch1x1')(x)
    b5 = conv(48, (1, 1), name='branch5x5_1')(x)
    b5 = conv(64, (5, 5), pad=(2, 2), name='branch5x5_2')(b5)
    b3 = conv(64, (1, 1), name='branch3x3dbl_1')(x)
    b3 = conv(96, (3, 3), pad=(1, 1), name='branch3x3dbl_2')(b3)
    b3 = conv(96, (3, 3), pad=(1, 1), name='branch3x3dbl_3')(b3)
    bp = conv(self.pool_features, (1, 1), name='branch_pool')(_avg_pool_3x3_same(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """Mixed_6a, the 35 -> 17 grid reduction: f32[B, 35, 35, 288] -> f32[B, 17, 17, 768]."""
  precision: Precision = Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv, precision=self.precision)
    b3 = conv(384, (3, 3), stride=2, name='branch3x3')(x)
    bd = conv(64, (1, 1), name='branch3x3dbl_1')(x)
    bd = conv(96, (3, 3), pad=(1, 1), name='branch3x3dbl_2')(bd)
    bd = conv(96, (3, 3), stride=2, name='branch3x3dbl_3')(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3(x, 2)], axis=-1)


class InceptionC(nn.Module):
  """Mixed_6b..6e (pytorch-fid's FIDInceptionC), factorised 7x7 convolutions:
  f32[B, 17, 17, 768] -> f32[B, 17, 17, 768]."""
  channels_7x7: int
  precision: Precision = Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv, precision=self.precision)
    c7 = self.channels_7x7
    b1 = conv(192, (1, 1), name='branch1x1')(x)
    b7 = conv(c7, (1, 1), name='branch7x7_1')(x)
    b7 = conv(c7, (1, 7), pad=(0, 3), name='branch7x7_2')(b7)
    b7 = conv(192, (7, 1), pad=(3, 0), name='branch7x7_3')(b7)
    bd = conv(c7, (1, 1), name='branch7x7dbl_1')(x)
    bd = conv(c7, (7, 1), pad=(3, 0), name='branch7x7dbl_2')(bd)
    bd = conv(c7, (1, 7), pad=(0, 3), name='branch7x7dbl_3')(bd)
    bd = conv(c7, (7, 1), pad=(3, 0), name='branch7x7dbl_4')(bd)
    bd = conv(192, (1, 7), pad=(0, 3), name='branch7x7dbl_5')(bd)
    bp = conv(192, (1, 1), name='branch_pool')(_avg_pool_3x3_same(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """Mixed_7a, the 17 -> 8 grid reduction: f32[B, 17, 17, 768] -> f32[B, 8, 8, 1280]."""
  precision: Precision = Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv, precision=self.precision)
    b3 = conv(192, (1, 1), name='branch3x3_1')(x)
    b3 = conv(320, (3, 3), stride=2, name='branch3x3_2')(b3)
    b7 = conv(192, (1, 1), name='branch7x7x3_1')(x)
    b7 = conv(192, (1, 7), pad=(0, 3), name='branch7x7x3_2')(b7)
    b7 = conv(192, (7, 1), pad=(3, 0), name='branch7x7x3_3')(b7)
    b7 = conv(192, (3, 3), stride=2, name='branch7x7x3_4')(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3(x, 2)], axis=-1)


class InceptionE(nn.Module):
  """Mixed_7b (average pool branch) and Mixed_7c (max pool branch, as in TF's graph):
  f32[B, 8, 8, C] -> f32[B, 8, 8, 2048]."""
  pool: str  # 'avg' (FIDInceptionE_1) or 'max' (FIDInceptionE_2)
  precision: Precision = Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv, precision=self.precision)
    b1 = conv(320, (1, 1), name='branch1x1')(x)
    b3 = conv(384, (1, 1), name='branch3x3_1')(x)
    b3 = jnp.concatenate([conv(384, (1, 3), pad=(0, 1), name='branch3x3_2a')(b3),
                          conv(384, (3, 1), pad=(1, 0), name='branch3x3_2b')(b3)], axis=-1)
    bd = conv(448, (1, 1), name='branch3x3dbl_1')(x)
    bd = conv(384, (3, 3), pad=(1, 1), name='branch3x3dbl_2')(bd)
    bd = jnp.concatenate([conv(384, (1, 3), pad=(0, 1), name='branch3x3dbl_3a')(bd),
                          conv(384, (3, 1), pad=(1, 0), name='branch3x3dbl_3b')(bd)], axis=-1)
    pooled = _avg_pool_3x3_same(x) if self.pool == 'avg' else _max_pool_3x3(x, 1, pad=1)
    bp = conv(192, (1, 1), name='branch_pool')(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class UnbiasedLinear(nn.Module):
  """fc of the network: holds weight and bias, applies the weight only: f32[B, 2048] ->
  f32[B, 1008] logits.

  torch-fidelity's Inception Score uses `logits_unbiased` = x @ W^T; the bias is
  kept in the variables so a converted checkpoint is complete.
  """
  features: int = NUM_CLASSES
  precision: Precision = Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (x.shape[-1], self.features))
    self.param('bias', nn.initializers.zeros, (self.features,))
    return jnp.dot(x, kernel.astype(x.dtype), precision=self.precision)


class FIDInceptionV3(nn.Module):
  """FID InceptionV3: f32[B, 299, 299, 3] in [-1, 1] -> (pool3 f32[B, 2048] >= 0, unbiased
  logits f32[B, 1008])."""
  precision: Precision = Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv, precision=self.precision)
    p = dict(precision=self.precision)
    x = conv(32, (3, 3), stride=2, name='Conv2d_1a_3x3')(x)
    x = conv(32, (3, 3), name='Conv2d_2a_3x3')(x)
    x = conv(64, (3, 3), pad=(1, 1), name='Conv2d_2b_3x3')(x)
    x = _max_pool_3x3(x, 2)
    x = conv(80, (1, 1), name='Conv2d_3b_1x1')(x)
    x = conv(192, (3, 3), name='Conv2d_4a_3x3')(x)
    x = _max_pool_3x3(x, 2)
    x = InceptionA(32, name='Mixed_5b', **p)(x)
    x = InceptionA(64, name='Mixed_5c', **p)(x)
    x = InceptionA(64, name='Mixed_5d', **p)(x)
    x = InceptionB(name='Mixed_6a', **p)(x)
    x = InceptionC(128, name='Mixed_6b', **p)(x)
    x = InceptionC(160, name='Mixed_6c', **p)(x)
    x = InceptionC(160, name='Mixed_6d', **p)(x)
    x = InceptionC(192, name='Mixed_6e', **p)(x)
    x = InceptionD(name='Mixed_7a', **p)(x)
    x = InceptionE('avg', name='Mixed_7b', **p)(x)
    x = InceptionE('max', name='Mixed_7c', **p)(x)
    pool3 = jnp.mean(x, axis=(1, 2))
    return pool3, UnbiasedLinear(name='fc', **p)(pool3)
