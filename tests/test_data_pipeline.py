"""Tests for gan_jax.data's entry points and iterator across sources: the
registry, argument checks, the iterator state format, and worker processes."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import data_helpers as h
from gan_jax import data
from gan_jax import errors


def test_sources_are_registered_by_name():
  assert list(data.SOURCES) == ['digits', 'tfds', 'image_folder', 'toy']


def test_unknown_source_lists_the_known_ones():
  for call in [
      lambda config: data.create_train_iterator(config, data_shape=(8, 8, 3),
                                                batch_size=2, seed=0),
      lambda config: data.load_eval_data(config, data_shape=(8, 8, 3),
                                         split='test', num_examples=2),
      data.class_names,
  ]:
    with pytest.raises(errors.ConfigError,
                       match="'digits', 'tfds', 'image_folder', 'toy'"):
      call(h.config(source='lsun'))


def test_unknown_crop_is_checked_for_every_image_source():
  with pytest.raises(errors.ConfigError, match="'center', 'celeba', 'none'"):
    data.create_train_iterator(h.config(crop='middle'), data_shape=(8, 8, 1),
                               batch_size=2, seed=0)


@pytest.mark.parametrize('shape', [(8, 8), (8, 8, 2), (2,)])
def test_image_sources_need_hwc_shapes(shape):
  with pytest.raises(errors.ConfigError, match=r'\(H, W, C\)'):
    data.create_train_iterator(h.config(), data_shape=shape, batch_size=2,
                               seed=0)


@pytest.mark.parametrize('kwargs', [
    dict(batch_size=0, seed=0),
    dict(batch_size=2, seed=-1),
    dict(batch_size=2, seed=0, shard_index=2, shard_count=2),
])
def test_bad_batch_seed_or_shard_is_a_config_error(kwargs):
  with pytest.raises(errors.ConfigError, match='batch_size >= 1'):
    data.create_train_iterator(h.config(), data_shape=(8, 8, 1), **kwargs)


def test_more_processes_than_examples_is_a_config_error():
  with pytest.raises(errors.ConfigError, match='fewer than the 3 processes'):
    data.create_train_iterator(h.config(train_examples=2),
                               data_shape=(8, 8, 1), batch_size=1, seed=0,
                               shard_index=0, shard_count=3)


def test_state_format():
  with data.create_train_iterator(h.config(), data_shape=(8, 8, 1),
                                  batch_size=4, seed=2, labels=True) as iterator:
    h.take(iterator, 3)
    state = iterator.get_state()
  assert json.loads(json.dumps(state)) == state
  # The examples' digest (what the processes of a run compare) is 16 hex digits.
  assert len(state['examples_sha256']) == 16 and int(state.pop('examples_sha256'), 16) >= 0
  assert state == {
      'version': 1, 'next_batch': 3, 'source': 'digits:train', 'seed': 2,
      'batch_size': 4, 'shard_index': 0, 'shard_count': 1,
      'data_shape': [8, 8, 1], 'examples_per_shard': 1347}


def test_state_restores_from_a_json_string():
  config = h.config()
  kwargs = dict(data_shape=(8, 8, 1), batch_size=4, seed=0)
  expected = h.first_batches(config, 3, **kwargs)[2]
  with data.create_train_iterator(config, **kwargs) as iterator:
    iterator.set_state(json.dumps({'version': 1, 'next_batch': 2}))
    h.assert_same_batches([expected], [next(iterator)])


def test_a_changed_config_restores_with_a_warning(caplog):
  with data.create_train_iterator(h.config(), data_shape=(8, 8, 1),
                                  batch_size=4, seed=0) as iterator:
    iterator.set_state({'version': 1, 'next_batch': 5, 'seed': 1})
    assert iterator.get_state()['next_batch'] == 5
  assert "'seed': (1, 0)" in caplog.text


def test_a_foreign_state_is_refused():
  with pytest.raises(ValueError, match='Not a gan_jax data-iterator state'):
    data.create_train_iterator(h.config(), data_shape=(8, 8, 1), batch_size=2,
                               seed=0).set_state({'step': 3})


def test_worker_process_resumes_an_in_process_state(tmp_path):
  """num_workers only changes speed: a state from an in-process iterator
  resumes exactly in a worker-process iterator (one worker start, ~5-10 s)."""
  h.write_folder(str(tmp_path / 'a'), [10 * i for i in range(5)])
  h.write_folder(str(tmp_path / 'b'), [10 * i for i in range(5, 10)])
  config = h.config(source='image_folder', path=str(tmp_path), cache='none')
  h.check_resume(config, data_shape=(8, 8, 1), batch_size=4, labels=True,
                 restore_config=h.config(source='image_folder',
                                         path=str(tmp_path), cache='none',
                                         num_workers=1), start_first=False)


_KILLED_WITH_A_WORKER = """
import os, signal
import grain
from gan_jax.data import decode
stream = iter(decode.with_workers(grain.MapDataset.range(10**6).to_iter_dataset(), 1))
next(stream)
children = [name for name in os.listdir('/proc') if name.isdigit() and
            open(f'/proc/{name}/stat').read().rsplit(')', 1)[1].split()[1] == str(os.getpid())]
