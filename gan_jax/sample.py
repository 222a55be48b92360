"""Samples from a trained generator: `python -m gan_jax.sample --workdir=DIR --output=...`.

  python -m gan_jax.sample --workdir=runs/dcgan_digits --num_samples=1000 \
      --seed=0 --output=samples.npz        # key 'samples': f32[N, H, W, C] in [-1, 1]
  ... --output=grid.png                    # one PNG grid (a column per class; 2-D: scatter)
  ... --output=folder/                     # one PNG per sample, a new or empty folder (FID tools)
  ... --labels=3 / --labels=0,2,5          # class-conditional runs: these classes, cycled
  ... --labels=cat,dog                     # the same by the names in class_names.json
  ... --truncation=1.0                     # BigGAN's truncation trick
  ... --interpolate=8 --output=interp.png  # rows of 8-step interpolations between latents
  ... --standing_stats=16                  # BigGAN's standing statistics first
  ... --langevin_steps=100                 # DDLS: D moves the latents first (gan_jax.langevin)

Toy (2-D) runs write `samples` of shape [N, 2]. Class-conditional runs also write
`labels` (int32[N]; in a folder, each file's name ends in `_class<i>.png`) and cycle over every class unless --labels is given (N = 1000
on 10 classes gives 100 of each). The EMA generator is used unless --noema; the
newest checkpoint unless --step. --seed=S draws the latents (and labels) that
`python -m gan_jax.evaluate --seed=S` scores: the same samples, equal to float rounding
(~1e-7: XLA rounds another batch shape differently; with --truncation, the entries
outside [-T, T] are redrawn inside).
"""

import math
import os
import secrets
import shutil

from absl import flags
from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import cli
from gan_jax import defaults
from gan_jax import ema as ema_lib
from gan_jax import errors
from gan_jax import langevin
from gan_jax import models
from gan_jax import periodic
from gan_jax import standing_stats as standing_stats_lib
from gan_jax import step as step_lib
from gan_jax import workdir as workdir_lib
from gan_jax import writers
from gan_jax.metrics import sampling
from gan_jax.models import conditional

OUTPUT_KINDS = '.npz file, .png file, or folder/'


def load_generator(workdir, step=None, *, ema=True, best=False, standing_stats=None,
                   standing_seed=0):
  """Restores a checkpoint's generator as a sampling function.

  Args:
    workdir: a run folder.
    step: checkpoint step (None: the newest readable one).
    ema: use the EMA parameters (True) or the raw generator parameters.
    best: the best checkpoint (`<workdir>/best/`, lowest FID / proxy FD during
      training) instead of one of `checkpoints/`.
    standing_stats: > 0: first re-estimate G's BatchNorm statistics for the sampling
      parameters over this many train-mode batches of `config.train.batch_size` fresh
      latents (`gan_jax.standing_stats`, BigGAN's standing statistics); 0: the
      checkpoint's running averages; None: the run's `config.eval.standing_stats`,
      as its evaluations during training and the CLIs use.
    standing_seed: seed of those latents (with the checkpoint's step:
      `standing_stats.standing_key`; config.seed gives the statistics of the
      evaluations during training).

  Returns:
    (config, generate): `generate(z: f32[N, z_dim], labels: int[N] | None = None)
    -> np.float32[N, ...]` runs the generator in eval mode (images in [-1, 1],
    or [N, 2] points); a class-conditional G (`models.generator_classes` K > 0)
    needs labels in [0, K), an unconditional one ignores them (ValueError for
    another z shape, or labels that do not fit: a label outside [0, K) would
    silently draw NaN or another class).
    `generate.step` is the checkpoint's step; `generate.standing_stats` None, or
    {'batches', 'batch_size', 'seed'} of the standing statistics.

  Raises:
    MissingFileError: no run or no checkpoint in `workdir`.
    ConfigError: standing_stats < 0, or > 0 for a generator without BatchNorm.
  """
  config, state, restored_step = workdir_lib.restore_state(workdir, step, best=best)
  return config, generator_from_state(config, state, restored_step, ema=ema,
                                      standing_stats=standing_stats,
                                      standing_seed=standing_seed)


