"""Data parallelism: the device mesh, shard_map / pmap compilation, multi-host start-up.

The training step is written once, as a per-device function with explicit
collectives over the axis `DATA_AXIS` ('data'). `DataParallel` compiles it either
as `jax.jit(jax.shard_map(...))` over a one-axis mesh of every device of every
process (the default) or with `jax.pmap` over this process's devices, and moves
states and batches in and out in the layout each mode expects:

  * state: replicated on every device (shard_map: a global array with sharding
    `P()`; pmap: a leading axis of local-device size);
  * batch: `f32[n_critic, B, ...]` whose B axis is split over devices
    (shard_map: sharding `P(None, 'data')`, assembled from each process's rows
    with `jax.make_array_from_process_local_data`; pmap: reshaped to
    `[local_devices, n_critic, B / local_devices, ...]`).

`initialize_distributed` starts several processes as one job (explicit
coordinator flags, or `jax.distributed.initialize()` auto-detection on Cloud
TPU and SLURM) so that a missing or dead process ends the run within a bounded
time with an error naming it; `exit_after_failure` makes a process that raised
leave at once rather than hang its peers.
"""

import contextlib
import logging
import os
import socket
import sys
import threading

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'
MODES = ('shard_map', 'pmap')
CPU_CONV_KERNELS = ('eigen', 'xla_default')
DEFAULT_CPU_CONV_KERNELS = 'eigen'

# XLA:CPU (jaxlib 0.10) hands dots, convolutions and reductions to YNNPACK by
# default. Dropping only the convolutions leaves them to XLA's Eigen kernels.
_YNN_WITHOUT_CONVOLUTIONS = 'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE'


def cpu_compiler_options(cpu_conv_kernels=DEFAULT_CPU_CONV_KERNELS):
  """XLA compiler options for a CPU training step.

  Args:
    cpu_conv_kernels: 'eigen' compiles convolutions with XLA's Eigen kernels
      (dots and reductions stay with YNNPACK, as XLA's default); 'xla_default'
      leaves XLA's choice (YNNPACK), and any XLA_FLAGS, untouched.

  Returns:
    A dict for `jax.jit(..., compiler_options=...)` (empty for 'xla_default').
    Measured on a 2-core AVX-512 CPU, DCGAN 64x64 at batch 64
    (`python -m gan_jax.bench.throughput --jax_variants float32,float32/xla_default`):
    with 'eigen' the training step ran 1.21x / 1.66x / 1.14x faster at widths
    16 / 32 / 64; per layer, the strided convolutions ran 1.3-3.4x and their
    weight gradients 1.4-3.6x faster than with YNNPACK's. (Dropping YNNPACK's
    reductions as well made BatchNorm's statistics ~10x slower, so they stay.)

  Raises:
    ValueError: for an unknown `cpu_conv_kernels`.
  """
  if cpu_conv_kernels not in CPU_CONV_KERNELS:
    raise ValueError(f'Unknown config.parallel.cpu_conv_kernels {cpu_conv_kernels!r}; '
                     f'known: {list(CPU_CONV_KERNELS)}.')
  if cpu_conv_kernels == 'xla_default':
    return {}
  return {'xla_cpu_experimental_ynn_fusion_type': _YNN_WITHOUT_CONVOLUTIONS}


def all_cpu(devices):
  """Whether every device in `devices` is a CPU (where `cpu_compiler_options` apply)."""
  return all(d.platform == 'cpu' for d in devices)


