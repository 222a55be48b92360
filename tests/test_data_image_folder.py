"""Tests for the image_folder source: epochs, cache modes, shards, unreadable
files, errors, and class labels from first-level sub-folders."""

import logging
import os

import numpy as np
import pytest
from PIL import Image

import data_helpers as h
from gan_jax import data
from gan_jax import errors
from gan_jax.data import image_folder

CACHES = ['memory', 'none']


def _folder(tmp_path, **fields):
  return h.config(source='image_folder', path=str(tmp_path), **fields)


def _two_classes(tmp_path):
  """a/: levels 10..40 (PNG); b/c/: levels 50..80 (JPEG) -> classes 'a', 'b'."""
  values = [10 * i for i in range(1, 9)]
  h.write_folder(str(tmp_path), values[:4], ext='.png', subdir='a')
  h.write_folder(str(tmp_path), values[4:], ext='.jpg', subdir='b/c')
  return values


@pytest.mark.parametrize('cache', CACHES)
def test_image_folder_epoch_shows_every_image_once(tmp_path, cache):
  values = _two_classes(tmp_path)
  batches = h.first_batches(_folder(tmp_path, cache=cache), 4,
                            data_shape=(8, 8, 3), batch_size=4, seed=0)
  for batch in batches:
    h.assert_images(batch['images'], (4, 8, 8, 3))
  epochs = [h.levels(np.concatenate([b['images'] for b in batches[i:i + 2]]))
            for i in (0, 2)]
  for seen in epochs:
    np.testing.assert_allclose(np.sort(seen), values, atol=2)
  assert not np.array_equal(epochs[0], epochs[1])  # reshuffled


@pytest.mark.parametrize('cache', CACHES)
def test_image_folder_resume(tmp_path, cache):
  _two_classes(tmp_path)
  h.check_resume(_folder(tmp_path, cache=cache), data_shape=(6, 6, 1),
                 batch_size=3, skip=2)


def test_image_folder_cache_modes_give_the_same_stream(tmp_path):
  h.write_folder(str(tmp_path), [10 * i for i in range(7)])
  streams = [
      h.first_batches(_folder(tmp_path, cache=cache), 5, data_shape=(5, 5, 3),
                      batch_size=3, seed=2) for cache in CACHES
  ]
  h.assert_same_batches(*streams)


def test_unknown_cache_mode_is_a_config_error(tmp_path):
  h.write_folder(str(tmp_path), [10])
  with pytest.raises(errors.ConfigError, match="'auto', 'memory', 'none'"):
    data.create_train_iterator(_folder(tmp_path, cache='disk'),
                               data_shape=(5, 5, 3), batch_size=3, seed=0)


def test_image_folder_shards_are_disjoint(tmp_path):
  values = [20 * i for i in range(12)]
  h.write_folder(str(tmp_path), values)
  seen = []
  for index in range(3):
    # The caching and the per-batch paths must shard alike.
    batch, = h.first_batches(_folder(tmp_path, cache=CACHES[index % 2]), 1,
                             data_shape=(4, 4, 1), batch_size=4, seed=0,
                             shard_index=index, shard_count=3)
    seen.append(set(h.levels(batch['images'])))  # one batch = one epoch
  assert all(len(s) == 4 for s in seen)
  assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
  assert set.union(*seen) == set(values)


@pytest.mark.parametrize('cache,examples', [('memory', 5), ('none', 6)])
def test_image_folder_skips_and_counts_unreadable(tmp_path, caplog, cache,
                                                  examples):
  h.write_folder(str(tmp_path), [50, 100, 150, 200, 250])
  (tmp_path / 'broken.jpg').write_bytes(b'not a jpeg at all')
  (tmp_path / 'notes.txt').write_text('ignored: not an image extension')
  with caplog.at_level(logging.WARNING):
    with data.create_train_iterator(_folder(tmp_path, cache=cache),
                                    data_shape=(4, 4, 1), batch_size=6,
                                    seed=0) as iterator:
      batches = h.take(iterator, 2)
      # Cached: the file is left out; per batch: it is replaced each epoch.
      assert iterator.get_state()['examples_per_shard'] == examples
  for batch in batches:
    h.assert_images(batch['images'], (6, 4, 4, 1))
    assert set(h.levels(batch['images'])) <= {50, 100, 150, 200, 250}
  warnings = [r.getMessage() for r in caplog.records
              if 'unreadable' in r.getMessage()]
  assert warnings and 'skipped 1 unreadable' in warnings[0]
  assert 'broken.jpg' in warnings[0]


