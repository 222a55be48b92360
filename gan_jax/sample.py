"""Samples from a trained generator: `python -m gan_jax.sample --workdir=DIR ...`.

  python -m gan_jax.sample --workdir=runs/dcgan_digits --num_samples=1000 \
      --seed=0 --output=samples.npz        # key 'samples': f32[N, H, W, C] in [-1, 1]
  ... --output=grid.png                    # one PNG grid (scatter plot for 2-D data)
  ... --output=folder/                     # one PNG per sample (for external FID tools)

Toy (2-D) runs write `samples` of shape [N, 2]. The EMA generator is used unless
--noema; the newest checkpoint unless --step.
"""

import json
import os

from absl import app
from absl import flags
from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from configs import default as default_lib


def load_config(workdir):
  """Reads `<workdir>/config.json` into a ConfigDict.

  The saved values are laid over `configs/default.py`, so a run saved before a
  field existed gets that field's default (which reproduces the old behaviour),
  and fields unknown to the defaults are kept as saved.

  Raises:
    FileNotFoundError: when the folder holds no run, saying what was expected.
  """
  path = epath.Path(workdir) / 'config.json'
  if not path.exists():
    raise FileNotFoundError(
        f'{path} does not exist: {workdir!r} is not a gan_jax run folder. Pass the '
        '--workdir a training run wrote (it holds config.json and checkpoints/).')
  return ml_collections.ConfigDict(
      _overlay(default_lib.get_config().to_dict(), json.loads(path.read_text())))


def _overlay(defaults, saved):
  """The nested dict `defaults` with every value of the nested dict `saved` over it."""
  merged = dict(defaults)
  for key, value in saved.items():
    if isinstance(value, dict) and isinstance(merged.get(key), dict):
      merged[key] = _overlay(merged[key], value)
    else:
      merged[key] = value
  return merged


def load_generator(workdir, step=None, *, ema=True):
  """Restores a checkpoint's generator as a sampling function.

  Args:
    workdir: a run folder.
    step: checkpoint step (None: the newest readable one).
    ema: use the EMA parameters (True) or the raw generator parameters.

  Returns:
    (config, generate): `generate(z: f32[N, z_dim]) -> np.float32[N, ...]`
    runs the generator in eval mode (images in [-1, 1], or [N, 2] points);
    `generate.step` is the checkpoint's step.

  Raises:
    FileNotFoundError: no run or no checkpoint in `workdir`.
  """
  from gan_jax import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  from gan_jax import train  # pylint: disable=g-import-not-at-top
  config = load_config(workdir)
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), async_save=False,
                                     max_to_keep=None)
  sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  restored = ckpt.restore(train.abstract_state(config, sharding), step=step)
  ckpt.close()
  if restored is None:
    raise FileNotFoundError(
        f'No checkpoint in {os.path.join(workdir, "checkpoints")}; train first with '
        f'python -m gan_jax.main --config=... --workdir={workdir}')
  state, _, restored_step = restored
  params = state.ema_g_params if ema else state.g_params
  generate_fn = jax.jit(train.make_generate_fn(config))

  def generate(z):
    return np.asarray(generate_fn(params, state.g_batch_stats, jnp.asarray(z, jnp.float32)))

  generate.step = restored_step
  return config, generate


def generate_samples(generate, *, z_dim, num_samples, seed, batch_size=500):
  """Draws z ~ N(0, I) from `seed` and generates `num_samples` samples in batches.

  Returns:
    np.float32[num_samples, ...].
  """
  z = np.asarray(jax.random.normal(jax.random.key(seed), (num_samples, z_dim)), np.float32)
  return np.concatenate([generate(z[i:i + batch_size])
                         for i in range(0, num_samples, batch_size)], axis=0)


def write_samples(samples, output):
  """Writes samples to `.npz` (key 'samples'), a `.png` grid, or a folder of PNGs."""
  from gan_jax import writers  # pylint: disable=g-import-not-at-top
  if output.endswith('.npz'):
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    np.savez(output, samples=samples.astype(np.float32))
  elif output.endswith('.png'):
    writers.save_png(output, writers.samples_to_image(samples))
  elif output.endswith('/') or not os.path.splitext(output)[1]:
    if samples.ndim != 4:
      raise ValueError('A folder of PNG files needs image samples; use .npz or .png for 2-D data.')
    os.makedirs(output, exist_ok=True)
    for i, image in enumerate(samples):
      pixels = np.round((np.clip(image, -1, 1) + 1) * 127.5).astype(np.uint8)
      writers.save_png(os.path.join(output, f'{i:06d}.png'),
                       pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
  else:
    raise ValueError(f'Unknown output kind {output!r}: use a .npz file, a .png file or a folder/.')


def _define_flags():
  """Command-line flags, defined only when run as a program (so importing is free)."""
  flags.DEFINE_string('workdir', None, 'Run folder holding config.json and checkpoints/.')
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: the newest).')
  flags.DEFINE_integer('num_samples', 64, 'Number of samples.')
  flags.DEFINE_integer('seed', 0, 'Seed of the latent vectors z.')
  flags.DEFINE_string(
      'output', None,
      'Output: a .npz file, a .png grid, or a folder (ends with / or has no suffix).')
  flags.DEFINE_integer('batch_size', 500, 'Samples generated per call.')
  flags.DEFINE_bool('ema', True, 'Use the EMA generator parameters.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
  f = flags.FLAGS
  if not f.workdir or not f.output:
    raise app.UsageError('--workdir and --output are required.')
  config, generate = load_generator(f.workdir, f.step, ema=f.ema)
  samples = generate_samples(generate, z_dim=config.model.z_dim,
                             num_samples=f.num_samples, seed=f.seed, batch_size=f.batch_size)
  write_samples(samples, f.output)
  print(f'Wrote {len(samples)} samples of shape {samples.shape[1:]} from step '
        f'{generate.step} to {f.output}')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
