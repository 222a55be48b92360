"""Training-step throughput of gan_jax against PyTorch eager, plus Inception speed.

  python -m gan_jax.bench.throughput --widths=16,32 --batch=64 --json=bench.json

What is measured: the DCGAN training iteration of the PyTorch DCGAN example at 64x64
RGB (ngf = ndf = width, z_dim 100, Adam(2e-4, 0.5, 0.999), non-saturating G loss,
BatchNorm in both nets, no EMA), as

  * gan_jax: the real `step.make_train_step` (with `train.reuse_fake`: G runs
    forward once per iteration and the G update back-propagates through the D
    update's fake batch, as the PyTorch example does) compiled by `parallel.DataParallel`
    (shard_map over this process's one CPU device, donated state, XLA's Eigen
    convolution kernels: `config.parallel.cpu_conv_kernels`), fed by the
    trainer's own prefetch thread from a host iterator of pre-made batches, so
    "input wait" is the time the step waited for the prefetcher (not decoding);
  * torch eager: the example's loop body (D on real, D on G(z).detach(), D step;
    G step reusing that G(z)), optionally with channels_last tensors.

Each (framework, variant) runs in its own worker process, so thread pools, peak
memory and allocator state do not interfere; the parent interleaves the workers'
timed rounds (A B C, C B A, ...) so slow phases of a shared machine hit all of them. Per
row: iterations/s (median and min-max over rounds), images/s (= it/s * batch),
compile time (gan_jax: lower + compile; torch: its first, warm-up iteration; wall
and CPU seconds, the latter being what a busy machine does not inflate), peak
memory (the worker's peak RSS above its RSS once the framework is loaded; gan_jax
also reports XLA's own buffer estimate), GFLOP per iteration (XLA cost analysis /
torch's FlopCounterMode), CPU seconds per iteration (all threads; a load-robust
measure of work, since wall time on a shared machine depends on what else runs)
and the share of wall time spent waiting for input. The ratio to
torch eager is the median over rounds of the per-round ratio (paired, so it is
robust to load changes between rounds).

`--model=resnet` (SNGAN-32), `sagan` (SAGAN-32) or `biggan` (BigGAN-32, CIFAR-10
settings), or any config name (`--model=cgan_pd_cifar10`, `toy_ring` for the MLPs;
see `presets`) times that model's training step instead, gan_jax only (the PyTorch
baseline exists for DCGAN alone), at its reference widths unless `--widths` is
given (then ngf = ndf = width). One iteration is one train step: n_critic D updates
and one G update (SNGAN-32 and BigGAN-32: n_critic 5); images/s = it/s * batch.

`--inception` adds the FID InceptionV3 feature extractor
(`metrics.inception.extract_features`, random weights, 64x64 inputs resized to 299)
in images/s. `--profile` prints where gan_jax's step time goes, per XLA op, from a
`jax.profiler` trace of a few steps.
"""

import collections
import dataclasses
import importlib.metadata
import importlib.util
import os
import platform
import statistics
import sys
import time

from absl import flags
import jax

from gan_jax import cli
from gan_jax import errors
from gan_jax import workdir as workdir_lib
from gan_jax.bench import presets
from gan_jax.bench import report_files
from gan_jax.bench import worker_process

TORCH_VARIANTS = ('eager', 'channels_last')


DCGAN_WIDTHS = (16, 32, 64)


@dataclasses.dataclass(frozen=True)
class Settings:
  """What to time and how (the command-line flags; see `_define_flags`).

  `widths`: ngf = ndf of each timed model; None = the reference widths (DCGAN:
  16, 32 and 64; the other models: their own, timed once).
  """
  model: str = 'dcgan'
  widths: tuple = None
  batch: int = 64
  rounds: int = 5
  round_seconds: float = 3.0
  min_iters: int = 1
  jax_variants: tuple = ('float32',)
  torch_variants: tuple = ('eager', 'channels_last')
  torch: bool = True
  inception: bool = False
  inception_batch: int = 16
  profile: int = 0
  xla_flags: str = ''

  def __post_init__(self):
    if self.model != 'dcgan':
      try:
        presets.model_config(self.model, batch=self.batch)
      except errors.ConfigError as e:
        raise errors.ConfigError(f'--model: {e}') from None
    for variant in self.jax_variants:
      presets.parse_jax_variant(variant)
    for variant in self.torch_variants:
      if variant not in TORCH_VARIANTS:
        raise errors.ConfigError(f'--torch_variants: unknown {variant!r}; use '
                                 f'{" and/or ".join(TORCH_VARIANTS)}.')


