"""A folder of image files (searched recursively) as a dataset, decoded with Pillow.

Files with an extension in `EXTENSIONS` (JPEG, PNG, BMP, WebP, GIF's first frame,
TIFF) are listed once, sorted by relative path (so the order, and with it the
shuffle, is the same on every host and run); hidden files and folders (names
starting with '.', e.g. `.ipynb_checkpoints/`) are left out. The class of a file is
its first-level sub-folder (`root/<class>/.../x.jpg`), class names sorted; a folder
with images directly in its root has no classes, and a class sub-folder without
images is no class (a warning names it). Decoding happens in grain
threads or worker processes (see decode.py: once into RAM, or every batch). A
file Pillow cannot read is skipped: left out of the in-RAM cache or, when
decoding every batch, replaced by the next readable file of the same shard.
Each process logs a warning with the running count of unreadable files and a
few of their names, and names a class whose every file is unreadable; a folder
where nothing can be read is an error.
"""

import collections
import os
import threading

from absl import logging
import numpy as np
from PIL import Image

from gan_jax import errors
from gan_jax.data import images as images_lib

EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.gif', '.tif', '.tiff')
_WARN_NAMES = 3

# Per process: root -> set of relative paths that failed to decode.
_unreadable = {}
_unreadable_lock = threading.Lock()
# Per process: roots whose image-less class folders were already named (a run reads
# a folder's classes more than once).
_warned_empty = set()
# Per process: root -> {class name: number of image files} of folders read with
# classes, and root -> Counter of unreadable files per first-level folder, so that a
# class whose every file is unreadable can be named.
_class_sizes = {}
_unreadable_per_folder = {}
# Per process: roots already looked at for colour under a one-channel model (a run
# opens a folder more than once: training, then evaluation).
_checked_for_colour = set()


def list_images(root):
  """Lists the image files under a folder.

  Args:
    root: folder searched recursively (symlinked folders are followed).

  Returns:
    Sorted list of paths relative to root, with an extension in EXTENSIONS
    (case-insensitive); hidden files and folders (a name starting with '.') are
    left out.

  Raises:
    errors.ConfigError: when root is ''.
    errors.MissingFileError: when root is missing or holds no such file.
  """
  if not root:
    raise errors.ConfigError(
        'data.source=image_folder needs a folder: '
        '--config.data.path=/path/to/images (e.g. img_align_celeba).')
  if not os.path.isdir(root):
    raise errors.MissingFileError(
        f'Image folder {root!r} does not exist or is not a folder; set '
        '--config.data.path to a folder of images.')
  paths, seen = [], set()
  for folder, subfolders, names in os.walk(root, followlinks=True):
    # A folder reached again through a symbolic link (a loop, or a second link to it)
    # is listed once, under the path a sorted depth-first walk reaches first.
    real = os.path.realpath(folder)
    if real in seen:
      subfolders[:] = []
      continue
    seen.add(real)
    # Hidden entries are tools' (notebook checkpoints, thumbnails), not data.
    subfolders[:] = sorted(name for name in subfolders if not name.startswith('.'))
    for name in names:
      if name.lower().endswith(EXTENSIONS) and not name.startswith('.'):
        paths.append(os.path.relpath(os.path.join(folder, name), root))
  if not paths:
    raise errors.MissingFileError(
        f'Image folder {root!r} holds no {"/".join(EXTENSIONS)} files (searched '
        'recursively); set --config.data.path to a folder of images.')
  return sorted(paths)


