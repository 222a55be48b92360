"""Tests of a run's workdir: the saved config, refused and recorded config changes."""

import errno
import fcntl
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading

import jax
import numpy as np
import pytest

from gan_jax import checkpoint
from gan_jax import errors
from gan_jax import preemption
from gan_jax import state as state_lib
from gan_jax import train
from gan_jax import workdir as workdir_lib
from gan_jax.data import image_folder
from tests import data_helpers as h
from tests.helpers import tiny_config


@pytest.fixture(name='run')
def _run(tmp_path):
  """A workdir that holds a run with a checkpoint (step 4)."""
  workdir = str(tmp_path / 'run')
  assert workdir_lib.prepare(tiny_config(), workdir) is None
  os.makedirs(os.path.join(workdir, 'checkpoints', '4'))
  return workdir


def _config_bytes(workdir):
  with open(os.path.join(workdir, 'config.json'), 'rb') as f:
    return f.read()


def test_a_new_run_saves_its_config(tmp_path):
  workdir = str(tmp_path / 'new')
  assert workdir_lib.prepare(tiny_config(**{'seed': 5}), workdir) is None
  assert workdir_lib.load_config(workdir).seed == 5


def test_the_same_config_resumes_without_changes(run):
  assert workdir_lib.prepare(tiny_config(), run) is None


def test_a_changed_training_field_is_refused_with_a_diff(run):
  before = _config_bytes(run)
  with pytest.raises(errors.WorkdirError, match=r"loss.type: saved 'non_saturating', now 'hinge'"
                     ) as error:
    workdir_lib.prepare(tiny_config(**{'loss.type': 'hinge'}), run)
  assert '--allow_config_change' in str(error.value)
  assert _config_bytes(run) == before


def test_an_allowed_change_is_recorded_with_its_step_and_replayed(run, caplog):
  before = _config_bytes(run)
  accepted = workdir_lib.prepare(tiny_config(**{'loss.type': 'hinge'}), run, allow_changes=True)
  with caplog.at_level(logging.WARNING):
    workdir_lib.record_changes(run, accepted, step=4)
  # Said in the log as well as in the history file.
  assert ("at step 4 with changed settings (--allow_config_change): loss.type: saved "
          "'non_saturating', now 'hinge'") in caplog.text
  assert _config_bytes(run) == before  # the original config is never overwritten
  entries = workdir_lib.history(run)
  assert [(e['step'], e['accepted']) for e in entries] == [(4, '--allow_config_change')]
  assert entries[0]['changes'] == {'loss.type': {'from': 'non_saturating', 'to': 'hinge'}}
  assert workdir_lib.load_config(run).loss.type == 'hinge'
  # The next resume compares against the replayed config: no change left.
  assert workdir_lib.prepare(tiny_config(**{'loss.type': 'hinge'}), run) is None


def test_free_fields_change_without_the_flag_and_are_recorded(run):
  accepted = workdir_lib.prepare(
      tiny_config(**{'train.num_steps': 50, 'train.log_every': 7}), run)
  assert accepted['accepted'] == 'free fields'
  assert {'train.num_steps', 'train.log_every'} <= set(accepted['changes'])


def test_more_steps_with_a_decaying_learning_rate_needs_the_flag(tmp_path):
  workdir = str(tmp_path / 'run')
  decaying = {'optim.schedule': 'linear'}
  workdir_lib.prepare(tiny_config(**decaying), workdir)
  os.makedirs(os.path.join(workdir, 'checkpoints', '2'))
  with pytest.raises(errors.WorkdirError,
                     match=r"(?s)train.num_steps.*schedule='linear'.*constant.*--allow_config"):
    workdir_lib.prepare(tiny_config(**decaying, **{'train.num_steps': 60}), workdir)


def test_a_different_network_is_refused_even_with_the_flag(run):
  with pytest.raises(errors.WorkdirError, match='different model') as error:
    workdir_lib.prepare(tiny_config(**{'model.ngf': 16}), run, allow_changes=True)
  assert 'model.ngf: saved 8, now 16' in str(error.value)


def test_another_model_with_fewer_steps_is_called_another_model(run):
  # It was told to raise train.num_steps above the newest step, which only led to the
  # different-model refusal next.
  with pytest.raises(errors.WorkdirError, match='different model') as error:
    workdir_lib.prepare(tiny_config(**{'model.ngf': 16, 'train.num_steps': 2}), run)
  assert 'raise train.num_steps' not in str(error.value)


