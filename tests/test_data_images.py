"""Tests for gan_jax.data.images: the antialiased resize, crops, channel conversion."""

import jax
import numpy as np
import pytest
from PIL import Image

from gan_jax import errors
from gan_jax.data import images as images_lib


@pytest.mark.parametrize('size', [(32, 32), (28, 20), (5, 3)])
def test_resize_antialiased_matches_jax_antialiased_linear(size):
  images = np.random.default_rng(0).uniform(0, 16, (3, 8, 8)).astype(np.float32)
  ours = images_lib.resize_antialiased(images, size)
  ref = jax.image.resize(images, (3,) + size, 'linear', antialias=True)
  np.testing.assert_allclose(ours, np.asarray(ref), atol=1e-4)


def test_resize_antialiased_keeps_channels():
  images = np.arange(2 * 4 * 4 * 3, dtype=np.float64).reshape(2, 4, 4, 3)
  # Each output pixel is a convex combination of input pixels (weights sum to
  # 1), so the constant offsets between channels survive the resize.
  out = images_lib.resize_antialiased(images, (2, 2))
  assert out.shape == (2, 2, 2, 3)
  np.testing.assert_allclose(out[..., 1] - out[..., 0], 1.0)
  np.testing.assert_allclose(out[..., 2] - out[..., 0], 2.0)


def test_crop_box_celeba_is_the_dcgan_crop():
  # Rows 55..162, columns 35..142 of a 178x218 (W x H) aligned CelebA image.
  assert images_lib.crop_box((178, 218), (64, 64), 'celeba') == (35, 55, 143,
                                                                 163)


def test_crop_box_center_keeps_the_target_aspect():
  assert images_lib.crop_box((178, 218), (64, 64), 'center') == (0, 20, 178,
                                                                 198)
  assert images_lib.crop_box((40, 20), (10, 10), 'center') == (10, 0, 30, 20)


def test_crop_box_none_is_the_whole_image():
  assert images_lib.crop_box((40, 20), (10, 10), 'none') == (0, 0, 40, 20)


def test_unknown_crop_is_a_config_error_listing_the_known_ones():
  with pytest.raises(errors.ConfigError, match="'center', 'celeba', 'none'"):
    images_lib.crop_box((40, 20), (10, 10), 'middle')


def test_fit_image_rgb_to_grey_uses_luma():
  rgb = np.zeros((10, 12, 3), np.uint8)
  rgb[..., 0] = 255  # pure red -> luma 0.299 * 255 = 76.2
  grey = images_lib.fit_image(rgb, size=(4, 4), channels=1, crop='center')
  assert grey.shape == (4, 4, 1) and abs(int(grey[0, 0, 0]) - 76) <= 1


def test_fit_image_grey_to_rgb_repeats():
  back = images_lib.fit_image(np.full((9, 9, 1), 200, np.uint8), size=(3, 3),
                              channels=3, crop='none')
  assert back.shape == (3, 3, 3) and np.all(back == 200)


def test_fit_image_scales_16_bit_grey_to_8_bits():
  # PIL's own conversion to 'L' clips every 16-bit value above 255 to white.
  values = (np.arange(32 * 32).reshape(32, 32) * 64).astype(np.uint16)  # 0 .. 65472
  image = Image.fromarray(values)
  assert image.mode == 'I;16'
  out = images_lib.fit_image(image, size=(32, 32), channels=3, crop='none')
  expected = np.round(values / 257).astype(np.uint8)
  np.testing.assert_array_equal(out, np.repeat(expected[..., None], 3, axis=-1))


def test_to_float_maps_0_and_255_to_the_ends():
  np.testing.assert_array_equal(
      images_lib.to_float(np.array([0, 255], np.uint8)), [-1.0, 1.0])
