"""Multi-host start-up: several processes joined into one JAX job, and failing fast.

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
import time

import jax

from gan_jax import errors


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
    ConfigError: for an explicit cluster with missing or inconsistent flags,
      or 'auto' outside a cluster JAX can detect.
  """
  if distributed not in ('off', 'auto', 'explicit'):
    raise errors.ConfigError(
        f"--distributed must be 'off', 'auto' or 'explicit', got {distributed!r}.")
  if distributed == 'off' and coordinator_address is None:
    return False
  if jax.distributed.is_initialized():
    return True
  timeout_s = int(timeout_s)
  if timeout_s < 1:
    raise errors.ConfigError(f'--distributed_timeout must be >= 1 second, got {timeout_s}.')
  kwargs = dict(
      # The coordination service gives up on missing processes after
      # timeout_s and names them; the clients wait longer so that this named
      # error, not a bare DEADLINE_EXCEEDED, is what ends them. A process that
      # cannot reach process 0 at all stops itself after 0.9 * timeout_s
      # (`_report_missing_processes`), so start process 0 first or within that.
      initialization_timeout=2 * timeout_s,
      heartbeat_timeout_seconds=timeout_s,
      # A process that finishes (or fails) first waits this long at exit for
      # the others, instead of JAX's default of 300 s.
      shutdown_timeout_seconds=timeout_s)
  kwargs.update(_cluster_arguments(distributed, coordinator_address, num_processes,
                                   process_id))
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
    raise errors.ConfigError(
        f'--distributed=auto found no cluster ({e}). It works on Cloud TPU VM '
        'slices and inside SLURM jobs (srun); elsewhere pass '
        '--coordinator_address=HOST:PORT --num_processes=N --process_id=I, or '
        'leave --distributed off for a single process.') from e
  finally:
    joined.set()
  return True


def _cluster_arguments(distributed, coordinator_address, num_processes, process_id):
  """The cluster keyword arguments of `jax.distributed.initialize` (checked)."""
  if distributed == 'explicit':
    if coordinator_address is None or num_processes is None or process_id is None:
      raise errors.ConfigError(
          'An explicit cluster needs --coordinator_address=HOST:PORT, '
          '--num_processes=N and --process_id=I (got '
          f'{coordinator_address!r}, {num_processes!r}, {process_id!r}). '
          'On Cloud TPU or SLURM use --distributed=auto instead.')
    if not 0 <= int(process_id) < int(num_processes):
      raise errors.ConfigError(
          f'--process_id={process_id} is outside [0, --num_processes={num_processes}).')
    logging.info('jax.distributed.initialize(%s, num_processes=%s, process_id=%s)',
                 coordinator_address, num_processes, process_id)
    return dict(coordinator_address=coordinator_address, num_processes=int(num_processes),
                process_id=int(process_id))
  # JAX detects only what is not given, so flags can override detection.
  logging.info('jax.distributed.initialize() with cluster auto-detection')
  given = dict(coordinator_address=coordinator_address, num_processes=num_processes,
               process_id=process_id)
  return {k: v for k, v in given.items() if v is not None}


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


# Seconds process 0 stays after a user error (see `exit_after_failure`).
USER_ERROR_GRACE_S = 5.0


def exit_after_failure(error, *, timeout_s, user_error=False):
  """Ends a failed process of a multi-process run at once (never returns).

  A process that raised while its peers wait in a collective must not go
  through JAX's shutdown handshake: the peers would wait out the shutdown
  timeout and JAX would then blame *them*. Exiting at once stops this
  process's heartbeats, so within `timeout_s` every peer aborts with
  `The following tasks are unhealthy (stopped sending heartbeats):` and
  this process's id (or fails with its own copy of the same error).

  Args:
    error: the exception that ended the run.
    timeout_s: the heartbeat timeout, for the message.
    user_error: the error is the user's to fix (a bad config, missing data, a
      workdir in use): `error: <message>` on stderr and status 2, as a single
      process ends; otherwise the traceback is logged and the status is 1.
  """
  if user_error:
    sys.stderr.write(f'error: {error}\n')
    logging.warning('gan_jax: process %d of %d stops; the others stop within '
                    '--distributed_timeout=%d s if they do not fail the same way.',
                    jax.process_index(), jax.process_count(), timeout_s)
    if jax.process_index() == 0:
      # Process 0 hosts the coordination service: leaving at once could end a slower
      # peer through the lost service before it reports the same error itself.
      _flush_logs()
      time.sleep(min(USER_ERROR_GRACE_S, timeout_s / 2))
  else:
    # A collective fails on a closed connection when a peer died first (killed,
    # interrupted): this process is then not the cause.
    lost_peer = ('Connection closed by peer' in str(error)
                 or 'Connection reset by peer' in str(error))
    logging.error(
        'gan_jax: process %d of %d failed with %s: %s\n%sExiting now; the other processes '
        'stop within --distributed_timeout=%d s, reporting process %d as unhealthy.',
        jax.process_index(), jax.process_count(), type(error).__name__, error,
        'Another process left first (its log says why: killed, interrupted, failed); '
        'this is the consequence.\n' if lost_peer else '',
        timeout_s, jax.process_index(), exc_info=error)
  _flush_logs()
  os._exit(2 if user_error else 1)  # pylint: disable=protected-access
