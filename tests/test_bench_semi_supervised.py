"""Tests of the semi-supervised benchmark harness (`gan_jax.bench.semi_supervised`)."""

import json
import os

import pytest

from gan_jax import errors
from gan_jax.bench import overrides
from gan_jax.bench import semi_supervised as bench


def _trial(seed, accuracy, seconds=10.0):
  return {'seed': seed, 'accuracy': accuracy, 'train_seconds': seconds,
          'train_cpu_seconds': 2 * seconds}


def test_parse_seeds():
  assert bench.parse_seeds('0, 1,2') == [0, 1, 2]
  for bad in ('', ',', 'a,1', '-1', '0,1,0'):
    with pytest.raises(errors.ConfigError, match='--seeds'):
      bench.parse_seeds(bad)


def test_summarize_reports_mean_sample_std_and_the_worst_seed():
  summary = bench.summarize([_trial(3, 0.9), _trial(4, 0.8), _trial(5, 1.0, seconds=40.0)])
  assert summary['mean'] == pytest.approx(0.9)
  assert summary['std'] == pytest.approx(0.1)  # ddof=1: sqrt((0.01 + 0 + 0.01) / 2)
  assert (summary['worst'], summary['worst_seed']) == (0.8, 4)
  assert summary['train_seconds'] == pytest.approx(20.0)
  assert bench.summarize([_trial(0, 0.5)])['std'] is None


def test_a_row_of_one_seed_shows_no_spread():
  row = {'config': 'semi_supervised_digits', 'overrides': '', 'labels_per_class': 10,
         'num_steps': 5, 'trials': [_trial(3, 0.95)]}
  row['summary'] = bench.summarize(row['trials'])
  line = bench.format_table([row]).splitlines()[2]
  assert '| 95.00 % (one seed) | 95.00 % (3) |' in line and '±' not in line


def test_paired_gain_compares_the_same_seeds_only():
  first = {'trials': [_trial(0, 0.96), _trial(1, 0.95), _trial(2, 0.99)]}
  second = {'trials': [_trial(0, 0.90), _trial(1, 0.92)]}
  mean, worst = bench.paired_gain(first, second)
  assert mean == pytest.approx(0.045) and worst == pytest.approx(0.03)
  assert bench.paired_gain(first, {'trials': [_trial(7, 0.5)]}) is None


def test_harness_runs_seeds_outermost_and_writes_the_table(tmp_path, monkeypatch):
  calls = []
  accuracy = {('semi_supervised_digits', 0): 0.96, ('semi_supervised_digits', 1): 0.97,
              ('semi_supervised_digits_supervised_only', 0): 0.92,
              ('semi_supervised_digits_supervised_only', 1): 0.90}

  def fake_trial(config, *, seed, workdir):
    calls.append((config.name, seed, config.loss.d_adversarial_weight, config.model.d_input_noise,
                  config.train.num_steps))
    return _trial(seed, accuracy[(config.name, seed)])

  monkeypatch.setattr(bench, 'run_trial', fake_trial)
  pairs = overrides.parse(['model.d_input_noise=0.6'])
  result = bench.run_benchmark(
      ['semi_supervised_digits', 'semi_supervised_digits:supervised_only'], seeds=[0, 1],
      out_dir=str(tmp_path), num_steps=5, overrides=pairs, log=lambda line: None)
  # Seeds outermost; every config gets the override and the step count; the
  # baseline keeps its adversarial weight of 0.
  assert calls == [('semi_supervised_digits', 0, 1.0, 0.6, 5),
                   ('semi_supervised_digits_supervised_only', 0, 0.0, 0.6, 5),
                   ('semi_supervised_digits', 1, 1.0, 0.6, 5),
                   ('semi_supervised_digits_supervised_only', 1, 0.0, 0.6, 5)]
  saved = json.loads((tmp_path / 'semi_supervised_benchmark.json').read_text())
  assert saved == json.loads(json.dumps(result))
  gan, baseline = saved['rows']
  assert gan['overrides'] == baseline['overrides'] == 'model.d_input_noise=0.6'
  assert gan['num_steps'] == 5 and gan['labels_per_class'] == 10
  assert gan['summary']['mean'] == pytest.approx(0.965)
  assert (baseline['summary']['worst'], baseline['summary']['worst_seed']) == (0.90, 1)
  table = (tmp_path / 'semi_supervised_benchmark.md').read_text()
  # The table, then the line naming the machine (per-seed numbers depend on the CPU).
  assert table.startswith(saved['table'])
  machine_line = table[len(saved['table']):].strip()
  assert machine_line.startswith('Machine: ') and saved['machine']['cpu'] in machine_line
  assert f"JAX {saved['machine']['jax_version']}" in machine_line
  assert ('| `semi_supervised_digits` with `model.d_input_noise=0.6` | 10 | 5 | 96.50 ± 0.71 %'
          in table)
  # Gains 4 and 7 points: mean 5.5, least 4.
  assert 'seed by seed: +5.50 points on average, +4.00 at least.' in table


