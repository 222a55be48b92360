"""pytorch-fid's FID InceptionV3 in Flax, and a torch-free reader for its weights.

The network reproduces `pytorch_fid.inception.InceptionV3([3])` (pytorch-fid
0.3.0, `use_fid_inception=True`): bilinear resize to 299x299 (align_corners=False,
no antialiasing), the FID variants of the Inception blocks (average pools that do
not count padding; a max pool in Mixed_7c's pool branch), BatchNorm eps 1e-3, and a
global average pool giving the 2048-d pool3 features. `logits` are torch-fidelity's
`logits_unbiased`: pool3 @ fc.weight^T without the bias.

Weights: pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`, read by
`read_torch_state_dict` (a restricted unpickler; no torch, never runs code from the
file) and mapped to Flax by `convert_pytorch_fid_state_dict`; `load_weights`
finds, verifies and converts the file.

Typical use:
  variables = load_weights()                       # or load_weights('/path/to.pth')
  feats = extract_features(variables, images)      # images f32[N, H, W, 3] in [-1, 1]
  feats['pool3']  # f32[N, 2048]
"""

import collections
import functools
import hashlib
import logging
import os
from pathlib import Path
import pickle
import re
import time
import zipfile

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from gan_jax import parallel
from gan_jax.metrics import cache

WEIGHTS_NAME = 'pt_inception-2015-12-05-6726825d.pth'
WEIGHTS_URL = ('https://github.com/mseitzer/pytorch-fid/releases/download/'
               'fid_weights/' + WEIGHTS_NAME)
WEIGHTS_ENV = 'GAN_JAX_INCEPTION_WEIGHTS'
# torch-fidelity ships the same bytes under another name.
_ALT_WEIGHTS_NAMES = ('weights-inception-2015-12-05-6726825d.pth',)
_OFFICIAL_HASH_PREFIX = '6726825d'
# torch.hub's convention: the hex digits after the last '-' of the file name.
_HASH_IN_NAME = re.compile(r'-([a-f0-9]{8,})\.')

INPUT_SIZE = 299
POOL3_DIM = 2048
NUM_CLASSES = 1008
BN_EPSILON = 1e-3  # pytorch-fid's BasicConv2d, not torch's default 1e-5.
# Bumped whenever a change here could change the features, so cached reference
# statistics computed by an older version are not reused.
FEATURES_VERSION = 'pytorch-fid-0.3.0-inception-v3-pool3/v1'


# ----------------------------------------------------------------------------
# Torch-free .pth reader
# ----------------------------------------------------------------------------

class UnsafeCheckpointError(pickle.UnpicklingError, ValueError):
  """A checkpoint's pickle asks for something other than tensors and dicts.

  Also a ValueError, so callers that treat any bad file as a ValueError catch it.
  """


# torch storage class name -> numpy dtype name ('bfloat16' comes from ml_dtypes,
# which jax depends on).
_STORAGE_DTYPES = {
    'FloatStorage': 'float32',
    'DoubleStorage': 'float64',
    'HalfStorage': 'float16',
    'BFloat16Storage': 'bfloat16',
    'LongStorage': 'int64',
    'IntStorage': 'int32',
    'ShortStorage': 'int16',
    'CharStorage': 'int8',
    'ByteStorage': 'uint8',
    'BoolStorage': 'bool',
}


class _StorageType:
  """Stand-in for a `torch.<X>Storage` class: it only carries the dtype."""

  def __init__(self, name):
    self.name = name
    if _STORAGE_DTYPES[name] == 'bfloat16':
      import ml_dtypes  # pylint: disable=g-import-not-at-top
      self.dtype = np.dtype(ml_dtypes.bfloat16)
    else:
      self.dtype = np.dtype(_STORAGE_DTYPES[name])

  def __repr__(self):
    return f'torch.{self.name}'


class _Storage:
  """A flat storage: a 1-d numpy array of the storage's dtype."""

  def __init__(self, array):
    self.array = array


