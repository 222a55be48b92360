"""Parallel decoding: grain threads / worker processes, and the in-RAM cache decision.

Decoding, cropping and resizing a batch of JPEGs takes far more CPU time than a
GPU takes for a training step, so tfds and image-folder shards are normally
decoded once at start-up (`map_examples`: grain worker processes when
num_workers > 0, else threads) into a uint8 array in RAM, and batches are then
gathers. 'auto' (the default `data.cache`) caches when this process's shard
takes at most min(8 GiB, RAM / 4) (CelebA at 64x64x3: 2 GiB); 'none' decodes
every batch (in grain workers), 'memory' always caches.

A reader is a picklable `index -> example` that returns None for an example
that cannot be read; such a reader also has `unreadable_error(indices)`, the
error to raise when every example tried was unreadable.
"""

import functools
import os
import threading
import time

from absl import flags
from absl import logging
import grain
import numpy as np

from gan_jax import errors

CACHE_MODES = ('auto', 'memory', 'none')
_AUTO_CACHE_MAX_BYTES = 8 << 30
# Examples per grain element when decoding many at once (cache, eval sets).
_DECODE_CHUNK = 256
# Consecutive unreadable files tolerated before giving up on a folder.
MAX_UNREADABLE_RUN = 1000


def with_workers(dataset, num_workers, **options):
  """Moves a grain IterDataset into `num_workers` processes (0: unchanged), which
  exit when this process is gone."""
  if num_workers <= 0:
    return dataset
  # grain's worker processes read absl flags; outside absl.app they are
  # unparsed and the workers would fail.
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  return dataset.mp_prefetch(
      grain.MultiprocessingOptions(num_workers=num_workers, **options),
      worker_init_fn=functools.partial(_exit_with_parent, os.getpid()))


def _exit_with_parent(parent_pid, worker_index, worker_count):
  """Run in each grain worker: ends it when `parent_pid` (the training or evaluation
  process that started it) is no longer its parent. A parent killed with SIGKILL
  (or by the OOM killer) cannot stop its workers, which would otherwise live on
  holding its memory and its output pipes (a `... | tee log` would never end). The
  parent is polled, not signalled (PR_SET_PDEATHSIG): grain starts workers from
  threads that may end before the run does."""
  del worker_index, worker_count

  def watch():
    while os.getppid() == parent_pid:
      time.sleep(0.5)
    os._exit(0)  # pylint: disable=protected-access

  threading.Thread(target=watch, name='gan_jax-watch-parent', daemon=True).start()


