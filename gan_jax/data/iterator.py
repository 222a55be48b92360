"""The resumable batch stream: shard order, batch makers and `DataIterator`.

A process's shard is a list of example ids (`ids[j]`, j < per_shard). Epoch e
visits the shard's positions in the order `default_rng([seed, e]).permutation`,
so every epoch is reshuffled from (seed, epoch); with several processes each adds
its index (`[seed, _SHARD_MARK, shard_index, e]`), so shards are shuffled
independently. The grain pipeline is

  MapDataset.range(endless)          # batch numbers k
    .map(TrainBatch(order, maker))   # k -> {'images': f32[B, ...], 'labels': i32[B]}
    [k0:] .to_iter_dataset(threads)  # resume point, thread prefetch
    .mp_prefetch(workers)            # when decoding per batch and num_workers > 0

Batch k is a pure function of (config, seed, shard, k), so the iterator state
is just the next k: it does not depend on num_workers or thread counts, and a
run can resume on a machine with a different core count. A batch's positions
are computed with vectorised numpy rather than one grain element per example:
grain's per-element index shuffle runs Python code for every example, which
for in-memory digits would be most of a training step.

Every batch maker and the order are picklable (grain worker processes get
copies).
"""

import json
import sys
import threading

from absl import logging
import grain
import numpy as np

from gan_jax.data import decode
from gan_jax.data import images as images_lib

STATE_VERSION = 1


# Marks the shard's index in an order's seed, apart from any stream number.
_SHARD_MARK = 0x5AD


class ShardOrder:
  """k -> int64[B] shard positions of training batch k, through per-epoch
  permutations of range(per_shard).

  With several shards (`shard_index` not None) each shard permutes its examples in
  its own order: with one order for all, process p's row j would always be drawn
  beside row j of every other process, the same groups in every global batch.
  One process (`shard_index` None) keeps the plain order of `seed`.
  """

  def __init__(self, *, per_shard, seed, batch_size, stream=None, shard_index=None):
    self._per_shard = per_shard
    # `stream` (an int) gives an order independent of the plain one of the same seed.
    self._seed = [seed] if stream is None else [seed, stream]
    if shard_index is not None:
      self._seed += [_SHARD_MARK, int(shard_index)]
    self._batch_size = batch_size
    self._cache = {}
    self._lock = threading.Lock()

  def __getstate__(self):
    # Locks cannot be pickled into grain workers; each worker makes its own.
    state = dict(self.__dict__)
    del state['_cache'], state['_lock']
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._cache = {}
    self._lock = threading.Lock()

  def _permutation(self, epoch):
    with self._lock:
      permutation = self._cache.get(epoch)
      if permutation is None:
        permutation = np.random.default_rng(
            self._seed + [epoch]).permutation(self._per_shard)
        # Batches are drawn in order, so only the latest epochs are needed.
        while len(self._cache) >= 2:
          del self._cache[min(self._cache)]
        self._cache[epoch] = permutation
      return permutation

  def __call__(self, k):
    positions = int(k) * self._batch_size + np.arange(self._batch_size)
    epochs, offsets = np.divmod(positions, self._per_shard)
    local = np.empty(self._batch_size, np.int64)
    for epoch in np.unique(epochs):
      mask = epochs == epoch
      local[mask] = self._permutation(int(epoch))[offsets[mask]]
    return local


def _batch(images, labels):
  batch = {'images': images}
  if labels is not None:
    batch['labels'] = labels
  return batch


class ArrayBatch:
  """positions -> batch gathered from in-memory examples (digits, the cache).

  images: f32[n, ...] in [-1, 1] or uint8[n, ...]; labels: int32[n] or None.
  """

  def __init__(self, images, labels):
    self._images = images
    self._labels = labels

  @property
  def labels(self):
    """int32[n] labels of the shard positions, or None."""
    return self._labels

  def __call__(self, positions):
    images = self._images[positions]
    if images.dtype == np.uint8:
      images = images_lib.to_float(images)
    return _batch(images,
                  None if self._labels is None else self._labels[positions])


