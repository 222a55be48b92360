"""Tests of gan_jax.bench.report_files: a benchmark never replaces another's report."""

import json
import platform

import pytest

from gan_jax import errors
from gan_jax.bench import report_files

_MACHINE = {'cpu': 'test cpu', 'cpu_count': 2, 'jax_backend': 'cpu', 'jax_devices': 1,
            'jax_version': '0', 'python': '3', 'platform': 'test'}


def _write(out, command):
  result = {'command': command, 'machine': _MACHINE, 'rows': [], 'table': f'| {command} |\n'}
  report_files.write_result(result, str(out), json_name='bench.json', table_name='bench.md')


def test_an_out_folder_holding_another_commands_report_is_refused(tmp_path):
  report_files.check_out_dir(str(tmp_path / 'new'), 'bench.json', 'bench a')  # nothing there
  _write(tmp_path, 'bench a')
  report_files.check_out_dir(str(tmp_path), 'bench.json', 'bench a')  # the same: a rerun
  with pytest.raises(errors.ConfigError, match=r"holds the report of another command "
                     r"\(bench a\): .*; this one would replace it. Rerun that command to "
                     r"continue it, pass another --out"):
    report_files.check_out_dir(str(tmp_path), 'bench.json', 'bench b')
  assert json.loads((tmp_path / 'bench.json').read_text())['command'] == 'bench a'
  (tmp_path / 'bench.json').write_text('not json')
  with pytest.raises(errors.ConfigError, match='holds a report this benchmark cannot read'):
    report_files.check_out_dir(str(tmp_path), 'bench.json', 'bench b')


def test_the_same_command_with_its_flags_in_another_order_may_replace_its_report(tmp_path):
  _write(tmp_path, 'python -m gan_jax.bench.toy --configs=toy_ring --trials=1 --num_steps=20')
  check = lambda command: report_files.check_out_dir(str(tmp_path), 'bench.json', command)
  check('python3 -m gan_jax.bench.toy --num_steps=20 --configs=toy_ring --trials=1')
  check('python -m gan_jax.bench.toy --num_steps 20 --trials 1 --configs=toy_ring')
  for other in ('python -m gan_jax.bench.toy --configs=toy_ring --trials=20 --num_steps=1',
                'python -m gan_jax.bench.toy --configs=toy_ring --trials 20 --num_steps 1',
                'python -m gan_jax.bench.little_data --configs=toy_ring --trials=1 '
                '--num_steps=20',
                # the last of a repeated flag counts, as absl reads it
                'python -m gan_jax.bench.toy --configs=toy_ring --trials=1 --num_steps=20 '
                '--trials=20'):
    with pytest.raises(errors.ConfigError, match='another command'):
      check(other)


def test_commands_with_spaces_in_values_are_told_apart(tmp_path):
  # trials.command_line quotes as a shell would, and the comparison reads it back so.
  _write(tmp_path, "python -m gan_jax.bench.toy '--set=data.path=/my data' --set=model.name=mlp")
  check = lambda command: report_files.check_out_dir(str(tmp_path), 'bench.json', command)
  check("python -m gan_jax.bench.toy --set=model.name=mlp '--set=data.path=/my data'")
  with pytest.raises(errors.ConfigError, match='another command'):
    check("python -m gan_jax.bench.toy --set=data.path=/my '--set=model.name=mlp data'")


def test_an_out_path_that_is_a_file_or_under_one_is_refused_naming_the_flag(tmp_path):
  # The error was the file system's ("... is a file, where a folder is needed").
  (tmp_path / 'report').write_text('')
  with pytest.raises(errors.ConfigError, match=r'--out=.*report is a file; give a folder'):
    report_files.check_out_dir(str(tmp_path / 'report'), 'x.json', 'python -m b')
  with pytest.raises(errors.ConfigError, match=r'--out=.*report/sub: .*report is a file, not a '
                     r'folder'):
    report_files.check_out_dir(str(tmp_path / 'report' / 'sub'), 'x.json', 'python -m b')


def test_the_difference_from_the_earlier_command_is_named(tmp_path):
  _write(tmp_path, 'python -m gan_jax.bench.toy --configs=toy_ring --trials=3')
  with pytest.raises(errors.ConfigError, match=r': no --num_steps \(now --num_steps=5\), '
                     r'--trials=3 \(now --trials=4\); this one'):
    report_files.check_out_dir(str(tmp_path), 'bench.json',
                               'python -m gan_jax.bench.toy --configs=toy_ring --trials=4 '
                               '--num_steps=5')


def test_keep_workdirs_changes_nothing_the_report_holds(tmp_path):
  # The stop message advises --keep_workdirs to resume an interrupted trial: the
  # same command with it (in any spelling) continues the report.
  _write(tmp_path, 'python -m gan_jax.bench.toy --configs=toy_ring --trials=3')
  for command in ('python -m gan_jax.bench.toy --configs=toy_ring --trials=3 --keep_workdirs',
                  'python -m gan_jax.bench.toy --keep_workdirs=true --configs=toy_ring '
                  '--trials=3',
                  'python -m gan_jax.bench.toy --configs=toy_ring --trials=3 --nokeep_workdirs'):
    assert report_files.check_out_dir(str(tmp_path), 'bench.json', command) is not None


def test_the_earlier_report_s_trials_are_found_by_row_and_seed(tmp_path):
  row = {'config': 'toy_ring', 'overrides': [['optim.g.learning_rate', '0.1']],
         'num_steps': 20, 'trials': [], 'summary': None}
  earlier = {'command': 'python -m gan_jax.bench.toy', 'machine': _MACHINE, 'table': '',
             'rows': [{**row, 'trials': [{'seed': 0, 'score': 1.5}, {'seed': 1, 'score': 2.5}],
                       'summary': {'mean': 2.0}}]}
  report_files.write_result(earlier, str(tmp_path), json_name='bench.json',
                            table_name='bench.md')
  read = report_files.check_out_dir(str(tmp_path), 'bench.json', 'python -m gan_jax.bench.toy')
  # The row as the benchmark builds it again: overrides as tuples, no trials yet.
  again = {**row, 'overrides': (('optim.g.learning_rate', '0.1'),)}
  assert report_files.earlier_trial(read, again, 1) == {'seed': 1, 'score': 2.5}
  assert report_files.earlier_trial(read, again, 2) is None
  assert report_files.earlier_trial(read, {**again, 'num_steps': 40}, 1) is None
  assert report_files.earlier_trial(None, again, 1) is None


def test_the_cpu_model_is_the_one_proc_cpuinfo_names():
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      names = [line.split(':', 1)[1].strip() for line in f if line.startswith('model name')]
  except OSError:
    names = []
  if names:  # Linux on x86 (ARM's cpuinfo may have no model name line)
    assert report_files.cpu_model() == names[0]
  else:
    assert report_files.cpu_model() in (platform.processor(), platform.machine())
