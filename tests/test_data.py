"""Tests for gan_jax.data: every source's shapes and ranges, determinism, exact
resumption from get_state/set_state, disjoint shards and actionable errors.

No test touches the network: TFDS is mocked (`tfds.testing.mock_data`) or
prepared locally from a tiny array_record builder.
"""

import json
import logging
import os
import time

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from configs import default
from gan_jax import data
from gan_jax.data import images as images_lib


def _config(**fields):
  config = default.get_config().data
  for key, value in fields.items():
    config[key] = value
  return config


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def _assert_images(batch, shape):
  assert batch.shape == shape
  assert batch.dtype == np.float32
  assert np.all(np.isfinite(batch))
  assert batch.min() >= -1.0 and batch.max() <= 1.0


def _check_resume(config, *, data_shape, batch_size, seed=0, skip=3, more=3,
                  restore_config=None, start_first=True, **shard):
  """Draws `skip` batches, saves state (JSON), checks a fresh iterator resumes."""
  with data.create_train_iterator(config, data_shape=data_shape,
                                  batch_size=batch_size, seed=seed,
                                  **shard) as original:
    _take(original, skip)
    state = json.loads(json.dumps(original.get_state()))
    expected = _take(original, more)
  with data.create_train_iterator(restore_config or config,
                                  data_shape=data_shape,
                                  batch_size=batch_size, seed=seed,
                                  **shard) as restored:
    if start_first:
      next(restored)  # a started iterator must also jump back correctly
    restored.set_state(state)
    for want, got in zip(expected, _take(restored, more)):
      np.testing.assert_array_equal(want, got)
  return state


def _write_folder(root, values, *, size=(20, 16), ext='.png', subdir=''):
  """Writes one constant grey image per value (value identifies the file)."""
  folder = os.path.join(root, subdir)
  os.makedirs(folder, exist_ok=True)
  for i, value in enumerate(values):
    pixels = np.full((size[0], size[1], 3), value, np.uint8)
    Image.fromarray(pixels).save(os.path.join(folder, f'img{i:03d}{ext}'))


# ---- images ------------------------------------------------------------------


def test_resize_bilinear_matches_jax_antialiased_linear():
  import jax  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  images = rng.uniform(0, 16, (3, 8, 8)).astype(np.float32)
  for size in [(32, 32), (28, 20), (5, 3)]:
    ours = images_lib.resize_bilinear(images, size)
    ref = jax.image.resize(images, (3,) + size, 'linear', antialias=True)
    np.testing.assert_allclose(ours, np.asarray(ref), atol=1e-4)


def test_crop_boxes():
  # The DCGAN CelebA crop of a 178x218 (W x H) aligned image.
  assert images_lib.crop_box((178, 218), (64, 64), 'celeba') == (35, 55, 143,
                                                                 163)
  assert images_lib.crop_box((178, 218), (64, 64), 'center') == (0, 20, 178,
                                                                 198)
  assert images_lib.crop_box((40, 20), (10, 10), 'center') == (10, 0, 30, 20)
  assert images_lib.crop_box((40, 20), (10, 10), 'none') == (0, 0, 40, 20)
  with pytest.raises(ValueError, match='celeba'):
    images_lib.crop_box((40, 20), (10, 10), 'middle')


def test_fit_image_converts_channels():
  rgb = np.zeros((10, 12, 3), np.uint8)
  rgb[..., 0] = 255  # pure red -> luma 0.299 * 255
  grey = images_lib.fit_image(rgb, size=(4, 4), channels=1, crop='center')
  assert grey.shape == (4, 4, 1) and abs(int(grey[0, 0, 0]) - 76) <= 1
  back = images_lib.fit_image(np.full((9, 9, 1), 200, np.uint8), size=(3, 3),
                              channels=3, crop='none')
  assert back.shape == (3, 3, 3) and np.all(back == 200)
  np.testing.assert_array_equal(
      images_lib.to_float(np.array([0, 255], np.uint8)), [-1.0, 1.0])


# ---- digits -------------------------------------------------------------------