class DecodeBatch:
  """positions -> batch, decoding each example of the shard `ids`.

  reader: id -> uint8[H, W, C] or None (unreadable); ids: the shard's example ids;
  labels: int32[n] or None. A call with positions int[B] returns the batch dict of
  `ArrayBatch`: 'images' f32[B, H, W, C] in [-1, 1] (and 'labels' int32[B]).
  An unreadable file is replaced by the next readable one of the same shard,
  with that one's label (deterministic, so resumption stays exact).
  """

  def __init__(self, reader, ids, labels):
    self._reader = reader
    self._ids = ids
    self._labels = labels

  @property
  def labels(self):
    """int32[n] labels of the shard positions, or None."""
    return self._labels

  def _example(self, position):
    """Returns (uint8 image, shard position it came from)."""
    tried = []
    for step in range(min(len(self._ids), decode.MAX_UNREADABLE_RUN)):
      j = (position + step) % len(self._ids)
      image = self._reader(self._ids[j])
      if image is not None:
        return image, j
      tried.append(self._ids[j])
    raise self._reader.unreadable_error(tried)

  def __call__(self, positions):
    images, used = zip(*(self._example(int(p)) for p in positions))
    return _batch(images_lib.to_float(np.stack(images)),
                  None if self._labels is None else self._labels[list(used)])


def spread_rows(batch_size, count):
  """bool[batch_size]: `count` rows spread evenly, row i chosen when
  floor((i + 1) count / B) > floor(i count / B), so that any even split of the rows
  (over processes or devices) gives each part its share, give or take one."""
  rows = np.arange(batch_size)
  return (rows + 1) * count // batch_size > rows * count // batch_size


class LabelledMixOrder:
  """k -> int64[B] shard positions where fixed rows are labelled examples.

  The rows where `labelled_rows` (bool[B]) is True (`spread_rows` of the global
  batch, this process's slice) walk the labelled positions in their own per-epoch
  permutations (stream `LABELLED_STREAM` of the seed); the other rows walk all
  positions (labelled ones included) as a `ShardOrder`. Batch k stays a pure function
  of k (exact resume). This is how Salimans et al. 2016 train on few labels: every D
  update sees a labelled batch next to the unlabelled one.
  """

  LABELLED_STREAM = 1

  def __init__(self, *, per_shard, labelled_positions, seed, labelled_rows, shard_index=None):
    self._labelled_positions = np.asarray(labelled_positions, np.int64)
    self._labelled_rows = np.asarray(labelled_rows, bool)
    num_labelled = int(self._labelled_rows.sum())
    # A process's slice of the global batch may hold no labelled row, or only those.
    self._all = ShardOrder(
        per_shard=per_shard, seed=seed, batch_size=len(self._labelled_rows) - num_labelled,
        shard_index=shard_index) if num_labelled < len(self._labelled_rows) else None
    self._labelled = ShardOrder(
        per_shard=len(self._labelled_positions), seed=seed, batch_size=num_labelled,
        stream=self.LABELLED_STREAM, shard_index=shard_index) if num_labelled else None

  def __call__(self, k):
    out = np.empty(len(self._labelled_rows), np.int64)
    if self._all is not None:
      out[~self._labelled_rows] = self._all(k)
    if self._labelled is not None:
      out[self._labelled_rows] = self._labelled_positions[self._labelled(k)]
    return out


class TrainBatch:
  """k -> batch: a shard order composed with a batch maker.

  `order(k)` gives batch k's example indices (int64[B]); `make_batch` turns them into
  the batch dict (e.g. {'images': f32[B, H, W, C] in [-1, 1], 'labels': int32[B]}).
  """

  def __init__(self, order, make_batch):
    self._order = order
    self._make_batch = make_batch

  def __call__(self, k):
    return self._make_batch(self._order(k))


class SampleBatch:
  """k -> {'images': f32[B, 2]}: batch k of generated points, from its own stream."""

  def __init__(self, sample, *, batch_size, seed, shard_index):
    self._sample = sample
    self._batch_size = batch_size
    self._seed = seed
    self._shard_index = shard_index

  def __call__(self, k):
    rng = np.random.default_rng([self._seed, self._shard_index, int(k)])
    return {'images': self._sample(self._batch_size, rng)}


