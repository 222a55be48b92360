"""Tests of gan_jax.metrics.toy_modes: the PacGAN mode-collapse metrics on hand-built samples."""

import numpy as np
import pytest

from gan_jax.data import toy
from gan_jax.metrics import toy_modes


def test_toy_mode_metrics_perfect_collapsed_and_empty():
  centers, std = toy.mixture('grid')
  rng = np.random.default_rng(0)
  perfect = np.repeat(centers, 40, axis=0) + 0.5 * std * rng.standard_normal((25 * 40, 2))
  out = toy_modes.toy_mode_metrics(perfect, centers, std)
  assert out == {'modes_captured': 25, 'high_quality': 1.0, 'reverse_kl': pytest.approx(0.0)}
  collapsed = centers[3] + 0.5 * std * rng.standard_normal((500, 2))
  out = toy_modes.toy_mode_metrics(collapsed, centers, std)
  assert out['modes_captured'] == 1 and out['reverse_kl'] == pytest.approx(np.log(25))
  far = np.full((10, 2), 1.0)  # between modes: no high-quality sample
  out = toy_modes.toy_mode_metrics(far, centers, std)
  assert out == {'modes_captured': 0, 'high_quality': 0.0,
                 'reverse_kl': pytest.approx(np.log(25))}


def test_toy_reverse_kl_ignores_empty_modes_and_low_quality_samples():
  centers, std = toy.mixture('ring')  # 8 modes
  good = np.concatenate([np.repeat(centers[:4], 10, axis=0)])  # 4 modes, equal counts
  off = centers[5] + 10 * std  # nearest mode 5 but not high quality
  out = toy_modes.toy_mode_metrics(np.concatenate([good, off[None]]), centers, std)
  assert out['modes_captured'] == 4
  assert out['high_quality'] == pytest.approx(40 / 41)
  assert out['reverse_kl'] == pytest.approx(np.log(2))  # 0 log 0 = 0 for the empty modes


def test_toy_high_quality_radius_is_three_stds_of_euclidean_distance():
  # PacGAN counts a sample as high quality within 3 standard deviations of its
  # nearest mode, by Euclidean distance. The 3.1 std point lies along (0.6, 0.8):
  # each coordinate (1.86 and 2.48 stds) is inside 3 stds, only the distance is not.
  centers = np.array([[0.0, 0.0], [100.0, 0.0]])  # the second mode is far from both points
  std = 0.5
  inside = 2.9 * std * np.array([1.0, 1.0]) / np.sqrt(2.0)
  outside = 3.1 * std * np.array([0.6, 0.8])
  out = toy_modes.toy_mode_metrics(np.stack([inside, outside]), centers, std)
  assert out['high_quality'] == 0.5
  assert out['modes_captured'] == 1
