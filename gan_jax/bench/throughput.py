"""Training-step throughput of gan_jax against PyTorch eager, plus Inception speed.

COMMAND: python -m gan_jax.bench.throughput --widths 16,32 --batch 64 --json bench.json

What is measured: the DCGAN training iteration of the PyTorch DCGAN example at 64x64
RGB (ngf = ndf = width, z_dim 100, Adam(2e-4, 0.5, 0.999), non-saturating G loss,
BatchNorm in both nets, no EMA), as

  * gan_jax: the real `train.make_train_step` (with `train.reuse_fake`: G runs
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

`--inception` adds the FID InceptionV3 feature extractor
(`metrics.inception.extract_features`, random weights, 64x64 inputs resized to 299)
in images/s. `--profile` prints where gan_jax's step time goes, per XLA op, from a
`jax.profiler` trace of a few steps.
"""

import argparse
import collections
import itertools
import json
import math
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import traceback

import numpy as np

RESOLUTION = 64
CHANNELS = 3
Z_DIM = 100


# ----------------------------------------------------------------------------
# Worker-side helpers (run in child processes)
# ----------------------------------------------------------------------------


def _rss_mb():
  """Current resident set size of this process in MB (Linux /proc; 0 elsewhere)."""
  try:
    with open('/proc/self/status', encoding='ascii') as f:
      for line in f:
        if line.startswith('VmRSS:'):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  return 0.0


def _peak_rss_mb():
  # ru_maxrss is KB on Linux, bytes on macOS.
  scale = 1 / 1024 if sys.platform != 'darwin' else 1 / 2**20
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


JAX_DTYPES = ('float32', 'bfloat16')


def parse_jax_variant(variant):
  """'DTYPE' or 'DTYPE/KERNELS' -> (compute dtype, config.parallel.cpu_conv_kernels).

  Raises:
    ValueError: for an unknown dtype or kernel name.
  """
  from gan_jax import parallel  # pylint: disable=g-import-not-at-top
  dtype, _, kernels = variant.partition('/')
  kernels = kernels or parallel.DEFAULT_CPU_CONV_KERNELS
  if dtype not in JAX_DTYPES or kernels not in parallel.CPU_CONV_KERNELS:
    raise ValueError(
        f'unknown gan_jax variant {variant!r}: use DTYPE or DTYPE/KERNELS with DTYPE in '
        f'{list(JAX_DTYPES)} and KERNELS in {list(parallel.CPU_CONV_KERNELS)}, '
        'e.g. float32 or float32/xla_default')
  return dtype, kernels


def jax_config(width, batch, variant='float32'):
  """The default config at 64x64 RGB with the PyTorch DCGAN example's settings.

  Args:
    width: ngf = ndf.
    batch: global batch size.
    variant: 'DTYPE[/KERNELS]' (see `parse_jax_variant`): the model compute
      dtype ('float32' or 'bfloat16') and, optionally, the CPU convolution
      kernels ('eigen', the default, or 'xla_default').

  Returns:
    A ConfigDict for `train.create_state` / `train.make_train_step`.
  """
  dtype, kernels = parse_jax_variant(variant)
  config = _default_config_module().get_config()
  config.parallel.cpu_conv_kernels = kernels
  config.model.update(dict(resolution=RESOLUTION, channels=CHANNELS, z_dim=Z_DIM,
                           ngf=width, ndf=width, dtype=dtype))
  config.train.batch_size = batch
  config.train.ema_decay = 0.0  # the PyTorch example keeps no EMA
  # The PyTorch example runs G forward once per iteration and its G update
  # back-propagates through that same fake batch: the same algorithm here.
  config.train.reuse_fake = True
  return config


