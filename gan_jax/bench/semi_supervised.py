"""Semi-supervised GAN benchmark (Salimans et al. 2016): the bundled digits by default,
or any config whose D has class logits and whose data has a labelled 'test' split
(`semi_supervised_svhn`, `semi_supervised_cifar10` for users with those TFDS data).

  python -m gan_jax.bench.semi_supervised --seeds=0,1,2 --out=runs/bench_semi_supervised

For each seed S and each config (default: `semi_supervised_digits` and its
`:supervised_only` baseline, the same D and labelled digits without the GAN
terms):
  1. train through the real code path, `gan_jax.train.train_and_evaluate(config,
     workdir)` with `config.seed = S` (what `python -m gan_jax.main
     --config=<name> --config.seed=S` does); the seed also picks the labelled
     digits (`data.labels_per_class` per class), so both configs of a seed learn
     from the same labels;
  2. score the final discriminator as a classifier with
     `gan_jax.classify.test_accuracy`: accuracy on the 'test' split (never trained
     on; for the digits the fixed 450).
Each row reports the mean, the sample std (ddof=1) and the worst seed, and the
training time of one trial (wall and this process's CPU seconds; compilation and
checkpoint writes included; a kept trial resumed after a stop counts every part). The last line compares the first two configs seed by
seed (same labels). Outputs in --out: `semi_supervised_benchmark.json` (every trial,
the summary, the machine) and `semi_supervised_benchmark.md` (the table), rewritten
after every trial; the same command again continues them without training the
trials they hold again.

`--set=FIELD=VALUE` (repeatable) changes a field of every config of the run
(`gan_jax.bench.overrides`), so a probe is a command too; rows record it. It applies
to every config named in --configs: run configs that need different fields
separately.
"""

import datetime
import os

from absl import flags
import numpy as np

from gan_jax import classify
from gan_jax import cli
from gan_jax import errors
from gan_jax.bench import overrides as overrides_lib
from gan_jax.bench import report_files
from gan_jax.bench import trials as trials_lib
from gan_jax.metrics import classifier as classifier_lib

DEFAULT_CONFIGS = 'semi_supervised_digits,semi_supervised_digits:supervised_only'
_JSON_NAME = 'semi_supervised_benchmark.json'
_TABLE_NAME = 'semi_supervised_benchmark.md'


def parse_seeds(text):
  """'0,1,2' -> [0, 1, 2].

  Raises:
    ConfigError: for an empty list, a non-integer, a negative or a repeated seed (a
      repeated trial would count twice in the mean and shrink the spread).
  """
  try:
    seeds = [int(s) for s in text.split(',') if s.strip()]
  except ValueError:
    raise errors.ConfigError(f'--seeds must be comma-separated integers, got {text!r}.') from None
  if not seeds or min(seeds) < 0 or len(set(seeds)) < len(seeds):
    raise errors.ConfigError(f'--seeds must list different integers >= 0, got {text!r}.')
  return seeds


def load_config(spec):
  """The ConfigDict of a spec 'name[:arg]'; it must train a classifier D.

  Raises:
    ConfigError: an unknown config, or one whose D has no class logits.
  """
  config = trials_lib.load_config(spec)
  check_config(spec, config)
  return config


def check_config(spec, config):
  """Raises ConfigError unless `config` (spec `spec`, --set overrides applied) has a D
  with class logits and data with a labelled 'test' split to score it on: checked
  before anything trains."""
  classifier_lib.check_classifier(config, spec)
  classifier_lib.check_labelled_split(config.data, 'test', f'the test split of {spec!r}')


# Fields every trial sets itself, and what to do instead.
CONTROLLED = {'seed': 'pass --seeds', 'train.num_steps': 'pass --num_steps'}


def run_trial(config, *, seed, workdir):
  """Trains one seed in `workdir` and scores its discriminator on the 'test' split.

  Returns:
    {'seed', 'accuracy' in [0, 1], 'train_seconds', 'train_cpu_seconds'}.
  """
  config.seed = seed
  config.train.progress_bar = False
  train_seconds, cpu_seconds = trials_lib.train_timed(config, workdir)
  return {'seed': int(seed), 'accuracy': classify.test_accuracy(workdir),
          'train_seconds': float(train_seconds), 'train_cpu_seconds': float(cpu_seconds)}


def summarize(trials):
  """Mean, sample std (ddof=1; None for one trial), worst seed and mean times of a row."""
  acc = np.array([t['accuracy'] for t in trials], np.float64)
  worst = trials[int(np.argmin(acc))]
  return {'mean': float(acc.mean()), 'std': float(acc.std(ddof=1)) if len(acc) > 1 else None,
          'worst': float(worst['accuracy']), 'worst_seed': worst['seed'],
          'train_seconds': float(np.mean([t['train_seconds'] for t in trials])),
          'train_cpu_seconds': float(np.mean([t['train_cpu_seconds'] for t in trials]))}


def paired_gain(first, second):
  """Accuracy of `first` minus `second` on their common seeds: (mean, min) or None."""
  other = {t['seed']: t['accuracy'] for t in second['trials']}
  gains = [t['accuracy'] - other[t['seed']] for t in first['trials'] if t['seed'] in other]
  return (float(np.mean(gains)), float(np.min(gains))) if gains else None


def _mean_std(summary):
  # One seed has no spread: a '± 0.00' would claim one.
  if summary['std'] is None:
    return f"{100 * summary['mean']:.2f} % (one seed)"
  return f"{100 * summary['mean']:.2f} ± {100 * summary['std']:.2f} %"


