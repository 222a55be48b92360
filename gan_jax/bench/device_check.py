"""One prepared device check: step throughput against the device's bf16 matmul rate, FID speed.

  python -m gan_jax.bench.device_check --json=device_check.json     # GPU / TPU, ~5 min
  python -m gan_jax.bench.device_check --quick --json=check.json    # CPU-sized, to try it

In one process, on the first device:

  1. the device's bf16 matmul rate: a chain of `--matmul_size`^2 bf16 matrix
     products (float32 accumulation) in one compiled loop, in TFLOP/s;
  2. for each model (`presets`: dcgan = DCGAN-64, resnet = SNGAN-32, biggan =
     BigGAN-32) the real training step (`throughput_runners.JaxRunner`: the
     trainer's step, prefetcher and donated state) at `--batch` and at the largest
     batch, in float32 and bfloat16: it/s, images/s (it/s * batch), the step's
     FLOPs (XLA's cost analysis of the step as written) times it/s as achieved
     TFLOP/s, and that as a fraction of the matmul rate. The largest batch is the
     largest power of two <= `--max_batch` whose float32 step fits `--fraction` of
     the device's memory by XLA's estimate (`memory.step_memory`, extrapolated from
     `--batch` and checked by compiling); bfloat16 runs at the same batch;
  3. the dtypes of every convolution of each step, as written (lowered HLO) and as
     compiled (XLA:CPU runs bf16 convolutions in float32; a GPU should keep bf16);
  4. FID Inception feature extraction (random weights, 64 px inputs resized to
     299, as the evaluator) in images/s, and the projected time of FID-50k's
     features: 50k generated + 50k reference images.

`--stride2_forms=custom,xla` times every DCGAN row in each way of computing its
stride-2 layers (`model.stride2_forms`: the custom-VJP forms written for XLA:CPU, or
XLA's own convolutions and derivatives), one after the other; the rows say which.

Targets on one H100 / H200-class GPU: DCGAN-64 in bfloat16 at the largest batch
>= 50% of the measured bf16 matmul rate (the better form counts), and FID-50k
features in under 60 s.
Runs start in order of importance: the matmul; DCGAN, Inception, SNGAN and BigGAN
at `--batch`; then the largest batch of each model (DCGAN first). None starts once
`--budget_s` has passed: those rows say 'skipped'. Each row is printed when measured.
"""

import collections
import dataclasses
import os
import platform
import re
import statistics
import time

from absl import flags
import jax
import jax.numpy as jnp

from gan_jax import cli
from gan_jax import errors
from gan_jax import workdir as workdir_lib
from gan_jax.bench import memory
from gan_jax.bench import presets
from gan_jax.bench import report_files
from gan_jax.bench import throughput_runners
from gan_jax.models import layers

MODELS = ('dcgan', 'resnet', 'biggan')
FID_IMAGES = 100_000                  # FID-50k: 50k generated + 50k reference images
TARGET_MATMUL_FRACTION = 0.5          # DCGAN-64 bf16, largest batch
TARGET_FID50K_SECONDS = 60.0
# --quick: CPU-sized widths (ngf = ndf) of each model.
QUICK_WIDTHS = {'dcgan': 16, 'resnet': 32, 'biggan': 16}

