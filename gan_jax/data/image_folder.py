"""A folder of image files (searched recursively) as a dataset, decoded with Pillow.

Files with an extension in `EXTENSIONS` (JPEG, PNG, BMP, WebP, GIF's first frame,
TIFF, PPM / PGM) are listed once, sorted by relative path (so the order, and with it the
shuffle, is the same on every host and run); hidden files and folders (names
starting with '.', e.g. `.ipynb_checkpoints/`) are left out. The class of a file is
its first-level sub-folder (`root/<class>/.../x.jpg`), class names sorted; a folder
with images directly in its root has no classes, and a class sub-folder without
images is no class (a warning names it). Sub-folders that are all named like
splits (`train/`, `test/`, ...) are no classes either: a class-conditional run is
refused and an unconditional one warned, since every split would be trained on.
An image's EXIF orientation (JPEG, PNG, WebP) is applied: a phone photo stored
sideways is read upright (pytorch-fid's and torchvision's loaders do not apply it, so
their FID of such files differs). Decoding happens in grain
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
from PIL import ExifTags
from PIL import Image
from PIL import ImageOps

from gan_jax import errors
from gan_jax.data import images as images_lib

EXTENSIONS = ('.jpg', '.jpeg', '.jpe', '.jfif', '.png', '.bmp', '.webp', '.gif', '.tif', '.tiff',
              '.ppm', '.pgm', '.pbm', '.pnm')
# Image formats a folder may hold that are not listed (camera raw and HDR files need a
# choice of exposure, HEIC and JPEG XL a Pillow plug-in, SVG is no pixels, and the rest
# are rare as training data); a folder holding them gets a warning with their count.
NOT_READ_EXTENSIONS = ('.heic', '.heif', '.avif', '.jp2', '.jxl', '.tga', '.psd', '.exr',
                       '.hdr', '.dng', '.cr2', '.nef', '.arw', '.raw', '.svg', '.ico')
# First-level folder names that mean a data set's splits, not its classes.
SPLIT_FOLDER_NAMES = ('train', 'training', 'test', 'testing', 'val', 'valid', 'validation',
                      'eval', 'dev')
# CelebA's aligned faces, (width, height): the size `crop='celeba'` is made for.
CELEBA_SIZE = (178, 218)
_WARN_NAMES = 3
# `warn_about_images` looks at the first file of every class and the first few files,
# at most this many in all.
_LOOK_AT = 1024
_LOOK_AT_FIRST = 8

# Per process: root -> set of relative paths that failed to decode.
_unreadable = {}
_unreadable_lock = threading.Lock()
# Per process: root -> {class name: number of image files} of folders read with
# classes, and root -> Counter of unreadable files per first-level folder, so that a
# class whose every file is unreadable can be named.
_class_sizes = {}
_unreadable_per_folder = {}
# Per process: (root, warning kind) pairs already warned about, and (root, channels,
# crop) already looked at by `warn_about_images` (a run opens a folder more than once:
# training, then evaluation).
_warned = set()
_looked_at = set()


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
  paths, seen, not_read = [], set(), collections.Counter()
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
      if name.startswith('.'):
        continue
      if name.lower().endswith(EXTENSIONS):
        paths.append(os.path.relpath(os.path.join(folder, name), root))
      elif name.lower().endswith(NOT_READ_EXTENSIONS):
        not_read[os.path.splitext(name)[1].lower()] += 1
  if not_read:
    warn_once(root, 'not_read', 'Image folder %s: %s file(s) are not read (formats read: %s); '
              'convert them to PNG or JPEG to train on them.', root,
              ', '.join(f'{count} {ext}' for ext, count in sorted(not_read.items())),
              '/'.join(EXTENSIONS))
  if not paths:
    raise errors.MissingFileError(
        f'Image folder {root!r} holds no {"/".join(EXTENSIONS)} files (searched '
        'recursively); set --config.data.path to a folder of images.')
  return sorted(paths)


def first_folder(relpath):
  """The first-level folder of a path relative to an image folder ('' for a file
  lying directly in it): the image's class in a folder read with classes."""
  return relpath.split(os.sep, 1)[0] if os.sep in relpath else ''


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
  folders = [first_folder(path) for path in relpaths]
  loose = [path for path, folder in zip(relpaths, folders) if not folder]
  if loose:
    raise errors.ConfigError(
        f'Image folder {root!r} has {len(loose)} image(s) directly in it (e.g. '
        f'{loose[0]}), so they have no class. For class labels put each '
        "class's images in its own sub-folder: <path>/<class name>/*.jpg "
        '(the class is the first-level sub-folder).')
  splits = split_folders(relpaths)
  if splits:
    training = [name for name in splits if name.lower().startswith('train')]
    raise errors.ConfigError(
        f'Image folder {root!r} holds split folders {splits}, not classes. Point '
        f'--config.data.path at one split, e.g. {os.path.join(root, (training or splits)[0])}, '
        'whose sub-folders are the classes.')
  names, labels = np.unique(folders, return_inverse=True)
  names = [str(name) for name in names]
  with _unreadable_lock:
    _class_sizes[root] = dict(zip(names, np.bincount(labels, minlength=len(names)).tolist()))
  empty = sorted(entry.name for entry in os.scandir(root)
                 if entry.is_dir() and not entry.name.startswith('.')
                 and entry.name not in names)
  if empty:
    warn_once(root, 'empty', 'Image folder %s: sub-folder(s) %s hold no %s files, so they '
              'are no class; the %d classes are %s.', root, empty, '/'.join(EXTENSIONS),
              len(names), names)
  return names, labels.astype(np.int32)


