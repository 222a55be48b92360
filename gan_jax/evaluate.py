"""Evaluates a trained checkpoint: `python -m gan_jax.evaluate --workdir=DIR ...`.

  # the standard protocol: 50k samples against the training split
  python -m gan_jax.evaluate --workdir=runs/dcgan_cifar10 --metrics=fid,is,kid,pr \\
      --num_samples=50000
  # offline (no download): the digits judge (Frechet distance, confident share)
  python -m gan_jax.evaluate --workdir=runs/dcgan_digits --metrics=proxy --num_samples=1000

The checkpoint's EMA generator (newest step unless --step) draws --num_samples
samples from z ~ N(0, I) (--seed) and is compared with reference features of the
run's data set (--reference_split, default the training split; --num_reference
images, default --num_samples), cached on disk. The result, with the protocol
spelled out (implementation, weights hash, resolution, reference split and size,
number of samples), is printed as JSON and written to --output (default
`<workdir>/eval/step_<step>.json`). Conditional models are sampled with the
labels cycled over the classes; the class-aware metrics (`intra_fid`, `cas`)
also record their per-class values under `per_class`.

Inception metrics need pytorch-fid's weights file; without it the error message
says where to download it and where to put it.
"""

import datetime
import json
import os
import time

from absl import flags
import jax
import ml_collections

from gan_jax import cli
from gan_jax import metrics as metrics_lib
from gan_jax import models
from gan_jax import sample
from gan_jax import workdir as workdir_lib


def evaluate(workdir, *, step=None, metrics='fid', num_samples=50000, num_reference=None,
             reference_split=None, inception_weights=None, seed=0, batch_size=500,
             output=None, cache_dir=None, **evaluator_kwargs):
  """Evaluates a checkpoint and writes the JSON record.

  Args:
    workdir: run folder.
    step: checkpoint step (None: newest).
    metrics: comma list of metric names (see `metrics.METRICS`).
    num_samples: generated samples (>= 2).
    num_reference: reference examples (None: num_samples).
    reference_split: reference split (None: config.data.split).
    inception_weights: weights path (None: config / environment / cache search).
    seed: latent seed.
    batch_size: latents per generator call.
    output: JSON path (None: `<workdir>/eval/step_<step>.json`).
    cache_dir: cache root (None: default).
    **evaluator_kwargs: passed to `metrics.make_evaluator`.

  Returns:
    The record: {'workdir', 'step', 'results': {name: float}, 'per_class':
    {metric: [K floats]} (class-aware metrics only), 'protocol': {...}, ...}.
    With several processes every one returns it and process 0 writes it.
  """
  metrics_lib.parse_metrics(metrics, flag='--metrics')  # fails before anything loads
  # The evaluator is built before the checkpoint is restored, so that missing
  # weights or data are reported before any restore work.
  config = ml_collections.ConfigDict(workdir_lib.load_config(workdir).to_dict())
  config.eval.metrics = metrics
  config.eval.num_samples = int(num_samples)
  if inception_weights:
    config.eval.inception_weights = inception_weights
  start = time.perf_counter()
  evaluator = metrics_lib.make_evaluator(
      config, data_shape=models.data_shape(config.model), num_reference=num_reference,
      reference_split=reference_split, batch_size=batch_size, cache_dir=cache_dir,
      **evaluator_kwargs)
  _, generate = sample.load_generator(workdir, step)
  evaluation = evaluator.run(generate, seed=seed)
  restored_step = getattr(generate, 'step', step)
  record = dict(
      workdir=os.path.abspath(workdir), step=restored_step, generator='EMA',
      results=evaluation['results'], per_class=evaluation['per_class'],
      protocol=dict(evaluator.protocol, seed=seed, metrics=list(evaluator.metrics)),
      seconds=round(time.perf_counter() - start, 2),
      date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
      jax=dict(version=jax.__version__, backend=jax.default_backend(),
               devices=jax.device_count()))
  if output is None:
    output = os.path.join(workdir, 'eval', f'step_{restored_step}.json')
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, 'w', encoding='utf-8') as f:
      json.dump(record, f, indent=2)
  record['output'] = output
  return record


def _define_flags():
  """Command-line flags, defined only when run as a program (so importing is free)."""
  flags.DEFINE_string('workdir', None, 'Run folder (config.json, checkpoints/).', required=True)
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: newest).', lower_bound=0)
  flags.DEFINE_string('metrics', 'fid', 'Comma list of: ' + ', '.join(metrics_lib.METRICS) + '.')
  flags.DEFINE_integer('num_samples', 50000, 'Generated samples.', lower_bound=2)
  flags.DEFINE_integer('num_reference', None, 'Reference (real) examples (default: '
                       '--num_samples; fewer if the split is smaller).', lower_bound=2)
  flags.DEFINE_string('reference_split', None,
                      'Split of the reference set (default: config.data.split).')
  flags.DEFINE_string('inception_weights', None,
                      'pt_inception-2015-12-05-6726825d.pth (default: config.eval.'
                      'inception_weights, $GAN_JAX_INCEPTION_WEIGHTS, cache).')
  flags.DEFINE_integer('seed', 0, 'Seed of the latents z.', lower_bound=0)
  flags.DEFINE_integer('batch_size', 500, 'Latents per generator call.', lower_bound=1)
  flags.DEFINE_string('output', None, 'JSON output (default: <workdir>/eval/step_<N>.json).')
  flags.DEFINE_string('cache_dir', None, 'Cache folder (default ~/.cache/gan_jax).')


def main(argv):
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}; flags look like --name=value.')
  f = flags.FLAGS
  record = evaluate(f.workdir, step=f.step, metrics=f.metrics, num_samples=f.num_samples,
                    num_reference=f.num_reference, reference_split=f.reference_split,
                    inception_weights=f.inception_weights, seed=f.seed,
                    batch_size=f.batch_size, output=f.output, cache_dir=f.cache_dir)
  print(json.dumps(record, indent=2))


if __name__ == '__main__':
  _define_flags()
  cli.run(main, quiet=True)
