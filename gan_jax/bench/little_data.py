"""Learning from little data: digits GANs on 10% and 25% of the training split.

  python -m gan_jax.bench.little_data --trials=3 --fractions=0.1,0.25 \\
      --configs=dcgan_digits:few,dcgan_digits:few,noaug --out=runs/bench_little_data

For every training fraction F, config C and seed S (S = first_seed, first_seed + 1, ...):
  1. C with `data.train_examples = floor(F x 1,347)` (the class-balanced subset of
     the digits 'train' split that `config.seed = S` picks) and `config.seed = S`
     trains through `gan_jax.train.train_and_evaluate`, as `python -m gan_jax.main
     --config=C --config.seed=S --config.data.train_examples=N` would;
  2. the final EMA generator (`gan_jax.sample.load_generator`) is scored by the
     evaluator with `eval.metrics = 'proxy'` on `--num_samples` samples of the
     evaluation latents of seed S (what `python -m gan_jax.evaluate --seed=S
     --metrics=proxy` reports): `proxy_fd`, the Frechet distance of the digits
     judge's features to those of min(--num_samples, 1,347) digits of the
     'train' split (the evaluator's fixed draw; with the default 10,000 samples
     all 1,347: the subset's and the ones the run never saw), `proxy_confident` and
     `proxy_coverage_kl`. 10,000 samples is the FID-10k protocol of the published
     DiffAugment numbers; at 1,000 (the default before 2026-12-05) one
     generator's FD varies by about +-0.07 between latent draws, as much as
     augmentation changes it (docs/benchmarks.md);
  3. `copy_fd`: the same FD of --num_samples digits drawn (with replacement,
     seeded) from the run's own training subset: what a generator that
     reproduced its training digits exactly, and nothing else, would score. A
     generator scores below it only by generalising beyond its training digits;
  4. the final discriminator is checked for memorisation (`memorisation.measure`):
     `d_seen_vs_unseen`, the AUC of D's score on the digits it trained on against
     the 450 'test' digits it never saw (0.5: no memorisation, 1: complete), and
     `d_unseen_vs_fake`, the AUC of those unseen digits against 1,000 samples of
     the raw generator (below 0.5: D finds G's samples more real than real
     digits it never saw).
Each row reports mean, sample standard deviation (ddof = 1) and the worst seed of
every metric (highest FD / KL / seen-vs-unseen AUC, lowest confident share /
unseen-vs-fake AUC) with that seed's number.
For each fraction the table also gives the change of the mean FD of every
augmented config relative to the same fraction's config without augmentation
(`augment.policy` '').

Outputs in --out: `little_data.json` (every trial, the summaries, the machine and
the command; rewritten after each trial, so an interrupted run keeps what it
measured, and the same command again continues it without training those trials
again) and `little_data.md` (the table).

`--set=FIELD=VALUE` (repeatable) changes a field of every config of the run
(`gan_jax.bench.overrides`), so a probe is a command too; rows record it. It applies
to every config named in --configs: run configs that need different fields
separately.
"""

import datetime
import os

from absl import flags
import numpy as np

from gan_jax import cli
from gan_jax import data as data_lib
from gan_jax import errors
from gan_jax import metrics
from gan_jax import models
from gan_jax import sample
from gan_jax.bench import memorisation
from gan_jax.bench import overrides as overrides_lib
from gan_jax.bench import report_files
from gan_jax.bench import trials as trials_lib
from gan_jax.data import pipeline
from gan_jax.data import sources

