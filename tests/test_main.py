"""Tests of the command lines as a new user meets them: errors, config lookup, exit codes.

Each test runs `python -m gan_jax.main` (or sample / evaluate) in a subprocess,
as a user would. Expected errors must print one short `error:` paragraph and
exit with status 2, without a traceback, before anything slow happens.
"""

import os
import re
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from gan_jax import workdir as workdir_lib
from tests.compile_flags import subprocess_xla_flags
from tests.helpers import run_python
from tests.helpers import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_module(module, args, *, cwd=REPO, env=None, timeout=300):
  """Runs `python -m MODULE ARGS` on the CPU; returns the CompletedProcess."""
  full_env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONUNBUFFERED='1',
                  XLA_FLAGS=subprocess_xla_flags())
  full_env.update(env or {})
  return subprocess.run([sys.executable, '-m', module, *args], cwd=cwd, env=full_env,
                        capture_output=True, text=True, timeout=timeout)


def assert_short_error(result, *fragments):
  """Exit status 2, an `error:` line, the fragments, and no traceback."""
  assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
  assert 'error: ' in result.stderr, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]
  for fragment in fragments:
    assert fragment in result.stderr, (fragment, result.stderr[-3000:])


@pytest.mark.parametrize('module', ['gan_jax.main', 'gan_jax.sample', 'gan_jax.evaluate',
                                    'gan_jax.classify'])
def test_help_is_printed_with_status_0(module):
  result = run_module(module, ['--help'])
  assert result.returncode == 0, (result.returncode, result.stderr[-3000:])
  assert '--workdir' in result.stdout + result.stderr


@pytest.mark.parametrize('module', ['gan_jax.sample', 'gan_jax.evaluate',
                                    'gan_jax.bench.digits_check'])
def test_help_lists_the_ddls_flags(module):
  # Flags defined by gan_jax.langevin are listed only when the program adopts them.
  result = run_module(module, ['--help'])
  assert result.returncode == 0, result.stderr[-3000:]
  for flag in ('--langevin_steps', '--langevin_step_size', '--langevin_noise_std',
               '--langevin_decay', '--langevin_decay_every'):
    assert flag in result.stdout + result.stderr, flag


def test_ctrl_c_before_training_takes_over_is_a_short_exit_130(tmp_path):
  # Until the training loop handles SIGINT itself (save, then stop), Ctrl-C raises
  # KeyboardInterrupt wherever the program is: one line and status 130, no traceback.
  program = ('from gan_jax import cli\n'
             'def main(argv):\n'
             '  raise KeyboardInterrupt\n'
             'cli.run(main)\n')
  result = run_python(program)
  assert result.returncode == 130, result.stderr[-3000:]
  assert 'error: interrupted (Ctrl-C).' in result.stderr
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]


@pytest.mark.parametrize('signum,run_args,status,last_line', [
    (signal.SIGINT, '', 130, 'error: interrupted (Ctrl-C).'),
    (signal.SIGTERM, ', stop_on_sigterm=True', 143, 'Stopped by SIGTERM.')])
def test_a_stop_python_swallowed_still_ends_a_tool_as_stopped(signum, run_args, status,
                                                              last_line):
  # Raised inside a garbage-collection callback (as JAX's), the KeyboardInterrupt (or a
  # SIGTERM's Stopped) is only printed and the tool's work goes on; the tool then ends
  # as stopped, not 0. SIGINT starts at Python's own handler, as under a terminal: a
  # shell's background job (nohup ... &) inherits SIGINT ignored, which cli.run keeps.
  program = ('import gc, os, signal, time\n'
             'signal.signal(signal.SIGINT, signal.default_int_handler)\n'
             'from gan_jax import cli\n'
             'def swallow(phase, info):\n'
             '  if phase == "start":\n'
             '    gc.callbacks.remove(swallow)\n'
             f'    os.kill(os.getpid(), {int(signum)})\n'
             '    time.sleep(0.05)\n'
             'def main(argv):\n'
             '  gc.callbacks.append(swallow)\n'
             '  gc.collect()\n'
             "  print('work done', flush=True)\n"
             f'cli.run(main{run_args})\n')
  result = run_python(program)
  assert 'Exception ignored' in result.stderr   # Python did swallow it
  assert result.stdout == 'work done\n'
  assert result.returncode == status, result.stderr[-3000:]
  assert result.stderr.strip().splitlines()[-1] == last_line