def test_digits_split_is_fixed_and_disjoint():
  train_x, train_y = data.digits_split('train')
  test_x, test_y = data.digits_split('test')
  assert train_x.shape == (1347, 8, 8) and test_x.shape == (450, 8, 8)
  assert train_x.dtype == np.float32 and train_y.dtype == np.int64
  assert train_x.min() == 0 and train_x.max() == 16
  assert set(np.unique(test_y)) == set(range(10))
  all_x, _ = data.digits_split('all')
  assert len(all_x) == 1797
  # The two splits partition the images (compared as rows of the full set).
  rows = {row.tobytes(): i for i, row in enumerate(all_x.reshape(1797, -1))}
  train_ids = {rows[r.tobytes()] for r in train_x.reshape(len(train_x), -1)}
  test_ids = {rows[r.tobytes()] for r in test_x.reshape(len(test_x), -1)}
  assert not train_ids & test_ids
  with pytest.raises(ValueError, match="'train', 'test', 'all'"):
    data.digits_split('validation')


@pytest.mark.parametrize('shape', [(32, 32, 1), (28, 28, 3), (8, 8, 1)])
def test_digits_batches(shape):
  with data.create_train_iterator(_config(), data_shape=shape, batch_size=16,
                                  seed=0) as iterator:
    batch = next(iterator)
  _assert_images(batch, (16,) + shape)
  assert batch.min() == -1.0  # digit backgrounds are 0 -> -1


def test_digits_deterministic_and_seeded():
  def first(seed):
    with data.create_train_iterator(_config(), data_shape=(16, 16, 1),
                                    batch_size=8, seed=seed) as iterator:
      return _take(iterator, 2)
  np.testing.assert_array_equal(first(0), first(0))
  assert not np.array_equal(first(0), first(1))


def test_digits_resume_across_epochs():
  # 1347 training digits, 100 per batch: batches 13..15 cross the epoch end.
  state = _check_resume(_config(), data_shape=(8, 8, 1), batch_size=100,
                        skip=13, more=3)
  assert state['next_batch'] == 13 and state['source'] == 'digits:train'


def test_digits_eval_data():
  config = _config()
  first = data.load_eval_data(config, data_shape=(16, 16, 3), split='test',
                              num_examples=100)
  _assert_images(first, (100, 16, 16, 3))
  np.testing.assert_array_equal(
      first, data.load_eval_data(config, data_shape=(16, 16, 3),
                                 split='test', num_examples=100))
  every = data.load_eval_data(config, data_shape=(8, 8, 1), split='test',
                              num_examples=10_000)
  assert every.shape == (450, 8, 8, 1)


# ---- toy ------------------------------------------------------------------------


def test_toy_batches_near_modes_and_resume():
  config = _config(source='toy', toy='grid')
  with data.create_train_iterator(config, data_shape=(2,), batch_size=256,
                                  seed=0) as iterator:
    batch = next(iterator)
  assert batch.shape == (256, 2) and batch.dtype == np.float32
  centers, std = data.mixture('grid')
  distance = np.min(np.linalg.norm(batch[:, None] - centers[None], axis=-1), 1)
  assert distance.max() < 10 * std
  _check_resume(config, data_shape=(2,), batch_size=4)


def test_toy_shards_and_eval():
  config = _config(source='toy')
  batches = []
  for index in range(2):
    with data.create_train_iterator(config, data_shape=(2,), batch_size=8,
                                    seed=0, shard_index=index,
                                    shard_count=2) as iterator:
      batches.append(next(iterator))
  assert not np.array_equal(*batches)
  eval_points = data.load_eval_data(config, data_shape=(2,), split='test',
                                    num_examples=50)
  assert eval_points.shape == (50, 2)
  np.testing.assert_array_equal(
      eval_points, data.load_eval_data(config, data_shape=(2,), split='test',
                                       num_examples=50))
  with pytest.raises(ValueError, match=r'\(2,\)'):
    data.create_train_iterator(config, data_shape=(8, 8, 1), batch_size=8,
                               seed=0)
  with pytest.raises(ValueError, match="'ring', 'grid'"):
    data.create_train_iterator(_config(source='toy', toy='spiral'),
                               data_shape=(2,), batch_size=8, seed=0)


# ---- image folder ----------------------------------------------------------------