print(' '.join(children), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _running(pid):
  """Whether process `pid` runs (a zombie, exited and not yet reaped, does not)."""
  try:
    with open(f'/proc/{pid}/stat', encoding='utf-8') as f:
      return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
  except OSError:
    return False


@pytest.mark.skipif(not os.path.isdir('/proc/self'), reason='reads /proc (Linux)')
def test_worker_processes_end_when_their_parent_is_killed():
  # SIGKILL leaves grain no chance to stop its workers: they lived on, holding the
  # memory and the output pipe of the killed run (a `main ... | tee` never ended).
  process = subprocess.Popen([sys.executable, '-c', _KILLED_WITH_A_WORKER],
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
  children = [int(pid) for pid in process.stdout.readline().split()]
  process.stdout.close()
  assert process.wait(timeout=120) == -signal.SIGKILL
  assert children, 'no worker process was started'
  deadline = time.monotonic() + 30
  while any(_running(pid) for pid in children) and time.monotonic() < deadline:
    time.sleep(0.2)
  left = [pid for pid in children if _running(pid)]
  for pid in left:  # leave no stray process behind a failed test
    os.kill(pid, signal.SIGKILL)
  assert not left, f'processes {left} outlived their killed parent'


@pytest.mark.slow
def test_workers_give_the_same_stream_and_resume(tmp_path):
  """Two workers: decoding the cache, and per batch with a restart mid-run."""
  h.write_folder(str(tmp_path), [10 * i for i in range(10)])
  for cache in ['memory', 'none']:
    config = h.config(source='image_folder', path=str(tmp_path), cache=cache)
    kwargs = dict(data_shape=(8, 8, 1), batch_size=4, seed=0)
    expected = h.first_batches(config, 6, **kwargs)
    config.num_workers = 2
    with data.create_train_iterator(config, **kwargs) as iterator:
      got = h.take(iterator, 3)
      iterator.set_state(iterator.get_state())  # restarts any workers
      got += h.take(iterator, 3)
    h.assert_same_batches(expected, got)


@pytest.mark.slow
def test_workers_decode_the_same_eval_set(tmp_path):
  h.write_folder(str(tmp_path), [10 * i for i in range(10)])
  kwargs = dict(data_shape=(8, 8, 3), split='train', num_examples=7)
  np.testing.assert_array_equal(
      data.load_eval_data(h.config(source='image_folder', path=str(tmp_path),
                                   num_workers=2), **kwargs),
      data.load_eval_data(h.config(source='image_folder', path=str(tmp_path)),
                          **kwargs))
