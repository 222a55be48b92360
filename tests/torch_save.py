"""A minimal `torch.save` writer (no torch), for building test checkpoints.

Writes torch's zip format and the legacy (torch < 1.6) stream, with any tensor
views, and lets a test replace the pickle by a malicious payload.
"""

import collections
import io
from pathlib import Path
import pickle
import zipfile

import numpy as np

class _Global:
  """Written as the pickle GLOBAL `module name` without importing it."""

  def __init__(self, module, name):
    self.module, self.name = module, name

  def __call__(self, *args):  # pickle wants reduce functions to be callable
    raise AssertionError('never called')


_STORAGE_NAMES = {np.dtype(np.float32): 'FloatStorage', np.dtype(np.float64): 'DoubleStorage',
                  np.dtype(np.int64): 'LongStorage', np.dtype(np.float16): 'HalfStorage'}


class StorageRef:
  """A storage: written as a persistent id, its bytes stored beside the pickle."""

  def __init__(self, key, array, view=None):
    self.key, self.array, self.view = key, array, view


class Tensor:
  """A tensor as torch pickles it: _rebuild_tensor_v2(storage, offset, size, stride, ...)."""

  def __init__(self, storage, offset, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

  def __reduce__(self):
    return (_Global('torch._utils', '_rebuild_tensor_v2'),
            (self.storage, self.offset, tuple(self.size),
             tuple(self.stride) if isinstance(self.stride, (list, tuple)) else self.stride, False,
             collections.OrderedDict()))


class _TorchPickler(pickle._Pickler):  # pylint: disable=protected-access
  """Pure-Python pickler that can write arbitrary GLOBALs and torch storage ids."""

  def __init__(self, file, legacy):
    super().__init__(file, protocol=2)
    self.legacy = legacy

  def persistent_id(self, obj):
    if isinstance(obj, StorageRef):
      pid = ('storage', _Global('torch', _STORAGE_NAMES[obj.array.dtype]), obj.key, 'cpu',
             obj.array.size)
      return pid + (obj.view,) if self.legacy else pid
    return None

  def save(self, obj, save_persistent_id=True):
    if isinstance(obj, _Global):
      self.write(pickle.GLOBAL + f'{obj.module}\n{obj.name}\n'.encode())
      return
    super().save(obj, save_persistent_id)


def _tensors(entries):
  """{key: array or (flat storage, offset, size, stride)} -> ({key: Tensor}, storages)."""
  out, storages = collections.OrderedDict(), collections.OrderedDict()
  for i, (key, value) in enumerate(entries.items()):
    if isinstance(value, tuple):
      flat, offset, size, stride = value
    else:
      dense = np.array(value, order='C')  # (ascontiguousarray would make 0-d arrays 1-d)
      flat = dense.reshape(-1)
      offset, size = 0, dense.shape
      stride = tuple(int(s) // dense.itemsize for s in dense.strides)
    storages[str(i)] = StorageRef(str(i), flat)
    out[key] = Tensor(storages[str(i)], offset, size, stride)
  return out, storages


def pickle_bytes(obj, legacy=False):
  buf = io.BytesIO()
  _TorchPickler(buf, legacy).dump(obj)
  return buf.getvalue()


def write_zip_pth(path, entries=None, *, payload=None):
  """torch's zip format; `payload` replaces data.pkl's bytes (for malicious files)."""
  tensors, storages = _tensors(entries or {})
  prefix = Path(path).stem + '/'
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as zf:
    zf.writestr(prefix + 'data.pkl', payload if payload is not None else pickle_bytes(tensors))
    zf.writestr(prefix + 'byteorder', 'little')
    for key, ref in storages.items():
      zf.writestr(f'{prefix}data/{key}', ref.array.astype(ref.array.dtype.newbyteorder('<'))
                  .tobytes())
    zf.writestr(prefix + 'version', '3\n')


def write_legacy_pth(path, entries=None, *, payload=None):
  """torch < 1.6 stream: magic, protocol, sys_info, object, keys, raw storages."""
  tensors, storages = _tensors(entries or {})
  with open(path, 'wb') as f:
    for header in (0x1950a86a20f9469cfc6c, 1001,
                   dict(protocol_version=1001, little_endian=True,
                        type_sizes=dict(short=2, int=4, long=4))):
      f.write(pickle.dumps(header, protocol=2))
    f.write(payload if payload is not None else pickle_bytes(tensors, legacy=True))
    f.write(pickle.dumps(list(storages), protocol=2))
    for ref in storages.values():
      f.write(int(ref.array.size).to_bytes(8, 'little'))
      f.write(ref.array.tobytes())
