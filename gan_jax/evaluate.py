"""Evaluates a trained checkpoint: `python -m gan_jax.evaluate --workdir=DIR ...`.

  # the standard protocol: 50k samples against the training split
  python -m gan_jax.evaluate --workdir=runs/dcgan_cifar10 --metrics=fid,is,kid,pr \\
      --num_samples=50000
  # offline (no download): the digits judge (Frechet distance, confident share)
  python -m gan_jax.evaluate --workdir=runs/dcgan_digits --metrics=proxy --num_samples=1000
  # a discriminator with class logits (semi-supervised, ACGAN): its test-split accuracy
  python -m gan_jax.evaluate --workdir=runs/semi_supervised_digits --metrics=accuracy

The checkpoint's EMA generator (newest step unless --step) draws --num_samples
samples from z ~ N(0, I) (--seed) and is compared with reference features of the
run's data set (--reference_split, default config.eval.reference_split, else the
training split config.data.split; --num_reference
images, default config.eval.num_reference, else --num_samples), cached on disk. The result, with the protocol
spelled out (implementation, weights hash, resolution, reference split and size,
number of samples), is printed as JSON and written to --output (default
`<workdir>/eval/step_<step>.json`; an earlier record there of another protocol, e.g.
other metrics, sample count or seed, is kept beside it, renamed by its date).
Conditional models are sampled with the labels cycled over the classes; the
class-aware metrics (`intra_fid`, `cas`) also record their per-class values under
`per_class`. `--standing_stats=N` first
replaces G's BatchNorm statistics by their averages over N train-mode batches of
fresh latents (BigGAN's standing statistics, for the EMA weights; latents from
--seed; default: the run's config.eval.standing_stats), recorded as
`protocol.standing_stats`. `--langevin_steps=N` scores samples of latents moved by D
first (DDLS, `gan_jax.langevin`; the noise seeded by --seed), recorded as
`protocol.ddls`: numbers of another sampler than G's own, as StudioGAN's `-lgv` ones.

`accuracy` is not a sample metric: it classifies the labelled --accuracy_split
(default: the run's config.eval.accuracy_split, 'test' unless set) with the
checkpoint's discriminator (eval mode, the most probable of its K class logits),
as `gan_jax.classify` does; the record's protocol says which split and how many
images.

Inception metrics need pytorch-fid's weights file; without it the error message
says where to download it and where to put it.
"""

import dataclasses
import datetime
import json
import os
import time

from absl import flags
from absl import logging
from etils import epath
import jax
import ml_collections

from gan_jax import classify
from gan_jax import cli
from gan_jax import defaults
from gan_jax import errors
from gan_jax import langevin
from gan_jax import metrics as metrics_lib
from gan_jax import models
from gan_jax import sample
from gan_jax import standing_stats as standing_stats_lib
from gan_jax import workdir as workdir_lib
from gan_jax import writers
from gan_jax.data import digits as digits_lib
from gan_jax.metrics import classifier as classifier_lib
from gan_jax.metrics import evaluator as evaluator_lib

# The discriminator's accuracy as a classifier (runs whose D has class logits).
ACCURACY = classifier_lib.ACCURACY
KNOWN_METRICS = metrics_lib.METRICS + (ACCURACY,)
DEFAULT_NUM_SAMPLES = 50000
DEFAULT_BATCH_SIZE = 500


def _metric_names(metrics):
  """--metrics (a comma list, or a list of names) as a tuple of known names; ConfigError
  for an unknown name or none."""
  if not isinstance(metrics, str):
    metrics = ','.join(metrics)
  names = metrics_lib.parse_metrics(metrics, flag='--metrics', known=KNOWN_METRICS)
  if not names:
    raise errors.ConfigError(f'--metrics is empty; name one or more of {list(KNOWN_METRICS)}.')
  return names