def _as_int_tuple(value, what):
  if not isinstance(value, tuple) or not all(
      isinstance(v, int) and not isinstance(v, bool) for v in value):
    raise UnsafeCheckpointError(f'tensor {what} must be a tuple of ints, got {value!r}')
  return value


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
  """Our version of `torch._utils._rebuild_tensor_v2`: a bounds-checked strided view.

  Args:
    storage: a `_Storage` from the persistent-id loader.
    storage_offset: int, first element of the view.
    size: tuple of ints, the tensor's shape.
    stride: tuple of ints (elements), one per dimension.
    *unused: requires_grad, backward_hooks, metadata (ignored).

  Returns:
    A C-contiguous numpy array that owns its data.
  """
  if not isinstance(storage, _Storage):
    raise UnsafeCheckpointError(f'tensor storage must come from a persistent id, got '
                                f'{type(storage).__name__}')
  if not isinstance(storage_offset, int) or storage_offset < 0:
    raise UnsafeCheckpointError(f'bad storage offset {storage_offset!r}')
  size = _as_int_tuple(size, 'size')
  stride = _as_int_tuple(stride, 'stride')
  if len(size) != len(stride) or any(s < 0 for s in size + stride):
    raise UnsafeCheckpointError(f'bad tensor size {size} / stride {stride}')
  flat = storage.array
  if 0 in size:
    return np.zeros(size, flat.dtype)
  # A view never has more elements than its storage in a state dict; refusing
  # more keeps a crafted file from making us allocate far beyond its own size.
  if int(np.prod(size, dtype=object)) > flat.size:
    raise UnsafeCheckpointError(f'tensor of size {size} is larger than its storage '
                                f'({flat.size} elements)')
  # as_strided does no bounds checking, so a crafted size/stride could read
  # memory outside the storage: check the furthest element first.
  last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
  if last >= flat.size:
    raise UnsafeCheckpointError(
        f'tensor view (offset {storage_offset}, size {size}, stride {stride}) reaches '
        f'element {last} of a storage with {flat.size} elements')
  view = np.lib.stride_tricks.as_strided(
      flat[storage_offset:], shape=size,
      strides=tuple(s * flat.itemsize for s in stride), writeable=False)
  return np.array(view, order='C', copy=True)


def _rebuild_parameter(data, *unused):
  """`torch._utils._rebuild_parameter`: a Parameter is just its tensor here."""
  if not isinstance(data, (np.ndarray, _LazyTensor)):
    raise UnsafeCheckpointError(f'parameter data must be a tensor, got {type(data).__name__}')
  return data


_ALLOWED_GLOBALS = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
  """Unpickles tensors and dicts only; every other global is refused.

  A `.pth` pickle may name any importable callable (`os.system`, `eval`, ...) and
  `torch.load(weights_only=False)` would call it. Here `find_class` is the only
  door to globals, and it returns our own harmless stand-ins for the few names
  a tensor state dict needs.
  """

  def __init__(self, file, *, source, load_storage, rebuild_tensor=None):
    super().__init__(file)
    self._source = source
    self._load_storage = load_storage
    self._globals = dict(_ALLOWED_GLOBALS)
    if rebuild_tensor is not None:  # the legacy reader builds tensors after the pickle
      self._globals[('torch._utils', '_rebuild_tensor_v2')] = rebuild_tensor

  def find_class(self, module, name):
    if (module, name) in self._globals:
      return self._globals[(module, name)]
    if module == 'torch' and name in _STORAGE_DTYPES:
      return _StorageType(name)
    allowed = sorted(f'{m}.{n}' for m, n in _ALLOWED_GLOBALS) + ['torch.<Type>Storage']
    raise UnsafeCheckpointError(
        f'{self._source}: refusing to load the global {module}.{name}. Only a plain '
        f'tensor state dict can be read ({", ".join(allowed)}); this file asks for '
        'something else and could run code if opened with torch.load. Nothing from it '
        'was executed. If you trust the file, convert it to a plain state dict with '
        'torch.save(dict(model.state_dict()), path).')

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == 'storage'):
      raise UnsafeCheckpointError(f'{self._source}: unexpected persistent id {pid!r}')
    storage_type, key, _, numel = pid[1:5]
    if not isinstance(storage_type, _StorageType):
      raise UnsafeCheckpointError(f'{self._source}: bad storage type {storage_type!r}')
    if not isinstance(numel, int) or numel < 0:
      raise UnsafeCheckpointError(f'{self._source}: bad storage size {numel!r}')
    view = pid[5] if len(pid) == 6 else None
    return self._load_storage(storage_type.dtype, str(key), numel, view)


def _check_state_dict(obj, source):
  if not isinstance(obj, dict):
    raise ValueError(f'{source}: expected a state dict (a mapping of names to tensors), '
                     f'got {type(obj).__name__}')
  out = {}
  for k, v in obj.items():
    if not isinstance(k, str) or not isinstance(v, np.ndarray):
      raise ValueError(f'{source}: entry {k!r} is a {type(v).__name__}, not a tensor; '
                       'only flat state dicts {name: tensor} are supported')
    out[k] = v
  return out