def torch_available():
  """True when `import torch` would work (checked without importing it here)."""
  return importlib.util.find_spec('torch') is not None


def _measure(workers, rounds, round_seconds, min_iters):
  """Interleaved timed rounds.

  Returns:
    {worker index: [(it/s, input-wait share, CPU s per iteration) per round]}.
  """
  # Size every worker's round from one warm iteration so a round lasts about
  # `round_seconds` whatever the model's speed.
  iters = []
  for worker in workers:
    seconds = worker.call('run', 1)[0]
    iters.append(max(min_iters, int(round_seconds / max(seconds, 1e-3))))
  results = collections.defaultdict(list)
  order = list(enumerate(workers))
  for round_index in range(rounds):
    # A B C, C B A, ...: no worker always runs right after another one.
    for index, worker in (order if round_index % 2 == 0 else order[::-1]):
      seconds, waited, cpu = worker.call('run', iters[index])
      results[index].append((iters[index] / seconds, waited / seconds, cpu / iters[index]))
  return results


_START = time.perf_counter()


def _log(message):
  print(f'[bench {time.perf_counter() - _START:6.0f}s] {message}', file=sys.stderr, flush=True)


def _row(spec, info, final, measured):
  """One JSON row from a worker's start-up info, final info and round results."""
  speeds = [speed for speed, _, _ in measured]
  median = statistics.median(speeds)
  batch = spec['batch']
  return dict(
      framework=spec['framework'], model=spec.get('model'), variant=spec['variant'],
      width=spec.get('width'), batch=batch, it_per_s=median, it_per_s_min=min(speeds), it_per_s_max=max(speeds),
      images_per_s=median * batch, per_round_it_per_s=speeds,
      input_wait_share=statistics.median(wait for _, wait, _ in measured),
      cpu_s_per_iter=statistics.median(cpu for _, _, cpu in measured),
      compile_s=info['compile_s'], compile_cpu_s=info['compile_cpu_s'],
      first_step_s=info['first_step_s'],
      peak_mem_mb=final['peak_mem_mb'], xla_mem_mb=info['xla_mem_mb'],
      gflop_per_iter=info['gflop'])


def _run_group(specs, args):
  """Starts `specs`' workers one after another, measures them interleaved, stops them.

  Returns:
    (rows, per-round it/s lists in `specs` order, profiles dict).
  """
  workers = []
  try:
    for spec in specs:
      _log(f'starting {spec["framework"]}/{spec["variant"]} width {spec.get("width")}')
      workers.append(worker_process.Worker(spec))
    _log('timed rounds')
    measured = _measure(workers, args.rounds, args.round_seconds, args.min_iters)
    profiles = {}
    if args.profile:
      for worker in workers:
        if worker.spec['framework'] == 'gan_jax':
          key = f'{worker.spec["variant"]}/w{worker.spec["width"]}'
          _log(f'profiling {key} for {args.profile} steps')
          profiles[key] = worker.call('profile', args.profile, 15)
    infos = [worker.info for worker in workers]
    finals = [worker.stop() for worker in workers]
    workers = []
  finally:
    for worker in workers:
      worker.kill()
  rows = [_row(spec, info, final, measured[index])
          for index, (spec, info, final) in enumerate(zip(specs, infos, finals))]
  return rows, profiles


def _paired_ratio(rows, width):
  """Median over rounds of gan_jax float32 it/s / torch eager it/s (None if missing)."""
  def find(framework, variant):
    return next((r for r in rows if r['framework'] == framework
                 and r['variant'] == variant and r['width'] == width), None)
  ours, theirs = find('gan_jax', 'float32'), find('torch', 'eager')
  if ours is None or theirs is None:
    return None
  return statistics.median(
      a / b for a, b in zip(ours['per_round_it_per_s'], theirs['per_round_it_per_s']))