@pytest.mark.parametrize('cache', ['memory', 'none'])
def test_image_folder_shapes_epochs_and_resume(tmp_path, cache):
  values = [10 * i for i in range(8)]
  _write_folder(str(tmp_path), values[:4], ext='.png', subdir='a')
  _write_folder(str(tmp_path), values[4:], ext='.jpg', subdir='b/c')
  config = _config(source='image_folder', path=str(tmp_path), cache=cache)
  with data.create_train_iterator(config, data_shape=(8, 8, 3), batch_size=4,
                                  seed=0) as iterator:
    batches = _take(iterator, 4)
  for batch in batches:
    _assert_images(batch, (4, 8, 8, 3))
  # Each epoch (two batches) shows every image once, in a new order.
  epoch_values = [np.round((np.concatenate(batches[i:i + 2]).mean(axis=(1, 2, 3))
                            + 1) * 127.5) for i in (0, 2)]
  for seen in epoch_values:
    np.testing.assert_allclose(np.sort(seen), values, atol=2)
  assert not np.array_equal(epoch_values[0], epoch_values[1])
  _check_resume(config, data_shape=(6, 6, 1), batch_size=3, skip=2)


def test_image_folder_cache_gives_the_same_stream(tmp_path):
  _write_folder(str(tmp_path), [10 * i for i in range(7)], ext='.png')
  streams = []
  for cache in ['memory', 'none']:
    config = _config(source='image_folder', path=str(tmp_path), cache=cache)
    with data.create_train_iterator(config, data_shape=(5, 5, 3),
                                    batch_size=3, seed=2) as iterator:
      streams.append(_take(iterator, 5))
  np.testing.assert_array_equal(streams[0], streams[1])
  with pytest.raises(ValueError, match="'auto', 'memory', 'none'"):
    data.create_train_iterator(_config(source='image_folder',
                                       path=str(tmp_path), cache='disk'),
                               data_shape=(5, 5, 3), batch_size=3, seed=0)


def test_image_folder_shards_are_disjoint(tmp_path):
  values = [20 * i for i in range(12)]
  _write_folder(str(tmp_path), values)
  seen = []
  for index in range(3):
    # The caching and the per-batch paths must shard alike.
    config = _config(source='image_folder', path=str(tmp_path),
                     cache=['memory', 'none'][index % 2])
    with data.create_train_iterator(config, data_shape=(4, 4, 1),
                                    batch_size=4, seed=0, shard_index=index,
                                    shard_count=3) as iterator:
      batch = next(iterator)  # one batch = this shard's whole epoch
    seen.append(set(np.round((batch.mean(axis=(1, 2, 3)) + 1) * 127.5)))
  assert all(len(s) == 4 for s in seen)
  assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
  assert set.union(*seen) == set(values)


@pytest.mark.parametrize('cache,examples', [('memory', 5), ('none', 6)])
def test_image_folder_skips_and_counts_unreadable(tmp_path, caplog, cache,
                                                  examples):
  _write_folder(str(tmp_path), [50, 100, 150, 200, 250])
  (tmp_path / 'broken.jpg').write_bytes(b'not a jpeg at all')
  (tmp_path / 'notes.txt').write_text('ignored: not an image extension')
  config = _config(source='image_folder', path=str(tmp_path), cache=cache)
  with caplog.at_level(logging.WARNING):
    with data.create_train_iterator(config, data_shape=(4, 4, 1),
                                    batch_size=6, seed=0) as iterator:
      batches = _take(iterator, 2)
      # Cached: the file is left out; per batch: it is replaced each epoch.
      assert iterator.get_state()['examples_per_shard'] == examples
  for batch in batches:
    _assert_images(batch, (6, 4, 4, 1))
  warnings = [r.getMessage() for r in caplog.records
              if 'unreadable' in r.getMessage()]
  assert warnings and 'skipped 1 unreadable' in warnings[0]
  assert 'broken.jpg' in warnings[0]
  eval_images = data.load_eval_data(config, data_shape=(4, 4, 1),
                                    split='train', num_examples=100)
  assert eval_images.shape == (5, 4, 4, 1)  # skipped, not replaced
  few = data.load_eval_data(config, data_shape=(4, 4, 1), split='train',
                            num_examples=3)
  np.testing.assert_array_equal(few, eval_images[:3])