def _default_config_module():
  """configs/default.py of this checkout, loaded by path (works from any cwd)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__)))), 'configs', 'default.py')
  if not os.path.exists(path):
    raise FileNotFoundError(
        f'{path} not found: run the benchmark from a gan_jax checkout '
        '(pip install -e . keeps configs/ next to the package).')
  spec = importlib.util.spec_from_file_location('gan_jax_default_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


class _SyntheticImages:
  """Endless host iterator of pre-made f32[1, B, 64, 64, 3] batches in [-1, 1].

  Has the `get_state` the trainer's prefetcher expects. A few distinct batches are
  cycled so no copy is ever elided, without paying for random numbers per step.
  """

  def __init__(self, batch, seed=0, distinct=4):
    rng = np.random.default_rng(seed)
    self._batches = [
        rng.uniform(-1, 1, (1, batch, RESOLUTION, RESOLUTION, CHANNELS)).astype(np.float32)
        for _ in range(distinct)]
    self._index = 0

  def __iter__(self):
    return self

  def __next__(self):
    self._index += 1
    return self._batches[self._index % len(self._batches)]

  def get_state(self):
    return {'index': self._index}


class _JaxRunner:
  """The real gan_jax training step, compiled once, run for timed rounds."""

  def __init__(self, spec):
    import jax  # pylint: disable=g-import-not-at-top
    from gan_jax import parallel, train  # pylint: disable=g-import-not-at-top
    self._jax = jax
    config = jax_config(spec['width'], spec['batch'], spec['variant'])
    self.dp = parallel.DataParallel.from_config(config.parallel)
    self.state = self.dp.put_state(train.create_state(config, jax.random.key(0)))
    self.key = jax.random.key(1)
    self._prefetch = train._Prefetcher(  # pylint: disable=protected-access
        _SyntheticImages(spec['batch']), self.dp.put_batch, config.data.prefetch)
    batch, _, _ = self._prefetch.get()
    cpu, start = time.process_time(), time.perf_counter()
    self.step = self.dp.compile(train.make_train_step(config)).lower(
        self.state, batch, self.key).compile()
    self.compile_s = time.perf_counter() - start
    self.compile_cpu_s = time.process_time() - cpu
    cost = self.step.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    self.gflop = float(cost.get('flops', float('nan'))) / 1e9
    memory = self.step.memory_analysis()
    self.xla_mem_mb = (memory.argument_size_in_bytes + memory.output_size_in_bytes
                       - memory.alias_size_in_bytes + memory.temp_size_in_bytes) / 2**20
    start = time.perf_counter()
    self.state, _ = self.step(self.state, batch, self.key)
    jax.block_until_ready(self.state)
    self.first_step_s = time.perf_counter() - start

  def run(self, iterations):
    """Runs `iterations` steps; returns (wall s, s waiting for input, CPU s of all threads)."""
    waited = 0.0
    cpu, start = time.process_time(), time.perf_counter()
    for _ in range(iterations):
      batch, _, wait = self._prefetch.get()
      waited += wait
      self.state, _ = self.step(self.state, batch, self.key)
    self._jax.block_until_ready(self.state)
    return time.perf_counter() - start, waited, time.process_time() - cpu

  def profile(self, iterations, top):
    """Per-op share of step time from a jax.profiler trace (see `summarise_trace`)."""
    with tempfile.TemporaryDirectory() as log_dir:
      with self._jax.profiler.trace(log_dir):
        self.run(iterations)
      paths = [os.path.join(root, name) for root, _, names in os.walk(log_dir)
               for name in names if name.endswith('.xplane.pb')]
      return summarise_trace(paths[0], iterations, top) if paths else {}

  def close(self):
    self._prefetch.close()


def summarise_trace(path, iterations, top=15):
  """Groups the XLA:CPU op events of a profiler trace by op kind.

  Args:
    path: a `.xplane.pb` file written by `jax.profiler.trace`.
    iterations: training steps inside the trace (for per-step numbers).
    top: how many of the most expensive individual ops to list.

  Returns:
    {'total_ms_per_step', 'by_kind': [(kind, ms/step, share)], 'top_ops':
    [(name, ms/step, share)]}. Kinds come from the op names XLA gives thunks
    (convolution, fusion, dot, copy, ...), so fused elementwise work shows as fusion.
  """
  import jax  # pylint: disable=g-import-not-at-top
  data = jax.profiler.ProfileData.from_file(path)
  by_op = collections.Counter()
  for plane in data.planes:
    if not plane.name.startswith('/host:CPU'):
      continue
    for line in plane.lines:
      # XLA:CPU runs thunks on the PjRt client's and the Eigen pool's threads; the
      # Python line holds dispatch events that overlap the device work.
      if not line.name.startswith(('tf_XLAPjRtCpuClient', 'tf_XLAEigen')):
        continue
      for event in line.events:
        # Skip runtime bookkeeping ('ThunkExecutor::...', 'end: <op>' markers).
        if '::' in event.name or event.name.startswith('end: '):
          continue
        by_op[event.name] += event.duration_ns
  total = sum(by_op.values())
  if not total:
    return {}

  def kind(name):
    base = name.split('.')[0].rstrip('0123456789_')
    for known in ('convolution', 'ynn_fusion', 'xnn_fusion', 'fusion', 'dot', 'copy',
                  'transpose', 'reduce', 'pad', 'reverse', 'slice', 'concatenate',
                  'broadcast', 'select'):
      if known in base:
        return known
    return base or name

  by_kind = collections.Counter()
  for name, ns in by_op.items():
    by_kind[kind(name)] += ns
  per_step = lambda ns: ns / 1e6 / iterations
  return {
      'total_ms_per_step': per_step(total),
      'by_kind': [(k, per_step(v), v / total) for k, v in by_kind.most_common()],
      'top_ops': [(k, per_step(v), v / total) for k, v in by_op.most_common(top)],
  }


def torch_dcgan(nz, ngf, ndf, nc):
  """The PyTorch DCGAN example's nets (64x64), built with this process's torch.

  Returns:
    (netG, netD) torch modules with the example's N(0, 0.02) / N(1, 0.02) init.
  """
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top

  def up(cin, cout, stride, pad, last=False):
    layers = [nn.ConvTranspose2d(cin, cout, 4, stride, pad, bias=False)]
    return layers + ([nn.Tanh()] if last else [nn.BatchNorm2d(cout), nn.ReLU(True)])

  def down(cin, cout, norm):
    layers = [nn.Conv2d(cin, cout, 4, 2, 1, bias=False)]
    return layers + ([nn.BatchNorm2d(cout)] if norm else []) + [nn.LeakyReLU(0.2, True)]

  net_g = nn.Sequential(*up(nz, ngf * 8, 1, 0), *up(ngf * 8, ngf * 4, 2, 1),
                        *up(ngf * 4, ngf * 2, 2, 1), *up(ngf * 2, ngf, 2, 1),
                        *up(ngf, nc, 2, 1, last=True))
  # The example ends D with a Sigmoid and uses BCELoss; BCEWithLogits on the raw
  # logit is the same loss, computed stably, and matches gan_jax's logits.
  net_d = nn.Sequential(*down(nc, ndf, False), *down(ndf, ndf * 2, True),
                        *down(ndf * 2, ndf * 4, True), *down(ndf * 4, ndf * 8, True),
                        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False))

  def weights_init(m):
    if 'Conv' in type(m).__name__:
      nn.init.normal_(m.weight, 0.0, 0.02)
    elif 'BatchNorm' in type(m).__name__:
      nn.init.normal_(m.weight, 1.0, 0.02)
      nn.init.zeros_(m.bias)

  with torch.no_grad():
    net_g.apply(weights_init)
    net_d.apply(weights_init)
  return net_g, net_d


class _TorchRunner:
  """The PyTorch DCGAN example's iteration in eager mode."""

  def __init__(self, spec):
    import torch  # pylint: disable=g-import-not-at-top
    self._torch = torch
    torch.manual_seed(0)
    batch, width = spec['batch'], spec['width']
    fmt = (torch.channels_last if spec['variant'] == 'channels_last'
           else torch.contiguous_format)
    self.fmt = fmt
    net_g, net_d = torch_dcgan(Z_DIM, width, width, CHANNELS)
    self.net_g = net_g.to(memory_format=fmt)
    self.net_d = net_d.to(memory_format=fmt)
    self.opt_g = torch.optim.Adam(self.net_g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    self.opt_d = torch.optim.Adam(self.net_d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    self.loss = torch.nn.BCEWithLogitsLoss()
    self.ones = torch.ones(batch)
    self.zeros = torch.zeros(batch)
    # NCHW host batches, as a torch DataLoader would yield them.
    self.batches = itertools.cycle(
        [torch.from_numpy(np.ascontiguousarray(next(images)[0].transpose(0, 3, 1, 2)))
         for images in [_SyntheticImages(batch)] for _ in range(4)])
    self.batch = batch
    cpu, start = time.process_time(), time.perf_counter()
    self.run(1)
    self.compile_s = time.perf_counter() - start
    self.compile_cpu_s = time.process_time() - cpu
    self.first_step_s = self.compile_s
    from torch.utils.flop_counter import FlopCounterMode  # pylint: disable=g-import-not-at-top
    counter = FlopCounterMode(display=False)
    with counter:
      self.run(1)
    self.gflop = counter.get_total_flops() / 1e9
    self.xla_mem_mb = None

  def _iteration(self, real):
    torch = self._torch
    real = real.contiguous(memory_format=self.fmt)
    self.net_d.zero_grad()
    err_real = self.loss(self.net_d(real).view(-1), self.ones)
    err_real.backward()
    noise = torch.randn(self.batch, Z_DIM, 1, 1)
    fake = self.net_g(noise)
    err_fake = self.loss(self.net_d(fake.detach()).view(-1), self.zeros)
    err_fake.backward()
    self.opt_d.step()
    self.net_g.zero_grad()
    err_g = self.loss(self.net_d(fake).view(-1), self.ones)
    err_g.backward()
    self.opt_g.step()

  def run(self, iterations):
    waited = 0.0
    cpu, start = time.process_time(), time.perf_counter()
    for _ in range(iterations):
      t = time.perf_counter()
      real = next(self.batches)
      waited += time.perf_counter() - t
      self._iteration(real)
    return time.perf_counter() - start, waited, time.process_time() - cpu

  def profile(self, iterations, top):
    del iterations, top
    return {}

  def close(self):
    pass


class _InceptionRunner:
  """FID InceptionV3 feature extraction (random weights) on 64x64 inputs."""

  def __init__(self, spec):
    import jax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    from gan_jax.metrics import inception  # pylint: disable=g-import-not-at-top
    self._inception = inception
    shapes = jax.eval_shape(lambda: inception.FIDInceptionV3().init(
        jax.random.key(0), jnp.zeros((1, 299, 299, 3), jnp.float32)))
    rng = np.random.default_rng(0)

    def random_leaf(path, leaf):
      name = jax.tree_util.keystr(path)
      if 'var' in name or 'scale' in name:
        return np.ones(leaf.shape, np.float32)
      if 'mean' in name or 'bias' in name:
        return np.zeros(leaf.shape, np.float32)
      fan_in = math.prod(leaf.shape[:-1]) or 1
      return (rng.standard_normal(leaf.shape) / math.sqrt(fan_in)).astype(np.float32)

    # On the device once, as the evaluator holds them; not re-sent every call.
    self.variables = jax.device_put(jax.tree_util.tree_map_with_path(random_leaf, shapes))
    self.batch = spec['batch']
    self.images = rng.uniform(-1, 1, (self.batch, RESOLUTION, RESOLUTION, CHANNELS)).astype(
        np.float32)
    cpu, start = time.process_time(), time.perf_counter()
    self.run(1)
    self.compile_s = time.perf_counter() - start
    self.compile_cpu_s = time.process_time() - cpu
    self.first_step_s = self.compile_s
    self.gflop = float('nan')
    self.xla_mem_mb = None

  def run(self, iterations):
    cpu, start = time.process_time(), time.perf_counter()
    for _ in range(iterations):
      self._inception.extract_features(self.variables, self.images, batch_size=self.batch)
    return time.perf_counter() - start, 0.0, time.process_time() - cpu

  def profile(self, iterations, top):
    del iterations, top
    return {}

  def close(self):
    pass


_RUNNERS = {'gan_jax': _JaxRunner, 'torch': _TorchRunner, 'inception': _InceptionRunner}


def _worker(conn, spec):
  """Child process: builds one runner, then serves ('run', n) / ('profile', ...) / ('stop',)."""
  try:
    if spec.get('xla_flags'):
      os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' '
                                 + spec['xla_flags']).strip()
    # Import the framework (and start XLA's CPU client) before the memory baseline,
    # so peak memory counts the model, its buffers and compilation, not libraries.
    if spec['framework'] == 'torch':
      import torch  # pylint: disable=g-import-not-at-top,unused-import
    else:
      import jax  # pylint: disable=g-import-not-at-top
      jax.devices()
    base_mb = _rss_mb()
    runner = _RUNNERS[spec['framework']](spec)
    conn.send(('ready', dict(compile_s=runner.compile_s, compile_cpu_s=runner.compile_cpu_s,
                             first_step_s=runner.first_step_s,
                             gflop=runner.gflop, xla_mem_mb=runner.xla_mem_mb)))
    while True:
      command, *args = conn.recv()
      if command == 'run':
        conn.send(('ok', runner.run(*args)))
      elif command == 'profile':
        conn.send(('ok', runner.profile(*args)))
      else:
        runner.close()
        conn.send(('ok', dict(peak_mem_mb=_peak_rss_mb() - base_mb)))
        return
  except Exception:  # pylint: disable=broad-except
    conn.send(('error', traceback.format_exc()))


class _Worker:
  """Parent-side handle of one worker process."""

  def __init__(self, spec):
    self.spec = spec
    context = multiprocessing.get_context('spawn')
    self._conn, child = context.Pipe()
    # One XLA device per worker: the harness must not inherit a test's fake
    # multi-device flag, which would split the batch over "devices" on 2 cores.
    flags = ' '.join(f for f in os.environ.get('XLA_FLAGS', '').split()
                     if not f.startswith('--xla_force_host_platform_device_count'))
    saved = dict(os.environ)
    os.environ['XLA_FLAGS'] = flags
    # A CPU benchmark (the baseline is PyTorch on CPU), also on a machine with a GPU.
    os.environ['JAX_PLATFORMS'] = 'cpu'
    try:
      self._process = context.Process(target=_worker, args=(child, spec), daemon=True)
      self._process.start()
    finally:
      os.environ.clear()
      os.environ.update(saved)
    self.info = self._receive()

  def _receive(self):
    # Poll so that a worker that dies without replying (killed for memory, a
    # crash in native code) is reported instead of blocking forever.
    while not self._conn.poll(1.0):
      if not self._process.is_alive():
        raise RuntimeError(
            f'{self.spec["framework"]} worker exited with code {self._process.exitcode} '
            'without a reply (out of memory?).')
    status, payload = self._conn.recv()
    if status == 'error':
      self._process.join(timeout=10)
      raise RuntimeError(f'{self.spec["framework"]} worker failed:\n{payload}')
    return payload

  def call(self, *command):
    self._conn.send(command)
    return self._receive()

  def stop(self):
    result = self.call('stop')
    self._process.join(timeout=30)
    return result

  def kill(self):
    self._process.kill()


# ----------------------------------------------------------------------------
# The harness
# ----------------------------------------------------------------------------


def torch_available():
  """True when `import torch` would work (checked without importing it here)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
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
      framework=spec['framework'], variant=spec['variant'], width=spec.get('width'),
      batch=batch, it_per_s=median, it_per_s_min=min(speeds), it_per_s_max=max(speeds),
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
      workers.append(_Worker(spec))
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
  """Runs every width (and Inception) and returns the JSON-serialisable report."""
  import jax  # pylint: disable=g-import-not-at-top
  rows, profiles, ratios = [], {}, {}
  have_torch = args.torch and torch_available()
  if args.torch and not have_torch:
    _log('torch is not installed: no PyTorch baseline (pip install torch==2.13.0)')
  for width in args.widths:
    specs = [dict(framework='gan_jax', variant=v, width=width, batch=args.batch,
                  xla_flags=args.xla_flags) for v in args.jax_variants]
    if have_torch:
      specs += [dict(framework='torch', variant=v, width=width, batch=args.batch)
                for v in args.torch_variants]
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
    inception_args = argparse.Namespace(**{**vars(args), 'rounds': min(args.rounds, 3)})
    inception_rows, _ = _run_group(
        [dict(framework='inception', variant='float32', batch=args.inception_batch,
              xla_flags=args.xla_flags)], inception_args)
    rows += inception_rows
  torch_version = None
  if have_torch:
    import importlib.metadata  # pylint: disable=g-import-not-at-top
    torch_version = importlib.metadata.version('torch')
  return dict(
      benchmark='dcgan_64px_train_iteration',
      machine=dict(platform=platform.platform(), processor=platform.processor(),
                   cpu_count=os.cpu_count(),
                   load_avg_1m=os.getloadavg()[0] if hasattr(os, 'getloadavg') else None),
      versions=dict(jax=jax.__version__, torch=torch_version, python=platform.python_version()),
      settings=dict(batch=args.batch, rounds=args.rounds, round_seconds=args.round_seconds,
                    xla_flags=args.xla_flags, resolution=RESOLUTION, channels=CHANNELS,
                    z_dim=Z_DIM),
      rows=rows, ratio_vs_torch_eager=ratios, profile=profiles)


def markdown_table(report):
  """The report's rows as a Markdown table (one line per row)."""
  lines = ['| framework | variant | width | it/s (median) | min-max | images/s | '
           'compile s (CPU s) | peak MB | GFLOP/it | CPU s/it | input wait |',
           '|---|---|---|---|---|---|---|---|---|---|---|']
  for r in report['rows']:
    width = '-' if r['width'] is None else r['width']
    gflop = '-' if r['gflop_per_iter'] != r['gflop_per_iter'] else f'{r["gflop_per_iter"]:.1f}'
    lines.append(
        f'| {r["framework"]} | {r["variant"]} | {width} | {r["it_per_s"]:.2f} | '
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


def parse_args(argv=None):
  """Command-line arguments (see --help)."""
  parser = argparse.ArgumentParser(
      description='DCGAN 64px training-step throughput: gan_jax vs PyTorch eager.')
  parser.add_argument('--widths', default='16,32,64', help='comma list of ngf = ndf')
  parser.add_argument('--batch', type=int, default=64, help='batch size')
  parser.add_argument('--rounds', type=int, default=5, help='interleaved timed rounds')
  parser.add_argument('--round_seconds', type=float, default=3.0,
                      help='target length of one timed round per worker')
  parser.add_argument('--min_iters', type=int, default=1,
                      help='fewest iterations in one timed round')
  parser.add_argument('--jax_variants', default='float32',
                      help='comma list of gan_jax variants DTYPE[/KERNELS]: float32, '
                           'bfloat16, and e.g. float32/xla_default for XLA\'s default '
                           '(YNNPACK) CPU convolution kernels instead of Eigen')
  parser.add_argument('--torch_variants', default='eager,channels_last',
                      help='comma list of PyTorch variants: eager, channels_last')
  parser.add_argument('--no_torch', dest='torch', action='store_false',
                      help='skip the PyTorch baseline even when torch is installed')
  parser.add_argument('--inception', action='store_true',
                      help='also time FID Inception feature extraction (images/s)')
  parser.add_argument('--inception_batch', type=int, default=16,
                      help='images per Inception extract_features call')
  parser.add_argument('--profile', type=int, default=0, metavar='STEPS',
                      help='trace STEPS gan_jax steps and print per-op time')
  parser.add_argument('--xla_flags', default='',
                      help='extra XLA_FLAGS for the gan_jax workers only')
  parser.add_argument('--json', default='', help='write the JSON report to this path')
  args = parser.parse_args(argv)
  args.widths = [int(w) for w in args.widths.split(',') if w]
  args.jax_variants = [v for v in args.jax_variants.split(',') if v]
  args.torch_variants = [v for v in args.torch_variants.split(',') if v]
  for variant in args.jax_variants:
    try:
      parse_jax_variant(variant)
    except ValueError as e:
      parser.error(f'--jax_variants: {e}')
  for variant in args.torch_variants:
    if variant not in ('eager', 'channels_last'):
      parser.error(f'--torch_variants: unknown {variant!r}; use eager and/or channels_last')
  return args


def main(argv=None):
  """Runs the benchmark, prints the table (and profile), writes JSON; returns the report."""
  args = parse_args(argv)
  report = run_benchmark(args)
  print(markdown_table(report))
  for key, profile in report['profile'].items():
    print(f'\nprofile gan_jax {key}:\n{format_profile(profile)}')
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, 'w', encoding='utf-8') as f:
      json.dump(report, f, indent=1)
  return report


if __name__ == '__main__':
  main()
