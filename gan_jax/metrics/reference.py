"""Features and statistics of the real reference set, cached on disk.

`reference_features(...)` loads the reference images (a fixed evaluation set of
the run's data), extracts their features with the given extractor and caches
features, mean and covariance as `.npz` under `<cache>/reference/`, keyed by what
decides them: a SHA-256 of the loaded images themselves (so any change of data,
split or preprocessing gives a new key), their shape and number, and the extractor
(its version and weights). The same images reached through another data_dir, a
reduced training split or a larger request than the split holds reuse the file.

With several processes each embeds its own share of the images
(`exchange.process_share`) and the features are gathered, so every process ends
with all of them; only process 0 writes the cache file. The processes agree on
whether to use the cache: when all find a valid file they read their own; when
only process 0 does (say, a cache folder local to each host) it sends its copy
to the others; otherwise all compute it together.
"""

import hashlib
import logging
from pathlib import Path

import numpy as np

from gan_jax import errors
from gan_jax.metrics import cache
from gan_jax.metrics import exchange
from gan_jax.metrics import stats

# Data-config fields that cannot change the images (throughput knobs only).
_IRRELEVANT_DATA_FIELDS = ('num_workers', 'prefetch')


def data_config_dict(data_config):
  """config.data as a sorted plain dict, without fields that cannot change the images."""
  raw = data_config.to_dict() if hasattr(data_config, 'to_dict') else dict(data_config)
  return {k: v for k, v in sorted(raw.items()) if k not in _IRRELEVANT_DATA_FIELDS}


def default_loader():
  """`gan_jax.data.load_eval_data`, imported on first use (it pulls in the input pipeline)."""
  from gan_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  return data_lib.load_eval_data


def _load(load_eval_data, data_config, *, data_shape, split, num_examples, labels):
  """(images f32[N, ...] contiguous, labels int32[N] or None) of the reference set."""
  kwargs = dict(data_shape=tuple(data_shape), split=split, num_examples=num_examples)
  loaded = load_eval_data(data_config, labels=True, **kwargs) if labels else (
      load_eval_data(data_config, **kwargs), None)
  images, classes = loaded
  images = np.ascontiguousarray(images, dtype=np.float32)
  if len(images) < 2:
    raise errors.ConfigError(
        f'Only {len(images)} reference examples in split {split!r}; need at least 2 (check '
        'config.data and config.eval.reference_split / --reference_split).')
  return images, None if classes is None else np.asarray(classes, np.int32)


def _embed_shares(images, extract):
  """Every process embeds its rows of `images`; returns all features, in row order."""
  start, stop = exchange.process_share(len(images))
  if stop > start:
    local = np.asarray(extract(images[start:stop]))
  else:  # fewer images than processes: an empty share of the right width and dtype
    local = np.asarray(extract(images[:1]))[:0]
  return exchange.gather_rows(local)


def _check_same_images_everywhere(content):
  """A ConfigError on every process when the processes loaded different reference
  images (a host with another copy of the data): their features would be mixed, and
  each process would describe its own images in the evaluations' protocol."""
  differing = exchange.processes_differing(content)
  if differing:
    raise errors.ConfigError(
        f'Process(es) {differing} loaded other reference images than process 0 (their '
        'SHA-256 differs): every host must see the same data (data.path / data_dir, '
        'the same files).')


def _agreed(stored):
  """The cached arrays every process will use, or None when all must compute them."""
  if exchange.process_count() == 1:
    return stored
  found = exchange.flags(stored is not None)
  if found.all():
    return stored
  if found[0]:
    return exchange.broadcast_from_first(stored)
  return None


def reference_features(data_config, *, data_shape, split, num_examples, extractor_id,
                       extract, cache_dir=None, load_eval_data=None, labels=False):
  """Features and statistics of a real evaluation set, cached on disk.

  The real images are always loaded (cheap next to the feature extractor) and
  hashed; the cache file is reused only when the stored key, which includes
  that hash, matches exactly. A collective when several processes run.

  Args:
    data_config: config.data.
    data_shape: shape of one example, e.g. (32, 32, 3).
    split: data split of the reference set.
    num_examples: images wanted (fewer when the split is smaller).
    extractor_id: JSON-serialisable description of `extract` (version, weights).
    extract: f32[M, *data_shape] -> f[M, D] features (M >= 1; this process's
      share of the images).
    cache_dir: cache root (default `cache.cache_dir()`); files go to `reference/`.
    load_eval_data: the data loader (default `gan_jax.data.load_eval_data`).
    labels: also load the images' class labels (they are not cached: the images
      are loaded anyway).

  Returns:
    dict with 'features' f32[N, D], 'mu' f64[D], 'sigma' f64[D, D],
    'num_examples' (int), 'path' (the cache file), 'content_sha256' (hex digest
    of the images: which real images these are) and, when asked, 'labels'
    int32[N].
  """
  images, classes = _load(load_eval_data or default_loader(), data_config,
                          data_shape=data_shape, split=split, num_examples=num_examples,
                          labels=labels)
  content = hashlib.sha256(repr(images.shape).encode() + images.tobytes()).hexdigest()
  _check_same_images_everywhere(content)
  data = data_config_dict(data_config)
  key = dict(kind='reference_features/v2', data_shape=list(data_shape), num_examples=len(images),
             content_sha256=content, extractor=extractor_id)
  source = data.get('source', 'data')
  # The file's name is for people (the key decides): data.toy names only toy mixtures.
  name = data.get('name') or (data.get('toy') if source == 'toy' else '') or ''
  stem = '-'.join(str(p) for p in (source, name, split, 'x'.join(map(str, data_shape)),
                                   len(images)) if p != '')
  root = Path(cache_dir) if cache_dir else cache.cache_dir()
  path = root / 'reference' / f'{stem}-{cache.key_digest(key)}.npz'
  stored = _agreed(cache.load_npz(path, key))
  if stored is None:
    logging.info('Computing reference features of %d %s/%s images -> %s',
                 len(images), source, split, path)
    features = _embed_shares(images, extract)
    mu, sigma = stats.feature_statistics(features)
    stored = dict(features=features.astype(np.float32), mu=mu, sigma=sigma)
    if exchange.process_index() == 0:
      cache.save_npz(path, key, stored)
  else:
    logging.info('Reusing reference features from %s', path)
  out = dict(stored, num_examples=len(images), path=str(path), content_sha256=content)
  if classes is not None:
    out['labels'] = classes
  return out
