"""End-to-end tests of the training loop: workdir outputs, resume, signals, NaN stop.

These train real (smoke-sized) runs, in-process or through `python -m gan_jax.main`
in a subprocess as a user would, so they are marked slow.
"""

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
from PIL import Image

from configs import dcgan_celeba
from gan_jax import checkpoint
from gan_jax import errors
from gan_jax import models
from gan_jax import periodic
from gan_jax import sample
from gan_jax import state as state_lib
from gan_jax import train
from gan_jax import workdir as workdir_lib
from gan_jax import writers
from gan_jax.metrics import evaluator as metrics_evaluator
from tests.compile_flags import subprocess_xla_flags
from tests import tensorboard_events
from tests.helpers import tiny_config
from tests.test_main import REPO
from tests.test_main import assert_short_error
from tests.test_main import run_module

pytestmark = pytest.mark.slow
SMOKE = '--config=dcgan_digits:smoke'


def restore_state(workdir, step=None):
  config = workdir_lib.load_config(workdir)
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'), async_save=False)
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  state, data_state, restored_step = ckpt.restore(state_lib.abstract_state(config, sharding),
                                                  step)
  ckpt.close()
  return jax.device_get(state), data_state, restored_step


def assert_states_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def event_files(workdir):
  return sorted(glob.glob(os.path.join(workdir, 'tensorboard', 'events.out.tfevents.*')))


def test_a_run_leaves_its_outputs_a_summary_and_refuses_a_changed_config(tmp_path):
  workdir = str(tmp_path / 'run')
  result = run_module('gan_jax.main', [SMOKE, f'--workdir={workdir}'])
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Unable to initialize backend' not in result.stderr
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['4', '6']
  lines = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  assert [line['step'] for line in lines] == [3, 6]
  assert all(np.isfinite(line['d_loss']) and np.isfinite(line['g_loss']) for line in lines)
  assert sorted(os.listdir(os.path.join(workdir, 'samples'))) == [
      'step_0000004.png', 'step_0000006.png']
  assert 'Finished' in result.stdout and 'python -m gan_jax.sample' in result.stdout
  events = event_files(workdir)
  assert events
  config_before = open(os.path.join(workdir, 'config.json'), 'rb').read()

  # A rerun trains nothing and adds no event file.
  again = run_module('gan_jax.main', [SMOKE, f'--workdir={workdir}'])
  assert again.returncode == 0 and event_files(workdir) == events
  assert 'nothing to train' in again.stderr

  # A changed training config is refused; with the flag it continues and is recorded.
  changed = run_module('gan_jax.main', [SMOKE, f'--workdir={workdir}',
                                        '--config.loss.type=hinge', '--config.train.num_steps=8'])
  assert_short_error(changed, "loss.type: saved 'non_saturating', now 'hinge'")
  allowed = run_module('gan_jax.main', [SMOKE, f'--workdir={workdir}', '--allow_config_change',
                                        '--config.loss.type=hinge', '--config.train.num_steps=8'])
  assert allowed.returncode == 0, allowed.stderr[-3000:]
  assert open(os.path.join(workdir, 'config.json'), 'rb').read() == config_before
  entry = workdir_lib.history(workdir)[0]
  assert entry['step'] == 6 and entry['changes']['loss.type']['to'] == 'hinge'
  assert restore_state(workdir)[2] == 8


