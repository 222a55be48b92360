"""Tests of what the seed-by-seed benchmarks share (`gan_jax.bench.trials`)."""

import os
import signal
import sys
import time

import pytest

from gan_jax import errors
from gan_jax import preemption
from gan_jax.bench import little_data
from gan_jax.bench import toy_table
from gan_jax.bench import trials
from tests.helpers import tiny_config


def test_a_config_named_twice_is_refused():
  # Both were trained and reported as two identical rows.
  with pytest.raises(errors.ConfigError, match='--configs names toy_ring:smoke twice'):
    trials.split_config_names('toy_ring:smoke,toy_grid,toy_ring:smoke')
  assert trials.split_config_names('dcgan_digits:few,dcgan_digits:few,noaug') == [
      'dcgan_digits:few', 'dcgan_digits:few,noaug']


def test_one_config_spelled_two_ways_is_refused():
  from gan_jax import config_files  # pylint: disable=g-import-not-at-top
  specs = ['dcgan_digits:few,noaug,smoke', 'dcgan_digits:smoke,noaug,few']
  configs = [(spec, config_files.load(spec)) for spec in specs]
  with pytest.raises(errors.ConfigError, match='the same config twice: dcgan_digits:few,noaug,'
                                               'smoke and dcgan_digits:smoke,noaug,few'):
    trials.check_configs(configs)
  trials.check_configs(configs[:1] + [('dcgan_digits:few,smoke',
                                       config_files.load('dcgan_digits:few,smoke'))])


def test_config_files_of_one_name_in_two_folders_are_refused(tmp_path):
  # Their trials shared run folders (one resumed the other's) and toy's plots.
  from gan_jax import config_files  # pylint: disable=g-import-not-at-top
  source = open(os.path.join(config_files.configs_dir(), 'toy_ring.py'), encoding='utf-8').read()
  specs = []
  for folder in ('a', 'b'):
    os.makedirs(tmp_path / folder)
    (tmp_path / folder / 'ring.py').write_text(source)
    specs.append(f'{tmp_path / folder / "ring.py"}:smoke')
  configs = [(spec, config_files.load(spec)) for spec in specs]
  configs[1][1].train.num_steps += 1  # two different configs
  with pytest.raises(errors.ConfigError, match=r'trial folders and files would have the same '
                                               r'name \(ring-smoke\)'):
    trials.check_configs(configs)
  trials.check_configs(configs[:1])


def test_split_config_names_keeps_variant_arguments_together():
  assert trials.split_config_names('toy_ring,toy_ring:baseline,toy_grid') == [
      'toy_ring', 'toy_ring:baseline', 'toy_grid']
  assert trials.split_config_names('toy_ring:baseline,smoke,toy_grid:smoke') == [
      'toy_ring:baseline,smoke', 'toy_grid:smoke']
  # A shipped config's name after a variant starts a new spec; empty pieces vanish.
  assert trials.split_config_names('dcgan_digits:few,noaug,,dcgan_digits:few') == [
      'dcgan_digits:few,noaug', 'dcgan_digits:few']
  for empty in ('', ',', ' , '):
    with pytest.raises(errors.ConfigError, match='--configs names no config'):
      trials.split_config_names(empty)


def test_load_config_turns_a_bad_name_or_variant_into_one_config_error():
  assert trials.load_config('toy_ring:baseline').data.toy == 'ring'
  with pytest.raises(errors.ConfigError, match="unknown config 'no_such_config'"):
    trials.load_config('no_such_config')
  with pytest.raises(errors.ConfigError, match="unknown config variant 'bogus'"):
    trials.load_config('dcgan_digits:bogus')


def test_a_temporary_trial_folder_is_deleted_after_the_trial_even_when_it_fails(tmp_path):
  with trials.trial_workdir(str(tmp_path / 'out'), 'toy_ring-baseline', 3, keep=False) as w:
    assert os.path.isdir(w) and not w.startswith(str(tmp_path / 'out'))
    open(os.path.join(w, 'config.json'), 'w').close()
  assert not os.path.exists(w)
  with pytest.raises(RuntimeError, match='trial failed'):
    with trials.trial_workdir(str(tmp_path / 'out'), 'toy_ring', 4, keep=False) as failed:
      raise RuntimeError('trial failed')
  assert not os.path.exists(failed)