def _read_zip_state_dict(path):
  """torch >= 1.6 format: a zip with `<name>/data.pkl` and `<name>/data/<key>`."""
  with zipfile.ZipFile(path) as zf:
    pickles = [n for n in zf.namelist() if n == 'data.pkl' or n.endswith('/data.pkl')]
    if len(pickles) != 1:
      raise ValueError(f'{path}: a torch zip checkpoint has exactly one */data.pkl; '
                       f'found {pickles}')
    prefix = pickles[0][:-len('data.pkl')]
    byteorder = 'little'
    if prefix + 'byteorder' in zf.namelist():
      byteorder = zf.read(prefix + 'byteorder').decode('ascii').strip()
    storages = {}

    def load_storage(dtype, key, numel, view):
      del view  # zip checkpoints express views through the tensor's offset
      if key not in storages:
        name = f'{prefix}data/{key}'
        try:
          info = zf.getinfo(name)
        except KeyError:
          raise ValueError(f'{path}: storage {name} is missing') from None
        nbytes = numel * dtype.itemsize
        # Check the declared size before reading so a crafted archive cannot make
        # us inflate an arbitrarily large member.
        if info.file_size != nbytes:
          raise ValueError(f'{path}: storage {name} has {info.file_size} bytes, '
                           f'expected {numel} x {dtype.itemsize}')
        array = np.frombuffer(zf.read(name), dtype=dtype.newbyteorder(
            '<' if byteorder == 'little' else '>'))
        storages[key] = _Storage(array.astype(dtype, copy=False))
      return storages[key]

    with zf.open(pickles[0]) as f:
      obj = _RestrictedUnpickler(f, source=path, load_storage=load_storage).load()
  return obj


# torch.serialization's legacy (torch < 1.6) stream: five pickles, then raw storages.
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_LEGACY_PROTOCOL = 1001


def _read_legacy_state_dict(path):
  """torch < 1.6 format: magic, version, sys_info, object, storage keys, storages."""
  with open(path, 'rb') as f:
    def restricted_load(**kw):
      return _RestrictedUnpickler(f, source=path, **kw).load()

    def no_storage(*unused):
      raise UnsafeCheckpointError(f'{path}: storage outside the main pickle')

    try:
      magic = restricted_load(load_storage=no_storage)
    except UnsafeCheckpointError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(f'{path}: not a torch checkpoint (neither a zip archive nor the '
                       f'legacy pickle stream): {e}') from None
    if magic != _LEGACY_MAGIC:
      raise ValueError(f'{path}: not a torch checkpoint (bad magic number); the legacy '
                       'tar format of torch < 0.4 is not supported')
    protocol = restricted_load(load_storage=no_storage)
    if protocol != _LEGACY_PROTOCOL:
      raise ValueError(f'{path}: unsupported legacy protocol version {protocol}')
    sys_info = restricted_load(load_storage=no_storage)
    little = not isinstance(sys_info, dict) or sys_info.get('little_endian', True)
    roots = {}      # key -> (dtype, numel)
    pending = []    # (_Storage, root key, offset, numel) filled after the data

    def load_storage(dtype, key, numel, view):
      roots.setdefault(key, (dtype, numel))
      storage = _Storage(None)
      offset, count = 0, numel
      if view is not None:
        if not (isinstance(view, tuple) and len(view) == 3):
          raise UnsafeCheckpointError(f'{path}: bad storage view {view!r}')
        _, offset, count = view
      pending.append((storage, key, offset, count))
      return storage

    # Storage bytes follow the object pickle, so tensors are built lazily: the
    # unpickler sees placeholder storages whose arrays are attached below.
    obj = _RestrictedUnpickler(f, source=path, load_storage=load_storage,
                               rebuild_tensor=lambda storage, *args: _LazyTensor(storage, args)
                               ).load()
    keys = restricted_load(load_storage=no_storage)
    if not isinstance(keys, list) or set(map(str, keys)) != set(roots):
      raise ValueError(f'{path}: storage key list does not match the tensors')
    data = {}
    for key in map(str, keys):
      dtype, numel = roots[key]
      header = f.read(8)
      stored = int.from_bytes(header, 'little' if little else 'big')
      if len(header) != 8 or stored != numel:
        raise ValueError(f'{path}: storage {key} declares {stored} elements, expected {numel}')
      raw = f.read(numel * dtype.itemsize)
      if len(raw) != numel * dtype.itemsize:
        raise ValueError(f'{path}: file ends inside storage {key}')
      data[key] = np.frombuffer(raw, dtype.newbyteorder('<' if little else '>')).astype(
          dtype, copy=False)
    for storage, key, offset, count in pending:
      if offset < 0 or count < 0 or offset + count > data[key].size:
        raise UnsafeCheckpointError(f'{path}: storage view outside storage {key}')
      storage.array = data[key][offset:offset + count]
  return _resolve_lazy(obj)


