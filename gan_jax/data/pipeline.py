"""The training stream and evaluation sets of a data config.

`create_train_iterator`: the source's split (sources.py), reduced to
`data.train_examples` and with `data.labels_per_class` labels (subset.py),
sharded, and turned into an endless, resumable batch stream (iterator.py).
A process owns the examples `pool[shard_index + shard_count * j]` for
j < len(pool) // shard_count (the same count on every process, disjoint
between processes), where the pool is the whole split or its subset, and walks
them in per-epoch permutations of its own (seeded by config.seed and, with
several processes, its index). Batches are gathers from memory (digits, and
tfds / image-folder shards decoded once into RAM) or decoded per batch
(decode.py decides).

`load_eval_data`: a fixed evaluation set, the first N of a permutation with a
fixed seed, so every run and process gets the same set; subsets never apply.

Toy data has no examples: training batch k is drawn from
`np.random.default_rng([seed, shard_index, k])`.
"""

import hashlib
import time
import zlib

from absl import logging
import numpy as np

from gan_jax import errors
from gan_jax.data import decode
from gan_jax.data import images as images_lib
from gan_jax.data import iterator as iterator_lib
from gan_jax.data import sources
from gan_jax.data import subset

# Fixed permutation seed for evaluation subsets (independent of config.seed so
# reference statistics are the same across runs).
_EVAL_SEED = 0
# Examples decoded at a time when checking that a subset decoded every batch is readable.
_READ_CHECK_SLICE = 4096


def _check_args(*, batch_size, seed, shard_index, shard_count):
  if batch_size < 1 or seed < 0 or not 0 <= shard_index < shard_count:
    raise errors.ConfigError(
        'Need batch_size >= 1, seed >= 0 and 0 <= shard_index < shard_count; '
        f'got {batch_size}, {seed}, {shard_index}, {shard_count}. Check '
        'config.train.batch_size and config.seed.')


def _subset_sizes(data_config):
  """Returns (train_examples, labels_per_class), each >= 0 (0 = all)."""
  sizes = tuple(int(sources.field(data_config, name))
                for name in ('train_examples', 'labels_per_class'))
  if min(sizes) < 0:
    raise errors.ConfigError(
        f'data.train_examples and data.labels_per_class must be >= 0 (0 = all); '
        f'got {sizes}.')
  return sizes


def training_pool(split, *, train_examples, labels_per_class, labels, seed):
  """Returns (pool int64[n], labels int32[n] or None): the examples to train on.

  Args:
    split: a `sources.Split` with examples (not toy data).
    train_examples: data.train_examples (0 = the whole split).
    labels_per_class: data.labels_per_class (0 = every example keeps its label).
    labels: whether labels are wanted (-1 marks those dropped by labels_per_class).
    seed: config.seed.

  Labels of the whole split are read only for a class-balanced choice; plain
  labels are read later for this process's shard only. Benchmarks call this to
  know which examples a run trained on.
  """
  pool = np.arange(split.count)
  stratify = train_examples > 0 and split.read_labels is not None
  pool_labels = None
  if stratify or (labels and labels_per_class):
    pool_labels = split.labels(pool)
  if train_examples:
    if labels and pool_labels is not None and train_examples < len(np.unique(pool_labels)):
      raise errors.ConfigError(
          f'data.train_examples={train_examples} keeps fewer examples than the '
          f'{len(np.unique(pool_labels))} classes of this class-conditional model, so some '
          'classes would have none. Keep at least one per class.')
    pool = subset.select_examples(split.count, num=train_examples,
                                  labels=pool_labels, seed=seed)
    pool_labels = None if pool_labels is None else pool_labels[pool]
  if labels and labels_per_class:
    pool_labels = subset.keep_labels_per_class(
        pool_labels, per_class=labels_per_class, seed=seed)
  return pool, (pool_labels if labels else None)