@pytest.mark.parametrize('entry,fragment', [('.git', 'a source tree (.git)'),
                                            ('pyproject.toml', 'a source tree (pyproject.toml)'),
                                            ('digit_0001.PNG', '1 image file(s) such as '
                                                               'digit_0001.PNG (a data folder?)')])
def test_a_new_run_is_refused_in_a_source_tree_or_a_folder_of_images(tmp_path, entry, fragment):
  folder = tmp_path / 'folder'
  folder.mkdir()
  (folder / entry).write_text('')
  with pytest.raises(errors.WorkdirError, match=re.escape(fragment)):
    with workdir_lib.training_lock(str(folder)):
      pass
  assert sorted(os.listdir(folder)) == [entry]  # not even the lock file


def test_a_run_and_other_files_may_share_a_folder(tmp_path, run):
  # Only a folder that holds no run is judged: a run's own folder may hold anything.
  open(os.path.join(run, 'grid.png'), 'w').close()
  with workdir_lib.training_lock(run):
    pass
  (tmp_path / 'notes').mkdir()
  (tmp_path / 'notes' / 'README.txt').write_text('')
  with workdir_lib.training_lock(str(tmp_path / 'notes')):
    pass


@pytest.mark.parametrize('inside', ['', 'runs/a'])
def test_a_workdir_in_the_image_folder_it_trains_on_is_refused(tmp_path, inside):
  # The folder is read with its sub-folders: the resumed run trained on its own sample
  # grids (a conditional one asked for a class named 'samples').
  config = tiny_config()
  config.data.source, config.data.path = 'image_folder', str(tmp_path / 'images')
  with pytest.raises(errors.WorkdirError, match='lies inside the image folder the run trains'):
    workdir_lib.check_outside_the_data(config.data, str(tmp_path / 'images' / inside))
  workdir_lib.check_outside_the_data(config.data, str(tmp_path / 'images_run'))  # beside
  workdir_lib.check_outside_the_data(config.data, str(tmp_path))  # the data inside the run
  config.data.source = 'digits'
  workdir_lib.check_outside_the_data(config.data, str(tmp_path / 'images' / inside))


def test_an_output_where_nothing_can_be_written_is_refused_before_the_work(tmp_path):
  # /proc takes no new files, not even from root (file permissions would not stop root).
  with pytest.raises(errors.ConfigError, match='--output=/proc/gan_jax/x.json: cannot write in '
                                               '/proc'):
    workdir_lib.check_output_file('/proc/gan_jax/x.json', flag='--output')
  with pytest.raises(errors.ConfigError, match='cannot write in /proc'):  # an existing file
    workdir_lib.check_writable('/proc/version', flag='--output')
  workdir_lib.check_writable(str(tmp_path / 'new' / 'x.json'), flag='--output')
  assert os.listdir(tmp_path) == []  # the probe leaves nothing, and makes no folder


@pytest.mark.parametrize('field,value', [('optim.g.name', 'sgd'), ('optim.d.name', 'rmsprop'),
                                         ('loss.hist_avg_weight', 0.1)])
def test_a_change_of_what_the_checkpoints_hold_is_refused_even_with_the_flag(run, field, value):
  # Restoring would fail on every checkpoint (and move the good ones aside as damaged).
  with pytest.raises(errors.WorkdirError, match=rf'cannot continue, even with '
                                                rf'--allow_config_change:\n  {field}: saved'):
    workdir_lib.prepare(tiny_config(**{field: value}), run, allow_changes=True)


def test_a_setting_no_config_reads_is_no_change_on_resume(tmp_path):
  # wgan_celeba runs were saved with RMSprop's unread b1 = 0.0, a setting refused since:
  # resuming with the config of today (b1 at its default) must not need the flag.
  from gan_jax import config_check  # pylint: disable=g-import-not-at-top
  rmsprop = {'optim.g.name': 'rmsprop', 'optim.d.name': 'rmsprop'}
  workdir = str(tmp_path / 'run')
  workdir_lib.prepare(tiny_config(**rmsprop, **{'optim.g.b1': 0.0, 'optim.d.b1': 0.0}), workdir)
  os.makedirs(os.path.join(workdir, 'checkpoints', '4'))
  today = tiny_config(**rmsprop)
  with pytest.raises(errors.WorkdirError, match='optim.d.b1: saved 0.0, now 0.5'):
    workdir_lib.prepare(today, workdir)
  assert workdir_lib.prepare(today, workdir, fields_not_read=config_check.fields_not_read) is None
  # A saved config today's checks refuse (an op since renamed): its change is reported.
  old = str(tmp_path / 'old')
  workdir_lib.prepare(tiny_config(**{'augment.policy': 'cutout',
                                     'augment.cutout_ratio': 0.3}), old)
  os.makedirs(os.path.join(old, 'checkpoints', '4'))
  saved = json.loads(open(os.path.join(old, 'config.json')).read())
  saved['augment']['policy'] = 'old_cutout'
  with open(os.path.join(old, 'config.json'), 'w') as f:
    json.dump(saved, f)
  with pytest.raises(errors.WorkdirError, match='augment.cutout_ratio: saved 0.3, now 0.5'):
    workdir_lib.prepare(tiny_config(), old, fields_not_read=config_check.fields_not_read)
  # A field this config reads is a change as before (SGD's b1 is its momentum).
  sgd = tiny_config(**{'optim.g.name': 'rmsprop', 'optim.d.name': 'sgd'})
  with pytest.raises(errors.WorkdirError, match='optim.d.name'):
    workdir_lib.prepare(sgd, workdir, fields_not_read=config_check.fields_not_read)