def split_folders(relpaths):
  """The first-level folders of an image folder when all of them are named like splits.

  Args:
    relpaths: image paths relative to the folder, as from `list_images`.

  Returns:
    The sorted first-level folder names when each is one of SPLIT_FOLDER_NAMES
    (case-insensitive) and no image lies directly in the folder (e.g. ['test',
    'train'] for `data/{train,test}/<class>/x.jpg`); otherwise [].
  """
  firsts = {first_folder(path) for path in relpaths}
  if not firsts or '' in firsts:
    return []
  if all(name.lower() in SPLIT_FOLDER_NAMES for name in firsts):
    return sorted(firsts)
  return []


def warn_once(root, kind, message, *args):
  """Logs `message % args` as a warning unless this folder already had one of `kind`."""
  if (root, kind) in _warned:
    return
  _warned.add((root, kind))
  logging.warning(message, *args)


def _files_to_look_at(relpaths):
  """The first file of each first-level folder, then the first files: at most _LOOK_AT,
  so that a class unlike the first one is looked at too."""
  firsts, seen = [], set()
  for path in relpaths:
    folder = first_folder(path)
    if folder not in seen:
      seen.add(folder)
      firsts.append(path)
  return list(dict.fromkeys(firsts + relpaths[:_LOOK_AT_FIRST]))[:_LOOK_AT]