DEFAULT_CONFIGS = 'dcgan_digits:few,dcgan_digits:few,noaug'
DEFAULT_FRACTIONS = '0.1,0.25'
METRICS = ('proxy_fd', 'proxy_confident', 'proxy_coverage_kl')
# The trial record of the proxy FD of a copy of the run's training digits.
COPY_FD = 'copy_fd'
# The trial record of ADA's final augmentation probability (runs with ADA only).
ADA_P = 'ada_p'
# The trial records of `memorisation.measure`'s two AUCs.
MEMORISATION = ('d_seen_vs_unseen', 'd_unseen_vs_fake')
# Which value of each metric is the worst seed's: lower FD / KL, more confident
# samples and a D that memorises less are better.
WORST = {'proxy_fd': max, 'proxy_confident': min, 'proxy_coverage_kl': max, COPY_FD: max,
         'd_seen_vs_unseen': max, 'd_unseen_vs_fake': min, 'train_seconds': max}
_JSON_NAME = 'little_data.json'
_TABLE_NAME = 'little_data.md'


def load_config(spec):
  """The ConfigDict of a digits config spec 'name[:arg]' or 'path.py[:arg]'.

  Raises:
    ConfigError: an unknown config, or one that does not train on the digits.
  """
  config = trials_lib.load_config(spec)
  check_config(spec, config)
  return config


def check_config(spec, config):
  """Raises ConfigError unless `config` (spec `spec`, --set overrides applied) trains
  on the digits 'train' split, whose subsets and unseen 'test' digits the bench
  scores with: checked before anything trains."""
  if config.data.source != 'digits':
    raise errors.ConfigError(
        f'Config {spec!r} trains on data.source={config.data.source!r}; the little-data '
        "benchmark needs data.source='digits' (e.g. --configs=dcgan_digits:few).")
  if config.data.split != 'train':
    raise errors.ConfigError(f"The little-data benchmark trains on the digits 'train' split, "
                             f'got data.split={config.data.split!r} ({spec!r}).')


def examples_for(fraction, *, split='train'):
  """floor(fraction x size of the digits `split`): the training examples kept.

  Raises:
    ConfigError: a fraction outside (0, 1] or one that keeps fewer than 10
      examples (one per class).
  """
  count = len(data_lib.digits_split(split)[1])
  if not 0.0 < fraction <= 1.0:
    raise errors.ConfigError(f'--fractions must be in (0, 1], got {fraction}.')
  num = int(fraction * count)
  if num < 10:
    raise errors.ConfigError(
        f'--fractions {fraction} keeps {num} of {count} digits; at least 10 (one per class) '
        'are needed.')
  return num


def summarize(trials):
  """Per-metric {'mean', 'std', 'worst', 'worst_seed'} over trial records.

  Args:
    trials: non-empty list of dicts with 'seed' and every key of `WORST`.

  Returns:
    {metric: {'mean', 'std' (ddof=1; None for one trial), 'worst' (the value of
    the worst trial: see `WORST`), 'worst_seed'}}.
  """
  summary = {}
  for key, pick in WORST.items():
    values = np.asarray([t[key] for t in trials], np.float64)
    worst = int(np.argmax(values) if pick is max else np.argmin(values))
    summary[key] = {'mean': float(values.mean()),
                    'std': float(values.std(ddof=1)) if len(values) > 1 else None,
                    'worst': float(values[worst]), 'worst_seed': int(trials[worst]['seed'])}
  return summary


def fd_changes(rows):
  """{row index: relative change of the mean FD vs the same fraction's un-augmented row}.

  A value of -0.3 means the row's mean `proxy_fd` is 30% lower than that of the
  row with the same fraction and `augment.policy` '' (the first such row in
  `--configs` order, when several are). Rows without such a partner (or
  un-augmented rows) are left out.
  """
  plain = {}
  for r in rows:
    if not r['policy'] and r['summary']:
      plain.setdefault(r['fraction'], r)
  changes = {}
  for i, r in enumerate(rows):
    base = plain.get(r['fraction'])
    if r['policy'] and r['summary'] and base is not None:
      changes[i] = (r['summary']['proxy_fd']['mean'] / base['summary']['proxy_fd']['mean']
                    - 1.0)
  return changes


