"""Tests of checkpoints: fallback past unreadable ones, unfinished saves, paths, the best one."""

import glob
import json
import logging
import os
import re
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import checkpoint
from gan_jax import errors
from gan_jax import parallel


def _state(value):
  return {'w': jnp.full((3,), value, jnp.float32), 'step': jnp.int32(value)}


def _abstract():
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                      _state(0))


def _save(directory, steps):
  ckpt = checkpoint.Checkpointer(directory, async_save=False, max_to_keep=None)
  for step in steps:
    ckpt.save(step, _state(step), {'next_batch': step})
  ckpt.close()


def test_restore_returns_the_newest_checkpoint_and_its_data_state(tmp_path):
  directory = str(tmp_path / 'checkpoints')
  _save(directory, [2, 4])
  state, data_state, step = checkpoint.Checkpointer(directory).restore(_abstract())
  assert step == 4 and data_state == {'next_batch': 4}
  np.testing.assert_array_equal(state['w'], np.full(3, 4.0))


def test_an_unreadable_checkpoint_is_moved_aside_and_the_previous_one_used(tmp_path, caplog):
  directory = str(tmp_path / 'checkpoints')
  _save(directory, [2, 4])
  for path in glob.glob(os.path.join(directory, '4', 'state', '**', '*'), recursive=True):
    if os.path.isfile(path):
      with open(path, 'wb') as f:
        f.write(b'garbage')
  with caplog.at_level(logging.WARNING):
    _, _, step = checkpoint.Checkpointer(directory).restore(_abstract())
  assert step == 2
  assert any('could not be restored' in r.message for r in caplog.records)
  assert glob.glob(str(tmp_path / 'checkpoints_corrupt' / '4-*')), 'kept, not deleted'


def test_when_no_checkpoint_can_be_read_none_is_moved_and_a_rerun_finds_them(
    tmp_path, monkeypatch):
  # A storage failure of a moment (a network file system, an object store) fails every
  # read: the checkpoints must stay where they are, so that a rerun (a cluster's requeue)
  # resumes from the newest instead of starting over in an emptied folder.
  directory = str(tmp_path / 'checkpoints')
  _save(directory, [2, 4])
  ckpt = checkpoint.Checkpointer(directory)
  read = ckpt._restore_step  # pylint: disable=protected-access

  def failing(abstract_state, step):
    raise OSError(5, 'Input/output error')
  monkeypatch.setattr(ckpt, '_restore_step', failing)
  with pytest.raises(checkpoint.CheckpointError,
                     match=r'None of the checkpoints \[2, 4\].*Input/output error.*left in '
                           r'place.*run again'):
    ckpt.restore(_abstract())
  assert sorted(os.listdir(directory)) == ['2', '4']
  assert not os.path.exists(tmp_path / 'checkpoints_corrupt')
  monkeypatch.setattr(ckpt, '_restore_step', read)
  assert ckpt.restore(_abstract())[2] == 4


def test_a_process_with_a_stale_listing_takes_process_0_s_and_rereads(tmp_path, monkeypatch,
                                                                       caplog):
  # Processes that restored different steps would train apart and then hang.
  directory = str(tmp_path / 'checkpoints')
  _save(directory, [2, 4])
  stale = checkpoint.Checkpointer(directory)   # lists [2, 4] from here on
  _save(directory, [6])                         # written meanwhile, as by another run
  assert stale.all_steps() == [2, 4]
  monkeypatch.setattr(checkpoint.jax, 'process_count', lambda: 2)
  monkeypatch.setattr(checkpoint, '_gather_json', lambda value: [[2, 4, 6], value])
  with caplog.at_level(logging.WARNING):
    assert stale._agreed_steps() == [2, 4, 6]  # pylint: disable=protected-access
  assert "process 0 lists [2, 4, 6]; using process 0's" in caplog.text
  monkeypatch.undo()
  assert stale.all_steps() == [2, 4, 6]   # re-read, so the restore can find step 6
  assert stale.restore(_abstract())[2] == 6