def run_benchmark(args):
  """Runs every width (and Inception) and returns the JSON-serialisable report.

  Args:
    args: the `Settings`.
  """
  rows, profiles, ratios = [], {}, {}
  have_torch = args.torch and torch_available() and args.model == 'dcgan'
  if args.torch and not torch_available():
    _log('torch is not installed: no PyTorch baseline (pip install torch==2.13.0)')
  widths = args.widths or (DCGAN_WIDTHS if args.model == 'dcgan' else (None,))
  for width in widths:
    specs = [dict(framework='gan_jax', model=args.model, variant=v, width=width,
                  batch=args.batch, xla_flags=args.xla_flags) for v in args.jax_variants]
    if have_torch:
      specs += [dict(framework='torch', model='dcgan', variant=v, width=width,
                     batch=args.batch) for v in args.torch_variants]
    width_rows, width_profiles = _run_group(specs, args)
    rows += width_rows
    profiles.update(width_profiles)
    ratio = _paired_ratio(width_rows, width)
    if ratio is not None:
      ratios[str(width)] = ratio
  if args.inception:
    # InceptionV3 at 299 px is ~6 GFLOP per image: fewer images and rounds keep it
    # to a minute or two on a laptop-class CPU.
    _log('inception')
    inception_args = dataclasses.replace(args, rounds=min(args.rounds, 3))
    inception_rows, _ = _run_group(
        [dict(framework='inception', variant='float32', batch=args.inception_batch,
              xla_flags=args.xla_flags)], inception_args)
    rows += inception_rows
  torch_version = None
  if have_torch:
    torch_version = importlib.metadata.version('torch')
  model = presets.model_config(args.model, batch=args.batch).model
  return dict(
      benchmark=('dcgan_64px_train_iteration' if args.model == 'dcgan'
                 else f'{args.model}_{model.resolution}px_train_iteration'),
      machine=dict(platform=platform.platform(), cpu=report_files.cpu_model(),
                   cpu_count=os.cpu_count(),
                   load_avg_1m=os.getloadavg()[0] if hasattr(os, 'getloadavg') else None),
      versions=dict(jax=jax.__version__, torch=torch_version, python=platform.python_version()),
      settings=dict(model=args.model, batch=args.batch, rounds=args.rounds,
                    round_seconds=args.round_seconds, xla_flags=args.xla_flags,
                    resolution=model.resolution, channels=model.channels, z_dim=model.z_dim),
      rows=rows, ratio_vs_torch_eager=ratios, profile=profiles)


def markdown_table(report):
  """The report's rows as a Markdown table (one line per row)."""
  lines = ['| model | framework | variant | width | it/s (median) | min-max | images/s | '
           'compile s (CPU s) | peak MB | GFLOP/it | CPU s/it | input wait |',
           '|---|---|---|---|---|---|---|---|---|---|---|---|']
  for r in report['rows']:
    width = '-' if r['width'] is None else r['width']
    model = r.get('model') or '-'
    gflop = '-' if r['gflop_per_iter'] != r['gflop_per_iter'] else f'{r["gflop_per_iter"]:.1f}'
    lines.append(
        f'| {model} | {r["framework"]} | {r["variant"]} | {width} | {r["it_per_s"]:.2f} | '
        f'{r["it_per_s_min"]:.2f}-{r["it_per_s_max"]:.2f} | {r["images_per_s"]:.0f} | '
        f'{r["compile_s"]:.1f} ({r["compile_cpu_s"]:.1f}) | {r["peak_mem_mb"]:.0f} | {gflop} | '
        f'{r["cpu_s_per_iter"]:.2f} | {100 * r["input_wait_share"]:.1f}% |')
  for width, ratio in report['ratio_vs_torch_eager'].items():
    lines.append(f'\nwidth {width}: gan_jax float32 / torch eager = {ratio:.2f}x '
                 '(median of per-round ratios)')
  return '\n'.join(lines)


def format_profile(profile):
  """Human-readable per-op breakdown from `summarise_trace`."""
  if not profile:
    return '(no XLA op events in the trace)'
  lines = [f'XLA op time {profile["total_ms_per_step"]:.1f} ms/step; by kind:']
  lines += [f'  {kind:<14} {ms:8.1f} ms  {100 * share:5.1f}%'
            for kind, ms, share in profile['by_kind']]
  lines.append('  most expensive ops:')
  lines += [f'  {name:<40} {ms:8.1f} ms  {100 * share:5.1f}%'
            for name, ms, share in profile['top_ops']]
  return '\n'.join(lines)


