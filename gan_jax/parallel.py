"""Data parallelism: the device mesh, shard_map / pmap compilation, data in and out.

The training step is written once, as a per-device function with explicit
collectives over the axis `DATA_AXIS` ('data'). `DataParallel` compiles it either
as `jax.jit(jax.shard_map(...))` over a one-axis mesh of every device of every
process (the default) or with `jax.pmap` over this process's devices, and moves
states and batches in and out in the layout each mode expects:

  * state: replicated on every device (shard_map: a global array with sharding
    `P()`; pmap: a leading axis of local-device size);
  * batch: a dict of arrays `[n_critic, B, ...]` ('images', and 'labels' for
    conditional models) whose B axis is split over devices (shard_map: sharding
    `P(None, 'data')`, assembled from each process's rows with
    `jax.make_array_from_process_local_data`; pmap: reshaped to
    `[local_devices, n_critic, B / local_devices, ...]`).

Multi-host start-up (`jax.distributed.initialize`) lives in `gan_jax.distributed`.
"""

from absl import logging
import jax
from jax.experimental import multihost_utils
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
import numpy as np

from gan_jax import errors

DATA_AXIS = 'data'
MODES = ('shard_map', 'pmap')
CPU_CONV_KERNELS = ('eigen', 'xla_default')
DEFAULT_CPU_CONV_KERNELS = 'eigen'

# XLA:CPU (jaxlib 0.10) hands dots, convolutions and reductions to YNNPACK by
# default. Dropping only the convolutions leaves them to XLA's Eigen kernels.
_YNN_WITHOUT_CONVOLUTIONS = 'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE'


# XLA:CPU drops the optimisation barriers of `jax.checkpoint` before its CSE pass,
# which then merges the recomputation with the forward pass: rematerialisation
# saves nothing on CPU unless that pass is skipped (XLA:GPU expands the barriers
# after scheduling). Harmless for programs without barriers.
CPU_REMAT_COMPILER_OPTIONS = {'xla_disable_hlo_passes': 'cse_barrier_expander'}


def check_mode(mode):
  """Returns `mode` if it is one of MODES ('shard_map', 'pmap'), else ConfigError."""
  if mode not in MODES:
    raise errors.ConfigError(f'Unknown config.parallel.mode {mode!r}; known: {list(MODES)}.')
  return mode


def cpu_compiler_options(cpu_conv_kernels=DEFAULT_CPU_CONV_KERNELS, *, remat=False):
  """XLA compiler options for a CPU training step.

  Args:
    cpu_conv_kernels: 'eigen' compiles convolutions with XLA's Eigen kernels
      (dots and reductions stay with YNNPACK, as XLA's default); 'xla_default'
      leaves XLA's choice (YNNPACK), and any XLA_FLAGS, untouched.
    remat: the step rematerialises (`config.train.remat`): keep its
      recomputation apart from the forward pass (`CPU_REMAT_COMPILER_OPTIONS`).

  Returns:
    A dict for `jax.jit(..., compiler_options=...)` (empty for 'xla_default'
    without remat).
    Eigen's kernels run DCGAN's strided convolutions and their weight gradients
    faster on CPU (docs/performance.md); YNNPACK keeps the reductions, which
    BatchNorm's statistics need to stay fast.

  Raises:
    ConfigError: for an unknown `cpu_conv_kernels`.
  """
  if cpu_conv_kernels not in CPU_CONV_KERNELS:
    raise errors.ConfigError(
        f'Unknown config.parallel.cpu_conv_kernels {cpu_conv_kernels!r}; '
        f'known: {list(CPU_CONV_KERNELS)}.')
  options = dict(CPU_REMAT_COMPILER_OPTIONS) if remat else {}
  if cpu_conv_kernels == 'eigen':
    options['xla_cpu_experimental_ynn_fusion_type'] = _YNN_WITHOUT_CONVOLUTIONS
  return options


def all_cpu(devices):
  """Whether every device in `devices` is a CPU (where `cpu_compiler_options` apply)."""
  return all(d.platform == 'cpu' for d in devices)


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