def generator_from_state(config, state, restored_step, *, ema=True, standing_stats=None,
                         standing_seed=0):
  """`load_generator`'s `generate` for a state already restored (`workdir.restore_state`),
  so that a tool using G and D of one checkpoint restores it once: a training run beside
  it may delete the step between two restores.

  Args:
    config: the run's config; state: its `GANState`; restored_step: the state's step.
    ema, standing_stats, standing_seed: as `load_generator`.

  Returns:
    generate, as `load_generator` returns it.
  """
  if standing_stats is not None and standing_stats < 0:
    raise errors.ConfigError(f'--standing_stats must be >= 0 (0 = off), got {standing_stats}.')
  if standing_stats is None:
    standing_stats = int(config.eval.standing_stats)
  params = state.ema_g_params if ema else state.g_params
  g_batch_stats, standing = ema_lib.sampling_batch_stats(state.g_batch_stats, ema=ema), None
  if standing_stats:
    standing = dict(batches=int(standing_stats), batch_size=int(config.train.batch_size),
                    seed=int(standing_seed))
    key = standing_stats_lib.standing_key(standing_seed, restored_step)
    g_batch_stats = standing_stats_lib.apply(config.model, params, g_batch_stats, key,
                                             num_batches=standing['batches'],
                                             batch_size=standing['batch_size'])
  generate_fn = jax.jit(step_lib.make_generate_fn(config))
  num_classes = models.generator_classes(config.model)
  z_dim = config.model.z_dim

  def generate(z, labels=None):
    if jnp.ndim(z) != 2 or jnp.shape(z)[1] != z_dim:
      raise ValueError(f'z must be f32[N, {z_dim}] (model.z_dim), got shape '
                       f'{list(jnp.shape(z))}.')
    labels = _checked_labels(labels, len(z), num_classes)
    return np.asarray(generate_fn(params, g_batch_stats, jnp.asarray(z, jnp.float32), labels))

  generate.step = restored_step
  generate.standing_stats = standing
  generate.variables = (params, g_batch_stats)  # what G samples with (DDLS reads them)
  return generate


def _checked_labels(labels, num, num_classes):
  """`labels` as int32[num] in [0, num_classes) for a conditional G; None for an
  unconditional one (num_classes 0). ValueError for anything else: the generator's own
  check (`conditional.check_labels`) plus the range, which only concrete labels have."""
  labels = conditional.check_labels(labels, batch=num, num_classes=num_classes,
                                    who='generator')
  if labels is not None and labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f'labels must be in [0, {num_classes}), got values in '
                     f'[{labels.min()}, {labels.max()}].')
  return labels


# The truncated redraws' key, folded into the seed's key beside the latents' own
# blocks (`metrics.sampling.latents` folds in block numbers 0, 1, ...).
_TRUNCATION_STREAM = 2**31 - 1


def latents(seed, num_samples, z_dim, *, truncation=None):
  """z ~ N(0, I) f32[num_samples, z_dim] from `seed`.

  Without truncation these are the latents `gan_jax.evaluate --seed` scores
  (`metrics.sampling.latents`), so `--seed=S` writes the samples an evaluation with
  seed S generated (with the same labels, cycled over all classes).
  With `truncation` T > 0 (BigGAN's truncation trick, trading variety for quality),
  every entry of those latents with |z| > T is redrawn from the normal truncated to
  [-T, T]; the entries inside are kept, so one seed at several T differs only in the
  entries each T redraws. Every entry is then a truncated normal in [-T, T].
  """
  plain = sampling.latents(seed, num_samples, z_dim)
  if truncation is None:
    return plain
  check_truncation(truncation)
  # A normal entry kept when inside [-T, T] is a truncated normal there, and so is
  # the redraw of one outside: every entry is a truncated normal, independently.
  key = jax.random.fold_in(jax.random.key(seed), _TRUNCATION_STREAM)
  bound = min(truncation, 100.0)  # as float32 a bound of 1e300 is inf; no draw nears 100
  redraw = np.asarray(jax.random.truncated_normal(key, -bound, bound, (num_samples, z_dim)),
                      np.float32)
  return np.where(np.abs(plain) > bound, redraw, plain)


def default_seed(config, *, best):
  """The latents' seed when none is given (sample and evaluate): 0, or with `best`
  the run's config.seed + 1, because the evaluations during training that picked the
  best checkpoint drew their latents from config.seed, and the same latents would
  report the luckiest of those draws."""
  return (config.seed + 1) % (defaults.MAX_SEED + 1) if best else 0


def check_truncation(truncation):
  """A ConfigError unless `truncation` (--truncation, T) is None or a finite T > 0."""
  if truncation is not None and not (math.isfinite(truncation) and truncation > 0):
    raise errors.ConfigError(f'--truncation must be a finite number > 0 (e.g. 0.5), got '
                             f'{truncation}.')


