"""pytorch-fid's FID Inception weights: finding, verifying and converting the file.

The weights are pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (the user
downloads it once; nothing is fetched at run time). `find_weights` locates it,
`verify_weights_hash` checks the SHA-256 prefix in its name (torch.hub's
convention), `convert_pytorch_fid_state_dict` maps the torch state dict (read by
`torch_pickle.read_torch_state_dict`) to the Flax variables of
`inception_net.FIDInceptionV3`, and `load_weights` does all three.
"""

import functools
import hashlib
import os
from pathlib import Path
import re

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import errors
from gan_jax.metrics import cache
from gan_jax.metrics import inception_net
from gan_jax.metrics import torch_pickle

WEIGHTS_NAME = 'pt_inception-2015-12-05-6726825d.pth'
WEIGHTS_URL = ('https://github.com/mseitzer/pytorch-fid/releases/download/'
               'fid_weights/' + WEIGHTS_NAME)
WEIGHTS_ENV = 'GAN_JAX_INCEPTION_WEIGHTS'
# torch-fidelity ships the same bytes under another name.
_ALT_WEIGHTS_NAMES = ('weights-inception-2015-12-05-6726825d.pth',)
_OFFICIAL_HASH_PREFIX = '6726825d'
# torch.hub's convention: the hex digits after the last '-' of the file name.
_HASH_IN_NAME = re.compile(r'-([a-f0-9]{8,})\.')


@functools.lru_cache(maxsize=1)
def _variable_shapes():
  """{collection: nested {name: shape}} of the Flax network (traced once)."""
  size = inception_net.INPUT_SIZE
  shapes = jax.eval_shape(lambda: inception_net.FIDInceptionV3().init(
      jax.random.key(0), jnp.zeros((1, size, size, 3), jnp.float32)))
  return jax.tree.map(lambda s: s.shape, shapes,
                      is_leaf=lambda s: isinstance(s, jax.ShapeDtypeStruct))


# Flax leaf -> (torch leaf name, transform from the torch array).
_LEAF_MAP = {
    ('params', 'conv', 'kernel'): ('conv.weight', lambda w: w.transpose(2, 3, 1, 0)),
    ('params', 'bn', 'scale'): ('bn.weight', lambda w: w),
    ('params', 'bn', 'bias'): ('bn.bias', lambda w: w),
    ('batch_stats', 'bn', 'mean'): ('bn.running_mean', lambda w: w),
    ('batch_stats', 'bn', 'var'): ('bn.running_var', lambda w: w),
    ('params', 'fc', 'kernel'): ('weight', lambda w: w.T),
    ('params', 'fc', 'bias'): ('bias', lambda w: w),
}


def convert_pytorch_fid_state_dict(state_dict, *, dtype=None):
  """Maps pytorch-fid's FID InceptionV3 state dict to the Flax network's variables.

  Args:
    state_dict: dict[str, array] with pytorch-fid's 472 keys (conv weights OIHW,
      `fc.weight` (1008, 2048)); `*.num_batches_tracked` entries are ignored.
    dtype: numpy dtype of the result; None keeps the checkpoint's (float32).
      Float64 variables need `jax_enable_x64` to stay float64 on the device.

  Returns:
    {'params': ..., 'batch_stats': ...} nested dicts of numpy arrays for
    `FIDInceptionV3`: conv kernels HWIO, BN scale/bias/mean/var, fc kernel (2048, 1008).

  Raises:
    ValueError: listing missing / unexpected keys or mismatched shapes.
  """
  given = {k: v for k, v in state_dict.items() if not k.endswith('num_batches_tracked')}
  used = set()
  problems = []

  def convert(path, shape):
    collection, *modules, leaf = [p.key for p in path]
    if modules == ['fc']:
      torch_leaf, transform = _LEAF_MAP[(collection, 'fc', leaf)]
      key = 'fc.' + torch_leaf
    else:  # .../<unit>/{conv,bn}/<leaf> <- <unit dotted>.{conv,bn}.<torch leaf>
      torch_leaf, transform = _LEAF_MAP[(collection, modules[-1], leaf)]
      key = '.'.join(modules[:-1]) + '.' + torch_leaf
    if key not in given:
      problems.append(f'missing {key}')
      return None
    used.add(key)
    value = transform(np.asarray(given[key]))
    if value.shape != tuple(shape):
      problems.append(f'{key}: shape {np.shape(given[key])} does not fit {tuple(shape)}')
      return None
    return np.array(value, dtype=dtype or value.dtype, order='C')

  variables = jax.tree.map_with_path(
      convert, _variable_shapes(), is_leaf=lambda s: isinstance(s, tuple))
  unexpected = sorted(set(given) - used)
  if unexpected:
    problems.append(f'unexpected keys {unexpected[:5]}' + (' ...' if len(unexpected) > 5 else ''))
  if problems:
    raise ValueError('Not a pytorch-fid FID InceptionV3 state dict: ' + '; '.join(problems[:8])
                     + (f' (and {len(problems) - 8} more)' if len(problems) > 8 else ''))
  return variables


