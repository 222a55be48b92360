"""scikit-learn's bundled handwritten digits (UCI optdigits test set): no download.

1,797 real 8x8 grey images with integer values 0..16 and labels 0..9. The
split is fixed: `sklearn.model_selection.train_test_split(test_size=0.25,
stratify=labels, random_state=0)` over the original order, giving 1,347
'train' and 450 'test' images (each index list sorted); 'all' is every image.
For training the images are resized once (antialiased bilinear, see
`images.resize_antialiased`) and scaled by x / 8 - 1 to [-1, 1].
"""

import functools

import numpy as np

from gan_jax import errors
from gan_jax.data import images as images_lib

SPLITS = ('train', 'test', 'all')
CLASS_NAMES = tuple(str(digit) for digit in range(10))
_TEST_FRACTION = 0.25
_SPLIT_SEED = 0


@functools.lru_cache(maxsize=1)
def _load():
  # Imported here: scikit-learn is slow to import and only digits needs it.
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  from sklearn import model_selection  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  images = digits.images.astype(np.float32)
  labels = digits.target.astype(np.int64)
  train, test = model_selection.train_test_split(
      np.arange(len(labels)), test_size=_TEST_FRACTION, stratify=labels,
      random_state=_SPLIT_SEED)
  indices = {'train': np.sort(train), 'test': np.sort(test),
             'all': np.arange(len(labels))}
  return images, labels, indices


def check_split(split, where='config.data.split'):
  """Raises ConfigError naming `where` (the flag or config field that chose the split)
  unless the digits have a split called `split` ('train', 'test', 'all')."""
  if split not in SPLITS:
    raise errors.ConfigError(f'{where}={split!r}: the digits have the splits {list(SPLITS)}.')


def digits_split(split):
  """Returns one fixed split of the digits, unscaled (for classifier checks).

  Args:
    split: 'train' (1,347 images), 'test' (450) or 'all' (1,797).

  Returns:
    (images, labels): images f32[N, 8, 8] with values 0..16, labels int64[N]
    in 0..9. Fresh copies: callers may modify them.

  Raises:
    errors.ConfigError: for an unknown split, listing the known ones.
  """
  check_split(split)
  images, labels, indices = _load()
  index = indices[split]
  return images[index].copy(), labels[index].copy()


def digits_images(split, *, size):
  """Returns a digits split resized and scaled for a GAN.

  Args:
    split: 'train', 'test' or 'all'.
    size: (H, W) output size.

  Returns:
    f32[N, H, W, 1] in [-1, 1].
  """
  images, _ = digits_split(split)
  if tuple(size) != images.shape[1:]:
    images = images_lib.resize_antialiased(images, size)
  # Values stay in 0..16 after the (convex) resize; the clip only guards
  # against rounding.
  scaled = np.clip(images / 8.0 - 1.0, -1.0, 1.0).astype(np.float32)
  return scaled[..., None]
