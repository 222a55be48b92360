"""A run's workdir: its saved config, the history of accepted config changes, paths.

`config.json` is written once, when the run starts, and never overwritten: it
says how the first checkpoints were trained. Resuming with a different config
compares the two field by field:

  * fields in `FREE_FIELDS` (how long to train, how often to log / sample /
    checkpoint / evaluate, where the data lives, throughput knobs) may change;
  * any other change (loss, learning rates, batch size, ...) is refused unless
    the user passes `--allow_config_change`;
  * a change of the networks' parameter shapes is always refused, and so is a change
    that would apply to no step (fewer steps than the newest checkpoint's; training
    changes to a finished run).

Every accepted change is appended to `config_history.jsonl` with the step it
took effect, and `load_config(workdir)` replays them, so the workdir always
says how its checkpoints were trained. Before the first checkpoint nothing has
been trained, so every change is accepted (and recorded).

A training run holds `train.lock` in its workdir while it runs (`training_lock`), so a
second run started in the same folder stops (within 2 s) instead of writing checkpoints
and records beside the first; the tools that read a run ask it whether one is training
there (`training_run_in`).

Paths may be local or URLs (`gs://...`): everything goes through `etils.epath`.
"""

import contextlib
import datetime
import fcntl
import json
import os
import pathlib
import tempfile
import shlex
import socket
import subprocess
import sys
import time

from absl import logging
from etils import epath
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

import gan_jax
from gan_jax import checkpoint
from gan_jax import data
from gan_jax import defaults
from gan_jax import errors
from gan_jax import parallel
from gan_jax import state as state_lib
from gan_jax import writers
from gan_jax.models import conditional

CONFIG_FILE = 'config.json'
HISTORY_FILE = 'config_history.jsonl'
CHECKPOINTS = 'checkpoints'
# The checkpoint with the lowest FID / proxy FD so far (`checkpoint.BestCheckpoint`).
BEST = 'best'
CLASS_NAMES_FILE = 'class_names.json'
# Held (flock) by the training run in a local workdir; says which process holds it.
LOCK_FILE = 'train.lock'
# The sections every run's config.json has.
_RUN_SECTIONS = ('model', 'train', 'data')
# What a run keeps in its workdir: files, and folders whose contents are its own.
# One line per start of training in the workdir: how the invocation was made.
STARTS_FILE = 'starts.jsonl'
_RECORD_FILES = (CONFIG_FILE, HISTORY_FILE, CLASS_NAMES_FILE, LOCK_FILE, STARTS_FILE,
                 'metrics.jsonl', 'eval.jsonl')
_RECORD_FOLDERS = (CHECKPOINTS, BEST, 'checkpoints_corrupt', 'samples', 'tensorboard')
# An earlier best checkpoint kept aside: best_fid_step4000/, best_fid_step4000_2/.
_SET_ASIDE_BEST = checkpoint.BestCheckpoint.set_aside_pattern(BEST)
# Fields that change neither the networks nor the optimisation, so a resumed run
# may change them freely. train.num_steps is free only with a constant learning
# rate: with a decaying schedule it changes every later learning rate.
FREE_FIELDS = (
    'name', 'train.num_steps', 'train.log_every', 'train.sample_every',
    'train.checkpoint_every', 'train.max_to_keep', 'train.num_sample_images',
    'train.progress_bar', 'data.num_workers', 'data.prefetch', 'data.cache',
    'data.data_dir', 'data.path', 'parallel.mode', 'parallel.cpu_conv_kernels',
    'model.stride2_forms')
FREE_PREFIXES = ('eval.',)


def _overlay(base, saved):
  """The nested dict `base` with every value of the nested dict `saved` over it."""
  merged = dict(base)
  for key, value in saved.items():
    if isinstance(value, dict) and isinstance(merged.get(key), dict):
      merged[key] = _overlay(merged[key], value)
    else:
      merged[key] = value
  return merged


def _set_path(tree, dotted, value):
  *parents, leaf = dotted.split('.')
  for name in parents:
    tree = tree.setdefault(name, {})
  tree[leaf] = value


