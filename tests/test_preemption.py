"""Tests of stopping on SIGTERM / SIGINT (gan_jax.preemption)."""

import gc
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from gan_jax import cli
from gan_jax import preemption
from tests.helpers import run_python

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_first_signal_sets_the_flag_and_a_second_does_not_interrupt(caplog):
  with preemption.StopSignal() as stop:
    assert not stop.received
    os.kill(os.getpid(), signal.SIGINT)
    assert stop.received and stop.signum == signal.SIGINT
    # A second Ctrl-C (e.g. while the checkpoint is being saved) must not raise.
    os.kill(os.getpid(), signal.SIGINT)
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.signum == signal.SIGINT
  messages = ' '.join(r.message for r in caplog.records)
  assert 'A second signal (Ctrl-C, SIGTERM) is ignored until the checkpoint is on disk' in messages
  assert 'the run is already stopping' in messages


def test_a_signal_inside_an_interruptible_block_stops_it_at_once(caplog):
  # An evaluation's scoring (one process) ends at the signal, not after it.
  with preemption.StopSignal() as stop:
    done = []
    with pytest.raises(preemption.EvaluationStopped) as raised:
      with stop.interruptible():
        os.kill(os.getpid(), signal.SIGTERM)
        done.append('after the signal')
    assert not done and raised.value.signum == signal.SIGTERM
    assert stop.received and stop.signum == signal.SIGTERM
    # Outside the block a signal sets the flag again and raises nothing.
    os.kill(os.getpid(), signal.SIGINT)
    assert stop.signum == signal.SIGTERM
    # A signal received before the block: the block does not start.
    with pytest.raises(preemption.EvaluationStopped):
      with stop.interruptible():
        done.append('started')
    assert not done
    # Several processes: a plain block (a process leaving a collective would strand
    # the others), the flag alone.
    with stop.interruptible(enabled=False):
      os.kill(os.getpid(), signal.SIGINT)
      done.append('finished')
    assert done == ['finished']
  assert 'stopping the evaluation (the resumed run does it)' in caplog.text


def test_a_signal_after_the_last_step_changes_nothing(caplog):
  # The loop is over (the files are being closed): nothing to stop, nothing to save.
  with preemption.StopSignal() as stop:
    stop.loop_done()
    os.kill(os.getpid(), signal.SIGTERM)
    assert not stop.received
  assert 'after the last step: the run is complete' in caplog.text


def test_handlers_are_restored_after_the_block():
  # Start from Python's own Ctrl-C handler whatever pytest inherited: a shell that
  # runs the suite as a background job (`cmd &`) starts it with SIGINT ignored.
  inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    with preemption.StopSignal():
      assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)
  finally:
    signal.signal(signal.SIGINT, inherited)


@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')
def test_a_ctrl_c_python_swallows_during_start_up_stops_the_loop_at_its_first_step():
  # Python only prints a KeyboardInterrupt raised inside a garbage-collection callback
  # (JAX runs one at every collection); the start-up's Ctrl-C must not be lost.
  handler = cli.RememberingInterrupts()
  inherited = signal.signal(signal.SIGINT, handler)
  fired = []

  def collecting(phase, info):  # pylint: disable=unused-argument
    if phase == 'start' and not fired:
      fired.append(True)
      os.kill(os.getpid(), signal.SIGINT)
      time.sleep(0.05)   # the handler runs here; its KeyboardInterrupt is swallowed

  try:
    gc.callbacks.append(collecting)
    try:
      gc.collect()
    finally:
      gc.callbacks.remove(collecting)
    assert fired and handler.remembered == [signal.SIGINT]
    with preemption.StopSignal() as stop:
      assert stop.received and stop.signum == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is handler
    with preemption.StopSignal() as stop:   # acted on once (trials share a process)
      assert not stop.received
    with pytest.raises(KeyboardInterrupt):   # outside a gc callback: raised as usual
      os.kill(os.getpid(), signal.SIGINT)
      time.sleep(1)
  finally:
    signal.signal(signal.SIGINT, inherited)