def check_classes(classes, num_classes):
  """A ConfigError naming the classes (--labels) outside [0, num_classes)."""
  bad = [c for c in classes if not 0 <= c < num_classes]
  if bad:
    raise errors.ConfigError(f'--labels: classes {bad} are outside [0, {num_classes}).')


def cycled_labels(num_samples, num_classes, classes=None):
  """int32[num_samples]: `classes` (default all of 0..K-1) repeated in order."""
  classes = list(range(num_classes)) if not classes else list(classes)
  check_classes(classes, num_classes)
  return np.resize(np.asarray(classes, np.int32), num_samples)


def generate_samples(generate, *, z_dim, num_samples, seed, batch_size=500, labels=None,
                     truncation=None):
  """Draws z from `seed` and generates `num_samples` samples in batches.

  The sample CLI's sampler (truncation, chosen labels, one process). The
  evaluations use `metrics.sampling.generate_samples`, which shares the rows out
  over processes; for the same seed, labels cycling over all classes and no
  truncation, the two give the same latents and labels (tests/test_sample.py), so the
  same samples to float rounding (XLA may round another batch shape differently).

  Args:
    generate: `load_generator`'s function.
    z_dim, num_samples, seed: the latents.
    batch_size: latents per call.
    labels: int32[num_samples] for a class-conditional generator, else None.
    truncation: see `latents`.

  Returns:
    np.float32[num_samples, ...].
  """
  z = latents(seed, num_samples, z_dim, truncation=truncation)
  return generate_in_batches(generate, z, labels, batch_size=batch_size)


def check_finite_samples(samples, step):
  """Raises `errors.NonFiniteError` when any of `samples` (f32[N, ...]) holds NaN or inf,
  naming how many of the N and the checkpoint's `step`: a file or score of them would
  be garbage without saying so."""
  bad = int(np.sum(~np.all(np.isfinite(samples.reshape(len(samples), -1)), axis=1)))
  if bad:
    raise errors.NonFiniteError(
        f'{bad} of {len(samples)} samples of step {step} hold NaN or inf values: the '
        "checkpoint's generator diverged (try an earlier one, --step) or its latents "
        'were moved too far (--langevin_step_size). Nothing was written.')


def generate_in_batches(generate, z, labels=None, *, batch_size=500):
  """`generate` over z f32[N, z_dim] (and labels int32[N]) in chunks: np.float32[N, ...]."""
  outputs = []
  for i in range(0, len(z), batch_size):
    chunk = z[i:i + batch_size]
    outputs.append(generate(chunk) if labels is None else
                   generate(chunk, labels[i:i + batch_size]))
  return np.concatenate(outputs, axis=0)


def slerp(a, b, t):
  """Interpolation between latents a and b (f32[D]) at fractions t (f[K] in [0, 1]).

  Returns f32[K, D]: the direction moves along the great circle from a's to b's (at
  a constant angular speed), the length straight from |a| to |b|, so no step is
  longer than the longer end; for equal lengths this is the usual slerp. Where the
  great circle is not unique or not stable, (nearly) parallel or opposite
  directions (always so for D = 1), the steps are straight.
  """
  a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
  t = np.asarray(t, np.float64)[:, None]
  norm_a, norm_b = np.linalg.norm(a64), np.linalg.norm(b64)
  if min(norm_a, norm_b) < 1e-12:
    return ((1 - t) * a64 + t * b64).astype(np.float32)
  unit_a, unit_b = a64 / norm_a, b64 / norm_b
  omega = np.arccos(np.clip(np.dot(unit_a, unit_b), -1.0, 1.0))
  # sin(omega) divides below: near 0 and pi it would amplify rounding without bound.
  if np.sin(omega) < 1e-6:
    return ((1 - t) * a64 + t * b64).astype(np.float32)
  direction = (np.sin((1 - t) * omega) * unit_a + np.sin(t * omega) * unit_b) / np.sin(omega)
  return (direction * ((1 - t) * norm_a + t * norm_b)).astype(np.float32)


