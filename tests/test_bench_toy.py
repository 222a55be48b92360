"""Tests of the toy mode-collapse benchmark harness (`gan_jax.bench.toy`)."""

import json
import os
import signal

import numpy as np
from PIL import Image
import pytest

from configs import toy_grid
from configs import toy_ring
from gan_jax import errors
from gan_jax import preemption
from gan_jax.bench import overrides
from gan_jax.bench import toy as bench


def test_load_config_rejects_unknown_and_non_toy_configs():
  with pytest.raises(errors.ConfigError, match="unknown config 'no_such_config'"):
    bench.load_config('no_such_config')
  with pytest.raises(ValueError, match="data.source='toy'"):
    bench.load_config('dcgan_digits')


@pytest.mark.parametrize('module', [toy_ring, toy_grid])
def test_baseline_is_a_plain_gan(module):
  best, base = module.get_config(), module.get_config('baseline')
  assert base.loss.type == 'non_saturating'
  assert base.model.pack == 1 and not base.model.minibatch_std
  assert not base.model.spectral_norm
  assert base.loss.gp_weight == 0 and base.loss.r1_weight == 0
  assert base.train.ema_decay == 0
  assert base.loss.get('g_top_k', 1.0) == 1.0
  # the same network as the best config and at least its training budget
  for field in ('hidden', 'num_layers', 'z_dim'):
    assert base.model[field] == best.model[field]
  assert base.train.num_steps >= best.train.num_steps
  assert base.train.batch_size == best.train.batch_size


def test_harness_writes_json_table_and_png(tmp_path):
  result = bench.run_benchmark(['toy_ring:smoke'], trials=1, out_dir=str(tmp_path),
                               first_seed=3, log=lambda line: None)
  with open(tmp_path / 'toy_benchmark.json', encoding='utf-8') as f:
    saved = json.load(f)
  assert saved == json.loads(json.dumps(result))
  assert set(saved) >= {'benchmark', 'protocol', 'command', 'machine', 'rows',
                        'reference', 'table'}
  assert saved['protocol']['num_samples'] == 2500
  assert saved['protocol']['high_quality_radius_std'] == 3.0
  assert saved['protocol']['mixtures']['ring'] == {'num_modes': 8, 'std': 0.01}
  assert saved['protocol']['mixtures']['grid'] == {'num_modes': 25, 'std': 0.05}
  assert saved['machine']['cpu_count'] >= 1
  (row,) = saved['rows']
  assert row['config'] == 'toy_ring:smoke' and row['mixture'] == 'ring'
  assert row['num_modes'] == 8
  (trial,) = row['trials']
  assert trial['seed'] == 3
  assert trial['step'] == row['num_steps']
  assert 0 <= trial['modes_captured'] <= 8
  assert 0.0 <= trial['high_quality'] <= 1.0
  assert 0.0 <= trial['reverse_kl'] <= np.log(8) + 1e-9
  assert trial['train_seconds'] > 0
  for key in ('modes_captured', 'high_quality', 'reverse_kl', 'train_seconds'):
    assert row['summary'][key] == {'mean': pytest.approx(trial[key]), 'se': None,
                                   'worst': pytest.approx(trial[key])}
  image = Image.open(tmp_path / trial['png'])
  assert trial['png'] == 'toy_ring-smoke_seed3.png'
  assert image.size == (400, 400) and image.mode == 'RGB'
  table = (tmp_path / 'toy_benchmark.md').read_text()
  assert table.startswith(saved['table'])  # then the line naming the machine
  assert table[len(saved['table']):].strip().startswith(f"Machine: {saved['machine']['cpu']}, ")
  assert '`toy_ring:smoke` (ours) | 1 |' in table
  assert 'PacGAN2 (PacGAN Table 1)' in table
  # the trial's workdir was temporary
  assert sorted(os.listdir(tmp_path)) == ['toy_benchmark.json', 'toy_benchmark.md',
                                          'toy_ring-smoke_seed3.png']


