"""Tests for the tfds source, without network: `tfds.testing.mock_data`, and a
tiny dataset prepared locally as array_record (images, labels, errors)."""

import logging
import os
import re
import socket

import numpy as np
import pytest
import tensorflow_datasets as tfds

import data_helpers as h
from gan_jax import data
from gan_jax import errors

# ---- mocked TFDS ------------------------------------------------------------------


@pytest.mark.parametrize('name,shape,crop', [
    ('mnist', (32, 32, 1), 'center'),
    ('fashion_mnist', (28, 28, 3), 'center'),
    ('cifar10', (32, 32, 1), 'center'),
    ('svhn_cropped', (16, 16, 3), 'none'),
    ('celeb_a', (64, 64, 3), 'celeba'),
])
def test_mocked_datasets(name, shape, crop):
  config = h.config(source='tfds', name=name, crop=crop)
  with tfds.testing.mock_data(num_examples=24):
    batch, = h.first_batches(config, 1, data_shape=shape, batch_size=8, seed=0)
    eval_images = data.load_eval_data(config, data_shape=shape, split='test',
                                      num_examples=30)
  h.assert_images(batch['images'], (8,) + shape)
  h.assert_images(eval_images, (24,) + shape)


def test_mocked_resume():
  with tfds.testing.mock_data(num_examples=20):
    h.check_resume(h.config(source='tfds', name='mnist'),
                   data_shape=(28, 28, 1), batch_size=4, skip=4)


def test_mocked_resume_of_a_shard():
  with tfds.testing.mock_data(num_examples=20):
    h.check_resume(h.config(source='tfds', name='mnist'),
                   data_shape=(28, 28, 1), batch_size=4, skip=2,
                   shard_index=1, shard_count=2, labels=True)


def test_mocked_labels_are_in_range():
  with tfds.testing.mock_data(num_examples=20):
    batch, = h.first_batches(h.config(source='tfds', name='cifar10'), 1,
                             data_shape=(8, 8, 3), batch_size=20, seed=0,
                             labels=True)
  assert batch['labels'].dtype == np.int32 and batch['labels'].shape == (20,)
  assert batch['labels'].min() >= 0 and batch['labels'].max() < 10


def test_dataset_without_a_label_feature_cannot_give_labels():
  config = h.config(source='tfds', name='celeb_a')
  with tfds.testing.mock_data(num_examples=4):
    with pytest.raises(errors.ConfigError, match="no class-label feature 'label'"):
      data.create_train_iterator(config, data_shape=(8, 8, 3), batch_size=2,
                                 seed=0, labels=True)
    with pytest.raises(errors.ConfigError, match="no class-label feature 'label'"):
      data.class_names(config)


def test_mnist_class_names_come_from_the_metadata():
  assert data.class_names(h.config(source='tfds', name='mnist')) == [
      str(d) for d in range(10)]


# ---- errors -----------------------------------------------------------------------


def test_missing_dataset_is_found_offline_and_says_how_to_prepare_it(tmp_path, monkeypatch):
  def no_network(*args, **kwargs):
    raise AssertionError(f'a missing data set must not reach the network: connect{args[1:]}')
  monkeypatch.setattr(socket.socket, 'connect', no_network)
  monkeypatch.setattr(socket, 'create_connection', no_network)
  config = h.config(source='tfds', name='mnist', data_dir=str(tmp_path))
  with pytest.raises(errors.MissingFileError) as error:
    data.create_train_iterator(config, data_shape=(28, 28, 1), batch_size=4,
                               seed=0)
  message = str(error.value)
  assert "download_and_prepare(file_format='array_record')" in message
  assert 'tfds build mnist --file_format=array_record' in message
  assert str(tmp_path) in message


