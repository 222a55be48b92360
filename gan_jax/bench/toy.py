"""Mode-collapse benchmark on the 2-D Gaussian mixtures (PacGAN protocol).

  python -m gan_jax.bench.toy --trials=10 \\
      --configs=toy_ring,toy_ring:baseline,toy_grid,toy_grid:baseline --out=runs/bench_toy

Protocol (Lin et al. 2018, "PacGAN", Section 5 / Table 1):
  ring: 8 Gaussians on the unit circle, std 0.01;
  grid: 25 Gaussians at {-4, -2, 0, 2, 4}^2, std 0.05.
  For each config and each trial seed S (S = first_seed, first_seed + 1, ...):
    1. train through the real code path, `gan_jax.train.train_and_evaluate(config,
       workdir)` with `config.seed = S` (what `python -m gan_jax.main
       --config=<name> --config.seed=S` does);
    2. restore the final (EMA) generator with `gan_jax.sample.load_generator` and
       draw 2,500 samples with `gan_jax.sample.generate_samples(seed=S)` (what
       `python -m gan_jax.sample --seed=S --num_samples=2500` writes);
    3. score them with `gan_jax.metrics.toy_mode_metrics`: a sample is
       high quality within 3 std of its nearest mode, a mode is captured when at
       least one high-quality sample is nearest to it, and the reverse KL is
       KL(mode histogram of the high-quality samples || uniform).
  Each row reports mean +- standard error over the trials and the worst trial
  (see toy_table.py), and the wall-clock training time of one trial
  (train_and_evaluate, compilation and checkpoint writes included).

Configs are given by name with an optional variant after ':' (`toy_ring:baseline`,
`toy_ring:baseline,smoke`) or as a path `my_config.py[:arg]`. Outputs in --out: `toy_benchmark.json` (every trial and the summary),
`toy_benchmark.md` (the table) and one scatter plot per trial,
`<config>_seed<S>.png` (real points red, generated points blue). `--set=FIELD=VALUE`
(repeatable) changes a field of every config (`gan_jax.bench.overrides`). The JSON is
rewritten after every trial, so an interrupted run keeps what it measured, and the
same command again continues it without training those trials again.
"""

import datetime
import os

from absl import flags
import numpy as np

from gan_jax import cli
from gan_jax import errors
from gan_jax import metrics
from gan_jax import sample
from gan_jax import writers
from gan_jax.bench import overrides as overrides_lib
from gan_jax.bench import report_files
from gan_jax.bench import toy_table
from gan_jax.bench import trials as trials_lib
from gan_jax.data import toy

DEFAULT_CONFIGS = 'toy_ring,toy_ring:baseline,toy_grid,toy_grid:baseline'
NUM_SAMPLES = 2500      # generated samples per trial (PacGAN protocol)
NUM_STD = 3.0           # high-quality radius in mode standard deviations
_REAL_POINTS = 2500     # real points drawn under each scatter plot
_JSON_NAME = 'toy_benchmark.json'
_TABLE_NAME = 'toy_benchmark.md'


def load_config(spec):
  """The ConfigDict of a toy config spec 'name[:arg]' or 'path.py[:arg]'.

  Raises:
    ConfigError: for an unknown config, or one that does not train on toy data.
  """
  config = trials_lib.load_config(spec)
  check_config(spec, config)
  return config


def check_config(spec, config):
  """Raises ConfigError unless `config` (spec `spec`, --set overrides applied) trains on
  toy data: checked before anything trains."""
  if config.data.source != 'toy':
    raise errors.ConfigError(
        f'Config {spec!r} trains on data.source={config.data.source!r}; the toy '
        "benchmark needs data.source='toy' (configs toy_ring, toy_grid).")


