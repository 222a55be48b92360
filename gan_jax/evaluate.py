"""Evaluates a trained checkpoint: `python -m gan_jax.evaluate --workdir=DIR ...`.

  # the standard protocol: 50k samples against the training split
  python -m gan_jax.evaluate --workdir=runs/dcgan_cifar10 --metrics=fid,is,kid,pr \\
      --num_samples=50000
  # offline (no download): the digits classifier proxies
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

import argparse
import datetime
import json
import logging
import os
import sys
import time

import jax
import ml_collections


def _data_shape(config):
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
      results=results,
      protocol=dict(evaluator.protocol, seed=seed, metrics=list(evaluator.metrics)),
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


def parse_args(argv):
  """Command-line options (argparse: gan_jax.sample defines absl flags with the
  same names, and absl flags are global to the process, so both modules could not
  be imported together)."""
  parser = argparse.ArgumentParser(
      prog='python -m gan_jax.evaluate', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--workdir', required=True, help='Run folder (config.json, checkpoints/).')
  parser.add_argument('--step', type=int, default=None, help='Checkpoint step (default: newest).')
  parser.add_argument('--metrics', default='fid', help='Comma list of: proxy, fid, is, kid, pr.')
  parser.add_argument('--num_samples', type=int, default=50000, help='Generated samples.')
  parser.add_argument('--num_reference', type=int, default=None,
                      help='Reference (real) examples (default: --num_samples; fewer if the '
                           'split is smaller).')
  parser.add_argument('--reference_split', default=None,
                      help='Split of the reference set (default: config.data.split).')
  parser.add_argument('--inception_weights', default=None,
                      help='pt_inception-2015-12-05-6726825d.pth (default: '
                           'config.eval.inception_weights, $GAN_JAX_INCEPTION_WEIGHTS, cache).')
  parser.add_argument('--seed', type=int, default=0, help='Seed of the latents z.')
  parser.add_argument('--batch_size', type=int, default=500, help='Latents per generator call.')
  parser.add_argument('--output', default=None,
                      help='JSON output (default: <workdir>/eval/step_<N>.json).')
  parser.add_argument('--cache_dir', default=None, help='Cache folder (default ~/.cache/gan_jax).')
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(message)s')
  try:
    record = evaluate(args.workdir, step=args.step, metrics=args.metrics,
                      num_samples=args.num_samples, num_reference=args.num_reference,
                      reference_split=args.reference_split,
                      inception_weights=args.inception_weights, seed=args.seed,
                      batch_size=args.batch_size, output=args.output, cache_dir=args.cache_dir)
  except FileNotFoundError as e:  # missing run / checkpoint / weights: the message says what to do
    sys.exit(f'error: {e}')
  print(json.dumps(record, indent=2))
  return record


if __name__ == '__main__':
  main()