def test_a_model_field_that_keeps_the_shapes_needs_only_the_flag(run):
  with pytest.raises(errors.WorkdirError, match='model.bn_momentum'):
    workdir_lib.prepare(tiny_config(**{'model.bn_momentum': 0.5}), run)
  accepted = workdir_lib.prepare(tiny_config(**{'model.bn_momentum': 0.5}), run,
                                 allow_changes=True)
  assert set(accepted['changes']) == {'model.bn_momentum'}


def test_before_the_first_checkpoint_every_change_is_accepted_and_recorded(tmp_path):
  workdir = str(tmp_path / 'run')
  workdir_lib.prepare(tiny_config(), workdir)
  accepted = workdir_lib.prepare(tiny_config(**{'model.ngf': 16}), workdir)
  workdir_lib.record_changes(workdir, accepted, step=0)
  assert workdir_lib.history(workdir)[0]['accepted'] == 'before the first checkpoint'
  assert workdir_lib.load_config(workdir).model.ngf == 16


def test_missing_run_folder_is_a_missing_file_error(tmp_path):
  with pytest.raises(errors.MissingFileError, match='config.json'):
    workdir_lib.load_config(str(tmp_path))


@pytest.mark.parametrize('below', ['', 'sub'])
def test_a_file_in_the_way_of_the_run_folder_is_a_workdir_error(tmp_path, below):
  blocking = tmp_path / 'notes.txt'
  blocking.write_text('mine')
  workdir = os.path.join(str(blocking), below) if below else str(blocking)
  with pytest.raises(errors.WorkdirError, match='cannot be a run folder') as raised:
    workdir_lib.prepare(tiny_config(), workdir)
  assert f'{blocking} is a file' in str(raised.value)
  assert blocking.read_text() == 'mine'


def test_checkpoints_without_their_config_json_are_refused_and_nothing_is_written(run):
  # Checkpoints copied without their record (a forked run): training on with this
  # invocation's config would take it, a changed loss or learning rate included, for
  # theirs, and a new config.json would make the guess the record.
  os.remove(os.path.join(run, 'config.json'))
  for config in (tiny_config(), tiny_config(**{'loss.type': 'hinge', 'model.ngf': 16})):
    with pytest.raises(errors.WorkdirError,
                       match=r'holds checkpoints \(the newest of step 4\) but no config.json'):
      workdir_lib.prepare(config, run)
    assert not os.path.exists(os.path.join(run, 'config.json'))


def test_a_damaged_config_file_is_a_workdir_error(run):
  with open(os.path.join(run, 'config.json'), 'w', encoding='utf-8') as f:
    f.write('{"model": ')
  with pytest.raises(errors.WorkdirError, match='not valid JSON'):
    workdir_lib.load_config(run)


def test_saved_config_from_an_older_version_gets_new_fields_defaults(tmp_path):
  # A run saved before a field existed (here: model.extra_layers, dropped from
  # the saved JSON) loads with that field's default; saved values win.
  workdir = str(tmp_path / 'run')
  workdir_lib.prepare(tiny_config(**{'model.ngf': 12}), workdir)
  path = os.path.join(workdir, 'config.json')
  with open(path, encoding='utf-8') as f:
    saved = json.load(f)
  del saved['model']['extra_layers']
  saved['model']['a_field_from_the_future'] = 3
  with open(path, 'w', encoding='utf-8') as f:
    json.dump(saved, f)
  config = workdir_lib.load_config(workdir)
  assert config.model.extra_layers == 0
  assert config.model.ngf == 12 and config.model.a_field_from_the_future == 3
  assert config.model.resolution == 32 and config.name == 'dcgan_digits'