def class_labels(root, relpaths):
  """Returns the classes of a folder's images: their first-level sub-folders.

  Args:
    root: the image folder (for the error message).
    relpaths: paths relative to root, as from `list_images`.

  Returns:
    (class_names, labels): the sorted sub-folder names that hold images, and
    int32[len(relpaths)] in 0..len(class_names)-1.

  Raises:
    errors.ConfigError: when some images lie directly in root (no class).
  """
  parts = [path.split(os.sep, 1) for path in relpaths]
  loose = [path for path, part in zip(relpaths, parts) if len(part) == 1]
  if loose:
    raise errors.ConfigError(
        f'Image folder {root!r} has {len(loose)} image(s) directly in it (e.g. '
        f'{loose[0]}), so they have no class. For class labels put each '
        "class's images in its own sub-folder: <path>/<class name>/*.jpg "
        '(the class is the first-level sub-folder).')
  names, labels = np.unique([part[0] for part in parts], return_inverse=True)
  names = [str(name) for name in names]
  with _unreadable_lock:
    _class_sizes[root] = dict(zip(names, np.bincount(labels, minlength=len(names)).tolist()))
  empty = sorted(entry.name for entry in os.scandir(root)
                 if entry.is_dir() and not entry.name.startswith('.')
                 and entry.name not in names)
  if empty and root not in _warned_empty:
    _warned_empty.add(root)
    logging.warning('Image folder %s: sub-folder(s) %s hold no %s files, so they are no '
                    'class; the %d classes are %s.', root, empty, '/'.join(EXTENSIONS),
                    len(names), names)
  return names, labels.astype(np.int32)


def warn_if_colour_made_grey(root, relpaths, *, channels, look_at=8):
  """Warns once per folder when a model of `channels` = 1 would turn its colour images
  grey, naming the first of the first `look_at` files whose pixels have colour (grey
  pictures stored as RGB do not count). Each folder is looked at once per process."""
  if channels != 1 or root in _checked_for_colour:
    return
  _checked_for_colour.add(root)
  for relpath in relpaths[:look_at]:
    try:
      with Image.open(os.path.join(root, relpath)) as image:
        rgb = np.asarray(image.convert('RGB'), np.int16)
    except (OSError, ValueError):
      continue  # unreadable files are reported where they are decoded
    if np.any(rgb[..., 0] != rgb[..., 1]) or np.any(rgb[..., 1] != rgb[..., 2]):
      logging.warning('%s has colour and model.channels=1: every image is converted to '
                      'grey (luma). Set --config.model.channels=3 to train in colour.',
                      os.path.join(root, relpath))
      return


def record_unreadable(root, relpath, error):
  """Counts an unreadable file and logs the running count (once per file)."""
  with _unreadable_lock:
    seen = _unreadable.setdefault(root, set())
    if relpath in seen:
      return  # already reported; the file comes back every epoch
    seen.add(relpath)
    count = len(seen)
    examples = sorted(seen)[:_WARN_NAMES]
    class_name = relpath.split(os.sep, 1)[0]
    lost = _unreadable_per_folder.setdefault(root, collections.Counter())
    lost[class_name] += 1
    class_size = _class_sizes.get(root, {}).get(class_name)
    class_lost = class_size is not None and class_size == lost[class_name]
  if class_lost:
    # The class still exists for G (labels of fakes are drawn over every class), but
    # D never sees a real image of it.
    logging.warning('Image folder %s: every one of the %d image file(s) of class %r is '
                    'unreadable, so the run has no real image of that class; replace the '
                    'files, or move the folder out of %s.', root, class_size, class_name, root)
  # Warn for the first few and then at powers of two so a folder with many
  # broken files does not flood the log.
  if count <= 10 or count & (count - 1) == 0:
    logging.warning(
        'Image folder %s: skipped %d unreadable file(s) so far (e.g. %s); '
        'latest %s: %s: %s', root, count, ', '.join(examples), relpath,
        type(error).__name__, error)


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


class FolderReader:
  """index -> uint8[H, W, C], or None for an unreadable file (picklable).

  Attributes:
    root: the image folder.
  """

  def __init__(self, root, relpaths, fit):
    self.root = root
    self._relpaths = relpaths
    self._fit = fit

  def __call__(self, index):
    return decode(self.root, self._relpaths[int(index)], **self._fit)

  def unreadable_error(self, indices):
    """The error for files that were all unreadable.

    Args:
      indices: int[n] the files tried, none of them readable.

    Returns:
      An `errors.MissingFileError` naming the folder, the count and an example.
    """
    return errors.MissingFileError(
        f'Image folder {self.root!r}: none of {len(indices)} image files tried '
        f'(of {len(self._relpaths)}) could be read, e.g. '
        f'{self._relpaths[int(indices[0])]} (the warnings above give the '
        "decoder's errors). Replace the broken files, or set "
        '--config.data.path to a folder of readable images.')
