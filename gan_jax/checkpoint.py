"""Checkpoints of a run: an orbax CheckpointManager wrapper with safe fallback.

Each checkpoint `<workdir>/checkpoints/<step>/` holds two items:
  * `state`: the `GANState` pytree (every array, replicated);
  * `data`: the training data iterator's state (JSON), so a resumed run sees
    exactly the batches an uninterrupted run would have seen.

Restoring tries the newest checkpoint first. One that cannot be read (a
truncated file, a crash mid-write) is moved aside to
`<workdir>/checkpoints_corrupt/<step>-<time>/` with a warning (never deleted),
and the next older one is tried.
"""

import logging
import os
import shutil
import time

import jax
import orbax.checkpoint as ocp


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
      data_state: JSON-serialisable dict from the data iterator's `get_state()`.
      force: save even if the manager's policy would skip this step.
    """
    if step in self._manager.all_steps():
      logging.info('Checkpoint %d exists already; not saving it again.', step)
      return
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
        return self._restore_step(abstract_state, candidate) + (candidate,)
      except Exception as e:  # pylint: disable=broad-except
        moved = self._move_aside(candidate)
        logging.warning(
            'Checkpoint %d in %s could not be restored (%s: %s); moved it to %s '
            'and falling back to the previous checkpoint.',
            candidate, self.directory, type(e).__name__, str(e)[:300], moved)
    raise CheckpointError(
        f'None of the checkpoints {steps} in {self.directory} could be restored; '
        'they were moved to checkpoints_corrupt/ beside it. Start a new run '
        'with a fresh --workdir, or restore a backup.')

  def _restore_step(self, abstract_state, step):
    restored = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                      data=ocp.args.JsonRestore()))
    return restored['state'], restored['data']

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
