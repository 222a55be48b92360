"""Shared by the evaluator tests (and the multi-process driver): cheap stand-ins.

  config(...)         a conditional 8x8 digits config with given metrics.
  reference_digits()  real 8x8 digits, the same number per class, row j of class j mod 10.
  Loader              `load_eval_data` over those digits (with labels when asked).
  CountingExtractor   `inception.extract_features` stand-in: a fixed random
                      projection, jitted and sharded over the devices it is given,
                      counting the images each (real or simulated) process embeds.
  RowGenerator        a generator that returns, for global sample row r (found
                      from its z) with label c, real digit number r // 10 of class
                      c + shift (plus `offset` times z[0] on every pixel): shift 0
                      and offset 0 make every class's samples exactly the
                      reference images of that class.
  linear_generator    a conditional generator as a pure JAX function of its weights
                      (`generator_weights()`), for parameters placed on devices.
  simulate_processes  runs a function in P threads that stand in for P processes
                      (exchange's process numbering and byte primitives replaced).
"""

import collections
import threading

import jax
import jax.numpy as jnp
import numpy as np

from configs import dcgan_digits
from gan_jax.data import digits as digits_lib
from gan_jax.metrics import digits_judge
from gan_jax.metrics import exchange
from gan_jax.metrics import inception
from gan_jax.metrics import sampling

NUM_CLASSES = 10
Z_DIM = 6
SHAPE = (8, 8, 1)
POOL3, LOGITS = 16, 10


def config(metrics, *, num_samples=120, num_reference=120, num_classes=NUM_CLASSES):
  """The digits smoke config at 8x8, class-conditional, with these metrics."""
  cfg = dcgan_digits.get_config()
  cfg.model.resolution = SHAPE[0]
  cfg.model.z_dim = Z_DIM
  cfg.model.num_classes = num_classes
  cfg.eval.metrics = metrics
  cfg.eval.num_samples = num_samples
  cfg.eval.num_reference = num_reference
  return cfg


def reference_digits(per_class=12, split='train'):
  """(images f32[10 * per_class, 8, 8, 1] in [-1, 1], labels int32): row j is of class j % 10."""
  digits, labels = digits_lib.digits_split(split)
  by_class = [np.flatnonzero(labels == c)[:per_class] for c in range(NUM_CLASSES)]
  order = np.stack(by_class, axis=1).reshape(-1)  # class 0, 1, ..., 9, 0, 1, ...
  return digits_judge.from_digits_scale(digits[order]), labels[order].astype(np.int32)


class Loader:
  """`load_eval_data(data_config, *, data_shape, split, num_examples, labels=False)`."""

  def __init__(self, images, labels):
    self.images, self.labels = images, labels
    self.calls = []

  def __call__(self, data_config, *, data_shape, split, num_examples, labels=False):
    del data_config
    assert tuple(data_shape) == self.images.shape[1:]
    self.calls.append(dict(split=split, num_examples=num_examples, labels=labels))
    images = self.images[:num_examples]
    return (images, self.labels[:num_examples]) if labels else images


@jax.jit
def _project(weights, x):
  h = x.reshape(x.shape[0], -1) @ weights
  return jnp.tanh(h[:, :POOL3]), 3.0 * h[:, POOL3:]


class CountingExtractor:
  """`extract_features(variables, images, *, batch_size, devices, ...)` stand-in.

  Attributes:
    counts: {process index: images embedded}.
    devices_seen: the number of devices of each call.
  """

  def __init__(self, seed=0):
    pixels = int(np.prod(SHAPE))
    rng = np.random.default_rng(seed)
    self.weights = (rng.standard_normal((pixels, POOL3 + LOGITS)) / np.sqrt(pixels)).astype(
        np.float32)
    self.counts = collections.Counter()
    self.devices_seen = []
    self.variables = {'params': {'fc': {'kernel': np.zeros((2, 2), np.float32)}}}

  def __call__(self, variables, images, *, batch_size=64, devices=None, quantize=False,
               **unused):
    del variables, batch_size, unused
    images = np.asarray(inception.quantize_8_bit(images) if quantize else images, np.float32)
    self.counts[exchange.process_index()] += len(images)
    devices = list(devices or jax.local_devices())
    self.devices_seen.append(len(devices))
    padded = -(-max(len(images), 1) // len(devices)) * len(devices)
    x = np.zeros((padded,) + images.shape[1:], np.float32)
    x[:len(images)] = images
    mesh = jax.sharding.Mesh(np.asarray(devices), ('data',))
    rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
    pool3, logits = _project(jax.device_put(self.weights, jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec())), jax.device_put(x, rows))
    return {'pool3': np.asarray(pool3)[:len(images)], 'logits': np.asarray(logits)[:len(images)]}

  def features(self, images):
    """The pool3 features this extractor gives `images` (on the default devices)."""
    return self(None, images, devices=jax.local_devices()[:1])['pool3']


