"""Tests of the toy mode-collapse benchmark (`gan_jax.bench.toy`): statistics, table, harness."""

import json
import math
import os

import numpy as np
from PIL import Image
import pytest

from configs import toy_grid
from configs import toy_ring
from gan_jax.bench import toy as bench


def test_mean_and_se_matches_hand_computation():
  # values 1, 2, 3, 4: mean 2.5; deviations -1.5, -0.5, 0.5, 1.5 -> sum of squares 5;
  # sample variance 5 / 3; s.e. = sqrt(5 / 3) / sqrt(4) = 0.645497...
  mean, se = bench.mean_and_se([1, 2, 3, 4])
  assert mean == pytest.approx(2.5)
  assert se == pytest.approx(math.sqrt(5 / 3) / 2)
  assert se == pytest.approx(0.6454972243679028)
  # identical trials: no spread
  assert bench.mean_and_se([8, 8, 8]) == (8.0, 0.0)
  # one trial: the spread is unknown, not zero
  assert bench.mean_and_se([0.25]) == (0.25, None)
  with pytest.raises(ValueError):
    bench.mean_and_se([])


def _trial(seed, modes, hq, kl, seconds):
  return dict(seed=seed, modes_captured=modes, high_quality=hq, reverse_kl=kl,
              train_seconds=seconds)


def test_table_rows_are_mean_and_se_of_the_trials():
  trials = [_trial(0, 8, 0.99, 0.002, 60.0), _trial(1, 7, 0.97, 0.010, 62.0),
            _trial(2, 8, 0.98, 0.006, 64.0)]
  row = dict(config='toy_ring', mixture='ring', num_modes=8, trials=trials,
             summary=bench.summarize(trials))
  s = row['summary']
  # modes 8, 7, 8: mean 23/3; deviations 1/3, -2/3, 1/3 -> variance (6/9) / 2 = 1/3
  assert s['modes_captured']['mean'] == pytest.approx(23 / 3)
  assert s['modes_captured']['se'] == pytest.approx(math.sqrt(1 / 3) / math.sqrt(3))
  # high quality 0.99, 0.97, 0.98: mean 0.98, sample std 0.01, s.e. 0.01 / sqrt(3)
  assert s['high_quality']['mean'] == pytest.approx(0.98)
  assert s['high_quality']['se'] == pytest.approx(0.01 / math.sqrt(3))
  assert s['reverse_kl']['mean'] == pytest.approx(0.006)
  assert s['reverse_kl']['se'] == pytest.approx(0.004 / math.sqrt(3))
  assert s['train_seconds']['mean'] == pytest.approx(62.0)
  assert s['train_seconds']['se'] == pytest.approx(2.0 / math.sqrt(3))

  table = bench.format_table([row])
  ours = next(line for line in table.splitlines() if '`toy_ring`' in line)
  cells = [c.strip() for c in ours.strip('|').split('|')]
  # 23/3 = 7.67 -> '7.7', s.e. 0.333 -> '0.3'; 98.0% +- 0.577; KL 0.006 +- 0.002
  assert cells == ['ring', '`toy_ring` (ours)', '3', '7.7 ± 0.3 / 8', '98.0 ± 0.6',
                   '0.006 ± 0.002', '62.0 ± 1.2']


def test_table_has_the_published_rows():
  table = bench.format_table([])
  lines = table.splitlines()
  assert lines[0].startswith('| mixture | config |')
  ring_gan = next(l for l in lines if l.startswith('| ring | GAN (PacGAN Table 1)'))
  assert '6.3' in ring_gan and '98.2' in ring_gan and '0.45' in ring_gan
  assert any('PacGAN2' in l and '7.9' in l and '95.6' in l and '0.07' in l for l in lines)
  grid_gan = next(l for l in lines if l.startswith('| grid | GAN (PacGAN Table 1)'))
  assert '17.3' in grid_gan and '94.8' in grid_gan and '0.70' in grid_gan
  assert any('PacGAN4' in l and '24.8' in l and '93.6' in l and '0.04' in l for l in lines)
  assert any(l.startswith('| ring | VEEGAN') and '52.9' in l for l in lines)
  assert any(l.startswith('| grid | VEEGAN') and '40.0' in l for l in lines)
  assert len(bench.REFERENCE_ROWS) == 6


def test_split_config_names_keeps_variant_arguments_together():
  assert bench.split_config_names('toy_ring,toy_ring:baseline,toy_grid') == [
      'toy_ring', 'toy_ring:baseline', 'toy_grid']
  assert bench.split_config_names('toy_ring:baseline,smoke,toy_grid:smoke') == [
      'toy_ring:baseline,smoke', 'toy_grid:smoke']


def test_load_config_rejects_unknown_and_non_toy_configs():
  with pytest.raises(ValueError, match='known in configs/'):
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
    assert row['summary'][key] == {'mean': pytest.approx(trial[key]), 'se': None}
  image = Image.open(tmp_path / trial['png'])
  assert trial['png'] == 'toy_ring-smoke_seed3.png'
  assert image.size == (400, 400) and image.mode == 'RGB'
  table = (tmp_path / 'toy_benchmark.md').read_text()
  assert table == saved['table']
  assert '`toy_ring:smoke` (ours) | 1 |' in table
  assert 'PacGAN2 (PacGAN Table 1)' in table
  # the trial's workdir was temporary
  assert sorted(os.listdir(tmp_path)) == ['toy_benchmark.json', 'toy_benchmark.md',
                                          'toy_ring-smoke_seed3.png']


def test_interrupted_trial_stops_the_benchmark(tmp_path, monkeypatch):
  # train_and_evaluate returns normally after SIGTERM (it saves and exits); the
  # harness must not score that half-trained generator or go on to the next seed.
  from gan_jax import train  # pylint: disable=g-import-not-at-top
  real_train = train.train_and_evaluate

  def interrupted_after_two_steps(config, workdir):
    config = config.copy_and_resolve_references()
    config.train.num_steps = 2
    return real_train(config, workdir)

  monkeypatch.setattr(train, 'train_and_evaluate', interrupted_after_two_steps)
  config = toy_ring.get_config('smoke')
  with pytest.raises(KeyboardInterrupt, match='stopped at step 2 of 4'):
    bench.run_trial(config, seed=0, workdir=str(tmp_path / 'run'))
