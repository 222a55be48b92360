"""What the training loop does every so many steps: log metrics, draw sample grids.

`is_time(step, every, num_steps)` is the loop's one schedule rule: every
`every` steps and always at the last step. `MetricLogger` fetches a log step's
metrics one step late (so the device never waits for the host) and stops the
run on the first non-finite loss; `SampleGrids` draws the fixed-z grids of the
EMA generator.
"""

import logging
import time

from etils import epath
import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from gan_jax import data
from gan_jax import ema as ema_lib
from gan_jax import errors
from gan_jax import models
from gan_jax import parallel
from gan_jax import step as step_lib
from gan_jax import writers


class NonFiniteLossError(errors.UserError, FloatingPointError):
  """A loss became NaN or infinite; the run stopped without saving that state (a
  `UserError`: the command line prints its message, not a traceback)."""


def is_time(step, every, num_steps):
  """Whether a periodic action runs after `step`: every `every` steps (0 = never
  periodically) and always after the last step `num_steps`."""
  return step == num_steps or (every > 0 and step % every == 0)


class MetricLogger:
  """Logs the metrics of log steps to the writer, the log and the progress bar.

  Metrics stay on the device; a log step's values are fetched at the next step
  (while the device works on it). A device-side flag keeps the first step
  whose losses were not finite; `check_finite` raises if there was one.

  Args:
    dp: the `parallel.DataParallel` the step runs with.
    writer: a `writers.MetricWriter`.
    num_steps, log_every, start_step: the run's length, interval and start.
    checkpoint_dir: named in the non-finite error (its checkpoints are kept).
    progress_bar: show a tqdm bar (process 0 only).
  """

  def __init__(self, dp, writer, *, num_steps, log_every, start_step, checkpoint_dir,
               progress_bar):
    self._dp = dp
    self._writer = writer
    self._num_steps = num_steps
    self._log_every = log_every
    self._checkpoint_dir = checkpoint_dir
    self._chief = jax.process_index() == 0
    self._pending = None
    self._first_bad = jnp.int32(-1)
    self._track_bad = jax.jit(
        lambda bad, finite, step: jnp.where((bad < 0) & (finite < 1), step, bad))
    self._since, self._waited, self._steps = time.perf_counter(), 0.0, 0
    # A finished run resumed has no steps to show (a full bar would be its only output).
    self._bar = (tqdm.tqdm(total=num_steps, initial=start_step, desc='train', unit='step',
                           dynamic_ncols=True, mininterval=1.0)
                 if progress_bar and self._chief and start_step < num_steps else None)

  def record(self, step, metrics, waited_s):
    """Takes the metrics of `step` (device arrays) and the seconds it waited for data."""
    finite = metrics['finite'][0] if self._dp.mode == 'pmap' else metrics['finite']
    self._first_bad = self._track_bad(self._first_bad, finite, step - 1)
    self._waited += waited_s
    self._steps += 1
    if self._bar is not None:
      self._bar.update(1)
    self.flush()  # the previous log step's metrics: the device is busy with this one
    if is_time(step, self._log_every, self._num_steps):
      now = time.perf_counter()
      elapsed = max(now - self._since, 1e-9)
      self._pending = (step, metrics, self._steps / elapsed, min(1.0, self._waited / elapsed))
      self._since, self._waited, self._steps = now, 0.0, 0

  def check_finite(self):
    """Raises NonFiniteLossError if any step so far had a NaN / inf loss."""
    bad = int(parallel.to_host(self._first_bad))
    if bad >= 0:
      raise NonFiniteLossError(
          f'A loss became NaN or infinite at step {bad + 1} (the update from step '
          f'{bad} to {bad + 1}); stopping. Checkpoints written before it, if any, are kept '
          f'in {self._checkpoint_dir}. Lower the learning rate, check the data for NaNs, '
          'or enable a gradient penalty.')

  def flush(self):
    """Writes the pending log step's metrics, if any."""
    if self._pending is None:
      return
    step, metrics, rate, wait_frac = self._pending
    self._pending = None
    values = self._dp.get_metrics(metrics)
    values.pop('finite', None)
    self.check_finite()
    values.update({'steps_per_sec': rate, 'input_wait_frac': wait_frac})
    self._writer.write_scalars(step, values)
    if self._bar is not None:
      self._bar.set_postfix({k: f'{values[k]:.3f}' for k in ('d_loss', 'g_loss')},
                            refresh=False)
    if self._chief:
      logging.info('step %d/%d: %s', step, self._num_steps,
                   ', '.join(f'{k}={v:.4g}' for k, v in sorted(values.items())))

  def close(self):
    """Closes the progress bar (the writer is the caller's to close)."""
    if self._bar is not None:
      self._bar.close()


# A grid row per class stays readable (and cheap to generate) up to this many classes.
MAX_GRID_CLASSES = 20


class SampleGrids:
  """Sample grids of the EMA generator from a fixed z, written as PNG and to TensorBoard.

  For a class-conditional model the grid has one row per class (labels 0, 1, ...
  repeated along each row); with more than `MAX_GRID_CLASSES` classes (ImageNet),
  rows show that many classes evenly spread over the label range. 2-D samples (toy data) become scatter plots over
  1,000 real points of the data.

  Args:
    config: the experiment config.
    workdir: the run folder (grids go to `<workdir>/samples/step_XXXXXXX.png`).
    writer: the run's `writers.MetricWriter`.
    key: the key of the fixed z.
  """

  def __init__(self, config, workdir, writer, key):
    num_classes = models.generator_classes(config.model)
    count = config.train.num_sample_images
    if num_classes:
      rows = min(num_classes, MAX_GRID_CLASSES)
      classes = np.linspace(0, num_classes - 1, rows).round().astype(np.int32)
      per_class = max(1, count // rows)
      count = per_class * rows
      self._labels = np.repeat(classes, per_class)
      self._columns = per_class
    else:
      self._labels, self._columns = None, None
    self._z = jax.random.normal(key, (count, config.model.z_dim))
    self._generate = jax.jit(step_lib.make_generate_fn(config))
    self._workdir = workdir
    self._writer = writer
    shape = models.data_shape(config.model)
    self._reference = (data.load_eval_data(config.data, data_shape=shape, split='train',
                                           num_examples=1000) if len(shape) == 1 else None)

  def generate(self, state, z, labels=None):
    """np.float32[N, *data_shape] samples (images in [-1, 1]) of the EMA generator of
    `state` (one copy of the state) for z f32[N, z_dim] and labels int32[N] or None."""
    labels = None if labels is None else jnp.asarray(labels, jnp.int32)
    return parallel.to_host(self._generate(state.ema_g_params,
                                           ema_lib.sampling_batch_stats(state.g_batch_stats),
                                           jnp.asarray(z, jnp.float32), labels))

  def path(self, step):
    """Where the grid of `step` goes: `<workdir>/samples/step_XXXXXXX.png`."""
    return epath.Path(self._workdir) / 'samples' / f'step_{step:07d}.png'

  def write(self, step, state):
    """Draws the grid of `state` and writes it (every process generates, 0 writes)."""
    samples = self.generate(state, self._z, self._labels)
    if jax.process_index() != 0:
      return
    image = writers.samples_to_image(samples, reference=self._reference,
                                     columns=self._columns)
    # The PNG is the mark a resumed run checks ("is this step's grid written?"), so it
    # comes after the TensorBoard image is on disk (`write_image` flushes). A kill
    # between the two leaves this step's image in TensorBoard twice (the same image).
    self._writer.write_image(step, 'samples', image)
    writers.save_png(self.path(step), image)

