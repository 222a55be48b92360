"""Outputs of a run on the host: TensorBoard events, metrics.jsonl, eval.jsonl, PNG images,
and the small JSON records a workdir keeps (written whole: `write_text_atomic`).

Paths go through `etils.epath`, so a workdir may be local or remote (`gs://...`,
with the `[gcs]` extra); remote files are rewritten whole instead of appended.
Only process 0 writes (`MetricWriter(enabled=jax.process_index() == 0)`); the
others get a writer that does nothing, so callers need no `if`.
"""

import io
import json
import logging
import math
import os
import time
import uuid

from etils import epath
import numpy as np
from PIL import Image
from tensorboardX import event_file_writer
from tensorboardX import summary as tb_summary
from tensorboardX.proto import event_pb2

# Sample grids are upscaled (nearest neighbour) until each tile is at least this
# many pixels wide, so that 8x8 digits are visible in an image viewer.
MIN_TILE_PX = 48


def append_line(path, line):
  """Appends one line of text to a file (created if missing), local or remote.

  Object stores (gs://) cannot append, so there the file is rewritten whole;
  for the small, rarely written files this is used for that costs little.
  """
  path = epath.Path(path)
  if '://' in str(path):
    previous = path.read_text() if path.exists() else ''
    path.write_text(previous + line + '\n')
  else:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'a', encoding='utf-8') as f:
      f.write(line + '\n')


def free_path(stem, suffix=''):
  """The first of `<stem><suffix>`, `<stem>_2<suffix>`, `<stem>_3<suffix>`... that does
  not exist (an epath.Path): where a record is kept aside without replacing another."""
  path, n = epath.Path(f'{stem}{suffix}'), 1
  while path.exists():
    n += 1
    path = epath.Path(f'{stem}_{n}{suffix}')
  return path


def write_text_atomic(path, text):
  """Writes `text` to `path` whole: a reader, or a run killed mid-write, sees the
  old file (or none) or the new one, never part of it.

  Local files are written to a temporary file beside `path`, then renamed over
  it; object stores (gs://) replace an object whole already.
  """
  _write_whole(path, text.encode('utf-8'))


def _write_whole(path, content):
  """`write_text_atomic` for bytes."""
  write_whole_with(path, lambda f: f.write(content))


def write_whole_with(path, write):
  """Creates or replaces the file `path` (local or remote, folders created) whole with
  what `write(f)` writes to a binary file `f`: a reader, or a run killed mid-write,
  sees the old file (or none) or the new one, never part of it.

  Local files are written to a temporary file beside `path` (streamed, no copy in
  memory), then renamed over it; object stores (gs://) replace an object whole, so
  there the content is built in memory first.
  """
  path = epath.Path(path)
  if '://' in str(path):
    buffer = io.BytesIO()
    write(buffer)
    path.write_bytes(buffer.getvalue())
    return
  path.parent.mkdir(parents=True, exist_ok=True)
  # A unique name opened with 'xb' (not tempfile.mkstemp, whose files are private to
  # their owner): the file gets the permissions any other output does under the umask.
  tmp = os.path.join(path.parent, f'.{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp')
  try:
    with open(tmp, 'xb') as f:
      write(f)
    os.replace(tmp, path)
  except BaseException as e:
    if os.path.exists(tmp):
      os.remove(tmp)
    if isinstance(e, OSError) and e.filename == tmp:
      # The user asked for `path`; the temporary name would only puzzle them.
      raise type(e)(e.errno, e.strerror, str(path)) from None
    raise


def _step_of(line):
  """The 'step' of one JSON-lines record: an int, None for a record without one,
  or `ValueError` when the line is not JSON."""
  try:
    record = json.loads(line)
  except json.JSONDecodeError as e:
    raise ValueError(line) from e
  step = record.get('step') if isinstance(record, dict) else None
  return step if isinstance(step, int) else None


