"""TFDS image datasets through `tfds.data_source` (array_record, no TensorFlow).

`tfds.data_source` gives random access to a dataset prepared in the
array_record format; records are decoded with numpy/Pillow, so grain workers
can read them without TensorFlow. gan_jax never downloads: a dataset that is
missing, or prepared only as TFRecord, raises at once with the command that
prepares it (TFDS' own download path can spend minutes retrying without a
network, so it is never reached).

Tested names: mnist, fashion_mnist, cifar10, svhn_cropped, celeb_a; any TFDS
dataset with an 'image' feature works. Class labels come from a 'label'
feature (a `tfds.features.ClassLabel`: mnist, cifar10, svhn_cropped, ... but
not celeb_a).

tensorflow_datasets is imported inside the functions that need it: it takes
seconds to import and only this source uses it.
"""

import difflib
import logging
import re

from gan_jax import errors
from gan_jax.data import images as images_lib

TESTED_DATASETS = ('mnist', 'fashion_mnist', 'cifar10', 'svhn_cropped',
                   'celeb_a')
IMAGE_KEY = 'image'
LABEL_KEY = 'label'


class ImageReader:
  """index -> uint8[H, W, C]: one record's image, cropped and resized (picklable)."""

  def __init__(self, source, fit):
    self._source = source
    self._fit = fit

  def __call__(self, index):
    return images_lib.fit_image(self._source[int(index)][IMAGE_KEY],
                                **self._fit)


class LabelReader:
  """index -> int: one record's class label (decodes the whole record)."""

  def __init__(self, source):
    self._source = source

  def __call__(self, index):
    return int(self._source[int(index)][LABEL_KEY])


def _base_name(name):
  return name.split(':')[0].split('/')[0]


def _prepare_help(builder, name, data_dir):
  """The commands that prepare `name` in array_record; for a data set TFDS cannot
  download (its `builder` has manual download instructions, e.g. ImageNet's), where
  to get its files first and the --manual_dir that points TFDS at them."""
  manual_instructions = getattr(builder, 'MANUAL_DOWNLOAD_INSTRUCTIONS', None)
  base = _base_name(name)
  data_dir_arg = f", data_dir='{data_dir}'" if data_dir else ''
  data_dir_flag = f' --data_dir={data_dir}' if data_dir else ''
  if manual_instructions:
    lines = [
        f'TFDS cannot download {base}: get its files yourself, as its TFDS builder says:',
        *('  ' + line.strip() for line in manual_instructions.strip().splitlines()
          if line.strip()),
        'then prepare it once from the folder that holds them (TFDS needs TensorFlow to '
        'prepare image datasets: pip install -e ".[tf]"):',
        f'  tfds build {base} --manual_dir=/path/to/those/files --file_format=array_record'
        f'{data_dir_flag}',
    ]
  else:
    lines = [
        'Prepare it once on a machine with network access (TFDS needs TensorFlow to '
        'prepare image datasets: pip install -e ".[tf]"):',
        '  python -c "import tensorflow_datasets as tfds; '
        f"tfds.builder('{name}'{data_dir_arg}).download_and_prepare("
        "file_format='array_record')\"",
        'or with the TFDS command line:',
        f'  tfds build {base} --file_format=array_record{data_dir_flag}',
    ]
  lines.append('then point --config.data.data_dir at that data_dir (or set $TFDS_DATA_DIR).')
  if base == 'celeb_a':
    # No crop in the advice: each config chose its own (dcgan's 108 px, sngan's 178 px).
    lines.append(
        "CelebA's TFDS download (Google Drive) often fails on quota; instead "
        'unpack img_align_celeba.zip and use it as an image folder: '
        '--config.data.source=image_folder '
        '--config.data.path=/path/to/img_align_celeba')
  return '\n'.join(lines)


class _WithoutMissingFolderWarnings(logging.Filter):
  """Drops TFDS's warning that a version folder has no dataset_info.json, logged while
  it looks for a prepared version (also when there is none at all): the missing data
  is reported once, with the commands that prepare it."""

  def filter(self, record):
    return 'has no dataset_info.json' not in record.getMessage()


_WITHOUT_MISSING_FOLDER_WARNINGS = _WithoutMissingFolderWarnings()


def _builder(name, data_dir):
  """Returns the TFDS builder of `name`, never preparing or downloading."""
  if not name:
    raise errors.ConfigError(
        'data.source=tfds needs a dataset name: --config.data.name=mnist '
        f'(tested: {list(TESTED_DATASETS)}).')
  # Lazy: TFDS takes seconds to import and only this source needs it.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  # For the process's life: TFDS logs it again whenever it looks (is_prepared, ...).
  logging.getLogger('absl').addFilter(_WITHOUT_MISSING_FOLDER_WARNINGS)
  try:
    return tfds.builder(name, data_dir=data_dir or None)
  except tfds.core.registered.DatasetNotFoundError:
    known = tfds.list_builders(with_community_datasets=False)
    close = difflib.get_close_matches(_base_name(name), known, n=5)
    raise errors.ConfigError(
        f'Unknown TFDS dataset {name!r}. Close matches: {close}; datasets '
        f'tested with gan_jax: {list(TESTED_DATASETS)}; all {len(known)} '
        'names: python -c "import tensorflow_datasets as tfds; '
        'print(tfds.list_builders())". Set --config.data.name.') from None
  # A known dataset with a version, builder config or name string TFDS cannot use; its
  # message lists what there is.
  except (AssertionError, ValueError) as error:
    raise errors.ConfigError(
        f'TFDS cannot use data.name={name!r}: {error} Names look like mnist, '
        'mnist:3.0.1 (a version) or lsun/bedroom (a builder config); set '
        '--config.data.name.') from None