def _as_json(config):
  """A ConfigDict as the plain dict its JSON file holds (tuples become lists)."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


def _read_json(path):
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise errors.WorkdirError(
        f'{path} is not valid JSON ({e}); the workdir is damaged. Restore the file '
        'from a backup or use another --workdir.') from None


def history(workdir):
  """The accepted config changes of a run, oldest first (a list of dicts).

  Each entry is `{'changes': {field: {'from': old, 'to': new}}, 'step': N, ...}`.

  Raises:
    WorkdirError: a line of `config_history.jsonl` is not such a record.
  """
  path = epath.Path(workdir) / HISTORY_FILE
  if not path.exists():
    return []
  entries = []
  for number, line in enumerate(path.read_text().splitlines(), start=1):
    if not line.strip():
      continue
    try:
      entry = json.loads(line)
    except json.JSONDecodeError:
      entry = None
    changes = entry.get('changes') if isinstance(entry, dict) else None
    if not isinstance(changes, dict) or not all(
        isinstance(change, dict) and 'to' in change for change in changes.values()):
      raise errors.WorkdirError(
          f'{path}, line {number}, is not a config change record (expected '
          '{"changes": {"FIELD": {"from": OLD, "to": NEW}}, "step": N}); the workdir is '
          'damaged. Restore the file from a backup, or mend or delete that line.')
    entries.append(entry)
  return entries


# Reads of the newest checkpoint while a training run replaces them (max_to_keep).
_RESTORE_ATTEMPTS = 5


def restore_state(workdir, step=None, *, best=False):
  """The run's config and its checkpointed state, on the first local device.

  Args:
    workdir: a run folder of `python -m gan_jax.main`.
    step: the checkpoint step to restore (None: the latest).
    best: restore the best checkpoint (`<workdir>/best/`, the lowest FID or proxy FD
      of the evaluations during training) instead of one of `checkpoints/`; with
      `step`, only if it is that step.

  Returns:
    (config, GANState, restored step).

  Raises:
    MissingFileError: no run or no checkpoint in `workdir` (no best one with `best`).
  """
  if step is not None and (isinstance(step, bool) or not isinstance(step, (int, np.integer))):
    raise TypeError(f'step must be an int (a checkpoint step) or None, got {step!r}.')
  config = load_config(workdir)
  folder = os.path.join(workdir, BEST if best else CHECKPOINTS)
  restored, training = None, training_run_in(workdir)
  # Only an existing folder is opened: orbax would create a missing one.
  if epath.Path(folder).exists():
    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    for attempt in range(1, _RESTORE_ATTEMPTS + 1):
      ckpt = checkpoint.Checkpointer(folder, async_save=False, max_to_keep=None,
                                     training_run=training)
      listed = _step_folders(folder)
      try:
        # Read-only: an unreadable checkpoint is skipped, not moved (training may be
        # writing).
        restored = ckpt.restore(state_lib.abstract_state(config, sharding), step=step,
                                move_aside=False)
        break
      except checkpoint.CheckpointError:
        # A training run there may have deleted the listed checkpoints (max_to_keep)
        # while they were read: list them again if the list changed.
        if step is not None or _step_folders(folder) == listed:
          raise
        if attempt == _RESTORE_ATTEMPTS:
          who = f' (a run trains there: {training})' if training else ''
          raise errors.WorkdirError(
              f'The checkpoints of {folder} were replaced while they were read, '
              f'{attempt} times in a row{who}. Try again, or read when the run saves less '
              'often (train.checkpoint_every, train.max_to_keep).') from None
        logging.info('The checkpoints of %s changed while they were read (a run trains '
                     'there?); reading the newest again.', folder)
      finally:
        ckpt.close()
  if restored is None and best:
    raise errors.MissingFileError(
        f'No best checkpoint in {folder}: a run keeps one when it evaluates FID or the '
        'proxy metrics while it trains (config.eval.every, config.eval.metrics). Drop '
        '--best to use the newest checkpoint.')
  if restored is None and training:
    first = min(config.train.checkpoint_every, config.train.num_steps)
    raise errors.MissingFileError(
        f'No checkpoint in {folder} yet: a run is training there ({training}) and saves '
        f'its first at step {first} (train.checkpoint_every); try again then.')
  if restored is None:
    raise errors.MissingFileError(
        f'No checkpoint in {folder} yet; train first with '
        f'python -m gan_jax.main --config=... --workdir={workdir}')
  state, _, restored_step = restored
  return config, state, restored_step


def load_config(workdir):
  """The config a workdir's latest checkpoints were trained with.

  `config.json` laid over `gan_jax.defaults` (so a run saved before a field
  existed gets that field's default, which reproduces the old behaviour), then
  every change of `config_history.jsonl` replayed in order.

  Raises:
    MissingFileError: when the folder holds no run.
    WorkdirError: a record that is damaged or gives a value no run can have.
  """
  path = epath.Path(workdir) / CONFIG_FILE
  if not path.exists():
    raise errors.MissingFileError(
        f'{workdir!r} is not a gan_jax run folder (no {CONFIG_FILE} in it). Pass the '
        '--workdir of a training run (it holds config.json and checkpoints/).')
  saved = _read_json(path)
  missing = [name for name in _RUN_SECTIONS
             if not isinstance(saved, dict) or not isinstance(saved.get(name), dict)]
  if missing:
    # Laid over the defaults, such a file would describe another model, and every
    # checkpoint would look damaged.
    raise errors.WorkdirError(
        f'{path} is not the config of a run (no {", ".join(missing)} section); the '
        'workdir\'s record is damaged. Restore the file from a backup (training writes it '
        'when a run starts), or use another --workdir.')
  values = _overlay(defaults.get_config().to_dict(), saved)
  for entry in history(workdir):
    for field, change in entry['changes'].items():
      _set_path(values, field, change['to'])
  config = ml_collections.ConfigDict(values)
  try:
    defaults.check_types_and_counts(config)
  except errors.ConfigError as e:
    # A hand-edited or damaged record; the full checks stay with training, so that
    # a run saved before a newer check still samples and evaluates.
    raise errors.WorkdirError(
        f'The config saved in {workdir} ({CONFIG_FILE} with {HISTORY_FILE}) is not one a '
        f'run can have: {e} Mend the file that sets it, or restore it from a backup.'
    ) from None
  return config


def check_output_path(workdir, output, flag='--output'):
  """Raises ConfigError when writing `output` would replace a run's records.

  The records are the files and folders training keeps in a workdir (config.json,
  the histories and logs, checkpoints, the best checkpoint and earlier ones kept
  aside, sample grids, TensorBoard events); anything else there (e.g. its `eval/`
  folder) may be written. Checked for `workdir` (None: no such run) and, for local
  paths, for every folder above `output` that holds a run (`is_run_folder`), so one
  run's tools cannot overwrite another's records either.
  Paths are compared after resolving them, so `./W/../W/config.json` counts.
  Remote paths (`gs://...`) are compared as written.
  """
  def resolved(path):
    path = os.fspath(path)
    return path.rstrip('/') if '://' in path else os.path.realpath(path)
  target = resolved(output)
  folders = [resolved(workdir)] if workdir is not None else []
  if '://' not in target:
    folders += [str(p) for p in pathlib.Path(target).parents if is_run_folder(p)]
  for folder in folders:
    relative = target[len(folder):].lstrip('/') if target.startswith(folder + '/') else None
    if relative is None:
      continue
    top = relative.split('/')[0]
    if relative in _RECORD_FILES or top in _RECORD_FOLDERS or _SET_ASIDE_BEST.fullmatch(top):
      raise errors.ConfigError(
          f'{flag}={output} would replace {top!r}, part of the record of the run in '
          f'{folder}; write to another path (e.g. {os.path.join(folder, "eval", "")} '
          'or outside the workdir).')


def _nearest_existing(path):
  """The first of the absolute `path` and its parents that exists (the root does)."""
  return next(p for p in (path, *path.parents) if p.exists())


def check_output_file(output, *, flag, workdir=None):
  """Raises ConfigError unless `output` can be written as a file, before any work.

  Refused: an empty path (an unset shell variable), an existing folder, a path under
  a file, and a run's records (`check_output_path`, for `workdir` and any run above
  `output`). Remote paths are checked for records only.
  """
  if not output:
    raise errors.ConfigError(f'{flag} is empty; give the path of a file to write.')
  output = os.fspath(output)
  if '://' not in output:
    if os.path.isdir(output):
      raise errors.ConfigError(f'{flag}={output} is a folder; give the path of a file '
                               f'(e.g. {os.path.join(output, "result.json")}).')
    above = _nearest_existing(pathlib.Path(os.path.abspath(output)).parent)
    if not above.is_dir():
      raise errors.ConfigError(f'{flag}={output}: {above} is a file, not a folder.')
    check_writable(output, flag=flag)
  check_output_path(workdir, output, flag)


def check_writable(output, *, flag):
  """Raises ConfigError unless a file can be created in the local folder `output` or,
  when it is none, the nearest folder above it (those between are made later), so
  that no permission or read-only file system is found after the work. Remote paths
  pass."""
  output = os.fspath(output)
  if '://' in output:
    return
  path = pathlib.Path(os.path.abspath(output))
  above = _nearest_existing(path)
  if above == path and not path.is_dir():  # an existing file is replaced in its folder
    above = path.parent
  if not above.is_dir():  # a path under a file: `check_output_file` names that
    return
  try:
    handle, probe = tempfile.mkstemp(dir=above, prefix='.gan_jax_write_check-')
  except OSError as e:
    raise errors.ConfigError(f'{flag}={output}: cannot write in {above} '
                             f'({e.strerror or e}); choose another path.') from e
  try:
    os.close(handle)
  finally:
    with contextlib.suppress(OSError):
      os.remove(probe)


def is_run_folder(path):
  """Whether the local folder `path` holds a training run: its config.json beside a
  checkpoints folder, a lock or a metrics log (what `prepare` and training write)."""
  return os.path.isfile(os.path.join(path, CONFIG_FILE)) and any(
      os.path.exists(os.path.join(path, name))
      for name in (CHECKPOINTS, LOCK_FILE, 'metrics.jsonl'))


def checkpoint_steps(workdir):
  """Steps of the finished checkpoints in `<workdir>/checkpoints` (sorted)."""
  return _step_folders(epath.Path(workdir) / CHECKPOINTS)


def _step_folders(folder):
  """Sorted steps of the checkpoint folders (named by their step) in `folder`."""
  folder = epath.Path(folder)
  if not folder.exists():
    return []
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


def config_changes(saved, config):
  """{field: {'from': old, 'to': new}} for every leaf that differs (new fields included)."""
  old, new = defaults.flatten(_as_json(saved)), defaults.flatten(_as_json(config))
  return {field: {'from': old.get(field), 'to': new[field]}
          for field in sorted(new) if old.get(field) != new[field]}


def _is_free(field, config):
  if field == 'train.num_steps':
    return config.optim.schedule == 'constant'
  return field in FREE_FIELDS or field.startswith(FREE_PREFIXES)


def _state_layout(config):
  """(tree structure, leaf shapes and dtypes) of the config's `GANState`: what its
  checkpoints hold, optimiser-state node types included."""
  leaves, treedef = jax.tree_util.tree_flatten(state_lib.abstract_state(config))
  return treedef, [(leaf.shape, str(leaf.dtype)) for leaf in leaves]


def _describe(changes, separator='\n  '):
  return separator.join(f'{field}: saved {c["from"]!r}, now {c["to"]!r}'
                        for field, c in changes.items())


def _make_folder(workdir):
  """epath.Path of `workdir`, created with its parents; WorkdirError when a file is in the way."""
  folder = epath.Path(workdir)
  try:
    folder.mkdir(parents=True, exist_ok=True)
  except (FileExistsError, NotADirectoryError) as e:
    blocking = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()),
                    folder)
    raise errors.WorkdirError(
        f'--workdir={workdir} cannot be a run folder: {blocking} is a file. '
        'Pass another --workdir (a new or existing folder).') from e
  return folder


# How long a starting run waits for train.lock: a tool asking whether a run trains in
# the folder (`training_run_in`) holds it for a moment.
_LOCK_PATIENCE_S = 2.0


def _lock_within(fd, kind, seconds):
  """flock(fd, kind) without blocking, tried for up to `seconds`; True once held."""
  deadline = time.monotonic() + seconds
  while True:
    try:
      fcntl.flock(fd, kind | fcntl.LOCK_NB)
      return True
    except BlockingIOError:
      if time.monotonic() >= deadline:
        return False
      time.sleep(0.05)


def training_run_in(workdir):
  """The training run in progress in `workdir`, as it describes itself in `train.lock`
  (pid, host, start time), or None when none holds the lock (or the folder has no file
  locks: `gs://`). For tools that read a run, to tell a save in progress or a first
  checkpoint still to come from damage."""
  if '://' in os.fspath(workdir):
    return None
  try:
    fd = os.open(os.path.join(os.fspath(workdir), LOCK_FILE), os.O_RDONLY)
  except OSError:
    return None
  try:
    if _lock_within(fd, fcntl.LOCK_SH, 0):
      fcntl.flock(fd, fcntl.LOCK_UN)
      return None
    return os.pread(fd, 300, 0).decode(errors='replace').strip() or 'another process'
  except OSError:
    return None  # a file system without flock (ENOLCK, ENOSYS): not known
  finally:
    os.close(fd)


@contextlib.contextmanager
def training_lock(workdir):
  """Holds `<workdir>/train.lock` for the duration of a training run.

  Two runs in one folder would rotate each other's checkpoints away (and then
  report them as damaged) and interleave their records, so the second stops here.
  The lock is an exclusive `flock` on the file, which the system drops when the
  process ends, however it ends: a killed run leaves no stale lock. The file
  itself stays, holding the last holder's pid, host and start time. Only local
  folders are locked (a `gs://` workdir has no file locks; run one job per
  folder there). In a multi-process run only process 0 takes it
  (`train._training_lock_of_every_process`).

  Raises:
    WorkdirError: another process holds the lock, or `workdir` cannot be a folder.
  """
  folder = _make_folder(workdir)
  if '://' in os.fspath(workdir):
    yield
    return
  check_not_a_foreign_folder(workdir)
  fd = os.open(os.fspath(folder / LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
  try:
    if not _lock_within(fd, fcntl.LOCK_EX, _LOCK_PATIENCE_S):
      holder = os.pread(fd, 300, 0).decode(errors='replace').strip() or 'another process'
      raise errors.WorkdirError(
          f'The workdir {workdir} is in use by another training run ({holder}); two runs in '
          'one folder would overwrite each other\'s checkpoints. Wait for it to finish or '
          'stop it, or pass another --workdir.') from None
    started = datetime.datetime.now().astimezone().isoformat(timespec='seconds')
    os.ftruncate(fd, 0)
    os.pwrite(fd, f'pid {os.getpid()} on {socket.gethostname()}, started {started}\n'.encode(), 0)
    yield
  finally:
    os.close(fd)  # drops the lock


_SOURCE_TREE_MARKERS = ('.git', 'pyproject.toml', 'setup.py')
_IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.webp', '.tif', '.tiff')


def check_not_a_foreign_folder(workdir):
  """Raises WorkdirError when the local folder `workdir` holds no run (no config.json)
  but looks like something else: a source tree (a `.git`, pyproject.toml, setup.py) or a
  folder of images (the data, given as --workdir by mistake). A new run would write its
  checkpoints, samples and records among those files."""
  path = os.fspath(workdir)
  if not os.path.isdir(path) or os.path.exists(os.path.join(path, CONFIG_FILE)):
    return
  names = os.listdir(path)
  source = [name for name in _SOURCE_TREE_MARKERS if name in names]
  images = [name for name in names if name.lower().endswith(_IMAGE_SUFFIXES)]
  if source or images:
    what = (f'a source tree ({", ".join(source)})' if source else
            f'{len(images)} image file(s) such as {images[0]} (a data folder?)')
    raise errors.WorkdirError(
        f'--workdir={workdir} holds no run but {what}; a run would write its checkpoints, '
        'samples and records among those files. Pass a new or empty folder, e.g. '
        '--workdir=runs/NAME.')


def check_outside_the_data(data_config, workdir):
  """Raises WorkdirError when the local `workdir` is, or lies inside, the image folder
  the run trains on: the folder is read recursively, so its sample grids would join
  the training data (as a class of their own for a conditional run) when it resumes."""
  # No path yet is the data source's error to report (it says how to give one); here
  # '' would resolve to the current folder, holding every relative workdir.
  if data_config.source != 'image_folder' or '://' in os.fspath(workdir) or (
      '://' in str(data_config.path)) or not str(data_config.path):
    return
  data = os.path.realpath(os.path.expanduser(str(data_config.path)))
  run = os.path.realpath(os.fspath(workdir))
  if run == data or run.startswith(data.rstrip(os.sep) + os.sep):
    raise errors.WorkdirError(
        f'--workdir={workdir} lies inside the image folder the run trains on '
        f'(config.data.path={data_config.path}), which is read with its sub-folders: the '
        "run's sample grids would become training images. Pass a --workdir outside it.")


def prepare(config, workdir, *, allow_changes=False, fields_not_read=None):
  """Creates the workdir or checks that `config` may continue the run in it.

  Args:
    config: the config of this invocation.
    workdir: the run folder (local path or URL).
    allow_changes: accept changes of training fields (`--allow_config_change`).
    fields_not_read: None, or `config_check.fields_not_read`: (config, fields) -> the
      fields among them that change nothing in that config. A change of a field that
      neither the saved config nor `config` reads is no change (a run saved with a
      setting refused since, e.g. an optimiser field its optimiser ignores, resumes
      without it).

  Returns:
    The accepted changes, {'changes': {field: {'from', 'to'}}, 'accepted': why},
    or None when nothing changed; record them with `record_changes` once the
    resumed step is known.

  Raises:
    WorkdirError: when the workdir's run cannot be continued with `config`.
  """
  folder = _make_folder(workdir)
  path = folder / CONFIG_FILE
  accepted = None
  # Judged on process 0's view, so that every process judges the resume alike.
  exists, newest = parallel.from_process_zero(
      (path.exists(), (checkpoint_steps(workdir) or [-1])[-1]))
  if not exists and newest >= 0:
    # Without the record nothing says how these checkpoints were trained: training
    # on would take this config for theirs, changed loss or rates included.
    raise errors.WorkdirError(
        f'{workdir} holds checkpoints (the newest of step {newest}) but no {CONFIG_FILE}, '
        'the record of the config they were trained with, so it cannot be resumed. '
        f'Restore {CONFIG_FILE} (and {HISTORY_FILE}, if the run had one) from a backup or '
        'from the run the checkpoints were copied from, or use another --workdir.')
  if exists:
    saved = load_config(workdir)
    changes = config_changes(saved, config)
    if changes and fields_not_read is not None:
      unread = fields_not_read(saved, changes) & fields_not_read(config, changes)
      changes = {f: c for f, c in changes.items() if f not in unread}
    trained = newest >= 0
    if changes:
      accepted = {'changes': changes, 'accepted': 'before the first checkpoint'}
    if changes and trained:
      model_changes = {f: c for f, c in changes.items() if f.startswith('model.')}
      # Free fields never change what a checkpoint holds: only other changes cost a trace.
      same_state = (all(_is_free(f, config) for f in changes)
                    or _state_layout(saved) == _state_layout(config))
      if model_changes and not same_state:
        raise errors.WorkdirError(
            f'The workdir {workdir} holds a run of a different model, so it cannot be '
            'resumed with this config:\n  ' + _describe(model_changes) +
            '\nUse another --workdir, or the config the run was started with.')
      # Another optimiser, or historical averaging switched on or off, changes what a
      # checkpoint holds: restoring would fail on every checkpoint, none of them damaged.
      if not same_state:
        raise errors.WorkdirError(
            f'The checkpoints in {workdir} hold a training state (optimiser states, '
            'averages) that this config cannot continue, even with --allow_config_change:'
            '\n  ' + _describe(changes) + '\nUse another --workdir, or the config the run '
            'was started with.')
      # After the two above: raising num_steps would not make another model resumable.
      _check_some_step_is_left(workdir, config, changes, newest)
      blocked = {f: c for f, c in changes.items() if not _is_free(f, config)}
      if blocked and not allow_changes:
        why_steps = (f'\n(optim.schedule={config.optim.schedule!r} sets every learning rate '
                     'from train.num_steps, so more steps change the rates of the steps '
                     'already taken; only a constant schedule may add steps freely.)'
                     if 'train.num_steps' in blocked else '')
        raise errors.WorkdirError(
            f'The workdir {workdir} was trained with a different config; resuming with '
            'this one would change how its checkpoints are trained:\n  ' +
            _describe(blocked) + why_steps + '\nUse another --workdir, the config the run was '
            'started with, or --allow_config_change to continue anyway (the change is '
            f'recorded in {HISTORY_FILE}).')
      accepted['accepted'] = '--allow_config_change' if blocked else 'free fields'
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('gan_jax_workdir_checked')
  if jax.process_index() == 0 and not path.exists():
    writers.write_text_atomic(path, config.to_json_best_effort(indent=2, sort_keys=True))
  return accepted


def _check_some_step_is_left(workdir, config, changes, newest):
  """Refuses changes that would apply to no step: a run resumed with fewer steps than
  it has trained (a sweep over `--config.*` in one default workdir lands here) trains
  nothing, and a recorded change would make `load_config` name settings no step was
  trained with."""
  num_steps = config.train.num_steps
  fewer = num_steps < newest
  free = all(_is_free(f, config) for f in changes)
  if not fewer and (num_steps > newest or free):
    return
  raise errors.WorkdirError(
      f'The newest checkpoint of the run in {workdir} is step {newest}, and this config '
      f'(train.num_steps={num_steps}) would train no step after it, so its changes apply '
      'to no step:\n  ' + _describe(changes) + '\nUse another --workdir for a new run '
      f'(each point of a sweep needs its own), or raise train.num_steps above {newest} '
      'to continue this one' + ('.' if free else ' (with --allow_config_change).'))


def record_start(workdir, *, step):
  """Appends how this training invocation started to `<workdir>/starts.jsonl` (process
  0 only), what a table of results needs beside the config to be reproduced: the time,
  the step it starts from, the command line (`sys.argv`), gan_jax's version and the
  git commit of its source ('+dirty' with uncommitted changes; None outside a
  checkout), JAX's version and backend, the device and process counts, and the host."""
  if jax.process_index() != 0:
    return
  entry = dict(
      time=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
      step=int(step), argv=list(sys.argv), gan_jax=gan_jax.__version__,
      commit=source_commit(), jax=jax.__version__, backend=jax.default_backend(),
      devices=jax.device_count(), processes=jax.process_count(), host=socket.gethostname())
  writers.append_line(epath.Path(workdir) / STARTS_FILE, json.dumps(entry, sort_keys=True))


