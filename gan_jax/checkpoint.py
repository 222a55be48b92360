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
and the next older one is tried; tools that only read a run (sampling,
evaluation) skip it and leave it in place. A save interrupted before orbax renamed its
temporary folder leaves a `*.orbax-checkpoint-tmp*` folder: it is never a
checkpoint, and is ignored with a warning.

`BestCheckpoint` keeps the checkpoint with the lowest evaluation metric (FID,
or the offline proxy's Frechet distance) in `<workdir>/best/`.

Folders may be local paths or URLs (`gs://bucket/run/checkpoints`).
"""

import contextlib
import gc
import io
import json
import logging
import os
import re
import signal
import sys
import time

from etils import epath
import jax
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp

from gan_jax import errors
from gan_jax import writers

PER_PROCESS = 'per_process'


TMP_MARKER = 'orbax-checkpoint-tmp'
# Tests set this to N to kill the process (no clean-up, as a preempted VM) right
# after the checkpoint of step N is on disk.
KILL_AT_STEP_ENV = 'GAN_JAX_SIGKILL_AT_STEP'
# How long a failed restore waits for the reads orbax abandoned (`_read_quietly`).
_ABANDONED_READS_S = 1.0


class CheckpointError(errors.WorkdirError):
  """No checkpoint in a directory could be restored."""


def absolute(path):
  """`path` made absolute if local; URLs (`gs://...`) are returned unchanged."""
  path = os.fspath(path)
  return path if '://' in path else os.path.abspath(path)


def _save_replicated_arrays_from_one_copy():
  """On CPU, makes orbax write each replicated array from one device's copy.

  Orbax's default splits a replicated array into one slice per device so that
  accelerators copy it to the host in parallel (orbax already turns this off for
  GPUs). CPU "devices" share the host's memory, so the split gains nothing, and
  every array shape costs a compiled slice program: seconds for the first
  checkpoint of each model. The bytes written are the same either way.
  """
  handler = ocp.type_handlers.get_type_handler(jax.Array)
  if jax.default_backend() != 'cpu' or not getattr(handler, '_use_replica_parallel', False):
    return
  # Orbax warns about every override (through absl's logger); this one is intended.
  absl_logger = logging.getLogger('absl')
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)
  try:
    ocp.type_handlers.register_type_handler(
        jax.Array,
        ocp.type_handlers.ArrayHandler(
            use_replica_parallel=False,
            array_metadata_store=getattr(handler, '_array_metadata_store', None)),
        override=True)
  finally:
    absl_logger.setLevel(level)


class Checkpointer:
  """Saves and restores (state, data iterator state) pairs by step.

  Args:
    directory: the checkpoint folder (usually `<workdir>/checkpoints`).
    max_to_keep: newest checkpoints kept on disk (None keeps all).
    async_save: write in a background thread (the step loop goes on).
    training_run: for a reader beside a live training run (`workdir.training_run_in`),
      its description: unfinished saves in the folder are then that run's saves in
      progress, not leftovers of an interrupted one.
  """

  def __init__(self, directory, *, max_to_keep=3, async_save=True, training_run=None):
    _save_replicated_arrays_from_one_copy()
    self._training_run = training_run
    self.directory = absolute(directory)
    self._options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True,
        enable_async_checkpointing=async_save)
    self._manager = self._new_manager()
    self._kill_at_step = int(os.environ.get(KILL_AT_STEP_ENV, '-1'))
    self._warn_about_unfinished_saves()

  def _warn_about_unfinished_saves(self):
    folder = epath.Path(self.directory)
    leftovers = sorted(p.name for p in folder.iterdir() if TMP_MARKER in p.name)
    if leftovers and self._training_run:
      logging.info('Ignoring %s in %s: the save in progress of the run training there (%s).',
                   ', '.join(leftovers), self.directory, self._training_run)
    elif leftovers:
      logging.warning(
          'Ignoring %d unfinished checkpoint save(s) in %s (%s): a save was '
          'interrupted before it completed; they are not checkpoints and can be '
          'deleted.', len(leftovers), self.directory, ', '.join(leftovers))

  def _new_manager(self):
    return ocp.CheckpointManager(
        self.directory, options=self._options, item_names=('state', 'data'))

  def all_steps(self):
    """Sorted steps of the checkpoints on disk."""
    return sorted(self._manager.all_steps())

  def latest_step(self):
    """The newest checkpoint step, or None."""
    return self._manager.latest_step()

  def save(self, step, state, data_state):
    """Starts writing a checkpoint (asynchronously unless async_save=False).

    Args:
      step: the step number (the state's `step`).
      state: the GANState (device or host arrays).
      data_state: JSON-serialisable dict from this process's data iterator
        (`get_state()`); with several processes all of them are saved.
    The manager's own save-interval policy is overridden: the caller decides.
    """
    if step in self._manager.all_steps():
      logging.info('Checkpoint %d exists already; not saving it again.', step)
      return
    if jax.process_count() > 1:
      data_state = {PER_PROCESS: _gather_json(data_state)}
    self._manager.save(
        step, force=True,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                data=ocp.args.JsonSave(data_state)))
    if step == self._kill_at_step:  # fault injection for the resume tests
      self.wait()
      os.kill(os.getpid(), signal.SIGKILL)

  def restore(self, abstract_state, step=None, *, move_aside=True):
    """Restores the newest readable checkpoint (or exactly `step`).

    Args:
      abstract_state: a GANState of `jax.ShapeDtypeStruct`s (with shardings)
        that says where and how to place the restored arrays.
      step: a specific step; None means the newest that can be read.
      move_aside: once an older checkpoint has been restored, move the newer ones that
        could not be read to `checkpoints_corrupt/` (a run that resumes, and would
        otherwise save over them or trip on them again); False leaves the folder as it
        is (tools that only read a run, possibly beside the training run that writes
        it). When none can be read nothing is moved: the failure may be passing (a
        network file system, an object store), and a rerun must find them in place.

    Returns:
      (state, data_state, step), or None when the folder has no checkpoint.

    Raises:
      CheckpointError: when `step` was given and cannot be read, or every
        checkpoint is unreadable.
    """
    steps = self._agreed_steps()
    if step is not None:
      if step not in steps:
        raise CheckpointError(
            f'No checkpoint for step {step} in {self.directory}; available: {steps}.')
      try:
        return self._restore_step(abstract_state, step) + (step,)
      except Exception as e:  # pylint: disable=broad-except
        others = [s for s in steps if s != step]
        raise CheckpointError(
            f'Checkpoint {step} in {self.directory} could not be restored ({_describe(e)}). '
            f'Pick another step (available: {others or "none"}), or leave the step out to '
            'use the newest readable checkpoint.') from None
    if not steps:
      return None
    unreadable, first_error = [], None
    for candidate in reversed(steps):
      try:
        restored, error = self._restore_step(abstract_state, candidate), None
      except Exception as e:  # pylint: disable=broad-except
        restored, error = None, _describe(e)
      # Every process must resume from the same step, so one failure counts for all.
      on_any, on_every = _on_any_and_every_process(error is not None)
      if on_any:
        logging.warning('Checkpoint %d in %s could not be restored (%s); trying the previous '
                        'one.', candidate, self.directory, error or 'failed on another process')
        # Damage fails every process's read; a failure on some only may be passing.
        unreadable.append((candidate, on_every))
        first_error = first_error or error or 'failed on another process'
        continue
      for newer, everywhere in unreadable:
        where = 'left it in place'
        if move_aside and everywhere:
          where = self._move_aside(newer)
        elif move_aside:
          where = 'left it in place (it failed on some processes only)'
        logging.warning('Restored checkpoint %d instead of the unreadable %d: %s.', candidate,
                        newer, where)
      return restored + (candidate,)
    raise CheckpointError(
        f'None of the checkpoints {steps} in {self.directory} could be restored (the newest: '
        f'{first_error}); they are left in place. If the storage failed for a moment, run '
        'again; if they are damaged, restore a backup or start a fresh --workdir.')

  def _agreed_steps(self):
    """The checkpoint steps as process 0 lists them, on every process.

    Each process lists the folder itself, and a shared file system or object store
    may show one of them an older listing; processes that resumed from different
    steps would train apart and then wait on each other forever.
    """
    steps = self.all_steps()
    if jax.process_count() == 1:
      return steps
    chief_steps = _gather_json(steps)[0]
    if chief_steps != steps:
      logging.warning('This process lists the checkpoints %s in %s, process 0 lists %s; '
                      'using process 0\'s (re-reading the folder).', steps, self.directory,
                      chief_steps)
      # Only this process re-reads: reload() has no barrier (a new manager would wait
      # for the other processes, which are already restoring).
      self._manager.reload()
    return chief_steps

  def restore_data(self, step):
    """This process's data state saved with checkpoint `step` (the state is not read)."""
    restored = self._manager.restore(step, args=ocp.args.Composite(data=ocp.args.JsonRestore()))
    return _this_process(restored['data'])

  def _restore_step(self, abstract_state, step):
    restored = _read_quietly(lambda: self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                      data=ocp.args.JsonRestore())))
    return restored['state'], _this_process(restored['data'])

  def _move_aside(self, step):
    """Renames an unreadable checkpoint out of the manager's way (keeps its files);
    returns what happened to it, for the warning."""
    self._manager.wait_until_finished()
    source = epath.Path(self.directory) / str(step)
    target_root = epath.Path(self.directory.rstrip('/') + '_corrupt')
    target = target_root / f'{step}-{int(time.time())}'
    done = f'moved it to {target}'
    if jax.process_index() == 0:
      if source.exists():
        target_root.mkdir(parents=True, exist_ok=True)
        source.rename(target)
      else:
        done = 'it is gone (removed while it was read: another run in this folder?)'
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f'gan_jax_move_aside_{step}')
    self._manager.close()
    self._manager = self._new_manager()
    return done

  def wait(self):
    """Blocks until pending asynchronous saves are on disk."""
    self._manager.wait_until_finished()

  def close(self):
    """Waits for pending saves and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()


def _describe(error):
  """What to print for a failed restore."""
  return str(error) if isinstance(error, _UnreadableCheckpoint) else _one_line(error)


def _one_line(error):
  """An exception as one short line: orbax's can hold a whole multi-line TensorStore spec."""
  return f'{type(error).__name__}: {" ".join(str(error).split())[:300]}'


