"""Evaluates a trained checkpoint: `python -m gan_jax.evaluate --workdir=DIR ...`.

  python -m gan_jax.evaluate --workdir=runs/dcgan_cifar10 --metrics=fid,is,kid,pr \
      --num_samples=50000                  # the standard protocol: 50k samples
  python -m gan_jax.evaluate --workdir=runs/dcgan_digits --metrics=proxy --num_samples=1000

The checkpoint's EMA generator (newest step unless --step) draws --num_samples
samples from z ~ N(0, I) (--seed) and is compared with reference features of the
run's data set (--reference_split, default the training split; --num_reference
images, default --num_samples), cached on disk. The result, with the protocol
spelled out (implementation, weights hash, resolution, reference split and size,
number of samples), is printed as JSON and written to --output (default
`<workdir>/eval/step_<step>.json`).

Inception metrics need pytorch-fid's weights file; without it the error message
says where to download it and where to put it.
"""

import datetime
import json
import os
import time

from absl import app
from absl import flags
import jax
import ml_collections

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run folder (config.json and checkpoints/).')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: the newest).')
_METRICS = flags.DEFINE_string('metrics', 'fid', 'Comma list of: proxy, fid, is, kid, pr.')
_NUM_SAMPLES = flags.DEFINE_integer('num_samples', 50000, 'Generated samples.')
_NUM_REFERENCE = flags.DEFINE_integer(
    'num_reference', None, 'Reference (real) examples (default: --num_samples; fewer if '
    'the split is smaller).')
_REFERENCE_SPLIT = flags.DEFINE_string(
    'reference_split', None, 'Split of the reference set (default: config.data.split).')
_WEIGHTS = flags.DEFINE_string(
    'inception_weights', None, 'pt_inception-2015-12-05-6726825d.pth (default: '
    'config.eval.inception_weights, $GAN_JAX_INCEPTION_WEIGHTS, the cache folder).')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the latents z.')
_BATCH = flags.DEFINE_integer('batch_size', 500, 'Latents per generator call.')
_OUTPUT = flags.DEFINE_string('output', None, 'JSON output (default <workdir>/eval/step_<N>.json).')
_CACHE = flags.DEFINE_string('cache_dir', None, 'Cache folder (default ~/.cache/gan_jax).')


def _data_shape(config):
  if config.data.source == 'toy':
    return (2,)
  from gan_jax import train  # pylint: disable=g-import-not-at-top
  return tuple(train.data_shape(config))


def evaluate(workdir, *, step=None, metrics='fid', num_samples=50000, num_reference=None,
             reference_split=None, inception_weights=None, seed=0, batch_size=500,
             output=None, cache_dir=None, **evaluator_kwargs):
  """Evaluates a checkpoint and writes the JSON record.

  Args:
    workdir: run folder.
    step: checkpoint step (None: newest).
    metrics: comma list of metric names.
    num_samples: generated samples.
    num_reference: reference examples (None: num_samples).
    reference_split: reference split (None: config.data.split).
    inception_weights: weights path (None: config / environment / cache search).
    seed: latent seed.
    batch_size: latents per generator call.
    output: JSON path (None: `<workdir>/eval/step_<step>.json`).
    cache_dir: cache root (None: default).
    **evaluator_kwargs: passed to `metrics.make_evaluator`.

  Returns:
    The record: {'workdir', 'step', 'results': {name: float}, 'protocol': {...}, ...}.
  """
  from gan_jax import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  from gan_jax import sample  # pylint: disable=g-import-not-at-top
  config, generate = sample.load_generator(workdir, step)
  config = ml_collections.ConfigDict(config.to_dict())  # a private, unlocked copy
  config.eval.metrics = metrics
  config.eval.num_samples = int(num_samples)
  if inception_weights:
    config.eval.inception_weights = inception_weights
  start = time.perf_counter()
  evaluator = metrics_lib.make_evaluator(
      config, data_shape=_data_shape(config), num_reference=num_reference,
      reference_split=reference_split, batch_size=batch_size, cache_dir=cache_dir,
      **evaluator_kwargs)
  results = evaluator(generate, seed=seed)
  restored_step = getattr(generate, 'step', step)
  record = dict(
      workdir=os.path.abspath(workdir), step=restored_step, generator='EMA',
      results=results, protocol=dict(evaluator.protocol, seed=seed, metrics=list(evaluator.metrics)),
      seconds=round(time.perf_counter() - start, 2),
      date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
      jax=dict(version=jax.__version__, backend=jax.default_backend(),
               devices=jax.device_count()))
  if output is None:
    output = os.path.join(workdir, 'eval', f'step_{restored_step}.json')
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  with open(output, 'w', encoding='utf-8') as f:
    json.dump(record, f, indent=2)
  record['output'] = output
  return record


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not _WORKDIR.value:
    raise app.UsageError('--workdir is required.')
  record = evaluate(_WORKDIR.value, step=_STEP.value, metrics=_METRICS.value,
                    num_samples=_NUM_SAMPLES.value, num_reference=_NUM_REFERENCE.value,
                    reference_split=_REFERENCE_SPLIT.value, inception_weights=_WEIGHTS.value,
                    seed=_SEED.value, batch_size=_BATCH.value, output=_OUTPUT.value,
                    cache_dir=_CACHE.value)
  print(json.dumps(record, indent=2))


if __name__ == '__main__':
  app.run(main)