def test_a_tool_started_with_ctrl_c_ignored_keeps_ignoring_it():
  # A job started in the background (`cmd &`) has SIGINT ignored; Ctrl-C at the terminal
  # is not for it.
  program = ('import os, signal\n'
             'from gan_jax import cli\n'
             'def main(argv):\n'
             '  os.kill(os.getpid(), signal.SIGINT)\n'
             "  print('work done', flush=True)\n"
             'cli.run(main)\n')
  # As a shell starts a background job: SIGINT ignored, and kept so through exec.
  result = subprocess.run(['sh', '-c', 'trap "" INT; exec "$0" -c "$1"', sys.executable,
                           program], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert result.returncode == 0 and result.stdout == 'work done\n', result.stderr[-3000:]


def test_sigterm_before_the_training_loop_is_one_line_and_exit_143(tmp_path):
  # Before the loop takes SIGTERM over (to save, then stop), it stops the program with one
  # line, not by the default action (a silent death, status -15).
  program = ('import os, signal, sys, time\n'
             'from gan_jax import main, train\n'
             'def setting_up(*args, **kwargs):\n'
             '  os.kill(os.getpid(), signal.SIGTERM)\n'
             '  time.sleep(30)\n'
             'train.train_and_evaluate = setting_up\n'
             f"sys.argv = ['gan_jax.main', '--config=toy_ring:smoke', '--workdir={tmp_path}']\n"
             'main.run()\n')
  result = run_python(program)
  assert result.returncode == 143, result.stderr[-3000:]
  assert result.stderr.strip().splitlines()[-1] == 'Stopped by SIGTERM.'


def test_unknown_config_name_suggests_close_ones(tmp_path):
  result = run_module('gan_jax.main', ['--config=dcgan_digit', f'--workdir={tmp_path}'])
  assert_short_error(result, "unknown config 'dcgan_digit'", 'dcgan_digits', '--list_configs')


def test_unknown_config_field_says_did_you_mean(tmp_path):
  result = run_module('gan_jax.main', ['--config=dcgan_digits:smoke', f'--workdir={tmp_path}',
                                       '--config.train.num_step=3'])
  assert_short_error(result, "--config.train.num_step=3: config.train has no field 'num_step'.",
                     'Did you mean "num_steps"', '--print_config')


def test_an_unknown_config_field_with_no_near_name_still_names_the_override(tmp_path):
  result = run_module('gan_jax.main', ['--config=dcgan_digits:smoke', f'--workdir={tmp_path}',
                                       '--config.train.zzz=3'])
  assert_short_error(result, "--config.train.zzz=3: config.train has no field 'zzz'.",
                     '--print_config')


def test_a_setting_the_run_would_not_read_is_refused_before_the_workdir(tmp_path):
  workdir = tmp_path / 'run'
  result = run_module('gan_jax.main', ['--config=dcgan_digits:smoke', f'--workdir={workdir}',
                                       '--config.augment.cutout_ratio=0.25'])
  assert_short_error(result, 'config.augment.cutout_ratio=0.25 would change nothing: it is '
                             "read only by 'cutout' in augment.policy / bcr_policy, not used "
                             'here')
  assert not workdir.exists()


def test_the_settings_check_runs_after_jax_distributed_starts(tmp_path):
  # It traces BigGAN's shapes (for its train.ema_batch_stats) to find G's statistics:
  # before jax.distributed.initialize, that start-up refused to run at all.
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  result = run_module('gan_jax.main', [
      '--config=biggan_cifar10:smoke', f'--workdir={tmp_path / "run"}',
      f'--coordinator_address=127.0.0.1:{port}', '--num_processes=1', '--process_id=0',
      '--config.eval.num_samples=1'])  # passes the settings check, refused after it
  assert_short_error(result, 'config.eval.num_samples')


@pytest.mark.parametrize('override,fragment', [
    ('--config.num_steps=3', "config has no field 'num_steps'.\nDid you mean "
                             '--config.train.num_steps?'),
    ('--config.model.batch_size=3', "config.model has no field 'batch_size'.\nDid you mean "
                                    '--config.train.batch_size?'),
])
def test_a_field_of_another_section_is_suggested_with_its_section(tmp_path, override, fragment):
  result = run_module('gan_jax.main', ['--config=dcgan_digits:smoke', f'--workdir={tmp_path}',
                                       override])
  assert_short_error(result, f'{override}: {fragment}')


def test_a_non_boolean_value_of_a_boolean_field_is_a_plain_sentence(tmp_path):
  result = run_module('gan_jax.main', ['--config=dcgan_digits:smoke', f'--workdir={tmp_path}',
                                       '--config.model.spectral_norm=maybe'])
  assert_short_error(result, 'flag --config.model.spectral_norm=maybe: Non-boolean argument '
                             "to boolean flag: 'maybe'")
  assert "('" not in result.stderr


def test_a_value_for_a_whole_config_section_says_to_set_its_fields(tmp_path):
  # ml_collections reported the Python parser: "ValueError('malformed node or string ...')".
  result = run_module('gan_jax.main', ['--config=dcgan_digits:smoke', f'--workdir={tmp_path}',
                                       '--config.optim.g=adam'])
  assert_short_error(result, '--config.optim.g is a section of the config, not a field',
                     '--config.optim.g.FIELD=VALUE')
  assert 'malformed node' not in result.stderr


def test_an_unknown_config_section_names_the_override(tmp_path):
  result = run_module('gan_jax.main', ['--config=dcgan_digits:smoke', f'--workdir={tmp_path}',
                                       '--config.modl.ngf=4'])
  assert_short_error(result, "--config.modl.ngf=4: config has no field 'modl'.",
                     'Did you mean "model"')


@pytest.mark.parametrize('config,fragment', [
    ('dcgan_digits:nope', "--config=dcgan_digits:nope: unknown config variant 'nope'"),
    ('biggan_cifar10:data=0.1', "data='0.1': data takes a value like data=100"),
    ('biggan_cifar10:data=200', 'biggan_cifar10:data=P needs 0 < P <= 100, got 200'),
    ('semi_supervised_digits:entropy,supervised_only', "Pick one of ':supervised_only'"),
])
def test_a_bad_config_variant_is_a_short_error(tmp_path, config, fragment):
  result = run_module('gan_jax.main', [f'--config={config}', f'--workdir={tmp_path}'])
  assert_short_error(result, fragment)
  # The config's own refusal is the whole story: no traceback to ask for.
  assert '--verbose' not in result.stderr, result.stderr


@pytest.mark.parametrize('source,fragment,hint', [
    ('X = 1\n', 'the file defines no get_config(); a config file is a Python file', False),
    ('def get_config():\n  raise RuntimeError("boom")\n', 'RuntimeError: boom', True),
])
def test_a_broken_config_file_is_a_short_error(tmp_path, source, fragment, hint):
  path = tmp_path / 'mine.py'
  path.write_text(source)
  result = run_module('gan_jax.main', [f'--config={path}', f'--workdir={tmp_path / "run"}'])
  assert_short_error(result, f'--config={path}: {fragment}')
  # The file's own error may need its traceback; a missing get_config does not.
  assert ('--verbose' in result.stderr) == hint, result.stderr


def test_a_value_of_the_wrong_type_is_a_short_error(tmp_path):
  result = run_module('gan_jax.main', ['--config=dcgan_digits:smoke', f'--workdir={tmp_path}',
                                       '--config.train.num_steps=abc'])
  assert_short_error(result, 'num_steps', 'abc')


@pytest.mark.parametrize('override,field', [
    ('--config.train.batch_size=0', 'config.train.batch_size'),
    ('--config.train.num_steps=-5', 'config.train.num_steps'),
    ('--config.loss.type=wgan', 'config.loss.type'),
])
def test_bad_values_stop_before_any_data_is_loaded(tmp_path, override, field):
  result = run_module('gan_jax.main', ['--config=dcgan_digits:smoke',
                                       f'--workdir={tmp_path / "run"}', override])
  assert_short_error(result, field)
  assert 'Data:' not in result.stderr
  assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize('config,devices,batch,fragment', [
    ('toy_ring:smoke', 1, 3, 'model.pack=2 (PacGAN) packs each device\'s batch of 3'),
    ('toy_ring:smoke', 8, 8, 'each device\'s batch of 1 (train.batch_size=8 over 8 device(s))'),
    ('dcgan_digits:smoke', 8, 12, 'batch_size=12 must be a positive multiple of the number '
                                  'of devices (8)'),
])
def test_a_batch_that_does_not_split_over_the_devices_stops_before_the_workdir(
    tmp_path, config, devices, batch, fragment):
  result = run_module('gan_jax.main', [f'--config={config}', f'--workdir={tmp_path / "run"}',
                                       f'--config.train.batch_size={batch}'],
                      env={'XLA_FLAGS': subprocess_xla_flags(devices=devices)})
  assert_short_error(result, fragment)
  assert not (tmp_path / 'run').exists()


def test_a_loss_that_becomes_nan_stops_with_a_short_error(tmp_path):
  result = run_module('gan_jax.main', ['--config=dcgan_digits:smoke', f'--workdir={tmp_path}',
                                       '--config.loss.type=wasserstein',
                                       '--config.optim.d.learning_rate=1e30',
                                       '--config.optim.g.learning_rate=1e30'])
  assert_short_error(result, 'A loss became NaN or infinite at step', 'Lower the learning rate')


def test_missing_tfds_data_says_how_to_prepare_it(tmp_path):
  result = run_module('gan_jax.main', ['--config=dcgan_celeba:smoke', f'--workdir={tmp_path}',
                                       f'--config.data.data_dir={tmp_path / "nothing"}'])
  assert_short_error(result, 'download_and_prepare', 'array_record', 'image_folder')


@pytest.mark.parametrize('make_folder,fragment', [
    (lambda p: None, 'does not exist'),
    (lambda p: p.mkdir(), 'holds no'),
    (lambda p: (p.mkdir(), (p / 'a.png').write_bytes(b'not a png'),
                (p / 'b.jpg').write_bytes(b'nor a jpeg')), 'unreadable'),
])
def test_image_folder_problems_are_short_errors(tmp_path, make_folder, fragment):
  folder = tmp_path / 'images'
  make_folder(folder)
  result = run_module('gan_jax.main', [
      '--config=dcgan_digits:smoke', f'--workdir={tmp_path / "run"}',
      '--config.data.source=image_folder', f'--config.data.path={folder}'])
  assert_short_error(result, str(folder), fragment)


def test_config_by_name_from_another_directory_and_print_config(tmp_path):
  result = run_module('gan_jax.main', ['--config=dcgan_digits:smoke', '--print_config',
                                       '--config.seed=7'], cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  assert '"seed": 7' in result.stdout and '"name": "dcgan_digits"' in result.stdout
  result = run_module('gan_jax.main', ['--config=configs/toy_ring.py', '--print_config'],
                      cwd=tmp_path)
  assert result.returncode == 0 and '"toy": "ring"' in result.stdout
  # A config the check refuses is printed in full, then refused.
  result = run_module('gan_jax.main', ['--config=dcgan_digits:smoke', '--print_config',
                                       '--config.train.batch_size=0'], cwd=tmp_path)
  assert result.returncode == 2 and '"batch_size": 0' in result.stdout
  assert 'error: config.train.batch_size must be an integer >= 1, got 0.' in result.stderr


def test_list_configs_prints_each_with_its_variants():
  result = run_module('gan_jax.main', ['--list_configs'])
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.strip().splitlines()
  at = next(i for i, line in enumerate(lines) if line.startswith('dcgan_digits '))
  assert 'offline default' in lines[at]
  assert lines[at + 1].split() == ['variants:', 'smoke,', 'few,', 'noaug,', 'policy=...,',
                                   'fill=...']
  at = next(i for i, line in enumerate(lines) if line.startswith('biggan_cifar10 '))
  # A value with a default shows as one, not as a variant of its own.
  assert lines[at + 1].strip().endswith('icr, data=... (default 100)')
  assert any(line.startswith('toy_grid ') for line in lines)


def test_verbose_shows_the_traceback_of_an_expected_error(tmp_path):
  result = run_module('gan_jax.main', ['--config=dcgan_digits:smoke', f'--workdir={tmp_path}',
                                       '--config.train.batch_size=0', '--verbose'])
  assert result.returncode != 0 and 'Traceback' in result.stderr


def test_a_file_as_workdir_is_a_short_error(tmp_path):
  (tmp_path / 'run').write_text('')
  result = run_module('gan_jax.main', ['--config=dcgan_digits:smoke',
                                       f'--workdir={tmp_path / "run"}'])
  assert_short_error(result, 'cannot be a run folder', 'is a file', 'Pass another --workdir')


def test_a_file_system_refusal_is_a_short_error_that_names_the_path(tmp_path):
  # A file where the run's checkpoints/ folder belongs: found only when the
  # checkpointer starts, after the config is saved.
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / 'checkpoints').write_text('')
  result = run_module('gan_jax.main', ['--config=dcgan_digits:smoke', f'--workdir={workdir}'])
  assert_short_error(result, f'{workdir / "checkpoints"} is a file, where a folder is needed',
                     'Run with --verbose for the traceback.')


def test_sample_of_a_missing_workdir_is_a_short_error(tmp_path):
  result = run_module('gan_jax.sample', [f'--workdir={tmp_path / "nope"}', '--output=x.npz'])
  assert_short_error(result, 'not a gan_jax run folder')


@pytest.mark.parametrize('module,flag', [
    ('gan_jax.sample', '--num_samples=0'), ('gan_jax.sample', '--num_samples=-5'),
    ('gan_jax.evaluate', '--num_samples=0'), ('gan_jax.sample', '--output=x.txt'),
    ('gan_jax.sample', '--interpolate=1'), ('gan_jax.sample', '--labels=abc'),
    ('gan_jax.sample', '--langevin_step_size=0'), ('gan_jax.sample', '--langevin_decay=2'),
])
def test_bad_counts_and_outputs_fail_before_anything_loads(tmp_path, module, flag):
  args = [f'--workdir={tmp_path / "nope"}', flag]
  if module == 'gan_jax.sample' and not flag.startswith('--output'):
    args.append('--output=x.npz')
  result = run_module(module, args)
  assert_short_error(result, flag.split('=')[0].lstrip('-'))
  assert 'not a gan_jax run folder' not in result.stderr  # nothing was loaded


@pytest.mark.parametrize('module', ['gan_jax.sample', 'gan_jax.evaluate',
                                    'gan_jax.bench.digits_check'])
def test_a_ddls_setting_without_ddls_is_refused_before_anything_loads(tmp_path, module):
  # It was accepted and ignored: the samples were G's own.
  args = [f'--workdir={tmp_path / "nope"}', '--langevin_step_size=0.05']
  if module == 'gan_jax.sample':
    args.append('--output=x.npz')
  result = run_module(module, args)
  assert_short_error(result, '--langevin_step_size set(s) DDLS, which is off: add '
                             '--langevin_steps=N')
  assert 'not a gan_jax run folder' not in result.stderr  # nothing was loaded


def test_a_sample_file_output_that_is_a_folder_fails_before_anything_loads(tmp_path):
  (tmp_path / 'out.npz').mkdir()
  result = run_module('gan_jax.sample', [f'--workdir={tmp_path / "nope"}',
                                         f'--output={tmp_path / "out.npz"}'])
  assert_short_error(result, 'out.npz is a folder; give the path of a file')
  assert 'not a gan_jax run folder' not in result.stderr  # nothing was loaded


def test_an_image_folder_run_without_a_path_is_asked_for_one(tmp_path):
  # The empty path resolved to the current folder, and the check that a workdir lies
  # outside the training images blamed the (relative, default) workdir instead.
  result = run_module('gan_jax.main', ['--config=dcgan_digits:smoke',
                                       '--config.data.source=image_folder'], cwd=tmp_path,
                      env={'PYTHONPATH': REPO})
  assert_short_error(result, 'data.source=image_folder needs a folder: --config.data.path=')
  assert 'lies inside the image folder' not in result.stderr


def test_a_classify_output_that_is_a_folder_fails_before_anything_loads(tmp_path):
  # It was found only after the images were classified.
  (tmp_path / 'out.npz').mkdir()
  np.savez(tmp_path / 'images.npz', images=np.zeros((2, 8, 8, 1), np.float32))
  result = run_module('gan_jax.classify', [f'--workdir={tmp_path / "nope"}',
                                           f'--input={tmp_path / "images.npz"}',
                                           f'--output={tmp_path / "out.npz"}'])
  assert_short_error(result, 'out.npz is a folder; give the path of a file')
  assert 'not a gan_jax run folder' not in result.stderr  # nothing was loaded


@pytest.mark.parametrize('module,flag', [('gan_jax.sample', '--seed'),
                                         ('gan_jax.evaluate', '--seed'),
                                         ('gan_jax.bench.digits_check', '--seed')])
def test_a_seed_beyond_32_bits_is_refused(tmp_path, module, flag):
  # JAX keeps a seed's low 32 bits: 2**32 drew seed 0's latents.
  result = run_module(module, [f'--workdir={tmp_path / "nope"}', f'{flag}={2**32}'])
  assert result.returncode != 0 and 'Traceback' not in result.stderr, result.stderr[-3000:]
  assert str(2**32 - 1) in result.stderr, result.stderr[-3000:]


@pytest.mark.parametrize('module,output', [('gan_jax.sample', 'samples/step_0000004.png'),
                                           ('gan_jax.classify', 'checkpoints/p.npz')])
def test_an_output_among_the_run_s_records_is_refused(tmp_path, module, output):
  workdir = str(tmp_path / 'run')
  workdir_lib.prepare(tiny_config(), workdir)
  args = [f'--workdir={workdir}', f'--output={os.path.join(workdir, output)}']
  if module == 'gan_jax.classify':
    args.append(f'--input={tmp_path / "images.npz"}')
  result = run_module(module, args)
  assert_short_error(result, 'part of the record of the run in')
  assert not os.path.exists(os.path.join(workdir, output))


@pytest.mark.parametrize('module,flag,fragment', [
    ('gan_jax.bench.throughput', '--widths=abc', '--widths=abc: give positive integers'),
    ('gan_jax.bench.throughput', '--widths=16,0', 'give positive integers'),
    ('gan_jax.bench.input_wait', '--steps=0', '--steps'),
    ('gan_jax.bench.input_wait', '--images=-3', '--images'),
])
def test_bad_bench_flags_are_short_errors(module, flag, fragment):
  result = run_module(module, [flag])
  assert_short_error(result, fragment)


@pytest.mark.parametrize('module,flags_,fragment', [
    ('gan_jax.main', ['--list_configs', '--config=dcgan_digits'],
     '--list_configs lists every config; leave out --config'),
    ('gan_jax.bench.memory', ['--nosearch', '--max_batch=5'],
     '--max_batch sets the search for the largest batch, which --nosearch turns off'),
    ('gan_jax.bench.throughput', ['--model=resnet', '--torch_variants=eager'],
     "--torch_variants: the PyTorch baseline is the DCGAN example's"),
    ('gan_jax.main', ['--config=toy_ring:smoke', '--config=toy_grid:smoke', '--print_config'],
     '--config is given 2 times'),
])
def test_a_flag_that_would_be_ignored_or_overridden_is_refused(module, flags_, fragment):
  assert_short_error(run_module(module, flags_), fragment)


@pytest.mark.parametrize('config,flags_,fragment', [
    ('dcgan_digits', ['--num_samples=99999999999'], 'the samples alone take'),
    ('cgan_digits:smoke', ['--interpolate=5', '--num_samples=100'],
     "--num_samples: a conditional run's interpolation is one row"),
])
def test_sample_refuses_counts_it_cannot_honour_before_restoring(tmp_path, config, flags_,
                                                                 fragment):
  # A huge count generated for hours (then ran out of memory); a conditional
  # interpolation wrote its own count, whatever --num_samples said.
  from gan_jax import config_files  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / 'run')
  workdir_lib.prepare(config_files.load(config), workdir)   # a record, no checkpoint
  result = run_module('gan_jax.sample', [f'--workdir={workdir}', *flags_,
                                         f'--output={tmp_path / "x.npz"}'])
  assert_short_error(result, fragment)
  assert 'no checkpoint' not in result.stderr