def _cell(stat, *, digits):
  if stat['std'] is None:
    return f"{stat['mean']:.{digits}f} (worst {stat['worst']:.{digits}f}, seed {stat['worst_seed']})"
  return (f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f} "
          f"(worst {stat['worst']:.{digits}f}, seed {stat['worst_seed']})")


def format_table(rows):
  """The Markdown table: one line per (fraction, config) with mean ± std (worst seed).

  'FD of a copy of its digits' is `copy_fd` of each trial's training subset, the
  same for every config of a fraction and seed.

  Args:
    rows: result rows with 'config', 'fraction', 'train_examples', 'policy',
      'trials', 'summary' (`summarize`; rows without trials yet are skipped) and
      optionally 'overrides'.

  Returns:
    str: a Markdown table ending with a newline.
  """
  changes = fd_changes(rows)
  # The FD's sample count matters (its bias and spread shrink with it): say it.
  samples = sorted({t['num_samples'] for r in rows for t in r['trials'] if 'num_samples' in t})
  fd = f"proxy FD ({', '.join(f'{n:,}' for n in samples)} samples)" if samples else 'proxy FD'
  lines = [f'| data | config{trials_lib.steps_label(rows)} | augment.policy | seeds | {fd} '
           '| FD vs no aug '
           '| FD of a copy of its digits | confident share | coverage KL | D: seen vs unseen '
           '| D: unseen vs fake | train s / seed |',
           '|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|']
  for i, r in enumerate(rows):
    s = r['summary']
    if not s:
      continue
    change = f'{100 * changes[i]:+.1f}%' if i in changes else '–'
    seeds = ','.join(str(t['seed']) for t in r['trials'])
    policy = r['policy'] or '(none)'
    ada = [t[ADA_P] for t in r['trials'] if ADA_P in t]
    if ada:  # the probability each op ended with
      policy += f' (ADA, final p {min(ada):.2f}' + (f'-{max(ada):.2f})' if len(ada) > 1 else ')')
    lines.append(
        f"| {100 * r['fraction']:g}% ({r['train_examples']}) | {overrides_lib.row_label(r)} "
        f"| {policy} | {seeds} | {_cell(s['proxy_fd'], digits=3)} | {change} "
        f"| {_cell(s[COPY_FD], digits=3)} | {_cell(s['proxy_confident'], digits=3)} "
        f"| {_cell(s['proxy_coverage_kl'], digits=3)} "
        f"| {_cell(s['d_seen_vs_unseen'], digits=2)} "
        f"| {_cell(s['d_unseen_vs_fake'], digits=2)} "
        f"| {s['train_seconds']['mean']:.0f} |")
  return '\n'.join(lines) + '\n'


def memorisation_sets(config):
  """The digits a run trained on and real digits it never saw, as its D sees them.

  Both come from the input pipeline itself (`sources.open_split`, resized to the
  model's resolution and channels; `pipeline.training_pool`, the subset that
  `data.train_examples` and the config's seed pick), so they are the training
  run's own examples.

  Args:
    config: a digits config training on the 'train' split.

  Returns:
    (seen, unseen): each (images f32[n, H, W, C] in [-1, 1], labels int32[n]).
    seen: the examples the run trains on; unseen: the 450 digits of the 'test'
    split, which no training run reads.

  Raises:
    ConfigError: a config that does not train on the digits 'train' split.
  """
  check_config(config.name, config)
  shape = models.data_shape(config.model)
  train_split = sources.open_split(config.data, split='train', data_shape=shape)
  pool, _ = pipeline.training_pool(train_split, train_examples=config.data.train_examples,
                                   labels_per_class=0, labels=False, seed=config.seed)
  test_split = sources.open_split(config.data, split='test', data_shape=shape)
  return ((train_split.images[pool], train_split.labels(pool)),
          (test_split.images, test_split.labels(np.arange(test_split.count))))