def logged_steps(path):
  """The set of 'step' values in a JSON-lines log (empty if the file is missing;
  lines that do not parse are skipped)."""
  path = epath.Path(path)
  steps = set()
  for line in path.read_text().splitlines() if path.exists() else ():
    try:
      steps.add(_step_of(line))
    except ValueError:
      continue
  return steps - {None}


def drop_lines_after(path, step):
  """Drops the lines of a JSON-lines log whose 'step' is above `step`.

  A torn last line (a run killed while writing it) is dropped too; other lines
  that do not parse are kept. The file is rewritten whole, and only when a line
  goes.

  Args:
    path: a `metrics.jsonl` / `eval.jsonl` (nothing happens if it is missing).
    step: the last step to keep.

  Returns:
    The number of lines dropped.
  """
  path = epath.Path(path)
  if not path.exists():
    return 0
  lines = path.read_text().splitlines()
  kept = []
  for number, line in enumerate(lines, start=1):
    try:
      line_step = _step_of(line)
    except ValueError:
      line_step = None if number < len(lines) else math.inf  # a torn last line goes
    if line_step is None or line_step <= step:
      kept.append(line)
  dropped = len(lines) - len(kept)
  if dropped:
    write_text_atomic(path, ''.join(line + '\n' for line in kept))
    logging.info('Dropped %d line(s) after step %d from %s: the resumed run logs those '
                 'steps again.', dropped, step, path)
  return dropped


