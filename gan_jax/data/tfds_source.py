"""TFDS image datasets through `tfds.data_source` (array_record, no TensorFlow).

`tfds.data_source` gives random access to a dataset prepared in the
array_record format; records are decoded with numpy/Pillow, so grain workers
can read them without TensorFlow. gan_jax never downloads: a dataset that is
missing, or prepared only as TFRecord, raises at once with the command that
prepares it (TFDS' own download path can spend minutes retrying without a
network, so it is never reached).

Tested names: mnist, fashion_mnist, cifar10, svhn_cropped, celeb_a; any TFDS
dataset with an 'image' feature works.
"""

import difflib

TESTED_DATASETS = ('mnist', 'fashion_mnist', 'cifar10', 'svhn_cropped',
                   'celeb_a')
IMAGE_KEY = 'image'


class TfdsImages:
  """Indexable view of one split's images (picklable for grain workers).

  Attributes:
    name: the TFDS dataset name.
    split: the split string (TFDS slicing such as 'train[:90%]' works).
  """

  def __init__(self, source, *, name, split):
    self._source = source
    self.name = name
    self.split = split

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index):
    """Returns uint8[h, w, c] (c = 1 or 3 for the tested datasets)."""
    return self._source[int(index)][IMAGE_KEY]


def _base_name(name):
  return name.split(':')[0].split('/')[0]


def _prepare_help(name, data_dir):
  base = _base_name(name)
  data_dir_arg = f", data_dir='{data_dir}'" if data_dir else ''
  data_dir_flag = f' --data_dir={data_dir}' if data_dir else ''
  lines = [
      'Prepare it once on a machine with network access (TFDS needs '
      'TensorFlow to prepare image datasets: pip install -e ".[tf]"):',
      '  python -c "import tensorflow_datasets as tfds; '
      f"tfds.builder('{name}'{data_dir_arg}).download_and_prepare("
      "file_format='array_record')\"",
      'or with the TFDS command line:',
      f'  tfds build {base} --file_format=array_record{data_dir_flag}',
      'then point --config.data.data_dir at that data_dir (or set '
      '$TFDS_DATA_DIR).',
  ]
  if base == 'celeb_a':
    lines.append(
        "CelebA's TFDS download (Google Drive) often fails on quota; instead "
        'unpack img_align_celeba.zip and use it as an image folder: '
        '--config.data.source=image_folder '
        '--config.data.path=/path/to/img_align_celeba --config.data.crop=celeba')
  return '\n'.join(lines)


def _unknown_name_error(name):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  known = tfds.list_builders(with_community_datasets=False)
  close = difflib.get_close_matches(_base_name(name), known, n=5)
  return ValueError(
      f'Unknown TFDS dataset {name!r}. Close matches: {close}; datasets tested '
      f'with gan_jax: {list(TESTED_DATASETS)}; all {len(known)} names: '
      'python -c "import tensorflow_datasets as tfds; '
      'print(tfds.list_builders())". Set --config.data.name.')


def open_split(name, *, split, data_dir=''):
  """Opens one split of a prepared TFDS image dataset, never downloading.

  Args:
    name: TFDS name, optionally with config/version ('celeb_a', 'mnist:3.0.1').
    split: TFDS split string ('train', 'test', 'train[:90%]', ...).
    data_dir: TFDS data_dir; '' means TFDS' default ($TFDS_DATA_DIR or
      ~/tensorflow_datasets).

  Returns:
    A `TfdsImages` with len() examples of uint8[h, w, c] images.

  Raises:
    ValueError: for an empty or unknown name (listing close and tested
      names), or a dataset without an 'image' feature.
    FileNotFoundError: when the dataset is not prepared as array_record under
      data_dir; the message gives the commands that prepare or convert it.
  """
  if not name:
    raise ValueError(
        'data.source=tfds needs a dataset name: --config.data.name=mnist '
        f'(tested: {list(TESTED_DATASETS)}).')
  # TFDS is imported lazily: it is slow to import and only this source needs it.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  data_dir = data_dir or None
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise _unknown_name_error(name) from None
  try:
    # download=False: only opens files that exist; it cannot reach the network.
    source = tfds.data_source(name, split=split, data_dir=data_dir,
                              download=False)
  except Exception as error:  # pylint: disable=broad-except
    if not builder.is_prepared():
      raise FileNotFoundError(
          f'TFDS dataset {name!r} is not prepared under {builder.data_dir} '
          f'(data_dir={data_dir or "TFDS default"}); gan_jax never downloads '
          'data itself.\n' + _prepare_help(name, data_dir)) from error
    file_format = getattr(builder.info.file_format, 'value',
                          builder.info.file_format)
    if str(file_format) != 'array_record':
      raise FileNotFoundError(
          f'TFDS dataset {name!r} at {builder.data_dir} is prepared as '
          f'{file_format}, but random access (tfds.data_source) needs '
          'array_record. Convert it in place with:\n'
          f'  tfds convert_format --dataset_version_dir={builder.data_dir} '
          '--out_file_format=array_record\n'
          'or prepare it again:\n' + _prepare_help(name, data_dir)
      ) from error
    raise
  features = source.dataset_info.features
  if IMAGE_KEY not in features.keys():
    raise ValueError(
        f'TFDS dataset {name!r} has no {IMAGE_KEY!r} feature (it has '
        f'{list(features.keys())}); gan_jax needs an image dataset such as '
        f'{list(TESTED_DATASETS)}.')
  return TfdsImages(source, name=name, split=split)