class _UnreadableCheckpoint(Exception):
  """A checkpoint's restore failed; the message is the error, on one line."""


def _read_quietly(read):
  """`read()`, keeping the reads orbax abandons when one array fails from printing.

  After the first failing read of a damaged checkpoint, orbax gives up on the
  others; each then reports its own error, through asyncio's logger ('Task
  exception was never retrieved'), as an unraisable exception when it is
  collected, or as the traceback of its callback into the closed event loop
  ('Event loop is closed'): hundreds of lines for one damaged file. The caller
  reports the one error that matters.

  Raises:
    _UnreadableCheckpoint: `read` failed (its error on one line).
  """
  asyncio_logger = logging.getLogger('asyncio')
  level, hook = asyncio_logger.level, sys.unraisablehook
  asyncio_logger.setLevel(logging.CRITICAL + 1)
  sys.unraisablehook = lambda unraisable: None
  try:
    try:
      return read()
    except Exception as e:  # pylint: disable=broad-except
      message = _one_line(e)
    # Out of the except block the error and the frames it held are gone, so the
    # abandoned reads can finish (within a fraction of a second) and be collected.
    with contextlib.redirect_stderr(io.StringIO()):
      time.sleep(_ABANDONED_READS_S)
      gc.collect()
    raise _UnreadableCheckpoint(message)
  finally:
    sys.unraisablehook = hook
    asyncio_logger.setLevel(level)