def file_sha256(path):
  """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def verify_weights_hash(path):
  """Checks a weights file against the SHA-256 prefix in its name (torch.hub style).

  `name-<hex>.pth` must have a SHA-256 starting with <hex>; a name without such
  digits is checked against the official file's prefix 6726825d.

  Returns:
    The file's full hex SHA-256.

  Raises:
    ConfigError: the hash does not match (corrupt, truncated or a different file).
  """
  path = Path(path)
  match = _HASH_IN_NAME.search(path.name)
  expected = match.group(1) if match else _OFFICIAL_HASH_PREFIX
  actual = file_sha256(path)
  if not actual.startswith(expected):
    raise errors.ConfigError(
        f'{path}: SHA-256 starts with {actual[:len(expected)]}, expected {expected} '
        f'({"from its name" if match else "the official " + WEIGHTS_NAME}). The file is '
        f'corrupt, incomplete or not the FID Inception weights: if it is a download of '
        f'them, replace it with a new download of {WEIGHTS_URL}; if it is another file, '
        'give the path of the weights instead.')
  return actual


def _search_folders():
  """Folders searched for the weights (after an explicit path and the env var)."""
  torch_home = os.environ.get('TORCH_HOME') or os.path.join(
      os.environ.get('XDG_CACHE_HOME') or os.path.join('~', '.cache'), 'torch')
  # pytorch-fid and torch-fidelity download through torch.hub into this folder.
  return [cache.cache_dir(), Path(torch_home).expanduser() / 'hub' / 'checkpoints']


def find_weights(path=None, *, origin='the path argument'):
  """Locates the FID Inception weights file.

  Order: `path` (a file, or a folder holding WEIGHTS_NAME); else
  `$GAN_JAX_INCEPTION_WEIGHTS` (same); else the gan_jax cache folder
  (`$GAN_JAX_CACHE_DIR`, `~/.cache/gan_jax`); else torch.hub's checkpoint folder,
  where pytorch-fid / torch-fidelity keep their download.

  Args:
    path: explicit file or folder, or None to search.
    origin: what gave `path` (a config field or flag), named in the error.

  Returns:
    Path of an existing file (its hash is not checked here).

  Raises:
    MissingFileError: saying where it looked, the download URL and where to put it.
  """
  def resolve(p, given_by):
    p = Path(p).expanduser()
    if p.is_dir():
      p = p / WEIGHTS_NAME
    if not p.is_file():
      raise errors.MissingFileError(
          f'FID Inception weights not found at {p} (given by {given_by}). Download '
          f'{WEIGHTS_URL} (about 92 MB) to that path, or fix {given_by}.')
    return p

  if path:
    return resolve(path, origin)
  if os.environ.get(WEIGHTS_ENV):
    return resolve(os.environ[WEIGHTS_ENV], f'${WEIGHTS_ENV}')
  folders = _search_folders()
  for folder in folders:
    for name in (WEIGHTS_NAME,) + _ALT_WEIGHTS_NAMES:
      if (folder / name).is_file():
        return folder / name
  dest = folders[0] / WEIGHTS_NAME
  raise errors.MissingFileError(
      f'FID Inception weights not found in {folders[0]} or {folders[1]}. Download '
      f'{WEIGHTS_URL} (about 92 MB) to {dest} (mkdir -p {dest.parent} && curl -L -o {dest} '
      f'{WEIGHTS_URL}), or point ${WEIGHTS_ENV}, config.eval.inception_weights or '
      '--inception_weights at the file. Offline alternative: --metrics=proxy (or '
      'config.eval.metrics="proxy") for the digits and toy data.')


def load_weights(path=None, *, dtype=None):
  """Finds, verifies (SHA-256 prefix in the name) and converts the FID weights.

  Args:
    path: the `.pth` file or a folder with it; None searches (see `find_weights`).
    dtype: dtype of the returned arrays (None: float32 as stored).

  Returns:
    Flax variables for `FIDInceptionV3` (nested dicts of numpy arrays).

  Raises:
    MissingFileError: no file; the message has the URL and the destination.
    ConfigError: wrong hash.
    ValueError: not the expected state dict.
  """
  return load_weights_with_id(path, dtype=dtype)[0]


def load_weights_with_id(path=None, *, dtype=None, origin='the path argument'):
  """`load_weights`, and what identifies the file: (variables, {'file', 'sha256'}).

  `file` is the file's name, `sha256` its full hash (checked against the prefix in
  the name); `origin` names where `path` came from in a missing-file error.
  """
  found = find_weights(path, origin=origin)
  sha = verify_weights_hash(found)
  variables = convert_pytorch_fid_state_dict(torch_pickle.read_torch_state_dict(found),
                                             dtype=dtype)
  return variables, dict(file=os.path.basename(found), sha256=sha)
