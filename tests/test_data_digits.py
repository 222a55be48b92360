"""Tests for the digits source: the fixed split, batches, labels, resumption, eval sets."""

import numpy as np
import pytest

import data_helpers as h
from gan_jax import data
from gan_jax import errors


def _digit_ids(images):
  """Rows of digits_split('all') that f32[N, 8, 8, 1] training images are.

  At 8x8 nothing is resized, so each image is exactly raw / 8 - 1.
  """
  all_x, _ = data.digits_split('all')
  rows = {row.tobytes(): i for i, row in enumerate(all_x.reshape(len(all_x), -1))}
  raw = ((images[..., 0] + 1) * 8).astype(np.float32)
  return np.array([rows[r.tobytes()] for r in raw.reshape(len(raw), -1)])


def test_digits_split_sizes_and_values():
  train_x, train_y = data.digits_split('train')
  test_x, test_y = data.digits_split('test')
  assert train_x.shape == (1347, 8, 8) and test_x.shape == (450, 8, 8)
  assert train_x.dtype == np.float32 and train_y.dtype == np.int64
  assert train_x.min() == 0 and train_x.max() == 16
  assert set(np.unique(test_y)) == set(range(10))
  assert len(data.digits_split('all')[0]) == 1797


def test_digits_train_and_test_are_disjoint():
  train_x, _ = data.digits_split('train')
  test_x, _ = data.digits_split('test')
  train_ids = set(_digit_ids(train_x[..., None] / 8 - 1))
  test_ids = set(_digit_ids(test_x[..., None] / 8 - 1))
  assert len(train_ids) + len(test_ids) == 1797 and not train_ids & test_ids


def test_digits_unknown_split_is_a_config_error():
  with pytest.raises(errors.ConfigError,
                     match=r"config.data.split='validation'.*'train', 'test', 'all'"):
    data.digits_split('validation')


@pytest.mark.parametrize('shape', [(32, 32, 1), (28, 28, 3), (8, 8, 1)])
def test_digits_batches(shape):
  batch, = h.first_batches(h.config(), 1, data_shape=shape, batch_size=16,
                           seed=0)
  assert list(batch) == ['images']  # no labels unless asked for
  h.assert_images(batch['images'], (16,) + shape)
  assert batch['images'].min() == -1.0  # digit backgrounds are 0 -> -1


def test_digits_same_seed_same_batches():
  kwargs = dict(data_shape=(16, 16, 1), batch_size=8, seed=0)
  h.assert_same_batches(h.first_batches(h.config(), 2, **kwargs),
                        h.first_batches(h.config(), 2, **kwargs))


def test_digits_other_seed_other_batches():
  first = h.first_batches(h.config(), 1, data_shape=(16, 16, 1), batch_size=8,
                          seed=0)[0]['images']
  other = h.first_batches(h.config(), 1, data_shape=(16, 16, 1), batch_size=8,
                          seed=1)[0]['images']
  assert not np.array_equal(first, other)


def test_digits_epoch_shows_every_training_digit_once():
  batch, = h.first_batches(h.config(), 1, data_shape=(8, 8, 1),
                           batch_size=1347, seed=0)
  train_ids = _digit_ids(data.digits_split('train')[0][..., None] / 8 - 1)
  np.testing.assert_array_equal(np.sort(_digit_ids(batch['images'])),
                                np.sort(train_ids))


def test_digits_resume_across_epochs():
  # 1347 training digits, 100 per batch: batches 13..15 cross the epoch end.
  state = h.check_resume(h.config(), data_shape=(8, 8, 1), batch_size=100,
                         skip=13, more=3, labels=True)
  assert state['next_batch'] == 13 and state['source'] == 'digits:train'


def test_digits_labels_are_the_digits():
  batch, = h.first_batches(h.config(), 1, data_shape=(8, 8, 1), batch_size=64,
                           seed=0, labels=True)
  _, all_y = data.digits_split('all')
  assert batch['labels'].dtype == np.int32 and batch['labels'].shape == (64,)
  np.testing.assert_array_equal(batch['labels'],
                                all_y[_digit_ids(batch['images'])])


def test_digits_labels_leave_the_images_unchanged():
  kwargs = dict(data_shape=(16, 16, 3), batch_size=8, seed=0)
  plain, = h.first_batches(h.config(), 1, **kwargs)
  labelled, = h.first_batches(h.config(), 1, labels=True, **kwargs)
  np.testing.assert_array_equal(plain['images'], labelled['images'])


def test_digits_eval_data_is_fixed():
  kwargs = dict(data_shape=(16, 16, 3), split='test', num_examples=100)
  first = data.load_eval_data(h.config(), **kwargs)
  h.assert_images(first, (100, 16, 16, 3))
  np.testing.assert_array_equal(first, data.load_eval_data(h.config(),
                                                           **kwargs))


def test_digits_eval_data_stops_at_the_split_size():
  every = data.load_eval_data(h.config(), data_shape=(8, 8, 1), split='test',
                              num_examples=10_000)
  assert every.shape == (450, 8, 8, 1)


def test_digits_eval_labels_are_the_digits():
  images, labels = data.load_eval_data(h.config(), data_shape=(8, 8, 1),
                                       split='test', num_examples=50,
                                       labels=True)
  _, all_y = data.digits_split('all')
  assert labels.dtype == np.int32
  np.testing.assert_array_equal(labels, all_y[_digit_ids(images)])


def test_digits_class_names():
  assert data.class_names(h.config()) == [str(d) for d in range(10)]
  assert data.num_classes(h.config()) == 10
