"""Benchmark workers: one child process per timed variant, driven over a pipe.

Each (framework, variant) of the throughput benchmark runs in its own spawned
process, so thread pools, peak memory and allocator state do not interfere. The
child builds one runner (`throughput_runners.RUNNERS`), reports its start-up
numbers, then serves `('run', n)`, `('profile', n, top)` and `('stop',)`.
"""

import multiprocessing
import os
import resource
import sys
import traceback

from gan_jax import errors


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


def _serve(conn, spec):
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
    from gan_jax.bench import throughput_runners  # pylint: disable=g-import-not-at-top
    runner = throughput_runners.RUNNERS[spec['framework']](spec)
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
  except KeyboardInterrupt:
    return  # Ctrl-C reaches the whole process group: the parent says it stopped
  except Exception:  # pylint: disable=broad-except
    try:
      conn.send(('error', traceback.format_exc()))
    except OSError:
      pass  # the parent is gone (its pipe broken): nobody to tell


class Worker:
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
      self._process = context.Process(target=_serve, args=(child, spec), daemon=True)
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
        raise errors.WorkerExitedError(
            f'the {self.spec["framework"]} worker exited with code {self._process.exitcode} '
            'without a reply: its own error, if it printed one, is above (e.g. an XLA flag '
            'of --xla_flags / $XLA_FLAGS that XLA does not know: fix or drop it); with none, '
            'the system probably stopped it for memory (a smaller --batch or --widths).')
    status, payload = self._conn.recv()
    if status == 'error':
      self._process.join(timeout=10)
      raise RuntimeError(f'{self.spec["framework"]} worker failed:\n{payload}')
    return payload

  def call(self, *command):
    """Sends a request, e.g. call('run', n), and returns the worker's reply."""
    self._conn.send(command)
    return self._receive()

  def stop(self):
    """Closes the runner and waits up to 30 s for the worker to exit; returns {'peak_mem_mb'}."""
    result = self.call('stop')
    self._process.join(timeout=30)
    return result

  def kill(self):
    """Ends the worker process at once (after a failure or a timeout)."""
    self._process.kill()