def copy_fd(evaluator, images, *, num_samples, seed):
  """The proxy FD of a generator that reproduces `images` exactly, and nothing else.

  `num_samples` draws with replacement from `images` are scored as generated
  samples would be, so the FD's sample-size bias is that of the run's own score
  and the two compare directly.

  Args:
    evaluator: a digits evaluator with the 'proxy' metrics (`metrics.make_evaluator`).
    images: f32[n, H, W, C] in [-1, 1], e.g. a run's training digits.
    num_samples: draws to score (the run's --num_samples).
    seed: seeds the draws.

  Returns:
    float >= 0: the proxy FD of the draws against the evaluator's reference.
  """
  draws = np.random.default_rng(seed).integers(0, len(images), num_samples)
  return float(evaluator.score_proxy(images[draws])['proxy_fd'])


# Fields every trial sets itself (`run_benchmark`, `run_trial`), and what to do instead.
CONTROLLED = {**overrides_lib.SEED_AND_STEPS,
              'data.train_examples': 'pass --fractions',
              'eval.num_samples': 'pass --num_samples',
              'eval.every': 'each trial is scored once, at its end, with the proxy metrics',
              'eval.metrics': 'each trial is scored once, at its end, with the proxy metrics'}


def run_trial(config, *, seed, workdir, num_samples):
  """Trains one seed in `workdir` and scores its final EMA generator.

  Args:
    config: a digits ConfigDict (changed in place: seed, evaluation, progress bar).
    seed: config.seed and the seed of the evaluation latents.
    workdir: an empty folder for the run (an existing run there is resumed).
    num_samples: generated samples to score.

  Returns:
    {'seed', 'step', 'train_seconds', 'num_samples', 'num_reference' (the
     real 'train' digits of the FD's reference), 'proxy_fd',
     'proxy_confident', 'proxy_coverage_kl', 'copy_fd' (`copy_fd` of the run's
     training digits), 'd_seen_vs_unseen', 'd_unseen_vs_fake'}, and with ADA
    'ada_p', the augmentation probability the run ended with.

  Raises:
    preemption.Interrupted: SIGTERM / SIGINT stopped the trial.
  """
  config.seed = seed
  config.train.progress_bar = False
  config.eval.every = -1  # scored once below, not during training
  train_seconds, _ = trials_lib.train_timed(config, workdir)
  saved_config, generate = sample.load_generator(workdir, standing_seed=seed)
  saved_config.eval.metrics = 'proxy'
  saved_config.eval.num_samples = num_samples
  evaluator = metrics.make_evaluator(saved_config,
                                     data_shape=models.data_shape(saved_config.model))
  scores = evaluator(generate, seed=seed)
  record = {'seed': int(seed), 'step': int(generate.step), 'train_seconds': float(train_seconds),
            'num_samples': int(num_samples),
            'num_reference': int(evaluator.protocol['proxy']['reference']['num_examples'])}
  record.update({key: float(scores[key]) for key in METRICS})
  seen, unseen = memorisation_sets(saved_config)
  record[COPY_FD] = copy_fd(evaluator, seen[0], num_samples=num_samples, seed=seed)
  memorised = memorisation.measure(workdir, seen=seen, unseen=unseen, seed=seed,
                                   step=generate.step)
  record.update({name: memorised[name[len('d_'):]] for name in MEMORISATION})
  if memorised['augment_probability'] is not None:  # (the checkpoint's, read once there)
    record[ADA_P] = memorised['augment_probability']
  return record