def _shard(split, pool, pool_labels, *, labels, shard_index, shard_count):
  """Returns (ids int64[per_shard], labels int32[per_shard] or None)."""
  per_shard = len(pool) // shard_count
  if per_shard < 1:
    raise errors.ConfigError(
        f'{split.description} has {len(pool)} training examples, fewer than '
        f'the {shard_count} processes that share it; raise '
        '--config.data.train_examples or use fewer processes.')
  take = slice(shard_index, shard_index + shard_count * per_shard, shard_count)
  unused = len(pool) - shard_count * per_shard
  if unused and shard_index == 0:  # said once, not by every process
    logging.warning('%s: %d of the %d training examples are left out, so that %d processes '
                    'get equal shares (the same ones every epoch; a multiple of %d '
                    'examples uses them all).', split.description, unused, len(pool),
                    shard_count, shard_count)
  ids = pool[take]
  if not labels:
    return ids, None
  return ids, (split.labels(ids) if pool_labels is None else pool_labels[take])


def _batch_maker(split, ids, labels, *, data_shape, data_config, subset=None):
  """Returns (make_batch, examples per shard, worker processes, how, for the log).

  `subset`: (what, bool[len(ids)]) when a subset was asked for (data.train_examples,
  data.labels_per_class): unreadable examples of the mask are reported, since
  skipping them shrinks (and unbalances) the subset (`_check_subset_readable`).
  """
  if split.images is not None:
    return (iterator_lib.ArrayBatch(split.images[ids], labels), len(ids), 0,
            'in memory')
  num_workers = int(sources.field(data_config, 'num_workers'))
  if decode.use_cache(sources.field(data_config, 'cache'), count=len(ids),
                      example_shape=data_shape):
    start = time.monotonic()
    images, kept = decode.map_examples(
        split.reader, ids, example_shape=data_shape, dtype=np.uint8,
        num_workers=num_workers, what=split.description)
    if not len(images):
      raise split.reader.unreadable_error(ids)
    if subset is not None:
      readable = np.zeros(len(ids), bool)
      readable[kept] = True
      _check_subset_readable(split, ids, readable, *subset)
    # Unreadable files are left out of the cache.
    return (iterator_lib.ArrayBatch(
        images, None if labels is None else labels[kept]), len(images), 0,
            f'decoded once into RAM ({images.nbytes / 2**20:.0f} MiB, '
            f'{time.monotonic() - start:.1f} s)')
  decode.check_readable(split.reader, ids)
  if subset is not None:
    what, must = subset
    readable = np.ones(len(ids), bool)
    positions = np.flatnonzero(must)
    # In slices, so that a large subset is never held in memory at once.
    for start in range(0, len(positions), _READ_CHECK_SLICE):
      part = positions[start:start + _READ_CHECK_SLICE]
      _, kept = decode.map_examples(split.reader, ids[part], example_shape=data_shape,
                                    dtype=np.uint8, num_workers=0,
                                    what=f'{split.description} ({what})')
      readable[part] = False
      readable[part[kept]] = True
    _check_subset_readable(split, ids, readable, what, must)
  return (iterator_lib.DecodeBatch(split.reader, ids, labels), len(ids),
          num_workers, f'decoded per batch, {num_workers} worker process(es)')


def _check_subset_readable(split, ids, readable, what, must):
  """Warns when examples of a chosen subset cannot be read (they are skipped, so the
  subset is smaller than asked, and its classes no longer balanced). A warning, not an
  error, so that a run which trained that way still resumes.

  Args:
    split: the `sources.Split` the ids index.
    ids: int64[n] this process's examples.
    readable: bool[n], whether each could be read.
    what: the subset's setting, e.g. 'data.train_examples=134'.
    must: bool[n], the examples of the subset.
  """
  bad = ids[must & ~readable]
  if not len(bad):
    return
  name = getattr(split.reader, 'example_name', lambda index: f'example {index}')
  balance = ', its classes no longer balanced' if split.read_labels is not None else ''
  logging.warning(
      '%s: %d of the %d examples it picked on this process cannot be read (e.g. %s), so '
      'the run trains on %d%s. To study exactly the subset asked for, replace or delete '
      'the broken files before the run starts (deleting changes which examples the seed '
      'picks).', what, len(bad), int(np.sum(must)), ', '.join(name(i) for i in bad[:3]),
      int(np.sum(must)) - len(bad), balance)