def source_commit():
  """The git commit of the gan_jax source that is running, with '+dirty' when tracked
  files have uncommitted changes; None when it is not a git checkout of its own (an
  installed copy inside some other repository does not count)."""
  root = pathlib.Path(__file__).resolve().parent.parent
  git = ['git', '-C', str(root)]
  try:
    head = subprocess.run(git + ['rev-parse', '--show-toplevel', 'HEAD'], capture_output=True,
                          text=True, timeout=10, check=False)
    lines = head.stdout.split()
    if head.returncode or len(lines) != 2 or pathlib.Path(lines[0]).resolve() != root:
      return None
    status = subprocess.run(git + ['status', '--porcelain', '--untracked-files=no'],
                            capture_output=True, text=True, timeout=10, check=False)
  except (OSError, subprocess.SubprocessError):
    return None
  return lines[1] + ('+dirty' if status.stdout.strip() else '')


def record_changes(workdir, accepted, *, step):
  """Appends accepted config changes to `config_history.jsonl` (process 0 only).

  Args:
    workdir: the run folder.
    accepted: what `prepare` returned (None records nothing).
    step: the step from which the changes apply (the resumed checkpoint's step).
  """
  if not accepted or jax.process_index() != 0:
    return
  # Said in the log too: a resume that quietly drops, say, the evaluation flags of the
  # first command would otherwise show it only in the history file.
  logging.warning('Continuing %s at step %d with changed settings (%s): %s', workdir, step,
                  accepted['accepted'], _describe(accepted['changes'], '; '))
  entry = dict(accepted, step=int(step),
               time=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'))
  writers.append_line(epath.Path(workdir) / HISTORY_FILE, json.dumps(entry, sort_keys=True))



def suggested_metrics(config):
  """The `--metrics` of the evaluation a finished run of `config` should suggest.

  The config's own `eval.metrics` when it names any; otherwise what works offline
  for its data: 'accuracy' for a semi-supervised discriminator (on data with a
  held-out split: not an image folder), 'proxy' (and 'cas' for a class-conditional
  model) on the digits, 'proxy' on toy data, and 'fid' (which needs the Inception
  weights) for image data sets.
  """
  if config.eval.metrics:
    return config.eval.metrics
  if (conditional.is_semi_supervised(config.model)
      and config.data.source != 'image_folder'):  # (no held-out split to score D on)
    return 'accuracy'
  if config.data.source == 'digits':
    return 'proxy,cas' if config.model.num_classes else 'proxy'
  if config.data.source == 'toy':
    return 'proxy'
  return 'fid'


def summary(workdir, *, seconds, stopped=None):
  """A few lines for the end of a run: where its outputs are and what to run next.

  Args:
    workdir: the run folder.
    seconds: wall time of this invocation.
    stopped: the reason the run stopped early (a signal, with how to resume), or
      None when it finished.

  Returns:
    The text to print.
  """
  folder = epath.Path(workdir)
  steps = checkpoint_steps(workdir)
  grids = sorted((folder / 'samples').glob('*.png')) if (folder / 'samples').exists() else []
  minutes, secs = divmod(int(round(seconds)), 60)
  head = stopped or f'Finished: {workdir} is at step {steps[-1] if steps else 0}.'
  lines = [f'{head} ({minutes} min {secs} s)', 'Outputs:']
  outputs = []
  if steps:
    outputs.append(('checkpoints', f'{folder / CHECKPOINTS} (steps {", ".join(map(str, steps))})'))
  if grids:
    outputs.append(('samples', grids[-1]))
  for name in ('metrics.jsonl', 'eval.jsonl', BEST, HISTORY_FILE):
    if (folder / name).exists():
      outputs.append((name, folder / name))
  width = max((len(name) for name, _ in outputs), default=0)
  lines += [f'  {name:<{width}}  {where}' for name, where in outputs]
  config = load_config(workdir)
  metrics = suggested_metrics(config)
  # Quoted for the shell, so that the commands paste as they are (a path with spaces).
  quoted = shlex.quote(str(workdir))
  evaluate = f'  python -m gan_jax.evaluate --workdir={quoted} --metrics={metrics}'
  if metrics != 'accuracy':  # the only metric that classifies real images, not samples
    evaluate += f' --num_samples={config.eval.num_samples}'
  lines += ['Next:',
            f'  python -m gan_jax.sample --workdir={quoted} --num_samples=64 --output=grid.png',
            evaluate,
            f"  tensorboard --logdir={quoted}   (pip install -e '.[tensorboard]')"]
  return '\n'.join(lines)


def saved_class_names(workdir):
  """The class names a conditional run saved (`record_class_names`), class i at
  position i; None when the workdir has none (an unconditional run, or none yet)."""
  path = epath.Path(workdir) / CLASS_NAMES_FILE
  if not path.exists():
    return None
  try:
    names = _read_class_names(path)
  except errors.WorkdirError as e:
    # Names only label sample files; the class ids stay right without them.
    logging.warning('%s Samples are numbered by class id instead of named.', e)
    return None
  return names


def _read_class_names(path):
  names = _read_json(path)
  if not (isinstance(names, list) and all(isinstance(name, str) for name in names)):
    raise errors.WorkdirError(
        f'{path} is not a list of class names; the workdir is damaged. Restore the file '
        'from a backup, or delete it if the class folders have not changed since the '
        'run started.')
  return names


def check_class_count(config):
  """Checks a conditional model's class count against its data's classes.

  Reads metadata or lists files only (`data.class_names`), so a run can call it
  before its data are decoded and before its workdir records anything.

  Returns:
    list[str], the data's class names (class i at position i).

  Raises:
    ConfigError: when `config.model.num_classes` differs from the data's classes, or
      the data have none.
  """
  names = data.class_names(config.data)
  if len(names) != config.model.num_classes:
    raise errors.ConfigError(
        f'config.model.num_classes={config.model.num_classes}, but the data '
        f'({config.data.source}) has {len(names)} classes: {names[:12]}. Set '
        f'--config.model.num_classes={len(names)}.')
  return names


def record_class_names(workdir, names):
  """Saves a conditional run's class names, as `check_class_count` returned them.

  Writes `<workdir>/class_names.json` (class i at position i; process 0 only) so
  that samples of class i can be named without the data.

  Args:
    workdir: the run folder.
    names: list[str], the data's class names (class i at position i).

  Raises:
    WorkdirError: when a trained run's saved names differ from `names` (a renamed,
      added or removed class folder would give the same ids to other classes).

  Returns:
    `names`.
  """
  path = epath.Path(workdir) / CLASS_NAMES_FILE
  if checkpoint_steps(workdir) and path.exists():
    saved = _read_class_names(path)
    if saved != names:
      changed = [(i, a, b) for i, (a, b) in enumerate(zip(saved, names)) if a != b]
      raise errors.WorkdirError(
          f'The run in {workdir} was trained with the classes of {CLASS_NAMES_FILE}, and '
          f'the data now names them differently (id, saved, now: {changed[:5]}), so class '
          'ids would change meaning. Restore the class folders\' names, or use another '
          '--workdir.')
  if jax.process_index() == 0:
    writers.write_text_atomic(path, json.dumps(names))
  return names
