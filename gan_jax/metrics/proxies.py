"""Offline quality metrics that need no download: a digits classifier and toy-mixture modes.

digits (config.data.source == 'digits'): a small MLP classifier, trained once on
the digits 'train' split exactly as gan_jax preprocesses it for the configured
resolution, and cached (`<cache>/digits_classifier-*.npz`). It gives
  proxy_fd           Frechet distance between its hidden features of real and
                     generated images (an offline stand-in for FID; lower is better);
  proxy_coverage_kl  KL(predicted-class histogram of confident samples || uniform),
                     0 when all ten digits are equally common, log(10) when one
                     digit (or nothing confident) remains;
  proxy_confident    share of samples the classifier is confident about.
toy (2-D mixtures): the mode-collapse metrics of the PacGAN protocol
(`toy_mode_metrics`).
"""

import functools
import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gan_jax.metrics import cache

# Bumped when the classifier's inputs, architecture or training change, so an
# old cached classifier (and reference statistics built with it) is not reused.
DIGITS_CLASSIFIER_VERSION = 'digits-mlp/v1'
NUM_DIGITS = 10
CONFIDENCE = 0.9       # a sample counts for coverage if max class probability >= this
_POOLED = 16           # classifier input: images area-averaged to at most 16x16
_HIDDEN = 64           # hidden width = proxy feature dimension
_STEPS = 400
_LEARNING_RATE = 3e-3
_WEIGHT_DECAY = 1e-4


def _area_weights(n_in, n_out):
  """f64[n_out, n_in]: each output cell averages the input cells it overlaps."""
  edges_in = np.arange(n_in + 1) / n_in
  edges_out = np.arange(n_out + 1) / n_out
  lo = np.maximum(edges_out[:-1, None], edges_in[None, :-1])
  hi = np.minimum(edges_out[1:, None], edges_in[None, 1:])
  weights = np.clip(hi - lo, 0.0, None)
  return weights / weights.sum(axis=1, keepdims=True)


def _classifier_inputs(images):
  """f[N, H, W, C] in [-1, 1] -> f32[N, h * w]: channel mean, area-pooled to <= 16x16.

  Digits come from 8x8 originals, so 16x16 keeps their detail at a fraction of
  the cost of full resolution and makes training take seconds.
  """
  x = np.asarray(images, np.float64)
  if x.ndim != 4:
    raise ValueError(f'digits proxy expects images [N, H, W, C], got shape {x.shape}')
  x = x.mean(axis=-1)
  rows = _area_weights(x.shape[1], min(x.shape[1], _POOLED))
  cols = _area_weights(x.shape[2], min(x.shape[2], _POOLED))
  pooled = np.matmul(np.matmul(rows, x), cols.T)  # (einsum without optimize is ~100x slower)
  return pooled.reshape(len(x), -1).astype(np.float32)


def _mlp(params, x):
  hidden = jax.nn.relu(x @ params['w1'] + params['b1'])
  return hidden, hidden @ params['w2'] + params['b2']


@functools.partial(jax.jit, static_argnames=('steps',))
def _train_mlp(key, x, y, steps):
  """Full-batch Adam on softmax cross-entropy + L2; returns the parameters."""
  k1, k2 = jax.random.split(key)
  d = x.shape[1]
  params = {
      'w1': jax.random.normal(k1, (d, _HIDDEN)) * jnp.sqrt(2.0 / d),
      'b1': jnp.zeros(_HIDDEN),
      'w2': jax.random.normal(k2, (_HIDDEN, NUM_DIGITS)) * jnp.sqrt(1.0 / _HIDDEN),
      'b2': jnp.zeros(NUM_DIGITS),
  }
  optimizer = optax.adam(_LEARNING_RATE)

  def loss_fn(p):
    _, logits = _mlp(p, x)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return ce + _WEIGHT_DECAY * (jnp.sum(p['w1'] ** 2) + jnp.sum(p['w2'] ** 2))

  def step(carry, _):
    p, opt_state = carry
    grads = jax.grad(loss_fn)(p)
    updates, opt_state = optimizer.update(grads, opt_state)
    return (optax.apply_updates(p, updates), opt_state), None

  (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), None, length=steps)
  return params


class DigitsClassifier:
  """The cached digits MLP; numpy forward pass.

  Attributes:
    params: {'w1': f32[D, 64], 'b1', 'w2': f32[64, 10], 'b2'}.
    image_size: (H, W) it was trained for.
    test_accuracy: accuracy on the digits 'test' split at that size.
  """

  def __init__(self, params, image_size, test_accuracy):
    self.params = {k: np.asarray(v, np.float32) for k, v in params.items()}
    self.image_size = tuple(image_size)
    self.test_accuracy = float(test_accuracy)

  def __call__(self, images):
    """Features and class probabilities.

    Args:
      images: f[N, H, W, C] in [-1, 1] with (H, W) = image_size.

    Returns:
      (features f64[N, 64], probs f64[N, 10]).
    """
    if tuple(np.shape(images)[1:3]) != self.image_size:
      raise ValueError(f'classifier trained for {self.image_size} images, got '
                       f'{np.shape(images)[1:3]}')
    x = _classifier_inputs(images).astype(np.float64)
    p = {k: v.astype(np.float64) for k, v in self.params.items()}
    hidden = np.maximum(x @ p['w1'] + p['b1'], 0.0)
    logits = hidden @ p['w2'] + p['b2']
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    return hidden, probs / probs.sum(axis=1, keepdims=True)


