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
from gan_jax.data import decode
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
  assert str(tmp_path / 'train') in str(error.value)   # the training split, not the last
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


def test_a_split_other_than_train_reads_the_whole_folder_and_says_so(tmp_path, caplog):
  # Configs written for a data set's splits (sngan_stl10's 'unlabelled', a 'test'
  # reference) stay usable on a folder: the split is named, not refused.
  h.write_folder(str(tmp_path), [40, 80])
  config = defaults.get_config()
  config.data.source, config.data.path, config.eval.metrics = 'image_folder', str(tmp_path), ''
  config.data.split, config.eval.reference_split = 'unlabelled', 'test'
  config_check.validate(config)
  with caplog.at_level(logging.WARNING):
    images = data.load_eval_data(_folder(tmp_path), data_shape=(4, 4, 1), split='test',
                                 num_examples=2)
  assert sorted(h.levels(images)) == [40, 80]
  assert "has no splits: split 'test' (data.split or eval.reference_split) reads every" in (
      caplog.text)
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    data.load_eval_data(_folder(tmp_path), data_shape=(4, 4, 1), split='train', num_examples=2)
  assert 'has no splits' not in caplog.text


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
  for i in range(70):   # more classes than the first files looked at
    h.write_folder(str(tmp_path), [100], subdir=f'grey_{i:02d}')
  colour = tmp_path / 'z_colour'
  colour.mkdir()
  Image.fromarray(np.dstack([np.full((8, 8), v, np.uint8) for v in (200, 30, 30)])).save(
      colour / 'red.png')
  with caplog.at_level(logging.WARNING):
    data.load_eval_data(_folder(tmp_path), data_shape=(4, 4, 1), split='train',
                        num_examples=1)
  assert 'red.png has colour and model.channels=1' in caplog.text


def test_a_folder_is_looked_at_once_per_process(tmp_path, monkeypatch):
  for i in range(40):  # more than the decoding threads can start ahead (up to 1 + 3 * 8)
    h.write_folder(str(tmp_path), [100], subdir=f'class_{i:02d}')
  opened = []
  real_open = Image.open
  monkeypatch.setattr(image_folder.Image, 'open',
                      lambda *args, **kwargs: (opened.append(1), real_open(*args, **kwargs))[1])
  for _ in range(2):
    data.load_eval_data(_folder(tmp_path), data_shape=(4, 4, 1), split='train',
                        num_examples=1)
  first_opens = len(opened)
  assert first_opens >= 40   # every class's first file, the first time
  opened.clear()
  data.load_eval_data(_folder(tmp_path), data_shape=(4, 4, 1), split='train', num_examples=1)
  # Then only what is decoded: the one example, and what the decoding threads had
  # started ahead of it (their prefetch, timing-dependent) -- not the 40 classes again.
  ahead = 3 * decode.decode_threads(0)
  assert len(opened) <= 1 + ahead < first_opens, (len(opened), ahead)


def test_pixels_of_no_known_range_are_refused():
  for pixels in (np.full((4, 4), 0.5, np.float32), np.full((4, 4), 70000, np.int32),
                 np.full((4, 4), -3, np.int32)):
    with pytest.raises(ValueError, match='save the image as an 8- or 16-bit PNG'):
      images_lib.fit_image(Image.fromarray(pixels), size=(4, 4), channels=1, crop='none')
  # 16-bit values in a 32-bit image keep their scale.
  sixteen = images_lib.fit_image(Image.fromarray(np.full((4, 4), 65535, np.int32)),
                                 size=(4, 4), channels=1, crop='none')
  assert sixteen.dtype == np.uint8 and np.all(sixteen == 255)


def test_a_dark_16_bit_pgm_stays_dark(tmp_path):
  # Pillow opens 16-bit PGMs as 32-bit integers ('I'); every one is scaled as 16-bit,
  # whatever its brightest pixel.
  for name, value in (('dark', 200), ('bright', 60000)):
    header = b'P5\n4 4\n65535\n'
    (tmp_path / f'{name}.pgm').write_bytes(header + np.full(16, value, '>u2').tobytes())
    with Image.open(tmp_path / f'{name}.pgm') as image:
      assert image.mode == 'I'
      pixels = images_lib.fit_image(image, size=(4, 4), channels=1, crop='none')
    assert np.all(pixels == round(value / 257)), (name, pixels.max())


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


def _subset_warnings(caplog):
  return [r.getMessage() for r in caplog.records if 'examples it picked' in r.getMessage()]


@pytest.mark.parametrize('cache', CACHES)
def test_a_subset_that_picks_an_unreadable_file_says_how_much_smaller_it_is(tmp_path, caplog,
                                                                          cache):
  _three_classes_with_a_broken_file(tmp_path)
  # All 10 files: the broken one must be among them; the run trains on the other 9.
  with caplog.at_level(logging.WARNING):
    with data.create_train_iterator(_folder(tmp_path, cache=cache, train_examples=10),
                                    data_shape=(4, 4, 1), batch_size=3, seed=0,
                                    labels=True) as iterator:
      h.take(iterator, 4)
  warning, = _subset_warnings(caplog)
  assert ('data.train_examples=10: 1 of the 10 examples it picked on this process cannot be '
          'read') in warning
  assert 'b/img001.png' in warning and 'trains on 9, its classes no longer balanced' in warning
  # Two labels per class keep both of b's files, the broken one among them.
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    h.first_batches(_folder(tmp_path, cache=cache, labels_per_class=2), 1,
                    data_shape=(4, 4, 1), batch_size=3, seed=0, labels=True)
  warning, = _subset_warnings(caplog)
  assert 'data.labels_per_class=2: 1 of the 6 examples' in warning


@pytest.mark.parametrize('cache', CACHES)
def test_an_unreadable_unlabelled_file_is_only_skipped(tmp_path, caplog, cache):
  _three_classes_with_a_broken_file(tmp_path)
  # One label per class: seeds that label b's readable file leave the broken one
  # unlabelled (skipped like any unreadable file, no word of the subset); the others
  # label it and say so.
  quiet = said = 0
  for seed in range(8):
    caplog.clear()
    with caplog.at_level(logging.WARNING):
      batch, = h.first_batches(_folder(tmp_path, cache=cache, labels_per_class=1), 1,
                               data_shape=(4, 4, 1), batch_size=3, seed=seed, labels=True)
    h.assert_images(batch['images'], (3, 4, 4, 1))
    if _subset_warnings(caplog):
      said += 1
    else:
      quiet += 1
  assert quiet and said
