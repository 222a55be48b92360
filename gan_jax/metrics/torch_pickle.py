"""A torch-free reader for PyTorch state dicts (`.pth` files written by `torch.save`).

`read_torch_state_dict(path)` reads torch's zip format (torch >= 1.6) and the
older single-stream format into numpy arrays. The pickle inside a `.pth` may
name any importable callable and `torch.load(weights_only=False)` would call
it; here a restricted unpickler knows only the few globals a tensor state dict
needs (all replaced by our own code) and raises `UnsafeCheckpointError` for any
other, before anything from the file runs.
"""

import collections
import os
import pickle
import zipfile

import numpy as np


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