class _LazyTensor:
  """A tensor whose storage bytes are read after the pickle (legacy format)."""

  def __init__(self, storage, args):
    self.storage, self.args = storage, args


def _resolve_lazy(obj):
  if isinstance(obj, _LazyTensor):
    return _rebuild_tensor(obj.storage, *obj.args)
  if isinstance(obj, dict):
    resolved = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
    for k, v in obj.items():
      resolved[k] = _resolve_lazy(v)
    return resolved
  return obj


def read_torch_state_dict(path):
  """Reads a PyTorch state dict saved with `torch.save`, without torch.

  Both torch's zip format (torch >= 1.6, the default) and the older single-stream
  format are read. The pickle inside is loaded by a restricted unpickler that
  knows only `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` /
  `_rebuild_parameter` and the `torch.<Type>Storage` classes, all replaced by
  our own code; any other global (a file crafted to run code on load) raises
  `UnsafeCheckpointError` before anything from the file is called.

  Args:
    path: a `.pth` / `.pt` file.

  Returns:
    dict[str, np.ndarray] in the file's order; every array C-contiguous, with the
    tensor's dtype and shape (0-d tensors included).

  Raises:
    UnsafeCheckpointError: the pickle asks for a global outside the allow-list
      or describes an inconsistent tensor.
    ValueError: not a torch checkpoint, or not a flat {name: tensor} mapping.
  """
  path = os.fspath(path)
  if zipfile.is_zipfile(path):
    obj = _read_zip_state_dict(path)
  else:
    obj = _read_legacy_state_dict(path)
  return _check_state_dict(obj, path)


# ----------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------

Precision = lax.Precision


class BasicConv(nn.Module):
  """Conv (no bias) -> BatchNorm (eps 1e-3, running statistics) -> ReLU."""
  features: int
  kernel: tuple[int, int]
  stride: int = 1
  pad: tuple[int, int] = (0, 0)
  precision: Precision = Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.features, self.kernel, strides=(self.stride, self.stride),
                padding=((self.pad[0], self.pad[0]), (self.pad[1], self.pad[1])),
                use_bias=False, precision=self.precision, name='conv')(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPSILON, name='bn')(x)
    return nn.relu(x)


def _max_pool_3x3(x, stride, pad=0):
  return nn.max_pool(x, (3, 3), strides=(stride, stride),
                     padding=((pad, pad), (pad, pad)))


def _avg_pool_3x3_same(x):
  """3x3 average, stride 1, padding 1, padded zeros not counted (count_include_pad=False)."""
  summed = lax.reduce_window(x, jnp.zeros((), x.dtype), lax.add, (1, 3, 3, 1),
                             (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0)))
  h, w = x.shape[1:3]
  # Window sizes are 9 inside, 6 on edges, 4 in corners; static, so computed in numpy.
  rows = np.full(h, 3.0)
  rows[[0, -1]] = 2.0
  cols = np.full(w, 3.0)
  cols[[0, -1]] = 2.0
  counts = (rows[:, None] * cols[None, :])[None, :, :, None]
  return summed / jnp.asarray(counts, x.dtype)


class InceptionA(nn.Module):
  """Mixed_5b/5c/5d (pytorch-fid's FIDInceptionA)."""
  pool_features: int
  precision: Precision = Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv, precision=self.precision)
    b1 = conv(64, (1, 1), name='branch1x1')(x)
    b5 = conv(48, (1, 1), name='branch5x5_1')(x)
    b5 = conv(64, (5, 5), pad=(2, 2), name='branch5x5_2')(b5)
    b3 = conv(64, (1, 1), name='branch3x3dbl_1')(x)
    b3 = conv(96, (3, 3), pad=(1, 1), name='branch3x3dbl_2')(b3)
    b3 = conv(96, (3, 3), pad=(1, 1), name='branch3x3dbl_3')(b3)
    bp = conv(self.pool_features, (1, 1), name='branch_pool')(_avg_pool_3x3_same(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """Mixed_6a: the 35 -> 17 grid reduction."""
  precision: Precision = Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv, precision=self.precision)
    b3 = conv(384, (3, 3), stride=2, name='branch3x3')(x)
    bd = conv(64, (1, 1), name='branch3x3dbl_1')(x)
    bd = conv(96, (3, 3), pad=(1, 1), name='branch3x3dbl_2')(bd)
    bd = conv(96, (3, 3), stride=2, name='branch3x3dbl_3')(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3(x, 2)], axis=-1)


