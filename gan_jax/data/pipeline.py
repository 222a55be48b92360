"""grain pipelines: endless, sharded, shuffled numpy batches with resumable state.

Every image source is reduced to `n` examples addressed by index. A process
owns the examples `shard_index + shard_count * j` for j < n // shard_count
(the same count on every process, disjoint between processes). Epoch e of a
shard visits its examples in the order `default_rng([seed, e]).permutation`,
so every epoch is reshuffled from (seed, epoch). The grain pipeline is

  MapDataset.range(endless)          # batch numbers k
    .map(make_batch)                 # k -> f32[B, *data_shape]
    [k0:] .to_iter_dataset(threads)  # resume point, thread prefetch
    .mp_prefetch(workers)            # when decoding per batch and num_workers > 0

Batch k is a pure function of (config, seed, shard, k), so the iterator state
is just the next k: it does not depend on num_workers or thread counts, and a
run can resume on a machine with a different core count. A batch's indices are
computed with vectorised numpy rather than one grain element per example:
grain's per-element index shuffle costs ~50-100 us per example in Python,
which for in-memory digits would be most of a training step.

Decode once (`data_config.cache`, default 'auto'): decoding a CelebA JPEG,
cropping and resizing costs ~0.5-1 ms per image, i.e. ~100 ms of CPU per batch
of 128, which no reasonable host hides behind a ~10 ms GPU step. So tfds and
image-folder shards are decoded once at start-up (in grain worker processes
when num_workers > 0, else threads) into a uint8 array in RAM, and batches are
then gathers like the digits. 'auto' caches when this process's shard takes at
most min(8 GiB, RAM / 4) (CelebA at 64x64x3: 2 GiB); 'none' decodes every
batch (grain workers), 'memory' always caches.

The toy source has no examples: batch k is drawn from
`np.random.default_rng([seed, shard_index, k])`.
"""

import json
import os
import sys
import threading
import time
import zlib

from absl import flags
from absl import logging
import grain
import numpy as np

from gan_jax.data import digits as digits_lib
from gan_jax.data import image_folder as folder_lib
from gan_jax.data import images as images_lib
from gan_jax.data import tfds_source
from gan_jax.data import toy as toy_lib

SOURCES = ('digits', 'tfds', 'image_folder', 'toy')
CACHE_MODES = ('auto', 'memory', 'none')
_AUTO_CACHE_MAX_BYTES = 8 << 30
_STATE_VERSION = 1
# Fixed permutation seed for evaluation subsets (independent of config.seed so
# reference statistics are the same across runs).
_EVAL_SEED = 0
# Images per grain element when decoding many at once (cache, eval sets).
_DECODE_CHUNK = 256
# Consecutive unreadable files tolerated before giving up on a folder.
_MAX_UNREADABLE_RUN = 1000


def _field(data_config, name, default):
  return getattr(data_config, name, default)


def _ensure_flags_parsed():
  """grain's worker processes read absl flags; outside absl.app they are unparsed."""
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def _image_shape(data_shape, source):
  shape = tuple(int(d) for d in data_shape)
  if len(shape) != 3 or shape[2] not in (1, 3) or min(shape) < 1:
    raise ValueError(
        f'data.source={source} makes images: data_shape must be (H, W, C) with '
        f'C in (1, 3), got {tuple(data_shape)}. Check config.model.resolution '
        'and config.model.channels.')
  return shape


def _toy_shape(data_shape):
  shape = tuple(int(d) for d in data_shape)
  if shape != (2,):
    raise ValueError(
        f'data.source=toy makes 2-D points: data_shape must be (2,), got '
        f'{tuple(data_shape)}. Set config.model.channels=2.')
  return shape


def _check_source(source):
  if source not in SOURCES:
    raise ValueError(
        f'Unknown data source {source!r}; known: {list(SOURCES)}. '
        'Set --config.data.source.')


# ---- example readers and batch makers: picklable, run in threads / workers ----


class _TfdsReader:
  """index -> uint8[H, W, C]: one TFDS record, cropped and resized."""

  def __init__(self, source, fit):
    self._source = source
    self._fit = fit

  def __call__(self, index):
    return images_lib.fit_image(self._source[int(index)], **self._fit)