def evaluate(workdir, *, step=None, metrics=None, num_samples=None, num_reference=None,
             reference_split=None, inception_weights=None, seed=None, batch_size=None,
             output=None, cache_dir=None, accuracy_split=None, best=False, standing_stats=None,
             ddls=None, **evaluator_kwargs):
  """Evaluates a checkpoint and writes the JSON record.

  Args:
    workdir: run folder.
    step: checkpoint step (None: newest).
    metrics: comma list (or a list) of metric names (`KNOWN_METRICS`: those of
      `metrics.METRICS`, and 'accuracy'); None: the run's `config.eval.metrics`, else
      what works offline for its data (`workdir.suggested_metrics`: 'proxy' on digits
      and toy data, 'accuracy' for a semi-supervised D, 'fid' for image data sets).
    num_samples: generated samples (>= 2; None: 50,000).
    num_reference: reference examples (None: config.eval.num_reference, else num_samples).
    reference_split: reference split (None: config.eval.reference_split, else
      config.data.split).
    inception_weights: weights path (None: config / environment / cache search).
    seed: latent seed (None: `sample.default_seed`, 0, or with `best` config.seed + 1,
      not the latents that picked the best checkpoint).
    batch_size: latents per generator call (>= 1; None: 500).
    output: a `.json` path (None: `<workdir>/eval/step_<step>.json`). An existing file
      there must be an evaluation record; one that measured otherwise is kept aside
      (`_keep_a_different_record`), as at the default path.
    Settings that none of the metrics uses (a sample count for 'accuracy' alone, a
    reference set for metrics that read none, Inception weights for metrics without
    Inception, `accuracy_split` without 'accuracy') are refused, not ignored.
    cache_dir: cache root (None: default).
    accuracy_split: the labelled split 'accuracy' classifies (None:
      config.eval.accuracy_split, as the evaluations during training).
    best: evaluate the best checkpoint (`<workdir>/best/`, the lowest FID / proxy FD
      of the evaluations during training) instead of one of `checkpoints/`.
    standing_stats: > 0: G's BatchNorm statistics re-estimated over this many
      train-mode batches first (`sample.load_generator`; latents from `seed`); 0: off;
      None: config.eval.standing_stats.
    ddls: `langevin.Options`: the sample metrics score the latents moved by DDLS
      (None or 0 steps: G's own samples).
    **evaluator_kwargs: passed to `metrics.make_evaluator`.

  Returns:
    The record: {'workdir', 'step', 'results': {name: float}, 'per_class':
    {metric: [K floats]} (class-aware metrics only), 'protocol': {...}, ...};
    'accuracy' is in [0, 1], its split and image count in protocol['accuracy'].
    With several processes every one returns it and process 0 writes it.
  """
  # Asked-for names are checked before the workdir is read; None waits for its config.
  names = None if metrics is None else _metric_names(metrics)
  for flag, value, least in (('--num_samples', num_samples, 2), ('--batch_size', batch_size, 1),
                             ('--num_reference', num_reference, 2)):
    if value is not None and value < least:
      raise errors.ConfigError(f'{flag} must be at least {least}, got {value}.')
  if seed is not None and not 0 <= seed <= defaults.MAX_SEED:  # as the flag's bounds
    raise errors.ConfigError(f'--seed must be in [0, 2**32 - 1], got {seed}: JAX keeps a '
                             "seed's low 32 bits, so larger seeds repeat smaller ones.")
  config = ml_collections.ConfigDict(workdir_lib.load_config(workdir).to_dict())
  if output is not None:
    _check_output(output, workdir)
  else:  # found unwritable after the evaluation, its results would be lost
    workdir_lib.check_writable(os.path.join(workdir, 'eval'),
                               flag='--output (default <workdir>/eval/)')
  asked = names is not None
  if names is None:
    names = _metric_names(workdir_lib.suggested_metrics(config))
  sample_metrics = ','.join(name for name in names if name != ACCURACY)
  # What the refusals below call the metrics: the flag, or the default it fell back on.
  metrics_said = (f'--metrics={",".join(names)}' if asked else
                  f"this run's default metrics ({','.join(names)}; --metrics picks others)")
  _refuse_unused_settings(names, config, metrics_said, num_samples=num_samples,
                          batch_size=batch_size, seed=seed, num_reference=num_reference,
                          reference_split=reference_split, inception_weights=inception_weights,
                          accuracy_split=accuracy_split)
  num_samples = DEFAULT_NUM_SAMPLES if num_samples is None else num_samples
  batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
  # Bad requests fail before anything loads.
  # TFDS splits are checked when the data set opens.
  if sample_metrics and reference_split and config.data.source == 'digits':
    digits_lib.check_split(reference_split, '--reference_split')
  if sample_metrics and reference_split not in (None, '', 'train') and (
      config.data.source == 'image_folder'):
    raise errors.ConfigError(
        f'--reference_split={reference_split!r}: an image folder has no splits (every image '
        f'under {config.data.path} is read); leave the flag out.')
  if standing_stats and not sample_metrics:
    raise errors.ConfigError(
        f'--standing_stats re-estimates the statistics G samples with, and {metrics_said} '
        'draw no samples: leave it out, or ask for a sample metric.')
  if standing_stats is None:
    standing_stats = int(config.eval.standing_stats)
  if sample_metrics:
    standing_stats_lib.check_config(config, standing_stats)
  ddls = ddls or langevin.Options()
  ddls.check()
  if ddls.steps:
    if not sample_metrics:
      raise errors.ConfigError(
          f'--langevin_steps moves the latents of the sample metrics, and {metrics_said} '
          'draw no samples: leave it out, or ask for a sample metric.')
    langevin.check_model(config)
  if accuracy_split is None:
    accuracy_split = config.eval.accuracy_split
  if seed is None:
    seed = sample.default_seed(config, best=best)
  elif best and seed == config.seed and sample_metrics:
    logging.warning('--seed=%d is the seed whose latents picked the best checkpoint during '
                    'training: its value is the lowest of several noisy estimates, so it is '
                    'optimistic; another seed gives an unbiased one.', seed)
  if ACCURACY in names:
    classifier_lib.check_classifier(config, workdir)
    classifier_lib.check_labelled_split(config.data, accuracy_split, '--accuracy_split')
  start = time.perf_counter()
  results, per_class, protocol, restored_step = {}, {}, {}, step
  if sample_metrics:
    # The evaluator is built before the checkpoint is restored, so that missing
    # weights or data are reported before any restore work.
    config.eval.metrics = sample_metrics
    config.eval.num_samples = int(num_samples)
    if inception_weights:
      config.eval.inception_weights = inception_weights
    evaluator = metrics_lib.make_evaluator(
        config, data_shape=models.data_shape(config.model), num_reference=num_reference,
        reference_split=reference_split, batch_size=batch_size, cache_dir=cache_dir,
        **evaluator_kwargs)
  # One restore for G and D: a run training in the workdir may delete a step between two.
  run_config, state, restored_step = workdir_lib.restore_state(workdir, step, best=best)
  if sample_metrics:
    generate = sample.generator_from_state(run_config, state, restored_step,
                                           standing_stats=standing_stats, standing_seed=seed)
    if ddls.steps:
      generate = langevin.refined_generator(generate, langevin.make_refiner(
          run_config, state, *generate.variables, ddls, seed=seed))
    evaluation = evaluator.run(generate, seed=seed)
    results.update(evaluation['results'])
    per_class = evaluation['per_class']
    protocol.update(evaluator.protocol, seed=seed,
                    standing_stats=getattr(generate, 'standing_stats', None),
                    generator_dtype=str(run_config.model.dtype))
    if ddls.steps:  # only then: records of G's own samples keep their protocol
      protocol['ddls'] = dataclasses.asdict(ddls)
    if best:
      protocol['best_selected_with_seed'] = int(config.seed)
  protocol['metrics'] = list(names)
  if ACCURACY in names:
    accuracy = classify.accuracy_on_split(
        run_config, classify.classifier_from_state(run_config, state, restored_step),
        split=accuracy_split)
    results[ACCURACY] = accuracy['accuracy']
    protocol[ACCURACY] = dict(
        split=accuracy['split'], num_examples=accuracy['num_examples'],
        classifier="the discriminator in eval mode, argmax of its class logits")
  record = dict(
      workdir=os.path.abspath(workdir), step=restored_step,
      checkpoint=workdir_lib.BEST if best else workdir_lib.CHECKPOINTS,
      generator=_generator_label(config.train) if sample_metrics else None, results=results,
      per_class=per_class,
      protocol=protocol, seconds=round(time.perf_counter() - start, 2),
      date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
      jax=dict(version=jax.__version__, backend=jax.default_backend(),
               devices=jax.device_count()))
  default_output = output is None
  if default_output:
    output = os.path.join(workdir, 'eval', f'step_{restored_step}.json')
  if jax.process_index() == 0:
    if epath.Path(output).exists():
      kept = _keep_a_different_record(output, record)
      if kept is None:
        logging.warning('Replacing the earlier record %s, which measured the same way.',
                        output)
    try:
      writers.write_text_atomic(output, json.dumps(record, indent=2))
    except OSError as e:
      # Checked before the work, yet a disk can fill or a mount go away during it.
      raise errors.ConfigError(
          f'could not write the record to {output} ({e.strerror or e}); its results (step '
          f'{restored_step}): {json.dumps(results)}') from e
  record['output'] = output
  return record