def test_a_checkpoint_removed_while_it_was_read_is_reported_gone(tmp_path, caplog, monkeypatch):
  # E.g. rotated away by another run in the same folder: nothing to move aside, and
  # the warning must not claim a checkpoints_corrupt/ copy.
  directory = str(tmp_path / 'checkpoints')
  _save(directory, [2, 4])
  ckpt = checkpoint.Checkpointer(directory)
  read = ckpt._restore_step  # pylint: disable=protected-access

  def vanishing(abstract_state, step):
    if step == 4:
      shutil.rmtree(os.path.join(directory, '4'))
      raise FileNotFoundError(os.path.join(directory, '4'))
    return read(abstract_state, step)
  monkeypatch.setattr(ckpt, '_restore_step', vanishing)
  with caplog.at_level(logging.WARNING):
    _, _, step = ckpt.restore(_abstract())
  assert step == 2
  assert 'it is gone (removed while it was read' in caplog.text
  assert 'moved it to' not in caplog.text
  assert not os.path.exists(tmp_path / 'checkpoints_corrupt')


def test_a_reader_skips_an_unreadable_checkpoint_and_leaves_it_in_place(tmp_path, caplog):
  # Sampling and evaluation only read a run (maybe while it trains): they move nothing.
  directory = str(tmp_path / 'checkpoints')
  _save(directory, [2, 4, 6])
  for path in glob.glob(os.path.join(directory, '6', 'state', '**', '*'), recursive=True):
    if os.path.isfile(path):
      with open(path, 'wb') as f:
        f.write(b'garbage')
  before = sorted(glob.glob(os.path.join(directory, '**'), recursive=True))
  with caplog.at_level(logging.WARNING):
    state, _, step = checkpoint.Checkpointer(directory).restore(_abstract(), move_aside=False)
  assert step == 4
  np.testing.assert_array_equal(state['w'], np.full(3, 4.0))
  assert any('could not be restored' in r.message for r in caplog.records)
  assert any('instead of the unreadable 6: left it in place' in r.message
             for r in caplog.records)
  assert sorted(glob.glob(os.path.join(directory, '**'), recursive=True)) == before
  assert not os.path.exists(tmp_path / 'checkpoints_corrupt')


# Run in a fresh interpreter: pytest catches unraisable exceptions and asyncio's log
# records itself, so only a plain process shows what a user's terminal would.
_DAMAGED_RESTORE = """
import glob, os, sys
import jax, jax.numpy as jnp, numpy as np
from gan_jax import checkpoint

def arrays(seed):  # 64x64 noise: incompressible, so the chunks are files of their own
  rng = np.random.default_rng(seed)
  return {f'w{i}': jnp.asarray(rng.normal(size=(64, 64)), jnp.float32) for i in range(24)}

directory, step = sys.argv[1], sys.argv[2]
ckpt = checkpoint.Checkpointer(directory, async_save=False, max_to_keep=None)
for s in (2, 4):
  ckpt.save(s, arrays(s), {'next_batch': s})
ckpt.close()
# The array chunks of checkpoint 4 are overwritten and its metadata kept, so the
# restore starts every array's read and then fails on them.
chunks = glob.glob(os.path.join(directory, '4', 'state', 'ocdbt.process_*', 'd', '*'))
assert chunks
for path in chunks:
  with open(path, 'wb') as f:
    f.write(os.urandom(100))
sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                        arrays(0))
reader = checkpoint.Checkpointer(directory)
if step == 'newest':
  state, _, restored = reader.restore(abstract, move_aside=False)
  np.testing.assert_array_equal(state['w3'], arrays(2)['w3'])
  print('restored', restored)
else:
  try:
    reader.restore(abstract, step=int(step))
  except checkpoint.CheckpointError as e:
    print('CheckpointError:', e)
"""


