"""Training on little data: a seeded, class-balanced subset of examples or of labels.

`data.train_examples = N` keeps N examples of the training split, as equal per
class as the class sizes allow (`balanced_quotas`; without labels, a uniform
subset). `data.labels_per_class = L` keeps the labels of L examples per class
and sets every other label to -1: the semi-supervised step treats -1 as
"unlabelled". Both draw from `config.seed` through their own random streams
(distinct from the per-epoch shuffles, `iterator.ShardOrder`), over the whole split
before it is sharded, so every process picks the same examples.
"""

import zlib

from absl import logging

import numpy as np

from gan_jax import errors

UNLABELLED = -1
# Second entry of the seed sequence of each choice: fixed, distinct tags.
_EXAMPLES_STREAM = zlib.crc32(b'gan_jax.data.train_examples')
_LABELS_STREAM = zlib.crc32(b'gan_jax.data.labels_per_class')


def balanced_quotas(sizes, total):
  """Splits `total` over classes as equally as their sizes allow.

  Water filling: every class gets the same share until it runs out of
  examples; the rest is shared by the larger classes. When the total does not
  divide evenly, the classes with the lowest ids get one more.

  Args:
    sizes: int[K] examples per class.
    total: wanted count, 0 <= total <= sum(sizes).

  Returns:
    int64[K] quotas, quotas <= sizes, sum == total.
  """
  sizes = np.asarray(sizes, np.int64)
  quotas = np.zeros_like(sizes)
  remaining = int(total)
  while remaining > 0:
    open_classes = np.flatnonzero(quotas < sizes)
    share = remaining // len(open_classes)
    if share == 0:
      quotas[open_classes[:remaining]] += 1
      break
    added = np.minimum(share, sizes[open_classes] - quotas[open_classes])
    quotas[open_classes] += added
    remaining -= int(added.sum())
  return quotas


def select_examples(count, *, num, labels, seed):
  """Picks the training examples to keep.

  Args:
    count: examples in the split.
    num: examples to keep, 1 <= num <= count.
    labels: int[count] class labels for a class-balanced choice, or None for
      a uniform one.
    seed: config.seed.

  Returns:
    int64[num] sorted example indices.

  Raises:
    errors.ConfigError: when num > count.
  """
  if num > count:
    raise errors.ConfigError(
        f'data.train_examples={num}, but the training split has only {count} '
        'examples. Set --config.data.train_examples to at most that (0 = all).')
  rng = np.random.default_rng([seed, _EXAMPLES_STREAM])
  if labels is None:
    return np.sort(rng.permutation(count)[:num])
  classes, sizes = np.unique(labels, return_counts=True)
  chosen = [
      _pick(np.flatnonzero(labels == label), quota, rng)
      for label, quota in zip(classes, balanced_quotas(sizes, num))
  ]
  return np.sort(np.concatenate(chosen))


def keep_labels_per_class(labels, *, per_class, seed):
  """Keeps `per_class` labels per class, seeded; the rest become UNLABELLED.

  Args:
    labels: int[n] class labels (of the possibly reduced training split).
    per_class: labels kept per class (all of a class that has fewer).
    seed: config.seed.

  Returns:
    int32[n]: labels, with UNLABELLED (-1) for the examples not chosen.

  Raises:
    errors.ConfigError: when `per_class` keeps every label (no class is larger), which
      would train fully supervised while the config asks for unlabelled examples.
  """
  labels = np.asarray(labels, np.int32)
  classes, sizes = np.unique(labels, return_counts=True)
  if len(sizes) and per_class >= sizes.max():
    raise errors.ConfigError(
        f'data.labels_per_class={per_class} keeps every label: the largest of the '
        f'{len(classes)} classes has {sizes.max()} training examples, so none would be '
        'unlabelled. Keep fewer per class, or set it to 0 to train on all labels.')
  short = {int(c): int(n) for c, n in zip(classes, sizes) if n <= per_class}
  if short:
    logging.warning('data.labels_per_class=%d: class(es) %s have only %s training '
                    'examples, so all of them stay labelled (no unlabelled examples of '
                    'those classes).', per_class, list(short), list(short.values()))
  rng = np.random.default_rng([seed, _LABELS_STREAM])
  out = np.full_like(labels, UNLABELLED)
  for label in classes:
    kept = _pick(np.flatnonzero(labels == label), per_class, rng)
    out[kept] = label
  return out


def _pick(members, num, rng):
  """`num` of `members` (all when fewer), chosen by the generator."""
  return members[rng.permutation(len(members))[:num]]
