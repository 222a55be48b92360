"""Tests for the toy source: 2-D mixture batches (under 'images'), resumption, errors."""

import numpy as np
import pytest

import data_helpers as h
from gan_jax import data
from gan_jax import errors


def test_toy_points_lie_near_the_modes():
  batch, = h.first_batches(h.config(source='toy', toy='grid'), 1,
                           data_shape=(2,), batch_size=256, seed=0)
  assert list(batch) == ['images']
  points = batch['images']
  assert points.shape == (256, 2) and points.dtype == np.float32
  centers, std = data.mixture('grid')
  distance = np.min(np.linalg.norm(points[:, None] - centers[None], axis=-1), 1)
  assert distance.max() < 10 * std


def test_toy_mixtures_have_8_and_25_modes():
  ring, ring_std = data.mixture('ring')
  grid, grid_std = data.mixture('grid')
  np.testing.assert_allclose(np.linalg.norm(ring, axis=1), 1.0)
  assert len(ring) == 8 and ring_std == 0.01
  assert len(grid) == 25 and grid_std == 0.05
  assert set(grid.ravel()) == {-4.0, -2.0, 0.0, 2.0, 4.0}


def test_toy_resume():
  h.check_resume(h.config(source='toy'), data_shape=(2,), batch_size=4)


def test_toy_shards_draw_different_points():
  config = h.config(source='toy')
  batches = [
      h.first_batches(config, 1, data_shape=(2,), batch_size=8, seed=0,
                      shard_index=index, shard_count=2)[0]['images']
      for index in range(2)
  ]
  assert not np.array_equal(*batches)


def test_toy_eval_points_are_fixed():
  kwargs = dict(data_shape=(2,), split='test', num_examples=50)
  points = data.load_eval_data(h.config(source='toy'), **kwargs)
  assert points.shape == (50, 2)
  np.testing.assert_array_equal(
      points, data.load_eval_data(h.config(source='toy'), **kwargs))


def test_toy_needs_2d_points():
  with pytest.raises(errors.ConfigError, match=r'\(2,\)'):
    data.create_train_iterator(h.config(source='toy'), data_shape=(8, 8, 1),
                               batch_size=8, seed=0)


def test_toy_unknown_mixture_lists_the_known_ones():
  with pytest.raises(errors.ConfigError, match="'ring', 'grid'"):
    data.create_train_iterator(h.config(source='toy', toy='spiral'),
                               data_shape=(2,), batch_size=8, seed=0)


def test_toy_has_no_labels():
  config = h.config(source='toy')
  with pytest.raises(errors.ConfigError, match='no class labels'):
    data.create_train_iterator(config, data_shape=(2,), batch_size=8, seed=0,
                               labels=True)
  with pytest.raises(errors.ConfigError, match='no class labels'):
    data.load_eval_data(config, data_shape=(2,), split='test',
                        num_examples=8, labels=True)
  with pytest.raises(errors.ConfigError, match='no class labels'):
    data.num_classes(config)


def test_toy_has_no_fixed_examples_to_subset():
  with pytest.raises(errors.ConfigError, match='data.train_examples'):
    data.create_train_iterator(h.config(source='toy', train_examples=10),
                               data_shape=(2,), batch_size=8, seed=0)