def interpolation_latents(seed, z_dim, *, rows, steps, truncation=None):
  """f32[rows * steps, z_dim]: per row, `steps` steps between two latents.

  Spherical steps for Gaussian z (`slerp`: no step longer than the longer end); with
  `truncation` T, straight ones, as BigGAN's own interpolations: the box [-T, T] is
  convex, so every step stays inside it, where spherical steps can leave it by up to
  a factor of sqrt(2).
  """
  ends = latents(seed, 2 * rows, z_dim, truncation=truncation)
  fractions = np.linspace(0.0, 1.0, steps)
  if truncation is not None:
    t = fractions[:, None]
    return np.concatenate([((1 - t) * ends[2 * r] + t * ends[2 * r + 1]).astype(np.float32)
                           for r in range(rows)])
  return np.concatenate([slerp(ends[2 * r], ends[2 * r + 1], fractions) for r in range(rows)])


def output_kind(output):
  """'npz', 'png' or 'folder' for an --output path.

  Raises:
    ConfigError: for any other suffix.
  """
  if output.endswith('.npz'):
    return 'npz'
  if output.endswith('.png'):
    return 'png'
  if output.endswith('/') or not os.path.splitext(output)[1]:
    return 'folder'
  raise errors.ConfigError(f'--output={output!r}: use a {OUTPUT_KINDS}.')


def write_samples(samples, output, *, labels=None, columns=None):
  """Writes samples to `.npz` ('samples', and 'labels' when given), a `.png` grid
  (`columns` images per row), or a folder of PNGs (`output_kind(output)` decides).

  Args:
    samples: f32[N, H, W, C] images in [-1, 1] (clipped for PNGs), or f32[N, 2] points
      (`.npz` or a `.png` scatter plot only).
    output: the path (see `output_kind`).
    labels: int32[N] classes of a conditional model's samples, or None.
    columns: images per grid row (None: about square).
  """
  kind = output_kind(output)
  if kind == 'npz':
    arrays = {'samples': np.asarray(samples, np.float32)}
    if labels is not None:
      arrays['labels'] = np.asarray(labels, np.int32)
    writers.save_npz(output, **arrays)
  elif kind == 'png':
    writers.save_png(output, writers.samples_to_image(samples, columns=columns))
  else:
    if samples.ndim != 4:
      raise errors.ConfigError('A folder of PNG files needs image samples; use .npz or .png '
                               'for 2-D data.')
    check_folder_output(output)
    target = output.rstrip('/') or output
    # A new local folder is filled under a hidden name and renamed when complete, so a
    # killed run leaves no half-filled folder for an FID tool to read as complete. An
    # existing (empty) folder, e.g. a mount point, and remote folders are written in place.
    staged = '://' not in target and not os.path.exists(target)
    parent = os.path.dirname(os.path.abspath(target))
    partial = f'.{os.path.basename(target)}.partial-'
    folder = target
    if staged:
      _warn_about_partial_folders(parent, partial)
      folder = _new_folder(parent, partial)
    try:
      for i, image in enumerate(samples):
        pixels = np.round((np.clip(image, -1, 1) + 1) * 127.5).astype(np.uint8)
        # A conditional sample's class is in its name (FID tools read any *.png).
        name = f'{i:06d}.png' if labels is None else f'{i:06d}_class{int(labels[i])}.png'
        writers.save_png(os.path.join(folder, name),
                         pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
      if staged:
        os.replace(folder, target)
    except BaseException:
      if staged:
        shutil.rmtree(folder, ignore_errors=True)
      raise


def _new_folder(parent, prefix):
  """Makes and returns a new folder `<parent>/<prefix><16 random hex digits>`: never
  one a killed run left (a process id would repeat, a container's first process being
  always 1), so no earlier run's files join these. Made with the permissions of any
  new folder (tempfile.mkdtemp's are private, and this one becomes the output)."""
  while True:
    folder = os.path.join(parent, prefix + secrets.token_hex(8))
    try:
      os.mkdir(folder)
      return folder
    except FileExistsError:
      continue


def _warn_about_partial_folders(parent, prefix):
  """Names the hidden half-filled folders (`prefix<random>`) that killed runs left in
  `parent`: they are never complete, and this run does not remove them (another may
  still be filling one)."""
  try:
    left = sorted(name for name in os.listdir(parent) if name.startswith(prefix))
  except OSError:
    return
  if left:
    logging.warning('%s holds %s, left by a sample run that was stopped before its folder '
                    'was complete (or one still writing); delete them if no run is.', parent,
                    ', '.join(left))


def check_folder_output(output):
  """Raises ConfigError when `output` (local or remote) is a file, or a folder that holds
  anything: files of an earlier, larger run would be mixed with these (an FID tool
  reads every file)."""
  path = epath.Path(output)
  if not path.exists():
    return
  if not path.is_dir():
    raise errors.ConfigError(f'--output={output} is a file, not a folder; pass a folder '
                             '(ending with /) for one PNG per sample.')
  if any(True for _ in path.iterdir()):
    raise errors.ConfigError(
        f'--output={output} is a folder that already holds files; PNGs of another run '
        'would be mixed with these. Pass a new folder, or empty this one.')


def _define_flags():
  """Command-line flags, defined only when run as a program (so importing is free)."""
  flags.DEFINE_string('workdir', None, 'Run folder holding config.json and checkpoints/.',
                      required=True)
  flags.DEFINE_string('output', None, f'Output: a {OUTPUT_KINDS} (ends with / or has no '
                      'suffix).', required=True)
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: the newest).', lower_bound=0)
  flags.DEFINE_integer('num_samples', 64, 'Number of samples.', lower_bound=1)
  flags.DEFINE_integer('seed', None, 'Seed of the latent vectors z (those gan_jax.evaluate --seed '
                       'scores, with --truncation\'s redraws; default 0, with --best the run\'s '
                       'config.seed + 1, as gan_jax.evaluate --best).', lower_bound=0,
                       upper_bound=defaults.MAX_SEED)
  flags.DEFINE_integer('batch_size', 500, 'Samples generated per call.', lower_bound=1)
  flags.DEFINE_bool('ema', True, 'Use the EMA generator parameters.')
  flags.DEFINE_bool('best', False, 'Use the best checkpoint (<workdir>/best/: the lowest FID '
                    'or proxy FD of the evaluations during training).')
  flags.DEFINE_list('labels', [], 'Class-conditional runs: classes to sample, cycled '
                    '(default: every class): the names of the run\'s class_names.json '
                    '(e.g. image sub-folders; a name wins over an index), or indices.')
  flags.DEFINE_float('truncation', None, 'Redraw latent entries with |z| > T (BigGAN).')
  flags.DEFINE_integer('standing_stats', None, 'Re-estimate G\'s BatchNorm statistics over '
                       'this many train-mode batches of train.batch_size latents first '
                       '(BigGAN\'s standing statistics; 0 = off; default: the run\'s '
                       'config.eval.standing_stats).', lower_bound=0)
  flags.DEFINE_integer('interpolate', 0, 'Write rows of this many interpolation steps '
                       'between random latents: --num_samples // K rows (at least one) of K, '
                       'or for a conditional run one row per class (--labels or all) of one '
                       'shared latent path.', lower_bound=0)
  langevin.add_flags()
  flags.adopt_module_key_flags(langevin)  # --langevin_* in --help too