def test_summary_names_the_outputs_and_the_next_commands(run):
  text = workdir_lib.summary(run, seconds=75)
  assert 'step 4' in text and '1 min 15 s' in text
  assert 'python -m gan_jax.sample' in text and 'tensorboard' in text
  stopped = workdir_lib.summary(run, seconds=1,
                                stopped=str(preemption.Interrupted(signal.SIGINT, 4)))
  assert stopped.startswith('Stopped by SIGINT at step 4')
  assert stopped.lower().count('rerun the same command to resume') == 1  # said once


def test_the_next_commands_paste_into_a_shell_for_a_path_with_spaces(tmp_path):
  workdir = str(tmp_path / 'my runs' / "it's 1")
  workdir_lib.prepare(tiny_config(), workdir)
  lines = [l.strip() for l in workdir_lib.summary(workdir, seconds=1).splitlines()]
  commands = [l for l in lines if l.startswith(('python -m', 'tensorboard'))]
  assert len(commands) == 3
  for command in commands:
    words = shlex.split(command.split('   (')[0])
    assert f'--workdir={workdir}' in words or f'--logdir={workdir}' in words, command


def test_summary_aligns_the_outputs_column(run):
  for name, line in (('metrics.jsonl', '{"step": 4}'),
                     (workdir_lib.HISTORY_FILE, '{"changes": {}, "step": 4}')):
    with open(os.path.join(run, name), 'w', encoding='utf-8') as f:
      f.write(line + '\n')
  text = workdir_lib.summary(run, seconds=1)
  rows = text.split('Outputs:\n')[1].split('\nNext:')[0].splitlines()
  assert [row.split()[0] for row in rows] == ['checkpoints', 'metrics.jsonl',
                                              workdir_lib.HISTORY_FILE]
  starts = {row.index(run) for row in rows}
  assert starts == {2 + len(workdir_lib.HISTORY_FILE) + 2}, rows


@pytest.mark.parametrize('overrides, metrics', [
    ({}, 'proxy'),  # the digits, unconditional
    ({'model.num_classes': 10}, 'proxy,cas'),
    ({'model.num_classes': 10, 'model.d_cond': 'semi_supervised'}, 'accuracy'),
    # An image folder has no held-out split: gan_jax.evaluate refuses accuracy there.
    ({'model.num_classes': 10, 'model.d_cond': 'semi_supervised',
      'data.source': 'image_folder'}, 'fid'),
    ({'data.source': 'toy'}, 'proxy'),
    ({'data.source': 'tfds'}, 'fid'),
    ({'data.source': 'tfds', 'eval.metrics': 'kid'}, 'kid'),  # the config's own choice wins
])
def test_suggested_metrics_work_offline_where_the_data_allows(overrides, metrics):
  config = tiny_config(**overrides)
  config.eval.metrics = overrides.get('eval.metrics', '')
  assert workdir_lib.suggested_metrics(config) == metrics


def test_summary_of_a_semi_supervised_run_suggests_its_accuracy(tmp_path):
  workdir = str(tmp_path / 'ssl')
  config = tiny_config(**{'model.num_classes': 10, 'model.d_cond': 'semi_supervised'})
  config.eval.metrics = ''
  workdir_lib.prepare(config, workdir)
  text = workdir_lib.summary(workdir, seconds=1)
  assert f'python -m gan_jax.evaluate --workdir={workdir} --metrics=accuracy\n' in text


@pytest.mark.parametrize('line', ['{"changes": {"train.num_steps": {"to": 9', '[1, 2]',
                                  '{"step": 4}', '{"changes": {"train.num_steps": 9}}'])
def test_a_damaged_config_history_line_is_named_in_a_short_error(run, line):
  with open(os.path.join(run, workdir_lib.HISTORY_FILE), 'w', encoding='utf-8') as f:
    f.write('{"changes": {"train.num_steps": {"from": 4, "to": 8}}, "step": 4}\n' + line + '\n')
  with pytest.raises(errors.WorkdirError, match=r'config_history.jsonl, line 2, is not a config'):
    workdir_lib.load_config(run)


