"""Tests of BigGAN's standing statistics (gan_jax/standing_stats.py) and their flags."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import dcgan_digits
from gan_jax import config_files
from gan_jax import ema as ema_lib
from gan_jax import errors
from gan_jax import evaluate as evaluate_lib
from gan_jax import models
from gan_jax import sample
from gan_jax import standing_stats
from gan_jax import state as state_lib
from gan_jax import step as step_lib
from gan_jax import train
from gan_jax.bench import digits_check
from tests.helpers import tiny_config


def _bn_leaves(tree):
  return {jax.tree_util.keystr(path): np.asarray(value)
          for path, value in jax.tree_util.tree_leaves_with_path(tree)
          if jax.tree_util.keystr(path).endswith(("['mean']", "['var']"))}


@pytest.mark.parametrize('name', ['dcgan', 'conditional'])
def test_the_statistics_are_the_average_of_each_batch_statistics(name):
  # By hand with the model's own momentum m: one train-mode call from statistics S
  # leaves m * S + (1 - m) * B, so the batch's statistics are B = (S' - m * S) / (1 - m).
  config = (tiny_config() if name == 'dcgan'
            else tiny_config(**{'model.num_classes': 10, 'model.d_cond': 'projection'}))
  m = config.model.bn_momentum
  assert 0 < m < 1
  state = state_lib.create_state(config, jax.random.key(0))
  generator, _ = models.build(config.model)
  z, labels = standing_stats.standing_latents(config.model, jax.random.key(1), num_batches=3,
                                              batch_size=16)
  assert (labels is None) == (name == 'dcgan')
  per_batch = []
  for i in range(3):
    _, after = step_lib.apply_model(generator, state.ema_g_params, state.g_batch_stats, z[i],
                                    None if labels is None else labels[i], train=True)
    per_batch.append({k: (v - m * _bn_leaves(state.g_batch_stats)[k]) / (1 - m)
                      for k, v in _bn_leaves(after).items()})
  got = _bn_leaves(standing_stats.standing_statistics(
      config.model, state.ema_g_params, state.g_batch_stats, z, labels))
  assert set(got) == set(per_batch[0]) and len(got) >= 4
  for k in got:
    expected = np.mean([b[k] for b in per_batch], axis=0)
    np.testing.assert_allclose(got[k], expected, rtol=1e-4, atol=1e-5, err_msg=k)
    # The three batches differ, so the average is not any one of them.
    assert not np.allclose(per_batch[0][k], per_batch[1][k]), k


def test_spectral_norm_state_is_kept_and_batch_norm_replaced():
  config = config_files.load('biggan_cifar10:smoke')
  state = state_lib.create_state(config, jax.random.key(0))
  sampled = ema_lib.sampling_batch_stats(state.g_batch_stats)  # the EMA G's own
  with pytest.raises(ValueError, match='sampling_batch_stats'):
    standing_stats.apply(config.model, state.ema_g_params, state.g_batch_stats,
                         jax.random.key(1), num_batches=2, batch_size=8)
  out = standing_stats.apply(config.model, state.ema_g_params, sampled,
                             jax.random.key(1), num_batches=2, batch_size=8)
  before = dict((jax.tree_util.keystr(p), np.asarray(v))
                for p, v in jax.tree_util.tree_leaves_with_path(sampled))
  after = dict((jax.tree_util.keystr(p), np.asarray(v))
               for p, v in jax.tree_util.tree_leaves_with_path(out))
  assert set(before) == set(after)
  spectral = [k for k in before if k.endswith(("/u']", "/sigma']"))]
  batch_norm = [k for k in before if k.endswith(("['mean']", "['var']"))]
  assert spectral and batch_norm and len(spectral) + len(batch_norm) == len(before)
  for k in spectral:
    np.testing.assert_array_equal(after[k], before[k], err_msg=k)
  assert all(not np.array_equal(after[k], before[k]) for k in batch_norm)


def test_standing_statistics_make_eval_mode_agree_with_train_mode():
  # Running averages far from what the weights produce (as after EMA): eval-mode
  # samples are far from train-mode ones until the statistics are re-estimated.
  config = tiny_config()
  state = state_lib.create_state(config, jax.random.key(0))
  generator, _ = models.build(config.model)
  wrong = jax.tree_util.tree_map_with_path(
      lambda p, v: v + 3.0 if jax.tree_util.keystr(p).endswith("['mean']") else v * 50.0,
      state.g_batch_stats)
  z = jax.random.normal(jax.random.key(5), (256, config.model.z_dim))
  train_mode, _ = step_lib.apply_model(generator, state.g_params, wrong, z, train=True)
  gap = lambda stats: float(jnp.mean(jnp.abs(
      step_lib.apply_model(generator, state.g_params, stats, z, train=False)[0] - train_mode)))
  fixed = standing_stats.apply(config.model, state.g_params, wrong, jax.random.key(6),
                               num_batches=16, batch_size=256)
  # Wrong statistics move the samples by more than the samples differ from their mean.
  spread = float(jnp.mean(jnp.abs(train_mode - jnp.mean(train_mode, axis=0))))
  assert gap(wrong) > spread
  assert gap(fixed) < 0.1 * gap(wrong)


def test_a_generator_without_batch_norm_is_refused():
  config = config_files.load('toy_ring:smoke')
  state = state_lib.create_state(config, jax.random.key(0))
  with pytest.raises(errors.ConfigError, match='no BatchNorm statistics.*set --standing_stats to 0'):
    standing_stats.apply(config.model, state.g_params, state.g_batch_stats, jax.random.key(0),
                         batch_size=8)
  with pytest.raises(errors.ConfigError, match='no BatchNorm statistics'):
    standing_stats.check_config(config, 4)
  standing_stats.check_config(config, 0)
  with pytest.raises(errors.ConfigError, match='must be >= 0'):
    standing_stats.check_config(tiny_config(), -1)


@pytest.mark.slow
def test_evaluate_and_sample_use_and_record_standing_statistics(tmp_path):
  config = dcgan_digits.get_config('smoke')
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  kwargs = dict(metrics='proxy', num_samples=200, cache_dir=str(tmp_path / 'cache'))
  plain = evaluate_lib.evaluate(workdir, output=str(tmp_path / 'plain.json'), **kwargs)
  standing = evaluate_lib.evaluate(workdir, output=str(tmp_path / 'standing.json'),
                                   standing_stats=4, seed=3, **kwargs)
  assert plain['protocol']['standing_stats'] is None
  assert standing['protocol']['standing_stats'] == {
      'batches': 4, 'batch_size': config.train.batch_size, 'seed': 3}
  again = evaluate_lib.evaluate(workdir, output=str(tmp_path / 'again.json'),
                                standing_stats=4, seed=3, **kwargs)
  assert again['results'] == standing['results']
  assert standing['results']['proxy_fd'] != plain['results']['proxy_fd']
  # The sample tool: the same generator as load_generator with the same request.
  out = tmp_path / 'samples.npz'
  done = subprocess.run(
      [sys.executable, '-m', 'gan_jax.sample', f'--workdir={workdir}', f'--output={out}',
       '--num_samples=8', '--seed=3', '--standing_stats=4'],
      capture_output=True, text=True, check=False)
  assert done.returncode == 0, done.stderr
  _, generate = sample.load_generator(workdir, standing_stats=4, standing_seed=3)
  np.testing.assert_allclose(np.load(out)['samples'],
                             sample.generate_samples(generate, z_dim=config.model.z_dim,
                                                     num_samples=8, seed=3),
                             atol=1e-6)
  assert generate.standing_stats == standing['protocol']['standing_stats']
  json.dumps(standing)  # the record stays JSON


def test_the_flag_is_refused_for_a_run_without_batch_norm_before_anything_loads(tmp_path):
  from gan_jax import workdir as workdir_lib
  config = config_files.load('toy_ring:smoke')
  workdir = str(tmp_path / 'run')
  workdir_lib.prepare(config, workdir)  # no checkpoint: the check comes first
  done = subprocess.run(
      [sys.executable, '-m', 'gan_jax.sample', f'--workdir={workdir}',
       f'--output={tmp_path / "s.npz"}', '--standing_stats=4'],
      capture_output=True, text=True, check=False)
  assert done.returncode == 2
  assert 'no BatchNorm statistics' in done.stderr and 'Traceback' not in done.stderr


@pytest.mark.slow
def test_evaluations_during_training_use_standing_statistics(tmp_path):
  # The same run with and without eval.standing_stats: training is the same bit for
  # bit, the evaluations differ, and the standing one equals the proxy metrics of the
  # saved EMA generator with statistics made from the documented key (the run's seed
  # folded with 0x5374, then with the step).
  from gan_jax import metrics
  from gan_jax import workdir as workdir_lib
  overrides = {'eval.every': 3, 'eval.metrics': 'proxy', 'eval.num_samples': 200}
  runs = {}
  for standing in (0, 4):
    config = dcgan_digits.get_config('smoke')
    config.update_from_flattened_dict({**overrides, 'eval.standing_stats': standing})
    workdir = str(tmp_path / f'run{standing}')
    train.train_and_evaluate(config, workdir)
    with open(f'{workdir}/eval.jsonl', encoding='utf-8') as f:
      lines = [json.loads(line) for line in f]
    _, state, step = workdir_lib.restore_state(workdir, None)
    runs[standing] = (config, lines, state, step)
  (_, plain_lines, plain_state, step), (config, lines, state, _) = runs[0], runs[4]
  assert [line['step'] for line in lines] == [3, 6] == [line['step'] for line in plain_lines]
  for a, b in zip(jax.tree.leaves(plain_state), jax.tree.leaves(state)):
    np.testing.assert_array_equal(a, b)
  assert all(line['proxy_fd'] != plain['proxy_fd'] for line, plain in zip(lines, plain_lines))
  key = jax.random.fold_in(jax.random.fold_in(jax.random.key(config.seed), 0x5374), step)
  stats = standing_stats.apply(config.model, state.ema_g_params, state.g_batch_stats, key,
                               num_batches=4, batch_size=config.train.batch_size)
  generate_fn = jax.jit(step_lib.make_generate_fn(config))
  evaluator = metrics.make_evaluator(config, data_shape=models.data_shape(config.model),
                                     cache_dir=str(tmp_path / 'cache'))
  by_hand = evaluator(lambda z, labels=None: np.asarray(
      generate_fn(state.ema_g_params, stats, jnp.asarray(z), labels)), seed=config.seed)
  assert by_hand['proxy_fd'] == pytest.approx(lines[-1]['proxy_fd'], rel=1e-5)
  # The tools default to the run's eval.standing_stats.
  workdir = str(tmp_path / 'run4')
  record = evaluate_lib.evaluate(workdir, metrics='proxy', num_samples=200,
                                 cache_dir=str(tmp_path / 'cache'))
  assert record['protocol']['standing_stats'] == {
      'batches': 4, 'batch_size': config.train.batch_size, 'seed': 0}
  # --seed = config.seed reproduces the evaluation made during training.
  assert config.seed == 0
  assert record['results']['proxy_fd'] == pytest.approx(lines[-1]['proxy_fd'], rel=1e-6)
  out = tmp_path / 'samples.npz'
  done = subprocess.run(
      [sys.executable, '-m', 'gan_jax.sample', f'--workdir={workdir}', f'--output={out}',
       '--num_samples=8'], capture_output=True, text=True, check=False)
  assert done.returncode == 0, done.stderr
  _, generate = sample.load_generator(workdir, standing_stats=4, standing_seed=0)
  np.testing.assert_allclose(
      np.load(out)['samples'],
      sample.generate_samples(generate, z_dim=config.model.z_dim, num_samples=8, seed=0),
      atol=1e-6)
  # load_generator itself (the benchmarks' way in) defaults to the run's setting too.
  _, default = sample.load_generator(workdir)
  _, without = sample.load_generator(workdir, standing_stats=0)
  z = sample.latents(0, 8, config.model.z_dim)
  np.testing.assert_array_equal(default(z), generate(z))
  assert np.abs(without(z) - generate(z)).max() > 1e-4  # the statistics matter here
  # With --best, sample draws the latents evaluate --best scores: seed config.seed + 1.
  done = subprocess.run(
      [sys.executable, '-m', 'gan_jax.sample', f'--workdir={workdir}', '--best',
       f'--output={tmp_path / "best.npz"}', '--num_samples=8'],
      capture_output=True, text=True, check=False)
  assert done.returncode == 0, done.stderr
  _, best = sample.load_generator(workdir, best=True, standing_seed=1)
  np.testing.assert_allclose(
      np.load(tmp_path / 'best.npz')['samples'],
      sample.generate_samples(best, z_dim=config.model.z_dim, num_samples=8, seed=1), atol=1e-6)
  checked = digits_check.run_check(workdir, num_samples=200, seed=0, logistic=False)
  assert checked['standing_stats'] == {'batches': 4, 'batch_size': config.train.batch_size,
                                       'seed': 0}