def initialize_distributed(*, distributed='off', coordinator_address=None,
                           num_processes=None, process_id=None, timeout_s=120):
  """Starts JAX's multi-controller runtime when asked; a no-op for one process.

  Call before anything else touches JAX devices. Failures end the run within a
  bounded time with an error that names the process at fault:

    * a process that never joins: after `timeout_s` every waiting process
      aborts; JAX's message ends with the ids of the processes that did not
      join (`Some timed out task names:`), and a process that cannot reach
      the coordinator (process 0) says so itself and exits with status 1;
    * a process that dies mid-run: after `timeout_s` without its heartbeat
      every other process aborts with `The following tasks are unhealthy
      (stopped sending heartbeats):` and its id.

  Args:
    distributed: 'off' (single process unless an explicit coordinator is
      given), 'auto' (`jax.distributed.initialize()` with no cluster
      arguments, so Cloud TPU VMs and SLURM are detected by JAX; any of the
      three arguments below that is given overrides detection), or 'explicit'.
    coordinator_address: 'host:port' of process 0 (explicit clusters, tests).
    num_processes: total number of processes.
    process_id: this process's index in [0, num_processes).
    timeout_s: seconds for every process to join after the coordinator
      starts, without a heartbeat before a peer counts as dead, and for the
      shutdown handshake at exit.

  Returns:
    True when the distributed runtime was initialised.

  Raises:
    ValueError: for an explicit cluster with missing or inconsistent flags,
      or 'auto' outside a cluster JAX can detect.
  """
  if distributed not in ('off', 'auto', 'explicit'):
    raise ValueError(
        f"--distributed must be 'off', 'auto' or 'explicit', got {distributed!r}.")
  if distributed == 'off' and coordinator_address is None:
    return False
  if jax.distributed.is_initialized():
    return True
  timeout_s = int(timeout_s)
  if timeout_s < 1:
    raise ValueError(f'--distributed_timeout must be >= 1 second, got {timeout_s}.')
  kwargs = dict(
      # The coordination service gives up on missing processes after
      # timeout_s and names them; the clients wait longer so that this named
      # error, not a bare DEADLINE_EXCEEDED, is what ends a process that
      # started up to timeout_s before process 0.
      initialization_timeout=2 * timeout_s,
      heartbeat_timeout_seconds=timeout_s,
      # A process that finishes (or fails) first waits this long at exit for
      # the others, instead of JAX's default of 300 s.
      shutdown_timeout_seconds=timeout_s)
  if distributed == 'explicit':
    if coordinator_address is None or num_processes is None or process_id is None:
      raise ValueError(
          'An explicit cluster needs --coordinator_address=HOST:PORT, '
          '--num_processes=N and --process_id=I (got '
          f'{coordinator_address!r}, {num_processes!r}, {process_id!r}). '
          'On Cloud TPU or SLURM use --distributed=auto instead.')
    if not 0 <= int(process_id) < int(num_processes):
      raise ValueError(
          f'--process_id={process_id} is outside [0, --num_processes={num_processes}).')
    kwargs.update(coordinator_address=coordinator_address,
                  num_processes=int(num_processes), process_id=int(process_id))
    logging.info('jax.distributed.initialize(%s, num_processes=%s, process_id=%s)',
                 coordinator_address, num_processes, process_id)
  else:
    # JAX detects only what is not given, so flags can override detection.
    given = dict(coordinator_address=coordinator_address, num_processes=num_processes,
                 process_id=process_id)
    kwargs.update({k: v for k, v in given.items() if v is not None})
    logging.info('jax.distributed.initialize() with cluster auto-detection')
  _use_gloo_for_cpu_collectives()
  joined = threading.Event()
  threading.Thread(target=_report_missing_processes, args=(joined, timeout_s),
                   name='gan_jax_join_watchdog', daemon=True).start()
  try:
    with _coordinator_names_missing_processes(timeout_s):
      jax.distributed.initialize(**kwargs)
  except ValueError as e:
    if distributed != 'auto':
      raise
    raise ValueError(
        f'--distributed=auto found no cluster ({e}). It works on Cloud TPU VM '
        'slices and inside SLURM jobs (srun); elsewhere pass '
        '--coordinator_address=HOST:PORT --num_processes=N --process_id=I, or '
        'leave --distributed off for a single process.') from e
  finally:
    joined.set()
  return True


def _use_gloo_for_cpu_collectives():
  """Cross-process CPU collectives need an implementation; gloo ships with jaxlib.

  jax 0.10 defaults to gloo already; older versions had none, so CPU runs of
  several processes could not all-reduce. An explicit choice by the user
  (JAX_CPU_COLLECTIVES_IMPLEMENTATION=mpi) is kept. Only CPU backends read
  this option, so it is harmless on TPU and GPU.
  """
  if os.environ.get('JAX_CPU_COLLECTIVES_IMPLEMENTATION'):
    return
  if jax.config.jax_cpu_collectives_implementation != 'gloo':
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')