def test_changes_that_would_apply_to_no_step_are_refused(run):
  # The run in `run` has trained 4 steps. A sweep point in the same (default) workdir
  # with fewer steps trained nothing and exited 0; a change accepted on a finished run
  # was recorded, so load_config named a loss no step was trained with.
  history = os.path.join(run, workdir_lib.HISTORY_FILE)
  for overrides, allow in (({'train.num_steps': 2}, False),
                           ({'train.num_steps': 3, 'loss.type': 'hinge'}, True),
                           ({'train.num_steps': 4, 'loss.type': 'hinge'}, True)):
    with pytest.raises(errors.WorkdirError, match=r'(?s)newest checkpoint of the run .* is step 4.*would train no step after it.*'
                       r'Use another --workdir for a new run'):
      workdir_lib.prepare(tiny_config(**overrides), run, allow_changes=allow)
    assert not os.path.exists(history)
  # Free changes of a finished run, and changes with steps left to train, go on.
  assert workdir_lib.prepare(tiny_config(**{'train.num_steps': 4, 'eval.every': 7}), run)
  accepted = workdir_lib.prepare(tiny_config(**{'train.num_steps': 5, 'loss.type': 'hinge'}),
                                 run, allow_changes=True)
  assert {'train.num_steps', 'loss.type'} <= set(accepted['changes'])


def test_a_resume_is_judged_on_process_zero_s_listing(run, monkeypatch):
  # Several processes on a shared file system: one may list an older set of
  # checkpoints. All must judge the resume alike (else some raise and the others
  # wait in a collective until the heartbeat timeout), so each uses process 0's.
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  seen = []

  def process_zero_sees(values):
    seen.append(np.asarray(values).tolist())
    return np.asarray([1, 8])  # config.json exists, newest checkpoint 8
  monkeypatch.setattr(workdir_lib.multihost_utils, 'broadcast_one_to_all', process_zero_sees)
  monkeypatch.setattr(workdir_lib.multihost_utils, 'sync_global_devices', lambda name: None)
  with pytest.raises(errors.WorkdirError, match=r'(?s)newest checkpoint .* is step 8'):
    workdir_lib.prepare(tiny_config(**{'train.num_steps': 6, 'eval.every': 5}), run)
  assert seen == [[1, 4]]  # what this process listed, replaced by process 0's


def test_each_start_of_training_records_how_it_was_invoked(tmp_path):
  # For a table of results: the command, the source's commit, the step it started at.
  workdir = str(tmp_path / 'run')
  overrides = {'train.num_steps': 2, 'train.checkpoint_every': 2, 'train.sample_every': 0}
  train.train_and_evaluate(tiny_config(**overrides), workdir)
  train.train_and_evaluate(tiny_config(**{**overrides, 'train.num_steps': 3}), workdir,
                           allow_config_change=True)
  with open(os.path.join(workdir, workdir_lib.STARTS_FILE), encoding='utf-8') as f:
    starts = [json.loads(line) for line in f]
  assert [start['step'] for start in starts] == [0, 2]
  head = subprocess.run(['git', '-C', os.path.dirname(os.path.dirname(__file__)), 'rev-parse',
                         'HEAD'], capture_output=True, text=True, check=True).stdout.strip()
  for start in starts:
    assert start['argv'] == sys.argv and start['commit'].split('+')[0] == head
    assert (start['jax'], start['devices'], start['processes']) == (
        jax.__version__, jax.device_count(), 1)
  with pytest.raises(errors.ConfigError, match='part of the record'):
    workdir_lib.check_output_file(os.path.join(workdir, workdir_lib.STARTS_FILE),
                                  flag='--output', workdir=workdir)


def test_config_history_changes_are_replayed_in_order(run):
  with open(os.path.join(run, workdir_lib.HISTORY_FILE), 'w', encoding='utf-8') as f:
    f.write('{"changes": {"train.num_steps": {"from": 6, "to": 8}}, "step": 4}\n\n'
            '{"changes": {"train.num_steps": {"from": 8, "to": 12}}, "step": 8}\n')
  assert workdir_lib.load_config(run).train.num_steps == 12


def test_restore_state_reads_the_best_checkpoint_on_request(tmp_path):
  config = tiny_config()
  workdir = str(tmp_path / 'run')
  workdir_lib.prepare(config, workdir)
  with pytest.raises(errors.MissingFileError, match='No best checkpoint.*eval.every'):
    workdir_lib.restore_state(workdir, best=True)
  with pytest.raises(errors.MissingFileError, match='No checkpoint in .*train first'):
    workdir_lib.restore_state(workdir)
  # Reading creates nothing.
  assert sorted(os.listdir(workdir)) == [workdir_lib.CONFIG_FILE]
  base = state_lib.create_state(config, jax.random.key(0))
  states = {step: base.replace(step=np.int32(step)) for step in (2, 4)}
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, workdir_lib.CHECKPOINTS),
                                 async_save=False, max_to_keep=None)
  for step, state in states.items():
    ckpt.save(step, state, {'next': step})
  ckpt.close()
  best = checkpoint.BestCheckpoint(os.path.join(workdir, workdir_lib.BEST))
  best.update(2, states[2], {'proxy_fd': 0.1})
  best.update(4, states[4], {'proxy_fd': 0.3})  # worse: step 2 stays the best
  assert workdir_lib.restore_state(workdir)[2] == 4
  _, state, step = workdir_lib.restore_state(workdir, best=True)
  assert step == 2 and int(state.step) == 2
  # The best checkpoint outlives the one of its step in checkpoints/ (max_to_keep).
  shutil.rmtree(os.path.join(workdir, workdir_lib.CHECKPOINTS, '2'))
  assert workdir_lib.restore_state(workdir, best=True)[2] == 2