def test_evaluate_unknown_metric_names_its_own_flag(tmp_path):
  result = run_module('gan_jax.evaluate', [f'--workdir={tmp_path}', '--metrics=fid,nope'])
  assert_short_error(result, '--metrics', 'nope')
  assert 'config.eval.metrics' not in result.stderr


def test_evaluate_without_inception_weights_says_where_to_get_them(tmp_path):
  workdir = str(tmp_path / 'run')
  workdir_lib.prepare(tiny_config(), workdir)
  result = run_module('gan_jax.evaluate', [f'--workdir={workdir}', '--metrics=fid',
                                           '--num_samples=10'],
                      env={'GAN_JAX_CACHE_DIR': str(tmp_path / 'cache'),
                           'TORCH_HOME': str(tmp_path / 'torch'),
                           'GAN_JAX_INCEPTION_WEIGHTS': ''})
  assert_short_error(result, 'pt_inception-2015-12-05-6726825d.pth')
  assert not re.search(r'^I\d{4} ', result.stderr, re.M)  # quiet: no INFO log lines


@pytest.mark.parametrize('module,args', [
    ('gan_jax.main', ['--config=dcgan_digits:smoke', '--workdir=']),
    ('gan_jax.sample', ['--workdir=runs/none', '--output=']),
    ('gan_jax.evaluate', ['--workdir= ', '--metrics=proxy'])])
def test_an_empty_path_flag_is_refused_not_read_as_a_default(module, args):
  # --workdir=$W with W unset trained in (or resumed) the default runs/<config> folder.
  result = run_module(module, args)
  flag = next(a.split('=')[0] for a in args if not a.split('=', 1)[1].strip())
  assert_short_error(result, f'{flag} is empty (an unset shell variable?)')


def test_a_run_whose_evaluation_cannot_start_records_nothing(tmp_path):
  # Missing Inception weights stop the run before config.json is written, so the
  # corrected command is a new run, not a "changed config" of one that never trained.
  workdir = tmp_path / 'run'
  result = run_module('gan_jax.main', [
      '--config=dcgan_digits:smoke', f'--workdir={workdir}', '--config.eval.metrics=fid',
      '--config.eval.every=3', f'--config.eval.inception_weights={tmp_path / "none.pth"}'])
  assert_short_error(result, 'none.pth')
  assert not (workdir / 'config.json').exists()