# `name = type[...` or, for calls that return a tuple (cuDNN), `name = (type[...`.
_DEFINITION = re.compile(r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*\(?([a-z]+[0-9]*)\[')
_CALL = re.compile(r'\s(convolution|custom-call)\((.*?)\)(?:,|$)')
_OPERAND_SPLIT = re.compile(r',\s*(?![^\[{]*[\]}])')   # commas outside [...] and {...}


def hlo_conv_dtypes(hlo_text):
  """Counts the convolutions of an HLO module by their operands' element types.

  Counts `convolution` instructions and cuDNN convolution custom calls (how
  XLA:GPU compiles them), keyed by the element types of the first two operands:
  {'bf16/bf16': n, 'f32/f32': m, ...}. Operand types are read inline when the text
  has them (`f32[8,3]{1,0} %x`), else from the operands' definitions (names are
  unique in a module).
  """
  defined = {}
  lines = hlo_text.splitlines()
  for line in lines:
    match = _DEFINITION.match(line)
    if match:
      defined[match.group(1)] = match.group(2)
  counts = collections.Counter()
  for line in lines:
    call = _CALL.search(line)
    if not call or not _DEFINITION.match(line):
      continue
    if call.group(1) == 'custom-call' and 'cudnn$conv' not in line:
      continue
    types = []
    for operand in _OPERAND_SPLIT.split(call.group(2))[:2]:
      operand = operand.strip()
      inline = re.match(r'([a-z]+[0-9]*)\[', operand)
      types.append(inline.group(1) if inline else
                   defined.get(operand.split()[-1].lstrip('%'), '?'))
    counts['/'.join(types)] += 1
  return dict(counts)


def matmul_rate(size, iterations, device):
  """The device's bf16 matmul rate: TFLOP/s of `iterations` chained size^2 products."""
  keys = jax.random.split(jax.random.key(0))
  a, b = (jax.device_put(jax.random.normal(k, (size, size), jnp.bfloat16), device)
          for k in keys)
  b = (b / size ** 0.5).astype(jnp.bfloat16)   # keeps the chain's scale about constant

  @jax.jit
  def chain(x, w):
    # Each product depends on the last, so XLA cannot hoist it out of the loop.
    body = lambda _, y: jnp.dot(y, w, preferred_element_type=jnp.float32).astype(y.dtype)
    return jax.lax.fori_loop(0, iterations, body, x)

  jax.block_until_ready(chain(a, b))
  start = time.perf_counter()
  jax.block_until_ready(chain(a, b))
  seconds = time.perf_counter() - start
  return dict(size=size, iterations=iterations, seconds=seconds,
              tflops=2 * size ** 3 * iterations / seconds / 1e12)


def _time_runner(runner, seconds, rounds=3):
  """Median it/s and median input-wait share over `rounds` rounds of about
  seconds / rounds each (an odd count, so the median is one round's value)."""
  wall, _, _ = runner.run(1)
  iterations = max(2, int(seconds / rounds / max(wall, 1e-4)))
  speeds, waits = [], []
  for _ in range(rounds):
    wall, waited, _ = runner.run(iterations)
    speeds.append(iterations / wall)
    waits.append(waited / wall)
  return statistics.median(speeds), statistics.median(waits)


def time_step(model, *, dtype, batch, width, seconds, matmul_tflops, device,
              stride2_forms='custom'):
  """One row: the training step of `model` timed on `device`.

  Args:
    model: a throughput-benchmark model ('dcgan', 'resnet', 'sagan', 'biggan' or a config).
    dtype: 'float32' or 'bfloat16' (the model's compute dtype).
    batch, width: global batch and the networks' base width (0: the model's own).
    seconds: how long to time the step after compiling it.
    matmul_tflops: the device's measured bf16 matmul rate, the row's yardstick.
    device: the jax device to run on.
    stride2_forms: `model.stride2_forms` of DCGAN's stride-2 layers ('custom' or 'xla').

  Returns:
    {model, dtype, batch, width, stride2_forms, n_critic, it_per_s, images_per_s,
    input_wait_share (0-1), gflop_per_step, tflops, matmul_fraction (tflops over
    matmul_tflops), compile_s, xla_mem_mb, conv_dtypes_lowered / _compiled (the
    convolution operand dtypes in the HLO before and after XLA's passes)}.
  """
  spec = dict(model=model, variant=dtype, batch=batch, width=width,
              stride2_forms=stride2_forms)
  runner = throughput_runners.JaxRunner(spec, devices=[device])
  try:
    it_per_s, wait = _time_runner(runner, seconds)
    tflops = runner.model_gflop * it_per_s / 1e3
    return dict(
        model=model, dtype=dtype, batch=batch, width=width or None,
        stride2_forms=stride2_forms, n_critic=runner.config.train.n_critic, it_per_s=it_per_s,
        images_per_s=it_per_s * batch, input_wait_share=wait,
        gflop_per_step=runner.model_gflop, tflops=tflops,
        matmul_fraction=tflops / matmul_tflops, compile_s=runner.compile_s,
        xla_mem_mb=runner.xla_mem_mb,
        conv_dtypes_lowered=hlo_conv_dtypes(runner.lowered.as_text(dialect='hlo')),
        conv_dtypes_compiled=hlo_conv_dtypes(runner.step.as_text()))
  finally:
    runner.close()


def largest_power_of_two_batch(model, *, batch, width, max_batch, budget, device,
                               estimate_at_batch=None):
  """The largest power-of-two batch <= max_batch whose float32 step fits `budget` bytes.

  The line through XLA's estimates at `batch` and 2 * batch (a fixed state plus
  memory per example) picks the candidate; compiling at the candidate checks it
  (halving until it fits).

  Args:
    estimate_at_batch: the peak estimate at `batch` in bytes, if already known.

  Returns:
    (batch, the estimate there in bytes).
  """
  def estimate(b):
    config = presets.model_config(model, batch=b, width=width)
    return memory.step_memory(memory.compile_step(config, devices=[device]))['peak']

  small = estimate_at_batch or estimate(batch)
  double = estimate(2 * batch)
  per_example = max(double - small, 1) / batch
  fitting = batch + (budget - small) / per_example
  candidate = batch
  while candidate * 2 <= min(fitting, max_batch):
    candidate *= 2
  peak = small if candidate == batch else estimate(candidate)
  while peak > budget and candidate > 1:
    candidate //= 2
    peak = estimate(candidate)
  return candidate, peak


def inception_rate(batch, seconds):
  """FID Inception features: images/s at `batch` images per call (random weights)."""
  runner = throughput_runners.InceptionRunner({'batch': batch})
  it_per_s, _ = _time_runner(runner, seconds)
  images_per_s = it_per_s * batch
  return dict(batch=batch, images_per_s=images_per_s, compile_s=runner.compile_s,
              fid50k_projected_s=FID_IMAGES / images_per_s)


@dataclasses.dataclass(frozen=True)
class Settings:
  """What the check runs (the flags; `--quick` replaces the sizes by QUICK_SETTINGS)."""
  models: tuple = MODELS
  dtypes: tuple = ('float32', 'bfloat16')
  widths: tuple = ()                  # ((model, ngf = ndf), ...); absent: reference widths
  batch: int = 64
  max_batch: int = 4096
  seconds: float = 4.0
  matmul_size: int = 8192
  matmul_iterations: int = 100
  inception: bool = True
  inception_batch: int = 500
  memory_gb: float = 0.0
  fraction: float = 0.85
  budget_s: float = 270.0
  stride2_forms: tuple = ('custom',)  # DCGAN rows are timed in each

  def __post_init__(self):
    for flag, values in (('--models', self.models), ('--dtypes', self.dtypes),
                         ('--stride2_forms', self.stride2_forms)):
      twice = sorted({v for v in values if list(values).count(v) > 1})
      if twice:
        raise errors.ConfigError(f'{flag} names {", ".join(twice)} twice; name each once.')
    for model in self.models:
      if model not in MODELS:
        raise errors.ConfigError(f'--models: unknown {model!r}; use some of {list(MODELS)}.')
    for dtype in self.dtypes:
      presets.parse_jax_variant(dtype)
    if not self.stride2_forms:
      raise errors.ConfigError("--stride2_forms: name at least one of 'custom', 'xla'.")
    for forms in self.stride2_forms:
      layers.check_stride2_forms(forms)


QUICK_SETTINGS = dict(widths=tuple(QUICK_WIDTHS.items()), batch=8, max_batch=32, seconds=2.0,
                      matmul_size=512, matmul_iterations=8, inception_batch=8)


def quick(settings, *, given=()):
  """`settings` with the sizes of QUICK_SETTINGS (`--quick`), except the fields in
  `given` (flags the user set explicitly, which win)."""
  return dataclasses.replace(settings, **{name: value for name, value in QUICK_SETTINGS.items()
                                          if name not in given})


def _ordered(models, inception):
  """Work items in order of importance: DCGAN, Inception, then the other models."""
  items = [('model', m) for m in models if m == 'dcgan']
  items += [('inception', None)] if inception else []
  return items + [('model', m) for m in models if m != 'dcgan']


class _Rows:
  """The timed rows of a check, each logged as soon as it is measured.

  Logging at once means a run stopped from outside (a device lease's time limit)
  still leaves the rows it finished in its output.
  """

  def __init__(self, settings, *, matmul, device, over_budget, log):
    self.settings, self.matmul, self.device = settings, matmul, device
    self.widths = dict(settings.widths)
    self.over_budget, self.log = over_budget, log
    self.rows, self.skipped = [], []

  def width(self, model):
    """ngf = ndf of `model` in this check (0: the reference width)."""
    return self.widths.get(model, 0)

  def time_all_dtypes(self, model, batch):
    """Times `model` at `batch` in every dtype (and, for DCGAN, every stride-2 form) of
    the settings, or lists the row as skipped."""
    all_forms = self.settings.stride2_forms if model == 'dcgan' else ('custom',)
    for forms in all_forms:
      for dtype in self.settings.dtypes:
        label = f'{model} {dtype} batch {batch}' + ('' if forms == 'custom' else f' {forms}')
        if self.over_budget():
          self.skipped.append(label)
          continue
        row = time_step(model, dtype=dtype, batch=batch,
                        width=self.width(model),
                        seconds=self.settings.seconds, matmul_tflops=self.matmul['tflops'],
                        device=self.device, stride2_forms=forms)
        self.rows.append(row)
        self.log(f'{label}: {row["it_per_s"]:.2f} it/s, {row["tflops"]:.3f} TFLOP/s '
                 f'({100 * row["matmul_fraction"]:.1f}% of matmul)')

  def float32_estimate(self, model, batch):
    """XLA's memory estimate of a float32 row already timed, in bytes (or None)."""
    known = [r['xla_mem_mb'] * 2**20 for r in self.rows
             if r['model'] == model and r['batch'] == batch and r['dtype'] == 'float32'
             and r['stride2_forms'] == 'custom']
    return known[0] if known else None


def _targets(rows, largest, inception, platform_name):
  dcgan = [r for r in rows if r['model'] == 'dcgan' and r['dtype'] == 'bfloat16'
           and r['batch'] == largest.get('dcgan', {}).get('batch')]
  best = max(dcgan, key=lambda r: r['matmul_fraction']) if dcgan else None
  fraction = best['matmul_fraction'] if best else None
  fid_s = inception['fid50k_projected_s'] if inception else None
  return dict(
      applies=platform_name == 'gpu',
      dcgan_bf16_largest_matmul_fraction=fraction,
      dcgan_bf16_largest_stride2_forms=best['stride2_forms'] if best else None,
      dcgan_met=None if fraction is None else fraction >= TARGET_MATMUL_FRACTION,
      fid50k_seconds=fid_s, fid50k_met=None if fid_s is None else fid_s < TARGET_FID50K_SECONDS)


def run_check(settings, log=print):
  """Runs the check (see the module docstring); returns the JSON-serialisable report."""
  start = time.perf_counter()
  over_budget = lambda: time.perf_counter() - start > settings.budget_s
  device = jax.devices()[0]
  budget, source = memory.device_budget(device, settings.memory_gb, settings.fraction)
  matmul = matmul_rate(settings.matmul_size, settings.matmul_iterations, device)
  log(f'bf16 matmul {settings.matmul_size}^2: {matmul["tflops"]:.3f} TFLOP/s')
  timed = _Rows(settings, matmul=matmul, device=device, over_budget=over_budget, log=log)
  largest, inception = {}, None
  items = _ordered(settings.models, settings.inception)
  # Every model at the reference batch first, then the largest batches: finding
  # a largest batch compiles the step at two or three more batches (tens of
  # seconds per model on a GPU), so a short device lease gets every model's
  # reference rows before any of that.
  for kind, model in items:
    if kind == 'model':
      timed.time_all_dtypes(model, settings.batch)
    elif over_budget():
      timed.skipped.append('inception')
    else:
      inception = inception_rate(settings.inception_batch, settings.seconds)
      log(f'inception: {inception["images_per_s"]:.1f} images/s, FID-50k features '
          f'{inception["fid50k_projected_s"]:.0f} s')
  for kind, model in items:
    if kind != 'model':
      continue
    if over_budget():
      timed.skipped.append(f'{model} largest batch')
      continue
    batch, peak = largest_power_of_two_batch(
        model, batch=settings.batch, width=timed.width(model),
        max_batch=settings.max_batch, budget=budget, device=device,
        estimate_at_batch=timed.float32_estimate(model, settings.batch))
    largest[model] = dict(batch=batch, estimate_mb=peak / 2**20)
    log(f'{model}: largest batch {batch} (XLA estimate {peak / 2**20:.0f} MB)')
    if batch != settings.batch:
      timed.time_all_dtypes(model, batch)
  rows, skipped = timed.rows, timed.skipped
  return dict(
      benchmark='device_check', device=device.device_kind, platform=device.platform,
      machine=dict(platform=platform.platform(), cpu_count=os.cpu_count()),
      versions=dict(jax=jax.__version__), settings=dataclasses.asdict(settings),
      memory_budget_mb=budget / 2**20, memory_budget_source=source, matmul=matmul,
      rows=rows, largest_batch=largest, inception=inception, skipped=skipped,
      targets=_targets(rows, largest, inception, device.platform),
      seconds=time.perf_counter() - start)


def markdown_table(report):
  """The report's step rows as a Markdown table, then Inception and the targets."""
  lines = ['| model | dtype | batch | it/s | images/s | GFLOP/step | TFLOP/s | '
           'of bf16 matmul | convs (lowered / compiled) |', '|---|---|---:|---:|---:|---:|'
           '---:|---:|---|']
  for r in report['rows']:
    forms = r['stride2_forms']
    model = r['model'] if forms == 'custom' else f'{r["model"]} ({forms} stride-2 forms)'
    lines.append(
        f'| {model} | {r["dtype"]} | {r["batch"]} | {r["it_per_s"]:.2f} | '
        f'{r["images_per_s"]:.0f} | {r["gflop_per_step"]:.1f} | {r["tflops"]:.3f} | '
        f'{100 * r["matmul_fraction"]:.1f}% | {r["conv_dtypes_lowered"]} / '
        f'{r["conv_dtypes_compiled"]} |')
  inception = report['inception']
  if inception:
    lines.append(f'\nInception (batch {inception["batch"]}): '
                 f'{inception["images_per_s"]:.1f} images/s; FID-50k features '
                 f'{inception["fid50k_projected_s"]:.0f} s projected.')
  lines.append(f'Targets: {report["targets"]}')
  if report['skipped']:
    lines.append(f'Skipped (--budget_s): {report["skipped"]}')
  return '\n'.join(lines)


def _define_flags():
  flags.DEFINE_list('models', ','.join(MODELS), 'Models: dcgan, resnet and/or biggan.')
  flags.DEFINE_list('dtypes', 'float32,bfloat16', 'Compute dtypes.')
  flags.DEFINE_integer('batch', 64, 'Reference batch size.', lower_bound=1)
  flags.DEFINE_integer('max_batch', 4096, 'Cap of the largest batch.', lower_bound=1)
  flags.DEFINE_float('seconds', 4.0, 'Timed seconds per run.', lower_bound=0.01)
  flags.DEFINE_integer('matmul_size', 8192, 'Side of the bf16 matmul.', lower_bound=16)
  flags.DEFINE_integer('matmul_iterations', 100, 'Chained matmuls timed.', lower_bound=1)
  flags.DEFINE_bool('inception', True, 'Time FID Inception feature extraction.')
  flags.DEFINE_integer('inception_batch', 500, 'Images per Inception call.', lower_bound=1)
  flags.DEFINE_float('memory_gb', 0.0, 'Memory budget in GiB (0: the device limit).',
                     lower_bound=0.0)
  flags.DEFINE_float('fraction', 0.85, 'Share of the memory the largest batch may fill.',
                     lower_bound=0.01, upper_bound=1.0)
  flags.DEFINE_float('budget_s', 270.0, 'No run starts after this many seconds.',
                     lower_bound=0.0)
  flags.DEFINE_list('stride2_forms', 'custom',
                    "DCGAN's stride-2 layers (model.stride2_forms): custom and/or xla.")
  flags.DEFINE_bool('quick', False, f'CPU-sized run: {QUICK_SETTINGS}.')
  flags.DEFINE_string('json', '', 'Write the JSON report to this path.')


def main(argv):
  """The `python -m gan_jax.bench.device_check` program (its flags parsed by absl)."""
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}; flags look like --name=value.')
  f = flags.FLAGS
  if f.json:  # checked before the work
    workdir_lib.check_output_file(f.json, flag='--json')
  settings = Settings(
      models=tuple(f.models), dtypes=tuple(f.dtypes), batch=f.batch, max_batch=f.max_batch,
      seconds=f.seconds, matmul_size=f.matmul_size, matmul_iterations=f.matmul_iterations,
      inception=f.inception, inception_batch=f.inception_batch, memory_gb=f.memory_gb,
      fraction=f.fraction, budget_s=f.budget_s, stride2_forms=tuple(f.stride2_forms))
  if f.quick:
    settings = quick(settings, given={name for name in QUICK_SETTINGS
                                      if name in f and f[name].present})
  report = run_check(settings, log=lambda line: print(line, flush=True))
  print(markdown_table(report))
  if f.json:
    report_files.write_json(f.json, report)


if __name__ == '__main__':
  _define_flags()
  cli.run(main, quiet=True)
