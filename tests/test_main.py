"""End-to-end tests of the training run: workdir outputs, resume, bad input, sampling."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import dcgan_celeba
from configs import dcgan_digits
from gan_jax import checkpoint
from gan_jax import sample
from gan_jax import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(args, *, env=None, timeout=600):
  """Runs `python -m gan_jax.main ARGS` on 2 fake CPU devices; returns CompletedProcess."""
  full_env = dict(os.environ)
  full_env.update({'JAX_PLATFORMS': 'cpu', 'PYTHONUNBUFFERED': '1',
                   'XLA_FLAGS': '--xla_force_host_platform_device_count=2'})
  full_env.update(env or {})
  return subprocess.run([sys.executable, '-m', 'gan_jax.main', *args], cwd=REPO,
                        env=full_env, capture_output=True, text=True, timeout=timeout)


def restore_state(workdir, step=None):
  config = sample.load_config(workdir)
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'), async_save=False)
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  state, data_state, restored_step = ckpt.restore(train.abstract_state(config, sharding), step)
  ckpt.close()
  return jax.device_get(state), data_state, restored_step


def assert_states_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def smoke_config(**overrides):
  config = dcgan_digits.get_config('smoke')
  config.update_from_flattened_dict(overrides)
  return config


# ---------------------------------------------------------------------------
# Fast: errors that must come before any compilation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('field,value,known', [
    ('model.name', 'resnet9000', 'dcgan'),
    ('loss.type', 'wgan', 'wasserstein'),
    ('data.source', 'imagenet_folder', 'image_folder'),
])
def test_unknown_names_list_the_known_ones(tmp_path, field, value, known):
  config = smoke_config(**{field: value})
  with pytest.raises(ValueError, match=known):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run' / 'checkpoints')


def test_unknown_tfds_dataset_lists_the_known_ones(tmp_path):
  config = smoke_config(**{'data.source': 'tfds', 'data.name': 'not_a_dataset',
                           'data.data_dir': str(tmp_path / 'tfds')})
  with pytest.raises(Exception, match='mnist'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))


def test_missing_dataset_says_how_to_prepare_it(tmp_path):
  config = dcgan_celeba.get_config('smoke')
  config.data.data_dir = str(tmp_path / 'empty_tfds')
  start = time.time()
  with pytest.raises(FileNotFoundError) as error:
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  message = str(error.value)
  assert 'download_and_prepare' in message and 'array_record' in message
  assert 'image_folder' in message  # the CelebA alternative
  assert time.time() - start < 60


def test_empty_image_folder_is_a_clear_error(tmp_path):
  (tmp_path / 'images').mkdir()
  config = smoke_config(**{'data.source': 'image_folder', 'data.path': str(tmp_path / 'images')})
  with pytest.raises(Exception, match='(?i)no (readable )?image|empty'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))


def test_workdir_of_another_model_is_refused(tmp_path):
  workdir = str(tmp_path / 'run')
  train.prepare_workdir(smoke_config(), workdir)
  with pytest.raises(ValueError, match='model.ngf') as error:
    train.prepare_workdir(smoke_config(**{'model.ngf': 16}), workdir)
  assert 'another --workdir' in str(error.value)
  # Settings that do not change the model (e.g. steps) may resume.
  train.prepare_workdir(smoke_config(**{'train.num_steps': 100}), workdir)


def test_missing_run_folder_for_sampling(tmp_path):
  with pytest.raises(FileNotFoundError, match='config.json'):
    sample.load_generator(str(tmp_path))


def test_saved_config_from_an_older_version_gets_new_fields_defaults(tmp_path):
  # A run saved before a field existed (here: model.extra_layers, dropped from
  # the saved JSON) loads with that field's default; saved values win.
  workdir = str(tmp_path / 'run')
  train.prepare_workdir(smoke_config(**{'model.ngf': 12}), workdir)
  path = os.path.join(workdir, 'config.json')
  with open(path, encoding='utf-8') as f:
    saved = json.load(f)
  del saved['model']['extra_layers']
  saved['model']['a_field_from_the_future'] = 3
  with open(path, 'w', encoding='utf-8') as f:
    json.dump(saved, f)
  config = sample.load_config(workdir)
  assert config.model.extra_layers == 0
  assert config.model.ngf == 12 and config.model.a_field_from_the_future == 3
  assert config.model.resolution == 32 and config.name == 'dcgan_digits'


# ---------------------------------------------------------------------------
# Slow: real runs
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_main_run_leaves_checkpoints_events_metrics_and_samples(tmp_path):
  workdir = str(tmp_path / 'run')
  result = run_main(['--config=configs/dcgan_digits.py:smoke', f'--workdir={workdir}'])
  assert result.returncode == 0, result.stderr[-3000:]
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['3', '6']
  assert glob.glob(os.path.join(workdir, 'tensorboard', 'events.out.tfevents.*'))
  lines = [json.loads(l) for l in open(os.path.join(workdir, 'metrics.jsonl'))]
  assert [l['step'] for l in lines] == [2, 4, 6]
  assert all(np.isfinite(l['d_loss']) and np.isfinite(l['g_loss']) for l in lines)
  assert 0.0 <= lines[-1]['input_wait_frac'] <= 1.0
  assert sorted(os.listdir(os.path.join(workdir, 'samples'))) == [
      'step_0000003.png', 'step_0000006.png']
  saved = json.load(open(os.path.join(workdir, 'config.json')))
  assert saved['model']['ngf'] == 8 and saved['train']['num_steps'] == 6

  # Sampling CLI: .npz, .png grid and a folder of PNGs.
  out = tmp_path / 'out'
  for target in ('s.npz', 'grid.png', 'pngs/'):
    proc = subprocess.run(
        [sys.executable, '-m', 'gan_jax.sample', f'--workdir={workdir}', '--num_samples=10',
         '--seed=1', f'--output={out / target}'], cwd=REPO, capture_output=True, text=True,
        env={**os.environ, 'JAX_PLATFORMS': 'cpu'}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
  samples = np.load(out / 's.npz')['samples']
  assert samples.shape == (10, 32, 32, 1) and samples.dtype == np.float32
  assert samples.min() >= -1 and samples.max() <= 1
  assert len(os.listdir(out / 'pngs')) == 10
  # Same seed, same samples.
  _, generate = sample.load_generator(workdir)
  again = sample.generate_samples(generate, z_dim=16, num_samples=10, seed=1)
  np.testing.assert_allclose(again, samples, atol=1e-6)


@pytest.mark.slow
def test_killed_run_resumes_exactly(tmp_path):
  n = 4
  common = ['--config=configs/dcgan_digits.py:smoke', f'--config.train.num_steps={2 * n}',
            f'--config.train.checkpoint_every={n}', '--config.train.sample_every=0']
  straight = str(tmp_path / 'straight')
  result = run_main(common + [f'--workdir={straight}'])
  assert result.returncode == 0, result.stderr[-3000:]

  resumed = str(tmp_path / 'resumed')
  killed = run_main(common + [f'--workdir={resumed}'],
                    env={'GAN_JAX_SIGKILL_AT_STEP': str(n)})
  assert killed.returncode == -signal.SIGKILL
  assert os.listdir(os.path.join(resumed, 'checkpoints')) == [str(n)]
  result = run_main(common + [f'--workdir={resumed}'])
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'Resumed from the checkpoint at step {n}' in result.stderr

  a, data_a, step_a = restore_state(straight)
  b, data_b, step_b = restore_state(resumed)
  assert step_a == step_b == 2 * n and data_a == data_b
  assert_states_equal(a, b)
  _, gen_a = sample.load_generator(straight)
  _, gen_b = sample.load_generator(resumed)
  z = np.random.default_rng(0).normal(size=(8, 16)).astype(np.float32)
  np.testing.assert_array_equal(gen_a(z), gen_b(z))


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
  workdir = str(tmp_path / 'run')
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS='--xla_force_host_platform_device_count=2')
  proc = subprocess.Popen(
      [sys.executable, '-m', 'gan_jax.main', '--config=configs/dcgan_digits.py:smoke',
       f'--workdir={workdir}', '--config.train.num_steps=100000',
       '--config.train.checkpoint_every=50000', '--config.train.log_every=1'],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  metrics = os.path.join(workdir, 'metrics.jsonl')
  deadline = time.time() + 300
  while time.time() < deadline and not (os.path.exists(metrics) and os.path.getsize(metrics)):
    time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  output, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0, output[-3000:]
  assert 'Received SIGTERM' in output
  steps = [int(s) for s in os.listdir(os.path.join(workdir, 'checkpoints'))]
  assert len(steps) == 1 and 0 < steps[0] < 100000


@pytest.mark.slow
def test_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
  workdir = str(tmp_path / 'run')
  config = smoke_config(**{'train.num_steps': 4, 'train.checkpoint_every': 2,
                           'train.sample_every': 0})
  train.train_and_evaluate(config, workdir)
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  assert sorted(os.listdir(ckpt_dir)) == ['2', '4']
  # Corrupt every data file of the newest checkpoint's state.
  for path in glob.glob(os.path.join(ckpt_dir, '4', 'state', '**', '*'), recursive=True):
    if os.path.isfile(path):
      with open(path, 'wb') as f:
        f.write(b'garbage')
  config.train.num_steps = 6
  with caplog.at_level('WARNING'):
    train.train_and_evaluate(config, workdir)
  assert any('could not be restored' in r.message for r in caplog.records)
  moved = glob.glob(os.path.join(workdir, 'checkpoints_corrupt', '4-*'))
  assert moved, 'the corrupt checkpoint must be kept (moved aside), not deleted'
  assert sorted(os.listdir(ckpt_dir)) == ['2', '4', '6']  # resumed from 2, re-did 3..6
  _, _, step = restore_state(workdir)
  assert step == 6


@pytest.mark.slow
def test_nan_loss_stops_with_the_step_and_keeps_checkpoints(tmp_path):
  workdir = str(tmp_path / 'run')
  config = smoke_config(**{'train.num_steps': 2, 'train.checkpoint_every': 2,
                           'train.sample_every': 0, 'train.log_every': 1})
  train.train_and_evaluate(config, workdir)
  before = restore_state(workdir)[0]
  # An absurd learning rate overflows the parameters to inf, then the losses to NaN.
  config.train.num_steps = 10
  config.train.checkpoint_every = 1
  config.optim.d.learning_rate = 1e38
  config.optim.g.learning_rate = 1e38
  with pytest.raises(train.NonFiniteLossError, match=r'at step \d+') as error:
    train.train_and_evaluate(config, workdir)
  assert 'Checkpoints written before it are kept' in str(error.value)
  bad_step = int(str(error.value).split('at step ')[1].split()[0])
  steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, 'checkpoints')))
  assert 2 in steps and all(s < bad_step for s in steps)
  for s in steps:  # every kept checkpoint is finite
    state = restore_state(workdir, s)[0]
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.g_params))
  assert_states_equal(restore_state(workdir, 2)[0], before)


@pytest.mark.slow
def test_celeba_smoke_runs_under_tfds_mock_data(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = dcgan_celeba.get_config('smoke')
  with tfds.testing.mock_data(num_examples=32):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  state = restore_state(str(tmp_path / 'run'))[0]
  assert int(state.step) == config.train.num_steps
  assert os.path.exists(tmp_path / 'run' / 'samples' / 'step_0000004.png')


@pytest.mark.slow
def test_celeba_main_without_data_stops_at_once_with_instructions(tmp_path):
  start = time.time()
  result = run_main(['--config=configs/dcgan_celeba.py:smoke', f'--workdir={tmp_path / "run"}',
                     f'--config.data.data_dir={tmp_path / "nothing"}'])
  assert result.returncode != 0
  assert 'download_and_prepare' in result.stderr and 'image_folder' in result.stderr
  assert time.time() - start < 120
