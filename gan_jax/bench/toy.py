"""Mode-collapse benchmark on the 2-D Gaussian mixtures (PacGAN protocol, issue 5).

  python -m gan_jax.bench.toy --trials=10 \\
      --configs=toy_ring,toy_ring:baseline,toy_grid,toy_grid:baseline --out=runs/bench_toy

Protocol (Lin et al. 2018, "PacGAN", Section 5 / Table 1):
  ring: 8 Gaussians on the unit circle, std 0.01;
  grid: 25 Gaussians at {-4, -2, 0, 2, 4}^2, std 0.05.
  For each config and each trial seed S (S = first_seed, first_seed + 1, ...):
    1. train through the real code path, `gan_jax.train.train_and_evaluate(config,
       workdir)` with `config.seed = S` (what `python -m gan_jax.main
       --config=configs/<name>.py --config.seed=S` does);
    2. restore the final (EMA) generator with `gan_jax.sample.load_generator` and
       draw 2,500 samples with `gan_jax.sample.generate_samples(seed=S)` (what
       `python -m gan_jax.sample --seed=S --num_samples=2500` writes);
    3. score them with `gan_jax.metrics.proxies.toy_mode_metrics`: a sample is
       high quality within 3 std of its nearest mode, a mode is captured when at
       least one high-quality sample is nearest to it, and the reverse KL is
       KL(mode histogram of the high-quality samples || uniform).
  Each row reports mean +- standard error over the trials (s.e. = sample standard
  deviation with ddof=1 / sqrt(trials)) and the wall-clock training time of one
  trial (train_and_evaluate, compilation and checkpoint writes included).

Config names are files of `configs/` with an optional variant after ':'
(`toy_ring:baseline`, `toy_ring:baseline,smoke`); a path `configs/x.py[:arg]`
works too. Outputs in --out: `toy_benchmark.json` (every trial and the summary),
`toy_benchmark.md` (the table) and one scatter plot per trial,
`<config>_seed<S>.png` (real points red, generated points blue). The JSON is
rewritten after every trial, so an interrupted run keeps what it measured.
"""

import datetime
import importlib
import importlib.util
import json
import logging as py_logging
import math
import os
import platform
import re
import shutil
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

DEFAULT_CONFIGS = 'toy_ring,toy_ring:baseline,toy_grid,toy_grid:baseline'
NUM_SAMPLES = 2500      # generated samples per trial (PacGAN protocol)
NUM_STD = 3.0           # high-quality radius in mode standard deviations
_REAL_POINTS = 2500     # real points drawn under each scatter plot
_JSON_NAME = 'toy_benchmark.json'
_TABLE_NAME = 'toy_benchmark.md'
_METRICS = ('modes_captured', 'high_quality', 'reverse_kl', 'train_seconds')

# PacGAN (Lin et al. 2018), Table 1, and VEEGAN's numbers as quoted there:
# means over 10 trials; None where the source reports no value.
REFERENCE_ROWS = (
    dict(mixture='ring', method='GAN', modes_captured=6.3, high_quality=0.982,
         reverse_kl=0.45, source='PacGAN Table 1'),
    dict(mixture='ring', method='PacGAN2', modes_captured=7.9, high_quality=0.956,
         reverse_kl=0.07, source='PacGAN Table 1'),
    dict(mixture='ring', method='VEEGAN', modes_captured=8.0, high_quality=0.529,
         reverse_kl=None, source='VEEGAN (Srivastava et al. 2017)'),
    dict(mixture='grid', method='GAN', modes_captured=17.3, high_quality=0.948,
         reverse_kl=0.70, source='PacGAN Table 1'),
    dict(mixture='grid', method='PacGAN4', modes_captured=24.8, high_quality=0.936,
         reverse_kl=0.04, source='PacGAN Table 1'),
    dict(mixture='grid', method='VEEGAN', modes_captured=24.6, high_quality=0.40,
         reverse_kl=None, source='VEEGAN (Srivastava et al. 2017)'),
)


# ----------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------


def split_config_names(text):
  """Splits `--configs` into config specs, keeping variant arguments together.

  A variant argument may itself hold commas (`toy_ring:baseline,smoke`), so a
  piece that is not a config (no ':' and no file `configs/<piece>.py`) is glued
  to the previous spec: 'toy_ring:baseline,smoke,toy_grid' ->
  ['toy_ring:baseline,smoke', 'toy_grid'].

  Args:
    text: comma-separated config specs.

  Returns:
    list of specs 'name[:arg]' in the given order.
  """
  specs = []
  for piece in (p.strip() for p in text.split(',')):
    if not piece:
      continue
    if specs and ':' in specs[-1] and ':' not in piece and not _is_config(piece):
      specs[-1] += ',' + piece
    else:
      specs.append(piece)
  return specs