def _sample_iterator(split, data_config, *, labels, train_examples,
                     description):
  """The endless iterator of a generated source (toy)."""
  if labels:
    raise errors.ConfigError(split.no_labels)
  if train_examples:
    raise errors.ConfigError(
        f'data.train_examples needs a fixed set of examples, but '
        f'{split.description} draws fresh points for every batch; set it to 0.')
  logging.info('Data: %s, shard %d/%d, batch %d.', split.description,
               description['shard_index'], description['shard_count'],
               description['batch_size'])
  return iterator_lib.DataIterator(
      iterator_lib.endless(iterator_lib.SampleBatch(
          split.sample, batch_size=description['batch_size'],
          seed=description['seed'], shard_index=description['shard_index'])),
      read_options=decode.read_options(
          decodes=False, num_workers=0,
          prefetch=int(sources.field(data_config, 'prefetch'))),
      num_workers=0, description=dict(description, source=split.description))


def _examples_digest(split, pool, pool_labels):
  """16 hex digits of SHA-256 naming the training examples before sharding: the
  split's listing, the pool's indices and its labels (-1 for unlabelled). Processes
  must agree on it (`gan_jax.train`): each takes its shard of the
  pool by index, and a host whose copy lists other files would train on other
  examples, or the same ones twice, under other labels."""
  digest = hashlib.sha256(split.listing.encode('utf-8'))
  digest.update(np.ascontiguousarray(pool, np.int64).tobytes())
  if pool_labels is not None:
    digest.update(np.ascontiguousarray(pool_labels, np.int32).tobytes())
  return digest.hexdigest()[:16]


def _example_iterator(split, data_config, *, labels, train_examples,
                      labels_per_class, description, updates_per_batch=1):
  """The endless iterator of a source with examples (digits, tfds, folders)."""
  if labels and split.read_labels is None:
    raise errors.ConfigError(split.no_labels)
  seed, batch_size = description['seed'], description['batch_size']
  pool, pool_labels = training_pool(
      split, train_examples=train_examples, labels_per_class=labels_per_class,
      labels=labels, seed=seed)
  ids, shard_labels = _shard(split, pool, pool_labels, labels=labels,
                             shard_index=description['shard_index'],
                             shard_count=description['shard_count'])
  description['examples_sha256'] = _examples_digest(split, pool, pool_labels)
  subset = None
  if train_examples:
    subset = (f'data.train_examples={train_examples}', np.ones(len(ids), bool))
  elif labels and labels_per_class:
    subset = (f'data.labels_per_class={labels_per_class}', shard_labels >= 0)
  make_batch, per_shard, workers, how = _batch_maker(
      split, ids, shard_labels, data_shape=tuple(description['data_shape']),
      data_config=data_config, subset=subset)
  if split.reader is not None:
    description['crop'] = sources.field(data_config, 'crop')
  # Only set subsets enter the state, so default states stay as they were.
  if train_examples:
    description['train_examples'] = train_examples
  if labels and labels_per_class:
    description['labels_per_class'] = labels_per_class
  description.update(source=split.description, examples_per_shard=per_shard)
  if per_shard < batch_size:
    logging.warning('%s: %d examples per process, fewer than the batch size '
                    '%d; batches span epochs.', split.description, per_shard,
                    batch_size)
  logging.info('Data: %s, %d examples for shard %d/%d, batch %d, shape %s, '
               'labels %s, %s.', split.description, per_shard,
               description['shard_index'], description['shard_count'],
               batch_size, tuple(description['data_shape']), labels, how)
  order = _order(make_batch, data_config, per_shard=per_shard, seed=seed,
                 batch_size=batch_size, description=description,
                 updates_per_batch=updates_per_batch,
                 fewest_labelled=_fewest_labelled(pool_labels, description['shard_count']))
  return iterator_lib.DataIterator(
      iterator_lib.endless(iterator_lib.TrainBatch(order, make_batch)),
      read_options=decode.read_options(
          decodes=isinstance(make_batch, iterator_lib.DecodeBatch),
          num_workers=workers,
          prefetch=int(sources.field(data_config, 'prefetch'))),
      num_workers=workers, description=description)


