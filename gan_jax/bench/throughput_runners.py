"""What the throughput benchmark times, each in its own worker process.

  JaxRunner        the real gan_jax training step (`step.make_train_step`,
                   compiled by `parallel.DataParallel`, fed by `data.Prefetcher`)
                   of any benchmark model (`presets.model_config`)
  TorchRunner      the PyTorch DCGAN example's iteration in eager mode
  InceptionRunner  FID InceptionV3 feature extraction (random weights)

Every runner has `run(iterations) -> (wall s, s waiting for input, CPU s)`,
`profile(iterations, top)`, `close()` and the start-up numbers `compile_s`,
`compile_cpu_s`, `first_step_s`, `gflop`, `xla_mem_mb`.
"""

import collections
import itertools
import math
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import data
from gan_jax import models
from gan_jax import parallel
from gan_jax import state as state_lib
from gan_jax import step as step_lib
from gan_jax.bench import memory
from gan_jax.bench import presets
from gan_jax.metrics import inception
from gan_jax.metrics import inception_net


class SyntheticImages:
  """Endless host iterator of pre-made batches, as the trainer's data iterator yields them.

  {'images': f32[n_critic, B, *shape] in [-1, 1]} (and 'labels' int32[n_critic, B]
  when `num_classes` > 0), with the `get_state` the trainer's prefetcher expects.
  A few distinct batches are cycled so no copy is ever elided, without paying for
  random numbers per step.
  """

  def __init__(self, batch, seed=0, distinct=4, *, shape=None, n_critic=1, num_classes=0):
    rng = np.random.default_rng(seed)
    lead = (n_critic, batch)
    shape = shape or (presets.RESOLUTION, presets.RESOLUTION, presets.CHANNELS)

    def make():
      example = {'images': rng.uniform(-1, 1, lead + tuple(shape)).astype(np.float32)}
      if num_classes:
        example['labels'] = rng.integers(0, num_classes, lead).astype(np.int32)
      return example

    self._batches = [make() for _ in range(distinct)]
    self._index = 0

  def __iter__(self):
    return self

  def __next__(self):
    self._index += 1
    return self._batches[self._index % len(self._batches)]

  def get_state(self):
    """The position in the cycle of batches, as a grain iterator's state."""
    return {'index': self._index}


def _flops(cost):
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float((cost or {}).get('flops', float('nan')))


def step_gflop(config):
  """GFLOPs of one training step of `config` as written, counted on the CPU backend.

  XLA's cost analysis of the step lowered for one CPU device with abstract inputs
  (`memory.lower_step`: nothing is allocated or compiled): the step at the global
  batch `config.train.batch_size` with its `n_critic` D updates. XLA:GPU returned
  no count for the lowered step (JAX 0.11.2 on an H200), so runners on other
  platforms take the count from here; the program is the same on every platform.
  The step is counted with the custom stride-2 forms whatever `model.stride2_forms`
  says: the arithmetic is the same, and XLA counts the textbook (input-dilated)
  forms' FLOPs differently, so both forms are credited the same work.
  Returns a float (GFLOP per step; NaN when XLA reports none).
  """
  if config.model.stride2_forms != 'custom':
    config = config.copy_and_resolve_references()
    config.model.stride2_forms = 'custom'
  lowered = memory.lower_step(config, devices=jax.devices('cpu')[:1])
  return _flops(lowered.cost_analysis()) / 1e9


class JaxRunner:
  """The real gan_jax training step, compiled once, run for timed rounds.

  `spec`: {'model' (default 'dcgan'), 'width', 'batch', 'variant', 'stride2_forms'
  (default 'custom'; `model.stride2_forms`)}; `devices`: the devices to run on
  (default: all; the workers have one CPU device each). `model_gflop` counts the
  step as written (XLA's cost analysis before optimisation, the same on every
  platform; `step_gflop` where the platform reports none or the step uses XLA's
  stride-2 forms, so both forms are credited the same work); `gflop` after
  optimisation.
  """

  def __init__(self, spec, devices=None):
    config = presets.model_config(spec.get('model', 'dcgan'), batch=spec['batch'],
                                  variant=spec['variant'], width=spec['width'] or 0)
    config.model.stride2_forms = spec.get('stride2_forms', 'custom')
    self.config = config
    self.dp = parallel.DataParallel.from_config(config.parallel, devices, remat=config.train.remat)
    self.state = self.dp.put_state(state_lib.create_state(config, jax.random.key(0)))
    self.key = jax.random.key(1)
    self._prefetch = data.Prefetcher(
        SyntheticImages(spec['batch'], shape=models.data_shape(config.model),
                        n_critic=config.train.n_critic, num_classes=config.model.num_classes),
        self.dp.put_batch, config.data.prefetch)
    batch, _, _ = self._prefetch.get()
    cpu, start = time.process_time(), time.perf_counter()
    self.lowered = self.dp.compile(step_lib.make_train_step(config)).lower(
        self.state, batch, self.key)
    self.step = self.lowered.compile()
    self.compile_s = time.perf_counter() - start
    self.compile_cpu_s = time.process_time() - cpu
    own = (_flops(self.lowered.cost_analysis()) / 1e9
           if config.model.stride2_forms == 'custom' else math.nan)
    self.model_gflop = step_gflop(config) if math.isnan(own) else own
    self.gflop = _flops(self.step.cost_analysis()) / 1e9
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
    jax.block_until_ready(self.state)
    return time.perf_counter() - start, waited, time.process_time() - cpu

  def profile(self, iterations, top):
    """Per-op share of step time from a jax.profiler trace (see `summarise_trace`)."""
    with tempfile.TemporaryDirectory() as log_dir:
      with jax.profiler.trace(log_dir):
        self.run(iterations)
      paths = [os.path.join(root, name) for root, _, names in os.walk(log_dir)
               for name in names if name.endswith('.xplane.pb')]
      return summarise_trace(paths[0], iterations, top) if paths else {}

  def close(self):
    """Stops the input prefetch thread."""
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
  profile = jax.profiler.ProfileData.from_file(path)
  by_op = collections.Counter()
  for plane in profile.planes:
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


