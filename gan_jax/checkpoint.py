"""Checkpoints of a run: an orbax CheckpointManager wrapper with safe fallback.

Each checkpoint `<workdir>/checkpoints/<step>/` holds two items:
  * `state`: the `GANState` pytree (every array, replicated);
  * `data`: the training data iterator's state (JSON), so a resumed run sees
    exactly the batches an uninterrupted run would have seen.

In a run of several processes each process reads its own data shard, so
`data` holds every process's iterator state, `{"per_process": [state of
process 0, state of process 1, ...]}`, gathered when saving; restoring hands
each process its own (a one-process checkpoint stays a plain state).

Restoring tries the newest checkpoint first. One that cannot be read (a
truncated file, a crash mid-write) is moved aside to
`<workdir>/checkpoints_corrupt/<step>-<time>/` with a warning (never deleted),
and the next older one is tried.
"""

import json
import logging
import os
import shutil
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

PER_PROCESS = 'per_process'


class CheckpointError(RuntimeError):
  """No checkpoint in a directory could be restored."""


class Checkpointer:
  """Saves and restores (state, data iterator state) pairs by step.

  Args:
    directory: the checkpoint folder (usually `<workdir>/checkpoints`).
    max_to_keep: newest checkpoints kept on disk (None keeps all).
    async_save: write in a background thread (the step loop goes on).
  """

  def __init__(self, directory, *, max_to_keep=3, async_save=True):
    self.directory = os.path.abspath(directory)
    self._options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True,
        enable_async_checkpointing=async_save)
    self._manager = self._new_manager()

  def _new_manager(self):
    return ocp.CheckpointManager(
        self.directory, options=self._options, item_names=('state', 'data'))

  def all_steps(self):
    """Sorted steps of the checkpoints on disk."""
    return sorted(self._manager.all_steps())

  def latest_step(self):
    """The newest checkpoint step, or None."""
    return self._manager.latest_step()

  def save(self, step, state, data_state, *, force=True):
    """Starts writing a checkpoint (asynchronously unless async_save=False).

    Args:
      step: the step number (the state's `step`).
      state: the GANState (device or host arrays).
      data_state: JSON-serialisable dict from this process's data iterator
        (`get_state()`); with several processes all of them are saved.
      force: save even if the manager's policy would skip this step.
    """
    if step in self._manager.all_steps():
      logging.info('Checkpoint %d exists already; not saving it again.', step)
      return
    if jax.process_count() > 1:
      data_state = {PER_PROCESS: _gather_json(data_state)}
    self._manager.save(
        step, force=force,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                data=ocp.args.JsonSave(data_state)))

  def restore(self, abstract_state, step=None):
    """Restores the newest readable checkpoint (or exactly `step`).

    Args:
      abstract_state: a GANState of `jax.ShapeDtypeStruct`s (with shardings)
        that says where and how to place the restored arrays.
      step: a specific step; None means the newest that can be read.

    Returns:
      (state, data_state, step), or None when the folder has no checkpoint.

    Raises:
      CheckpointError: when `step` was given and cannot be read, or every
        checkpoint is unreadable.
    """
    steps = self.all_steps()
    if step is not None:
      if step not in steps:
        raise CheckpointError(
            f'No checkpoint for step {step} in {self.directory}; available: {steps}.')
      return self._restore_step(abstract_state, step) + (step,)
    if not steps:
      return None
    for candidate in reversed(steps):
      try:
        restored, error = self._restore_step(abstract_state, candidate), None
      except Exception as e:  # pylint: disable=broad-except
        restored, error = None, f'{type(e).__name__}: {str(e)[:300]}'
      # Every process must resume from the same step, so one failure counts for all.
      if _on_any_process(error is not None):
        moved = self._move_aside(candidate)
        logging.warning(
            'Checkpoint %d in %s could not be restored (%s); moved it to %s '
            'and falling back to the previous checkpoint.', candidate,
            self.directory, error or 'failed on another process', moved)
        continue
      return restored + (candidate,)
    raise CheckpointError(
        f'None of the checkpoints {steps} in {self.directory} could be restored; '
        'they were moved to checkpoints_corrupt/ beside it. Start a new run '
        'with a fresh --workdir, or restore a backup.')

  def _restore_step(self, abstract_state, step):
    restored = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                      data=ocp.args.JsonRestore()))
    return restored['state'], _this_process(restored['data'])

  def _move_aside(self, step):
    """Renames an unreadable checkpoint out of the manager's way (keeps its files)."""
    self._manager.wait_until_finished()
    source = os.path.join(self.directory, str(step))
    target_root = self.directory.rstrip('/') + '_corrupt'
    target = os.path.join(target_root, f'{step}-{int(time.time())}')
    if jax.process_index() == 0 and os.path.exists(source):
      os.makedirs(target_root, exist_ok=True)
      shutil.move(source, target)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices(f'gan_jax_move_aside_{step}')
    self._manager.close()
    self._manager = self._new_manager()
    return target

  def wait(self):
    """Blocks until pending asynchronous saves are on disk."""
    self._manager.wait_until_finished()

  def close(self):
    """Waits for pending saves and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()


# ---- several processes: one data-iterator state each -------------------------


def _gather_json(value):
  """Every process's JSON-serialisable `value`, in process order.

  A collective: all processes must call it (they all save together).
  """
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  encoded = np.frombuffer(json.dumps(value, sort_keys=True).encode('utf-8'), np.uint8)
  sizes = np.asarray(multihost_utils.process_allgather(np.int32(encoded.size))).reshape(-1)
  # Padded to a multiple of 256 bytes, so the gather compiles once, not per length.
  padded = np.zeros(-(-int(sizes.max()) // 256) * 256, np.uint8)
  padded[:encoded.size] = encoded
  rows = np.asarray(multihost_utils.process_allgather(padded))
  return [json.loads(row[:size].tobytes().decode('utf-8')) for row, size in zip(rows, sizes)]


def _this_process(data_state):
  """This process's entry of a saved `{PER_PROCESS: [...]}` (else the state itself)."""
  if not (isinstance(data_state, dict) and set(data_state) == {PER_PROCESS}):
    return data_state
  states = data_state[PER_PROCESS]
  if len(states) == jax.process_count():
    return states[jax.process_index()]
  logging.info('The checkpoint was written by %d processes and is read by %d: using the '
               'data position of its process 0.', len(states), jax.process_count())
  return states[0]


def _on_any_process(flag):
  """Whether `flag` is true on at least one process (a collective when several)."""
  if jax.process_count() == 1:
    return bool(flag)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(np.any(multihost_utils.process_allgather(np.array([bool(flag)]))))