def _fewest_labelled(pool_labels, shard_count):
  """The fewest labelled examples (label >= 0) any process's shard of the pool holds
  (`_shard`'s split), or None when every example is labelled."""
  if pool_labels is None:
    return None
  per_shard = len(pool_labels) // shard_count
  return min(int(np.sum(pool_labels[i:i + shard_count * per_shard:shard_count] >= 0))
             for i in range(shard_count))


def _order(make_batch, data_config, *, per_shard, seed, batch_size, description,
           updates_per_batch=1, fewest_labelled=None):
  """The batch order: plain shuffling, or with `data.labelled_fraction` of every batch
  drawn from the labelled examples (`iterator.LabelledMixOrder`). Each of several
  processes shuffles its shard in its own order. The fraction is of each D update's
  global batch (`batch_size` holds `updates_per_batch` of this process's shares), so
  the share is the same whatever the number of processes; `fewest_labelled`: the
  fewest labelled examples of any process (so that every process refuses together)."""
  fraction = float(sources.field(data_config, 'labelled_fraction'))
  shard_count = description['shard_count']
  shard_index = description['shard_index'] if shard_count > 1 else None
  if not fraction:
    return iterator_lib.ShardOrder(per_shard=per_shard, seed=seed, batch_size=batch_size,
                                   shard_index=shard_index)
  if not 0 < fraction < 1:
    raise errors.ConfigError(
        f'data.labelled_fraction must be in [0, 1) (the share of every batch drawn '
        f'from the labelled examples; 0 = off), got {fraction}.')
  if make_batch.labels is None:
    raise errors.ConfigError(
        'data.labelled_fraction needs labels, and this model reads none: it is for '
        'the semi-supervised GAN (model.num_classes > 0, data.labels_per_class > 0). '
        'Set it to 0.')
  labelled = np.flatnonzero(make_batch.labels >= 0)
  share = batch_size // updates_per_batch  # this process's rows of one D update
  global_batch = share * shard_count
  num_labelled = round(fraction * global_batch)
  fewest = len(labelled) if fewest_labelled is None else min(fewest_labelled, len(labelled))
  if not fewest or not 1 <= num_labelled < global_batch:
    holder = ('this process has' if shard_count == 1 else
              f'the process with the fewest of the {shard_count} has')
    # The advice fits what is missing: labelled examples, or rows of a batch.
    fix = ('Raise data.labels_per_class.' if not fewest else
           'Raise data.labelled_fraction or train.batch_size.' if num_labelled < 1 else
           'Lower data.labelled_fraction or raise train.batch_size.')
    raise errors.ConfigError(
        f'data.labelled_fraction={fraction} asks for {num_labelled} labelled rows in '
        f'batches of {global_batch}, and {holder} {fewest} labelled examples; a batch '
        f'needs at least one labelled and one unlabelled row, and each process labelled '
        f'examples. {fix}')
  index = description['shard_index']
  rows = iterator_lib.spread_rows(global_batch, num_labelled)[index * share:(index + 1) * share]
  description['labelled_fraction'] = fraction
  if shard_count > 1 or updates_per_batch > 1:
    # Only where the rows differ from those of states saved before the share was of
    # the global batch of one update (`DataIterator.set_state` warns about those).
    description['labelled_rows'] = int(rows.sum())
  logging.info('Data: %d of every %d rows of a batch drawn from the labelled examples '
               '(%d of this process\'s %d; %d labelled examples here).', num_labelled,
               global_batch, int(rows.sum()), share, len(labelled))
  return iterator_lib.LabelledMixOrder(per_shard=per_shard, labelled_positions=labelled,
                                       seed=seed, labelled_rows=np.tile(rows, updates_per_batch),
                                       shard_index=shard_index)