def test_missing_celeb_a_points_at_the_image_folder_source(tmp_path):
  config = h.config(source='tfds', name='celeb_a', data_dir=str(tmp_path))
  with pytest.raises(errors.MissingFileError) as error:
    data.load_eval_data(config, data_shape=(64, 64, 3), split='test',
                        num_examples=4)
  assert ('--config.data.source=image_folder '
          '--config.data.path=/path/to/img_align_celeba') in str(error.value)
  # No crop in the advice: sngan_celeba crops 178 px on purpose, dcgan_celeba 108 px.
  assert 'data.crop' not in str(error.value)


def test_missing_imagenet_says_where_to_get_its_files_not_to_download_it(tmp_path, caplog):
  # TFDS cannot download ImageNet (its builder has manual download instructions): the
  # advice to "prepare it on a machine with network access" could not work.
  config = h.config(source='tfds', name='imagenet2012', data_dir=str(tmp_path))
  (tmp_path / 'imagenet2012' / '5.1.0').mkdir(parents=True)  # a version folder, empty
  with caplog.at_level(logging.WARNING):
    with pytest.raises(errors.MissingFileError) as error:
      data.create_train_iterator(config, data_shape=(128, 128, 3), batch_size=4, seed=0)
  message = str(error.value)
  assert 'TFDS cannot download imagenet2012' in message
  assert 'ILSVRC2012_img_train.tar' in message
  assert ('tfds build imagenet2012 --manual_dir=/path/to/those/files '
          f'--file_format=array_record --data_dir={tmp_path}') in message
  assert 'network access' not in message and 'download_and_prepare' not in message
  # TFDS's own warning about the empty version folder is left out: the error says it.
  assert 'has no dataset_info.json' not in caplog.text


def test_unknown_dataset_lists_close_and_tested_names():
  with pytest.raises(errors.ConfigError, match="'mnist'.*fashion_mnist") as error:
    data.create_train_iterator(h.config(source='tfds', name='mnistt'),
                               data_shape=(8, 8, 1), batch_size=2, seed=0)
  assert 'Close matches' in str(error.value)


def test_a_version_or_name_tfds_cannot_use_is_a_config_error(tmp_path):
  for name, detail in (('mnist:9.9.9', 'only: 3.0.1'), ('mnist@2', 'Parsing builder name')):
    with pytest.raises(errors.ConfigError, match=f'TFDS cannot use data.name={name!r}') as error:
      data.create_train_iterator(h.config(source='tfds', name=name, data_dir=str(tmp_path)),
                                 data_shape=(8, 8, 1), batch_size=2, seed=0)
    assert detail in str(error.value)


def test_empty_dataset_name_is_a_config_error():
  with pytest.raises(errors.ConfigError, match='--config.data.name=mnist'):
    data.create_train_iterator(h.config(source='tfds'), data_shape=(8, 8, 1),
                               batch_size=2, seed=0)


# ---- a real, tiny array_record dataset ------------------------------------------------


class TinyGanImages(tfds.core.GeneratorBasedBuilder):
  """Six 12x10 RGB images (level 30 * i, class i % 3) for train, two for test;
  `Tensor` features so preparing needs no TensorFlow."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(12, 10, 3), dtype=np.uint8),
            'label': tfds.features.ClassLabel(names=['red', 'green', 'blue']),
        }))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples(6),
            'test': self._generate_examples(2)}

  def _generate_examples(self, count):
    for i in range(count):
      yield i, {'image': np.full((12, 10, 3), 30 * i, np.uint8),
                'label': i % 3}


@pytest.fixture(name='tiny', scope='module')
def _tiny(tmp_path_factory):
  """The tiny dataset's data_dir, prepared once."""
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  tfds.builder('tiny_gan_images', data_dir=data_dir).download_and_prepare(
      file_format='array_record')
  return data_dir


def _tiny_config(tiny, **fields):
  return h.config(source='tfds', name='tiny_gan_images', data_dir=tiny,
                  crop='none', **fields)


