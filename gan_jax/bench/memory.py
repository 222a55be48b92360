"""Device memory of a training step, and the largest batch that fits.

  python -m gan_jax.bench.memory --models=dcgan,biggan128,resnet,biggan --json=memory.json
  python -m gan_jax.bench.memory --models=dcgan --memory_gb=16 --remat   # a CPU budget

For each benchmark model (`presets`: dcgan = DCGAN-64, resnet = SNGAN-32, biggan =
BigGAN-32, biggan128 = BigGAN-128) and compute dtype, the real training step
(`step.make_train_step` compiled by `parallel.DataParallel` on one device) is
compiled for abstract inputs, so nothing is allocated, and XLA's memory analysis
gives its buffers: arguments (the state and the batch), outputs, the part of the
outputs aliased to donated arguments, and temporaries. Their sum less the aliases
is the step's peak estimate. The largest batch is searched on that estimate
against a budget: `--fraction` of the device's memory limit (GPU / TPU allocator's
`bytes_limit`) or of `--memory_gb` (default on CPU: the host's physical memory).
On a GPU or TPU one step at `--batch` also runs, and the allocator's peak
(`memory_stats()['peak_bytes_in_use']`, since the process started, so it only
grows over the models) is reported next to the estimate.

The estimate leaves out allocator fragmentation and library workspaces (cuDNN),
hence the margin of `--fraction`; on GPU, XLA also rematerialises by itself when a
program would exceed about 75% of the device's memory, so the estimate of a very
large batch is what the compiler managed to fit.
"""

import os
import platform
import time

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import cli
from gan_jax import errors
from gan_jax import models
from gan_jax import parallel
from gan_jax import state as state_lib
from gan_jax import step as step_lib
from gan_jax import workdir as workdir_lib
from gan_jax.bench import presets
from gan_jax.bench import report_files

_MB = 2.0 ** 20


def lower_step(config, *, devices=None):
  """The training step of `config` lowered for abstract inputs (nothing allocated).

  Args:
    config: an experiment ConfigDict (`config.train.batch_size` is the global batch).
    devices: devices to lower for (default: the first device).

  Returns:
    A `jax.stages.Lowered` of `train_step(state, batch, key)`.
  """
  devices = devices or jax.devices()[:1]
  dp = parallel.DataParallel.from_config(config.parallel, devices, remat=config.train.remat)
  state = state_lib.abstract_state(config, sharding=dp.replicated)
  lead = (config.train.n_critic, config.train.batch_size)
  batch = {'images': jax.ShapeDtypeStruct(lead + models.data_shape(config.model), jnp.float32,
                                          sharding=dp.batch_sharding)}
  if config.model.num_classes:
    batch['labels'] = jax.ShapeDtypeStruct(lead, jnp.int32, sharding=dp.batch_sharding)
  key = jax.eval_shape(lambda: jax.random.key(0))
  key = jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=dp.replicated)
  return dp.compile(step_lib.make_train_step(config)).lower(state, batch, key)


def compile_step(config, *, devices=None):
  """The compiled training step of `config` for abstract inputs: `lower_step(...).compile()`."""
  return lower_step(config, devices=devices).compile()


def step_memory(compiled):
  """XLA's buffer sizes of a compiled step, in bytes.

  Returns:
    {'argument', 'output', 'alias', 'temp', 'peak'}; peak = argument + output
    - alias + temp (donated state buffers are reused for the new state).
  """
  m = compiled.memory_analysis()
  sizes = dict(argument=m.argument_size_in_bytes, output=m.output_size_in_bytes,
               alias=m.alias_size_in_bytes, temp=m.temp_size_in_bytes)
  sizes['peak'] = sizes['argument'] + sizes['output'] - sizes['alias'] + sizes['temp']
  return sizes


