"""A trained discriminator as a classifier: `python -m gan_jax.classify --workdir=DIR ...`.

  python -m gan_jax.classify --workdir=runs/semi_supervised_digits \
      --input=images.npz --output=predictions.npz

`--input` holds `images`: f32[N, H, W, C] in [-1, 1] at the run's resolution
(`model.resolution`, `model.channels`), preprocessed as the run's training data.
`--output` gets `labels` (int32[N], the most probable class) and `probs`
(f32[N, K], the softmax over the K real classes). The run's discriminator must
have class logits: `model.d_cond` 'semi_supervised' (the semi-supervised GAN of
Salimans et al. 2016, whose K+1-th "fake" class is left out of the softmax) or
'acgan'. D runs in eval mode (running BatchNorm statistics); the newest
checkpoint unless --step.

`test_accuracy(workdir)` is the same classifier's accuracy on the data's test
split (what `gan_jax.bench.semi_supervised` reports).
"""

import os

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import cli
from gan_jax import data as data_lib
from gan_jax import errors
from gan_jax import models
from gan_jax import workdir as workdir_lib

CLASSIFIER_HEADS = ('semi_supervised', 'acgan')
# The metric name of the discriminator's accuracy as a classifier on a labelled split
# (`gan_jax.evaluate --metrics=accuracy`, `config.eval.metrics`).
ACCURACY = 'accuracy'
# Images per compiled call (bounds memory). The last, shorter chunk is not padded:
# with minibatch discrimination D's output depends on the other rows of its batch.
_CHUNK = 500
# Inputs may overshoot [-1, 1] by float rounding of the user's own scaling.
_RANGE_TOLERANCE = 1e-3


def check_classifier(config, where):
  """Raises ConfigError unless the config's D has class logits (`CLASSIFIER_HEADS`).

  Args:
    config: an experiment config.
    where: the run folder or config name, for the message.
  """
  m = config.model
  if not m.num_classes or m.d_cond not in CLASSIFIER_HEADS:
    raise errors.ConfigError(
        f'{where} has no classifier head: the discriminator needs class '
        f"logits (model.num_classes > 0 and model.d_cond in {list(CLASSIFIER_HEADS)}), got "
        f'num_classes={m.num_classes}, d_cond={m.d_cond!r}.')


def load_classifier(workdir, step=None, *, best=False):
  """Restores a checkpoint's discriminator as a classifier.

  Args:
    workdir: a run folder whose D has class logits (see `CLASSIFIER_HEADS`).
    step: checkpoint step (None: the newest readable one).
    best: the best checkpoint (`<workdir>/best/`) instead of one of `checkpoints/`.

  Returns:
    (config, classify): `classify(images: f32[N, H, W, C] in [-1, 1]) ->
    np.float32[N, K]` class probabilities (softmax over the K class logits, D
    in eval mode); `classify.step` is the checkpoint's step.

  Raises:
    MissingFileError: no run or no checkpoint in `workdir`.
    ConfigError: the run's D has no class logits.
  """
  check_classifier(workdir_lib.load_config(workdir), workdir)
  config, state, restored_step = workdir_lib.restore_state(workdir, step, best=best)
  probabilities = make_classifier(config)

  def classify(images):
    return probabilities(state.d_params, state.d_batch_stats, images)

  classify.step = restored_step
  return config, classify


def make_classifier(config):
  """The discriminator of `config` as a classifier of any parameters (compiled once).

  Args:
    config: an experiment config whose D has class logits (`check_classifier`).

  Returns:
    `probabilities(d_params, d_batch_stats, images: f[N, H, W, C] in [-1, 1]) ->
    np.float32[N, K]`: the softmax over the K class logits, D in eval mode (running
    BatchNorm statistics); a ConfigError for images of the wrong shape or range.
  """
  _, discriminator = models.build(config.model)

  @jax.jit
  def softmax(variables, x):
    _, extras = discriminator.apply(variables, x, train=False, mutable=['intermediates'])
    return jax.nn.softmax(extras['intermediates']['class_logits'][0].astype(jnp.float32))

  shape = models.data_shape(config.model)
  # Minibatch features are sums over the batch: classify in batches of the
  # training batch size, so that their scale is the trained one (on one device).
  chunk_size = config.train.batch_size if config.model.minibatch_discrimination else _CHUNK

  def probabilities(d_params, d_batch_stats, images):
    images = check_images(images, shape)
    variables = {'params': d_params}
    if d_batch_stats:
      variables['batch_stats'] = d_batch_stats
    out = [np.asarray(softmax(variables, images[i:i + chunk_size]))
           for i in range(0, len(images), chunk_size)]
    return (np.concatenate(out) if out else
            np.zeros((0, config.model.num_classes), np.float32))

  return probabilities


def labelled_split(config, split='test', num_examples=None):
  """(images f32[N, H, W, C] in [-1, 1], labels int[N]): a labelled split of the run's data,
  the first `num_examples` (None: all) of its fixed evaluation order."""
  count = np.iinfo(np.int32).max if num_examples is None else num_examples
  return data_lib.load_eval_data(config.data, data_shape=models.data_shape(config.model),
                                 split=split, num_examples=count, labels=True)


def accuracy(probs, labels):
  """The share in [0, 1] of rows of probs f[N, K] whose most probable class is labels int[N]."""
  return float(np.mean(np.argmax(probs, axis=-1) == np.asarray(labels)))