@pytest.mark.parametrize('step', ['newest', '4'])
def test_a_damaged_checkpoint_costs_one_line_not_a_traceback_per_array(tmp_path, step):
  result = subprocess.run(
      [sys.executable, '-c', _DAMAGED_RESTORE, str(tmp_path / 'checkpoints'), step],
      capture_output=True, text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert result.returncode == 0, result.stderr[-3000:]
  if step == 'newest':  # falls back to step 2, with one warning
    assert result.stdout.strip() == 'restored 2'
    assert result.stderr.count('could not be restored') == 1
  else:  # exactly the damaged step: a CheckpointError naming the others
    assert re.match(r'CheckpointError: Checkpoint 4 in .* could not be restored .*'
                    r'available: \[2\]', result.stdout), result.stdout
  # The reads orbax abandoned after the first failure report nothing of their own.
  for noise in ('Traceback', 'Event loop is closed', 'Task exception was never retrieved',
                'Exception ignored'):
    assert noise not in result.stderr, result.stderr[-3000:]


def test_an_unfinished_save_is_ignored_with_a_warning(tmp_path, caplog):
  directory = str(tmp_path / 'checkpoints')
  _save(directory, [2])
  os.makedirs(os.path.join(directory, '4.orbax-checkpoint-tmp-1733100000', 'state'))
  with caplog.at_level(logging.WARNING):
    ckpt = checkpoint.Checkpointer(directory)
  assert any('unfinished checkpoint save' in r.message and '4.orbax-checkpoint-tmp' in r.message
             for r in caplog.records)
  assert ckpt.all_steps() == [2]
  assert ckpt.restore(_abstract())[2] == 2


def test_url_paths_are_kept_and_local_paths_made_absolute(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert checkpoint.absolute('gs://bucket/run/checkpoints') == 'gs://bucket/run/checkpoints'
  assert checkpoint.absolute('runs/x/checkpoints') == str(tmp_path / 'runs/x/checkpoints')


def test_a_restore_of_a_missing_step_names_the_available_ones(tmp_path):
  directory = str(tmp_path / 'checkpoints')
  _save(directory, [2])
  with pytest.raises(checkpoint.CheckpointError, match=r'step 3.*\[2\]'):
    checkpoint.Checkpointer(directory).restore(_abstract(), step=3)


def test_best_checkpoint_keeps_the_lowest_metric(tmp_path):
  best = checkpoint.BestCheckpoint(str(tmp_path / 'best'))
  assert best.update(2, _state(2), {'fid': 30.0, 'is_mean': 2.0})
  assert not best.update(4, _state(4), {'fid': 35.0})
  assert best.update(6, _state(6), {'fid': 20.0})
  with open(tmp_path / 'best' / 'best.json', encoding='utf-8') as f:
    record = json.load(f)
  assert (record['step'], record['metric'], record['value']) == (6, 'fid', 20.0)
  # A new instance (a resumed run) continues from the record on disk.
  assert not checkpoint.BestCheckpoint(str(tmp_path / 'best')).update(8, _state(8), {'fid': 25.0})
  _, _, step = checkpoint.Checkpointer(str(tmp_path / 'best')).restore(_abstract())
  assert step == 6


def test_a_change_of_evaluation_metric_never_compares_two_distances(tmp_path, caplog):
  # A run resumed with other eval.metrics: a proxy FD of 0.03 must not beat an FID of 20.
  best = checkpoint.BestCheckpoint(str(tmp_path / 'best'))
  assert best.update(2, _state(2), {'proxy_fd': 0.05})
  with caplog.at_level(logging.WARNING):
    assert best.update(4, _state(4), {'fid': 40.0})  # no FID of step 2 to compare with
  assert 'give fid, not proxy_fd' in caplog.text and 'best_proxy_fd_step2' in caplog.text
  kept = tmp_path / 'best_proxy_fd_step2'
  assert json.loads((kept / 'best.json').read_text())['value'] == 0.05  # set aside, whole
  _, _, step = checkpoint.Checkpointer(str(kept)).restore(_abstract())
  assert step == 2
  assert not best.update(6, _state(6), {'fid': 45.0})
  assert best.best['step'] == 4 and best.best['metric'] == 'fid'
  # When the earlier best measured the new metric too, it is compared by that.
  both = checkpoint.BestCheckpoint(str(tmp_path / 'both'))
  assert both.update(2, _state(2), {'proxy_fd': 0.05, 'fid': 30.0})  # the best by FID
  assert not both.update(4, _state(4), {'proxy_fd': 0.06})  # worse than step 2's 0.05
  assert both.update(6, _state(6), {'proxy_fd': 0.01})
  assert (both.best['step'], both.best['metric']) == (6, 'proxy_fd')
  assert not os.path.exists(tmp_path / 'both_fid_step2')  # nothing to set aside


def test_a_best_of_steps_a_resumed_run_trains_again_is_set_aside(tmp_path, caplog):
  # Killed after step 6's evaluation, before its checkpoint; resumed from step 4 with
  # another learning rate: the step-6 best was of a state the run no longer has.
  best = checkpoint.BestCheckpoint(str(tmp_path / 'best'), resumed_from=0)
  assert best.update(6, _state(6), {'proxy_fd': 1.0})
  assert checkpoint.BestCheckpoint(str(tmp_path / 'best'), resumed_from=6).best['step'] == 6
  assert checkpoint.BestCheckpoint(str(tmp_path / 'best')).best['step'] == 6
  # An exact resume evaluates step 6 to the same results: the best stays, not copied.
  exact = checkpoint.BestCheckpoint(str(tmp_path / 'best'), resumed_from=4)
  assert not exact.update(6, _state(6), {'proxy_fd': 1.0})
  assert exact.best['step'] == 6 and not os.path.exists(tmp_path / 'best_proxy_fd_step6')
  assert exact.update(8, _state(8), {'proxy_fd': 0.5})  # then as usual
  # A resume that trains otherwise gives step 8 other results: that best is set aside.
  with caplog.at_level(logging.WARNING):
    resumed = checkpoint.BestCheckpoint(str(tmp_path / 'best'), resumed_from=6)
    assert resumed.update(8, _state(9), {'proxy_fd': 2.0})  # worse, and the best now
  assert 'resumed from step 6, whose step 8 gave other results' in caplog.text
  assert json.loads((tmp_path / 'best_proxy_fd_step8' / 'best.json').read_text())['step'] == 8
  assert resumed.best['value'] == 2.0
  # One that evaluates past the best's step without it (eval.every changed): aside too.
  later = checkpoint.BestCheckpoint(str(tmp_path / 'best'), resumed_from=7)
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    assert later.update(10, _state(10), {'proxy_fd': 3.0})
  assert 'whose step 8 was not evaluated again' in caplog.text
  assert os.path.exists(tmp_path / 'best_proxy_fd_step8_2')
  # A better step before the unconfirmed one replaces it: nothing left to confirm.
  assert later.update(12, _state(12), {'proxy_fd': 2.5})
  before = checkpoint.BestCheckpoint(str(tmp_path / 'best'), resumed_from=10)
  assert before.update(11, _state(11), {'proxy_fd': 0.1})
  assert before.update(12, _state(13), {'proxy_fd': 0.05})  # no set-aside of step 11's
  assert before.best['step'] == 12 and not glob.glob(str(tmp_path / 'best_proxy_fd_step11*'))


def test_a_change_of_evaluation_protocol_never_compares_two_distances(tmp_path, caplog):
  # A run resumed with eval.num_samples 1000 -> 10000: the FID of more samples is
  # lower by itself (less bias), so it must not beat the old best by that.
  small = {'num_fake': 1000, 'reference_split': 'train',
           'inception': {'num_real': 1000, 'weights': 'ab12'}}
  large = {**small, 'num_fake': 10000}
  best = checkpoint.BestCheckpoint(str(tmp_path / 'best'))
  assert best.update(2, _state(2), {'fid': 30.0}, small)
  assert not best.update(4, _state(4), {'fid': 31.0}, small)
  assert json.loads((tmp_path / 'best' / 'best.json').read_text())['protocol'] == small
  resumed = checkpoint.BestCheckpoint(str(tmp_path / 'best'))
  with caplog.at_level(logging.WARNING):
    assert resumed.update(6, _state(6), {'fid': 35.0}, large)  # worse, but not comparable
  assert 'num_fake 1000 -> 10000' in caplog.text
  kept = tmp_path / 'best_fid_step2'
  assert json.loads((kept / 'best.json').read_text())['protocol'] == small
  assert resumed.best['step'] == 6 and resumed.best['protocol'] == large
  assert not resumed.update(8, _state(8), {'fid': 36.0}, large)
  # Back to the first protocol, where a folder of the name the step-6 best would be
  # kept in exists already (a user's copy): a free name is used, nothing replaced.
  (tmp_path / 'best_fid_step6').mkdir()
  (tmp_path / 'best_fid_step6' / 'mine.txt').write_text('keep')
  assert resumed.update(10, _state(10), {'fid': 40.0}, small)
  assert json.loads((tmp_path / 'best_fid_step6_2' / 'best.json').read_text())['step'] == 6
  assert os.listdir(tmp_path / 'best_fid_step6') == ['mine.txt']
  assert json.loads((kept / 'best.json').read_text())['step'] == 2  # untouched
  # The names the folders got are the ones workdir.check_output_path protects.
  pattern = checkpoint.BestCheckpoint.set_aside_pattern('best')
  assert all(pattern.fullmatch(p.name) for p in tmp_path.iterdir() if p.name != 'best')
  assert not pattern.fullmatch('best') and not pattern.fullmatch('best_fid')
  # The checkpoint keeps the protocol too: a lost record is rebuilt with it.
  (tmp_path / 'best' / 'best.json').unlink()
  assert checkpoint.BestCheckpoint(str(tmp_path / 'best')).best['protocol'] == small


def test_a_best_record_without_a_protocol_is_set_aside_not_compared(tmp_path, caplog):
  # A record from before protocols were kept cannot say how its value was measured.
  best = checkpoint.BestCheckpoint(str(tmp_path / 'best'))
  assert best.update(2, _state(2), {'fid': 30.0})   # no protocol given: none recorded
  with caplog.at_level(logging.WARNING):
    assert best.update(4, _state(4), {'fid': 35.0}, {'num_fake': 1000})
  assert 'which the best so far lacks' in caplog.text
  assert (tmp_path / 'best_fid_step2').is_dir()


def test_another_extractor_s_protocol_does_not_set_the_best_aside(tmp_path):
  # Adding the digits proxy to an FID run changes nothing FID depends on.
  fid_only = {'num_fake': 1000, 'reference_split': 'train',
              'inception': {'num_real': 1000, 'weights': 'ab12'}}
  both = {**fid_only, 'proxy': {'num_real': 1000, 'judge': 'cd34'}}
  best = checkpoint.BestCheckpoint(str(tmp_path / 'best'))
  assert best.update(2, _state(2), {'fid': 30.0}, fid_only)
  assert not best.update(4, _state(4), {'fid': 31.0, 'proxy_fd': 0.2}, both)
  assert best.best['step'] == 2 and not (tmp_path / 'best_fid_step2').exists()
  # ... but a change of the Inception part does.
  assert best.update(6, _state(6), {'fid': 32.0}, {**fid_only, 'inception': {
      'num_real': 1000, 'weights': 'ab12', 'features': 'v2'}})
  assert (tmp_path / 'best_fid_step2').is_dir()


def test_a_checkpoint_unreadable_on_some_processes_only_stays_in_place(
    tmp_path, monkeypatch, caplog):
  # A failure on one process of several may be passing (its view of a shared file
  # system): the run resumes from an older step, but the checkpoint is not moved.
  directory = str(tmp_path / 'checkpoints')
  _save(directory, [2, 4])
  ckpt = checkpoint.Checkpointer(directory)
  read = ckpt._restore_step  # pylint: disable=protected-access
  current = []
  monkeypatch.setattr(ckpt, '_restore_step', lambda a, step: (current.append(step),
                                                               read(a, step))[1])
  # Step 4 read well here and failed on another process; step 2 everywhere well.
  monkeypatch.setattr(checkpoint, '_on_any_and_every_process',
                      lambda flag: (True, False) if current[-1] == 4 else (flag, flag))
  with caplog.at_level(logging.WARNING):
    assert ckpt.restore(_abstract())[2] == 2
  assert 'it failed on some processes only' in caplog.text
  assert sorted(os.listdir(directory)) == ['2', '4']


def test_describe_change_names_the_fields_that_differ():
  assert checkpoint.describe_change(
      {'num_fake': 1000, 'reference_split': 'train', 'proxy': {'num_real': 5}},
      {'num_fake': 1000, 'reference_split': 'test', 'proxy': {'num_real': 5}}) == (
          'reference_split "train" -> "test"')
  assert checkpoint.describe_change({'a': 1}, {}) == 'a 1 -> null'


@pytest.mark.parametrize('text, problem', [('{"step": 6, "met', 'is not valid JSON'),
                                           ('[6]', 'is not a best-checkpoint record')])
def test_a_damaged_best_record_without_a_checkpoint_gets_a_short_error(tmp_path, text, problem):
  (tmp_path / 'best').mkdir()
  (tmp_path / 'best' / 'best.json').write_text(text, encoding='utf-8')
  with pytest.raises(errors.WorkdirError, match=f'best.json {problem}.* move the folder'):
    checkpoint.BestCheckpoint(str(tmp_path / 'best'))


@pytest.mark.parametrize('record', ['stale', 'damaged', 'missing'])
def test_the_best_record_is_rebuilt_from_the_checkpoint_it_should_describe(tmp_path, record):
  # A run killed after saving a new best checkpoint but before writing best.json
  # (or a damaged record) resumes with the checkpoint's own results as the best.
  best = checkpoint.BestCheckpoint(str(tmp_path / 'best'))
  assert best.update(2, _state(2), {'fid': 30.0})
  path = tmp_path / 'best' / 'best.json'
  if record == 'damaged':
    path.write_text('{"step": 2, "met', encoding='utf-8')
  elif record == 'missing':
    path.unlink()
  saver = checkpoint.Checkpointer(str(tmp_path / 'best'), max_to_keep=1, async_save=False)
  saver.save(6, _state(6), {'results': {'fid': 20.0, 'kid': 0.1}})
  saver.close()
  resumed = checkpoint.BestCheckpoint(str(tmp_path / 'best'))
  assert resumed.best == {'step': 6, 'metric': 'fid', 'value': 20.0,
                          'results': {'fid': 20.0, 'kid': 0.1}, 'protocol': None}
  with open(path, encoding='utf-8') as f:
    assert json.load(f) == resumed.best
  assert not resumed.update(8, _state(8), {'fid': 25.0})  # worse than step 6's
  assert resumed.update(10, _state(10), {'fid': 15.0})


def test_best_checkpoint_ignores_results_without_a_distance(tmp_path):
  best = checkpoint.BestCheckpoint(str(tmp_path / 'best'))
  assert not best.update(2, _state(2), {'modes_captured': 8.0})
  assert not (tmp_path / 'best' / 'best.json').exists()


def test_saving_a_replicated_state_on_cpu_compiles_nothing(tmp_path):
  # Orbax's default copies a replicated array to the host in one slice per device,
  # and each array shape costs a compiled slice program: seconds for the first
  # checkpoint of every model on CPU, where the devices share the host's memory.
  replicated = parallel.DataParallel().replicated
  state = {f'w{i}': jax.device_put(np.arange(8 * (i + 1), dtype=np.float32) + i, replicated)
           for i in range(4)}
  jax.block_until_ready(state)
  compiles = []

  def listener(event, _secs, **_):
    if event == '/jax/core/compile/backend_compile_duration':
      compiles.append(event)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    directory = str(tmp_path / 'checkpoints')
    ckpt = checkpoint.Checkpointer(directory, async_save=False)
    ckpt.save(1, state, {'next_batch': 1})
    ckpt.close()
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert jax.device_count() > 1 and compiles == []
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                          state)
  restored, _, step = checkpoint.Checkpointer(directory).restore(abstract)
  assert step == 1
  for name, value in state.items():
    np.testing.assert_array_equal(restored[name], np.asarray(value))