def _define_flags():
  flags.DEFINE_string('model', 'dcgan',
                      'Model to time: dcgan (64 px, vs PyTorch), resnet (SNGAN-32), sagan '
                      '(SAGAN-32), biggan (BigGAN-32), or a config name; see '
                      'gan_jax/bench/presets.py.')
  flags.DEFINE_list('widths', '', 'ngf = ndf of each timed model (default: dcgan 16,32,64; '
                    'the other models their reference widths).')
  flags.DEFINE_integer('batch', 64, 'Batch size.', lower_bound=1)
  flags.DEFINE_integer('rounds', 5, 'Interleaved timed rounds.', lower_bound=1)
  flags.DEFINE_float('round_seconds', 3.0, 'Target length of one timed round per worker.',
                     lower_bound=0.01)
  flags.DEFINE_integer('min_iters', 1, 'Fewest iterations in one timed round.', lower_bound=1)
  flags.DEFINE_list('jax_variants', 'float32',
                    'gan_jax variants DTYPE[/KERNELS]: float32, bfloat16, and e.g. '
                    "float32/xla_default for XLA's default (YNNPACK) CPU convolutions.")
  flags.DEFINE_list('torch_variants', 'eager,channels_last', 'PyTorch variants.')
  flags.DEFINE_bool('torch', True, 'Time the PyTorch baseline when torch is installed.')
  flags.DEFINE_bool('inception', False, 'Also time FID Inception feature extraction.')
  flags.DEFINE_integer('inception_batch', 16, 'Images per Inception call.', lower_bound=1)
  flags.DEFINE_integer('profile', 0, 'Trace this many gan_jax steps and print per-op time.',
                       lower_bound=0)
  flags.DEFINE_string('xla_flags', '', 'Extra XLA_FLAGS for the gan_jax workers only.')
  flags.DEFINE_string('json', '', 'Write the JSON report to this path.')


def _parse_widths(values):
  """--widths as a tuple of positive ints (None when empty); ConfigError otherwise."""
  try:
    widths = tuple(int(value) for value in values)
  except ValueError:
    widths = ()
  if len(widths) != len(values) or any(w < 1 for w in widths):
    raise errors.ConfigError(f'--widths={",".join(values)}: give positive integers (ngf = ndf '
                             'of each timed model), e.g. --widths=16,32,64.')
  if len(set(widths)) != len(widths):
    raise errors.ConfigError(f'--widths={",".join(values)} names a width twice; name each '
                             'once (--rounds sets how often each is timed).')
  return widths or None


def main(argv):
  """The `python -m gan_jax.bench.throughput` program (its flags parsed by absl)."""
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}; flags look like --name=value.')
  f = flags.FLAGS
  if f.json:  # checked before the work
    workdir_lib.check_output_file(f.json, flag='--json')
  given = [name for name in ('torch', 'torch_variants') if f[name].present]
  if f.model != 'dcgan' and given and f.torch:
    raise errors.ConfigError(f'--{given[0]}: the PyTorch baseline is the DCGAN example\'s, '
                             f'timed beside --model=dcgan only, not --model={f.model}; leave '
                             'it out.')
  settings = Settings(
      model=f.model, widths=_parse_widths(f.widths), batch=f.batch,
      rounds=f.rounds,
      round_seconds=f.round_seconds, min_iters=f.min_iters,
      jax_variants=tuple(f.jax_variants), torch_variants=tuple(f.torch_variants),
      torch=f.torch, inception=f.inception, inception_batch=f.inception_batch,
      profile=f.profile, xla_flags=f.xla_flags)
  report = run_benchmark(settings)
  print(markdown_table(report))
  for key, profile in report['profile'].items():
    print(f'\nprofile gan_jax {key}:\n{format_profile(profile)}')
  if f.json:
    report_files.write_json(f.json, report)


if __name__ == '__main__':
  _define_flags()
  cli.run(main, quiet=True)
