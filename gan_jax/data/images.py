"""Host-side image preprocessing shared by every image source: crop, resize, scale.

Two resizers, both bilinear with half-pixel centres and a triangle filter that
is widened by the downscale factor (so downscaling is antialiased, upscaling
is plain bilinear interpolation):
  * `resize_antialiased`: float numpy, separable weight matrices, vectorised
    over a batch. Equal to `jax.image.resize(x, shape, 'linear', antialias=True)`.
    Used once per iterator for the bundled digits.
  * `fit_image`: one uint8 PIL image -> uint8 numpy at the target size, using
    Pillow's `Image.BILINEAR` (the same filter family). Used per example for
    tfds and image-folder data, where it runs in grain threads / workers and
    releases the GIL.
Crops (`data_config.crop`):
  * 'center': the largest centred box with the target's aspect ratio (a square
    for square targets).
  * 'celeba': the DCGAN CelebA crop: the central 108x108 box (rows 55..162,
    cols 35..142 of a 218x178 aligned CelebA image; the crop of
    carpedm20/DCGAN-tensorflow), then resized to the target (64x64 usually).
  * 'none': no crop; the whole image is resized (the aspect ratio may change).
"""

import numpy as np
from PIL import Image

from gan_jax import errors

CROPS = ('center', 'celeba', 'none')
CELEBA_CROP_SIZE = 108


def _linear_weights(in_size, out_size):
  """Returns f64[out_size, in_size] bilinear (antialiased) resampling weights."""
  scale = out_size / in_size
  # Widening the kernel by 1/scale when downscaling makes every input pixel
  # contribute (area-like); for upscaling the support stays one pixel.
  support = max(1.0, 1.0 / scale)
  centres = (np.arange(out_size) + 0.5) / scale - 0.5
  distance = np.abs(centres[:, None] - np.arange(in_size)[None, :]) / support
  weights = np.maximum(0.0, 1.0 - distance)
  # Renormalising rows is what clamps to the edge pixel near the borders.
  return weights / weights.sum(axis=1, keepdims=True)


def resize_antialiased(images, size):
  """Resizes a batch of float images with an antialiased bilinear filter.

  Args:
    images: float[N, h, w] or float[N, h, w, C], any range.
    size: (H, W) output height and width.

  Returns:
    f64[N, H, W] or f64[N, H, W, C]; convex combinations of the inputs, so the
    input range is kept.
  """
  images = np.asarray(images, dtype=np.float64)
  height, width = size
  rows = _linear_weights(images.shape[1], height)
  cols = _linear_weights(images.shape[2], width)
  if images.ndim == 3:
    return np.einsum('yh,nhw,xw->nyx', rows, images, cols)
  return np.einsum('yh,nhwc,xw->nyxc', rows, images, cols)


def check_crop(crop):
  """Raises `errors.ConfigError` unless `crop` is one of CROPS."""
  if crop not in CROPS:
    raise errors.ConfigError(
        f'Unknown crop {crop!r}; known: {list(CROPS)}. Set --config.data.crop.')


def crop_box(image_size, target_size, crop):
  """Returns the crop box for an image, in PIL's (left, top, right, bottom).

  Args:
    image_size: (width, height) of the source image, as PIL reports it.
    target_size: (H, W) of the output.
    crop: one of CROPS.

  Returns:
    A 4-tuple of ints inside the image.

  Raises:
    errors.ConfigError: for an unknown crop name.
  """
  check_crop(crop)
  width, height = image_size
  out_h, out_w = target_size
  if crop == 'none':
    return (0, 0, width, height)
  if crop == 'celeba':
    # Images smaller than the DCGAN crop fall back to their centre square.
    crop_w = crop_h = min(CELEBA_CROP_SIZE, width, height)
  else:  # 'center'
    if width * out_h > height * out_w:  # too wide for the target aspect
      crop_h, crop_w = height, max(1, round(height * out_w / out_h))
    else:
      crop_w, crop_h = width, max(1, round(width * out_h / out_w))
  left = (width - crop_w) // 2
  top = (height - crop_h) // 2
  return (left, top, left + crop_w, top + crop_h)


def fit_image(image, *, size, channels, crop):
  """Crops, resizes and converts one image to the requested shape.

  Args:
    image: a PIL image (any mode) or uint8[h, w], uint8[h, w, 1|3|4] array.
    size: (H, W) output size.
    channels: 1 (luma, ITU-R 601: 0.299 R + 0.587 G + 0.114 B) or 3 (grey
      images are repeated into three channels).
    crop: one of CROPS.

  Returns:
    uint8[H, W, channels].

  Raises:
    ValueError: for pixels of no known range (32-bit float, or 32-bit integers
      outside 0..65535); a folder's reader counts such a file as unreadable. Other
      32-bit integer images are read as 16-bit (0..65535).
  """
  if isinstance(image, np.ndarray):
    if image.ndim == 3 and image.shape[-1] == 1:
      image = image[..., 0]
    elif image.ndim == 3 and image.shape[-1] == 4:
      image = image[..., :3]  # alpha is dropped: GAN targets are opaque
    image = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
  if image.mode == 'F':
    # Float pixels have no fixed range ([0, 1], [0, 255], HDR): any scale is a guess.
    raise ValueError('32-bit floating-point pixels (mode F) have no known range; save the '
                     'image as an 8- or 16-bit PNG.')
  if image.mode == 'I':
    # Pillow opens 16-bit PNG / PGM and 10- or 12-bit files (scaled up) as 'I'; one scale
    # for every file, so that a dark image stays dark.
    low, high = image.getextrema()
    if low < 0 or high > 65535:
      raise ValueError(f'32-bit integer pixels in [{low}, {high}], outside the 0..65535 of '
                       '16-bit images; save the image as an 8- or 16-bit PNG.')
  if image.mode.startswith('I;16') or image.mode == 'I':
    # 16-bit grey (PNG): PIL's convert('L') would clip every value above 255 to white.
    image = Image.fromarray(np.round(np.asarray(image, np.float64) / 257).clip(0, 255)
                            .astype(np.uint8))
  grey = image.mode in ('1', 'L', 'LA', 'I', 'I;16')
  # Resizing a grey image once is cheaper than resizing three equal channels.
  mode = 'L' if channels == 1 or grey else 'RGB'
  if image.mode != mode:
    image = image.convert(mode)
  height, width = size
  box = crop_box(image.size, size, crop)
  if box != (0, 0, image.width, image.height) or image.size != (width, height):
    image = image.resize((width, height), Image.BILINEAR, box=box)
  array = np.asarray(image, dtype=np.uint8)
  if array.ndim == 2:
    array = array[..., None]
  if array.shape[-1] != channels:
    array = np.repeat(array, channels, axis=-1)
  return array


def to_float(batch):
  """Maps uint8 pixels to the model's range.

  Args:
    batch: uint8[..., C] in 0..255.

  Returns:
    f32[..., C] in [-1, 1] (0 -> -1, 255 -> 1 exactly).
  """
  out = batch.astype(np.float32)
  out /= np.float32(127.5)
  out -= np.float32(1.0)
  return out