def _configs_dir():
  return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__)))), 'configs')


def _is_config(name):
  return name.endswith('.py') or os.path.exists(os.path.join(_configs_dir(), name + '.py'))


def load_config(spec):
  """Builds the ConfigDict of a spec 'name[:arg]' or 'path/to/config.py[:arg]'.

  Args:
    spec: a config of `configs/` by name (e.g. 'toy_ring:baseline') or a path.

  Returns:
    The config's `get_config(arg)` (arg None when the spec has no ':').

  Raises:
    ValueError: for an unknown config, or one that does not train on toy data.
  """
  name, _, arg = spec.partition(':')
  if name.endswith('.py'):
    module_spec = importlib.util.spec_from_file_location(
        'gan_jax_bench_config_' + re.sub(r'\W', '_', name), name)
    if module_spec is None or not os.path.exists(name):
      raise ValueError(f'Config file {name!r} does not exist.')
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
  else:
    try:
      module = importlib.import_module(f'configs.{name}')
    except ModuleNotFoundError as e:
      known = sorted(f[:-3] for f in os.listdir(_configs_dir())
                     if f.endswith('.py') and not f.startswith('_'))
      raise ValueError(
          f'Unknown config {name!r} ({e}); known in configs/: {known}. Run from the '
          'repository root (or `pip install -e .`) so that `configs` is importable.') from e
  config = module.get_config(arg or None) if arg else module.get_config()
  if config.data.source != 'toy':
    raise ValueError(f'Config {spec!r} trains on data.source={config.data.source!r}; '
                     "the toy benchmark needs data.source='toy' (configs toy_ring, toy_grid).")
  return config


# ----------------------------------------------------------------------------
# Statistics and the table
# ----------------------------------------------------------------------------


def mean_and_se(values):
  """Mean and standard error of the mean.

  Args:
    values: a non-empty sequence of numbers (one per trial).

  Returns:
    (mean, se) floats; se = std(values, ddof=1) / sqrt(n), None when n == 1
    (one trial has no spread to estimate).
  """
  x = np.asarray(values, np.float64)
  if x.size == 0:
    raise ValueError('mean_and_se needs at least one value.')
  if x.size == 1:
    return float(x[0]), None
  return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size))


def summarize(trials):
  """Per-metric {'mean', 'se'} over trial records (dicts holding `_METRICS`)."""
  summary = {}
  for key in _METRICS:
    mean, se = mean_and_se([t[key] for t in trials])
    summary[key] = {'mean': mean, 'se': se}
  return summary


def _cell(mean, se, *, scale=1.0, digits=1):
  if mean is None:
    return '–'
  text = f'{mean * scale:.{digits}f}'
  if se is not None:
    text += f' ± {se * scale:.{digits}f}'
  return text


def format_table(rows, references=REFERENCE_ROWS):
  """The Markdown results table: our rows and the published ones, per mixture.

  Args:
    rows: result rows (`run_benchmark(...)['rows']`): dicts with 'config',
      'mixture', 'num_modes', 'trials' (a list) and 'summary' (`summarize`).
    references: published rows (`REFERENCE_ROWS`).

  Returns:
    A Markdown table (str) with one line per row: mixture, config, trials,
    modes captured (of K), high-quality samples (%), reverse KL and training
    seconds per trial, each `mean ± s.e.`; published rows carry their source.
  """
  lines = ['| mixture | config | trials | modes captured | high quality (%) | reverse KL '
           '| train time / trial (s) |',
           '|---|---|---:|---:|---:|---:|---:|']
  mixtures = []
  for r in list(rows) + list(references):
    if r['mixture'] not in mixtures:
      mixtures.append(r['mixture'])
  for mixture in mixtures:
    for r in rows:
      if r['mixture'] != mixture:
        continue
      s = r['summary']
      lines.append(
          f"| {mixture} | `{r['config']}` (ours) | {len(r['trials'])} "
          f"| {_cell(s['modes_captured']['mean'], s['modes_captured']['se'])} / {r['num_modes']} "
          f"| {_cell(s['high_quality']['mean'], s['high_quality']['se'], scale=100)} "
          f"| {_cell(s['reverse_kl']['mean'], s['reverse_kl']['se'], digits=3)} "
          f"| {_cell(s['train_seconds']['mean'], s['train_seconds']['se'])} |")
    for r in references:
      if r['mixture'] != mixture:
        continue
      lines.append(
          f"| {mixture} | {r['method']} ({r['source']}) | 10 "
          f"| {_cell(r['modes_captured'], None)} "
          f"| {_cell(r['high_quality'], None, scale=100)} "
          f"| {_cell(r['reverse_kl'], None, digits=2)} | – |")
  return '\n'.join(lines) + '\n'


