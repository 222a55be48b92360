"""The command-line checks every tool shares (`gan_jax/cli.py`): flags given twice,
path values that would fail late, SIGTERM in the tools that write outputs."""

import importlib.util
import signal

from absl import flags
import ml_collections
from ml_collections import config_flags
import pytest

from gan_jax import cli
from tests.helpers import run_python


def flag_values():
  values = flags.FlagValues()
  flags.DEFINE_string('workdir', None, 'a path', flag_values=values)
  flags.DEFINE_bool('best', False, 'a switch', flag_values=values)
  flags.DEFINE_multi_string('set', [], 'repeatable', flag_values=values)
  config_flags.DEFINE_config_dict(
      'config', ml_collections.ConfigDict({'steps': 1, 'data': {'data_dir': ''}}),
      flag_values=values)
  return values


def refusal(capsys, function, *args):
  with pytest.raises(SystemExit) as exit_info:
    function(*args)
  assert exit_info.value.code == 2
  return capsys.readouterr().err


@pytest.mark.parametrize('argv,message', [
    (['--workdir=a', '--best', '--workdir=b'],
     '--workdir is given 2 times (--workdir=a, --workdir=b); give it once'),
    (['--workdir', 'a', '--workdir=b'], '--workdir is given 2 times (--workdir a, --workdir=b)'),
    (['--best', '--nobest'], '--best is given 2 times (--best, --nobest)'),
    (['--config.steps=3', '--config.steps=4'], '--config.steps is given 2 times'),
])
def test_a_flag_given_twice_is_refused(capsys, argv, message):
  # absl silently keeps the last one: a launcher's --process_id followed by the user's
  # ran every process as the user's.
  assert message in refusal(capsys, cli.refuse_repeated_flags, ['prog', *argv], flag_values())


def test_repeatable_flags_unknown_names_and_arguments_after_a_double_dash_pass():
  cli.refuse_repeated_flags(
      ['prog', '--set=a=1', '--set=b=2', '--config.steps=2', '--config.data.data_dir=x',
       '--nope=1', '--nope=2', '--', '--workdir=a', '--workdir=b'], flag_values())


@pytest.mark.parametrize('value', ['~/runs/x', '~'])
def test_a_literal_tilde_is_refused_where_the_path_is_used_as_written(capsys, value):
  values = flag_values()
  values(['prog', f'--workdir={value}'])
  assert f'--workdir={value}: the shell does not expand ~' in refusal(
      capsys, cli.check_path_values, values)


def test_a_tilde_inside_a_path_or_in_a_path_the_code_expands_passes():
  values = flag_values()
  flags.DEFINE_string('inception_weights', None, 'expanded by its reader', flag_values=values)
  values(['prog', '--workdir=runs/~backup', '--inception_weights=~/weights.pth'])
  cli.check_path_values(values)


def test_a_gs_path_without_gcsfs_or_tensorflow_is_refused_before_any_work(capsys, monkeypatch):
  find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *args: (
      None if name in ('gcsfs', 'tensorflow') else find_spec(name, *args)))
  values = flag_values()
  values(['prog', '--workdir=gs://bucket/run'])
  message = refusal(capsys, cli.check_path_values, values)
  assert "--workdir=gs://bucket/run: Google Cloud Storage paths need the gcs extra: pip " \
         "install -e '.[gcs]'" in message


def test_a_gs_path_in_a_config_field_without_gcsfs_is_refused(tmp_path):
  # The config's fields, not only the flags: data.data_dir=gs://... failed when the data
  # was first read.
  program = ('import importlib.util, runpy, sys\n'
             'find_spec = importlib.util.find_spec\n'
             "importlib.util.find_spec = lambda name, *a: None if name in ('gcsfs', "
             "'tensorflow') else find_spec(name, *a)\n"
             "sys.argv = ['gan_jax.main', '--config=toy_ring:smoke', '--print_config', "
             f"'--workdir={tmp_path}', '--config.data.data_dir=gs://bucket/data']\n"
             "runpy.run_module('gan_jax.main', run_name='__main__')\n")
  result = run_python(program)
  assert result.returncode == 2, result.stderr[-3000:]
  assert 'data_dir=gs://bucket/data: Google Cloud Storage paths need' in result.stderr
  assert 'Traceback' not in result.stderr


@pytest.mark.parametrize('installed', ['gcsfs', 'tensorflow'])
def test_a_gs_path_with_gcsfs_or_tensorflow_installed_passes(monkeypatch, installed):
  # etils reaches gs:// through gcsfs, or through tf.io.gfile where TensorFlow is.
  monkeypatch.setattr(importlib.util, 'find_spec',
                      lambda name, *args: object() if name == installed else None)
  values = flag_values()
  values(['prog', '--workdir=gs://bucket/run'])
  cli.check_path_values(values)


@pytest.mark.parametrize('module', ['gan_jax.sample', 'gan_jax.evaluate',
                                    'gan_jax.bench.digits_check'])
def test_sigterm_stops_an_output_writing_tool_with_one_line_and_143(tmp_path, module):
  # By default SIGTERM ended the tool at once (status -15, nothing said), skipping the
  # `finally` that removes a half-filled sample folder.
  program = ('import os, runpy, signal, sys, time\n'
             'from gan_jax import workdir\n'
             'def working(*args, **kwargs):\n'
             '  os.kill(os.getpid(), signal.SIGTERM)\n'
             '  time.sleep(30)\n'
             'workdir.load_config = workdir.restore_state = working\n'
             f"sys.argv = ['{module}', '--workdir={tmp_path}', '--output={tmp_path / 'x.npz'}']\n"
             "sys.argv = [a for a in sys.argv if 'digits_check' not in sys.argv[0] or "
             "'--output' not in a]\n"
             f"runpy.run_module('{module}', run_name='__main__')\n")
  result = run_python(program)
  assert result.returncode == 128 + signal.SIGTERM, result.stderr[-3000:]
  assert result.stderr.strip().splitlines()[-1] == 'Stopped by SIGTERM.'