def _check_output(output, workdir):
  """Raises ConfigError, before any work, unless `output` may take an evaluation record:
  a `.json` path (`workdir_lib.check_output_file`) where nothing but such a record is."""
  workdir_lib.check_output_file(output, flag='--output', workdir=workdir)
  if not os.fspath(output).endswith('.json'):
    raise errors.ConfigError(f'--output={output}: the record is JSON; give a .json path.')
  path = epath.Path(output)
  if not path.exists():
    return
  try:
    old = json.loads(path.read_text())
  except (OSError, ValueError):
    old = None
  if not (isinstance(old, dict) and 'results' in old and 'protocol' in old):
    raise errors.ConfigError(f'--output={output} exists and is not an evaluation record; '
                             'give another path (nothing replaces a file this tool did not '
                             'write).')


def _refuse_unused_settings(names, config, metrics_said, **given):
  """Raises ConfigError for a setting (not None in `given`) that none of the metrics
  `names` reads: it would be accepted and silently change nothing."""
  samples = any(name != ACCURACY for name in names)
  inception = any(name in evaluator_lib.INCEPTION_METRICS for name in names)
  # Digits' proxy FD compares with a real reference set; toy data's with the mixture.
  reference = inception or ('proxy' in names and config.data.source != 'toy')
  used = dict(num_samples=samples, batch_size=samples, seed=samples,
              num_reference=reference, reference_split=reference,
              inception_weights=inception, accuracy_split=ACCURACY in names)
  readers = dict(num_samples='metrics that generate samples',
                 num_reference='metrics that compare with real data (fid, kid, pr, dc, '
                               'intra_fid, proxy on digits)',
                 inception_weights='the Inception metrics (fid, is, kid, pr, dc, intra_fid)',
                 accuracy_split="the 'accuracy' metric")
  readers.update(batch_size=readers['num_samples'], seed=readers['num_samples'],
                 reference_split=readers['num_reference'])
  for name, value in given.items():
    if value is not None and not used[name]:
      raise errors.ConfigError(f'--{name} is only read by {readers[name]}, which '
                               f'{metrics_said} does not include: leave it out, or ask for '
                               'such a metric.')