@contextlib.contextmanager
def _coordinator_names_missing_processes(timeout_s):
  """Has JAX's coordination service time out registration itself, naming stragglers.

  `jax.distributed.initialize` does not pass the service's
  `cluster_register_timeout`; without it only the clients time out, with a bare
  `DEADLINE_EXCEEDED ... RegisterTask` that names no process. With it, process 0's
  service fails the start-up barrier after `timeout_s` and every waiting process
  aborts with `Some timed out task names:` followed by the missing ids. This
  wraps a private jaxlib function for the duration of the call; if jaxlib
  changes, initialisation goes on without the names.
  """
  try:
    from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top
    module = jax_distributed._jax  # pylint: disable=protected-access
    original = module.get_distributed_runtime_service
  except (ImportError, AttributeError):
    yield
    return

  def service(*args, **kwargs):
    try:
      return original(*args, cluster_register_timeout=timeout_s, **kwargs)
    except TypeError:  # a jaxlib without the argument
      return original(*args, **kwargs)

  module.get_distributed_runtime_service = service
  try:
    yield
  finally:
    module.get_distributed_runtime_service = original


def _report_missing_processes(joined, timeout_s):
  """Watchdog thread of start-up: says who is missing before JAX gives up.

  Shortly before the timeout, a process other than 0 that cannot even open a
  TCP connection to the coordinator knows the missing process is process 0:
  it says so and exits with status 1 (JAX would only retry until its own
  deadline). Otherwise the coordinator is up and JAX's error will list the
  processes that did not join; the log says where to look.
  """
  waited = 0.9 * timeout_s
  if joined.wait(waited):
    return
  state = _jax_distributed_state()
  process_id, num_processes = state.get('process_id'), state.get('num_processes')
  address = state.get('coordinator_address')
  who = f'process {process_id}' + (f' of {num_processes}' if num_processes else '')
  if process_id not in (None, 0) and address and not _reachable(address):
    logging.error(
        'gan_jax: %s cannot reach the coordinator, process 0, at %s after %.0f s '
        '(--distributed_timeout=%d): process 0 is missing (not started, or crashed) '
        'or the address is wrong. Start process 0 with the same --coordinator_address '
        'and --num_processes. Exiting.', who, address, waited, timeout_s)
    _flush_logs()
    os._exit(1)  # pylint: disable=protected-access
  logging.error(
      'gan_jax: %s has waited %.0f s for all processes to join the coordinator at %s; '
      'at --distributed_timeout=%d s the run stops and JAX lists the processes that '
      "never joined after 'Some timed out task names:'. Start them with the same "
      '--coordinator_address and --num_processes and their own --process_id.',
      who, waited, address or '(auto-detected)', timeout_s)
  _flush_logs()


def _jax_distributed_state():
  """What jax.distributed knows about this process so far (may be incomplete)."""
  try:
    from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top
    state = jax_distributed.global_state
  except (ImportError, AttributeError):
    return {}
  return {name: getattr(state, name, None)
          for name in ('process_id', 'num_processes', 'coordinator_address')}


def _reachable(address, timeout_s=3.0):
  """Whether a TCP connection to 'host:port' can be opened."""
  host, _, port = address.rpartition(':')
  try:
    with socket.create_connection((host.strip('[]'), int(port)), timeout=timeout_s):
      return True
  except (OSError, ValueError):
    return False


def _flush_logs():
  for handler in logging.getLogger().handlers:
    handler.flush()
  sys.stderr.flush()


def exit_after_failure(error, *, timeout_s):
  """Ends a failed process of a multi-process run at once (never returns).

  A process that raised while its peers wait in a collective must not go
  through JAX's shutdown handshake: the peers would wait out the shutdown
  timeout and JAX would then blame *them*. Exiting at once stops this
  process's heartbeats, so within `timeout_s` every peer aborts with
  `The following tasks are unhealthy (stopped sending heartbeats):` and
  this process's id.

  Args:
    error: the exception that ended the run (logged with its traceback).
    timeout_s: the heartbeat timeout, for the message.
  """
  logging.error(
      'gan_jax: process %d of %d failed with %s: %s\nExiting now; the other processes '
      'stop within --distributed_timeout=%d s, reporting process %d as unhealthy.',
      jax.process_index(), jax.process_count(), type(error).__name__, error,
      timeout_s, jax.process_index(), exc_info=error)
  _flush_logs()
  os._exit(1)  # pylint: disable=protected-access