def image_grid(images, *, columns=None, padding=2, min_tile=MIN_TILE_PX):
  """Tiles images into one grid, upscaling small images to a viewable size.

  Args:
    images: f32[N, H, W, C] in [-1, 1] (C = 1 or 3).
    columns: images per row (default: ceil(sqrt(N))).
    padding: pixels of black border between images.
    min_tile: small images are repeated by the smallest integer factor s that
      makes s * W >= min_tile (nearest neighbour, so pixels stay sharp).

  Returns:
    uint8[rows*(s*H+p)+p, columns*(s*W+p)+p, 3] RGB image.
  """
  images = np.asarray(images, np.float32)
  if images.ndim != 4:
    raise ValueError(f'image_grid expects f32[N, H, W, C], got shape {images.shape}.')
  scale = max(1, -(-min_tile // images.shape[2]))
  if scale > 1:
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
  n, h, w, c = images.shape
  if c == 1:
    images = np.repeat(images, 3, axis=-1)
  columns = columns or int(math.ceil(math.sqrt(n)))
  rows = int(math.ceil(n / columns))
  grid = np.zeros((rows * (h + padding) + padding, columns * (w + padding) + padding, 3),
                  np.uint8)
  pixels = np.round((np.clip(images, -1, 1) + 1) * 127.5).astype(np.uint8)
  for i in range(n):
    r, col = divmod(i, columns)
    top, left = padding + r * (h + padding), padding + col * (w + padding)
    grid[top:top + h, left:left + w] = pixels[i]
  return grid


def scatter_image(points, *, reference=None, extent=None, size=400):
  """Rasterises 2-D points (blue) over optional reference points (red) without matplotlib.

  Args:
    points: f32[N, 2] generated points.
    reference: optional f32[M, 2] real points drawn underneath.
    extent: half-width of the square view centred at 0 (default from the data).
    size: output side in pixels.

  Returns:
    uint8[size, size, 3] RGB image on a white background.
  """
  points = np.asarray(points, np.float64)
  every = points if reference is None else np.concatenate([points, reference])
  if extent is None:
    extent = float(np.nanmax(np.abs(every))) * 1.1 if every.size else 1.0
    extent = max(extent, 1e-3) if np.isfinite(extent) else 1.0
  img = np.full((size, size, 3), 255, np.uint8)

  def draw(pts, color, radius):
    if pts is None or not len(pts):
      return
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    cols = ((pts[:, 0] + extent) / (2 * extent) * (size - 1)).round().astype(int)
    rows = ((extent - pts[:, 1]) / (2 * extent) * (size - 1)).round().astype(int)
    for dr in range(-radius, radius + 1):
      for dc in range(-radius, radius + 1):
        r, c = rows + dr, cols + dc
        keep = (r >= 0) & (r < size) & (c >= 0) & (c < size)
        img[r[keep], c[keep]] = color

  draw(None if reference is None else np.asarray(reference, np.float64), (220, 60, 60), 1)
  draw(points, (40, 90, 220), 1)
  mid = (size - 1) // 2
  img[mid, :] = np.minimum(img[mid, :], 200)
  img[:, mid] = np.minimum(img[:, mid], 200)
  return img


def save_png(path, image):
  """Writes a uint8[H, W, 3] (or [H, W]) image to `path` (local or remote, whole),
  creating folders."""
  buffer = io.BytesIO()
  Image.fromarray(np.asarray(image)).save(buffer, format='PNG')
  _write_whole(path, buffer.getvalue())  # a killed run leaves no half-written grid


def save_npz(path, **arrays):
  """Writes named arrays to an `.npz` file whole (local or remote), creating folders: a
  run killed mid-write leaves the old file (or none), never a truncated archive."""
  write_whole_with(path, lambda f: np.savez(f, **arrays))


def samples_to_image(samples, *, reference=None, columns=None):
  """A PNG-ready picture of samples: an image grid, or a scatter plot for 2-D points.

  Args:
    samples: f32[N, H, W, C] images in [-1, 1], or f32[N, 2] points.
    reference: optional f32[M, 2] real points under a scatter plot.
    columns: images per grid row (default: a square grid).

  Returns:
    uint8[h, w, 3].
  """
  samples = np.asarray(samples)
  if samples.ndim == 2:
    return scatter_image(samples, reference=reference)
  return image_grid(samples, columns=columns)


class EventFile:
  """A TensorBoard event file written in the caller's thread.

  tensorboardX's `SummaryWriter` hands events to a background thread through a
  queue, and its `flush` does not wait for that queue, so a run killed after a
  flush could still lose events logged before it. Here every event reaches the
  file's buffer before the call returns, and `flush` puts them on disk.

  Args:
    logdir: the folder (created if missing; local or remote as tensorboardX allows).
    purge_step: a resumed run's first step: TensorBoard then hides the events of
      this and later steps written before (a killed attempt's); None for a new run.
  """

  # Events also reach the disk (or the object store) at least this often, so that a
  # live TensorBoard follows the run between checkpoints.
  FLUSH_SECONDS = 30.0

  def __init__(self, logdir, *, purge_step=None):
    self._flushed = time.monotonic()
    epath.Path(logdir).mkdir(parents=True, exist_ok=True)
    # tensorboardX names the file by the second it was opened, and a writer opened
    # in the same second (a quick resume) would overwrite it: the nanoseconds keep
    # the names apart, in the order TensorBoard reads them (sorted).
    self._file = event_file_writer.EventsWriter(os.path.join(str(logdir), 'events'),
                                                filename_suffix=f'.{time.time_ns()}')
    if purge_step is not None:
      self._add(event_pb2.Event(session_log=event_pb2.SessionLog(
          status=event_pb2.SessionLog.START)), purge_step)

  def _add(self, event, step):
    event.wall_time = time.time()
    event.step = int(step)
    self._file.write_event(event)
    if time.monotonic() - self._flushed > self.FLUSH_SECONDS:
      self.flush()

  def scalar(self, tag, value, step):
    """Logs a float at `step`."""
    self._add(event_pb2.Event(summary=tb_summary.scalar(tag, float(value))), step)

  def image(self, tag, image, step):
    """Logs a uint8[H, W, 3] image at `step`."""
    self._add(event_pb2.Event(summary=tb_summary.image(tag, np.asarray(image),
                                                       dataformats='HWC')), step)

  def flush(self):
    """Puts every event logged so far on disk."""
    self._file.flush()
    self._flushed = time.monotonic()

  def close(self):
    """Flushes and closes the file."""
    self._file.close()


class MetricWriter:
  """Writes scalars and images to TensorBoard, `metrics.jsonl` and `eval.jsonl`.

  Files are opened on the first write, so a rerun of a finished run (which
  trains nothing) adds no empty event file. A run resumed from the checkpoint of
  `start_step` logs the steps after it again, so the lines that a killed run wrote
  for them are dropped from metrics.jsonl and eval.jsonl, and TensorBoard hides
  their events (`purge_step`): the record reads like an uninterrupted run's. So does
  a run that starts again from step 0 (killed before its first checkpoint).

  Args:
    workdir: the run's folder; events go to `<workdir>/tensorboard`.
    enabled: False on processes other than 0 (then every call does nothing).
    start_step: the step the run resumes from (0 for a new run).
  """

  def __init__(self, workdir, *, enabled=True, start_step=0):
    self.enabled = enabled
    self._workdir = epath.Path(workdir)
    self._start_step = int(start_step)
    self._tb = None
    self._jsonl = None
    if enabled:
      for name in ('metrics.jsonl', 'eval.jsonl'):
        drop_lines_after(self._workdir / name, self._start_step)

  def _open(self):
    if self._tb is None:
      self._workdir.mkdir(parents=True, exist_ok=True)
      self._tb = EventFile(self._workdir / 'tensorboard', purge_step=self._start_step + 1)
      path = self._workdir / 'metrics.jsonl'
      if '://' in str(path):
        # Object stores cannot append: keep the lines and rewrite the file on flush.
        self._jsonl = _RewrittenFile(path)
      else:
        self._jsonl = open(path, 'a', encoding='utf-8')

  def write_scalars(self, step, scalars):
    """Logs {name: float} at `step` to TensorBoard and one line of metrics.jsonl."""
    if not self.enabled:
      return
    self._open()
    for name, value in scalars.items():
      self._tb.scalar(name, value, step)
    record = {'step': int(step), **{k: float(v) for k, v in scalars.items()}}
    self._jsonl.write(json.dumps(record) + '\n')
    self._jsonl.flush()

  def write_eval(self, step, results, protocol=None):
    """Logs evaluation results as `eval/<name>` scalars and one line of eval.jsonl.

    The line is written last, once the events are on disk: a resumed run takes the
    line as the mark that the evaluation of `step` is complete. `protocol` (a
    JSON-serialisable dict, e.g. `Evaluator.comparable`: how many images, which
    split) goes into the line as 'protocol' when given, so that values a resumed
    run measured otherwise can be told apart.
    """
    if not self.enabled:
      return
    self._open()
    for name, value in results.items():
      self._tb.scalar(f'eval/{name}', value, step)
    self._tb.flush()
    record = {'step': int(step), **results}
    if protocol is not None:
      record['protocol'] = protocol
    append_line(self._workdir / 'eval.jsonl', json.dumps(record))

  def write_image(self, step, name, image):
    """Logs a uint8[H, W, 3] image to TensorBoard and flushes it to disk."""
    if self.enabled:
      self._open()
      self._tb.image(name, image, step)
      self._tb.flush()

  def flush(self):
    """Puts every TensorBoard event logged so far on disk (before a checkpoint: a run
    resumed from it never logs those steps again)."""
    if self._tb is not None:
      self._tb.flush()

  def close(self):
    """Flushes and closes the files (if any were opened)."""
    if self._tb is not None:
      self._tb.close()
      self._jsonl.close()
      self._tb = self._jsonl = None


class _RewrittenFile:
  """A write/flush/close file for object stores: every flush rewrites the whole file."""

  def __init__(self, path):
    self._path = path
    self._text = path.read_text() if path.exists() else ''

  def write(self, text):
    self._text += text

  def flush(self):
    self._path.write_text(self._text)

  def close(self):
    self.flush()