def test_sample_cli_writes_npz_png_grid_and_a_folder(tmp_path):
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(tiny_config(**{'train.num_steps': 2}), workdir)
  out = tmp_path / 'out'
  for target in ('s.npz', 'grid.png', 'pngs/'):
    result = run_module('gan_jax.sample', [f'--workdir={workdir}', '--num_samples=10',
                                           '--seed=1', f'--output={out / target}'])
    assert result.returncode == 0, result.stderr[-2000:]
  samples = np.load(out / 's.npz')['samples']
  assert samples.shape == (10, 32, 32, 1) and samples.dtype == np.float32
  assert samples.min() >= -1 and samples.max() <= 1
  assert len(os.listdir(out / 'pngs')) == 10
  assert Image.open(out / 'grid.png').size[0] >= 4 * 48  # 4 columns of >= 48 px tiles
  _, generate = sample.load_generator(workdir)
  again = sample.generate_samples(generate, z_dim=16, num_samples=10, seed=1)
  np.testing.assert_allclose(again, samples, atol=1e-6)
  for z in (np.zeros(16, np.float32), np.zeros((2, 8), np.float32)):  # no batch axis, z_dim 8
    with pytest.raises(ValueError, match=r'z must be f32\[N, 16\]'):
      generate(z)
  with pytest.raises(TypeError, match='step must be an int'):
    sample.load_generator(workdir, step='2')
  # The EMA generator by default (the CLI's --ema), the raw one with ema=False (--noema).
  config, raw = sample.load_generator(workdir, ema=False)
  assert config.train.ema_decay > 0
  _, state, _ = workdir_lib.restore_state(workdir)
  generator, _ = models.build(config.model)
  z = sample.latents(1, 4, 16)
  by_hand = lambda params: np.asarray(generator.apply(
      {'params': params, 'batch_stats': state.g_batch_stats}, z, train=False))
  # Two steps at tiny widths: outputs of about 1e-3, so the tolerances are relative.
  scale = np.abs(by_hand(state.g_params)).max()
  np.testing.assert_allclose(generate(z), by_hand(state.ema_g_params), atol=1e-4 * scale)
  np.testing.assert_allclose(raw(z), by_hand(state.g_params), atol=1e-4 * scale)
  assert np.abs(generate(z) - raw(z)).max() > 5e-3 * scale
  result = run_module('gan_jax.sample', [f'--workdir={workdir}', '--num_samples=4', '--seed=1',
                                         '--noema', f'--output={out / "raw.npz"}'])
  assert result.returncode == 0, result.stderr[-2000:]
  np.testing.assert_allclose(np.load(out / 'raw.npz')['samples'], raw(z), atol=1e-4 * scale)