def test_image_folder_missing_or_empty(tmp_path):
  config = _config(source='image_folder', path=str(tmp_path / 'nowhere'))
  with pytest.raises(FileNotFoundError, match='does not exist'):
    data.create_train_iterator(config, data_shape=(8, 8, 3), batch_size=2,
                               seed=0)
  (tmp_path / 'empty' / 'sub').mkdir(parents=True)
  config = _config(source='image_folder', path=str(tmp_path / 'empty'))
  with pytest.raises(FileNotFoundError, match='holds no'):
    data.create_train_iterator(config, data_shape=(8, 8, 3), batch_size=2,
                               seed=0)
  with pytest.raises(ValueError, match='config.data.path'):
    data.create_train_iterator(_config(source='image_folder'),
                               data_shape=(8, 8, 3), batch_size=2, seed=0)


# ---- tfds (mocked) ------------------------------------------------------------------


@pytest.mark.parametrize('name,shape,crop', [
    ('mnist', (32, 32, 1), 'center'),
    ('fashion_mnist', (28, 28, 3), 'center'),
    ('cifar10', (32, 32, 1), 'center'),
    ('svhn_cropped', (16, 16, 3), 'none'),
    ('celeb_a', (64, 64, 3), 'celeba'),
])
def test_tfds_mocked_datasets(name, shape, crop):
  config = _config(source='tfds', name=name, crop=crop)
  with tfds.testing.mock_data(num_examples=24):
    with data.create_train_iterator(config, data_shape=shape, batch_size=8,
                                    seed=0) as iterator:
      batch = next(iterator)
    eval_images = data.load_eval_data(config, data_shape=shape, split='test',
                                      num_examples=30)
  _assert_images(batch, (8,) + shape)
  _assert_images(eval_images, (24,) + shape)


def test_tfds_mocked_resume_and_shards():
  config = _config(source='tfds', name='mnist')
  with tfds.testing.mock_data(num_examples=20):
    _check_resume(config, data_shape=(28, 28, 1), batch_size=4, skip=4)
    _check_resume(config, data_shape=(28, 28, 1), batch_size=4, skip=2,
                  shard_index=1, shard_count=2)


def test_tfds_missing_dataset_is_fast_and_actionable(tmp_path):
  start = time.monotonic()
  config = _config(source='tfds', name='mnist', data_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError) as error:
    data.create_train_iterator(config, data_shape=(28, 28, 1), batch_size=4,
                               seed=0)
  message = str(error.value)
  assert "download_and_prepare(file_format='array_record')" in message
  assert 'tfds build mnist --file_format=array_record' in message
  assert str(tmp_path) in message
  config = _config(source='tfds', name='celeb_a', data_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError) as error:
    data.load_eval_data(config, data_shape=(64, 64, 3), split='test',
                        num_examples=4)
  assert ('--config.data.source=image_folder '
          '--config.data.path=/path/to/img_align_celeba') in str(error.value)
  assert time.monotonic() - start < 10


def test_unknown_names_list_known_ones():
  with pytest.raises(ValueError, match="'digits', 'tfds', 'image_folder'"):
    data.create_train_iterator(_config(source='lsun'), data_shape=(8, 8, 3),
                               batch_size=2, seed=0)
  with pytest.raises(ValueError, match="'mnist'.*fashion_mnist") as error:
    data.create_train_iterator(_config(source='tfds', name='mnistt'),
                               data_shape=(8, 8, 1), batch_size=2, seed=0)
  assert 'Close matches' in str(error.value)
  with pytest.raises(ValueError, match="'center', 'celeba', 'none'"):
    data.create_train_iterator(_config(crop='middle'), data_shape=(8, 8, 1),
                               batch_size=2, seed=0)
  with pytest.raises(ValueError, match='Not a gan_jax data-iterator state'):
    data.create_train_iterator(_config(), data_shape=(8, 8, 1), batch_size=2,
                               seed=0).set_state({'step': 3})


# ---- tfds (a real, tiny array_record dataset) ------------------------------------------