class InceptionC(nn.Module):
  """Mixed_6b..6e (pytorch-fid's FIDInceptionC): factorised 7x7 convolutions."""
  channels_7x7: int
  precision: Precision = Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv, precision=self.precision)
    c7 = self.channels_7x7
    b1 = conv(192, (1, 1), name='branch1x1')(x)
    b7 = conv(c7, (1, 1), name='branch7x7_1')(x)
    b7 = conv(c7, (1, 7), pad=(0, 3), name='branch7x7_2')(b7)
    b7 = conv(192, (7, 1), pad=(3, 0), name='branch7x7_3')(b7)
    bd = conv(c7, (1, 1), name='branch7x7dbl_1')(x)
    bd = conv(c7, (7, 1), pad=(3, 0), name='branch7x7dbl_2')(bd)
    bd = conv(c7, (1, 7), pad=(0, 3), name='branch7x7dbl_3')(bd)
    bd = conv(c7, (7, 1), pad=(3, 0), name='branch7x7dbl_4')(bd)
    bd = conv(192, (1, 7), pad=(0, 3), name='branch7x7dbl_5')(bd)
    bp = conv(192, (1, 1), name='branch_pool')(_avg_pool_3x3_same(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """Mixed_7a: the 17 -> 8 grid reduction."""
  precision: Precision = Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv, precision=self.precision)
    b3 = conv(192, (1, 1), name='branch3x3_1')(x)
    b3 = conv(320, (3, 3), stride=2, name='branch3x3_2')(b3)
    b7 = conv(192, (1, 1), name='branch7x7x3_1')(x)
    b7 = conv(192, (1, 7), pad=(0, 3), name='branch7x7x3_2')(b7)
    b7 = conv(192, (7, 1), pad=(3, 0), name='branch7x7x3_3')(b7)
    b7 = conv(192, (3, 3), stride=2, name='branch7x7x3_4')(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3(x, 2)], axis=-1)


class InceptionE(nn.Module):
  """Mixed_7b (average pool branch) and Mixed_7c (max pool branch, as in TF's graph)."""
  pool: str  # 'avg' (FIDInceptionE_1) or 'max' (FIDInceptionE_2)
  precision: Precision = Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv, precision=self.precision)
    b1 = conv(320, (1, 1), name='branch1x1')(x)
    b3 = conv(384, (1, 1), name='branch3x3_1')(x)
    b3 = jnp.concatenate([conv(384, (1, 3), pad=(0, 1), name='branch3x3_2a')(b3),
                          conv(384, (3, 1), pad=(1, 0), name='branch3x3_2b')(b3)], axis=-1)
    bd = conv(448, (1, 1), name='branch3x3dbl_1')(x)
    bd = conv(384, (3, 3), pad=(1, 1), name='branch3x3dbl_2')(bd)
    bd = jnp.concatenate([conv(384, (1, 3), pad=(0, 1), name='branch3x3dbl_3a')(bd),
                          conv(384, (3, 1), pad=(1, 0), name='branch3x3dbl_3b')(bd)], axis=-1)
    pooled = _avg_pool_3x3_same(x) if self.pool == 'avg' else _max_pool_3x3(x, 1, pad=1)
    bp = conv(192, (1, 1), name='branch_pool')(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class UnbiasedLinear(nn.Module):
  """fc of the network: holds weight and bias, applies the weight only.

  torch-fidelity's Inception Score uses `logits_unbiased` = x @ W^T; the bias is
  kept in the variables so a converted checkpoint is complete.
  """
  features: int = NUM_CLASSES
  precision: Precision = Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (x.shape[-1], self.features))
    self.param('bias', nn.initializers.zeros, (self.features,))
    return jnp.dot(x, kernel.astype(x.dtype), precision=self.precision)


