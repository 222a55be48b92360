"""A folder of JPEG/PNG files (searched recursively) as a dataset, decoded with Pillow.

Files are listed once, sorted by relative path (so the order, and with it the
shuffle, is the same on every host and run). Decoding happens in grain threads
or worker processes (see pipeline.py: once into RAM, or every batch). A file
Pillow cannot read is skipped: left out of the in-RAM cache or, when decoding
every batch, replaced by the next readable file of the same shard. Each
process logs a warning with the running count of unreadable files and a few
of their names.
"""

import os
import threading

from absl import logging
from PIL import Image

from gan_jax.data import images as images_lib

EXTENSIONS = ('.jpg', '.jpeg', '.png')
_WARN_NAMES = 3

# Per process: root -> set of relative paths that failed to decode.
_unreadable = {}
_unreadable_lock = threading.Lock()


def list_images(root):
  """Lists the image files under a folder.

  Args:
    root: folder searched recursively (symlinked folders are followed).

  Returns:
    Sorted list of paths relative to root, with an extension in EXTENSIONS
    (case-insensitive).

  Raises:
    ValueError: when root is ''.
    FileNotFoundError: when root is missing or holds no such file.
  """
  if not root:
    raise ValueError(
        'data.source=image_folder needs a folder: '
        '--config.data.path=/path/to/images (e.g. img_align_celeba).')
  if not os.path.isdir(root):
    raise FileNotFoundError(
        f'Image folder {root!r} does not exist or is not a folder; set '
        '--config.data.path to a folder of JPEG/PNG files.')
  paths = []
  for folder, _, names in os.walk(root, followlinks=True):
    for name in names:
      if name.lower().endswith(EXTENSIONS):
        paths.append(os.path.relpath(os.path.join(folder, name), root))
  if not paths:
    raise FileNotFoundError(
        f'Image folder {root!r} holds no {"/".join(EXTENSIONS)} files (searched '
        'recursively); set --config.data.path to a folder of images.')
  return sorted(paths)


def record_unreadable(root, relpath, error):
  """Counts an unreadable file and logs the running count (once per file)."""
  with _unreadable_lock:
    seen = _unreadable.setdefault(root, set())
    if relpath in seen:
      return  # already reported; the file comes back every epoch
    seen.add(relpath)
    count = len(seen)
    examples = sorted(seen)[:_WARN_NAMES]
  # Warn for the first few and then at powers of two so a folder with many
  # broken files does not flood the log.
  if count <= 10 or count & (count - 1) == 0:
    logging.warning(
        'Image folder %s: skipped %d unreadable file(s) so far (e.g. %s); '
        'latest %s: %s: %s', root, count, ', '.join(examples), relpath,
        type(error).__name__, error)


def unreadable_count(root):
  """Returns how many distinct unreadable files this process has met under root."""
  with _unreadable_lock:
    return len(_unreadable.get(root, ()))


def decode(root, relpath, *, size, channels, crop):
  """Decodes, crops and resizes one file.

  Args:
    root: the image folder.
    relpath: path of the file relative to root.
    size: (H, W) output size.
    channels: 1 or 3.
    crop: one of images.CROPS.

  Returns:
    uint8[H, W, channels], or None when the file cannot be read (counted and
    logged by `record_unreadable`).
  """
  try:
    with Image.open(os.path.join(root, relpath)) as image:
      return images_lib.fit_image(image, size=size, channels=channels,
                                  crop=crop)
  # Any failure means the file is unusable (PIL raises OSError, ValueError,
  # SyntaxError, struct.error, ... for different kinds of damage).
  except Exception as error:  # pylint: disable=broad-except
    record_unreadable(root, relpath, error)
    return None