def generator_weights(seed=1):
  """f32[Z_DIM + NUM_CLASSES, 64]: the weights of `linear_generator`."""
  rng = np.random.default_rng(seed)
  return rng.standard_normal((Z_DIM + NUM_CLASSES, int(np.prod(SHAPE)))).astype(np.float32)


def linear_generator(weights, z, labels):
  """tanh([z, one_hot(labels)] @ weights) as f32[B, 8, 8, 1] images in [-1, 1]."""
  inputs = jnp.concatenate([z, jax.nn.one_hot(labels, NUM_CLASSES, dtype=z.dtype)], axis=1)
  return jnp.tanh(inputs @ weights).reshape((-1,) + SHAPE)


class RowGenerator:
  """generate(z, labels=None): real digit r // 10 of class (label + shift) for global row r
  (+ offset * z[0]).

  Rows are found by looking z up in the evaluation's latents; padding rows
  (z not among them) give blank images. Records every call's (rows, labels).
  """

  def __init__(self, images, labels, *, seed, num_samples, shift=0, offset=0.0,
               conditional=True):
    self._by_class = [images[labels == c] for c in range(NUM_CLASSES)]
    table = sampling.latents(seed, num_samples, Z_DIM)
    self._rows = {row.tobytes(): r for r, row in enumerate(table)}
    self._shift, self._offset, self._conditional = shift, offset, conditional
    self.calls = []

  def __call__(self, z, labels=None):
    assert (labels is not None) == self._conditional
    rows = [self._rows.get(np.asarray(row, np.float32).tobytes(), -1) for row in z]
    self.calls.append((rows, None if labels is None else np.asarray(labels).tolist()))
    out = np.full((len(z),) + SHAPE, -1.0, np.float32)
    for i, r in enumerate(rows):
      if r >= 0:
        c = int(labels[i]) if labels is not None else r % NUM_CLASSES
        pool = self._by_class[(c + self._shift) % NUM_CLASSES]
        out[i] = pool[(r // NUM_CLASSES) % len(pool)] + self._offset * z[i, 0]
    return out


def simulate_processes(monkeypatch, count, fn):
  """[fn(0), ..., fn(count - 1)], each run in its own thread as if by its own process.

  `exchange.process_index / process_count` answer per thread, and
  `exchange._gather_piece / _broadcast_piece` meet at a barrier, so every
  collective of gan_jax.metrics runs as across `count` processes.
  """
  local = threading.local()
  barrier = threading.Barrier(count)
  slots = [None] * count

  def gather(piece):
    slots[local.index] = np.array(piece)
    barrier.wait()
    out = np.stack(slots)
    barrier.wait()  # nobody overwrites a slot before everyone has read them all
    return out

  monkeypatch.setattr(exchange, 'process_index', lambda: getattr(local, 'index', 0))
  monkeypatch.setattr(exchange, 'process_count', lambda: count)
  monkeypatch.setattr(exchange, '_gather_piece', gather)
  monkeypatch.setattr(exchange, '_broadcast_piece', lambda piece: gather(piece)[0])
  results, failures = [None] * count, []

  def run(index):
    local.index = index
    try:
      results[index] = fn(index)
    except BaseException as e:  # pylint: disable=broad-except
      failures.append(e)
      barrier.abort()  # the others would wait for this one forever

  threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  if failures:
    raise failures[0]
  return results