# ----------------------------------------------------------------------------
# Trials
# ----------------------------------------------------------------------------


def _slug(spec):
  name, _, arg = spec.partition(':')
  name = os.path.splitext(os.path.basename(name))[0]
  return re.sub(r'[^A-Za-z0-9_.=-]+', '_', name + ('-' + arg if arg else ''))


def scatter_plot(samples, mixture_name):
  """Real (red) and generated (blue) points of one trial as an RGB image.

  Args:
    samples: f32[N, 2] generated points.
    mixture_name: 'ring' or 'grid'.

  Returns:
    uint8[400, 400, 3]; the view spans the modes plus a margin, the same for
    every trial of a mixture (points outside it are not drawn).
  """
  from gan_jax import writers  # pylint: disable=g-import-not-at-top
  from gan_jax.data import toy  # pylint: disable=g-import-not-at-top
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
    KeyboardInterrupt: training was interrupted (SIGTERM / SIGINT) before
      `config.train.num_steps`.
  """
  from gan_jax import sample  # pylint: disable=g-import-not-at-top
  from gan_jax import train  # pylint: disable=g-import-not-at-top
  from gan_jax.data import toy  # pylint: disable=g-import-not-at-top
  from gan_jax.metrics import proxies  # pylint: disable=g-import-not-at-top
  config.seed = seed
  config.train.progress_bar = False
  start = time.perf_counter()
  train.train_and_evaluate(config, workdir)
  train_seconds = time.perf_counter() - start
  saved_config, generate = sample.load_generator(workdir)
  if generate.step != config.train.num_steps:
    # train_and_evaluate returns early (after saving) on SIGTERM / SIGINT; a
    # half-trained trial must not enter the table, and the benchmark stops.
    raise KeyboardInterrupt(
        f'Trial seed {seed} stopped at step {generate.step} of '
        f'{config.train.num_steps} (interrupted); the benchmark stops here. The JSON '
        'in --out holds the trials finished so far.')
  samples = sample.generate_samples(generate, z_dim=saved_config.model.z_dim,
                                    num_samples=num_samples, seed=seed)
  centers, std = toy.mixture(config.data.toy)
  metrics = proxies.toy_mode_metrics(samples, centers, std, num_std=NUM_STD)
  record = {'seed': int(seed), 'step': int(generate.step),
            'modes_captured': int(metrics['modes_captured']),
            'high_quality': float(metrics['high_quality']),
            'reverse_kl': float(metrics['reverse_kl']),
            'train_seconds': float(train_seconds)}
  return record, samples


def machine_description():
  """Where the numbers were measured: OS, CPU, core count, JAX backend and version."""
  import jax  # pylint: disable=g-import-not-at-top
  cpu = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      for line in f:
        if line.startswith('model name'):
          cpu = line.split(':', 1)[1].strip()
          break
  except OSError:
    pass
  return {'platform': platform.platform(), 'cpu': cpu, 'cpu_count': os.cpu_count(),
          'jax_backend': jax.default_backend(), 'jax_devices': jax.device_count(),
          'jax_version': jax.__version__, 'python': platform.python_version()}


def run_benchmark(specs, *, trials=10, out_dir='runs/bench_toy', first_seed=0,
                  num_steps=None, keep_workdirs=False, command=None, log=print):
  """Trains and scores every config for every seed; writes the JSON, table and PNGs.

  Args:
    specs: config specs, e.g. ['toy_ring', 'toy_ring:baseline'].
    trials: seeds per config (first_seed, first_seed + 1, ...).
    out_dir: output folder (created).
    first_seed: the first trial seed.
    num_steps: if set, overrides config.train.num_steps (quick checks).
    keep_workdirs: keep each trial's run in `<out_dir>/workdirs/<config>/seed_<S>`
      (an existing run there is resumed); otherwise a temporary folder, deleted
      after the trial.
    command: the command line recorded in the JSON (default: this process's).
    log: called with one progress line per trial.

  Returns:
    The JSON-ready result: {'benchmark', 'protocol', 'command', 'machine',
    'created', 'rows': [{'config', 'name', 'mixture', 'num_modes', 'num_steps',
    'trials': [record, ...], 'summary'}], 'reference', 'table'}.
  """
  from gan_jax import writers  # pylint: disable=g-import-not-at-top
  from gan_jax.data import toy  # pylint: disable=g-import-not-at-top
  if trials < 1:
    raise ValueError(f'trials must be >= 1, got {trials}.')
  configs = [(spec, load_config(spec)) for spec in specs]  # fail fast on bad names
  os.makedirs(out_dir, exist_ok=True)
  result = {
      'benchmark': 'toy mode collapse (PacGAN protocol)',
      'protocol': {
          'num_samples': NUM_SAMPLES,
          'high_quality_radius_std': NUM_STD,
          'mixtures': {name: {'num_modes': len(toy.mixture(name)[0]),
                              'std': toy.mixture(name)[1]} for name in toy.MIXTURES},
          'se': 'sample std (ddof=1) / sqrt(trials)',
      },
      'command': command or ' '.join([os.path.basename(sys.executable), '-m',
                                      'gan_jax.bench.toy'] + sys.argv[1:]),
      'machine': machine_description(),
      'created': datetime.datetime.now().isoformat(timespec='seconds'),
      'rows': [],
      'reference': [dict(r) for r in REFERENCE_ROWS],
  }
  for spec, config in configs:
    if num_steps is not None:
      config.train.num_steps = int(num_steps)
    row = {'config': spec, 'name': config.name, 'mixture': config.data.toy,
           'num_modes': len(toy.mixture(config.data.toy)[0]),
           'num_steps': int(config.train.num_steps), 'trials': [], 'summary': None}
    result['rows'].append(row)
    for seed in range(first_seed, first_seed + trials):
      if keep_workdirs:
        workdir = os.path.join(out_dir, 'workdirs', _slug(spec), f'seed_{seed}')
      else:
        workdir = tempfile.mkdtemp(prefix=f'bench_toy_{_slug(spec)}_{seed}_')
      try:
        record, samples = run_trial(config.copy_and_resolve_references(), seed=seed,
                                    workdir=workdir)
      finally:
        if not keep_workdirs:
          shutil.rmtree(workdir, ignore_errors=True)
      png = f'{_slug(spec)}_seed{seed}.png'
      writers.save_png(os.path.join(out_dir, png), scatter_plot(samples, config.data.toy))
      record['png'] = png
      row['trials'].append(record)
      row['summary'] = summarize(row['trials'])
      log(f"{spec} seed {seed}: {record['modes_captured']}/{row['num_modes']} modes, "
          f"{100 * record['high_quality']:.1f}% high quality, reverse KL "
          f"{record['reverse_kl']:.3f}, {record['train_seconds']:.1f} s")
      result['table'] = format_table(result['rows'])
      _write_outputs(result, out_dir)
  return result


def _write_outputs(result, out_dir):
  for name, text in ((_JSON_NAME, json.dumps(result, indent=2) + '\n'),
                     (_TABLE_NAME, result['table'])):
    path = os.path.join(out_dir, name)
    with open(path + '.tmp', 'w', encoding='utf-8') as f:
      f.write(text)
    os.replace(path + '.tmp', path)


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------

_CONFIGS = flags.DEFINE_string(
    'configs', DEFAULT_CONFIGS,
    "Comma-separated configs of configs/, each with an optional ':variant'.")
_TRIALS = flags.DEFINE_integer('trials', 10, 'Trials (seeds) per config.')
_FIRST_SEED = flags.DEFINE_integer('first_seed', 0, 'Seed of the first trial.')
_OUT = flags.DEFINE_string('out', 'runs/bench_toy', 'Output folder (JSON, table, PNGs).')
_NUM_STEPS = flags.DEFINE_integer(
    'num_steps', None, "Override every config's train.num_steps (quick checks only).")
_KEEP = flags.DEFINE_bool(
    'keep_workdirs', False, 'Keep each trial run in <out>/workdirs/ (default: a temp folder).')


class _QuietLibraries(py_logging.Filter):
  """Keeps warnings and errors only: the bench prints one line per trial."""

  def filter(self, record):
    return record.levelno >= py_logging.WARNING


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  logging.get_absl_handler().addFilter(_QuietLibraries())
  py_logging.getLogger().setLevel(py_logging.WARNING)
  result = run_benchmark(
      split_config_names(_CONFIGS.value), trials=_TRIALS.value, out_dir=_OUT.value,
      first_seed=_FIRST_SEED.value, num_steps=_NUM_STEPS.value,
      keep_workdirs=_KEEP.value, log=lambda line: print(line, flush=True))
  print()
  print(result['table'], end='')
  print(f"\nWrote {os.path.join(_OUT.value, _JSON_NAME)}, "
        f"{os.path.join(_OUT.value, _TABLE_NAME)} and one PNG per trial.")


if __name__ == '__main__':
  app.run(main)