def test_interrupted_trial_stops_the_benchmark(tmp_path, monkeypatch):
  # A signal makes train_and_evaluate save and raise Interrupted: the harness must
  # not score that half-trained generator or go on to the next seed.
  def interrupted(config, workdir):
    raise preemption.Interrupted(signal.SIGTERM, 2)

  monkeypatch.setattr(bench.trials_lib.train, 'train_and_evaluate', interrupted)
  with pytest.raises(errors.Stopped, match='SIGTERM during the trial toy_ring-smoke, seed 0'):
    bench.run_benchmark(['toy_ring:smoke'], trials=2, out_dir=str(tmp_path),
                        log=lambda line: None)
  assert not (tmp_path / 'toy_benchmark.json').exists()


def test_overrides_reach_every_config_and_label_the_rows(tmp_path, monkeypatch):
  seen = []

  def fake_trial(config, *, seed, workdir):
    seen.append((config.name, config.optim.g.learning_rate, config.optim.decay_start))
    return ({'seed': seed, 'modes_captured': 8, 'high_quality': 0.9, 'reverse_kl': 0.01,
             'train_seconds': 1.0}, np.zeros((10, 2), np.float32))

  monkeypatch.setattr(bench, 'run_trial', fake_trial)
  pairs = overrides.parse(['optim.g.learning_rate=0.006', 'optim.decay_start=0.5'])
  result = bench.run_benchmark(['toy_ring', 'toy_ring:baseline'], trials=1,
                               out_dir=str(tmp_path), overrides=pairs, log=lambda line: None)
  assert seen == [('toy_ring', 0.006, 0.5), ('toy_ring_baseline', 0.006, 0.5)]
  assert [row['overrides'] for row in result['rows']] == [
      'optim.g.learning_rate=0.006 optim.decay_start=0.5'] * 2
  assert ('| ring | `toy_ring` with `optim.g.learning_rate=0.006 optim.decay_start=0.5` '
          '(ours) | 1 ') in result['table']
  with pytest.raises(errors.ConfigError, match="optim has no field 'lr'"):
    bench.run_benchmark(['toy_ring'], trials=1, out_dir=str(tmp_path / 'x'),
                        overrides=overrides.parse(['optim.lr=1']), log=lambda line: None)


def test_an_override_off_the_toy_data_is_refused_before_any_training(tmp_path, monkeypatch):
  monkeypatch.setattr(bench, 'run_trial', lambda *a, **k: pytest.fail('trained'))
  with pytest.raises(errors.ConfigError, match="the toy benchmark needs data.source='toy'"):
    bench.run_benchmark(['toy_ring'], out_dir=str(tmp_path / 'out'),
                        overrides=overrides.parse(['data.source=digits']),
                        log=lambda line: None)
  assert not (tmp_path / 'out').exists()


def test_the_same_command_again_continues_its_report(tmp_path, monkeypatch):
  # A rerun after a stop trained every trial again, and its report dropped the trials
  # the stopped run had recorded until it caught up (seeds lost at a second stop).
  trained = []

  def fake_trial(config, *, seed, workdir):
    if seed == 2 and not trained.count(2):
      trained.append(2)
      raise KeyboardInterrupt  # Ctrl-C during the third trial
    trained.append(seed)
    return ({'seed': seed, 'modes_captured': 8 - seed, 'high_quality': 0.9,
             'reverse_kl': 0.01, 'train_seconds': 1.0}, np.zeros((10, 2), np.float32))

  monkeypatch.setattr(bench, 'run_trial', fake_trial)
  run = lambda: bench.run_benchmark(['toy_ring:smoke'], trials=3, out_dir=str(tmp_path),
                                    command='python -m gan_jax.bench.toy --trials=3',
                                    log=lambda line: None)
  with pytest.raises(errors.Stopped, match='the same command again keeps them'):
    run()
  assert trained == [0, 1, 2]
  result = run()
  assert trained == [0, 1, 2, 2]  # only the unfinished trial trained again
  (row,) = result['rows']
  assert [t['modes_captured'] for t in row['trials']] == [8, 7, 6]
  assert row['summary']['modes_captured']['worst'] == 6
  assert json.loads((tmp_path / 'toy_benchmark.json').read_text()) == json.loads(
      json.dumps(result))
  # A trial whose plot is gone is trained again.
  os.remove(tmp_path / row['trials'][0]['png'])
  run()
  assert trained == [0, 1, 2, 2, 0]