def _cat_and_dog_run(tmp_path):
  """(image folder with classes cat and dog, a conditional config reading it, its
  prepared workdir), all under tmp_path."""
  images = tmp_path / 'images'
  for value, name in ((10, 'cat'), (20, 'dog')):
    h.write_folder(str(images), [value], subdir=name)
  config = tiny_config(**{'model.num_classes': 2})
  config.data.source, config.data.path = 'image_folder', str(images)
  workdir = str(tmp_path / 'run')
  workdir_lib.prepare(config, workdir)
  return images, config, workdir


def test_renamed_class_folders_are_refused_once_the_run_has_trained(tmp_path):
  images, config, workdir = _cat_and_dog_run(tmp_path)
  record = lambda: workdir_lib.record_class_names(workdir, workdir_lib.check_class_count(config))
  assert record() == ['cat', 'dog']
  os.rename(images / 'cat', images / 'zebra')  # before any checkpoint: a fresh start
  assert record() == ['dog', 'zebra']
  os.makedirs(os.path.join(workdir, workdir_lib.CHECKPOINTS, '2'))
  os.rename(images / 'zebra', images / 'cat')  # ids 0 and 1 would swap meaning
  with pytest.raises(errors.WorkdirError, match=r"\(0, 'dog', 'cat'\), \(1, 'zebra', 'dog'\)"):
    record()
  with open(os.path.join(workdir, workdir_lib.CLASS_NAMES_FILE), encoding='utf-8') as f:
    assert json.load(f) == ['dog', 'zebra']  # the record is kept
  assert workdir_lib.saved_class_names(workdir) == ['dog', 'zebra']
  assert workdir_lib.saved_class_names(str(tmp_path / 'no_run')) is None


def test_a_damaged_class_names_file_is_a_one_line_error_for_training_and_a_warning_for_samples(
    tmp_path, caplog):
  _, config, workdir = _cat_and_dog_run(tmp_path)
  os.makedirs(os.path.join(workdir, workdir_lib.CHECKPOINTS, '2'))
  path = os.path.join(workdir, workdir_lib.CLASS_NAMES_FILE)
  for damaged in ('["cat", "do', '{"0": "cat"}', '[0, 1]'):
    with open(path, 'w', encoding='utf-8') as f:
      f.write(damaged)
    with pytest.raises(errors.WorkdirError, match='class_names.json .*damaged'):
      workdir_lib.record_class_names(workdir, ['cat', 'dog'])
    with open(path, encoding='utf-8') as f:
      assert f.read() == damaged  # not replaced: the user restores it
    caplog.clear()
    assert workdir_lib.saved_class_names(workdir) is None
    assert 'numbered by class id' in caplog.text


def test_a_wrong_class_count_is_refused_before_decoding_and_recording(tmp_path, monkeypatch):
  images = tmp_path / 'images'
  for value, name in ((10, 'cat'), (20, 'dog')):
    h.write_folder(str(images), [value, value + 1], subdir=name)
  config = tiny_config(**{'model.num_classes': 3})
  config.data.source, config.data.path = 'image_folder', str(images)

  def decoded(*args, **kwargs):
    raise AssertionError('a file was decoded before the class count was checked')

  monkeypatch.setattr(image_folder, 'decode', decoded)
  workdir = tmp_path / 'run'
  with pytest.raises(errors.ConfigError, match=r"num_classes=3, but the data .* has 2 classes"):
    train.train_and_evaluate(config, str(workdir))
  assert not (workdir / workdir_lib.CONFIG_FILE).exists()


# --- the training lock ---------------------------------------------------------------