@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')
def test_a_sigterm_python_swallows_before_the_loop_stops_it_at_its_first_step():
  def collecting(phase, info):  # pylint: disable=unused-argument
    if phase == 'start':
      gc.callbacks.remove(collecting)
      os.kill(os.getpid(), signal.SIGTERM)
      time.sleep(0.05)   # errors.Stopped is raised here, and swallowed

  with preemption.sigterm_raises():
    gc.callbacks.append(collecting)
    gc.collect()
    with preemption.StopSignal() as stop:
      assert stop.received and stop.signum == signal.SIGTERM


def test_interrupted_carries_the_exit_status_and_the_step():
  error = preemption.Interrupted(signal.SIGTERM, 12)
  assert 128 + error.signum == 143 and error.step == 12
  assert 'SIGTERM at step 12' in str(error) and 'rerun the same command' in str(error)


def test_one_process_agrees_with_itself_at_every_step():
  assert preemption.agree(True, 3, 50) and not preemption.agree(False, 50, 50)


@pytest.mark.parametrize('log_every, exchanges', [(50, [10, 20, 30]), (3, [3, 6, 9, 12, 15, 18,
                                                                          21, 24, 27, 30])])
def test_several_processes_exchange_stop_flags_at_least_every_ten_steps(
    monkeypatch, log_every, exchanges):
  # A preempted cluster job has seconds before SIGKILL: the stop must not wait for a
  # log step hundreds of steps away.
  seen = []
  monkeypatch.setattr(preemption.jax, 'process_count', lambda: 2)
  monkeypatch.setattr(preemption.multihost_utils, 'process_allgather',
                      lambda flags: (seen.append(step), np.stack([flags, [True]]))[1])
  stops = []
  for step in range(1, 31):
    stops.append(preemption.agree(False, step, log_every))
  assert seen == exchanges
  assert [s for s, stop in zip(range(1, 31), stops) if stop] == exchanges  # peer's flag


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_several_processes_ignore_a_signal_after_finishing_to_leave_together(signum):
  program = ('import os, signal\n'
             'from gan_jax import preemption\n'
             'preemption.finish_on_signal(0, at_once=False)\n'
             f'os.kill(os.getpid(), {int(signum)})\n'
             "print('the summary, then the shutdown')\n")
  result = run_python(program, timeout=60)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout == 'the summary, then the shutdown\n'


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_interpreter_s_shutdown_after_finishing_is_no_stop(signum):
  # Python resets its own handlers to the default action early in its shutdown; native
  # libraries are torn down after that (here: a __del__ that takes its time).
  program = ('import os, time\n'
             'from gan_jax import preemption\n'
             'class Slow:\n'
             '  def __del__(self, write=os.write, sleep=time.sleep):\n'
             "    write(1, b'tearing down\\n')\n"
             '    sleep(2)\n'
             'holder = Slow()\n'
             'preemption.finish_on_signal(0)\n')
  process = subprocess.Popen([sys.executable, '-c', program], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=REPO)
  assert process.stdout.readline() == 'tearing down\n'
  time.sleep(0.2)
  process.send_signal(signum)
  _, stderr = process.communicate(timeout=60)
  assert process.returncode == 0, stderr[-2000:]


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_a_signal_after_training_finished_ends_the_process_as_finished(signum):
  # What `gan_jax.main` installs once training is complete: the summary printed so far
  # is kept, and the status says finished (0), not stopped early (143 / 130).
  program = ('import os, signal, time\n'
             'from gan_jax import preemption\n'
             'preemption.finish_on_signal(0)\n'
             "print('Finished: the summary', flush=False)\n"
             f'os.kill(os.getpid(), {int(signum)})\n'
             'time.sleep(30)\n'
             "print('not reached')\n")
  result = run_python(program, timeout=60)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout == 'Finished: the summary\n'