@pytest.mark.parametrize('cache', CACHES)
def test_a_class_whose_every_image_is_unreadable_is_named(tmp_path, caplog, cache):
  # G is still asked for that class; D would never see a real one.
  h.write_folder(str(tmp_path), [50, 100], subdir='good')
  (tmp_path / 'lost').mkdir()
  for name in ('x.jpg', 'y.png'):
    (tmp_path / 'lost' / name).write_bytes(b'broken')
  (tmp_path / 'good' / 'z.jpg').write_bytes(b'broken')  # one of three: not all
  with caplog.at_level(logging.WARNING):
    with data.create_train_iterator(_folder(tmp_path, cache=cache), data_shape=(4, 4, 1),
                                    batch_size=2, seed=0, labels=True) as iterator:
      h.take(iterator, 4)
  lost = [r.getMessage() for r in caplog.records if 'every one of the' in r.getMessage()]
  assert len(lost) == 1 and "2 image file(s) under 'lost'" in lost[0], lost


def test_image_folder_eval_data_skips_unreadable(tmp_path):
  h.write_folder(str(tmp_path), [50, 100, 150, 200, 250])
  (tmp_path / 'broken.jpg').write_bytes(b'not a jpeg at all')
  kwargs = dict(data_shape=(4, 4, 1), split='train')
  every = data.load_eval_data(_folder(tmp_path), num_examples=100, **kwargs)
  assert every.shape == (5, 4, 4, 1)  # skipped, not replaced
  few = data.load_eval_data(_folder(tmp_path), num_examples=3, **kwargs)
  np.testing.assert_array_equal(few, every[:3])


@pytest.mark.parametrize('cache', CACHES)
def test_all_unreadable_folder_is_a_missing_file_error(tmp_path, cache):
  for name in ['x.jpg', 'y.png', 'z.jpeg']:
    (tmp_path / name).write_bytes(b'broken')
  with pytest.raises(errors.MissingFileError) as error:
    data.create_train_iterator(_folder(tmp_path, cache=cache),
                               data_shape=(4, 4, 1), batch_size=2, seed=0)
  message = str(error.value)
  assert str(tmp_path) in message and 'none of 3 image files' in message
  assert 'x.jpg' in message and '--config.data.path' in message


def test_missing_folder_is_a_missing_file_error(tmp_path):
  with pytest.raises(errors.MissingFileError, match='does not exist'):
    data.create_train_iterator(h.config(source='image_folder',
                                        path=str(tmp_path / 'nowhere')),
                               data_shape=(8, 8, 3), batch_size=2, seed=0)


def test_empty_folder_is_a_missing_file_error(tmp_path):
  (tmp_path / 'sub').mkdir()
  (tmp_path / 'sub' / 'notes.txt').write_text('not an image')
  with pytest.raises(errors.MissingFileError, match='holds no'):
    data.create_train_iterator(_folder(tmp_path), data_shape=(8, 8, 3),
                               batch_size=2, seed=0)


def test_folder_source_needs_a_path():
  with pytest.raises(errors.ConfigError, match='config.data.path'):
    data.create_train_iterator(h.config(source='image_folder'),
                               data_shape=(8, 8, 3), batch_size=2, seed=0)