class TorchRunner:
  """The PyTorch DCGAN example's iteration in eager mode."""

  def __init__(self, spec):
    import torch  # pylint: disable=g-import-not-at-top
    self._torch = torch
    torch.manual_seed(0)
    batch, width = spec['batch'], spec['width']
    fmt = (torch.channels_last if spec['variant'] == 'channels_last'
           else torch.contiguous_format)
    self.fmt = fmt
    net_g, net_d = torch_dcgan(presets.Z_DIM, width, width, presets.CHANNELS)
    # The comparison is only fair between the same networks; CI has no torch, so the
    # baseline checks itself here, against the counts tests derive by hand for gan_jax.
    torch_counts = tuple(sum(p.numel() for p in net.parameters()) for net in (net_g, net_d))
    jax_counts = models.count_params(presets.jax_config(width, batch).model)
    if torch_counts != jax_counts:
      raise RuntimeError(f'the PyTorch baseline has {torch_counts} (G, D) parameters and '
                         f"gan_jax's network {jax_counts}: the two no longer match")
    self.net_g = net_g.to(memory_format=fmt)
    self.net_d = net_d.to(memory_format=fmt)
    self.opt_g = torch.optim.Adam(self.net_g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    self.opt_d = torch.optim.Adam(self.net_d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    self.loss = torch.nn.BCEWithLogitsLoss()
    self.ones = torch.ones(batch)
    self.zeros = torch.zeros(batch)
    # NCHW host batches, as a torch DataLoader would yield them.
    self.batches = itertools.cycle(
        [torch.from_numpy(np.ascontiguousarray(next(images)['images'][0].transpose(0, 3, 1, 2)))
         for images in [SyntheticImages(batch)] for _ in range(4)])
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
    noise = torch.randn(self.batch, presets.Z_DIM, 1, 1)
    fake = self.net_g(noise)
    err_fake = self.loss(self.net_d(fake.detach()).view(-1), self.zeros)
    err_fake.backward()
    self.opt_d.step()
    self.net_g.zero_grad()
    err_g = self.loss(self.net_d(fake).view(-1), self.ones)
    err_g.backward()
    self.opt_g.step()

  def run(self, iterations):
    """Runs `iterations` steps; returns (wall s, s waiting for input, CPU s of all threads)."""
    waited = 0.0
    cpu, start = time.process_time(), time.perf_counter()
    for _ in range(iterations):
      t = time.perf_counter()
      real = next(self.batches)
      waited += time.perf_counter() - t
      self._iteration(real)
    return time.perf_counter() - start, waited, time.process_time() - cpu

  def profile(self, iterations, top):
    """No per-op profile for this runner: returns {}."""
    del iterations, top
    return {}

  def close(self):
    """Nothing to release."""


class InceptionRunner:
  """FID InceptionV3 feature extraction (random weights) on 64x64 inputs."""

  def __init__(self, spec):
    shapes = jax.eval_shape(lambda: inception_net.FIDInceptionV3().init(
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
    side = presets.RESOLUTION
    self.images = rng.uniform(-1, 1, (self.batch, side, side, presets.CHANNELS)).astype(
        np.float32)
    cpu, start = time.process_time(), time.perf_counter()
    self.run(1)
    self.compile_s = time.perf_counter() - start
    self.compile_cpu_s = time.process_time() - cpu
    self.first_step_s = self.compile_s
    self.gflop = float('nan')
    self.xla_mem_mb = None

  def run(self, iterations):
    """Extracts features of the batch `iterations` times; returns (wall s, 0, CPU s)."""
    cpu, start = time.process_time(), time.perf_counter()
    for _ in range(iterations):
      inception.extract_features(self.variables, self.images, batch_size=self.batch)
    return time.perf_counter() - start, 0.0, time.process_time() - cpu

  def profile(self, iterations, top):
    """No per-op profile for this runner: returns {}."""
    del iterations, top
    return {}

  def close(self):
    """Nothing to release."""


RUNNERS = {'gan_jax': JaxRunner, 'torch': TorchRunner, 'inception': InceptionRunner}