def check_global_batch(global_batch, num_devices, num_processes):
  """A ConfigError unless `global_batch` is a positive multiple of the number of
  devices and of processes (each device and process gets an equal share)."""
  if global_batch < 1 or global_batch % num_devices or global_batch % num_processes:
    raise errors.ConfigError(
        f'config.train.batch_size={global_batch} must be a positive multiple of the '
        f'number of devices ({num_devices}) and processes ({num_processes}).')


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
               cpu_conv_kernels=DEFAULT_CPU_CONV_KERNELS, remat=False):
    self.mode = check_mode(mode)
    self.mesh = make_mesh(devices)
    options = cpu_compiler_options(cpu_conv_kernels, remat=remat)  # validates the name
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
  def from_config(cls, parallel_config, devices=None, *, remat=False):
    """The DataParallel of `config.parallel` (mode, cpu_conv_kernels); `remat`: `config.train.remat`."""
    return cls(parallel_config.mode, devices,
               cpu_conv_kernels=parallel_config.cpu_conv_kernels, remat=remat)

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
      if not self.compiler_options:
        return pmapped
      if jax.process_count() > 1:
        # A pmap lowered by hand compiles for the global arrays while each process
        # passes its own: it runs only as jax.pmap itself calls it.
        remat = set(CPU_REMAT_COMPILER_OPTIONS) <= set(self.compiler_options)
        # Without its option XLA:CPU merges remat's recomputation back into the forward
        # pass: the run trains the same, but without the memory remat is for.
        (logging.warning if remat else logging.info)(
            'parallel.mode=pmap on %d processes: compiled without the XLA options %s%s '
            '(parallel.mode=shard_map uses them).', jax.process_count(),
            self.compiler_options, ', so train.remat saves no memory on CPU' if remat else '')
        return pmapped
      return _PmapWithOptions(pmapped, self.compiler_options)
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
      state = jax.tree.map(_first_copy, state)
      if jax.process_count() > 1:
        state = jax.tree.map(self._replicate_leaf, state)
    return state

  def local_batch_size(self, global_batch):
    """This process's share of a global batch, after checking it divides evenly.

    Raises:
      ConfigError: when `global_batch` is not a positive multiple of the number
        of devices and of processes.
    """
    check_global_batch(global_batch, self.num_devices, jax.process_count())
    return global_batch // jax.process_count()

  def put_batch(self, local_batch):
    """Builds the global batch from this process's rows.

    Args:
      local_batch: a dict of arrays [n_critic, b_local, ...] ('images', 'labels'):
        this process's rows of every critic iteration; b_local * process_count
        = global batch B.

    Returns:
      The same dict in the layout `compile`'s function expects.
    """
    return {name: self._put_batch_array(value) for name, value in local_batch.items()}

  def _put_batch_array(self, local_batch):
    nc, b = local_batch.shape[:2]
    if self.mode == 'pmap':
      n = len(self.local_devices)
      split = local_batch.reshape((nc, n, b // n) + local_batch.shape[2:])
      return jax.device_put(np.moveaxis(split, 1, 0), self._pmap_sharding)
    global_shape = (nc, b * jax.process_count()) + local_batch.shape[2:]
    return jax.make_array_from_process_local_data(
        self.batch_sharding, local_batch, global_shape)

  def get_metrics(self, metrics):
    """Fetches a dict of replicated scalar metrics to the host as Python floats."""
    if self.mode == 'pmap':
      metrics = jax.tree.map(_first_copy, metrics)
    return {k: float(to_host(v)) for k, v in metrics.items()}


def _first_copy(x):
  """The first device's copy of a pmap output x[n_devices, ...], read off its shard:
  indexing the mapped array (x[0]) would compile a gather over every device."""
  return x.addressable_shards[0].data.reshape(x.shape[1:])


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


def from_process_zero(values):
  """Process 0's tuple of ints (bools count as 0 / 1), on every process, so that all
  act alike on what each judged from its own view (a shared file system may show
  another process an older listing): processes that acted differently would wait on
  each other in a collective until the heartbeat timeout. A collective: every process
  calls it at the same point."""
  if jax.process_count() == 1:
    return tuple(int(v) for v in values)
  return tuple(int(v) for v in multihost_utils.broadcast_one_to_all(np.asarray(values, np.int32)))


def to_host(x):
  """Copies an array (of one or many processes) to a numpy array on this host, of
  x's global shape and dtype.

  A replicated array of a multi-process run is read from this process's own
  copy (no communication). An array split over processes is gathered from all
  of them, which is a collective: every process must call `to_host` on it.
  """
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    if x.sharding.is_fully_replicated:
      x = x.addressable_data(0)
    else:
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