def _new_result(command, num_samples):
  return {
      'benchmark': 'learning from little data (digits, DiffAugment)',
      'protocol': {
          'metrics': 'evaluator proxy metrics (gan_jax.metrics.digits_judge) of the final '
                     "EMA generator; proxy_fd against the whole digits 'train' split",
          'num_samples': num_samples,
          'latents': 'evaluation latents of the trial seed (gan_jax.evaluate --seed=S)',
          'std': 'sample std over seeds (ddof=1)',
          'worst': 'max over seeds (proxy_fd, proxy_coverage_kl, copy_fd, d_seen_vs_unseen, '
                   'train_seconds), min (proxy_confident, d_unseen_vs_fake)',
          'copy_fd': "proxy_fd of num_samples draws (with replacement, seed S) from the "
                     "trial's own training digits: a generator that copies them exactly",
          'fd_change': 'mean proxy_fd / that of the same fraction without augmentation - 1',
          'memorisation': "gan_jax.bench.memorisation.measure: AUCs of the final raw D's "
                          "eval-mode score (mean over 8 draws of the run's augmentation): "
                          "the training subset vs the 450 'test' digits (d_seen_vs_unseen), "
                          'the test digits vs 1,000 raw-generator samples (d_unseen_vs_fake)',
      },
      'command': command or trials_lib.command_line('gan_jax.bench.little_data'),
      'machine': trials_lib.machine_description(),
      'created': datetime.datetime.now().isoformat(timespec='seconds'),
      'rows': [],
  }


def run_benchmark(specs, *, fractions=(0.1, 0.25), trials=3, first_seed=0,
                  out_dir='runs/bench_little_data', num_steps=None, num_samples=10_000,
                  overrides=(), keep_workdirs=False, command=None, log=print):
  """Trains and scores every (fraction, config, seed); writes the JSON and the table.

  Args:
    specs: digits config specs, e.g. ['dcgan_digits:few', 'dcgan_digits:few,noaug'].
    fractions: shares of the digits 'train' split to train on (`examples_for`).
    trials: seeds per row (first_seed, first_seed + 1, ...).
    first_seed: the first seed.
    out_dir: output folder (created).
    num_steps: if set, overrides config.train.num_steps (quick checks).
    num_samples: generated samples per score.
    overrides: (field, value text) pairs from `overrides.parse`, set in every
      config before the fraction and `num_steps` (the `--set` flag); recorded in
      each row.
    keep_workdirs: keep each run in `<out_dir>/workdirs/<config>-<examples>/seed_<S>`
      (an existing run there is resumed); otherwise a temporary folder, deleted after.
    command: the command line recorded in the JSON (default: this process's).
    log: called with one progress line per trial.

  Returns:
    The JSON-ready result: {'benchmark', 'protocol', 'command', 'machine',
    'created', 'rows': [{'config', 'overrides', 'fraction', 'train_examples',
    'policy', 'num_steps', 'trials', 'summary'}], 'fd_change' {row index: change},
    'table'}.
  """
  if trials < 1:
    raise errors.ConfigError(f'--trials must be >= 1, got {trials}.')
  # Fail fast on bad names and overrides, before any training.
  configs = [(spec, overrides_lib.apply(load_config(spec), overrides)) for spec in specs]
  for spec, config in configs:  # again, with the overrides
    check_config(spec, config)
  trials_lib.check_configs(configs, num_steps, as_trained=lambda c: c.eval.update(every=-1))
  plan = [(f, examples_for(f), spec, config) for f in fractions for spec, config in configs]
  _check_distinct_examples(fractions)
  result = _new_result(command, num_samples)
  earlier = report_files.check_out_dir(out_dir, _JSON_NAME, result['command'])
  os.makedirs(out_dir, exist_ok=True)
  for fraction, examples, spec, config in plan:
    config = config.copy_and_resolve_references()
    config.data.train_examples = examples
    if num_steps is not None:
      config.train.num_steps = int(num_steps)
    row = {'config': spec, 'overrides': overrides_lib.describe(overrides),
           'fraction': fraction, 'train_examples': examples, 'policy': config.augment.policy,
           'num_steps': int(config.train.num_steps), 'trials': [], 'summary': None}
    result['rows'].append(row)
    for seed in range(first_seed, first_seed + trials):
      slug = trials_lib.slug(spec, examples, no_variant='default') + overrides_lib.slug(overrides)
      record = report_files.earlier_trial(earlier, row, seed)
      if record is not None:
        log(f'{spec} on {examples} digits, seed {seed}: kept from the report of an earlier '
            'run of this command.')
      else:
        with trials_lib.trial_workdir(out_dir, slug, seed, keep=keep_workdirs) as workdir:
          record = run_trial(config.copy_and_resolve_references(), seed=seed,
                             workdir=workdir, num_samples=num_samples)
        log(f"{spec} on {examples} digits, seed {seed}: proxy FD {record['proxy_fd']:.3f} "
            f"(a copy of its digits: {record[COPY_FD]:.3f}), "
            f"confident {record['proxy_confident']:.3f}, coverage KL "
            f"{record['proxy_coverage_kl']:.3f}, D seen vs unseen "
            f"{record['d_seen_vs_unseen']:.2f}, unseen vs fake {record['d_unseen_vs_fake']:.2f}, "
            + (f"ADA p {record[ADA_P]:.2f}, " if ADA_P in record else '')
            + f"{record['train_seconds']:.0f} s")
      row['trials'].append(record)
      row['summary'] = summarize(row['trials'])
      result['fd_change'] = {str(i): c for i, c in fd_changes(result['rows']).items()}
      result['table'] = format_table(result['rows'])
      report_files.write_result(result, out_dir, json_name=_JSON_NAME, table_name=_TABLE_NAME)
  return result