def decode_threads(num_workers):
  """Decoding threads per process (per worker process when num_workers > 0)."""
  # Pillow releases the GIL while decoding and resizing, so threads scale.
  cpus = os.cpu_count() or 1
  return max(1, min(8, cpus // max(1, num_workers)))


def read_options(*, decodes, num_workers, prefetch):
  """grain prefetch threads per process; each buffered element is a whole batch."""
  if not decodes:
    # In-memory gathers take well under a millisecond; one thread hides them.
    return grain.ReadOptions(num_threads=1,
                             prefetch_buffer_size=max(2, prefetch))
  threads = decode_threads(num_workers)
  return grain.ReadOptions(num_threads=threads,
                           prefetch_buffer_size=max(2 * threads, prefetch))


class _ReadChunk:
  """indices[n] -> (results[m] of the readable ones, bool[n] readable)."""

  def __init__(self, reader, example_shape, dtype):
    self._reader = reader
    self._empty = np.zeros((0,) + tuple(example_shape), dtype)

  def __call__(self, indices):
    results = [self._reader(i) for i in np.asarray(indices)]
    readable = np.array([result is not None for result in results], bool)
    kept = [result for result in results if result is not None]
    return (np.asarray(kept, self._empty.dtype) if kept else self._empty,
            readable)


def map_examples(reader, indices, *, example_shape, dtype, num_workers, what,
                 limit=None):
  """Reads examples in order, in parallel, skipping unreadable ones.

  Args:
    reader: picklable index -> array of `example_shape` (or a scalar for
      shape ()), or None when unreadable.
    indices: int[n] example indices, in the wanted order.
    example_shape: shape of one example, e.g. (H, W, C) or () for labels.
    dtype: numpy dtype of the result.
    num_workers: grain worker processes (0: threads in this process).
    what: name for the log.
    limit: stop after this many readable examples (None: all).

  Returns:
    (examples, kept): examples dtype[m, *example_shape], m = min(limit,
    readable examples), in index order; kept int64[m], their positions in
    `indices`.
  """
  indices = np.asarray(indices, np.int64)
  limit = len(indices) if limit is None else min(limit, len(indices))
  out = np.empty((limit,) + tuple(example_shape), dtype)
  kept = np.empty(limit, np.int64)
  if not limit:
    return out, kept
  threads = decode_threads(num_workers)
  # Small chunks for a small limit, so an early stop wastes little decoding.
  chunk_size = max(1, min(_DECODE_CHUNK, -(-limit // threads)))
  starts = np.arange(0, len(indices), chunk_size)
  dataset = (grain.MapDataset.source([indices[s:s + chunk_size] for s in starts])
             .map(_ReadChunk(reader, example_shape, dtype))
             .to_iter_dataset(grain.ReadOptions(
                 num_threads=threads, prefetch_buffer_size=2 * threads)))
  iterator = iter(with_workers(dataset, num_workers))
  count, skipped, start, last_log = 0, 0, time.monotonic(), time.monotonic()
  try:
    for offset, (chunk, readable) in zip(starts, iterator):
      take = min(len(chunk), limit - count)
      out[count:count + take] = chunk[:take]
      kept[count:count + take] = offset + np.flatnonzero(readable)[:take]
      count += take
      skipped += int(np.sum(~readable))
      if count >= limit:
        break
      if time.monotonic() - last_log > 30:
        last_log = time.monotonic()
        logging.info('Reading %s: %d / %d examples, %.0f s.', what, count,
                     limit, last_log - start)
  finally:
    iterator.close()  # stops threads and workers after an early break
  if skipped:
    logging.warning('%s: skipped %d unreadable file(s) of %d.', what, skipped,
                    count + skipped)
  return out[:count], kept[:count]


def check_cache_mode(mode):
  """Raises `errors.ConfigError` unless `mode` is one of CACHE_MODES."""
  if mode not in CACHE_MODES:
    raise errors.ConfigError(
        f'Unknown data.cache {mode!r}; known: {list(CACHE_MODES)} (auto: decode '
        'once into RAM when it fits, memory: always, none: decode every batch). '
        'Set --config.data.cache.')


def use_cache(mode, *, count, example_shape):
  """Whether to decode a shard once into RAM.

  Args:
    mode: one of CACHE_MODES.
    count: examples in this process's shard.
    example_shape: (H, W, C) of one uint8 example.

  Returns:
    True for 'memory', False for 'none'; for 'auto', whether the shard takes
    at most min(8 GiB, RAM / 4).
  """
  check_cache_mode(mode)
  if mode != 'auto':
    return mode == 'memory'
  try:
    ram = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  except (ValueError, OSError, AttributeError):
    ram = 4 * _AUTO_CACHE_MAX_BYTES
  return count * int(np.prod(example_shape)) <= min(_AUTO_CACHE_MAX_BYTES,
                                                     ram // 4)


def check_readable(reader, indices):
  """Raises the reader's error when none of the first examples can be read.

  Decoding every batch would otherwise fail only inside a grain thread; this
  reads examples in order until one succeeds (normally the first).

  Args:
    reader: index -> example or None.
    indices: int[n] the examples of this shard, in order.
  """
  tried = indices[:MAX_UNREADABLE_RUN]
  for index in tried:
    if reader(index) is not None:
      return
  raise reader.unreadable_error(tried)