def check_fits_in_memory(num_samples, data_shape):
  """Raises ConfigError when `num_samples` float32 samples of `data_shape` would not fit
  in this machine's memory (they are held together before they are written), instead
  of generating for hours and failing at the end."""
  needed = num_samples * int(np.prod(data_shape)) * 4
  try:
    total = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  except (AttributeError, OSError, ValueError):
    return
  if needed > total:
    raise errors.ConfigError(
        f'--num_samples={num_samples}: the samples alone take {needed / 2**30:.1f} GiB, more '
        f'than this machine\'s {total / 2**30:.1f} GiB of memory; write fewer at a time (runs '
        'with different --seed give different samples).')


def _parse_labels(values, class_names=None):
  """--labels as a list of class indices, or a ConfigError.

  Args:
    values: the flag's strings: names of `class_names`, or class indices ('3'). A
      class name wins: with class folders '1', '10', '2', '3', '1' is class '1'
      (index 0), not index 1.
    class_names: the run's saved class names (`workdir.saved_class_names`), or None.
  """
  classes = []
  for value in values:
    if class_names and value in class_names:
      classes.append(class_names.index(value))
      continue
    try:
      classes.append(int(value))
    except ValueError:
      known = (f'; this run\'s classes: {class_names[:20]}' if class_names else '')
      raise errors.ConfigError(f'--labels must be class indices such as 3 or 0,2,5, or '
                               f'class names of the run, got {value!r}{known}.') from None
  return classes