def test_array_record_epoch_shows_every_image_once(tiny):
  batches = h.first_batches(_tiny_config(tiny), 2, data_shape=(6, 5, 3),
                            batch_size=3, seed=0)
  epoch = np.concatenate([b['images'] for b in batches])
  h.assert_images(epoch, (6, 6, 5, 3))
  np.testing.assert_array_equal(np.sort(h.levels(epoch)),
                                [0, 30, 60, 90, 120, 150])


def test_array_record_resume(tiny):
  h.check_resume(_tiny_config(tiny), data_shape=(6, 5, 3), batch_size=4)


@pytest.mark.parametrize('cache', ['memory', 'none'])
def test_array_record_labels_belong_to_their_images(tiny, cache):
  batches = h.first_batches(_tiny_config(tiny, cache=cache), 3,
                            data_shape=(6, 5, 3), batch_size=4, seed=0,
                            labels=True)
  for batch in batches:
    np.testing.assert_array_equal(batch['labels'],
                                  (h.levels(batch['images']) // 30) % 3)


def test_array_record_eval_labels(tiny):
  images, labels = data.load_eval_data(_tiny_config(tiny), data_shape=(6, 5, 3),
                                       split='train', num_examples=6,
                                       labels=True)
  np.testing.assert_array_equal(labels, (h.levels(images) // 30) % 3)


def test_array_record_class_names(tiny):
  assert data.class_names(_tiny_config(tiny)) == ['red', 'green', 'blue']
  assert data.num_classes(_tiny_config(tiny)) == 3


def test_unknown_split_lists_the_known_ones(tiny):
  with pytest.raises(errors.ConfigError, match=r"\['train', 'test'\]"):
    data.create_train_iterator(_tiny_config(tiny, split='validation'),
                               data_shape=(6, 5, 3), batch_size=2, seed=0)


@pytest.mark.parametrize('split,problem', [('train[:abc]', 'does not open as a slice'),
                                           ('train[4:2]', 'selects no examples'),
                                           ('train[:0]', 'does not open as a slice')])
def test_a_slice_that_selects_nothing_is_a_config_error(tiny, split, problem):
  with pytest.raises(errors.ConfigError, match=rf"split '{re.escape(split)}' {problem}"
                                               r".*'train\[:90%\]'"):
    data.create_train_iterator(_tiny_config(tiny, split=split),
                               data_shape=(6, 5, 3), batch_size=2, seed=0)


def test_sliced_split_opens(tiny):
  with data.create_train_iterator(_tiny_config(tiny, split='train[:50%]'),
                                  data_shape=(6, 5, 3), batch_size=3,
                                  seed=0) as iterator:
    levels = h.levels(next(iterator)['images'])
    assert iterator.get_state()['examples_per_shard'] == 3
  # TFDS shuffles records when preparing, so which half is not known here.
  assert len(set(levels)) == 3 and set(levels) <= {0, 30, 60, 90, 120, 150}


def test_tfrecord_only_dataset_says_how_to_convert(tiny, tmp_path):
  # A copy whose metadata says TFRecord, as if prepared by `tfds.load`.
  version_dir = tmp_path / 'tiny_gan_images' / '1.0.0'
  version_dir.mkdir(parents=True)
  source_dir = os.path.join(tiny, 'tiny_gan_images', '1.0.0')
  for name in os.listdir(source_dir):
    if name.endswith('.json'):
      with open(os.path.join(source_dir, name), encoding='utf-8') as f:
        text = f.read()
      (version_dir / name).write_text(text.replace('array_record', 'tfrecord'))
  with pytest.raises(errors.MissingFileError) as error:
    data.create_train_iterator(_tiny_config(str(tmp_path)),
                               data_shape=(8, 8, 3), batch_size=2, seed=0)
  message = str(error.value)
  assert 'tfrecord' in message
  assert (f'tfds convert_format --dataset_version_dir={version_dir} '
          '--out_file_format=array_record') in message