class TinyGanImages(tfds.core.GeneratorBasedBuilder):
  """Six 12x10 RGB images; `Tensor` features so preparing needs no TensorFlow."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(12, 10, 3), dtype=np.uint8)}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples(6),
            'test': self._generate_examples(2)}

  def _generate_examples(self, count):
    for i in range(count):
      yield i, {'image': np.full((12, 10, 3), 30 * i, np.uint8)}


@pytest.fixture(name='tiny_data_dir', scope='module')
def _tiny_data_dir(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  tfds.builder('tiny_gan_images', data_dir=data_dir).download_and_prepare(
      file_format='array_record')
  return data_dir


def test_tfds_array_record_dataset(tiny_data_dir):
  config = _config(source='tfds', name='tiny_gan_images',
                   data_dir=tiny_data_dir, crop='none')
  with data.create_train_iterator(config, data_shape=(6, 5, 3), batch_size=3,
                                  seed=0) as iterator:
    epoch = np.concatenate(_take(iterator, 2))
  _assert_images(epoch, (6, 6, 5, 3))
  levels = np.sort(np.round((epoch.mean(axis=(1, 2, 3)) + 1) * 127.5))
  np.testing.assert_allclose(levels, [0, 30, 60, 90, 120, 150])
  _check_resume(config, data_shape=(6, 5, 3), batch_size=4)


def test_tfds_tfrecord_only_dataset_says_how_to_convert(tiny_data_dir,
                                                         tmp_path):
  # A copy whose metadata says TFRecord, as if prepared by `tfds.load`.
  data_dir = tmp_path / 'tfrecord'
  version_dir = data_dir / 'tiny_gan_images' / '1.0.0'
  version_dir.mkdir(parents=True)
  source_dir = os.path.join(tiny_data_dir, 'tiny_gan_images', '1.0.0')
  for name in os.listdir(source_dir):
    if name.endswith('.json'):
      text = open(os.path.join(source_dir, name)).read()
      (version_dir / name).write_text(text.replace('array_record', 'tfrecord'))
  config = _config(source='tfds', name='tiny_gan_images',
                   data_dir=str(data_dir))
  with pytest.raises(FileNotFoundError) as error:
    data.create_train_iterator(config, data_shape=(8, 8, 3), batch_size=2,
                               seed=0)
  message = str(error.value)
  assert 'tfrecord' in message
  assert (f'tfds convert_format --dataset_version_dir={version_dir} '
          '--out_file_format=array_record') in message


# ---- worker processes ---------------------------------------------------------------------


def test_worker_process_resumes_an_in_process_state(tmp_path):
  """num_workers only changes speed: a state from an in-process iterator
  resumes exactly in a worker-process iterator (one worker start, ~5-10 s)."""
  _write_folder(str(tmp_path), [10 * i for i in range(10)])
  config = _config(source='image_folder', path=str(tmp_path), cache='none')
  _check_resume(config, data_shape=(8, 8, 1), batch_size=4,
                restore_config=_config(source='image_folder',
                                       path=str(tmp_path), cache='none',
                                       num_workers=1), start_first=False)


@pytest.mark.slow
def test_workers_give_the_same_stream_and_resume(tmp_path):
  """Two workers: decoding the cache, and per batch with a restart mid-run."""
  _write_folder(str(tmp_path), [10 * i for i in range(10)])
  for cache in ['memory', 'none']:
    config = _config(source='image_folder', path=str(tmp_path), cache=cache)
    with data.create_train_iterator(config, data_shape=(8, 8, 1),
                                    batch_size=4, seed=0) as iterator:
      expected = _take(iterator, 6)
    config.num_workers = 2
    with data.create_train_iterator(config, data_shape=(8, 8, 1),
                                    batch_size=4, seed=0) as iterator:
      got = _take(iterator, 3)
      iterator.set_state(iterator.get_state())  # restarts any workers
      got += _take(iterator, 3)
    for want, have in zip(expected, got):
      np.testing.assert_array_equal(want, have)
  eval_config = _config(source='image_folder', path=str(tmp_path),
                        num_workers=2)
  np.testing.assert_array_equal(
      data.load_eval_data(eval_config, data_shape=(8, 8, 3), split='train',
                          num_examples=7),
      data.load_eval_data(_config(source='image_folder', path=str(tmp_path)),
                          data_shape=(8, 8, 3), split='train', num_examples=7))