def digits_classifier(image_size, *, cache_dir=None):
  """Returns the digits classifier for `image_size`, training and caching it once.

  Trained on `gan_jax.data.digits.digits_images('train', size=image_size)` (the
  GAN's own preprocessing) with their labels; the cache file is keyed by the
  size, DIGITS_CLASSIFIER_VERSION and the training settings.

  Args:
    image_size: (H, W).
    cache_dir: folder for the cached weights (default: `cache.cache_dir()`).

  Returns:
    A `DigitsClassifier`.
  """
  from gan_jax.data import digits as digits_lib  # pylint: disable=g-import-not-at-top
  image_size = tuple(int(s) for s in image_size)
  key = dict(version=DIGITS_CLASSIFIER_VERSION, image_size=image_size, pooled=_POOLED,
             hidden=_HIDDEN, steps=_STEPS, lr=_LEARNING_RATE, wd=_WEIGHT_DECAY,
             train_split='train')
  path = (Path(cache_dir) if cache_dir else cache.cache_dir()) / (
      f'digits_classifier-{image_size[0]}x{image_size[1]}-{cache.key_digest(key)}.npz')
  stored = cache.load_npz(path, key)
  if stored is not None:
    accuracy = stored.pop('test_accuracy')
    return DigitsClassifier(stored, image_size, accuracy)

  logging.info('Training the digits proxy classifier for %s images (cached at %s).',
               image_size, path)
  x_train = _classifier_inputs(digits_lib.digits_images('train', size=image_size))
  _, y_train = digits_lib.digits_split('train')
  params = _train_mlp(jax.random.key(0), jnp.asarray(x_train), jnp.asarray(y_train),
                      steps=_STEPS)
  params = jax.tree.map(np.asarray, params)
  classifier = DigitsClassifier(params, image_size, 0.0)
  _, y_test = digits_lib.digits_split('test')
  _, probs = classifier(digits_lib.digits_images('test', size=image_size))
  classifier.test_accuracy = float((probs.argmax(axis=1) == y_test).mean())
  cache.save_npz(path, key, dict(classifier.params,
                                 test_accuracy=np.float64(classifier.test_accuracy)))
  return classifier


def class_coverage(probs, *, confidence=CONFIDENCE):
  """How evenly confident predictions cover the classes.

  Args:
    probs: f[N, K] class probabilities.
    confidence: a sample counts when its largest probability is >= this.

  Returns:
    {'proxy_coverage_kl': KL(histogram of confident argmaxes || uniform), with
     0 log 0 = 0 (missing classes add nothing; their absence shows as more mass,
     hence more KL, on the others); log(K) when no sample is confident (the
     value of total collapse onto one class),
     'proxy_confident': share of confident samples in [0, 1]}.
  """
  probs = np.asarray(probs, np.float64)
  num_classes = probs.shape[1]
  confident = probs.max(axis=1) >= confidence
  share = float(confident.mean()) if len(probs) else 0.0
  if not confident.any():
    return {'proxy_coverage_kl': float(np.log(num_classes)), 'proxy_confident': share}
  counts = np.bincount(probs[confident].argmax(axis=1), minlength=num_classes)
  return {'proxy_coverage_kl': _kl_to_uniform(counts), 'proxy_confident': share}


def _kl_to_uniform(counts):
  """KL(counts / sum || uniform) in nats, with 0 log 0 = 0."""
  q = counts / counts.sum()
  nonzero = q > 0
  return float(np.sum(q[nonzero] * np.log(q[nonzero] * len(q))))


def toy_mode_metrics(samples, centers, std, *, num_std=3.0):
  """Mode-collapse metrics of the PacGAN protocol for 2-D Gaussian mixtures.

  Each sample is assigned to its nearest mode. A sample is high quality when it
  lies within `num_std` standard deviations (Euclidean distance <= num_std * std)
  of that mode; a mode is captured when at least one high-quality sample is
  assigned to it.

  Args:
    samples: f[N, 2] generated points.
    centers: f[K, 2] mode centres (`gan_jax.data.toy.mixture(name)[0]`).
    std: per-mode standard deviation.
    num_std: quality radius in standard deviations (3 in PacGAN).

  Returns:
    {'modes_captured': int in [0, K],
     'high_quality': share of high-quality samples in [0, 1],
     'reverse_kl': KL(mode histogram of the high-quality samples || uniform over
       the K modes) in nats, with 0 log 0 = 0 (uncaptured modes contribute
       nothing). In [0, log K]; with no high-quality sample at all the histogram
       is undefined and we report log K, the value of total collapse.}
  """
  x = np.asarray(samples, np.float64)
  c = np.asarray(centers, np.float64)
  if x.ndim != 2 or x.shape[1] != c.shape[1]:
    raise ValueError(f'samples must be [N, {c.shape[1]}], got {x.shape}')
  d2 = ((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=-1)
  nearest = d2.argmin(axis=1)
  good = np.sqrt(d2[np.arange(len(x)), nearest]) <= num_std * std
  counts = np.bincount(nearest[good], minlength=len(c))
  return {
      'modes_captured': int((counts > 0).sum()),
      'high_quality': float(good.mean()) if len(x) else 0.0,
      'reverse_kl': _kl_to_uniform(counts) if good.any() else float(np.log(len(c))),
  }