def largest_batch(peak_bytes, budget, *, start, multiple=1, max_batch=1 << 20,
                  rel_tol=1 / 16):
  """The largest batch (a multiple of `multiple`, <= max_batch) whose peak fits `budget`.

  Each probe compiles a step, so probes are few: memory grows about linearly with
  the batch (a fixed state plus activations per example), so the search
  extrapolates the line through the last two probes until one does not fit, then
  narrows the bracket by regula falsi (bisection whenever a probe did not halve
  it), and stops when the bracket is narrower than max(multiple, rel_tol * batch).

  Args:
    peak_bytes: batch -> peak bytes, increasing in the batch.
    budget: bytes available.
    start: first batch to try.
    multiple: every batch tried is a multiple of this (e.g. the device count).
    max_batch: no batch above this is tried.
    rel_tol: relative resolution of the answer.

  Returns:
    (batch, {batch: peak bytes} of every probe); batch is 0 when not even
    `multiple` fits.
  """
  probes = {}
  top = max(multiple, max_batch // multiple * multiple)
  snap = lambda b: max(multiple, min(top, int(b) // multiple * multiple))
  lo, hi, b, last_width = 0, None, snap(start), None
  while True:
    probes[b] = peak_bytes(b)
    if probes[b] <= budget:
      lo = b
    else:
      hi = b
    step = max(multiple, int(rel_tol * lo) // multiple * multiple)
    if lo >= top or hi == multiple or (hi is not None and hi - lo <= step):
      return lo, probes
    width = None if hi is None else hi - lo
    bisect = None not in (width, last_width) and width > last_width / 2
    last_width = width
    b = _next_probe(probes, budget, lo, hi, step, snap, bisect)


def _next_probe(probes, budget, lo, hi, step, snap, bisect):
  """A batch above lo (and below hi when known) to probe next."""
  def line(b1, b2):
    m1, m2 = probes[b1], probes[b2]
    return b2 + (budget - m2) * (b2 - b1) / (m2 - m1) if m2 > m1 else None

  if hi is None:    # everything probed fits: extrapolate from the two largest
    below = sorted(probes)[-2:]
    guess = line(*below) if len(below) == 2 else None
    return snap(max(guess or 2 * lo, lo + step))
  if lo == 0:       # nothing fits yet: halve
    return snap(hi / 2)
  guess = (lo + hi) / 2 if bisect else line(lo, hi)
  b = snap(min(max(guess or (lo + hi) / 2, lo + step), hi - step))
  return b if lo < b < hi and b not in probes else snap((lo + hi) / 2)


def device_budget(device, memory_gb, fraction):
  """(bytes a step may fill: `fraction` of --memory_gb or of the device's limit, its source)."""
  if memory_gb:
    return int(fraction * memory_gb * 2**30), f'--memory_gb={memory_gb:g}'
  stats = device.memory_stats() if device.platform != 'cpu' else None
  if stats and stats.get('bytes_limit'):
    return int(fraction * stats['bytes_limit']), 'memory_stats bytes_limit'
  if hasattr(os, 'sysconf'):
    total = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    return int(fraction * total), 'host physical memory'
  raise errors.ConfigError('The device reports no memory limit: set --memory_gb.')


def measured_peak_mb(config, device):
  """Runs one step of `config` on `device`; the allocator's peak (MB), or None on CPU."""
  if device.platform == 'cpu':
    return None
  dp = parallel.DataParallel.from_config(config.parallel, [device], remat=config.train.remat)
  state = dp.put_state(state_lib.create_state(config, jax.random.key(0)))
  lead = (config.train.n_critic, config.train.batch_size)
  batch = {'images': np.zeros(lead + models.data_shape(config.model), np.float32)}
  if config.model.num_classes:
    batch['labels'] = np.zeros(lead, np.int32)
  state, _ = dp.compile(step_lib.make_train_step(config))(
      state, dp.put_batch(batch), jax.random.key(1))
  jax.block_until_ready(state)
  del state
  return device.memory_stats().get('peak_bytes_in_use', 0) / _MB


def measure_model(model, *, dtype, batch, width=0, remat=False, budget=None, multiple=1,
                  max_batch=1 << 16, device=None):
  """One row of the report: memory of `model`'s step at `batch` and the largest batch.

  Args:
    model: a `presets.MODELS` name.
    dtype: 'float32' or 'bfloat16'.
    batch: the reference batch.
    width: > 0: ngf = ndf = width (0: the reference widths).
    remat: `config.train.remat`.
    budget: bytes the largest batch must fit in (None: no search).
    multiple: batches searched are multiples of this.
    max_batch: largest batch searched.
    device: the device (default: the first).

  Returns:
    A JSON-serialisable dict (sizes in MB).
  """
  device = device or jax.devices()[0]

  def config_at(b):
    config = presets.model_config(model, batch=b, variant=dtype, width=width)
    config.train.remat = remat
    return config

  def peak(b):
    return step_memory(compile_step(config_at(b), devices=[device]))['peak']

  start = time.perf_counter()
  sizes = step_memory(compile_step(config_at(batch), devices=[device]))
  row = dict(model=model, dtype=dtype, remat=remat, batch=batch, width=width or None,
             n_critic=config_at(batch).train.n_critic,
             **{f'{k}_mb': v / _MB for k, v in sizes.items()},
             measured_peak_mb=measured_peak_mb(config_at(batch), device))
  if budget:
    largest, probes = largest_batch(peak, budget, start=batch, multiple=multiple,
                                    max_batch=max_batch)
    row.update(largest_batch=largest, budget_mb=budget / _MB,
               probes_mb={str(b): v / _MB for b, v in sorted(probes.items())})
  row['seconds'] = time.perf_counter() - start
  return row


def markdown_table(rows):
  """The rows as a Markdown table."""
  lines = ['| model | dtype | remat | batch | args MB | temp MB | peak MB | measured MB | '
           'largest batch |', '|---|---|---|---:|---:|---:|---:|---:|---:|']
  for r in rows:
    measured = '-' if r['measured_peak_mb'] is None else f'{r["measured_peak_mb"]:.0f}'
    lines.append(
        f'| {r["model"]} | {r["dtype"]} | {r["remat"]} | {r["batch"]} | '
        f'{r["argument_mb"]:.1f} | {r["temp_mb"]:.1f} | {r["peak_mb"]:.1f} | {measured} | '
        f'{describe_largest(r)} |')
  return '\n'.join(lines)


def describe_largest(row):
  """A report row's largest batch as text: '-' when not searched, 'none fits' for 0
  (not even the smallest batch fits the budget)."""
  largest = row.get('largest_batch')
  if largest is None:
    return '-'
  return 'none fits' if largest == 0 else str(largest)


def _define_flags():
  flags.DEFINE_list('models', 'dcgan,biggan128,resnet,biggan',
                    f'Benchmark models ({", ".join(presets.MODELS)}; gan_jax/bench/presets.py).')
  flags.DEFINE_list('dtypes', 'float32', 'Compute dtypes: float32 and/or bfloat16.')
  flags.DEFINE_integer('batch', 64, 'Reference batch size.', lower_bound=1)
  flags.DEFINE_integer('width', 0, 'ngf = ndf of every model (0: reference widths).',
                       lower_bound=0)
  flags.DEFINE_bool('remat', False, 'Set config.train.remat (rematerialised G and D blocks).')
  flags.DEFINE_bool('search', True, 'Search the largest batch that fits.')
  flags.DEFINE_float('memory_gb', 0.0, 'Memory budget in GiB (0: the device limit; on CPU '
                     'the host memory).', lower_bound=0.0)
  flags.DEFINE_float('fraction', 0.9, 'Share of the budget the estimate may fill.',
                     lower_bound=0.01, upper_bound=1.0)
  flags.DEFINE_integer('max_batch', 65536, 'Largest batch searched.', lower_bound=1)
  flags.DEFINE_string('json', '', 'Write the JSON report to this path.')


def main(argv):
  """The `python -m gan_jax.bench.memory` program (its flags parsed by absl)."""
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}; flags look like --name=value.')
  f = flags.FLAGS
  if f.json:  # checked before the work
    workdir_lib.check_output_file(f.json, flag='--json')
  unused = [name for name in ('max_batch', 'fraction', 'memory_gb') if f[name].present]
  if not f.search and unused:
    raise errors.ConfigError(f'--{unused[0]} sets the search for the largest batch, which '
                             '--nosearch turns off: leave one of them out.')
  for model in f.models:
    presets.model_config(model, batch=f.batch)   # an unknown name fails before compiling
  for dtype in f.dtypes:
    presets.parse_jax_variant(dtype)
  device = jax.devices()[0]
  budget, source = device_budget(device, f.memory_gb, f.fraction)
  rows = []
  for model in f.models:
    for dtype in f.dtypes:
      rows.append(measure_model(model, dtype=dtype, batch=f.batch, width=f.width,
                                remat=f.remat, budget=budget if f.search else None,
                                max_batch=f.max_batch, device=device))
      print(f'{model} {dtype}: peak {rows[-1]["peak_mb"]:.1f} MB at batch {f.batch}, '
            f'largest batch {describe_largest(rows[-1])}', flush=True)
  report = dict(
      benchmark='train_step_memory', device=device.device_kind, platform=device.platform,
      budget_mb=budget / _MB, budget_source=source, fraction=f.fraction,
      machine=dict(platform=platform.platform(), cpu=report_files.cpu_model(),
                   cpu_count=os.cpu_count()),
      versions=dict(jax=jax.__version__), rows=rows)
  print(markdown_table(rows))
  if f.json:
    report_files.write_json(f.json, report)


if __name__ == '__main__':
  _define_flags()
  cli.run(main, quiet=True)
