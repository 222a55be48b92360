"""Outputs of a run on the host: TensorBoard events, metrics.jsonl, PNG images.

Paths go through `etils.epath`, so a workdir may be local or remote (`gs://...`,
with the `[gcs]` extra); remote files are rewritten whole instead of appended.
Only process 0 writes (`MetricWriter(enabled=jax.process_index() == 0)`); the
others get a writer that does nothing, so callers need no `if`.
"""

import io
import json
import math

from etils import epath
import numpy as np
from PIL import Image


def image_grid(images, *, columns=None, padding=2):
  """Tiles images into one grid.

  Args:
    images: f32[N, H, W, C] in [-1, 1] (C = 1 or 3).
    columns: images per row (default: ceil(sqrt(N))).
    padding: pixels of black border between images.

  Returns:
    uint8[rows*(H+p)+p, columns*(W+p)+p, 3] RGB image.
  """
  images = np.asarray(images, np.float32)
  if images.ndim != 4:
    raise ValueError(f'image_grid expects f32[N, H, W, C], got shape {images.shape}.')
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
  """Writes a uint8[H, W, 3] (or [H, W]) image to `path` (local or remote), creating folders."""
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  buffer = io.BytesIO()
  Image.fromarray(np.asarray(image)).save(buffer, format='PNG')
  path.write_bytes(buffer.getvalue())


def samples_to_image(samples, *, reference=None):
  """A PNG-ready picture of samples: an image grid, or a scatter plot for 2-D points."""
  samples = np.asarray(samples)
  if samples.ndim == 2:
    return scatter_image(samples, reference=reference)
  return image_grid(samples)


class MetricWriter:
  """Writes scalars and images to TensorBoard and `metrics.jsonl` in a workdir.

  Args:
    workdir: the run's folder; events go to `<workdir>/tensorboard`.
    enabled: False on processes other than 0 (then every call does nothing).
  """

  def __init__(self, workdir, *, enabled=True):
    self.enabled = enabled
    self._tb = None
    self._jsonl = None
    if not enabled:
      return
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    workdir = epath.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    self._tb = SummaryWriter(str(workdir / 'tensorboard'))
    path = workdir / 'metrics.jsonl'
    if '://' in str(workdir):
      # Object stores cannot append: keep the lines and rewrite the file on flush.
      self._jsonl = _RewrittenFile(path)
    else:
      self._jsonl = open(path, 'a', encoding='utf-8')

  def write_scalars(self, step, scalars):
    """Logs {name: float} at `step` to TensorBoard and one JSON line."""
    if not self.enabled:
      return
    for name, value in scalars.items():
      self._tb.add_scalar(name, value, step)
    record = {'step': int(step), **{k: float(v) for k, v in scalars.items()}}
    self._jsonl.write(json.dumps(record) + '\n')
    self._jsonl.flush()

  def write_image(self, step, name, image):
    """Logs a uint8[H, W, 3] image to TensorBoard."""
    if self.enabled:
      self._tb.add_image(name, np.asarray(image), step, dataformats='HWC')

  def flush(self):
    if self.enabled:
      self._tb.flush()
      self._jsonl.flush()

  def close(self):
    if self.enabled:
      self._tb.close()
      self._jsonl.close()


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