def make_mesh(devices=None):
  """A one-axis ('data') mesh over `devices` (default: all devices of all processes).

  Args:
    devices: optional sequence of devices.

  Returns:
    A `jax.sharding.Mesh` with Auto axis types (so shard_map and jit may
    choose layouts), devices of one process contiguous.
  """
  devices = jax.devices() if devices is None else list(devices)
  return jax.make_mesh((len(devices),), (DATA_AXIS,),
                       axis_types=(AxisType.Auto,), devices=devices)


class DataParallel:
  """Compiles a per-device step and moves data in and out for one parallel mode.

  Attributes:
    mesh: the one-axis device mesh (shard_map mode) over all devices.
    mode: 'shard_map' or 'pmap'.
    num_devices: devices taking part (global for shard_map, local for pmap
      on one host; global on many hosts too, since pmap spans all of them).
    compiler_options: XLA options every compiled step gets (CPU only, see
      `cpu_compiler_options`; empty on GPU and TPU).
  """

  def __init__(self, mode='shard_map', devices=None, *,
               cpu_conv_kernels=DEFAULT_CPU_CONV_KERNELS):
    if mode not in MODES:
      raise ValueError(f'Unknown parallel mode {mode!r}; known: {list(MODES)}.')
    self.mode = mode
    self.mesh = make_mesh(devices)
    options = cpu_compiler_options(cpu_conv_kernels)  # validates the name everywhere
    self.compiler_options = options if all_cpu(self.mesh.devices.flat) else {}
    self.num_devices = self.mesh.size
    self.replicated = NamedSharding(self.mesh, P())
    self.batch_sharding = NamedSharding(self.mesh, P(None, DATA_AXIS))
    self.local_devices = [d for d in self.mesh.devices.flat
                          if d.process_index == jax.process_index()]
    # pmap takes arrays whose leading axis is split over its (local) devices.
    self._pmap_sharding = NamedSharding(
        jax.sharding.Mesh(np.array(self.local_devices), ('local',)), P('local'))

  @classmethod
  def from_config(cls, parallel_config, devices=None):
    """The DataParallel of `config.parallel` (mode, cpu_conv_kernels)."""
    return cls(parallel_config.mode, devices,
               cpu_conv_kernels=parallel_config.get('cpu_conv_kernels',
                                                    DEFAULT_CPU_CONV_KERNELS))

  def compile(self, step_fn, *, donate=True):
    """Compiles `step_fn(state, batch, key) -> (state, metrics)` for this mode.

    Args:
      step_fn: the per-device step; uses collectives over DATA_AXIS.
      donate: donate the input state buffers (the caller must not reuse them).

    Returns:
      A function with the same signature operating on states from `put_state`
      and batches from `put_batch`; metrics come back replicated. It has
      `.lower(*args)` like a jitted function.
    """
    donate_argnums = (0,) if donate else ()
    if self.mode == 'pmap':
      pmapped = jax.pmap(step_fn, axis_name=DATA_AXIS, in_axes=(0, 0, None),
                         devices=self.local_devices if jax.process_count() == 1
                         else None,
                         donate_argnums=donate_argnums)
      return _PmapWithOptions(pmapped, self.compiler_options) if self.compiler_options \
          else pmapped
    mapped = jax.shard_map(
        step_fn, mesh=self.mesh,
        in_specs=(P(), P(None, DATA_AXIS), P()), out_specs=(P(), P()),
        check_vma=False)
    return jax.jit(mapped, donate_argnums=donate_argnums,
                   out_shardings=(self.replicated, self.replicated),
                   compiler_options=self.compiler_options or None)

  def put_state(self, state):
    """Places a state (host, single-device or replicated arrays) on every device."""
    if self.mode == 'pmap':
      n = len(self.local_devices)
      return jax.tree.map(
          lambda x: jax.device_put(np.broadcast_to(to_host(x), (n,) + np.shape(x)),
                                   self._pmap_sharding),
          state)
    return jax.tree.map(self._replicate_leaf, state)

  def _replicate_leaf(self, x):
    if isinstance(x, jax.Array) and x.sharding == self.replicated:
      return x
    if not jax.dtypes.issubdtype(getattr(x, 'dtype', np.float32), jax.dtypes.prng_key):
      x = to_host(x)
    if jax.process_count() == 1:
      return jax.device_put(x, self.replicated)
    return jax.make_array_from_process_local_data(self.replicated, x, x.shape)

  def get_state(self, state):
    """The inverse of `put_state`: one copy of the state.

    Returns arrays replicated over the mesh (shard_map; pmap on several
    processes, since orbax and jit there need global arrays, not per-host
    ones) or on this process's first device (pmap on one process).
    """
    if self.mode == 'pmap':
      state = jax.tree.map(lambda x: x[0], state)
      if jax.process_count() > 1:
        state = jax.tree.map(self._replicate_leaf, state)
    return state

  def put_batch(self, local_batch):
    """Builds the global batch from this process's rows.

    Args:
      local_batch: np.float32[n_critic, b_local, ...]: this process's rows of
        every critic iteration; b_local * process_count = global batch B.

    Returns:
      The batch in the layout `compile`'s function expects.
    """
    if self.mode == 'pmap':
      n = len(self.local_devices)
      nc, b = local_batch.shape[:2]
      if b % n:
        raise ValueError(f'Per-process batch {b} is not divisible by {n} local devices.')
      split = local_batch.reshape((nc, n, b // n) + local_batch.shape[2:])
      split = np.moveaxis(split, 1, 0)
      return jax.device_put(split, self._pmap_sharding)
    nc, b = local_batch.shape[:2]
    global_shape = (nc, b * jax.process_count()) + local_batch.shape[2:]
    if global_shape[1] % self.num_devices:
      raise ValueError(
          f'Global batch {global_shape[1]} is not divisible by {self.num_devices} '
          'devices; choose config.train.batch_size as a multiple of the device count.')
    return jax.make_array_from_process_local_data(
        self.batch_sharding, local_batch, global_shape)

  def get_metrics(self, metrics):
    """Fetches a dict of replicated scalar metrics to the host as Python floats."""
    if self.mode == 'pmap':
      metrics = jax.tree.map(lambda x: x[0], metrics)
    return {k: float(to_host(v)) for k, v in metrics.items()}


class _PmapWithOptions:
  """A pmapped function compiled with XLA options (`jax.pmap` takes none itself).

  The first call with new argument shapes lowers and compiles once, with the
  options; later calls run the cached executable.
  """

  def __init__(self, pmapped, compiler_options):
    self._pmapped = pmapped
    self._options = compiler_options
    self._compiled = {}

  def lower(self, *args):
    """Lowers like the pmapped function; `.compile()` of the result uses the options."""
    lowered = self._pmapped.lower(*args)
    compile_with = lowered.compile
    lowered.compile = lambda options=None: compile_with(options or self._options)
    return lowered

  def __call__(self, *args):
    key = jax.tree.map(lambda a: (np.shape(a), getattr(a, 'dtype', type(a))), args)
    key = (jax.tree.structure(args), tuple(jax.tree.leaves(key)))
    if key not in self._compiled:
      self._compiled[key] = self._pmapped.lower(*args).compile(self._options)
    return self._compiled[key](*args)


def to_host(x):
  """Copies an array (of one or many processes) to a numpy array on this host.

  A replicated array of a multi-process run is read from this process's own
  copy (no communication). An array split over processes is gathered from all
  of them, which is a collective: every process must call `to_host` on it.
  """
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    if x.sharding.is_fully_replicated:
      x = x.addressable_data(0)
    else:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      x = multihost_utils.process_allgather(x, tiled=True)
  return np.asarray(jax.device_get(x))


def global_slice(values, axis_name=DATA_AXIS):
  """This device's rows of an array drawn for the whole global batch.

  Drawing noise for the global batch from a replicated key and keeping this
  device's slice makes every device count (1, 8, ...) produce the same numbers.

  Args:
    values: f32[B_global, ...], identical on every device.
    axis_name: the mapped axis the batch is split over.

  Returns:
    f32[B_global / n, ...]: rows [i * B/n, (i+1) * B/n) for device i of n.
  """
  n = jax.lax.psum(1, axis_name)
  local = values.shape[0] // n
  start = jax.lax.axis_index(axis_name) * local
  return jax.lax.dynamic_slice_in_dim(values, start, local, axis=0)


def force_cpu_devices(count):
  """Asks XLA for `count` fake CPU devices; call before JAX touches a device."""
  flags = os.environ.get('XLA_FLAGS', '')
  if '--xla_force_host_platform_device_count' not in flags:
    os.environ['XLA_FLAGS'] = (
        flags + f' --xla_force_host_platform_device_count={count}').strip()
  jax.config.update('jax_num_cpu_devices', count)