def create_train_iterator(data_config, *, data_shape, batch_size, seed,
                          shard_index=0, shard_count=1, labels=False, updates_per_batch=1):
  """Creates this process's endless training-batch iterator.

  Args:
    data_config: config.data (fields: source, name, split, data_dir, path,
      crop, toy, num_workers, prefetch, cache, train_examples,
      labels_per_class, labelled_fraction; see gan_jax/defaults.py; missing fields take their
      defaults).
    data_shape: (H, W, C) for image sources, (2,) for toy.
    batch_size: examples per batch on this process.
    seed: config.seed: shuffles (reshuffled every epoch) or draws (toy), and
      picks the train_examples / labels_per_class subsets.
    shard_index: this process's index (jax.process_index()).
    shard_count: number of processes (jax.process_count()); shards are
      disjoint and equal-sized (n // shard_count examples; the rest unused).
    labels: also yield class labels (digits, labelled TFDS datasets, image
      folders with one sub-folder per class).
    updates_per_batch: how many D updates' shares each batch holds, one after
      another (train.n_critic): data.labelled_fraction applies to each.

  Returns:
    A `DataIterator` yielding {'images': f32[batch_size, *data_shape]} (images
    in [-1, 1]; toy points f32[batch_size, 2]), plus 'labels':
    int32[batch_size] in 0..num_classes-1 (-1: unlabelled, see
    data.labels_per_class) when labels=True; with get_state() / set_state().

  Raises:
    errors.ConfigError: unknown source / dataset / split / crop / cache mode,
      labels from a source without them, bad shapes, subsets or shards.
    errors.MissingFileError: missing or unreadable data (the message says how
      to provide it).
  """
  batch_size, seed = int(batch_size), int(seed)
  shard_index, shard_count = int(shard_index), int(shard_count)
  _check_args(batch_size=batch_size, seed=seed, shard_index=shard_index,
              shard_count=shard_count)
  if updates_per_batch < 1 or batch_size % updates_per_batch:
    raise ValueError(f'batch_size={batch_size} is not a whole number of the '
                     f'updates_per_batch={updates_per_batch} shares.')
  train_examples, labels_per_class = _subset_sizes(data_config)
  decode.check_cache_mode(sources.field(data_config, 'cache'))
  description = dict(seed=seed, batch_size=batch_size,
                     shard_index=shard_index, shard_count=shard_count,
                     data_shape=[int(d) for d in data_shape])
  split = sources.open_split(data_config,
                             split=sources.field(data_config, 'split'),
                             data_shape=data_shape)
  if split.sample is not None:
    return _sample_iterator(split, data_config, labels=labels,
                            train_examples=train_examples,
                            description=description)
  return _example_iterator(split, data_config, labels=labels,
                           train_examples=train_examples,
                           labels_per_class=labels_per_class,
                           description=description, updates_per_batch=int(updates_per_batch))


def load_eval_data(data_config, *, data_shape, split, num_examples,
                   labels=False):
  """Loads a fixed evaluation set (e.g. for FID reference statistics).

  The examples are the first N of a fixed permutation (seed 0, independent of
  config.seed) of the split, so every run and process gets the same set;
  data.train_examples / labels_per_class do not apply. For toy, N points
  drawn with a fixed generator per split name. Decoding uses threads, or
  data.num_workers grain worker processes.

  Args:
    data_config: config.data.
    data_shape: (H, W, C) for image sources, (2,) for toy.
    split: 'train' / 'test' / any TFDS split string; ignored by image_folder
      (the whole folder is one split).
    num_examples: wanted count.
    labels: also return the examples' class labels.

  Returns:
    images f32[N, *data_shape], N = min(num_examples, available), images in
    [-1, 1]; or (images, labels int32[N]) when labels=True. Unreadable image
    files are skipped (and logged), not replaced.

  Raises:
    errors.ConfigError, errors.MissingFileError: as `create_train_iterator`.
  """
  num_examples = int(num_examples)
  opened = sources.open_split(data_config, split=split, data_shape=data_shape)
  if labels and opened.read_labels is None:
    raise errors.ConfigError(opened.no_labels)
  if opened.sample is not None:
    rng = np.random.default_rng([_EVAL_SEED, zlib.crc32(split.encode())])
    return opened.sample(num_examples, rng)
  order = np.random.default_rng(_EVAL_SEED).permutation(opened.count)
  if opened.images is not None:
    ids = order[:num_examples]
    images = opened.images[ids]
  else:
    images, kept = decode.map_examples(
        opened.reader, order, example_shape=tuple(int(d) for d in data_shape),
        dtype=np.uint8, num_workers=int(sources.field(data_config, 'num_workers')),
        what=opened.description, limit=num_examples)
    ids = order[kept]
    images = images_lib.to_float(images)
  return (images, opened.labels(ids)) if labels else images
