"""What the processes of a multi-process evaluation share, exactly, as host numpy.

Each process generates and embeds its own contiguous share of the samples
(`process_share`); the metrics then exchange only small sufficient statistics
(`sum_across`) or, where a metric needs them, rows of features (`gather_rows`).
Arrays travel as raw bytes (uint8 views), so float64 statistics stay float64
without `jax_enable_x64`, and every process receives the same bits. Large
arrays travel in pieces of at most `CHUNK_BYTES` per process, which bounds the
device memory a gather needs.

All communication goes through two primitives, `_gather_piece` and
`_broadcast_piece` (JAX's `multihost_utils`), and all process numbering
through `process_index` / `process_count`, so tests can stand in for them.
With one process every function is a local no-op (no JAX collective runs).
Every function here is a collective otherwise: all processes must call it, in
the same order, with arrays of the same dtype (and, where stated, shape).
"""

import json

import jax
from jax.experimental import multihost_utils
import numpy as np

CHUNK_BYTES = 1 << 26


def process_index():
  """This process's index (`jax.process_index()`)."""
  return jax.process_index()


def process_count():
  """The number of processes (`jax.process_count()`)."""
  return jax.process_count()


def _gather_piece(piece):
  """uint8[n] of every process -> uint8[P, n] (JAX's all-gather over processes)."""
  return np.asarray(multihost_utils.process_allgather(piece))


def _broadcast_piece(piece):
  """Process 0's uint8[n] on every process (the others pass zeros)."""
  return np.asarray(multihost_utils.broadcast_one_to_all(piece))


def process_share(num, *, index=None, count=None):
  """(start, stop): the rows [start, stop) of `num` rows that process `index` of `count` owns.

  Contiguous, in process order, sizes differing by at most one
  (start = index * num // count), so concatenating the shares of processes
  0, 1, ... gives rows 0 .. num - 1 in order. Defaults: this process of all.
  """
  index = process_index() if index is None else index
  count = process_count() if count is None else count
  return index * num // count, (index + 1) * num // count


def _as_bytes(array):
  return np.ascontiguousarray(array).reshape(-1).view(np.uint8)


def allgather(array):
  """Every process's `array`, stacked: np[P, *shape] (shape and dtype equal on all)."""
  array = np.asarray(array)
  count = process_count()
  if count == 1 or array.size == 0:  # the shape is the same everywhere: nothing to send
    return np.broadcast_to(array, (count,) + array.shape).copy()
  flat = _as_bytes(array)
  pieces = [_gather_piece(flat[start:start + CHUNK_BYTES])
            for start in range(0, len(flat), CHUNK_BYTES)]
  gathered = np.ascontiguousarray(np.concatenate(pieces, axis=1))
  return gathered.view(array.dtype).reshape((count,) + array.shape)


def sum_across(array):
  """The sum over processes of `array` (same shape on all), added in process order.

  Every process adds the same values in the same order, so all get the same
  bits. Large arrays are gathered and added piece by piece (memory: P pieces).
  """
  array = np.asarray(array)
  if process_count() == 1:
    return array.copy()
  flat = np.ascontiguousarray(array).reshape(-1)
  step = max(1, CHUNK_BYTES // flat.itemsize)
  total = np.empty_like(flat)
  for start in range(0, len(flat), step):
    piece = allgather(flat[start:start + step])
    acc = piece[0].copy()
    for part in piece[1:]:
      acc += part
    total[start:start + step] = acc
  return total.reshape(array.shape)


def gather_rows(local):
  """Concatenates every process's rows in process order: np[sum of N_p, ...].

  Args:
    local: np[N_p, ...]; N_p may differ between processes, the trailing shape
      and dtype may not.
  """
  local = np.asarray(local)
  if process_count() == 1:
    return local.copy()
  counts = allgather(np.array([len(local)], np.int64))[:, 0]
  padded = np.zeros((int(counts.max()),) + local.shape[1:], local.dtype)
  padded[:len(local)] = local
  gathered = allgather(padded)
  return np.concatenate([part[:n] for part, n in zip(gathered, counts)])


def flags(flag):
  """bool[P]: `flag` of every process, in process order."""
  return allgather(np.array([bool(flag)]))[:, 0]


def processes_differing(hex_digest):
  """The indices of the processes whose `hex_digest` (hex digits, as long on every
  process) differs from process 0's; [] with one process."""
  if process_count() == 1:
    return []
  digests = allgather(np.frombuffer(bytes.fromhex(hex_digest), np.uint8))
  return [i for i, d in enumerate(digests) if not np.array_equal(d, digests[0])]


def _broadcast_bytes(data, size):
  """Process 0's `data` (uint8[size]; None elsewhere) on every process."""
  out = np.empty(size, np.uint8)
  for start in range(0, size, CHUNK_BYTES):
    n = min(CHUNK_BYTES, size - start)
    piece = data[start:start + n] if data is not None else np.zeros(n, np.uint8)
    out[start:start + n] = _broadcast_piece(piece)
  return out


def broadcast_from_first(arrays):
  """Process 0's dict of arrays, on every process.

  Args:
    arrays: dict[str, np.ndarray] on process 0; ignored (may be None) elsewhere.

  Returns:
    The same dict (names, dtypes, shapes and bytes of process 0) on every process.
  """
  if process_count() == 1:
    return dict(arrays)
  first = process_index() == 0
  header = json.dumps([[k, np.asarray(v).dtype.str, list(np.shape(v))]
                       for k, v in arrays.items()]).encode() if first else b''
  size = int(_broadcast_bytes(_as_bytes(np.array([len(header)], np.int64)) if first else None,
                              8).view(np.int64)[0])
  spec = json.loads(_broadcast_bytes(np.frombuffer(header, np.uint8) if first else None,
                                     size).tobytes())
  out = {}
  for name, dtype, shape in spec:
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    data = _as_bytes(np.asarray(arrays[name], dtype)) if first else None
    out[name] = _broadcast_bytes(data, nbytes).view(dtype).reshape(shape)
  return out