def _generator_label(train_config):
  """Which weights sampled: the EMA of G's (`ema_decay` > 0), else G's own (the EMA
  copy then follows G exactly). The statistics are in the protocol (standing_stats)."""
  if not train_config.ema_decay:
    return 'G (no EMA: train.ema_decay=0)'
  return f'EMA (decay {train_config.ema_decay}, from step {train_config.ema_start})'


def _measurement(protocol, generator_dtype=None):
  """A record's protocol without what names where things were kept (the reference
  statistics' cache file): two records that differ only there measured the same.
  A record made before protocols named G's compute dtype gets `generator_dtype`:
  G sampled in the run's dtype then too."""
  if not isinstance(protocol, dict):
    return protocol
  out = {k: _measurement(v) for k, v in protocol.items() if k != 'cache'}
  names = out.get('metrics')
  if isinstance(names, list) and all(isinstance(n, str) for n in names):
    # One measurement, whatever the order the names were asked in.
    out['metrics'] = sorted(names)
  if generator_dtype is not None:
    out.setdefault('generator_dtype', generator_dtype)
  return out


def _keep_a_different_record(path, record):
  """Renames the record at `path` to `<stem>.<its date>.json` when it is of another
  checkpoint (run, step, best or not) or measured otherwise than `record` (any
  difference of protocol but the reference cache's path: metrics, sample count, seed,
  standing statistics, reference, weights...): a quick check must not replace a long
  evaluation of the same step, nor an --output reused for another run its record.
  Returns the new path, or None when the old record is the same measurement of the
  same checkpoint (it is then replaced)."""
  path = epath.Path(path)
  try:
    old = json.loads(path.read_text())
  except (OSError, ValueError):
    old = {}
  old = old if isinstance(old, dict) else {}
  new = _measurement(json.loads(json.dumps(record['protocol'])))
  # Records written before they named the checkpoint kind were of checkpoints/.
  same_checkpoint = (old.get('workdir'), old.get('step'),
                     old.get('checkpoint', workdir_lib.CHECKPOINTS)) == (
                         record['workdir'], record['step'], record['checkpoint'])
  if same_checkpoint and _measurement(old.get('protocol'), new.get('generator_dtype')) == new:
    return None
  stamp = ''.join(c for c in str(old.get('date') or 'earlier')[:19] if c.isalnum())
  kept = writers.free_path(path.parent / f'{path.stem}.{stamp}', '.json')
  path.rename(kept)
  old_protocol = old.get('protocol') or {}
  logging.warning('Kept the earlier record there (step %s of %s; metrics %s, %s samples), '
                  'of another checkpoint or measured otherwise, as %s.', old.get('step'),
                  old.get('workdir'), old_protocol.get('metrics'),
                  old_protocol.get('num_samples'), kept)
  return str(kept)


