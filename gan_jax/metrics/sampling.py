"""The evaluation's latents and the samples a process generates from them.

`latents(seed, num, z_dim, start=...)` is one fixed sequence of z ~ N(0, I)
per seed; `generate_samples` runs a generator on one process's contiguous rows of
it (with cycled labels for conditional models), so the global sample set is the
same for any number of processes.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax.metrics import class_metrics
from gan_jax.metrics import exchange

_LATENT_BLOCK = 1000


@functools.partial(jax.jit, static_argnames=('z_dim',))
def _latent_block(key, index, z_dim):
  return jax.random.normal(jax.random.fold_in(key, index), (_LATENT_BLOCK, z_dim), jnp.float32)


def latents(seed, num, z_dim, *, start=0):
  """z ~ N(0, I) for an evaluation: rows [start, start + num) of one fixed sequence.

  Drawn in blocks of 1000 rows, block i from `fold_in(jax.random.key(seed), i)`,
  so one compiled function serves every sample count, a larger evaluation
  extends a smaller one instead of replacing its latents, and a process can draw
  only its own rows of the global set.

  Returns:
    f32[num, z_dim].
  """
  key = jax.random.key(seed)
  first, last = start // _LATENT_BLOCK, -(-(start + num) // _LATENT_BLOCK)
  blocks = [np.asarray(_latent_block(key, i, z_dim)) for i in range(first, last)]
  if not blocks:
    return np.zeros((0, z_dim), np.float32)
  offset = start - first * _LATENT_BLOCK
  return np.concatenate(blocks)[offset:offset + num]


def generate_samples(generate, *, seed, num_samples, z_dim, batch_size=500, num_classes=0,
                     process_index=0, process_count=1):
  """Runs `generate` on a process's rows of the evaluation latents.

  Process `process_index` of `process_count` gets the rows
  `exchange.process_share(num_samples)` of `latents(seed, num_samples, z_dim)`
  (all rows by default). Every call gets `batch = min(batch_size, ceil(N / P))`
  latents (the last batch is padded), and every process makes the same number
  of calls, so a jitted `generate` compiles once and a generator whose
  parameters live on every process's devices runs in step everywhere.

  Args:
    generate: z f32[B, z_dim] -> f32[B, ...]; `generate(z, labels)` with
      labels int32[B] when num_classes > 0.
    seed: seed of the latents.
    num_samples: samples over all processes (>= 1).
    z_dim: latent size.
    batch_size: latents per call.
    num_classes: K > 0: row i is generated with label i mod K.
    process_index, process_count: whose share to generate.

  Returns:
    np.float32[stop - start, ...], the samples of this process's rows.
  """
  start, stop = exchange.process_share(num_samples, index=process_index, count=process_count)
  largest = -(-num_samples // process_count)
  batch = max(1, min(batch_size, largest))
  z = latents(seed, stop - start, z_dim, start=start)
  labels = class_metrics.row_labels(start, stop, num_classes) if num_classes else None
  outputs = []
  for offset in range(0, max(largest, 1), batch):
    chunk = np.zeros((batch, z_dim), np.float32)
    valid = len(z[offset:offset + batch])
    chunk[:valid] = z[offset:offset + batch]
    if labels is None:
      out = generate(chunk)
    else:
      chunk_labels = np.zeros(batch, np.int32)
      chunk_labels[:valid] = labels[offset:offset + batch]
      out = generate(chunk, chunk_labels)
    outputs.append(np.asarray(out, np.float32)[:valid])
  return np.concatenate(outputs)