def warn_about_images(root, relpaths, *, channels, crop):
  """Warns (once per folder and process) about what decoding does to these files that
  the user may not expect, judged on the first file of every class (first-level
  folder) and the first few files, at most _LOOK_AT in all:

  * colour images under a model of `channels` = 1 are made grey (grey pictures
    stored as RGB do not count);
  * transparent pixels train as whatever colour is stored under them (alpha is
    dropped, as torchvision's RGB conversion does);
  * `crop` = 'celeba' on images that are not CelebA's 178x218 keeps a fixed
    108x108 centre box, whatever their size.

  Files are decoded only for the checks that need pixels (colour, transparency).

  Args:
    root: the image folder.
    relpaths: its image paths, as from `list_images`.
    channels: the model's image channels (1 or 3).
    crop: data.crop, one of images.CROPS.
  """
  if (root, channels, crop) in _looked_at:
    return  # a run opens a folder more than once (training, then evaluation)
  _looked_at.add((root, channels, crop))
  check_colour, check_size, check_alpha = channels == 1, crop == 'celeba', True
  for relpath in _files_to_look_at(relpaths):
    if not (check_colour or check_size or check_alpha):
      break
    path = os.path.join(root, relpath)
    try:
      with Image.open(path) as image:
        size = _upright_size(image) if check_size else None
        transparent = check_alpha and _has_transparent_pixels(image)
        rgb = np.asarray(image.convert('RGB'), np.int16) if check_colour else None
    except Exception:  # pylint: disable=broad-except
      continue  # unreadable files are reported where they are decoded
    if rgb is not None and (np.any(rgb[..., 0] != rgb[..., 1])
                            or np.any(rgb[..., 1] != rgb[..., 2])):
      check_colour = False
      warn_once(root, 'colour', '%s has colour and model.channels=1: every image is '
                'converted to grey (luma). Set --config.model.channels=3 to train in colour.',
                path)
    if transparent:
      check_alpha = False
      warn_once(root, 'alpha', '%s has transparent pixels: the alpha channel is dropped, so '
                'they train as the colour stored under them. Composite the images onto a '
                'background first if that colour is not what you want.', path)
    if size is not None and size != CELEBA_SIZE:
      check_size = False
      warn_once(root, 'celeba', "%s is %dx%d, and data.crop='celeba' keeps the central "
                "108x108 box made for CelebA's aligned %dx%d faces, whatever the image's "
                "size. Set --config.data.crop=center for other images.",
                path, size[0], size[1], *CELEBA_SIZE)


def _has_transparent_pixels(image):
  if image.mode not in ('RGBA', 'LA', 'PA', 'La', 'RGBa') and 'transparency' not in image.info:
    return False
  return image.convert('RGBA').getchannel('A').getextrema()[0] < 255


def _exif_orientation(image):
  try:
    return image.getexif().get(ExifTags.Base.Orientation, 1)
  except Exception:  # pylint: disable=broad-except
    return 1  # damaged EXIF: the pixels may still be fine


def _upright_size(image):
  """(width, height) of the image as it is shown: EXIF orientations 5-8 turn it."""
  width, height = image.size
  return (height, width) if _exif_orientation(image) in (5, 6, 7, 8) else (width, height)


def upright(image):
  """The image turned as its EXIF orientation tag says (cameras and phones store pixels
  as the sensor read them); the image itself when there is no tag.

  Args:
    image: an open PIL image (any mode).

  Returns:
    A PIL image, turned or mirrored for orientations 2-8 (width and height swap for
    5-8); `image` itself for orientation 1 or none.
  """
  if _exif_orientation(image) in (2, 3, 4, 5, 6, 7, 8):
    return ImageOps.exif_transpose(image)
  return image


def record_unreadable(root, relpath, error):
  """Counts an unreadable file and logs the running count (once per file)."""
  with _unreadable_lock:
    seen = _unreadable.setdefault(root, set())
    if relpath in seen:
      return  # already reported; the file comes back every epoch
    seen.add(relpath)
    count = len(seen)
    examples = sorted(seen)[:_WARN_NAMES]
    class_name = first_folder(relpath)
    lost = _unreadable_per_folder.setdefault(root, collections.Counter())
    lost[class_name] += 1
    class_size = _class_sizes.get(root, {}).get(class_name)
    class_lost = class_size is not None and class_size == lost[class_name]
  if class_lost:
    # The class still exists for G (labels of fakes are drawn over every class), but
    # D never sees a real image of it.
    logging.warning('Image folder %s: every one of the %d image file(s) under %r is '
                    'unreadable, so the run sees no real image from that sub-folder (in a '
                    'class-conditional run: of that class); replace the files, or move the '
                    'folder out of %s.', root, class_size, class_name, root)
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
      return images_lib.fit_image(upright(image), size=size, channels=channels,
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

  def example_name(self, index):
    """The path of example `index`, for messages."""
    return os.path.join(self.root, self._relpaths[int(index)])

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
