"""A trained discriminator as a classifier: `python -m gan_jax.classify --workdir=DIR ...`.

  python -m gan_jax.classify --workdir=runs/semi_supervised_digits \
      --input=images.npz --output=predictions.npz

`--input` holds `images` (or `samples`, as `gan_jax.sample` writes them): f32[N, H, W, C]
in [-1, 1] at the run's resolution (`model.resolution`, `model.channels`), preprocessed as
the run's training data.
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
import zipfile
import zlib

from absl import flags
import numpy as np

from gan_jax import cli
from gan_jax import errors
from gan_jax import workdir as workdir_lib
from gan_jax import writers
from gan_jax.metrics import classifier


def load_classifier(workdir, step=None, *, best=False):
  """Restores a checkpoint's discriminator as a classifier.

  Args:
    workdir: a run folder whose D has class logits (`conditional.CLASS_LOGIT_HEADS`).
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
  classifier.check_classifier(workdir_lib.load_config(workdir), workdir)
  config, state, restored_step = workdir_lib.restore_state(workdir, step, best=best)
  return config, classifier_from_state(config, state, restored_step)


def classifier_from_state(config, state, restored_step):
  """`load_classifier`'s `classify` for a state already restored (`workdir.restore_state`;
  its D has class logits), so that a tool using G and D of one checkpoint restores it
  once: a training run beside it may delete the step between two restores."""
  probabilities = classifier.make_classifier(config)

  def classify(images):
    return probabilities(state.d_params, state.d_batch_stats, images)

  classify.step = restored_step
  return classify


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
  return accuracy_on_split(config, classify, split=split, num_examples=num_examples)


def accuracy_on_split(config, classify, *, split='test', num_examples=None):
  """`split_accuracy` of a `classify` function (from `load_classifier` or
  `classifier_from_state`) of the run whose config is `config`."""
  images, labels = classifier.labelled_split(config, split, num_examples)
  return {'accuracy': classifier.accuracy(classify(images), labels), 'num_examples': len(labels),
          'split': split, 'step': int(classify.step)}


def test_accuracy(workdir, *, split='test', step=None, num_examples=None):
  """`split_accuracy(...)['accuracy']`: a float in [0, 1]."""
  return split_accuracy(workdir, split=split, step=step, num_examples=num_examples)['accuracy']


# The keys `read_input` takes the images from, in order.
INPUT_KEYS = ('images', 'samples')
# What numpy raises for a file it cannot read as an archive of numeric arrays: not a zip,
# an empty or cut-off file (a killed write), a damaged member, an object array.
_UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
_SAVE_HINT = 'save the images with np.savez(path, images=x), x f32[N, H, W, C] in [-1, 1]'


def read_input(path):
  """The `images` (else `samples`) array of an .npz file (see the module docstring).

  Raises:
    MissingFileError: no such file.
    ConfigError: not an .npz file, neither key, or no images in it.
  """
  if not os.path.exists(path):
    raise errors.MissingFileError(f'--input={path}: no such file.')
  unreadable = errors.ConfigError(f'--input={path} is not an .npz file of numeric arrays that '
                                  f'numpy can read; {_SAVE_HINT}.')
  try:
    arrays = np.load(path, allow_pickle=False)
  except _UNREADABLE:
    raise unreadable from None
  if not isinstance(arrays, np.lib.npyio.NpzFile):
    raise errors.ConfigError(f'--input={path} holds one array (.npy), not an .npz file of named '
                             f'arrays; {_SAVE_HINT}.')
  with arrays:
    # `samples`: what `gan_jax.sample --output=x.npz` writes, so its files classify as they are.
    key = next((k for k in INPUT_KEYS if k in arrays), None)
    if key is None:
      raise errors.ConfigError(
          f'--input={path} has no key "images" (keys: {sorted(arrays.files)}); {_SAVE_HINT}.')
    try:
      images = arrays[key]
    except _UNREADABLE:
      raise unreadable from None
  if images.ndim == 0 or len(images) == 0:
    raise errors.ConfigError(f'--input={path}: "{key}" holds no images (shape '
                             f'{list(images.shape)}); {_SAVE_HINT}.')
  return images


def _define_flags():
  """Command-line flags, defined only when run as a program (so importing is free)."""
  flags.DEFINE_string('workdir', None, 'Run folder holding config.json and checkpoints/.',
                      required=True)
  flags.DEFINE_string('input', None, '.npz file with key "images" (or "samples", as '
                      'gan_jax.sample writes): f32[N, H, W, C] in [-1, 1].', required=True)
  flags.DEFINE_string('output', None, '.npz file to write "labels" and "probs" to.',
                      required=True)
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: the newest).', lower_bound=0)
  flags.DEFINE_bool('best', False, 'Use the best checkpoint (<workdir>/best/).')


def main(argv):
  """The `python -m gan_jax.classify` program (its flags parsed by absl)."""
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}; flags look like --name=value.')
  f = flags.FLAGS
  if not f.output.endswith('.npz'):
    raise errors.ConfigError(f'--output={f.output!r}: use a .npz file.')
  workdir_lib.check_output_file(f.output, flag='--output', workdir=f.workdir)
  if os.path.realpath(f.output) == os.path.realpath(f.input):
    raise errors.ConfigError(f'--output={f.output} is the --input file; writing the '
                             'predictions there would replace the images. Pass another file.')
  images = read_input(f.input)
  _, classify = load_classifier(f.workdir, f.step, best=f.best)
  probs = classify(images)
  labels = np.argmax(probs, axis=-1).astype(np.int32)
  writers.save_npz(f.output, labels=labels, probs=probs.astype(np.float32))
  print(f'Wrote {len(labels)} predictions of step {classify.step} to {f.output}')


if __name__ == '__main__':
  _define_flags()
  cli.run(main, quiet=True, stop_on_sigterm=True)
