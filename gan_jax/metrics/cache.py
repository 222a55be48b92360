"""The on-disk cache of the metrics: where it lives, and keyed `.npz` files in it.

Two things live there: the FID Inception weights (downloaded by the user) and
the features / statistics of each reference data set. A cached `.npz` stores the
JSON of the key it was computed under, and a file whose stored key differs from
the requested one is recomputed, so a changed setting can never reuse a stale
result.
"""

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from gan_jax import writers

CACHE_ENV = 'GAN_JAX_CACHE_DIR'
_KEY_FIELD = '__cache_key__'


def cache_dir():
  """Returns the cache folder (not created here).

  `$GAN_JAX_CACHE_DIR` if set, else `$XDG_CACHE_HOME/gan_jax`, else
  `~/.cache/gan_jax`.
  """
  if os.environ.get(CACHE_ENV):
    return Path(os.environ[CACHE_ENV]).expanduser()
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join('~', '.cache')
  return Path(base).expanduser() / 'gan_jax'


def key_json(key):
  """Canonical JSON text of a cache key (sorted keys, no whitespace variation)."""
  return json.dumps(key, sort_keys=True, separators=(',', ':'), default=str)


def key_digest(key, length=16):
  """Short hex SHA-256 of `key_json(key)`, used in cache file names."""
  return hashlib.sha256(key_json(key).encode('utf-8')).hexdigest()[:length]


def load_npz(path, key):
  """Returns the arrays of a cached `.npz` if it was stored under `key`, else None.

  Args:
    path: the `.npz` file.
    key: the JSON-serialisable key the caller wants.

  Returns:
    dict[str, np.ndarray] without the key field, or None when the file is
    missing, unreadable, or was written for a different key.
  """
  path = Path(path)
  if not path.is_file():
    return None
  try:
    # allow_pickle=False: a cache file is data, never code.
    with np.load(path, allow_pickle=False) as z:
      if _KEY_FIELD not in z.files or str(z[_KEY_FIELD]) != key_json(key):
        return None
      return {name: z[name] for name in z.files if name != _KEY_FIELD}
  except (OSError, ValueError):
    return None


def save_npz(path, key, arrays):
  """Writes `arrays` and `key` to `path` atomically (temporary file + rename).

  Args:
    path: destination `.npz`; its folder is created.
    key: the JSON-serialisable key; stored inside the file.
    arrays: dict[str, array-like].
  """
  # A concurrent reader (another process evaluating) sees either the old file or
  # the complete new one, never a half-written archive.
  writers.write_whole_with(path, lambda f: np.savez(
      f, **{_KEY_FIELD: np.array(key_json(key))},
      **{k: np.asarray(v) for k, v in arrays.items()}))