# ---- several processes: one data-iterator state each -------------------------


def _gather_json(value):
  """Every process's JSON-serialisable `value`, in process order.

  A collective: all processes must call it (they all save together).
  """
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
  logging.warning('The checkpoint was written by %d processes and is read by %d: using the '
                  'data position of its process 0, so the batches from here on differ from '
                  'an uninterrupted run\'s (resume with %d processes to continue it exactly).',
                  len(states), jax.process_count(), len(states))
  return states[0]


def _on_any_and_every_process(flag):
  """(whether `flag` is true on some process, on every process); a collective when
  several processes run."""
  if jax.process_count() == 1:
    return bool(flag), bool(flag)
  flags = np.asarray(multihost_utils.process_allgather(np.array([bool(flag)]))).reshape(-1)
  return bool(flags.any()), bool(flags.all())


class BestCheckpoint:
  """The checkpoint with the lowest evaluation metric, in `<workdir>/best/`.

  `best/best.json` records {'step', 'metric', 'value', 'results', 'protocol'}; the
  state is an orbax checkpoint beside it (the data item holds the results and the
  protocol, from which a missing, stale or damaged record is rebuilt). `protocol` is
  what the evaluations must share to be compared (`Evaluator.comparable`: sample
  counts, reference split, extractor); when a resumed run evaluates otherwise, the
  old best is set aside instead of compared, as for a change of metric.

  A run resumed from a checkpoint older than the best one trains the steps after it
  again, perhaps otherwise (a change allowed on resume, another process count): the
  best is kept while unconfirmed, and set aside when the resumed run's evaluation of
  its step gives other results, or the run evaluates a later step without it. An
  exact resume gives the same results, and the best stays as it was.

  Args:
    directory: the `best` folder (usually `<workdir>/best`).
    resumed_from: the step training continues from (0 for a new run), or None.
  """

  METRICS = ('fid', 'proxy_fd')  # lower is better; the first one present is used
  # Of a protocol (`Evaluator.comparable`), the feature extractor each metric uses:
  # another extractor's part (another metric added to eval.metrics) does not matter.
  _EXTRACTORS = {'fid': 'inception', 'proxy_fd': 'proxy'}

  def __init__(self, directory, resumed_from=None):
    self.directory = absolute(directory)
    record = epath.Path(self.directory) / 'best.json'
    self.best, damage = None, None
    if record.exists():
      try:
        self.best = json.loads(record.read_text())
      except json.JSONDecodeError as e:
        damage = f'{record} is not valid JSON ({e})'
      if damage is None and not (isinstance(self.best, dict) and 'value' in self.best):
        self.best, damage = None, f'{record} is not a best-checkpoint record'
    step = None
    if epath.Path(self.directory).exists():
      reader = Checkpointer(self.directory, max_to_keep=None, async_save=False)
      step = reader.latest_step()
      if step is not None and (self.best is None or self.best.get('step') != step):
        # A run killed between saving the best checkpoint and writing its record, or a
        # damaged record: the checkpoint's own results are the truth.
        logging.warning('%s does not describe the best checkpoint (step %d) beside it; '
                        'rebuilding it from that checkpoint.', record, step)
        saved = reader.restore_data(step)
        self._record(step, saved['results'], saved.get('protocol'))
      reader.close()
    fatal = damage if step is None else None
    if jax.process_count() > 1:
      # Every later decision (set aside, save, skip) must be the same on every process.
      self.best, fatal = _gather_json([self.best, fatal])[0]
    if fatal:
      raise errors.WorkdirError(
          f'{fatal}, and there is no best checkpoint beside it to rebuild it from. '
          'Restore the file from a backup, or move the folder away to start tracking '
          'the best checkpoint afresh.')
    # The step of a best the resumed run trains again, until an evaluation confirms it.
    self._unconfirmed = None
    if (resumed_from is not None and self.best is not None
        and self.best.get('step', -1) > resumed_from):
      self._unconfirmed = (int(self.best['step']), int(resumed_from))

  @staticmethod
  def set_aside_pattern(best_name):
    """The names `_set_aside` gives earlier best folders beside a best folder called
    `best_name`: `<best_name>_<metric>_step<N>`, then `_2`, `_3`... if taken."""
    return re.compile(rf'{re.escape(best_name)}_\w+_step\d+(_\d+)?')

  def _set_aside(self, why):
    """Renames the best folder to `best_<old metric>_step<step>` beside it (kept, not
    deleted; a free name if that one is taken) and starts tracking the best afresh.
    `why` ends the warning's first clause."""
    target = writers.free_path(
        f'{self.directory.rstrip("/")}_{self.best["metric"]}_step{self.best["step"]}')
    if jax.process_count() > 1:  # process 0's choice (it renames), for every log
      target = epath.Path(_gather_json(str(target))[0])
    if jax.process_index() == 0 and epath.Path(self.directory).exists():
      epath.Path(self.directory).rename(target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices('gan_jax_best_set_aside')
    logging.warning('The evaluations now %s: kept the best checkpoint so far (step %d, %s '
                    '%.6g) in %s and tracking the best afresh.', why, self.best['step'],
                    self.best['metric'], self.best['value'], target)
    self.best = self._unconfirmed = None

  def _part(self, protocol, metric):
    """What of `protocol` `metric`'s values depend on (None for no protocol)."""
    if protocol is None:
      return None
    others = set(self._EXTRACTORS.values()) - {self._EXTRACTORS.get(metric)}
    return {k: v for k, v in protocol.items() if k not in others}

  def _metric(self, results):
    """The first of METRICS in `results`, or None."""
    return next((k for k in self.METRICS if k in results), None)

  def _record(self, step, results, protocol):
    """Makes the checkpoint of `step` (with evaluation `results`) the best one."""
    metric = self._metric(results)
    self.best = {'step': step, 'metric': metric, 'value': results[metric],
                 'results': results, 'protocol': protocol}
    self._unconfirmed = None  # a best of this run's own steps
    if jax.process_index() == 0:
      writers.write_text_atomic(epath.Path(self.directory) / 'best.json', json.dumps(self.best))

  def update(self, step, state, results, protocol=None):
    """Saves `state` if its metric beats the best so far.

    Args:
      step: the train step of `state`.
      state: the GANState (a collective when several processes run).
      results: the evaluation's {name: float}.
      protocol: what evaluations must share to be compared (a JSON-serialisable
        dict, `Evaluator.comparable`), or None (not checked).

    Returns:
      True when `state` became the best checkpoint.
    """
    metric = self._metric(results)
    if metric is None:
      return False
    if self._unconfirmed is not None and step >= self._unconfirmed[0]:
      best_step, resumed_from = self._unconfirmed
      self._unconfirmed = None
      if step == best_step and results == self.best.get('results'):
        return False  # the same state again (an exact resume): it stays the best
      # Results are gathered, so every process takes the same branch.
      self._set_aside(
          f'follow a run resumed from step {resumed_from}, whose step {best_step} '
          + ('gave other results' if step == best_step else 'was not evaluated again'))
    if self.best is not None and self.best.get('metric') != metric:
      # The evaluation changed (e.g. proxy FD, then FID after a resume with other
      # eval.metrics): the two distances cannot be compared, so the old best is
      # compared by this metric if it was measured, else kept aside, never deleted.
      earlier = (self.best.get('results') or {}).get(metric)
      if earlier is None:
        self._set_aside(f'give {metric}, not {self.best["metric"]}')
      else:
        self.best = {**self.best, 'metric': metric, 'value': earlier}
    if self.best is not None and protocol is not None:
      old, new = self._part(self.best.get('protocol'), metric), self._part(protocol, metric)
      if old is None:  # a record from before protocols were kept: cannot tell
        self._set_aside('record their protocol, which the best so far lacks')
      elif old != new:
        # E.g. a run resumed with more eval.num_samples: a Frechet distance from more
        # samples is lower by itself, so the two cannot be compared.
        self._set_aside(f'use another protocol ({describe_change(old, new)})')
    if self.best is not None and results[metric] >= self.best['value']:
      return False
    saver = Checkpointer(self.directory, max_to_keep=1, async_save=False)
    saver.save(step, state, {'results': results, 'protocol': protocol})
    saver.close()
    self._record(step, results, protocol)
    return True


def describe_change(old, new):
  """'num_fake 1000 -> 10000' for each top-level field two protocol dicts differ in."""
  old, new = old or {}, new or {}
  return ', '.join(f'{k} {json.dumps(old.get(k))} -> {json.dumps(new.get(k))}'
                   for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k))