def _requested(config, f, class_names=None):
  """(z, labels, columns) the flags ask for (`class_names`: the run's saved names)."""
  num_classes = models.generator_classes(config.model)
  classes = _parse_labels(f.labels, class_names)
  if classes and not num_classes:
    raise errors.ConfigError(
        '--labels needs a class-conditional generator (model.num_classes > 0); this run\'s '
        'is unconditional' + (' (the semi-supervised GAN\'s labels train D only).'
                              if config.model.num_classes else '.'))
  check_classes(classes, num_classes)
  if f.interpolate:
    rows = max(1, f.num_samples // f.interpolate)
    if num_classes:
      # One row of the same latent path per class.
      classes = classes or list(range(num_classes))
      z = np.tile(interpolation_latents(f.seed, config.model.z_dim, rows=1,
                                        steps=f.interpolate, truncation=f.truncation),
                  (len(classes), 1))
      return z, np.repeat(np.asarray(classes, np.int32), f.interpolate), f.interpolate
    return (interpolation_latents(f.seed, config.model.z_dim, rows=rows, steps=f.interpolate,
                                  truncation=f.truncation), None, f.interpolate)
  labels, columns = None, None
  if num_classes:
    labels = cycled_labels(f.num_samples, num_classes, classes)
    cycle = len(classes) if classes else num_classes
    # A grid gets one column per class (for at most as many classes as a training
    # grid shows one row each, `periodic.MAX_GRID_CLASSES`).
    columns = cycle if 2 <= cycle <= periodic.MAX_GRID_CLASSES else None
  return (latents(f.seed, f.num_samples, config.model.z_dim, truncation=f.truncation), labels,
          columns)


def main(argv):
  """The `python -m gan_jax.sample` program (its flags parsed by absl)."""
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}; flags look like --name=value.')
  f = flags.FLAGS
  # A bad --output, --labels or --interpolate fails before anything loads.
  if output_kind(f.output) == 'folder':
    check_folder_output(f.output)
    workdir_lib.check_output_path(f.workdir, f.output)
    workdir_lib.check_writable(f.output, flag='--output')
  else:  # an existing folder named x.npz, a path under a file, a run's records
    workdir_lib.check_output_file(f.output, flag='--output', workdir=f.workdir)
  class_names = workdir_lib.saved_class_names(f.workdir)
  _parse_labels(f.labels, class_names)
  check_truncation(f.truncation)
  ddls = langevin.options_from_flags(f)
  if ddls.steps and (f.interpolate or f.truncation is not None):
    undone = ("an interpolation's path" if f.interpolate else 'the truncation to [-T, T]')
    raise errors.ConfigError(
        f'--langevin_steps moves each latent by D\'s gradient and fresh noise, which would '
        f'undo {undone}: use one of the two.')
  if f.interpolate == 1:
    raise errors.ConfigError('--interpolate=1: an interpolation needs at least 2 steps (its '
                             'two end points); pass K >= 2, or 0 for plain samples.')
  run_config = workdir_lib.load_config(f.workdir)
  if f.interpolate and models.generator_classes(run_config.model) and (
      flags.FLAGS['num_samples'].present):
    raise errors.ConfigError(
        '--num_samples: a conditional run\'s interpolation is one row of --interpolate steps '
        'per class (--labels picks the classes), whatever the count; leave it out.')
  check_fits_in_memory(f.num_samples, models.data_shape(run_config.model))
  if f.seed is None:  # the latents gan_jax.evaluate scores by default
    f.seed = default_seed(run_config, best=f.best)
  if f.standing_stats:  # (None: the run's own setting, which its config check passed)
    standing_stats_lib.check_config(run_config, f.standing_stats)
  if ddls.steps:
    langevin.check_model(run_config)
  # One restore serves G and (for DDLS) D.
  config, state, restored_step = workdir_lib.restore_state(f.workdir, f.step, best=f.best)
  generate = generator_from_state(config, state, restored_step, ema=f.ema,
                                  standing_stats=f.standing_stats, standing_seed=f.seed)
  z, labels, columns = _requested(config, f, class_names)
  if ddls.steps:
    generate = langevin.refined_generator(generate, langevin.make_refiner(
        config, state, *generate.variables, ddls, seed=f.seed))
  samples = generate_in_batches(generate, z, labels, batch_size=f.batch_size)
  check_finite_samples(samples, generate.step)
  write_samples(samples, f.output, labels=labels, columns=columns)
  print(f'Wrote {len(samples)} samples of shape {samples.shape[1:]} from step '
        f'{generate.step} to {f.output}' + (f' ({ddls.describe()})' if ddls.steps else ''))


if __name__ == '__main__':
  _define_flags()
  cli.run(main, quiet=True, stop_on_sigterm=True)