class DataIterator:
  """Endless iterator of batch dicts with JSON-serialisable state.

  Each batch is {'images': np.float32[B, *data_shape]} plus, when labels were
  requested, 'labels': np.int32[B] (-1 = unlabelled).

  `get_state()` returns a dict such as
    {'version': 1, 'next_batch': 1200, 'source': 'digits:train', 'seed': 0,
     'batch_size': 64, 'shard_index': 0, 'shard_count': 1,
     'data_shape': [32, 32, 1], 'examples_per_shard': 1347,
     'examples_sha256': '...'}
  and `set_state(state)` makes the next batch `next_batch`. The other keys
  describe the stream; a mismatch on restore (a changed config or dataset) is
  logged as a warning and the position is restored anyway.

  One thread at a time may call next/get_state/set_state. The grain iterator
  (and any worker processes) starts on the first `next`, so restoring right
  after construction starts workers only once. Call `close()` (or use `with`)
  to stop threads and workers; grain also stops workers at interpreter exit.
  """

  def __init__(self, batches, *, read_options, num_workers, description):
    self._batches = batches
    self._read_options = read_options
    self._num_workers = num_workers
    self._description = description
    self._next_batch = 0
    self._iterator = None

  def __iter__(self):
    return self

  def __next__(self):
    if self._iterator is None:
      dataset = self._batches.slice(slice(self._next_batch, None))
      self._iterator = iter(decode.with_workers(
          dataset.to_iter_dataset(self._read_options), self._num_workers,
          per_worker_buffer_size=2))
    batch = next(self._iterator)
    self._next_batch += 1
    # From worker processes the arrays are grain SharedMemoryArrays (ndarray
    # subclasses); plain copies free the shared memory at once and give
    # callers ordinary arrays.
    return {key: value if type(value) is np.ndarray  # pylint: disable=unidiomatic-typecheck
                 else np.array(value) for key, value in batch.items()}

  def get_state(self):
    """Returns the position in the stream as a JSON-serialisable dict."""
    return dict(version=STATE_VERSION, next_batch=self._next_batch,
                **self._description)

  def set_state(self, state):
    """Continues from a state returned by `get_state` (of this or an earlier run).

    Args:
      state: dict from `get_state`, possibly after a JSON round trip (a JSON
        string is accepted too).

    Raises:
      ValueError: when the dict is not such a state.
    """
    if isinstance(state, (str, bytes)):
      state = json.loads(state)
    next_batch = state.get('next_batch') if isinstance(state, dict) else None
    if (not isinstance(next_batch, int) or isinstance(next_batch, bool) or
        next_batch < 0):
      raise ValueError(
          'Not a gan_jax data-iterator state (expected a dict with an int '
          f"'next_batch' >= 0, from DataIterator.get_state()): {state!r}")
    changed = {
        key: (state[key], value)
        for key, value in self._description.items()
        if key in state and state[key] != value
    }
    if 'labelled_rows' in self._description and 'labelled_fraction' in state and (
        'labelled_rows' not in state):
      # Saved when each process, over all its updates at once, rounded its own share.
      changed['labelled_rows'] = ('each process its own share',
                                  self._description['labelled_rows'])
    if changed:
      logging.warning(
          'Restoring a data-iterator state saved with different settings '
          '(key: (saved, now)) %s; continuing at batch %d of the new stream, '
          'which is not the stream the saved run would have seen.', changed,
          next_batch)
    self.close()
    self._next_batch = next_batch

  def close(self):
    """Stops prefetch threads and worker processes (restarted by `next`)."""
    if self._iterator is not None:
      close = getattr(self._iterator, 'close', None)
      if close is not None:
        close()
      self._iterator = None

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()


def endless(batch_fn):
  """The grain MapDataset of batch_fn(k) for k = 0, 1, 2, ..."""
  return grain.MapDataset.range(sys.maxsize).map(batch_fn)
