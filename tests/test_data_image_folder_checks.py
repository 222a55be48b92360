"""Tests of what the image_folder source does with the files a researcher brings:
EXIF orientation, transparency, split folders, the CelebA crop on other sizes, pixel
formats of no known range, colour under a grey model, and subsets that would pick
unreadable files."""

import logging

import numpy as np
import pytest
from PIL import Image

import data_helpers as h
from gan_jax import config_check
from gan_jax import data
from gan_jax import defaults
from gan_jax import errors
from gan_jax.data import image_folder
from gan_jax.data import images as images_lib

CACHES = ['memory', 'none']
_ORIENTATION = 0x0112


def _folder(path, **fields):
  return h.config(source='image_folder', path=str(path), **fields)


def _red_above_blue(height=8, width=4):
  """uint8[height, width, 3]: red top half, blue bottom half."""
  pixels = np.zeros((height, width, 3), np.uint8)
  pixels[:height // 2, :, 0] = 255
  pixels[height // 2:, :, 2] = 255
  return pixels


def _save_rotated_jpeg(path, upright_pixels):
  """Stores `upright_pixels` as a camera would with EXIF orientation 6: the pixels
  turned 90 degrees counter-clockwise, to be turned clockwise when shown."""
  stored = Image.fromarray(np.rot90(upright_pixels, k=1))
  exif = Image.Exif()
  exif[_ORIENTATION] = 6
  stored.save(path, quality=100, subsampling=0, exif=exif)


def test_a_jpeg_is_read_upright_by_its_exif_orientation(tmp_path):
  _save_rotated_jpeg(tmp_path / 'photo.jpg', _red_above_blue())
  with Image.open(tmp_path / 'photo.jpg') as stored:
    assert stored.size == (8, 4)   # stored sideways: 8 wide, 4 high
  image = image_folder.decode(str(tmp_path), 'photo.jpg', size=(8, 4), channels=3,
                              crop='none')
  assert image.shape == (8, 4, 3)
  # Red on top, blue below, as a viewer shows it (JPEG blurs the edge a little).
  assert image[0, :, 0].min() > 200 and image[0, :, 2].max() < 60
  assert image[-1, :, 2].min() > 200 and image[-1, :, 0].max() < 60


def test_split_folders_are_refused_as_classes_and_warned_about_without(tmp_path, caplog):
  for split in ('train', 'test'):
    for name, value in (('cat', 40), ('dog', 200)):
      h.write_folder(str(tmp_path), [value], subdir=f'{split}/{name}')
  with pytest.raises(errors.ConfigError, match=r"split folders \['test', 'train'\]") as error:
    data.class_names(_folder(tmp_path))
  assert str(tmp_path / 'train') in str(error.value)
  with caplog.at_level(logging.WARNING):
    batch, = h.first_batches(_folder(tmp_path), 1, data_shape=(4, 4, 1), batch_size=4,
                             seed=0)
  assert sorted(h.levels(batch['images'])) == [40, 40, 200, 200]   # both splits read
  assert "holds split folders ['test', 'train']: the images of all of them" in caplog.text
  # One split folder alone is still no class; its sub-folders are.
  only = tmp_path / 'only'
  h.write_folder(str(only), [40], subdir='Train/cat')
  with pytest.raises(errors.ConfigError, match='split folders'):
    data.class_names(_folder(only))
  assert data.class_names(_folder(only / 'Train')) == ['cat']


def test_a_split_or_reference_split_is_refused_for_an_image_folder():
  for field, value in (('data.split', 'test'), ('eval.reference_split', 'validation')):
    config = defaults.get_config()
    config.data.source, config.data.path = 'image_folder', '/data/faces'
    config.eval.metrics = ''
    section, name = field.split('.')
    config[section][name] = value
    with pytest.raises(errors.ConfigError, match=f'config.{field}={value!r}: an image folder'):
      config_check.validate(config)
  config.eval.reference_split = 'train'   # the folder itself: allowed
  config_check.validate(config)


def test_transparent_pixels_are_warned_about_once(tmp_path, caplog):
  opaque = np.full((8, 8, 4), 255, np.uint8)
  Image.fromarray(opaque).save(tmp_path / 'a_opaque.png')   # alpha, none transparent
  sprite = opaque.copy()
  sprite[:4, :, 3] = 0
  Image.fromarray(sprite).save(tmp_path / 'b_sprite.png')
  Image.fromarray(sprite).save(tmp_path / 'c_sprite.png')
  with caplog.at_level(logging.WARNING):
    for _ in range(2):
      data.load_eval_data(_folder(tmp_path), data_shape=(4, 4, 3), split='train',
                          num_examples=1)
  warnings = [r.getMessage() for r in caplog.records if 'transparent pixels' in r.getMessage()]
  assert len(warnings) == 1 and 'b_sprite.png' in warnings[0]
  quiet = tmp_path / 'quiet'
  quiet.mkdir()
  Image.fromarray(opaque).save(quiet / 'opaque.png')
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    data.load_eval_data(_folder(quiet), data_shape=(4, 4, 3), split='train', num_examples=1)
  assert 'transparent' not in caplog.text


def test_the_celeba_crop_on_other_image_sizes_is_warned_about(tmp_path, caplog):
  h.write_folder(str(tmp_path / 'faces'), [100], size=(218, 178))   # (height, width)
  h.write_folder(str(tmp_path / 'photos'), [100], size=(512, 512))
  with caplog.at_level(logging.WARNING):
    for name in ('faces', 'photos'):
      data.load_eval_data(_folder(tmp_path / name, crop='celeba'), data_shape=(8, 8, 1),
                          split='train', num_examples=1)
  warnings = [r.getMessage() for r in caplog.records if "data.crop='celeba'" in r.getMessage()]
  assert len(warnings) == 1 and 'is 512x512' in warnings[0], warnings


def test_colour_in_a_later_class_is_found_for_a_grey_model(tmp_path, caplog):
  h.write_folder(str(tmp_path), list(range(10, 130, 10)), subdir='a_grey')   # 12 grey files
  colour = tmp_path / 'b_colour'
  colour.mkdir()
  Image.fromarray(np.dstack([np.full((8, 8), v, np.uint8) for v in (200, 30, 30)])).save(
      colour / 'red.png')
  with caplog.at_level(logging.WARNING):
    data.load_eval_data(_folder(tmp_path), data_shape=(4, 4, 1), split='train',
                        num_examples=1)
  assert 'red.png has colour and model.channels=1' in caplog.text


def test_pixels_of_no_known_range_are_refused():
  for pixels in (np.full((4, 4), 0.5, np.float32), np.full((4, 4), 70000, np.int32),
                 np.full((4, 4), -3, np.int32)):
    with pytest.raises(ValueError, match='save the image as an 8- or 16-bit PNG'):
      images_lib.fit_image(Image.fromarray(pixels), size=(4, 4), channels=1, crop='none')
  # 16-bit values in a 32-bit image keep their scale.
  sixteen = images_lib.fit_image(Image.fromarray(np.full((4, 4), 65535, np.int32)),
                                 size=(4, 4), channels=1, crop='none')
  assert sixteen.dtype == np.uint8 and np.all(sixteen == 255)


def test_a_float_tiff_in_a_folder_is_skipped_as_unreadable(tmp_path, caplog):
  h.write_folder(str(tmp_path), [50, 100])
  Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(tmp_path / 'float.tif')
  with caplog.at_level(logging.WARNING):
    images = data.load_eval_data(_folder(tmp_path), data_shape=(4, 4, 1), split='train',
                                 num_examples=3)
  assert sorted(h.levels(images)) == [50, 100]
  assert 'float.tif' in caplog.text and 'mode F' in caplog.text


def _three_classes_with_a_broken_file(root):
  """a/ and c/: 4 files; b/: 2 files, the second broken (10 files in all)."""
  for name, base, count in (('a', 10, 4), ('b', 100, 2), ('c', 200, 4)):
    h.write_folder(str(root), [base + 5 * i for i in range(count)], subdir=name)
  (root / 'b' / 'img001.png').write_bytes(b'broken')


@pytest.mark.parametrize('cache', CACHES)
def test_a_subset_that_picks_an_unreadable_file_is_refused(tmp_path, cache):
  _three_classes_with_a_broken_file(tmp_path)
  # All 10 files: the broken one must be among them.
  with pytest.raises(errors.MissingFileError,
                     match=r'data.train_examples=10: 1 of the 10 examples') as error:
    h.first_batches(_folder(tmp_path, cache=cache, train_examples=10), 1,
                    data_shape=(4, 4, 1), batch_size=3, seed=0, labels=True)
  assert 'b/img001.png' in str(error.value)
  # Two labels per class keep both of b's files, the broken one among them.
  with pytest.raises(errors.MissingFileError, match='data.labels_per_class=2: 1 of the 6'):
    h.first_batches(_folder(tmp_path, cache=cache, labels_per_class=2), 1,
                    data_shape=(4, 4, 1), batch_size=3, seed=0, labels=True)
  # One label per class: a seed that leaves the broken file unlabelled trains (it is
  # skipped like any unreadable file), one that labels it is refused.
  outcomes = set()
  for seed in range(8):
    try:
      h.first_batches(_folder(tmp_path, cache=cache, labels_per_class=1), 1,
                      data_shape=(4, 4, 1), batch_size=3, seed=seed, labels=True)
      outcomes.add('trained')
    except errors.MissingFileError:
      outcomes.add('refused')
  assert outcomes == {'trained', 'refused'}


@pytest.mark.parametrize('cache', CACHES)
def test_an_unreadable_file_outside_the_subset_is_only_skipped(tmp_path, cache):
  _three_classes_with_a_broken_file(tmp_path)
  # One file per class: seeds that pick b's readable file train on all three classes.
  trained = 0
  for seed in range(8):
    try:
      batch, = h.first_batches(_folder(tmp_path, cache=cache, train_examples=3), 1,
                               data_shape=(4, 4, 1), batch_size=3, seed=seed, labels=True)
    except errors.MissingFileError as error:
      assert 'b/img001.png' in str(error)
      continue
    assert sorted(batch['labels']) == [0, 1, 2]
    trained += 1
  assert 0 < trained < 8


def test_portable_pixmaps_are_read_and_phone_formats_are_counted(tmp_path, caplog):
  h.write_folder(str(tmp_path), [40], ext='.png')
  h.write_folder(str(tmp_path), [80], ext='.pgm', subdir='more')
  h.write_folder(str(tmp_path), [120], ext='.ppm', subdir='more')
  for name in ('IMG_1.HEIC', 'IMG_2.heic', 'scan.avif'):
    (tmp_path / name).write_bytes(b'not read')
  (tmp_path / 'notes.txt').write_text('not an image format: not counted')
  with caplog.at_level(logging.WARNING):
    assert image_folder.list_images(str(tmp_path)) == ['img000.png', 'more/img000.pgm',
                                                       'more/img000.ppm']
  assert '1 .avif, 2 .heic file(s) are not read' in caplog.text
  assert '.txt' not in caplog.text
