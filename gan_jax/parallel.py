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
"""

import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'
MODES = ('shard_map', 'pmap')


def initialize_distributed(*, distributed='off', coordinator_address=None,
                           num_processes=None, process_id=None,
                           initialization_timeout_s=120,
                           heartbeat_timeout_s=60):
  """Starts JAX's multi-controller runtime when asked; a no-op for one process.

  Args:
    distributed: 'off' (single process unless an explicit coordinator is
      given), 'auto' (`jax.distributed.initialize()` with no arguments, so
      Cloud TPU VMs and SLURM are detected by JAX), or 'explicit'.
    coordinator_address: 'host:port' of process 0 (explicit clusters, tests).
    num_processes: total number of processes.
    process_id: this process's index in [0, num_processes).
    initialization_timeout_s: seconds to wait for every peer to connect before
      failing with an error that names the missing processes.
    heartbeat_timeout_s: seconds without a heartbeat after which a dead peer
      ends the run (the coordination service reports which task died).

  Returns:
    True when the distributed runtime was initialised.

  Raises:
    ValueError: for an explicit cluster with missing or inconsistent flags.
  """
  if distributed not in ('off', 'auto', 'explicit'):
    raise ValueError(
        f"--distributed must be 'off', 'auto' or 'explicit', got {distributed!r}.")
  if distributed == 'off' and coordinator_address is None:
    return False
  timeouts = dict(initialization_timeout=int(initialization_timeout_s),
                  heartbeat_timeout_seconds=int(heartbeat_timeout_s))
  if distributed == 'auto':
    logging.info('jax.distributed.initialize() with cluster auto-detection')
    jax.distributed.initialize(**timeouts)
    return True
  if coordinator_address is None or num_processes is None or process_id is None:
    raise ValueError(
        'An explicit cluster needs --coordinator_address=HOST:PORT, '
        '--num_processes=N and --process_id=I (got '
        f'{coordinator_address!r}, {num_processes!r}, {process_id!r}). '
        'On Cloud TPU or SLURM use --distributed=auto instead.')
  if not 0 <= int(process_id) < int(num_processes):
    raise ValueError(
        f'--process_id={process_id} is outside [0, --num_processes={num_processes}).')
  logging.info('jax.distributed.initialize(%s, num_processes=%s, process_id=%s)',
               coordinator_address, num_processes, process_id)
  jax.distributed.initialize(
      coordinator_address=coordinator_address, num_processes=int(num_processes),
      process_id=int(process_id), **timeouts)
  return True


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
  """

  def __init__(self, mode='shard_map', devices=None):
    if mode not in MODES:
      raise ValueError(f'Unknown parallel mode {mode!r}; known: {list(MODES)}.')
    self.mode = mode
    self.mesh = make_mesh(devices)
    self.num_devices = self.mesh.size
    self.replicated = NamedSharding(self.mesh, P())
    self.batch_sharding = NamedSharding(self.mesh, P(None, DATA_AXIS))
    self.local_devices = [d for d in self.mesh.devices.flat
                          if d.process_index == jax.process_index()]
    # pmap takes arrays whose leading axis is split over its (local) devices.
    self._pmap_sharding = NamedSharding(
        jax.sharding.Mesh(np.array(self.local_devices), ('local',)), P('local'))

  def compile(self, step_fn, *, donate=True):
    """Compiles `step_fn(state, batch, key) -> (state, metrics)` for this mode.

    Args:
      step_fn: the per-device step; uses collectives over DATA_AXIS.
      donate: donate the input state buffers (the caller must not reuse them).

    Returns:
      A function with the same signature operating on states from `put_state`
      and batches from `put_batch`; metrics come back replicated.
    """
    donate_argnums = (0,) if donate else ()
    if self.mode == 'pmap':
      return jax.pmap(step_fn, axis_name=DATA_AXIS, in_axes=(0, 0, None),
                      devices=self.local_devices if jax.process_count() == 1
                      else None,
                      donate_argnums=donate_argnums)
    mapped = jax.shard_map(
        step_fn, mesh=self.mesh,
        in_specs=(P(), P(None, DATA_AXIS), P()), out_specs=(P(), P()),
        check_vma=False)
    return jax.jit(mapped, donate_argnums=donate_argnums,
                   out_shardings=(self.replicated, self.replicated))

  def put_state(self, state):
    """Places a host (or single-device) state on every device, replicated."""
    if self.mode == 'pmap':
      n = len(self.local_devices)
      return jax.tree.map(
          lambda x: jax.device_put(jnp.broadcast_to(x, (n,) + x.shape), self._pmap_sharding),
          state)
    return jax.tree.map(self._replicate_leaf, state)

  def _replicate_leaf(self, x):
    if isinstance(x, jax.Array) and x.sharding == self.replicated:
      return x
    x = np.asarray(jax.device_get(x)) if not jax.dtypes.issubdtype(
        getattr(x, 'dtype', np.float32), jax.dtypes.prng_key) else x
    if jax.process_count() == 1:
      return jax.device_put(x, self.replicated)
    return jax.make_array_from_process_local_data(self.replicated, x, x.shape)

  def get_state(self, state):
    """The inverse of `put_state`: one copy of the state (device arrays, not sharded)."""
    if self.mode == 'pmap':
      return jax.tree.map(lambda x: x[0], state)
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


def to_host(x):
  """Copies a (possibly multi-host replicated) array to a numpy array on this host."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    x = x.addressable_data(0)
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