def test_a_kept_trial_folder_is_named_by_config_and_seed_and_stays(tmp_path):
  out = str(tmp_path / 'out')
  with trials.trial_workdir(out, 'toy_ring-baseline', 3, keep=True) as w:
    assert w == os.path.join(out, 'workdirs', 'toy_ring-baseline', 'seed_3')
    os.makedirs(w)
  assert os.path.isdir(w)
  with pytest.raises(RuntimeError):
    with trials.trial_workdir(out, 'toy_ring-baseline', 3, keep=True) as again:
      raise RuntimeError('trial failed')
  assert again == w and os.path.isdir(w)  # a kept run is never deleted


def test_command_line_and_machine_record_how_a_report_was_made(monkeypatch):
  monkeypatch.setattr(sys, 'argv', ['little_data.py', '--trials=2', '--fractions=0.1'])
  assert trials.command_line('gan_jax.bench.little_data') == (
      f'{os.path.basename(sys.executable)} -m gan_jax.bench.little_data --trials=2 '
      '--fractions=0.1')
  machine = trials.machine_description()
  assert machine['jax_backend'] == 'cpu' and machine['jax_devices'] >= 1
  assert machine['cpu'] and machine['cpu_count'] == os.cpu_count()


def test_a_slug_names_the_config_its_variant_and_extras_safely():
  assert trials.slug('dcgan_digits') == 'dcgan_digits'
  assert trials.slug('dcgan_digits:few,noaug', 134) == 'dcgan_digits-few_noaug-134'
  # little_data's kept folders from before one slug served every benchmark:
  assert trials.slug('dcgan_digits', 134, no_variant='default') == 'dcgan_digits-default-134'
  assert trials.slug('/home/me/my configs/run.py:smoke') == 'run-smoke'
  assert trials.slug('toy_ring:policy=a b') == 'toy_ring-policy=a_b'


def test_sigterm_during_a_trial_deletes_its_temporary_folder_and_says_so(tmp_path):
  before = signal.getsignal(signal.SIGTERM)
  with pytest.raises(errors.Stopped, match=r'SIGTERM during the trial toy_ring, seed 4: its '
                     r'folder was temporary: the same command again trains it from the start '
                     r'\(add --keep_workdirs to keep trial folders, so that a stopped trial '
                     r'resumes\). The report in --out holds '
                     r'the trials finished before it, if any, and the same command again keeps '
                     r'them.') as stopped:
    with trials.trial_workdir(str(tmp_path / 'out'), 'toy_ring', 4, keep=False) as w:
      os.kill(os.getpid(), signal.SIGTERM)  # by default the process would die here
      time.sleep(5)  # the handler raises before this ends
  assert stopped.value.signum == signal.SIGTERM and not os.path.exists(w)
  assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize('stop,signum', [
    (lambda: preemption.Interrupted(signal.SIGTERM, 6), signal.SIGTERM),
    (KeyboardInterrupt, signal.SIGINT)])
def test_a_stopped_kept_trial_says_a_rerun_resumes_it(tmp_path, stop, signum):
  out = str(tmp_path / 'out')
  with pytest.raises(errors.Stopped, match='its folder is kept: the same command again '
                     'resumes it') as stopped:
    with trials.trial_workdir(out, 'toy_ring', 3, keep=True) as w:
      os.makedirs(w)
      raise stop()
  assert stopped.value.signum == signum and os.path.isdir(w)


def test_a_kept_trial_a_run_cannot_continue_says_what_to_do_in_bench_terms(tmp_path):
  # The resume checks advise --workdir and --allow_config_change, which no benchmark has.
  out = str(tmp_path / 'out')
  with pytest.raises(errors.WorkdirError, match=r"(?s)was trained with a different config.*"
                     r"This is the benchmark's kept trial folder .*seed_3.*the benchmarks have "
                     r'no --workdir or --allow_config_change: rerun with the flags that made '
                     r'it, pass another --out, or delete that folder'):
    with trials.trial_workdir(out, 'toy_ring', 3, keep=True):
      raise errors.WorkdirError('The workdir W was trained with a different config; ...')