def test_kept_workdirs_of_runs_with_different_overrides_are_apart(tmp_path, monkeypatch):
  workdirs = []
  monkeypatch.setattr(bench, 'run_trial', lambda config, *, seed, workdir: (
      workdirs.append(workdir), _trial(seed, 0.5))[1])
  for pairs in ((), overrides.parse(['loss.d_adversarial_weight=2'])):
    bench.run_benchmark(['semi_supervised_digits'], seeds=[0], out_dir=str(tmp_path),
                        overrides=pairs, keep_workdirs=True, log=lambda line: None)
  plain, changed = workdirs
  assert plain != changed
  assert os.path.dirname(plain).startswith(str(tmp_path / 'workdirs'))
  assert os.path.dirname(changed).startswith(str(tmp_path / 'workdirs'))


def test_bad_names_and_overrides_fail_before_any_training(tmp_path, monkeypatch):
  monkeypatch.setattr(bench, 'run_trial', lambda *a, **k: pytest.fail('trained'))
  with pytest.raises(errors.ConfigError, match="loss has no field 'd_adv'"):
    bench.run_benchmark(['semi_supervised_digits'], seeds=[0], out_dir=str(tmp_path),
                        overrides=overrides.parse(['loss.d_adv=2']), log=lambda line: None)
  with pytest.raises(errors.ConfigError):
    bench.run_benchmark(['no_such_config'], seeds=[0], out_dir=str(tmp_path),
                        log=lambda line: None)


def test_an_override_that_leaves_no_test_split_is_refused_before_any_training(tmp_path,
                                                                              monkeypatch):
  # It trained the trial, then failed scoring it, leaving an empty --out folder.
  monkeypatch.setattr(bench, 'run_trial', lambda *a, **k: pytest.fail('trained'))
  out = tmp_path / 'out'
  with pytest.raises(errors.ConfigError, match='an image folder has no held-out split'):
    bench.run_benchmark(['semi_supervised_digits'], seeds=[0], out_dir=str(out),
                        overrides=overrides.parse(['data.source=image_folder',
                                                   f'data.path={tmp_path}']),
                        log=lambda line: None)
  assert not out.exists()


def test_the_same_command_again_continues_its_report(tmp_path, monkeypatch):
  trained = []

  def fake_trial(config, *, seed, workdir):
    if (config.name, seed) == ('semi_supervised_digits', 1) and len(trained) == 2:
      trained.append('stopped')
      raise KeyboardInterrupt
    trained.append((config.name, seed))
    return _trial(seed, 0.9 + seed / 100)

  monkeypatch.setattr(bench, 'run_trial', fake_trial)
  run = lambda: bench.run_benchmark(
      ['semi_supervised_digits', 'semi_supervised_digits:supervised_only'], seeds=[0, 1],
      out_dir=str(tmp_path), num_steps=5, log=lambda line: None)
  with pytest.raises(errors.Stopped):
    run()
  result = run()
  assert trained == [('semi_supervised_digits', 0), ('semi_supervised_digits_supervised_only', 0),
                     'stopped', ('semi_supervised_digits', 1),
                     ('semi_supervised_digits_supervised_only', 1)]
  assert [[t['seed'] for t in row['trials']] for row in result['rows']] == [[0, 1], [0, 1]]