class FIDInceptionV3(nn.Module):
  """FID InceptionV3 on 299x299 NHWC inputs in [-1, 1] -> (pool3, unbiased logits)."""
  precision: Precision = Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv, precision=self.precision)
    p = dict(precision=self.precision)
    x = conv(32, (3, 3), stride=2, name='Conv2d_1a_3x3')(x)
    x = conv(32, (3, 3), name='Conv2d_2a_3x3')(x)
    x = conv(64, (3, 3), pad=(1, 1), name='Conv2d_2b_3x3')(x)
    x = _max_pool_3x3(x, 2)
    x = conv(80, (1, 1), name='Conv2d_3b_1x1')(x)
    x = conv(192, (3, 3), name='Conv2d_4a_3x3')(x)
    x = _max_pool_3x3(x, 2)
    x = InceptionA(32, name='Mixed_5b', **p)(x)
    x = InceptionA(64, name='Mixed_5c', **p)(x)
    x = InceptionA(64, name='Mixed_5d', **p)(x)
    x = InceptionB(name='Mixed_6a', **p)(x)
    x = InceptionC(128, name='Mixed_6b', **p)(x)
    x = InceptionC(160, name='Mixed_6c', **p)(x)
    x = InceptionC(160, name='Mixed_6d', **p)(x)
    x = InceptionC(192, name='Mixed_6e', **p)(x)
    x = InceptionD(name='Mixed_7a', **p)(x)
    x = InceptionE('avg', name='Mixed_7b', **p)(x)
    x = InceptionE('max', name='Mixed_7c', **p)(x)
    pool3 = jnp.mean(x, axis=(1, 2))
    return pool3, UnbiasedLinear(name='fc', **p)(pool3)


