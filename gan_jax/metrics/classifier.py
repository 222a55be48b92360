"""The discriminator as a classifier: which heads have class logits, their softmax
compiled once for any parameters, a labelled split, and the accuracy on it.

Used by `gan_jax.classify` and `gan_jax.evaluate --metrics=accuracy` (a checkpoint's
D) and by training (`config.eval.metrics='accuracy'`, the live D).
"""

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import data as data_lib
from gan_jax import errors
from gan_jax import models
from gan_jax.data import digits as digits_lib
from gan_jax.models import conditional

# The metric name of the discriminator's accuracy as a classifier on a labelled split
# (`gan_jax.evaluate --metrics=accuracy`, `config.eval.metrics`).
ACCURACY = 'accuracy'
# Images per compiled call (bounds memory). The last, shorter chunk is not padded:
# with minibatch discrimination D's output depends on the other rows of its batch.
_CHUNK = 500
# Inputs may overshoot [-1, 1] by float rounding of the user's own scaling.
_RANGE_TOLERANCE = 1e-3


def check_classifier(config, where):
  """Raises ConfigError unless the config's D has class logits (`conditional.CLASS_LOGIT_HEADS`).

  Args:
    config: an experiment config.
    where: the run folder or config name, for the message.
  """
  m = config.model
  needs = (f'the discriminator needs class logits (model.num_classes > 0 and model.d_cond '
           f'in {list(conditional.CLASS_LOGIT_HEADS)})')
  if not m.num_classes:
    # d_cond means nothing without classes, so only the class count is named.
    raise errors.ConfigError(f'{where} has no classifier head: it is an unconditional model '
                             f'(model.num_classes=0), and {needs}.')
  if m.d_cond not in conditional.CLASS_LOGIT_HEADS:
    raise errors.ConfigError(
        f'{where} has no classifier head: {needs}; its D is conditioned by '
        f'd_cond={m.d_cond!r}.')


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
    variables = models.variables(d_params, d_batch_stats)
    out = [np.asarray(softmax(variables, images[i:i + chunk_size]))
           for i in range(0, len(images), chunk_size)]
    return (np.concatenate(out) if out else
            np.zeros((0, config.model.num_classes), np.float32))

  return probabilities


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


def check_labelled_split(data_config, split, where):
  """Raises ConfigError naming `where` (the flag or field that chose `split`) unless the
  data has a held-out labelled split of that name to score a classifier on.

  Digits splits are checked here, TFDS splits when the data set opens; an image folder
  has no splits (every split would be its training images)."""
  if data_config.source == 'image_folder':
    raise errors.ConfigError(
        f"{where}={split!r}: an image folder has no held-out split (it would score D on its "
        'own training images). Save held-out images as an .npz (key images, NHWC in [-1, 1] '
        'at the model\'s resolution) and run python -m gan_jax.classify --workdir=W '
        '--input=held_out.npz --output=predictions.npz.')
  if data_config.source == 'digits':
    digits_lib.check_split(split, where)


def check_held_out(data_config, split, where):
  """Raises ConfigError naming `where` when scoring on `split` would score images the
  run trains on: the training split itself, or (digits) 'all', which holds both.

  Other TFDS split strings (e.g. 'train[:90%]' against 'train[90%:]') are taken as
  the user wrote them."""
  train = data_config.split
  overlap = split == train or (data_config.source == 'digits' and 'all' in (split, train))
  if overlap:
    raise errors.ConfigError(
        f'{where}={split!r} holds images the run trains on (config.data.split={train!r}), '
        'so its accuracy would not measure generalisation. Score a held-out split '
        "(e.g. 'test' when training on 'train').")


def labelled_split(config, split='test', num_examples=None):
  """(images f32[N, H, W, C] in [-1, 1], labels int[N]): a labelled split of the run's data,
  the first `num_examples` (None: all) of its fixed evaluation order."""
  check_labelled_split(config.data, split, 'split')
  count = np.iinfo(np.int32).max if num_examples is None else num_examples
  return data_lib.load_eval_data(config.data, data_shape=models.data_shape(config.model),
                                 split=split, num_examples=count, labels=True)


def accuracy(probs, labels):
  """The share in [0, 1] of rows of probs f[N, K] whose most probable class is labels int[N]."""
  return float(np.mean(np.argmax(probs, axis=-1) == np.asarray(labels)))