def check_images(images, shape):
  """Returns `images` as np.float32[N, *shape] or raises a ConfigError saying what is wrong.

  Args:
    images: array-like, expected f[N, H, W, C] in [-1, 1].
    shape: (H, W, C) of the run's model.
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[1:] != tuple(shape):
    raise errors.ConfigError(
        f'images must be f32[N, {", ".join(map(str, shape))}] (NHWC at the run\'s '
        f'model.resolution / model.channels), got shape {list(images.shape)}.')
  if not np.issubdtype(images.dtype, np.floating):
    raise errors.ConfigError(
        f'images must be floats in [-1, 1] (x / 127.5 - 1 for 8-bit pixels), got '
        f'{images.dtype}.')
  finite = np.isfinite(images)
  if not np.all(finite):
    raise errors.ConfigError(
        f'images must be finite floats in [-1, 1]; {images.size - np.count_nonzero(finite)} '
        f'of the {images.size} values are NaN or infinite.')
  if images.size and np.abs(images).max() > 1 + _RANGE_TOLERANCE:
    raise errors.ConfigError(
        f'images must be in [-1, 1] (x / 127.5 - 1 for 8-bit pixels); got values in '
        f'[{images.min():.3g}, {images.max():.3g}].')
  return images.astype(np.float32)


def split_accuracy(workdir, *, split='test', step=None, num_examples=None, best=False):
  """Accuracy of the run's discriminator-classifier on a labelled split of its data.

  Args:
    workdir: a run folder whose D has class logits.
    split: the data split ('test': digits' fixed 450-image split, TFDS 'test').
    step: checkpoint step (None: the newest).
    best: the best checkpoint (`<workdir>/best/`) instead of one of `checkpoints/`.
    num_examples: the first N of the split's fixed evaluation order (None: all).

  Returns:
    {'accuracy': float in [0, 1], the share of the split's examples whose most
    probable class is their label; 'num_examples': how many were classified;
    'split'; 'step': the checkpoint's step}.
  """
  config, classify = load_classifier(workdir, step, best=best)
  images, labels = labelled_split(config, split, num_examples)
  return {'accuracy': accuracy(classify(images), labels), 'num_examples': len(labels),
          'split': split, 'step': int(classify.step)}


def test_accuracy(workdir, *, split='test', step=None, num_examples=None):
  """`split_accuracy(...)['accuracy']`: a float in [0, 1]."""
  return split_accuracy(workdir, split=split, step=step, num_examples=num_examples)['accuracy']


_SAVE_HINT = 'save the images with np.savez(path, images=x), x f32[N, H, W, C] in [-1, 1]'


def read_input(path):
  """The `images` array of an .npz file (see the module docstring).

  Raises:
    MissingFileError: no such file.
    ConfigError: not an .npz file, no key `images`, or no images in it.
  """
  if not os.path.exists(path):
    raise errors.MissingFileError(f'--input={path}: no such file.')
  unreadable = errors.ConfigError(f'--input={path} is not an .npz file of numeric arrays that '
                                  f'numpy can read; {_SAVE_HINT}.')
  try:
    arrays = np.load(path, allow_pickle=False)
  except (OSError, ValueError):
    raise unreadable from None
  if not isinstance(arrays, np.lib.npyio.NpzFile):
    raise errors.ConfigError(f'--input={path} holds one array (.npy), not an .npz file of named '
                             f'arrays; {_SAVE_HINT}.')
  with arrays:
    if 'images' not in arrays:
      raise errors.ConfigError(
          f'--input={path} has no key "images" (keys: {sorted(arrays.files)}); {_SAVE_HINT}.')
    try:
      images = arrays['images']
    except (OSError, ValueError):  # an object array, or a damaged archive
      raise unreadable from None
  if images.ndim == 0 or len(images) == 0:
    raise errors.ConfigError(f'--input={path}: "images" holds no images (shape '
                             f'{list(images.shape)}); {_SAVE_HINT}.')
  return images


def _define_flags():
  """Command-line flags, defined only when run as a program (so importing is free)."""
  flags.DEFINE_string('workdir', None, 'Run folder holding config.json and checkpoints/.',
                      required=True)
  flags.DEFINE_string('input', None, '.npz file with key "images": f32[N, H, W, C] in '
                      '[-1, 1].', required=True)
  flags.DEFINE_string('output', None, '.npz file to write "labels" and "probs" to.',
                      required=True)
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: the newest).', lower_bound=0)
  flags.DEFINE_bool('best', False, 'Use the best checkpoint (<workdir>/best/).')


def main(argv):
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}; flags look like --name=value.')
  f = flags.FLAGS
  if not f.output.endswith('.npz'):
    raise errors.ConfigError(f'--output={f.output!r}: use a .npz file.')
  images = read_input(f.input)
  _, classify = load_classifier(f.workdir, f.step, best=f.best)
  probs = classify(images)
  labels = np.argmax(probs, axis=-1).astype(np.int32)
  os.makedirs(os.path.dirname(os.path.abspath(f.output)), exist_ok=True)
  np.savez(f.output, labels=labels, probs=probs.astype(np.float32))
  print(f'Wrote {len(labels)} predictions of step {classify.step} to {f.output}')


if __name__ == '__main__':
  _define_flags()
  cli.run(main, quiet=True)