def _open_error(builder, *, name, split, data_dir):
  """Says why a split of a known dataset would not open (None: not known)."""
  if not builder.is_prepared():
    return errors.MissingFileError(
        f'TFDS dataset {name!r} is not prepared under {builder.data_dir} '
        f'(data_dir={data_dir or "TFDS default"}); gan_jax never downloads '
        'data itself.\n' + _prepare_help(builder, name, data_dir))
  file_format = getattr(builder.info.file_format, 'value',
                        builder.info.file_format)
  if str(file_format) != 'array_record':
    return errors.MissingFileError(
        f'TFDS dataset {name!r} at {builder.data_dir} is prepared as '
        f'{file_format}, but random access (tfds.data_source) needs '
        'array_record. Convert it in place with:\n'
        f'  tfds convert_format --dataset_version_dir={builder.data_dir} '
        '--out_file_format=array_record\n'
        'or prepare it again:\n' + _prepare_help(builder, name, data_dir))
  known = list(builder.info.splits.keys())
  # TFDS split strings combine names with '+' and slice them with [..].
  asked = [re.sub(r'\[.*?\]', '', part).strip() for part in split.split('+')]
  if any(part not in known for part in asked):
    return errors.ConfigError(
        f'TFDS dataset {name!r} has no split {split!r}; its splits: {known} '
        "(slices such as 'train[:90%]' work too). Set --config.data.split "
        '(or --config.eval.reference_split for evaluation).')
  return None


def _bad_slice(name, split, problem):
  """The ConfigError for a split string of known splits that TFDS cannot read or that
  selects nothing (`problem` says which)."""
  return errors.ConfigError(
      f'TFDS dataset {name!r}: split {split!r} {problem}. Use a split name or a '
      "non-empty slice such as 'train[:90%]' or 'train[1000:]' (--config.data.split, "
      'or --config.eval.reference_split for evaluation).')


def open_split(name, *, split, data_dir=''):
  """Opens one split of a prepared TFDS image dataset, never downloading.

  Args:
    name: TFDS name, optionally with config/version ('celeb_a', 'mnist:3.0.1').
    split: TFDS split string ('train', 'test', 'train[:90%]', ...).
    data_dir: TFDS data_dir; '' means TFDS' default ($TFDS_DATA_DIR or
      ~/tensorflow_datasets).

  Returns:
    A picklable TFDS data source: len() records, `source[i]` a dict of numpy
    features with 'image' uint8[h, w, c] (c = 1 or 3 for the tested datasets),
    `source.dataset_info` its metadata.

  Raises:
    errors.ConfigError: for an empty or unknown name (listing close and tested
      names), an unknown split, a slice that selects nothing or cannot be read,
      or a dataset without an 'image' feature.
    errors.MissingFileError: when the dataset is not prepared as array_record
      under data_dir; the message gives the commands that prepare or convert it.
  """
  # Lazy, as in _builder.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = _builder(name, data_dir)
  try:
    # download=False: only opens files that exist; it cannot reach the network.
    source = tfds.data_source(name, split=split, data_dir=data_dir or None,
                              download=False)
  except Exception as error:  # pylint: disable=broad-except
    reason = _open_error(builder, name=name, split=split, data_dir=data_dir)
    if reason is None and isinstance(error, ValueError):
      # Known split names with a slice TFDS cannot parse ('train[:abc]') or that is
      # empty ('train[:0]').
      reason = _bad_slice(name, split, 'does not open as a slice of examples ('
                          + str(error).splitlines()[0].split('. See format')[0] + ')')
    if reason is None:
      raise
    raise reason from error
  try:
    empty = len(source) <= 0
  except ValueError:  # a reversed slice such as 'train[4:2]'
    raise _bad_slice(name, split, 'selects no examples') from None
  if empty:
    raise _bad_slice(name, split, 'selects no examples')
  features = source.dataset_info.features
  if IMAGE_KEY not in features.keys():
    raise errors.ConfigError(
        f'TFDS dataset {name!r} has no {IMAGE_KEY!r} feature (it has '
        f'{list(features.keys())}); gan_jax needs an image dataset such as '
        f'{list(TESTED_DATASETS)}. Set --config.data.name.')
  return source


def no_labels_message(name, features):
  """Returns why a dataset cannot give class labels, or '' when it can.

  Args:
    name: the TFDS name (for the message).
    features: the dataset's `tfds.features.FeaturesDict`.
  """
  if LABEL_KEY in features.keys() and hasattr(features[LABEL_KEY], 'names'):
    return ''
  return (f'TFDS dataset {name!r} has no class-label feature {LABEL_KEY!r} '
          f'(it has {list(features.keys())}), so it cannot give class labels. '
          'Train it without labels, or pick a labelled dataset such as mnist, '
          'cifar10 or svhn_cropped (--config.data.name).')


def label_names(name, *, data_dir=''):
  """Returns a dataset's class names (from its metadata; no data is read).

  Args:
    name: TFDS name.
    data_dir: TFDS data_dir ('' = TFDS' default).

  Returns:
    list[str], the name of class i at position i (mnist: ['0', ..., '9']).

  Raises:
    errors.ConfigError: unknown name, or a dataset without a 'label' feature.
  """
  features = _builder(name, data_dir).info.features
  message = no_labels_message(name, features)
  if message:
    raise errors.ConfigError(message)
  return [str(label) for label in features[LABEL_KEY].names]