def _check_distinct_examples(fractions):
  """ConfigError when two fractions train on the same number of digits (the same
  trials, trained and reported twice)."""
  by_count = {}
  for fraction in fractions:
    by_count.setdefault(examples_for(fraction), []).append(fraction)
  same = [(count, shares) for count, shares in by_count.items() if len(shares) > 1]
  if same:
    count, shares = same[0]
    raise errors.ConfigError(
        f'--fractions {" and ".join(str(s) for s in shares)} both train on {count} digits '
        '(the same trials twice); give each share once.')


def _parse_fractions(text):
  """--fractions as a tuple of floats (`examples_for` checks each), or a ConfigError."""
  try:
    fractions = tuple(float(p) for p in text.split(',') if p.strip())
  except ValueError:
    fractions = ()
  if not fractions:
    raise errors.ConfigError(f'--fractions must be comma-separated numbers such as '
                             f'0.1,0.25, got {text!r}.')
  return fractions


def _define_flags():
  flags.DEFINE_string('configs', DEFAULT_CONFIGS,
                      "Comma-separated digits config names, each with an optional ':variant'.")
  flags.DEFINE_string('fractions', DEFAULT_FRACTIONS,
                      "Shares of the digits 'train' split to train on (data.train_examples).")
  flags.DEFINE_integer('trials', 3, 'Seeds per (fraction, config).', lower_bound=1)
  flags.DEFINE_integer('first_seed', 0, 'The first seed.', lower_bound=0)
  flags.DEFINE_integer('num_samples', 10_000, 'Generated samples per score.', lower_bound=2)
  trials_lib.define_flags(out='runs/bench_little_data',
                          out_help='Output folder (JSON and table).',
                          set_example='augment.cutout_ratio=0.25')
  flags.adopt_module_key_flags(trials_lib)  # --out, --set, ... in --help too


def main(argv):
  """The `python -m gan_jax.bench.little_data` program (its flags parsed by absl)."""
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}; flags look like --name=value.')
  f = flags.FLAGS
  result = run_benchmark(
      trials_lib.split_config_names(f.configs), fractions=_parse_fractions(f.fractions),
      trials=f.trials, first_seed=f.first_seed, out_dir=f.out, num_steps=f.num_steps,
      num_samples=f.num_samples, overrides=overrides_lib.parse(f.set, controlled=CONTROLLED),
      keep_workdirs=f.keep_workdirs,
      log=lambda line: print(line, flush=True))
  print()
  print(result['table'], end='')
  print(f"\nWrote {os.path.join(f.out, _JSON_NAME)} and {os.path.join(f.out, _TABLE_NAME)}.")


if __name__ == '__main__':
  _define_flags()
  cli.run(main, quiet=True)