@pytest.mark.parametrize('extra', [
    [],
    # The switches that carry state or draw from the step's key: LeCam's averages in
    # D's statistics, flips of the real batch, standing statistics for evaluations, the
    # EMA generator's own statistics in G's.
    ['--config.loss.lecam_weight=0.3', '--config.loss.lecam_start=2',
     '--config.data.random_flip=True',
     '--config.eval.standing_stats=2', '--config.train.ema_batch_stats=True'],
    # Historical averages in the state, top-k annealed by the step, augmentations and
    # several D updates per step drawing from the step's key.
    ['--config.loss.hist_avg_weight=0.1', '--config.loss.g_top_k=0.5',
     '--config.loss.g_top_k_decay=0.5', '--config.loss.g_top_k_decay_steps=3',
     '--config.augment.policy=translation,cutout', '--config.train.n_critic=2'],
    # ADA's p and its accumulated verdicts in D's statistics, adjusted every 3 D updates
    # (so the kill falls between two adjustments) by 16 * 3 / 150 = 0.32.
    ['--config.augment.policy=cutout', '--config.augment.ada_target=0.6',
     '--config.augment.ada_interval=3', '--config.augment.ada_kimg=0.15'],
], ids=['default', 'lecam_flips_standing', 'hist_topk_augment_ncritic', 'ada'])
def test_killed_run_resumes_exactly(tmp_path, extra):
  # Killed right after saving the checkpoint of step n (also a log step), before that
  # step's grid and evaluation: the resumed run writes them, and its record equals
  # the straight run's.
  n = 4
  args = [SMOKE, f'--config.train.num_steps={2 * n}', f'--config.train.checkpoint_every={n}',
          f'--config.train.sample_every={n}', '--config.train.log_every=2',
          '--config.eval.metrics=proxy',
          f'--config.eval.every={n}', '--config.eval.num_samples=200', *extra]
  env = {'XLA_FLAGS': subprocess_xla_flags(devices=2)}
  straight = str(tmp_path / 'straight')
  result = run_module('gan_jax.main', args + [f'--workdir={straight}'], env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  resumed = str(tmp_path / 'resumed')
  killed = run_module('gan_jax.main', args + [f'--workdir={resumed}'],
                      env={**env, checkpoint.KILL_AT_STEP_ENV: str(n)})
  assert killed.returncode == -signal.SIGKILL
  assert os.listdir(os.path.join(resumed, 'checkpoints')) == [str(n)]
  # A kill later than the checkpoint would have left lines for the steps after it.
  with open(os.path.join(resumed, 'metrics.jsonl'), 'a', encoding='utf-8') as f:
    f.write(json.dumps({'step': n + 1, 'd_loss': 99.0}) + '\n{"step": ')
  result = run_module('gan_jax.main', args + [f'--workdir={resumed}'], env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'Resumed from the checkpoint at step {n}' in result.stderr
  a, data_a, step_a = restore_state(straight)
  b, data_b, step_b = restore_state(resumed)
  assert step_a == step_b == 2 * n and data_a == data_b
  assert_states_equal(a, b)
  if 'ada' in a.d_batch_stats:  # two adjustments were made, and a third is under way
    ada = {k: float(v) for k, v in a.d_batch_stats['ada'].items()}
    assert ada['updates'] == 2 and ada['p'] in (pytest.approx(0.32), pytest.approx(0.64)), ada
  logged = []
  for workdir in (straight, resumed):
    with open(os.path.join(workdir, 'metrics.jsonl'), encoding='utf-8') as f:
      logged.append([(r['step'], r['d_loss']) for r in map(json.loads, f)])
  assert [s for s, _ in logged[0]] == [2, 4, 6, 8]
  assert logged[0] == logged[1], logged  # the same lines, each step once
  evaluations, grids, best = [], [], []
  for workdir in (straight, resumed):
    with open(os.path.join(workdir, 'eval.jsonl'), encoding='utf-8') as f:
      evaluations.append([json.loads(line) for line in f])
    grids.append({})
    for name in os.listdir(os.path.join(workdir, 'samples')):
      with open(os.path.join(workdir, 'samples', name), 'rb') as f:
        grids[-1][name] = f.read()
    with open(os.path.join(workdir, 'best', 'best.json'), encoding='utf-8') as f:
      best.append(json.load(f))
  assert [e['step'] for e in evaluations[0]] == [n, 2 * n]
  assert evaluations[0] == evaluations[1]
  assert sorted(grids[0]) == [f'step_{n:07d}.png', f'step_{2 * n:07d}.png']
  assert grids[0] == grids[1]
  assert best[0] == best[1]
  # TensorBoard shows the same: the killed attempt's events up to its checkpoint were
  # on disk before it (a resumed writer never logs those steps again).
  views = [tensorboard_events.shown(workdir) for workdir in (straight, resumed)]
  assert sorted(views[0][('scalar', 'd_loss')]) == [2, 4, 6, 8]
  assert sorted(views[0][('image', 'samples')]) == [n, 2 * n]
  assert sorted(views[0][('scalar', 'eval/proxy_fd')]) == [n, 2 * n]
  assert views[0].keys() == views[1].keys()
  for key in views[0]:
    if key[1] in ('steps_per_sec', 'input_wait_frac'):  # timings
      assert views[0][key].keys() == views[1][key].keys(), key
    else:
      assert views[0][key] == views[1][key], key


def test_a_resume_with_more_eval_samples_sets_the_best_checkpoint_aside(tmp_path):
  # eval.* may change on resume; a proxy FD of 200 samples is not comparable with
  # one of 100, so the old best is kept aside and every eval.jsonl line says which.
  workdir = str(tmp_path / 'run')
  overrides = {'train.num_steps': 2, 'train.checkpoint_every': 2, 'train.sample_every': 0,
               'eval.every': 2, 'eval.metrics': 'proxy', 'eval.num_samples': 100}
  train.train_and_evaluate(tiny_config(**overrides), workdir)
  train.train_and_evaluate(tiny_config(**{**overrides, 'train.num_steps': 4,
                                          'eval.num_samples': 200}), workdir)
  with open(os.path.join(workdir, 'eval.jsonl'), encoding='utf-8') as f:
    lines = [json.loads(line) for line in f]
  assert [(line['step'], line['protocol']['num_fake']) for line in lines] == [(2, 100),
                                                                              (4, 200)]
  assert lines[0]['protocol']['proxy']['num_real'] == 100  # the reference follows
  assert lines[1]['protocol']['proxy']['num_real'] == 200  # eval.num_samples here
  with open(os.path.join(workdir, 'best', 'best.json'), encoding='utf-8') as f:
    assert json.load(f)['step'] == 4
  with open(str(tmp_path / 'run' / 'best_proxy_fd_step2' / 'best.json'),
            encoding='utf-8') as f:
    assert json.load(f)['protocol']['num_fake'] == 100


def test_eval_lines_keep_the_summary_and_the_best_checkpoint_the_comparable_part(
    tmp_path, monkeypatch):
  # The summary adds fid's / intra_fid's image counts and resizer to the line; the
  # best checkpoint compares only what decides comparability.
  comparable = metrics_evaluator.Evaluator.summary
  monkeypatch.setattr(metrics_evaluator.Evaluator, 'summary', property(
      lambda self: {**comparable.fget(self), 'fid': {'resize': 'marker'}}))
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(tiny_config(**{
      'train.num_steps': 2, 'train.checkpoint_every': 2, 'train.sample_every': 0,
      'eval.every': 2, 'eval.metrics': 'proxy', 'eval.num_samples': 100, 'seed': 3}), workdir)
  with open(os.path.join(workdir, 'eval.jsonl'), encoding='utf-8') as f:
    (line,) = [json.loads(line) for line in f]
  assert line['protocol']['fid'] == {'resize': 'marker'}
  assert line['protocol']['num_fake'] == 100 and line['protocol']['standing_stats'] == 0
  # The latents' seed and G's compute dtype (gan_jax.evaluate's defaults may differ).
  assert (line['protocol']['seed'], line['protocol']['generator_dtype']) == (3, 'float32')
  with open(os.path.join(workdir, 'best', 'best.json'), encoding='utf-8') as f:
    best = json.load(f)['protocol']
  assert best == {k: v for k, v in line['protocol'].items()
                  if k not in ('fid', 'seed', 'generator_dtype')}


def test_the_marks_a_resumed_run_checks_are_written_last(tmp_path, monkeypatch):
  # A resumed run redoes a step's grid when its PNG is missing and its evaluation when
  # eval.jsonl lacks the step: each mark must come after everything it stands for
  # (the best checkpoint; TensorBoard's events), or a kill between them loses those.
  calls = []
  for cls, name in ((checkpoint.BestCheckpoint, 'update'), (writers.MetricWriter, 'write_eval'),
                    (writers.MetricWriter, 'write_image'), (writers.MetricWriter, 'flush')):
    original = getattr(cls, name)
    monkeypatch.setattr(cls, name, lambda self, *a, _f=original, _n=name, **k: (
        calls.append(_n), _f(self, *a, **k))[1])
  monkeypatch.setattr(writers, 'save_png', lambda path, image, _f=writers.save_png: (
      calls.append('save_png'), _f(path, image))[1])
  save = checkpoint.Checkpointer.save
  monkeypatch.setattr(checkpoint.Checkpointer, 'save', lambda self, step, *a, **k: (
      calls.append(f'checkpoint {step}'), save(self, step, *a, **k))[1])
  train.train_and_evaluate(tiny_config(**{
      'train.num_steps': 2, 'train.checkpoint_every': 2, 'train.sample_every': 2,
      'eval.every': 2, 'eval.metrics': 'proxy', 'eval.num_samples': 100}), str(tmp_path / 'run'))
  assert calls.index('update') < calls.index('write_eval')
  assert calls.index('write_image') < calls.index('save_png')
  assert calls[calls.index('checkpoint 2') - 1] == 'flush'


@pytest.mark.parametrize('signals,status', [((signal.SIGTERM,), 143),
                                            ((signal.SIGINT, signal.SIGINT), 130)])
def test_a_signal_saves_then_exits_with_128_plus_its_number(tmp_path, signals, status):
  workdir = str(tmp_path / 'run')
  proc = subprocess.Popen(
      [sys.executable, '-m', 'gan_jax.main', SMOKE, f'--workdir={workdir}',
       '--config.train.num_steps=100000', '--config.train.log_every=1'],
      cwd=REPO, env=dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=subprocess_xla_flags()),
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  metrics = os.path.join(workdir, 'metrics.jsonl')
  deadline = time.time() + 300
  while time.time() < deadline and not (os.path.exists(metrics) and os.path.getsize(metrics)):
    time.sleep(0.2)
  for sig in signals:  # the second Ctrl-C lands while the first one's checkpoint is saved
    proc.send_signal(sig)
    time.sleep(0.05)
  output, _ = proc.communicate(timeout=300)
  assert proc.returncode == status, output[-3000:]
  assert 'Traceback' not in output and 'rerun the same command to resume' in output
  steps = [int(s) for s in os.listdir(os.path.join(workdir, 'checkpoints'))]
  assert len(steps) == 1 and 0 < steps[0] < 100000
  resumed = run_module('gan_jax.main', [SMOKE, f'--workdir={workdir}',
                                        f'--config.train.num_steps={steps[0] + 2}'])
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f'Resumed from the checkpoint at step {steps[0]}' in resumed.stderr


@pytest.mark.parametrize('last', [False, True], ids=['mid_run', 'last_step'])
def test_a_signal_during_an_evaluation_stops_it_saves_and_the_rerun_evaluates(tmp_path, last):
  # An evaluation of 400,000 samples takes about a minute here; the stop must not wait
  # for it (a preemption's grace period would not), and at the last step the run is
  # not complete without it, so the exit says so (143) instead of 0.
  workdir = str(tmp_path / 'run')
  steps = ['--config.train.num_steps=2' if last else '--config.train.num_steps=4',
           '--config.train.checkpoint_every=4', '--config.eval.every=2',
           '--config.eval.metrics=proxy', '--config.train.sample_every=0']
  proc = subprocess.Popen(
      [sys.executable, '-m', 'gan_jax.main', SMOKE, f'--workdir={workdir}', *steps,
       '--config.eval.num_samples=400000'],
      cwd=REPO, env=dict(os.environ, JAX_PLATFORMS='cpu', PYTHONUNBUFFERED='1',
                         XLA_FLAGS=subprocess_xla_flags()),
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  lines = []
  for line in proc.stdout:
    lines.append(line)
    if 'Evaluating step 2: proxy of 400000 samples' in line:
      break
  time.sleep(1.0)
  proc.send_signal(signal.SIGTERM)
  output = ''.join(lines) + proc.communicate(timeout=300)[0]
  assert proc.returncode == 143, output[-3000:]
  assert 'stopping the evaluation' in output and 'Traceback' not in output
  assert os.listdir(os.path.join(workdir, 'checkpoints')) == ['2']
  assert not os.path.exists(os.path.join(workdir, 'eval.jsonl'))
  assert not os.path.exists(os.path.join(workdir, 'best'))
  # The rerun (its evaluations smaller: eval.* may change) evaluates step 2 first.
  resumed = run_module('gan_jax.main', [SMOKE, f'--workdir={workdir}', *steps,
                                        '--config.eval.num_samples=500'])
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  with open(os.path.join(workdir, 'eval.jsonl'), encoding='utf-8') as f:
    assert [json.loads(line)['step'] for line in f] == ([2] if last else [2, 4])


def test_an_overridden_smoke_step_count_keeps_outputs_sensible(tmp_path):
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(tiny_config(**{'train.num_steps': 30}), workdir)
  assert sorted(map(int, os.listdir(os.path.join(workdir, 'checkpoints')))) == [16, 30]
  lines = open(os.path.join(workdir, 'metrics.jsonl')).read().splitlines()
  assert [json.loads(line)['step'] for line in lines] == [11, 22, 30]
  one = str(tmp_path / 'one')
  # A plain dict (`config.to_dict()`, or a workdir's config.json) is taken as the config.
  train.train_and_evaluate(tiny_config(**{'train.num_steps': 1}).to_dict(), one)
  assert len(open(os.path.join(one, 'metrics.jsonl')).read().splitlines()) == 1


def test_a_config_that_is_not_a_mapping_is_refused(tmp_path):
  with pytest.raises(errors.ConfigError, match='takes a config'):
    train.train_and_evaluate('configs/dcgan_digits.py', str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run')


def test_nan_loss_stops_with_the_step_and_keeps_checkpoints(tmp_path):
  workdir = str(tmp_path / 'run')
  config = tiny_config(**{'train.num_steps': 2, 'train.checkpoint_every': 2,
                          'train.sample_every': 0, 'train.log_every': 1})
  train.train_and_evaluate(config, workdir)
  before = restore_state(workdir)[0]
  # An absurd learning rate overflows the parameters to inf, then the losses to NaN.
  config.train.num_steps = 10
  config.train.checkpoint_every = 1
  config.optim.d.learning_rate = 1e38
  config.optim.g.learning_rate = 1e38
  with pytest.raises(periodic.NonFiniteLossError, match=r'at step \d+') as error:
    train.train_and_evaluate(config, workdir, allow_config_change=True)
  assert 'Checkpoints written before it, if any, are kept' in str(error.value)
  bad_step = int(str(error.value).split('at step ')[1].split()[0])
  steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, 'checkpoints')))
  assert 2 in steps and all(s < bad_step for s in steps)
  for s in steps:  # every kept checkpoint is finite
    state = restore_state(workdir, s)[0]
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.g_params))
  assert_states_equal(restore_state(workdir, 2)[0], before)


def test_a_nan_loss_before_an_evaluation_is_reported_as_a_nan_loss(tmp_path):
  # The logger reads losses a step late; the evaluation's NaN samples were reported
  # instead ("Generated samples contain NaN"), with advice for gan_jax.evaluate.
  config = tiny_config(**{'train.num_steps': 6, 'train.checkpoint_every': 6,
                          'train.sample_every': 0, 'train.log_every': 5, 'eval.every': 2,
                          'eval.metrics': 'proxy', 'eval.num_samples': 100,
                          'model.resolution': 8, 'optim.d.learning_rate': 1e38,
                          'optim.g.learning_rate': 1e38})
  with pytest.raises(periodic.NonFiniteLossError, match=r'A loss became NaN or infinite at step'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))


def test_celeba_smoke_runs_under_tfds_mock_data(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = dcgan_celeba.get_config('smoke')
  with tfds.testing.mock_data(num_examples=32):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  state = restore_state(str(tmp_path / 'run'))[0]
  assert int(state.step) == config.train.num_steps
  assert os.path.exists(tmp_path / 'run' / 'samples' / f'step_{config.train.num_steps:07d}.png')
