"""`Prefetcher`: reads batches ahead in a thread and puts them on the device.

Each queued item carries the iterator state *after* its batch, so a
checkpoint records exactly the batches the training steps consumed, however
far the thread has read ahead.
"""

import queue
import threading
import time

from absl import logging

# How often a blocked thread or `get` checks whether `close` was called.
_POLL_S = 0.05
_JOIN_S = 5.0


class _Failure:
  """What the thread queues when the iterator or to_device raised."""

  def __init__(self, error):
    self.error = error


class Prefetcher:
  """Pulls batches from an iterator in a thread and queues them, on device.

  The iterator is used only by the thread (next, then get_state), so it needs
  no locking; the caller must not touch it until `close()`. Closing the
  prefetcher does not close the iterator.

  Usage:
    with Prefetcher(iterator, to_device, depth=2) as prefetcher:
      batch, state_after, waited_s = prefetcher.get()
  """

  def __init__(self, iterator, to_device, depth):
    """Starts the thread.

    Args:
      iterator: yields host batches and has `get_state()` (a `DataIterator`).
      to_device: host batch -> device batch (e.g. a global jax.Array); runs
        in the thread.
      depth: batches queued ahead (at least 1).
    """
    self._iterator = iterator
    self._to_device = to_device
    self._queue = queue.Queue(maxsize=max(1, int(depth)))
    self._stop = threading.Event()
    self._failure = None
    self._thread = threading.Thread(target=self._run, name='gan_jax-prefetch',
                                    daemon=True)
    self._thread.start()

  def _put(self, item):
    """Queues item unless closed meanwhile; returns whether it was queued."""
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=_POLL_S)
        return True
      except queue.Full:
        continue
    return False

  def _run(self):
    try:
      while not self._stop.is_set():
        batch = next(self._iterator)
        state = self._iterator.get_state()
        if not self._put((self._to_device(batch), state)):
          return
    except BaseException as error:  # pylint: disable=broad-except
      self._put(_Failure(error))  # re-raised by `get` in the caller's thread

  def get(self):
    """Returns the next batch, in the iterator's order.

    Returns:
      (device_batch, iterator_state_after_it, seconds_waited): the state
      resumes the iterator right after this batch.

    Raises:
      Whatever the iterator or to_device raised (again on every later call);
      RuntimeError after `close()`.
    """
    start = time.perf_counter()
    while self._failure is None:
      if self._stop.is_set():
        raise RuntimeError('get() on a closed Prefetcher.')
      try:
        item = self._queue.get(timeout=_POLL_S)
      except queue.Empty:
        continue
      if isinstance(item, _Failure):
        self._failure = item
        break
      batch, state = item
      return batch, state, time.perf_counter() - start
    raise self._failure.error

  def close(self):
    """Stops the thread (within ~0.1 s unless it is inside next / to_device)."""
    self._stop.set()
    self._thread.join(timeout=_JOIN_S)
    if self._thread.is_alive():
      logging.warning('The prefetch thread is still busy in next() or '
                      'to_device() %.0f s after close(); leaving it (a '
                      'daemon thread).', _JOIN_S)
    while True:  # frees the queued device batches now
      try:
        self._queue.get_nowait()
      except queue.Empty:
        break

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()