class _FolderReader:
  """index -> uint8[H, W, C], or None for an unreadable file (logged)."""

  def __init__(self, root, relpaths, fit):
    self._root = root
    self._relpaths = relpaths
    self._fit = fit

  def __call__(self, index):
    return folder_lib.decode(self._root, self._relpaths[int(index)],
                             **self._fit)


class _DecodeChunk:
  """indices[n] -> (uint8[m, H, W, C] of the readable ones, bool[n] readable)."""

  def __init__(self, reader, example_shape):
    self._reader = reader
    self._example_shape = tuple(example_shape)

  def __call__(self, indices):
    decoded = [self._reader(i) for i in np.asarray(indices)]
    readable = np.array([image is not None for image in decoded], bool)
    kept = [image for image in decoded if image is not None]
    images = (np.stack(kept) if kept else
              np.zeros((0,) + self._example_shape, np.uint8))
    return images, readable


class _DecodeBatch:
  """indices -> f32 batch, decoding each example. An unreadable file is
  replaced by the next readable one of the same shard (deterministic, so
  resumption stays exact)."""

  def __init__(self, reader, *, shard_index, shard_count, per_shard):
    self._reader = reader
    self._shard_index = shard_index
    self._shard_count = shard_count
    self._per_shard = per_shard

  def _example(self, index):
    position = (index - self._shard_index) // self._shard_count
    tries = min(self._per_shard, _MAX_UNREADABLE_RUN)
    for step in range(tries):
      j = (position + step) % self._per_shard
      image = self._reader(self._shard_index + self._shard_count * j)
      if image is not None:
        return image
    raise RuntimeError(
        f'No readable image among {tries} consecutive files of this shard '
        '(see the warnings above); check the image files.')

  def __call__(self, indices):
    return images_lib.to_float(
        np.stack([self._example(int(i)) for i in np.asarray(indices)]))


class _ArrayBatch:
  """indices -> f32 batch gathered from an in-memory array (digits, cache)."""

  def __init__(self, images, *, channels):
    self._images = images
    self._channels = channels

  def __call__(self, indices):
    batch = self._images[np.asarray(indices)]
    if batch.dtype == np.uint8:
      batch = images_lib.to_float(batch)
    if self._channels != batch.shape[-1]:
      batch = np.repeat(batch, self._channels, axis=-1)
    return batch


class _ShardOrder:
  """k -> indices of training batch k: `offset + stride * local`, where the
  local positions run through per-epoch permutations of range(per_shard)."""

  def __init__(self, *, per_shard, seed, batch_size, offset=0, stride=1):
    self._per_shard = per_shard
    self._seed = seed
    self._batch_size = batch_size
    self._offset = offset
    self._stride = stride
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
            [self._seed, epoch]).permutation(self._per_shard)
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
    return self._offset + self._stride * local


class _TrainBatch:
  """k -> batch: a shard order composed with a batch maker."""

  def __init__(self, order, make_batch):
    self._order = order
    self._make_batch = make_batch

  def __call__(self, k):
    return self._make_batch(self._order(k))


class _ToyBatch:
  """k -> f32[B, 2]: batch k of a 2-D mixture, from its own random stream."""

  def __init__(self, name, *, batch_size, seed, shard_index):
    self._name = name
    self._batch_size = batch_size
    self._seed = seed
    self._shard_index = shard_index

  def __call__(self, k):
    rng = np.random.default_rng([self._seed, self._shard_index, int(k)])
    return toy_lib.sample_mixture(self._name, self._batch_size, rng)


# ---- the iterator -----------------------------------------------------------