def _define_flags():
  """Command-line flags, defined only when run as a program (so importing is free)."""
  flags.DEFINE_string('workdir', None, 'Run folder (config.json, checkpoints/).', required=True)
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: newest).', lower_bound=0)
  flags.DEFINE_string('metrics', None, 'Comma list of: ' + ', '.join(KNOWN_METRICS) + ' '
                      "(default: the run's config.eval.metrics, else what works offline for "
                      "its data: proxy on digits and toy data, accuracy for a semi-supervised "
                      "D, fid for image data sets).")
  flags.DEFINE_integer('num_samples', None, f'Generated samples (default {DEFAULT_NUM_SAMPLES}).',
                       lower_bound=2)
  flags.DEFINE_integer('num_reference', None, 'Reference (real) examples (default: '
                       'config.eval.num_reference, else --num_samples; fewer if the split '
                       'is smaller).', lower_bound=2)
  flags.DEFINE_string('reference_split', None,
                      'Split of the reference set (default: config.eval.reference_split, '
                      'else config.data.split).')
  flags.DEFINE_string('inception_weights', None,
                      'pt_inception-2015-12-05-6726825d.pth (default: config.eval.'
                      'inception_weights, $GAN_JAX_INCEPTION_WEIGHTS, cache).')
  flags.DEFINE_integer('seed', None, 'Seed of the latents z (default 0; with --best, the run\'s '
                       'config.seed + 1: other latents than those that picked the checkpoint).',
                       lower_bound=0, upper_bound=defaults.MAX_SEED)
  flags.DEFINE_integer('batch_size', None,
                       f'Latents per generator call (default {DEFAULT_BATCH_SIZE}).',
                       lower_bound=1)
  flags.DEFINE_string('output', None, 'JSON output (default: <workdir>/eval/step_<N>.json). '
                      'A later evaluation written to the same path replaces the record when '
                      'its protocol (metrics, samples, seed, reference...) is the same, else '
                      'keeps it beside; a file that is no evaluation record is never replaced.')
  flags.DEFINE_string('cache_dir', None, 'Cache folder (default $GAN_JAX_CACHE_DIR, else '
                      '$XDG_CACHE_HOME/gan_jax, else ~/.cache/gan_jax).')
  flags.DEFINE_bool('best', False, 'Evaluate the best checkpoint (<workdir>/best/: the lowest '
                    'FID or proxy FD of the evaluations during training).')
  flags.DEFINE_integer('standing_stats', None, 'Re-estimate G\'s BatchNorm statistics over '
                       'this many train-mode batches of train.batch_size latents before '
                       'sampling (BigGAN\'s standing statistics; BigGAN-PyTorch: 16; 0 = off; '
                       'default: config.eval.standing_stats).', lower_bound=0)
  flags.DEFINE_string('accuracy_split', None,
                      "Labelled split that --metrics=accuracy classifies (default: the run's "
                      "config.eval.accuracy_split, 'test' unless set; digits: the fixed "
                      "450-image 'test' split).")
  langevin.add_flags()
  flags.adopt_module_key_flags(langevin)  # --langevin_* in --help too


def main(argv):
  """The `python -m gan_jax.evaluate` program (its flags parsed by absl)."""
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}; flags look like --name=value.')
  f = flags.FLAGS
  record = evaluate(f.workdir, step=f.step, metrics=f.metrics, num_samples=f.num_samples,
                    num_reference=f.num_reference, reference_split=f.reference_split,
                    inception_weights=f.inception_weights, seed=f.seed,
                    batch_size=f.batch_size, output=f.output, cache_dir=f.cache_dir,
                    accuracy_split=f.accuracy_split, best=f.best,
                    standing_stats=f.standing_stats, ddls=langevin.options_from_flags(f))
  print(json.dumps(record, indent=2))


if __name__ == '__main__':
  _define_flags()
  cli.run(main, quiet=True, stop_on_sigterm=True)