@pytest.mark.parametrize('cache', CACHES)
def test_image_folder_labels_are_first_level_sub_folders(tmp_path, cache):
  _two_classes(tmp_path)
  # The last file of class 'a' is unreadable: per-batch decoding replaces it
  # by the next file, the first of class 'b', whose label must come with it.
  (tmp_path / 'a' / 'zz_broken.png').write_bytes(b'broken')
  batches = h.first_batches(_folder(tmp_path, cache=cache), 6,
                            data_shape=(4, 4, 1), batch_size=3, seed=0,
                            labels=True)
  for batch in batches:
    assert batch['labels'].dtype == np.int32
    # 'a' (label 0) holds levels <= 40, 'b' (label 1) levels >= 50.
    np.testing.assert_array_equal(batch['labels'],
                                  (h.levels(batch['images']) > 45).astype(int))


def test_image_folder_class_names_are_sorted_sub_folders(tmp_path):
  h.write_folder(str(tmp_path), [10], subdir='zebra')
  h.write_folder(str(tmp_path), [20], subdir='ant/deeper')
  h.write_folder(str(tmp_path), [30], subdir='moth')
  assert data.class_names(_folder(tmp_path)) == ['ant', 'moth', 'zebra']
  assert data.num_classes(_folder(tmp_path)) == 3


def test_hidden_files_and_folders_are_neither_data_nor_classes(tmp_path):
  # e.g. Jupyter's .ipynb_checkpoints/ beside the class folders, a .thumbnail.png.
  h.write_folder(str(tmp_path), [10], subdir='ant')
  h.write_folder(str(tmp_path), [20], subdir='moth')
  h.write_folder(str(tmp_path), [30], subdir='.ipynb_checkpoints')
  h.write_folder(str(tmp_path), [40], subdir='moth/.thumbs')
  h.write_folder(str(tmp_path), [50], ext='.png', subdir='ant')
  os.rename(tmp_path / 'ant' / 'img000.png', tmp_path / 'ant' / '.hidden.png')
  assert image_folder.list_images(str(tmp_path)) == [os.path.join('moth', 'img000.png')]
  assert data.class_names(_folder(tmp_path)) == ['moth']


def test_bmp_webp_gif_and_tiff_files_are_images_too(tmp_path):
  for i, ext in enumerate(['.bmp', '.webp', '.gif', '.TIFF', '.tif', '.JPG']):
    h.write_folder(str(tmp_path), [10 * (i + 1)], ext=ext, subdir=f'c{i}')
  (tmp_path / 'c0' / 'notes.txt').write_text('not an image')
  assert len(image_folder.list_images(str(tmp_path))) == 6
  batch, = h.first_batches(_folder(tmp_path), 1, data_shape=(4, 4, 1), batch_size=6, seed=0)
  # Each file read as its own grey level (WebP and JPEG are lossy by a level or two).
  np.testing.assert_allclose(sorted(h.levels(batch['images'])), [10, 20, 30, 40, 50, 60],
                             atol=2)


def test_a_class_folder_without_images_is_named(tmp_path, caplog):
  h.write_folder(str(tmp_path), [10], subdir='ant')
  h.write_folder(str(tmp_path), [20], subdir='moth')
  (tmp_path / 'empty_class').mkdir()
  (tmp_path / 'empty_class' / 'readme.txt').write_text('no images here')
  with caplog.at_level(logging.WARNING):
    assert data.class_names(_folder(tmp_path)) == ['ant', 'moth']
  assert "sub-folder(s) ['empty_class'] hold no" in caplog.text


def test_image_folder_eval_labels(tmp_path):
  _two_classes(tmp_path)
  images, labels = data.load_eval_data(_folder(tmp_path), data_shape=(4, 4, 1),
                                       split='train', num_examples=8,
                                       labels=True)
  np.testing.assert_array_equal(labels, (h.levels(images) > 45).astype(int))


def test_flat_folder_has_no_labels_and_says_how_to_lay_it_out(tmp_path):
  h.write_folder(str(tmp_path), [10, 20])
  h.write_folder(str(tmp_path), [30], subdir='cats')
  for call in [
      lambda: data.create_train_iterator(_folder(tmp_path), data_shape=(4, 4, 1),
                                         batch_size=2, seed=0, labels=True),
      lambda: data.class_names(_folder(tmp_path)),
  ]:
    with pytest.raises(errors.ConfigError, match='2 image') as error:
      call()
    assert '<path>/<class name>/' in str(error.value)


