"""Helpers shared by the gan_jax.data tests (tests/test_data_*.py)."""

import json
import os

import numpy as np
from PIL import Image

from gan_jax import data
from gan_jax import defaults


def config(**fields):
  """config.data with the defaults, overridden by `fields`."""
  data_config = defaults.get_config().data
  for key, value in fields.items():
    data_config[key] = value
  return data_config


def take(iterator, n):
  """The next n batches (dicts) of an iterator."""
  return [next(iterator) for _ in range(n)]


def first_batches(data_config, n, **kwargs):
  """The first n batches of a fresh iterator (kwargs: create_train_iterator's)."""
  with data.create_train_iterator(data_config, **kwargs) as iterator:
    return take(iterator, n)


def assert_images(images, shape):
  """images: float32 of `shape`, finite, in [-1, 1]."""
  assert images.shape == shape
  assert images.dtype == np.float32
  assert np.all(np.isfinite(images))
  assert images.min() >= -1.0 and images.max() <= 1.0


def assert_same_batches(want, got):
  assert len(want) == len(got)
  for expected, actual in zip(want, got):
    assert expected.keys() == actual.keys()
    for key in expected:
      np.testing.assert_array_equal(expected[key], actual[key])


def check_resume(data_config, *, data_shape, batch_size, seed=0, skip=3,
                 more=3, restore_config=None, start_first=True, **kwargs):
  """Draws `skip` batches, saves the state (through JSON), and checks that a
  fresh iterator restored from it gives the next `more` batches; returns it."""
  common = dict(data_shape=data_shape, batch_size=batch_size, seed=seed,
                **kwargs)
  with data.create_train_iterator(data_config, **common) as original:
    take(original, skip)
    state = json.loads(json.dumps(original.get_state()))
    expected = take(original, more)
  with data.create_train_iterator(restore_config or data_config,
                                  **common) as restored:
    if start_first:
      next(restored)  # a started iterator must also jump back correctly
    restored.set_state(state)
    assert_same_batches(expected, take(restored, more))
  return state


def write_folder(root, values, *, size=(20, 16), ext='.png', subdir=''):
  """Writes one constant grey image per value (the value identifies the file)."""
  folder = os.path.join(root, subdir)
  os.makedirs(folder, exist_ok=True)
  for i, value in enumerate(values):
    pixels = np.full((size[0], size[1], 3), value, np.uint8)
    Image.fromarray(pixels).save(os.path.join(folder, f'img{i:03d}{ext}'))


def levels(images):
  """The grey level 0..255 of each constant image of f32[N, ...] in [-1, 1]."""
  axes = tuple(range(1, images.ndim))
  return np.round((images.mean(axis=axes) + 1) * 127.5).astype(int)