# ----------------------------------------------------------------------------
# Weight conversion and loading
# ----------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _variable_shapes():
  """{collection: nested {name: ShapeDtypeStruct}} of the Flax network (traced once)."""
  model = FIDInceptionV3()
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)))
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
  errors = []

  def convert(path, shape):
    collection, *modules, leaf = [p.key for p in path]
    if modules == ['fc']:
      torch_leaf, transform = _LEAF_MAP[(collection, 'fc', leaf)]
      key = 'fc.' + torch_leaf
    else:  # .../<unit>/{conv,bn}/<leaf> <- <unit dotted>.{conv,bn}.<torch leaf>
      torch_leaf, transform = _LEAF_MAP[(collection, modules[-1], leaf)]
      key = '.'.join(modules[:-1]) + '.' + torch_leaf
    if key not in given:
      errors.append(f'missing {key}')
      return None
    used.add(key)
    value = transform(np.asarray(given[key]))
    if value.shape != tuple(shape):
      errors.append(f'{key}: shape {np.shape(given[key])} does not fit {tuple(shape)}')
      return None
    return np.array(value, dtype=dtype or value.dtype, order='C')

  variables = jax.tree.map_with_path(
      convert, _variable_shapes(), is_leaf=lambda s: isinstance(s, tuple))
  unexpected = sorted(set(given) - used)
  if unexpected:
    errors.append(f'unexpected keys {unexpected[:5]}' + (' ...' if len(unexpected) > 5 else ''))
  if errors:
    raise ValueError('Not a pytorch-fid FID InceptionV3 state dict: ' + '; '.join(errors[:8])
                     + (f' (and {len(errors) - 8} more)' if len(errors) > 8 else ''))
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
    ValueError: the hash does not match (corrupt, truncated or a different file).
  """
  path = Path(path)
  match = _HASH_IN_NAME.search(path.name)
  expected = match.group(1) if match else _OFFICIAL_HASH_PREFIX
  actual = file_sha256(path)
  if not actual.startswith(expected):
    raise ValueError(
        f'{path}: SHA-256 starts with {actual[:len(expected)]}, expected {expected} '
        f'({"from its name" if match else "the official " + WEIGHTS_NAME}). The file is '
        f'corrupt, incomplete or not the FID Inception weights; delete it and download '
        f'{WEIGHTS_URL} again.')
  return actual


def _search_locations():
  """Candidate weight files in search order (after an explicit path and the env var)."""
  places = [cache.cache_dir()]
  torch_home = os.environ.get('TORCH_HOME') or os.path.join(
      os.environ.get('XDG_CACHE_HOME') or os.path.join('~', '.cache'), 'torch')
  # pytorch-fid and torch-fidelity download through torch.hub into this folder.
  places.append(Path(torch_home).expanduser() / 'hub' / 'checkpoints')
  return [d / n for d in places for n in (WEIGHTS_NAME,) + _ALT_WEIGHTS_NAMES]


def find_weights(path=None):
  """Locates the FID Inception weights file.

  Order: `path` (a file, or a folder holding WEIGHTS_NAME); else
  `$GAN_JAX_INCEPTION_WEIGHTS` (same); else the gan_jax cache folder
  (`$GAN_JAX_CACHE_DIR`, `~/.cache/gan_jax`); else torch.hub's checkpoint folder,
  where pytorch-fid / torch-fidelity keep their download.

  Returns:
    Path of an existing file (its hash is not checked here).

  Raises:
    FileNotFoundError: saying where it looked, the download URL and where to put it.
  """
  def resolve(p, origin):
    p = Path(p).expanduser()
    if p.is_dir():
      p = p / WEIGHTS_NAME
    if not p.is_file():
      raise FileNotFoundError(
          f'FID Inception weights not found at {p} (given by {origin}). Download '
          f'{WEIGHTS_URL} (about 92 MB) to that path, or fix {origin}.')
    return p

  if path:
    return resolve(path, 'the path argument')
  if os.environ.get(WEIGHTS_ENV):
    return resolve(os.environ[WEIGHTS_ENV], f'${WEIGHTS_ENV}')
  candidates = _search_locations()
  for candidate in candidates:
    if candidate.is_file():
      return candidate
  dest = cache.cache_dir() / WEIGHTS_NAME
  raise FileNotFoundError(
      'FID Inception weights not found. Looked for\n  ' +
      '\n  '.join(str(c) for c in candidates) +
      f'\nDownload them from\n  {WEIGHTS_URL}\nand put the file at\n  {dest}\n'
      f'for example:\n  mkdir -p {dest.parent} && curl -L -o {dest} {WEIGHTS_URL}\n'
      f'or point ${WEIGHTS_ENV} (or config.eval.inception_weights / --inception_weights) '
      'at the file. Without them, use the offline proxies (metrics=proxy) on digits / toy.')


def load_weights(path=None, *, dtype=None):
  """Finds, verifies (SHA-256 prefix in the name) and converts the FID weights.

  Args:
    path: the `.pth` file or a folder with it; None searches (see `find_weights`).
    dtype: dtype of the returned arrays (None: float32 as stored).

  Returns:
    Flax variables for `FIDInceptionV3` (nested dicts of numpy arrays).

  Raises:
    FileNotFoundError: no file; the message has the URL and the destination.
    ValueError: wrong hash, or not the expected state dict.
  """
  found = find_weights(path)
  verify_weights_hash(found)
  return convert_pytorch_fid_state_dict(read_torch_state_dict(found), dtype=dtype)


# ----------------------------------------------------------------------------
# Feature extraction
# ----------------------------------------------------------------------------

def _bilinear_taps(in_size, out_size):
  """torch's bilinear (align_corners=False) source taps along one axis.

  Returns:
    (i0, i1, w0, w1): int32[out] neighbour indices and float64[out] weights,
    src = (dst + 0.5) * in / out - 0.5 clamped below at 0, as in
    `F.interpolate(mode='bilinear', align_corners=False)` without antialiasing.
  """
  src = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
  src = np.maximum(src, 0.0)
  i0 = np.floor(src).astype(np.int32)
  i0 = np.minimum(i0, in_size - 1)
  i1 = np.minimum(i0 + 1, in_size - 1)
  w1 = src - i0
  return i0, i1, 1.0 - w1, w1


def resize_bilinear(images, size):
  """Bilinear resize like torch's `F.interpolate(..., align_corners=False)`.

  Unlike `jax.image.resize`'s default, no antialiasing when shrinking, matching
  pytorch-fid for inputs larger than 299.

  Args:
    images: f[N, H, W, C].
    size: (out_h, out_w).

  Returns:
    f[N, out_h, out_w, C] in the input dtype.
  """
  _, h, w, _ = images.shape
  out_h, out_w = size
  if (h, w) == (out_h, out_w):
    return images  # torch's weights are exactly (1, 0) here
  dtype = images.dtype

  def along(x, axis, n_in, n_out):
    i0, i1, w0, w1 = _bilinear_taps(n_in, n_out)
    shape = [1] * x.ndim
    shape[axis] = n_out
    w0 = jnp.asarray(w0.reshape(shape), dtype)
    w1 = jnp.asarray(w1.reshape(shape), dtype)
    return w0 * jnp.take(x, i0, axis=axis) + w1 * jnp.take(x, i1, axis=axis)

  # Width first, then height: torch's per-pixel formula
  # h0 * (w0 * x00 + w1 * x01) + h1 * (w0 * x10 + w1 * x11), factorised.
  return along(along(images, 2, w, out_w), 1, h, out_h)


def _forward_fn(variables, images, precision=Precision.HIGHEST):
  """images f[B, H, W, 3] (already in the compute dtype) -> (pool3, logits)."""
  return FIDInceptionV3(precision=precision).apply(
      variables, resize_bilinear(images, (INPUT_SIZE, INPUT_SIZE)))


_forward = jax.jit(_forward_fn, static_argnames=('precision',))
# On CPU, XLA's Eigen convolution kernels ran this network 2.0x faster than
# XLA's default YNNPACK ones (11.0 vs 5.5 images/s, batch 16, 64 px inputs,
# 2-core AVX-512 CPU); see `parallel.cpu_compiler_options`.
_forward_cpu = jax.jit(_forward_fn, static_argnames=('precision',),
                       compiler_options=parallel.cpu_compiler_options())


def _variables_dtype(variables):
  return np.dtype(variables['params']['fc']['kernel'].dtype)


def extract_features(variables, images, *, batch_size=64, devices=None,
                     precision=Precision.HIGHEST):
  """pool3 features and unbiased logits of images, computed as pytorch-fid does.

  Images are resized to 299x299 (bilinear, align_corners=False, no antialias)
  inside the compiled function; batches are split over `devices` (data
  parallel), and the last batch is padded so every batch has one shape (one
  compilation).

  Args:
    variables: from `load_weights` / `convert_pytorch_fid_state_dict`. Their
      dtype is the compute dtype; with `jax_enable_x64` on, float64 variables
      or float64 images run the network in float64 (as pytorch-fid's
      `model.double()`), otherwise it runs in float32.
    images: f[N, H, W, C] in [-1, 1], C = 3 or 1 (grey images are repeated
      over three channels), any H, W.
    batch_size: images per compiled call over all devices (rounded up to a
      multiple of the device count; smaller when N is).
    devices: devices to shard the batch over (default: all of this process's).
    precision: matmul / conv precision; HIGHEST keeps float32 parity on GPUs and
      TPUs, whose default precision rounds inputs to bfloat16 / TF32.

  Returns:
    {'pool3': np[N, 2048], 'logits': np[N, 1008]} in the compute dtype.
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f'images must be NHWC with 1 or 3 channels, got shape {images.shape}')
  if not np.issubdtype(images.dtype, np.floating):
    raise ValueError(f'images must be floats in [-1, 1], got {images.dtype}; for uint8 '
                     'pixels use images / 127.5 - 1')
  dtype = _variables_dtype(variables)
  if dtype == np.float64 and not jax.config.jax_enable_x64:
    raise ValueError('float64 variables need jax_enable_x64 (JAX_ENABLE_X64=1 or '
                     'jax.config.update("jax_enable_x64", True)); otherwise cast them to float32')
  if jax.config.jax_enable_x64:
    # float64 images with float32 weights run in float64, like pytorch-fid's
    # model.double(): the weights' float32 values are exact in float64.
    dtype = np.result_type(dtype, images.dtype)
  n = images.shape[0]
  if devices is None:
    devices = jax.devices() if jax.process_count() == 1 else jax.local_devices()
  n_dev = len(devices)
  round_up = lambda v: -(-v // n_dev) * n_dev
  batch = max(min(round_up(batch_size), round_up(n)), n_dev)
  mesh = jax.sharding.Mesh(np.asarray(devices), ('data',))
  data_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  variables = jax.device_put(jax.tree.map(lambda a: np.asarray(a, dtype), variables), replicated)

  forward = _forward_cpu if parallel.all_cpu(devices) else _forward
  pool3, logits = [], []

  def collect(pending):
    (p, l), valid = pending
    pool3.append(np.asarray(p)[:valid])
    logits.append(np.asarray(l)[:valid])

  pending, last_log = None, time.monotonic()
  for start in range(0, n, batch):
    chunk = images[start:start + batch].astype(dtype, copy=False)
    if chunk.shape[-1] == 1:
      chunk = np.repeat(chunk, 3, axis=-1)
    valid = chunk.shape[0]
    if valid < batch:  # pad with zeros; their features are dropped
      chunk = np.concatenate([chunk, np.zeros((batch - valid,) + chunk.shape[1:], dtype)])
    result = (forward(variables, jax.device_put(chunk, data_sharding), precision=precision),
              valid)
    # Dispatch is asynchronous: fetching the previous batch overlaps this one,
    # and at most two batches of outputs are on the device at a time.
    if pending is not None:
      collect(pending)
    pending = result
    if time.monotonic() - last_log > 60:
      logging.info('Inception features: %d / %d images', start, n)
      last_log = time.monotonic()
  if pending is not None:
    collect(pending)
  if not pool3:
    return {'pool3': np.zeros((0, POOL3_DIM), dtype), 'logits': np.zeros((0, NUM_CLASSES), dtype)}
  return {'pool3': np.concatenate(pool3), 'logits': np.concatenate(logits)}