def scatter_plot(samples, mixture_name):
  """Real (red) and generated (blue) points of one trial as an RGB image.

  Args:
    samples: f32[N, 2] generated points.
    mixture_name: 'ring' or 'grid'.

  Returns:
    uint8[400, 400, 3]; the view spans the modes plus a margin, the same for
    every trial of a mixture (points outside it are not drawn).
  """
  centers, _ = toy.mixture(mixture_name)
  real = toy.sample_mixture(mixture_name, _REAL_POINTS, np.random.default_rng(0))
  extent = 1.25 * float(np.abs(centers).max())
  return writers.scatter_image(samples, reference=real, extent=extent)


def run_trial(config, *, seed, workdir, num_samples=NUM_SAMPLES):
  """Trains one seed in `workdir` and scores 2,500 samples of its final generator.

  Args:
    config: a toy ConfigDict (changed in place: seed, progress bar off).
    seed: the trial seed (config.seed and the seed of the sampled z).
    workdir: an empty folder for the run (an existing run there is resumed).
    num_samples: generated samples to score.

  Returns:
    (record, samples): record = {'seed', 'step', 'modes_captured',
    'high_quality' in [0, 1], 'reverse_kl' (nats), 'train_seconds'};
    samples f32[num_samples, 2].

  Raises:
    preemption.Interrupted: SIGTERM / SIGINT stopped the trial (the benchmark
      stops; a half-trained generator is never scored).
  """
  config.seed = seed
  config.train.progress_bar = False
  train_seconds, _ = trials_lib.train_timed(config, workdir)
  saved_config, generate = sample.load_generator(workdir, standing_seed=seed)
  samples = sample.generate_samples(generate, z_dim=saved_config.model.z_dim,
                                    num_samples=num_samples, seed=seed)
  centers, std = toy.mixture(config.data.toy)
  scores = metrics.toy_mode_metrics(samples, centers, std, num_std=NUM_STD)
  record = {'seed': int(seed), 'step': int(generate.step),
            'modes_captured': int(scores['modes_captured']),
            'high_quality': float(scores['high_quality']),
            'reverse_kl': float(scores['reverse_kl']),
            'train_seconds': float(train_seconds)}
  return record, samples


def _new_result(command):
  return {
      'benchmark': 'toy mode collapse (PacGAN protocol)',
      'protocol': {
          'num_samples': NUM_SAMPLES,
          'high_quality_radius_std': NUM_STD,
          'mixtures': {name: {'num_modes': len(toy.mixture(name)[0]),
                              'std': toy.mixture(name)[1]} for name in toy.MIXTURES},
          'se': 'sample std (ddof=1) / sqrt(trials)',
          'worst': 'min over trials (modes, high quality), max (reverse KL, time)',
      },
      'command': command or trials_lib.command_line('gan_jax.bench.toy'),
      'machine': trials_lib.machine_description(),
      'created': datetime.datetime.now().isoformat(timespec='seconds'),
      'rows': [],
      'reference': [dict(r) for r in toy_table.REFERENCE_ROWS],
  }


