"""The source registry: how each `data.source` opens a split, and its classes.

Every source is reduced to a `Split`: `count` examples addressed by index,
held in memory (digits), read one by one by a picklable reader (tfds, image
folders), or drawn endlessly (toy); plus, where the source has them, class
labels. The pipeline (pipeline.py) only ever sees a `Split`, so adding a
source means one `open` function and one `class_names` function here.
"""

import dataclasses
import functools
import os
from typing import Callable, Optional

import numpy as np

from gan_jax import defaults
from gan_jax import errors
from gan_jax.data import decode
from gan_jax.data import digits as digits_lib
from gan_jax.data import image_folder as folder_lib
from gan_jax.data import images as images_lib
from gan_jax.data import tfds_source
from gan_jax.data import toy as toy_lib

_DEFAULTS = defaults.get_config().data


def field(data_config, name):
  """`data_config.name`, or its default when the config predates the field."""
  return getattr(data_config, name, _DEFAULTS[name])


@dataclasses.dataclass(frozen=True)
class Split:
  """One split of a source. Exactly one of images / reader / sample is set.

  Attributes:
    description: names the split in logs and iterator states
      ('digits:train', 'tfds:mnist:train', 'image_folder:/data/x', 'toy:ring').
    count: number of examples (0 for generated data).
    images: in-memory examples f32[count, H, W, C] in [-1, 1].
    reader: picklable index -> uint8[H, W, C], or None for an unreadable
      example (then it also has `unreadable_error`, see decode.py).
    sample: (n, rng) -> f32[n, 2], fresh points (toy).
    read_labels: int64[n] indices -> int32[n] class labels in
      0..num_classes-1; None when the split has no labels.
    no_labels: why there are no labels and what to do (when read_labels is
      None).
    listing: what names the examples, in index order, on this host (a folder's file
      paths as written, a TFDS version): equal listings on two hosts mean the same
      examples.
  """
  description: str
  count: int = 0
  images: Optional[np.ndarray] = None
  reader: Optional[Callable] = None
  sample: Optional[Callable] = None
  read_labels: Optional[Callable] = None
  no_labels: str = ''
  listing: str = ''

  def labels(self, indices):
    """int32[n] labels of examples `indices`; ConfigError when there are none."""
    if self.read_labels is None:
      raise errors.ConfigError(self.no_labels)
    return self.read_labels(np.asarray(indices, np.int64))


@dataclasses.dataclass(frozen=True)
class Source:
  """What the registry holds for one `data.source` name.

  Attributes:
    open: (data_config, *, split, data_shape) -> Split.
    class_names: (data_config) -> list[str]; ConfigError without classes.
  """
  open: Callable
  class_names: Callable


def _array_labels(labels):
  labels = np.asarray(labels, np.int32)
  return lambda indices: labels[indices]


def _image_fit(data_config, data_shape, source):
  """Returns the fit_image options {size, channels, crop} for a data shape."""
  shape = tuple(int(d) for d in data_shape)
  if len(shape) != 3 or shape[2] not in (1, 3) or min(shape) < 1:
    raise errors.ConfigError(
        f'data.source={source} makes images: data_shape must be (H, W, C) with '
        f'C in (1, 3), got {tuple(data_shape)}. Check config.model.resolution '
        'and config.model.channels.')
  crop = field(data_config, 'crop')
  images_lib.check_crop(crop)
  return dict(size=shape[:2], channels=shape[2], crop=crop)


# ---- digits ---------------------------------------------------------------------


def _open_digits(data_config, *, split, data_shape):
  fit = _image_fit(data_config, data_shape, 'digits')
  images = digits_lib.digits_images(split, size=fit['size'])
  if fit['channels'] == 3:
    images = np.repeat(images, 3, axis=-1)
  return Split(description=f'digits:{split}', count=len(images),
               images=images, listing=f'digits:{split}:{len(images)}',
               read_labels=_array_labels(digits_lib.digits_split(split)[1]))


def _digits_classes(data_config):
  del data_config
  return list(digits_lib.CLASS_NAMES)


# ---- tfds -------------------------------------------------------------------------


def _read_tfds_labels(reader, indices, *, num_workers, what):
  # Reading a label decodes its whole record, so labels take a parallel pass.
  return decode.map_examples(reader, indices, example_shape=(), dtype=np.int32,
                             num_workers=num_workers, what=what)[0]


def _open_tfds(data_config, *, split, data_shape):
  fit = _image_fit(data_config, data_shape, 'tfds')
  name = field(data_config, 'name')
  source = tfds_source.open_split(name, split=split,
                                  data_dir=field(data_config, 'data_dir'))
  description = f'tfds:{name}:{split}'
  no_labels = tfds_source.no_labels_message(name, source.dataset_info.features)
  read_labels = None if no_labels else functools.partial(
      _read_tfds_labels, tfds_source.LabelReader(source),
      num_workers=int(field(data_config, 'num_workers')),
      what=f'{description} labels')
  return Split(description=description, count=len(source),
               reader=tfds_source.ImageReader(source, fit),
               read_labels=read_labels, no_labels=no_labels,
               listing=f'{description}:{source.dataset_info.version}:{len(source)}')


