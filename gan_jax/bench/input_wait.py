"""How long does the training loop wait for input? (the goal: under 5% of the step time)

  python -m gan_jax.bench.input_wait [--images 2000] [--steps 60] [--width 64]

Runs the real training loop (`train.train_and_evaluate`) twice and reads the
`input_wait_frac` it logs to metrics.jsonl (seconds blocked on the prefetch queue
/ wall seconds, per log interval; the first interval, which holds compilation, is
dropped):
  * digits: `configs/dcgan_digits.py` as shipped;
  * image folder: `configs/dcgan_celeba.py` on a folder of `--images` random
    CelebA-sized JPEGs (218x178, written to a temp dir), decoded, cropped and
    resized by the image_folder source.
Prints a Markdown table.
"""

import json
import os
import statistics
import tempfile
import time

from absl import flags
import numpy as np

from gan_jax import cli


def write_jpeg_folder(root, num_images, *, seed=0, size=(218, 178)):
  """Writes `num_images` random smooth RGB JPEGs of `size` (H, W) under `root`."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  os.makedirs(root, exist_ok=True)
  for i in range(num_images):
    low = rng.integers(0, 256, (size[0] // 8, size[1] // 8, 3), dtype=np.uint8)
    image = Image.fromarray(low).resize((size[1], size[0]), Image.BILINEAR)
    image.save(os.path.join(root, f'{i:06d}.jpg'), quality=90)


def _measurement_run(config, steps):
  """`steps` steps, 6 log lines, no samples / checkpoints / evaluation / progress bar."""
  config.train.num_steps = steps
  config.train.log_every = max(1, steps // 6)
  config.train.sample_every = 0
  config.train.checkpoint_every = 10**9
  config.train.progress_bar = False
  config.eval.every = -1
  return config


def measure(config, workdir):
  """Trains `config` in `workdir`; returns (median input-wait share, steps/s) after compile."""
  from gan_jax import train  # pylint: disable=g-import-not-at-top
  train.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, 'metrics.jsonl'), encoding='utf-8') as f:
    rows = [json.loads(line) for line in f][1:]
  return (statistics.median(r['input_wait_frac'] for r in rows),
          statistics.median(r['steps_per_sec'] for r in rows))


def main(argv):
  """The `python -m gan_jax.bench.input_wait` program (its flags parsed by absl)."""
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}; flags look like --name=value.')
  from configs import dcgan_celeba  # pylint: disable=g-import-not-at-top
  from configs import dcgan_digits  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  results = []
  with tempfile.TemporaryDirectory() as tmp:
    config = _measurement_run(dcgan_digits.get_config(), f.steps)
    start = time.time()
    wait, rate = measure(config, os.path.join(tmp, 'digits'))
    results.append(('dcgan_digits', 'digits (in memory)', rate, wait, time.time() - start))

    folder = os.path.join(tmp, 'celeba_like')
    write_jpeg_folder(folder, f.images)
    config = dcgan_celeba.get_config()
    config.data.source = 'image_folder'
    config.data.path = folder
    config.model.ngf = config.model.ndf = f.width
    config.train.batch_size = 64
    config = _measurement_run(config, f.steps)
    start = time.time()
    wait, rate = measure(config, os.path.join(tmp, 'celeba'))
    results.append((f'dcgan_celeba (width {f.width}, batch 64)',
                    f'image_folder, {f.images} JPEGs 218x178', rate, wait, time.time() - start))
  print('| config | data | steps/s | input wait | wall s (incl. decode, compile) |')
  print('| --- | --- | ---: | ---: | ---: |')
  for name, data, rate, wait, wall in results:
    print(f'| {name} | {data} | {rate:.2f} | {100 * wait:.2f}% | {wall:.0f} |')


if __name__ == '__main__':
  # At least one batch of 64 images, and two log intervals after the first (dropped).
  flags.DEFINE_integer('images', 2000, 'JPEG files in the CelebA-sized folder (>= 64, one '
                       'batch).', lower_bound=64)
  flags.DEFINE_integer('steps', 60, 'Train steps per measurement (>= 3).', lower_bound=3)
  flags.DEFINE_integer('width', 64, 'ngf = ndf of the CelebA model.', lower_bound=1)
  cli.run(main)