def test_a_second_training_run_is_refused_while_the_first_holds_the_workdir(tmp_path):
  workdir = str(tmp_path / 'run')
  with workdir_lib.training_lock(workdir):
    with open(os.path.join(workdir, workdir_lib.LOCK_FILE), encoding='utf-8') as f:
      assert f.read().startswith(f'pid {os.getpid()} on ')
    # Another open file (as another process would have) cannot take it.
    with pytest.raises(errors.WorkdirError,
                       match=rf'in use by another training run \(pid {os.getpid()} on '):
      with workdir_lib.training_lock(workdir):
        pass
    with pytest.raises(errors.WorkdirError, match='pass another --workdir'):
      train.train_and_evaluate(tiny_config(), workdir)
    assert os.listdir(workdir) == [workdir_lib.LOCK_FILE]  # the refused run wrote nothing
  with workdir_lib.training_lock(workdir):  # released when the holder leaves
    pass


def test_the_lock_of_a_killed_run_is_free_at_once(tmp_path):
  workdir = str(tmp_path / 'run')
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time\n'
       'from gan_jax import workdir\n'
       'with workdir.training_lock(sys.argv[1]):\n'
       '  print("held", flush=True)\n'
       '  time.sleep(120)\n', workdir],
      stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
  try:
    assert holder.stdout.readline().strip() == 'held'
    with pytest.raises(errors.WorkdirError, match=rf'\(pid {holder.pid} on '):
      with workdir_lib.training_lock(workdir):
        pass
  finally:
    holder.kill()
    holder.wait()
  with workdir_lib.training_lock(workdir):  # SIGKILL left no stale lock
    pass


def test_tools_beside_a_training_run_say_so(tmp_path, caplog, monkeypatch):
  # sample / evaluate / classify read a run that may be training: its first checkpoint
  # still to come and its save in progress are not damage, nor files to delete.
  config = tiny_config(**{'train.checkpoint_every': 3, 'train.num_steps': 8})
  workdir = str(tmp_path / 'run')
  workdir_lib.prepare(config, workdir)
  assert workdir_lib.training_run_in(workdir) is None
  assert workdir_lib.LOCK_FILE not in os.listdir(workdir)  # asking creates nothing
  folder = os.path.join(workdir, workdir_lib.CHECKPOINTS)
  with workdir_lib.training_lock(workdir):
    assert workdir_lib.training_run_in(workdir).startswith(f'pid {os.getpid()} on ')
    with pytest.raises(errors.MissingFileError,
                       match=r'a run is training there \(pid .*saves its first at step 3'):
      workdir_lib.restore_state(workdir)
    ckpt = checkpoint.Checkpointer(folder, async_save=False, max_to_keep=None)
    ckpt.save(3, state_lib.create_state(config, jax.random.key(0)), {'next': 3})
    ckpt.close()
    os.makedirs(os.path.join(folder, f'6.{checkpoint.TMP_MARKER}-1'))  # a save under way
    caplog.clear()
    with caplog.at_level(logging.INFO):
      assert workdir_lib.restore_state(workdir)[2] == 3
    assert 'save in progress of the run training there' in caplog.text
    assert 'can be deleted' not in caplog.text
    # Checkpoints rotated away while they were read (the run saved step 6 meanwhile):
    # listed and read again, once.
    restore, calls = checkpoint.Checkpointer.restore, []

    def rotated_once(self, *args, **kwargs):
      calls.append(1)
      if len(calls) == 1:
        os.rename(os.path.join(folder, '3'), os.path.join(folder, '6'))
        raise checkpoint.CheckpointError('None of the checkpoints could be restored')
      return restore(self, *args, **kwargs)
    monkeypatch.setattr(checkpoint.Checkpointer, 'restore', rotated_once)
    assert workdir_lib.restore_state(workdir)[2] == 6 and len(calls) == 2
    # A run that replaces its checkpoints faster than they are read: a few attempts,
    # then an error that says so (it blamed damaged checkpoints).
    calls.clear()

    def rotated_every_time(self, *args, **kwargs):
      calls.append(1)
      step = max(int(n) for n in os.listdir(folder) if n.isdigit())
      os.rename(os.path.join(folder, str(step)), os.path.join(folder, str(step + 1)))
      raise checkpoint.CheckpointError('None of the checkpoints could be restored')
    monkeypatch.setattr(checkpoint.Checkpointer, 'restore', rotated_every_time)
    with pytest.raises(errors.WorkdirError, match=r'were replaced while they were read, 5 '
                       r'times in a row \(a run trains there: pid '):
      workdir_lib.restore_state(workdir)
    assert len(calls) == 5
    monkeypatch.undo()
    os.rename(os.path.join(folder, '11'), os.path.join(folder, '3'))
  caplog.clear()
  with caplog.at_level(logging.WARNING):  # no run: an interrupted save's leftover
    assert workdir_lib.restore_state(workdir)[2] == 3
  assert 'can be deleted' in caplog.text
  # Checkpoints that fail to read while their list stays the same are read once.
  calls.clear()

  def always_fails(self, *args, **kwargs):
    calls.append(1)
    raise checkpoint.CheckpointError('None of the checkpoints could be restored')
  monkeypatch.setattr(checkpoint.Checkpointer, 'restore', always_fails)
  with pytest.raises(checkpoint.CheckpointError):
    workdir_lib.restore_state(workdir)
  assert len(calls) == 1
  monkeypatch.undo()
  # A file system without flock: whether a run trains there is not known.
  def no_locks(fd, operation):
    raise OSError(errno.ENOLCK, 'No locks available')
  monkeypatch.setattr(fcntl, 'flock', no_locks)
  assert workdir_lib.training_run_in(workdir) is None
  assert workdir_lib.restore_state(workdir)[2] == 3