def format_table(rows):
  """The Markdown table of the rows (accuracies in percent)."""
  lines = ['| config | labels / class | steps | accuracy (mean ± std) | worst (seed) | '
           'per seed | train time / trial (wall, CPU) |',
           '| --- | --- | --- | --- | --- | --- | --- |']
  for row in rows:
    s = row['summary']
    if s is None:
      continue
    per_seed = ', '.join(f"{t['seed']}: {100 * t['accuracy']:.2f}" for t in row['trials'])
    lines.append(
        f"| {overrides_lib.row_label(row)} | {row['labels_per_class']} | {row['num_steps']} | "
        f"{_mean_std(s)} | {100 * s['worst']:.2f} % "
        f"({s['worst_seed']}) | {per_seed} | {s['train_seconds']:.0f} s, "
        f"{s['train_cpu_seconds']:.0f} s |")
  if len(rows) >= 2 and rows[0]['trials'] and rows[1]['trials']:
    gain = paired_gain(rows[0], rows[1])
    if gain is not None:
      lines.append('')
      first, second = (overrides_lib.row_label(row) for row in rows[:2])
      lines.append(f'{first} - {second}, seed by seed: '
                   f'{100 * gain[0]:+.2f} points on average, {100 * gain[1]:+.2f} at least.')
  return '\n'.join(lines) + '\n'


def run_benchmark(specs, *, seeds, out_dir, num_steps=None, overrides=(), keep_workdirs=False,
                  log=print):
  """Trains and scores every config for every seed; writes the JSON and the table.

  Args:
    specs: config specs, e.g. ['semi_supervised_digits',
      'semi_supervised_digits:supervised_only'].
    seeds: trial seeds (each picks the labelled subset and the initialisation).
    out_dir: output folder (created).
    num_steps: if set, overrides config.train.num_steps (quick checks).
    overrides: (field, value text) pairs from `overrides.parse`, set in every
      config before `num_steps` (the `--set` flag); recorded in each row.
    keep_workdirs: keep each run in `<out_dir>/workdirs/<config>/seed_<S>` (an
      existing run there is resumed); otherwise a temporary folder, deleted after.
    log: called with one progress line per trial.

  Returns:
    The JSON-ready result: {'benchmark', 'command', 'machine', 'created',
    'rows': [{'config', 'overrides', 'labels_per_class', 'num_steps', 'trials',
    'summary'}],
    'table'}.
  """
  # Fail fast on bad names and overrides, before any training.
  configs = [(spec, overrides_lib.apply(load_config(spec), overrides)) for spec in specs]
  for spec, config in configs:  # again, with the overrides
    check_config(spec, config)
  trials_lib.check_configs(configs, num_steps)
  result = {
      'benchmark': 'semi-supervised GAN: test accuracy of D as a classifier',
      'command': trials_lib.command_line('gan_jax.bench.semi_supervised'),
      'machine': trials_lib.machine_description(),
      'created': datetime.datetime.now().isoformat(timespec='seconds'),
      'rows': [], 'table': ''}
  earlier = report_files.check_out_dir(out_dir, _JSON_NAME, result['command'])
  os.makedirs(out_dir, exist_ok=True)
  for spec, config in configs:
    if num_steps is not None:
      config.train.num_steps = int(num_steps)
    result['rows'].append({'config': spec, 'overrides': overrides_lib.describe(overrides),
                           'labels_per_class': int(config.data.labels_per_class),
                           'num_steps': int(config.train.num_steps), 'trials': [],
                           'summary': None})
  # Seeds outermost: an interrupted run still compares both configs on the same seeds.
  for seed in seeds:
    for (spec, config), row in zip(configs, result['rows']):
      slug = trials_lib.slug(spec) + overrides_lib.slug(overrides)
      record = report_files.earlier_trial(earlier, row, seed)
      if record is not None:
        log(f'{spec} seed {seed}: kept from the report of an earlier run of this command.')
      else:
        with trials_lib.trial_workdir(out_dir, slug, seed, keep=keep_workdirs) as workdir:
          record = run_trial(config.copy_and_resolve_references(), seed=seed, workdir=workdir)
        log(f"{spec} seed {seed}: test accuracy {100 * record['accuracy']:.2f}%, "
            f"{record['train_seconds']:.0f} s ({record['train_cpu_seconds']:.0f} s CPU)")
      row['trials'].append(record)
      row['summary'] = summarize(row['trials'])
      result['table'] = format_table(result['rows'])
      report_files.write_result(result, out_dir, json_name=_JSON_NAME, table_name=_TABLE_NAME)
  return result


def _define_flags():
  flags.DEFINE_string('configs', DEFAULT_CONFIGS,
                      "Comma-separated config names, each with an optional ':variant'; "
                      'the first two are compared seed by seed.')
  flags.DEFINE_string('seeds', '0,1,2', 'Comma-separated trial seeds.')
  trials_lib.define_flags(out='runs/bench_semi_supervised',
                          out_help='Output folder (JSON, table).',
                          set_example='loss.d_adversarial_weight=2')
  flags.adopt_module_key_flags(trials_lib)  # --out, --set, ... in --help too


def main(argv):
  """The `python -m gan_jax.bench.semi_supervised` program (its flags parsed by absl)."""
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}; flags look like --name=value.')
  f = flags.FLAGS
  result = run_benchmark(trials_lib.split_config_names(f.configs), seeds=parse_seeds(f.seeds),
                         out_dir=f.out, num_steps=f.num_steps,
                         overrides=overrides_lib.parse(f.set, controlled=CONTROLLED),
                         keep_workdirs=f.keep_workdirs,
                         log=lambda line: print(line, flush=True))
  print()
  print(result['table'], end='')
  print(f'\nWrote {os.path.join(f.out, _JSON_NAME)} and {os.path.join(f.out, _TABLE_NAME)}.')


if __name__ == '__main__':
  _define_flags()
  cli.run(main, quiet=True)
