"""Tests of the toy benchmark's statistics and table (`gan_jax.bench.toy_table`)."""

import math

import pytest

from gan_jax.bench import toy_table


def test_mean_and_se_matches_hand_computation():
  # values 1, 2, 3, 4: mean 2.5; deviations -1.5, -0.5, 0.5, 1.5 -> sum of squares 5;
  # sample variance 5 / 3; s.e. = sqrt(5 / 3) / sqrt(4) = 0.645497...
  mean, se = toy_table.mean_and_se([1, 2, 3, 4])
  assert mean == pytest.approx(2.5)
  assert se == pytest.approx(0.6454972243679028)
  assert toy_table.mean_and_se([8, 8, 8]) == (8.0, 0.0)  # identical trials: no spread
  assert toy_table.mean_and_se([0.25]) == (0.25, None)  # one trial: spread unknown, not 0
  with pytest.raises(ValueError):
    toy_table.mean_and_se([])


def _trial(seed, modes, hq, kl, seconds):
  return dict(seed=seed, modes_captured=modes, high_quality=hq, reverse_kl=kl,
              train_seconds=seconds)


TRIALS = [_trial(0, 8, 0.99, 0.002, 60.0), _trial(1, 7, 0.97, 0.010, 62.0),
          _trial(2, 8, 0.98, 0.006, 64.0)]


def test_summary_is_mean_se_and_worst_trial():
  s = toy_table.summarize(TRIALS, num_modes=8)
  # modes 8, 7, 8: mean 23/3; deviations 1/3, -2/3, 1/3 -> variance (6/9) / 2 = 1/3
  assert s['modes_captured']['mean'] == pytest.approx(23 / 3)
  assert s['modes_captured']['se'] == pytest.approx(math.sqrt(1 / 3) / math.sqrt(3))
  # high quality 0.99, 0.97, 0.98: mean 0.98, sample std 0.01, s.e. 0.01 / sqrt(3)
  assert s['high_quality']['se'] == pytest.approx(0.01 / math.sqrt(3))
  assert s['train_seconds']['se'] == pytest.approx(2.0 / math.sqrt(3))
  worst = {k: s[k]['worst'] for k in toy_table.METRICS}
  assert worst == {'modes_captured': 7, 'high_quality': 0.97, 'reverse_kl': 0.010,
                   'train_seconds': 64.0}


def test_a_trial_that_loses_a_mode_is_reported_as_such():
  s = toy_table.summarize(TRIALS, num_modes=8)
  assert s['all_modes'] == 2  # seed 1 captured 7 of 8
  row = dict(config='toy_ring', mixture='ring', num_modes=8, trials=TRIALS, summary=s)
  line = next(l for l in toy_table.format_table([row]).splitlines() if '`toy_ring`' in l)
  cells = [c.strip() for c in line.strip('|').split('|')]
  # 23/3 = 7.67 -> '7.7', s.e. 0.333 -> '0.3', worst 7; 98.0% +- 0.577 (97.0);
  # KL 0.006 +- 0.002 (0.010); time 62.0 +- 1.2 (64.0)
  assert cells == ['ring', '`toy_ring` (ours)', '3', '7.7 ± 0.3 (7.0) / 8', '2 / 3',
                   '98.0 ± 0.6 (97.0)', '0.006 ± 0.002 (0.010)', '62.0 ± 1.2 (64.0)']


def test_table_has_the_published_rows():
  lines = toy_table.format_table([]).splitlines()
  assert lines[0].startswith('| mixture | config |')
  ring_gan = next(l for l in lines if l.startswith('| ring | GAN (PacGAN Table 1)'))
  assert '6.3' in ring_gan and '98.2' in ring_gan and '0.45' in ring_gan
  assert any('PacGAN2' in l and '7.9' in l and '95.6' in l and '0.07' in l for l in lines)
  grid_gan = next(l for l in lines if l.startswith('| grid | GAN (PacGAN Table 1)'))
  assert '17.3' in grid_gan and '94.8' in grid_gan and '0.70' in grid_gan
  assert any('PacGAN4' in l and '24.8' in l and '93.6' in l and '0.04' in l for l in lines)
  assert any(l.startswith('| ring | VEEGAN') and '52.9' in l for l in lines)
  assert any(l.startswith('| grid | VEEGAN') and '40.0' in l for l in lines)
  assert len(toy_table.REFERENCE_ROWS) == 6