def test_a_starting_run_waits_for_a_tool_that_looks_at_its_lock(tmp_path):
  workdir = str(tmp_path / 'run')
  os.makedirs(workdir)
  fd = os.open(os.path.join(workdir, workdir_lib.LOCK_FILE), os.O_RDWR | os.O_CREAT)
  fcntl.flock(fd, fcntl.LOCK_SH)  # what training_run_in holds for a moment
  releaser = threading.Timer(0.3, lambda: os.close(fd))
  releaser.start()
  try:
    with workdir_lib.training_lock(workdir):
      assert workdir_lib.training_run_in(workdir) is not None
  finally:
    releaser.join()


@pytest.mark.parametrize('overrides,error', [
    ({'data.source': 'image_folder', 'data.path': 'missing'}, errors.MissingFileError),
    ({'model.name': 'mlp'}, errors.ConfigError),  # 2-D points from a digits config
])
def test_a_run_that_cannot_start_leaves_no_workdir(tmp_path, overrides, error):
  if 'data.path' in overrides:
    overrides = {**overrides, 'data.path': str(tmp_path / 'missing')}
  workdir = tmp_path / 'run'
  with pytest.raises(error):
    train.train_and_evaluate(tiny_config(**overrides), str(workdir))
  assert not workdir.exists()  # no config.json claims a run that never started


@pytest.mark.parametrize('text', ['{}', '[]', '{"model": 3, "train": {}, "data": {}}'])
def test_a_config_json_that_is_no_run_config_is_reported_as_such(tmp_path, text):
  workdir = tmp_path / 'run'
  workdir_lib.prepare(tiny_config(), str(workdir))
  (workdir / workdir_lib.CONFIG_FILE).write_text(text)
  # Laid over the defaults it would describe another model, and every checkpoint
  # would look damaged; the message names the file instead.
  with pytest.raises(errors.WorkdirError, match=r'config.json is not the config of a run'):
    workdir_lib.load_config(str(workdir))


def test_an_output_file_is_checked_before_any_work(tmp_path):
  (tmp_path / 'afile').write_text('x')
  for output, message in [('', '--json is empty'),
                          (str(tmp_path), 'is a folder; give the path of a file'),
                          (str(tmp_path / 'afile' / 'x.json'), 'afile is a file, not a folder'),
                          (str(tmp_path / 'afile' / 'a' / 'b.json'), 'afile is a file, not a folder')]:
    with pytest.raises(errors.ConfigError, match=message):
      workdir_lib.check_output_file(output, flag='--json')
  workdir_lib.check_output_file(str(tmp_path / 'new' / 'deeper' / 'x.json'), flag='--json')
  workdir_lib.check_output_file(str(tmp_path / 'afile'), flag='--json')  # replaced: fine


@pytest.mark.parametrize('edit', ['config', 'history'])
def test_a_saved_config_no_run_can_have_is_one_error_naming_the_files(tmp_path, edit):
  # Hand edits of the records were tracebacks from inside the model (ngf '8x', -8).
  workdir = str(tmp_path / 'run')
  workdir_lib.prepare(tiny_config(), workdir)
  if edit == 'config':
    path = tmp_path / 'run' / 'config.json'
    saved = json.loads(path.read_text())
    saved['model']['ngf'] = '8x'
    path.write_text(json.dumps(saved))
  else:
    (tmp_path / 'run' / 'config_history.jsonl').write_text(
        json.dumps({'step': 6, 'changes': {'model.ngf': {'from': 8, 'to': -8}}}) + '\n')
  with pytest.raises(errors.WorkdirError, match=r'config saved in .*run \(config.json with '
                     r'config_history.jsonl\) is not one a run can have: config.model.ngf'):
    workdir_lib.load_config(workdir)