def _tfds_classes(data_config):
  return tfds_source.label_names(field(data_config, 'name'),
                                 data_dir=field(data_config, 'data_dir'))


# ---- image folder ---------------------------------------------------------------


def _folder_images(data_config):
  """Returns (absolute root, sorted image paths relative to it)."""
  path = field(data_config, 'path')
  root = os.path.abspath(os.path.expanduser(path)) if path else ''
  return root, folder_lib.list_images(root)


def _open_folder(data_config, *, split, data_shape):
  fit = _image_fit(data_config, data_shape, 'image_folder')
  root, relpaths = _folder_images(data_config)
  if split not in ('train', ''):
    # Said, not refused: configs written for a data set's splits (sngan_stl10's
    # 'unlabelled', a 'test' reference) stay usable on a folder, and resumable.
    folder_lib.warn_once(root, f'split {split}', 'Image folder %s has no splits: split %r '
                         '(data.split or eval.reference_split) reads every image under it. '
                         'Point --config.data.path at the folder of one split to use that '
                         'split.', root, split)
  folder_lib.warn_about_images(root, relpaths, channels=fit['channels'], crop=fit['crop'])
  read_labels, no_labels = None, ''
  try:
    read_labels = _array_labels(folder_lib.class_labels(root, relpaths)[1])
  except errors.ConfigError as error:
    no_labels = str(error)  # only an error if labels are asked for
  splits = folder_lib.split_folders(relpaths)
  if len(splits) > 1:
    folder_lib.warn_once(root, 'splits', 'Image folder %s holds split folders %s: the images '
                         'of all of them are read. Point --config.data.path at one of them '
                         'to use one split.', root, splits)
  return Split(description=f'image_folder:{root}', count=len(relpaths),
               reader=folder_lib.FolderReader(root, relpaths, fit),
               read_labels=read_labels, no_labels=no_labels,
               listing='\n'.join(relpaths))


def _folder_classes(data_config):
  return folder_lib.class_labels(*_folder_images(data_config))[0]


# ---- toy ----------------------------------------------------------------------------

_TOY_NO_LABELS = (
    'data.source=toy draws 2-D points from a Gaussian mixture and has no class '
    'labels; train it without labels (an unconditional GAN).')


def _open_toy(data_config, *, split, data_shape):
  del split  # every split draws from the same mixture
  if tuple(int(d) for d in data_shape) != (2,):
    raise errors.ConfigError(
        f'data.source=toy makes 2-D points: data_shape must be (2,), got '
        f'{tuple(data_shape)}. Set config.model.channels=2.')
  name = field(data_config, 'toy')
  toy_lib.mixture(name)  # unknown names fail here, not in a grain thread
  return Split(description=f'toy:{name}',
               sample=functools.partial(toy_lib.sample_mixture, name),
               no_labels=_TOY_NO_LABELS)


def _toy_classes(data_config):
  del data_config
  raise errors.ConfigError(_TOY_NO_LABELS)


SOURCES = {
    'digits': Source(open=_open_digits, class_names=_digits_classes),
    'tfds': Source(open=_open_tfds, class_names=_tfds_classes),
    'image_folder': Source(open=_open_folder, class_names=_folder_classes),
    'toy': Source(open=_open_toy, class_names=_toy_classes),
}


def get(name):
  """Returns the `Source` registered as `name`; ConfigError listing the known ones."""
  if name not in SOURCES:
    raise errors.ConfigError(
        f'Unknown data source {name!r}; known: {list(SOURCES)}. '
        'Set --config.data.source.')
  return SOURCES[name]


def open_split(data_config, *, split, data_shape):
  """Opens `split` of the config's source (see `Split`)."""
  return get(field(data_config, 'source')).open(
      data_config, split=split, data_shape=data_shape)


def class_names(data_config):
  """Returns the class names of the config's source, class i at position i.

  digits: '0'..'9'; tfds: the 'label' feature's names; image_folder: the
  sorted first-level sub-folders. Reads metadata or lists files only.

  Args:
    data_config: config.data.

  Returns:
    list[str].

  Raises:
    errors.ConfigError: for a source without classes (toy, a TFDS dataset
      without a 'label' feature, an image folder with images in its root).
  """
  return get(field(data_config, 'source')).class_names(data_config)


def num_classes(data_config):
  """Returns the number of classes of the config's source (see `class_names`)."""
  return len(class_names(data_config))