def run_benchmark(specs, *, trials=10, out_dir='runs/bench_toy', first_seed=0,
                  num_steps=None, overrides=(), keep_workdirs=False, command=None, log=print):
  """Trains and scores every config for every seed; writes the JSON, table and PNGs.

  Args:
    specs: config specs, e.g. ['toy_ring', 'toy_ring:baseline'].
    trials: seeds per config (first_seed, first_seed + 1, ...).
    out_dir: output folder (created).
    first_seed: the first trial seed.
    num_steps: if set, overrides config.train.num_steps (quick checks).
    overrides: (field, value text) pairs from `overrides.parse`, set in every
      config (a probe is then a command; rows record them).
    keep_workdirs: keep each trial's run in `<out_dir>/workdirs/<config>/seed_<S>`
      (an existing run there is resumed); otherwise a temporary folder, deleted
      after the trial.
    command: the command line recorded in the JSON (default: this process's).
    log: called with one progress line per trial.

  Returns:
    The JSON-ready result: {'benchmark', 'protocol', 'command', 'machine',
    'created', 'rows': [{'config', 'overrides', 'name', 'mixture', 'num_modes',
    'num_steps', 'trials': [record, ...], 'summary'}], 'reference', 'table'}.
  """
  if trials < 1:
    raise errors.ConfigError(f'--trials must be >= 1, got {trials}.')
  # Fail fast on bad names and overrides, before any training.
  configs = [(spec, overrides_lib.apply(load_config(spec), overrides)) for spec in specs]
  for spec, config in configs:  # again, with the overrides
    check_config(spec, config)
  trials_lib.check_configs(configs, num_steps)
  result = _new_result(command)
  earlier = report_files.check_out_dir(out_dir, _JSON_NAME, result['command'])
  os.makedirs(out_dir, exist_ok=True)
  for spec, config in configs:
    if num_steps is not None:
      config.train.num_steps = int(num_steps)
    row = {'config': spec, 'overrides': overrides_lib.describe(overrides),
           'name': config.name, 'mixture': config.data.toy,
           'num_modes': len(toy.mixture(config.data.toy)[0]),
           'num_steps': int(config.train.num_steps), 'trials': [], 'summary': None}
    result['rows'].append(row)
    for seed in range(first_seed, first_seed + trials):
      slug = trials_lib.slug(spec) + overrides_lib.slug(overrides)
      record = report_files.earlier_trial(earlier, row, seed)
      if record is not None and os.path.isfile(os.path.join(out_dir, record.get('png') or '')):
        log(f'{spec} seed {seed}: kept from the report of an earlier run of this command.')
      else:
        with trials_lib.trial_workdir(out_dir, slug, seed, keep=keep_workdirs) as workdir:
          record, samples = run_trial(config.copy_and_resolve_references(), seed=seed,
                                      workdir=workdir)
        png = f'{slug}_seed{seed}.png'
        writers.save_png(os.path.join(out_dir, png), scatter_plot(samples, config.data.toy))
        record['png'] = png
        log(f"{spec} seed {seed}: {record['modes_captured']}/{row['num_modes']} modes, "
            f"{100 * record['high_quality']:.1f}% high quality, reverse KL "
            f"{record['reverse_kl']:.3f}, {record['train_seconds']:.1f} s")
      row['trials'].append(record)
      row['summary'] = toy_table.summarize(row['trials'], num_modes=row['num_modes'])
      result['table'] = toy_table.format_table(result['rows'])
      report_files.write_result(result, out_dir, json_name=_JSON_NAME, table_name=_TABLE_NAME)
  return result


def _define_flags():
  flags.DEFINE_string('configs', DEFAULT_CONFIGS,
                      "Comma-separated config names, each with an optional ':variant'.")
  flags.DEFINE_integer('trials', 10, 'Trials (seeds) per config.', lower_bound=1)
  flags.DEFINE_integer('first_seed', 0, 'Seed of the first trial.', lower_bound=0)
  trials_lib.define_flags(out='runs/bench_toy', out_help='Output folder (JSON, table, PNGs).',
                          set_example='optim.g.learning_rate=0.006')
  flags.adopt_module_key_flags(trials_lib)  # --out, --set, ... in --help too


def main(argv):
  """The `python -m gan_jax.bench.toy` program (its flags parsed by absl)."""
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}; flags look like --name=value.')
  f = flags.FLAGS
  result = run_benchmark(
      trials_lib.split_config_names(f.configs), trials=f.trials, out_dir=f.out,
      first_seed=f.first_seed, num_steps=f.num_steps, overrides=overrides_lib.parse(
          f.set, controlled=overrides_lib.SEED_AND_STEPS),
      keep_workdirs=f.keep_workdirs,
      log=lambda line: print(line, flush=True))
  print()
  print(result['table'], end='')
  print(f"\nWrote {os.path.join(f.out, _JSON_NAME)}, {os.path.join(f.out, _TABLE_NAME)} "
        'and one PNG per trial.')


if __name__ == '__main__':
  _define_flags()
  cli.run(main, quiet=True)