class DataIterator:
  """Endless iterator of numpy batches with JSON-serialisable state.

  `get_state()` returns a dict such as
    {'version': 1, 'next_batch': 1200, 'source': 'digits:train', 'seed': 0,
     'batch_size': 64, 'shard_index': 0, 'shard_count': 1,
     'data_shape': [32, 32, 1], 'examples_per_shard': 1347}
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
      self._start()
    batch = next(self._iterator)
    if type(batch) is not np.ndarray:  # pylint: disable=unidiomatic-typecheck
      # From worker processes: a grain SharedMemoryArray. A plain copy frees
      # the shared memory at once and gives callers an ordinary array.
      batch = np.array(batch)
    self._next_batch += 1
    return batch

  def _start(self):
    dataset = self._batches.slice(slice(self._next_batch, None))
    dataset = dataset.to_iter_dataset(self._read_options)
    if self._num_workers > 0:
      _ensure_flags_parsed()
      dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(
          num_workers=self._num_workers, per_worker_buffer_size=2))
    self._iterator = iter(dataset)

  def get_state(self):
    """Returns the position in the stream as a JSON-serialisable dict."""
    return dict(version=_STATE_VERSION, next_batch=self._next_batch,
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


# ---- building blocks ----------------------------------------------------------


def _decode_threads(num_workers):
  # Pillow releases the GIL while decoding and resizing, so threads scale.
  cpus = os.cpu_count() or 1
  return max(1, min(8, cpus // max(1, num_workers)))


def _read_options(*, decodes, num_workers, prefetch):
  """Prefetch threads per process; each buffered element is a whole batch."""
  if not decodes:
    # In-memory gathers take well under a millisecond; one thread hides them.
    return grain.ReadOptions(num_threads=1,
                             prefetch_buffer_size=max(2, prefetch))
  threads = _decode_threads(num_workers)
  return grain.ReadOptions(num_threads=threads,
                           prefetch_buffer_size=max(2 * threads, prefetch))


def _decode_many(reader, indices, *, example_shape, num_workers, what,
                 limit=None):
  """Decodes examples in order, in parallel, skipping unreadable ones.

  Args:
    reader: index -> uint8[*example_shape] or None.
    indices: int[n] example indices, in the wanted order.
    example_shape: (H, W, C).
    num_workers: grain worker processes (0: threads in this process).
    what: name for the log.
    limit: stop after this many readable examples (None: all).

  Returns:
    uint8[m, H, W, C], m = min(limit, readable examples), in index order.
  """
  indices = np.asarray(indices, np.int64)
  limit = len(indices) if limit is None else min(limit, len(indices))
  images = np.empty((limit,) + tuple(example_shape), np.uint8)
  if not limit:
    return images
  threads = _decode_threads(num_workers)
  # Small chunks for a small limit, so an early stop wastes little decoding.
  chunk_size = max(1, min(_DECODE_CHUNK, -(-limit // threads)))
  chunks = np.array_split(indices, -(-len(indices) // chunk_size))
  dataset = (grain.MapDataset.source(chunks)
             .map(_DecodeChunk(reader, example_shape))
             .to_iter_dataset(grain.ReadOptions(
                 num_threads=threads, prefetch_buffer_size=2 * threads)))
  if num_workers > 0:
    _ensure_flags_parsed()
    dataset = dataset.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=num_workers))
  count, skipped, start, last_log = 0, 0, time.monotonic(), time.monotonic()
  iterator = iter(dataset)
  try:
    for chunk, readable in iterator:
      take = min(len(chunk), limit - count)
      images[count:count + take] = chunk[:take]
      count += take
      skipped += int(np.sum(~readable))
      if count >= limit:
        break
      if time.monotonic() - last_log > 30:
        last_log = time.monotonic()
        logging.info('Decoding %s: %d / %d images, %.0f s.', what, count,
                     limit, last_log - start)
  finally:
    iterator.close()  # stops threads and workers after an early break
  if skipped:
    logging.warning('%s: skipped %d unreadable file(s) of %d.', what, skipped,
                    count + skipped)
  return images[:count]


def _cache_decision(mode, *, count, example_shape):
  if isinstance(mode, bool):
    mode = 'memory' if mode else 'none'
  if mode not in CACHE_MODES:
    raise ValueError(
        f'Unknown data.cache {mode!r}; known: {list(CACHE_MODES)} (auto: decode '
        'once into RAM when it fits, memory: always, none: decode every batch).')
  if mode != 'auto':
    return mode == 'memory'
  try:
    ram = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  except (ValueError, OSError, AttributeError):
    ram = 4 * _AUTO_CACHE_MAX_BYTES
  return count * int(np.prod(example_shape)) <= min(_AUTO_CACHE_MAX_BYTES,
                                                     ram // 4)


def _shard_size(num_examples, *, shard_count, what):
  """Returns the examples per shard (equal on every shard)."""
  per_shard = num_examples // shard_count
  if per_shard < 1:
    raise ValueError(
        f'{what} has {num_examples} examples, fewer than the {shard_count} '
        'processes that share it.')
  return per_shard


def _folder_root(data_config):
  path = _field(data_config, 'path', '')
  return os.path.abspath(os.path.expanduser(path)) if path else ''


def _image_reader(data_config, *, source, split, fit):
  """Returns (reader, number of examples, name for logs) of tfds / folder data."""
  if source == 'tfds':
    name = _field(data_config, 'name', '')
    images = tfds_source.open_split(
        name, split=split, data_dir=_field(data_config, 'data_dir', ''))
    return _TfdsReader(images, fit), len(images), f'tfds:{name}:{split}'
  root = _folder_root(data_config)
  relpaths = folder_lib.list_images(root)
  return (_FolderReader(root, relpaths, fit), len(relpaths),
          f'image_folder:{root}')


# ---- public API -------------------------------------------------------------------


def create_train_iterator(data_config, *, data_shape, batch_size, seed,
                          shard_index=0, shard_count=1):
  """Creates this process's endless training-batch iterator.

  Args:
    data_config: config.data (fields: source, name, split, data_dir, path,
      crop, toy, num_workers, prefetch, and optionally cache; see
      configs/default.py).
    data_shape: (H, W, C) for image sources, (2,) for toy.
    batch_size: examples per batch on this process.
    seed: shuffles (image sources; reshuffled every epoch) or draws (toy).
    shard_index: this process's index (jax.process_index()).
    shard_count: number of processes (jax.process_count()); shards are
      disjoint and equal-sized (n // shard_count examples; the rest unused).

  Returns:
    A `DataIterator` yielding f32[batch_size, *data_shape] (images in [-1, 1])
    with get_state() / set_state().

  Raises:
    ValueError: unknown source / dataset / split / crop / cache mode, bad
      shapes or shards.
    FileNotFoundError: missing data (the message says how to provide it).
  """
  source = _field(data_config, 'source', 'digits')
  num_workers = int(_field(data_config, 'num_workers', 0))
  prefetch = int(_field(data_config, 'prefetch', 2))
  batch_size, seed = int(batch_size), int(seed)
  shard_index, shard_count = int(shard_index), int(shard_count)
  if batch_size < 1 or seed < 0 or not 0 <= shard_index < shard_count:
    raise ValueError(
        'Need batch_size >= 1, seed >= 0 and 0 <= shard_index < shard_count; '
        f'got {batch_size}, {seed}, {shard_index}, {shard_count}.')
  description = dict(seed=seed, batch_size=batch_size,
                     shard_index=shard_index, shard_count=shard_count,
                     data_shape=[int(d) for d in data_shape])

  if source == 'toy':
    _toy_shape(data_shape)
    name = _field(data_config, 'toy', 'ring')
    toy_lib.mixture(name)  # unknown names fail here, not in a grain thread
    batches = grain.MapDataset.range(sys.maxsize).map(_ToyBatch(
        name, batch_size=batch_size, seed=seed, shard_index=shard_index))
    description['source'] = f'toy:{name}'
    logging.info('Data: toy mixture %r, shard %d/%d, batch %d.', name,
                 shard_index, shard_count, batch_size)
    return DataIterator(
        batches,
        read_options=_read_options(decodes=False, num_workers=0,
                                   prefetch=prefetch),
        num_workers=0, description=description)

  _check_source(source)
  height, width, channels = _image_shape(data_shape, source)
  crop = _field(data_config, 'crop', 'center')
  images_lib.crop_box((1, 1), (1, 1), crop)  # validates the name up front
  split = _field(data_config, 'split', 'train')
  shard = dict(offset=shard_index, stride=shard_count)
  stream_workers = 0  # worker processes for the batch stream itself

  if source == 'digits':
    images = digits_lib.digits_images(split, size=(height, width))
    what = f'digits:{split}'
    per_shard = _shard_size(len(images), shard_count=shard_count, what=what)
    make_batch = _ArrayBatch(images, channels=channels)
    how = 'in memory'
  else:
    fit = dict(size=(height, width), channels=channels, crop=crop)
    reader, count, what = _image_reader(data_config, source=source,
                                        split=split, fit=fit)
    per_shard = _shard_size(count, shard_count=shard_count, what=what)
    description['crop'] = crop
    if _cache_decision(_field(data_config, 'cache', 'auto'), count=per_shard,
                       example_shape=(height, width, channels)):
      start = time.monotonic()
      shard_ids = shard_index + shard_count * np.arange(per_shard)
      images = _decode_many(reader, shard_ids,
                               example_shape=(height, width, channels),
                               num_workers=num_workers, what=what)
      if not len(images):
        raise FileNotFoundError(f'{what}: no readable image in this shard.')
      per_shard = len(images)  # unreadable files are left out of the cache
      make_batch = _ArrayBatch(images, channels=channels)
      shard = dict(offset=0, stride=1)  # the cache holds only this shard
      how = (f'decoded once into RAM ({images.nbytes / 2**20:.0f} MiB, '
             f'{time.monotonic() - start:.1f} s)')
    else:
      make_batch = _DecodeBatch(reader, shard_index=shard_index,
                                shard_count=shard_count, per_shard=per_shard)
      stream_workers = num_workers
      how = f'decoded per batch, {num_workers} worker process(es)'

  if per_shard < batch_size:
    logging.warning('%s: %d examples per process, fewer than the batch size '
                    '%d; batches span epochs.', what, per_shard, batch_size)
  description.update(source=what, examples_per_shard=per_shard)
  logging.info('Data: %s, %d examples for shard %d/%d, batch %d, shape %s, '
               'crop %s, %s.', what, per_shard, shard_index, shard_count,
               batch_size, tuple(data_shape), crop, how)
  order = _ShardOrder(per_shard=per_shard, seed=seed, batch_size=batch_size,
                      **shard)
  batches = grain.MapDataset.range(sys.maxsize).map(
      _TrainBatch(order, make_batch))
  return DataIterator(
      batches,
      read_options=_read_options(decodes=isinstance(make_batch, _DecodeBatch),
                                 num_workers=stream_workers,
                                 prefetch=prefetch),
      num_workers=stream_workers, description=description)


def load_eval_data(data_config, *, data_shape, split, num_examples):
  """Loads a fixed evaluation set (e.g. for FID reference statistics).

  The examples are the first N of a fixed permutation (seed 0, independent of
  config.seed) of the split, so every run and process gets the same set; for
  toy, N points drawn with a fixed generator per split name. Decoding uses
  threads, or data.num_workers grain worker processes.

  Args:
    data_config: config.data.
    data_shape: (H, W, C) for image sources, (2,) for toy.
    split: 'train' / 'test' / any TFDS split string; ignored by image_folder
      (the whole folder is one split).
    num_examples: wanted count.

  Returns:
    f32[N, *data_shape], N = min(num_examples, available); images in [-1, 1].
    Unreadable image files are skipped (and logged), not replaced.
  """
  source = _field(data_config, 'source', 'digits')
  num_examples = int(num_examples)
  if source == 'toy':
    _toy_shape(data_shape)
    rng = np.random.default_rng([_EVAL_SEED, zlib.crc32(split.encode())])
    return toy_lib.sample_mixture(_field(data_config, 'toy', 'ring'),
                                  num_examples, rng)
  _check_source(source)
  height, width, channels = _image_shape(data_shape, source)
  crop = _field(data_config, 'crop', 'center')
  images_lib.crop_box((1, 1), (1, 1), crop)

  if source == 'digits':
    images = digits_lib.digits_images(split, size=(height, width))
    return _ArrayBatch(images, channels=channels)(
        _eval_order(len(images))[:num_examples])

  fit = dict(size=(height, width), channels=channels, crop=crop)
  reader, count, what = _image_reader(data_config, source=source, split=split,
                                      fit=fit)
  images = _decode_many(
      reader, _eval_order(count), example_shape=(height, width, channels),
      num_workers=int(_field(data_config, 'num_workers', 0)), what=what,
      limit=num_examples)
  return images_lib.to_float(images)


def _eval_order(available):
  return np.random.default_rng(_EVAL_SEED).permutation(available)
