"""Tests for gan_jax.data.Prefetcher: order, states after each batch, errors, closing."""

import threading
import time

import pytest

import data_helpers as h
from gan_jax import data


class _Counter:
  """Yields 0, 1, 2, ...; the state is the next number; raises at `fail_at`."""

  def __init__(self, fail_at=None, delay_s=0.0):
    self.next = 0
    self._fail_at = fail_at
    self._delay_s = delay_s

  def __next__(self):
    time.sleep(self._delay_s)
    if self.next == self._fail_at:
      raise KeyError(f'broken batch {self.next}')
    self.next += 1
    return self.next - 1

  def get_state(self):
    return {'next_batch': self.next}


def _prefetch_threads():
  return [t for t in threading.enumerate() if t.name == 'gan_jax-prefetch']


def test_batches_come_in_order_through_to_device():
  with data.Prefetcher(_Counter(), lambda x: ('device', x), depth=3) as prefetcher:
    got = [prefetcher.get()[0] for _ in range(20)]
  assert got == [('device', i) for i in range(20)]


def test_each_state_is_the_one_after_its_batch():
  with data.Prefetcher(_Counter(), lambda x: x, depth=2) as prefetcher:
    for i in range(10):
      batch, state, _ = prefetcher.get()
      assert (batch, state) == (i, {'next_batch': i + 1})


def test_state_after_a_batch_resumes_right_after_it():
  config = h.config()
  kwargs = dict(data_shape=(8, 8, 1), batch_size=16, seed=0)
  with data.create_train_iterator(config, **kwargs) as iterator:
    with data.Prefetcher(iterator, lambda batch: batch, depth=4) as prefetcher:
      items = [prefetcher.get() for _ in range(4)]
  for (_, state, _), (following, _, _) in zip(items, items[1:]):
    with data.create_train_iterator(config, **kwargs) as resumed:
      resumed.set_state(state)
      h.assert_same_batches([following], [next(resumed)])


def test_iterator_errors_reraise_in_get_after_the_good_batches():
  prefetcher = data.Prefetcher(_Counter(fail_at=3), lambda x: x, depth=8)
  assert [prefetcher.get()[0] for _ in range(3)] == [0, 1, 2]
  for _ in range(2):  # and again on a later call
    with pytest.raises(KeyError, match='broken batch 3'):
      prefetcher.get()
  prefetcher.close()


def test_to_device_errors_reraise_in_get():
  def to_device(batch):
    raise ValueError(f'no device for {batch}')
  with data.Prefetcher(_Counter(), to_device, depth=2) as prefetcher:
    with pytest.raises(ValueError, match='no device for 0'):
      prefetcher.get()


def test_get_reports_the_seconds_waited():
  with data.Prefetcher(_Counter(delay_s=0.2), lambda x: x,
                       depth=1) as prefetcher:
    _, _, waited = prefetcher.get()
  assert 0.1 < waited < 30.0  # the producer's 0.2 s delay, whatever else the machine runs


def test_close_stops_the_thread_promptly_when_the_queue_is_full():
  iterator = _Counter()
  prefetcher = data.Prefetcher(iterator, lambda x: x, depth=2)
  deadline = time.monotonic() + 5
  while iterator.next < 3 and time.monotonic() < deadline:
    time.sleep(0.01)  # 2 queued + 1 waiting to be queued: the queue is full
  assert iterator.next == 3
  closer = threading.Thread(target=prefetcher.close, daemon=True)
  closer.start()
  closer.join(timeout=30)  # a close that waited for room in the full queue would hang
  assert not closer.is_alive()
  assert not _prefetch_threads()
  assert iterator.next == 3  # nothing read after closing


def test_get_after_close_raises():
  prefetcher = data.Prefetcher(_Counter(), lambda x: x, depth=1)
  prefetcher.close()
  with pytest.raises(RuntimeError, match='closed'):
    prefetcher.get()
