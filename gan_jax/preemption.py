"""Stopping a run cleanly on SIGTERM / SIGINT (preemption, Ctrl-C).

The first signal sets a flag that the training loop checks after each step:
it saves a checkpoint and stops, and the run raises `Interrupted`, which the
command line turns into exit status 128 + signal number (130 for Ctrl-C, 143
for SIGTERM), so `train && next` does not go on as if training had finished.
Further signals while that checkpoint is being written are reported and
ignored: an interrupted save would lose every step since the previous
checkpoint. (SIGKILL still stops the process at once; the run then resumes from
the previous checkpoint.)
"""

import atexit
import contextlib
import logging
import os
import signal
import sys
import threading

import jax
from jax.experimental import multihost_utils
import numpy as np

from gan_jax import errors

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(errors.Stopped):
  """The run stopped early on a signal, after saving a checkpoint.

  Attributes:
    signum: the signal number (exit status 128 + signum).
    step: the step of the checkpoint that was saved.
  """

  def __init__(self, signum, step):
    super().__init__(f'Stopped by {signal.Signals(signum).name} at step {step} after '
                     'saving a checkpoint; rerun the same command to resume.', signum)
    self.step = step


class EvaluationStopped(errors.Stopped):
  """A stop signal arrived during work that `StopSignal.interruptible` lets it cut short
  (an evaluation's sampling and scoring); the loop saves a checkpoint and stops."""


class StopSignal:
  """Turns SIGTERM / SIGINT into a flag the loop checks (save, then stop).

  Use as a context manager around the loop, the final checkpoint save and the
  closing of the checkpointer and writers, so that a Ctrl-C cannot abort them (kill
  -9 still can). After `loop_done`, a signal is only reported: the run is complete.
  Outside the main thread (where Python cannot install handlers) it does nothing.

  Attributes:
    signum: the first signal received, or None.
  """

  def __init__(self):
    self.signum = None
    self._previous = {}
    self._done = False
    self._interruptible = False

  @contextlib.contextmanager
  def interruptible(self, enabled=True):
    """Inside the block a stop signal, or one already received, raises
    `EvaluationStopped` at once instead of waiting for the step to end: for long work
    that writes nothing, such as an evaluation's sampling and scoring (an FID of 50,000
    samples outlasts a preemption's grace period), which the resumed run redoes.
    `enabled=False` (several processes: one leaving a collective would leave the
    others waiting in it) makes it a plain block."""
    if not enabled:
      yield
      return
    if self.received:
      raise EvaluationStopped('stopped before an evaluation', self.signum)
    self._interruptible = True
    try:
      yield
    finally:
      self._interruptible = False

  def loop_done(self):
    """Marks the run complete: signals from now on change nothing (they are reported)."""
    self._done = True

  @property
  def received(self):
    """Whether a stop signal has arrived."""
    return self.signum is not None

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
      # A signal before the loop whose exception Python swallowed (it only prints one
      # raised inside a garbage-collection callback, which JAX runs at every
      # collection): the handler it went to remembers it (`cli.RememberingInterrupts`,
      # `sigterm_raises`).
      for sig in SIGNALS:
        remembered = getattr(self._previous[sig], 'remembered', None)
        if remembered:
          self._handle(remembered[0], None)
          remembered.clear()
    return self

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    name = signal.Signals(signum).name
    if self._done:
      logging.warning('Received %s after the last step: the run is complete and on disk; '
                      'closing its files.', name)
    elif self._interruptible:
      self.signum = self.signum or signum
      self._interruptible = False
      logging.warning('Received %s: stopping the evaluation (the resumed run does it), '
                      'saving a checkpoint and stopping.', name)
      raise EvaluationStopped(f'{name} during an evaluation', signum)
    elif self.signum is None:
      self.signum = signum
      logging.warning(
          'Received %s: finishing this step, saving a checkpoint and stopping. A second '
          'signal (Ctrl-C, SIGTERM) is ignored until the checkpoint is on disk (kill -9 '
          'stops at once; the run then resumes from the previous checkpoint).', name)
    else:
      logging.warning('Received %s again: the run is already stopping; it exits as soon '
                      "as this step's checkpoint is on disk.", name)

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}


@contextlib.contextmanager
def sigterm_raises():
  """While the block runs, SIGTERM raises `errors.Stopped` in the main thread, as
  Ctrl-C raises KeyboardInterrupt (by default SIGTERM ends the process at once,
  skipping every `finally`); the previous handler is restored after. A training
  loop inside the block replaces it with its own (`StopSignal`) while it runs.
  Outside the main thread it does nothing.

  Yields:
    The handler, whose `remembered` lists the SIGTERMs received (one Python swallowed
    too), or None outside the main thread."""
  if threading.current_thread() is not threading.main_thread():
    yield None
    return

  class Stop:
    """Raises errors.Stopped, and remembers the signal (as `cli.RememberingInterrupts`)."""

    def __init__(self):
      self.remembered = []

    def __call__(self, signum, frame):
      del frame
      self.remembered.append(signum)
      raise errors.Stopped('Stopped by SIGTERM.', signum)

  handler = Stop()
  previous = signal.signal(signal.SIGTERM, handler)
  try:
    yield handler
  finally:
    signal.signal(signal.SIGTERM, previous)


def finish_on_signal(status=0, *, at_once=True):
  """Makes SIGTERM / SIGINT end this process at once with `status`, stdout and stderr
  flushed, and ignored once the interpreter shuts down: for a run whose training is
  complete and on disk, which a signal during the summary or the shutdown can no
  longer interrupt (the default action would report status 143 / 130, as if the run
  had stopped early). A command-line program's last act; a library must not call it.

  Args:
    status: the exit status a signal leaves with.
    at_once: False ignores the signals from now on instead (several processes, which
      must leave together through jax.distributed's shutdown).
  """
  def finish(signum, frame):  # pylint: disable=unused-argument
    logging.shutdown()  # flushes every log handler (absl's --log_dir files too)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # pylint: disable=protected-access

  def ignore():
    # Python resets its own handlers to the default action early in the shutdown
    # (before modules and native libraries are torn down); an ignored signal it keeps.
    for sig in SIGNALS:
      signal.signal(sig, signal.SIG_IGN)

  if threading.current_thread() is threading.main_thread():
    if not at_once:
      ignore()
      return
    for sig in SIGNALS:
      signal.signal(sig, finish)
    atexit.register(ignore)


# Several processes exchange their stop flags at least this often (in steps): a
# cluster gives a preempted job seconds before SIGKILL (SLURM's KillWait: 30 s), so
# the stop must not wait for a log step 500 steps away. Each exchange waits for the
# step to finish on the devices, so not at every step.
MAX_STEPS_BETWEEN_EXCHANGES = 10


def agree(flag, step, every):
  """Whether to stop now; with several processes, all of them agree.

  Processes exchange their flags every min(`every`, MAX_STEPS_BETWEEN_EXCHANGES)
  steps (a collective), so all stop at the same step; a single process answers
  at once.

  Args:
    flag: this process's wish to stop.
    step: the current step.
    every: the log interval (the processes synchronise there anyway).

  Returns:
    True when the run stops after this step.
  """
  if jax.process_count() == 1:
    return bool(flag)
  if step % min(every, MAX_STEPS_BETWEEN_EXCHANGES):
    return False
  return bool(np.any(multihost_utils.process_allgather(np.array([bool(flag)]))))