def test_sigterm_is_not_taken_for_a_failed_read(tmp_path):
  # Code that treats any Exception as a damaged file (a checkpoint restore) must not
  # catch the signal, or a good checkpoint would be moved aside as unreadable.
  with pytest.raises(errors.Stopped):
    with trials.trial_workdir(str(tmp_path / 'out'), 'toy_ring', 5, keep=False):
      try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
      except Exception:  # pylint: disable=broad-except
        pytest.fail('SIGTERM was caught as an ordinary error')


def test_a_table_header_says_how_many_steps_its_rows_trained():
  # A --num_steps=4 table must not look like a full-length one.
  assert trials.steps_label([{'num_steps': 8000}, {'num_steps': 8000}]) == ' (8,000 steps)'
  assert trials.steps_label([{'num_steps': 8000}, {'num_steps': 4}]) == ' (4 / 8,000 steps)'
  assert trials.steps_label([{}]) == ''
  assert toy_table.format_table([]).startswith('| mixture | config | trials |')
  row = {'config': 'dcgan_digits:few', 'fraction': 0.1, 'train_examples': 134, 'policy': '',
         'num_steps': 40, 'trials': [], 'summary': None}
  assert little_data.format_table([row]).startswith('| data | config (40 steps) |')


def test_config_checks_include_the_batch_over_this_process_s_devices():
  import jax  # pylint: disable=g-import-not-at-top
  from gan_jax import config_files  # pylint: disable=g-import-not-at-top
  config = config_files.load('toy_grid:smoke')
  per_device = config.train.batch_size // jax.device_count()
  config.model.pack = per_device + 1  # no device's share splits into such groups
  with pytest.raises(errors.ConfigError, match=r'model.pack=\d+ \(PacGAN\) packs each device'):
    trials.check_configs([('toy_grid:smoke', config)])
  config.model.pack = 1
  config.train.batch_size = jax.device_count() * 4 + (1 if jax.device_count() > 1 else 0)
  if jax.device_count() > 1:  # (one device divides every batch)
    with pytest.raises(errors.ConfigError, match='multiple of the number of devices'):
      trials.check_configs([('toy_grid:smoke', config)])
  config.train.batch_size = jax.device_count() * 4
  trials.check_configs([('toy_grid:smoke', config)])


def test_a_set_value_no_config_of_a_benchmark_reads_is_refused():
  # One --set goes to every config: a cutout size is read by the augmented run, not by
  # its control without augmentation, which is fine; read by none, it is a mistake.
  from gan_jax import config_files  # pylint: disable=g-import-not-at-top
  configs = [(spec, config_files.load(spec)) for spec in ('dcgan_digits:few,smoke',
                                                          'dcgan_digits:few,noaug,smoke')]
  assert configs[0][1].augment.policy == 'cutout' and not configs[1][1].augment.policy
  for _, config in configs:
    config.augment.cutout_ratio = 0.25
  trials.check_configs(configs)
  for _, config in configs:
    config.augment.translation_ratio = 0.25
  with pytest.raises(errors.ConfigError, match=r'^In every config of this benchmark: config\.'
                                               r'augment\.translation_ratio=0\.25 would '
                                               r'change nothing'):
    trials.check_configs(configs)
  with pytest.raises(errors.ConfigError, match=r'^config\.augment\.translation_ratio=0\.25'):
    trials.check_configs(configs[:1])


def test_a_resumed_trial_reports_the_training_time_of_all_its_parts(tmp_path, monkeypatch):
  # A kept trial stopped half way and rerun reported only the second part (and a
  # finished one, rerun, about a second).
  workdir = str(tmp_path / 'trial')
  config = tiny_config(**{'train.num_steps': 4})
  calls = []

  def fake_train(config, workdir):
    calls.append(config.train.num_steps)
    os.makedirs(os.path.join(workdir, 'checkpoints', str(2 * len(calls))), exist_ok=True)
    time.sleep(0.2)
    if len(calls) == 1:
      raise preemption.Interrupted(signal.SIGTERM, 2)

  monkeypatch.setattr(trials.train, 'train_and_evaluate', fake_train)
  with pytest.raises(preemption.Interrupted):
    trials.train_timed(config, workdir)
  wall, cpu = trials.train_timed(config, workdir)  # resumed: both parts
  assert wall >= 0.4 and cpu >= 0   # both parts slept 0.2 s; the second alone is 0.2
  again, _ = trials.train_timed(config, workdir)  # finished (step 4): nothing added
  assert again == wall and len(calls) == 3