def test_flat_folder_trains_without_labels(tmp_path):
  h.write_folder(str(tmp_path), [10, 20])
  batch, = h.first_batches(_folder(tmp_path), 1, data_shape=(4, 4, 1),
                           batch_size=2, seed=0)
  assert sorted(h.levels(batch['images'])) == [10, 20]


def test_a_folder_reached_again_through_a_link_is_listed_once(tmp_path):
  h.write_folder(str(tmp_path), [10, 20], subdir='a')
  os.symlink(tmp_path, tmp_path / 'a' / 'loop')   # a loop back to the root
  os.symlink(tmp_path / 'a', tmp_path / 'again')  # a second way into a/
  assert image_folder.list_images(str(tmp_path)) == ['a/img000.png', 'a/img001.png']


def test_colour_images_for_a_grey_model_are_reported_once(tmp_path, caplog):
  h.write_folder(str(tmp_path / 'grey'), [50, 100])            # grey pixels, stored as RGB
  colour = tmp_path / 'colour'
  colour.mkdir()
  Image.fromarray(np.dstack([np.full((8, 8), v, np.uint8) for v in (200, 30, 30)])).save(
      colour / 'red.png')
  with caplog.at_level(logging.WARNING):
    for root in ('grey', 'colour', 'colour'):
      data.load_eval_data(_folder(tmp_path / root), data_shape=(4, 4, 1), split='train',
                          num_examples=1)
    data.load_eval_data(_folder(tmp_path / 'colour'), data_shape=(4, 4, 3), split='train',
                        num_examples=1)
  warnings = [r.getMessage() for r in caplog.records if 'converted to grey' in r.getMessage()]
  assert len(warnings) == 1 and 'red.png has colour' in warnings[0]


def _examples_sha256(path, **fields):
  config = h.config(source='image_folder', path=path, **fields)
  with data.create_train_iterator(config, data_shape=(8, 8, 1), batch_size=2, seed=0,
                                  labels=True) as stream:
    return stream.get_state()['examples_sha256']


def test_copies_that_spell_a_class_in_other_unicode_forms_are_told_apart(tmp_path):
  # A copy made on macOS (or by some rsyncs) writes 'ç' as 'c' + a combining cedilla:
  # the names look the same, yet sort otherwise, giving class 0 to another folder on
  # each host of one run. The hosts' listings differ, so such a run is refused.
  nfc, nfd = '\u00e7at', 'c\u0327at'
  for copy, cat in (('a', nfc), ('b', nfd)):
    for k, name in enumerate(('dog', cat, 'ant')):
      h.write_folder(str(tmp_path / copy), [10 * k, 10 * k + 5], subdir=name)
  names = [image_folder.class_labels(str(tmp_path / copy),
                                     image_folder.list_images(str(tmp_path / copy)))[0]
           for copy in ('a', 'b')]
  assert names == [['ant', 'dog', nfc], ['ant', nfd, 'dog']]  # by code point
  assert _examples_sha256(str(tmp_path / 'a')) != _examples_sha256(str(tmp_path / 'b'))


def test_the_examples_digest_names_the_files_and_subsets_not_the_folder(tmp_path):
  # What the processes of one run compare (gan_jax.train): another path holding the
  # same files lists the same examples; another file, or another subset, does not.
  for copy in ('a', 'b', 'c'):
    for k, name in enumerate(('x', 'y')):
      h.write_folder(str(tmp_path / copy), [10 * k, 10 * k + 5], subdir=name)
  h.write_folder(str(tmp_path / 'c'), [99], subdir='y/extra')
  digest = _examples_sha256(str(tmp_path / 'a'))
  assert len(digest) == 16 and int(digest, 16) >= 0
  assert _examples_sha256(str(tmp_path / 'b')) == digest
  assert _examples_sha256(str(tmp_path / 'c')) != digest
  assert _examples_sha256(str(tmp_path / 'a'), labels_per_class=1) != digest
