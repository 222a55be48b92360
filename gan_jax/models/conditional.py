"""Class conditioning: conditional BatchNorm for generators, projection, ACGAN and
semi-supervised heads for discriminators, and the checks of `model.num_classes` /
`model.d_cond`.

  ConditionalBatchNorm  BatchNorm without affine parameters, then a per-class gain and
                        bias looked up in two embeddings (torch_mimicry's
                        ConditionalBatchNorm2d: gains ~ N(1, 0.02), biases 0), as the
                        cGAN-PD / SNGAN-projection generator (Miyato & Koyama 2018).
  Projection            logit += <embed(y), phi(x)> with a spectrally normalised
                        embedding (torch_mimicry's SNEmbedding, xavier-uniform init).
  ClassifierHead        ACGAN's auxiliary classifier (Odena et al. 2017): a linear layer
                        from phi(x) to num_classes logits.

`discriminator_output` is what a discriminator calls last: it adds the projection term
or records the class logits (`sow('intermediates', 'class_logits', ...)`).

d_cond = 'semi_supervised' is the K+1-class discriminator of the semi-supervised GAN
(Salimans et al. 2016): the ClassifierHead's K logits l are D's only output layer, the
fake class has logit 0, so D(x) = Z / (Z + 1) with Z = sum_k exp(l_k) and D returns
the real-vs-fake logit logsumexp(l). D ignores labels (the class logits are trained
by the loss on the labelled reals) and the generator is unconditional
(`generator_classes`).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from gan_jax import errors
from gan_jax import losses
from gan_jax.models import layers

D_CONDS = ('projection', 'acgan', 'semi_supervised')
SEMI_SUPERVISED = 'semi_supervised'
# D heads with class logits, which read no labels: ACGAN's class logits are a second
# output beside the real-vs-fake logit, and the semi-supervised D's logit comes from
# its class logits. They are the heads that can classify images (`gan_jax.classify`).
CLASS_LOGIT_HEADS = ('acgan', SEMI_SUPERVISED)


def validate(model_config, *, semi_supervised=False):
  """Checks the class-conditioning fields of `config.model`.

  Args:
    model_config: the `config.model` ConfigDict.
    semi_supervised: the family builds the semi-supervised head (and an
      unconditional generator for it); others refuse d_cond 'semi_supervised'.

  Raises:
    ConfigError: naming model.num_classes, model.d_cond or model.pack.
  """
  num_classes = model_config.num_classes
  if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
    raise errors.ConfigError(
        f'model.num_classes must be an integer >= 0 (0 = unconditional), got {num_classes!r}.')
  if num_classes == 0:
    return
  if model_config.d_cond not in D_CONDS:
    raise errors.ConfigError(
        f'model.d_cond must be one of {list(D_CONDS)} when model.num_classes > 0, '
        f'got {model_config.d_cond!r}.')
  if model_config.d_cond == SEMI_SUPERVISED and not semi_supervised:
    raise errors.ConfigError(
        f"model.d_cond='semi_supervised' is not available for model.name="
        f"{model_config.name!r}; use model.name='dcgan' or 'image_mlp'.")
  if model_config.pack != 1:
    raise errors.ConfigError(
        f'model.pack must be 1 for a class-conditional model (model.num_classes='
        f'{num_classes}): a packed D input has no single label; got pack={model_config.pack}.')


def is_semi_supervised(model_config):
  """True for the semi-supervised GAN's discriminator (num_classes > 0, d_cond 'semi_supervised')."""
  return bool(model_config.num_classes) and model_config.d_cond == SEMI_SUPERVISED


def generator_classes(model_config):
  """Classes the generator is conditioned on: model.num_classes, or 0 (unconditional
  G) for the semi-supervised GAN, whose labels only train D's classifier."""
  return 0 if is_semi_supervised(model_config) else model_config.num_classes


def check_loss(model_config, loss_config):
  """Checks that the loss suits the discriminator head.

  The semi-supervised head's logit is log Z(x), so only the cross-entropy losses
  give the paper's -log D(real) - log(1 - D(fake)); `loss.entropy_weight` is the
  entropy of that head's class softmax, so no other head has it.

  Raises:
    ConfigError: naming loss.type or loss.entropy_weight.
  """
  semi_supervised = is_semi_supervised(model_config)
  if semi_supervised and loss_config.type not in losses.BCE_LOSS_TYPES:
    raise errors.ConfigError(
        f"model.d_cond='semi_supervised' needs a cross-entropy loss.type "
        f'({" or ".join(losses.BCE_LOSS_TYPES)}), got {loss_config.type!r}.')
  if loss_config.entropy_weight and not semi_supervised:
    raise errors.ConfigError(
        f'config.loss.entropy_weight={loss_config.entropy_weight} is the entropy of the '
        "semi-supervised discriminator's class softmax; it needs model.num_classes > 0 and "
        "model.d_cond='semi_supervised' (configs/semi_supervised_digits.py). Set it to 0.")


def check_labels(labels, *, batch, num_classes, who, d_cond=None):
  """Returns `labels` as int32[batch] for a conditional model, None for an unconditional one.

  Args:
    labels: int[batch] in [0, num_classes), or None.
    batch: the batch size of the model's input.
    num_classes: 0 for an unconditional model (labels are then ignored).
    who: 'generator' or 'discriminator', for the message.
    d_cond: the discriminator's head (None for a generator); the heads whose output
      does not depend on labels, 'acgan' and 'semi_supervised' (`CLASS_LOGIT_HEADS`),
      ignore them (they may be None, or hold -1 = unlabelled).

  Raises:
    ValueError: a conditional model without labels of the right shape.
  """
  if num_classes == 0 or d_cond in CLASS_LOGIT_HEADS:
    return None
  if labels is None:
    raise ValueError(f'The conditional {who} (model.num_classes={num_classes}) needs '
                     f'labels int32[{batch}]; got none.')
  labels = jnp.asarray(labels)
  if labels.shape != (batch,) or not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f'The conditional {who} needs labels int32[{batch}], got '
                     f'{labels.dtype}{list(labels.shape)}.')
  return labels.astype(jnp.int32)


class ConditionalBatchNorm(nn.Module):
  """BatchNorm whose gain and bias are looked up per class.

  Attributes:
    num_classes: number of classes K.
    momentum: running-average decay of the statistics.
    axis_name: mapped axis for synchronised statistics, or None.
    dtype: compute dtype; params and statistics are float32.
  """
  num_classes: int
  momentum: float = 0.9
  axis_name: Any = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, labels, *, train):
    """Normalises `x` and applies the gain and bias of each example's class.

    Args:
      x: f[B, ..., C].
      labels: int32[B] in [0, num_classes).
      train: use and update batch statistics.

    Returns:
      f[B, ..., C] in `dtype`: gain[y] * BN(x) + bias[y].
    """
    channels = x.shape[-1]
    h = layers.batch_norm(self, train=train, momentum=self.momentum,
                          axis_name=self.axis_name, dtype=self.dtype, name='bn',
                          affine=False)(x)
    gain = self.param('gain', layers.normal_init(0.02, mean=1.0),
                      (self.num_classes, channels), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (self.num_classes, channels),
                      jnp.float32)
    shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (channels,)
    gain = jnp.take(gain, labels, axis=0).reshape(shape).astype(self.dtype)
    bias = jnp.take(bias, labels, axis=0).reshape(shape).astype(self.dtype)
    return h * gain + bias


class Projection(nn.Module):
  """The class term of the projection discriminator: <embed(y), phi(x)>.

  Attributes:
    num_classes: number of classes K.
    spectral_norm: spectrally normalise the embedding (state in `batch_stats`).
  """
  num_classes: int
  spectral_norm: bool = True

  @nn.compact
  def __call__(self, features, labels, *, train):
    """features: f[B, F], labels: int32[B] -> f32[B]."""
    embed = nn.Embed(self.num_classes, features.shape[-1],
                     embedding_init=layers.xavier_uniform(1.0), name='embed')
    embedded = layers.maybe_spectral_normalized(
        embed, labels, spectral_norm=self.spectral_norm, train=train)
    # In float32: the term is added to a float32 logit.
    return jnp.sum(embedded.astype(jnp.float32) * features.astype(jnp.float32), axis=-1)


class ClassifierHead(nn.Module):
  """ACGAN's auxiliary classifier: a linear layer to class logits.

  Attributes:
    num_classes: number of classes K.
    spectral_norm: spectrally normalise the weight (state in `batch_stats`).
    dtype: compute dtype; the logits are float32.
  """
  num_classes: int
  spectral_norm: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features, *, train):
    """features: f[B, F] -> f32[B, num_classes]."""
    dense = layers.torch_dense(self.num_classes, in_features=features.shape[-1],
                               dtype=self.dtype, name='dense')
    logits = layers.maybe_spectral_normalized(
        dense, features, spectral_norm=self.spectral_norm, train=train)
    return logits.astype(jnp.float32)


def has_logit_layer(num_classes, d_cond):
  """Whether D needs its own real-vs-fake output layer (all heads but 'semi_supervised',
  whose logit comes from the class logits)."""
  return not num_classes or d_cond != SEMI_SUPERVISED


def discriminator_output(discriminator, features, logits, labels, *, num_classes, d_cond,
                         spectral_norm, train, dtype, head=None):
  """Adds a discriminator's class-conditional head (call inside its compact `__call__`).

  Args:
    discriminator: the calling module; 'class_logits' is sown on it.
    features: f[B, F], phi(x): the input of D's output layer.
    logits: f32[B], D's unconditional logits linear(phi(x)); None for
      'semi_supervised' (see `has_logit_layer`).
    labels: int32[B] (None when num_classes == 0 or for 'semi_supervised').
    num_classes: 0 (unconditional: `logits` are returned as they are) or K.
    d_cond: 'projection' (logits + <embed(y), phi(x)>), 'acgan' (logits unchanged;
      f32[B, K] class logits sown as `intermediates/class_logits`) or
      'semi_supervised' (the class logits l are sown and logsumexp(l) returned).
    spectral_norm: spectrally normalise the head's weights.
    train: update the spectral-norm state.
    dtype: compute dtype of the classifier.
    head: the layer giving the class logits f[B, F] -> f[B, K] for 'acgan' /
      'semi_supervised' (a module of `discriminator`, such as a weight-normalised
      Dense); None: a `ClassifierHead` (spectral-normalised when `spectral_norm`).

  Returns:
    f32[B] logits.
  """
  if num_classes == 0:
    return logits
  if d_cond == 'projection':
    return logits + Projection(num_classes, spectral_norm=spectral_norm, name='projection')(
        features, labels, train=train)
  if head is None:
    class_logits = ClassifierHead(num_classes, spectral_norm=spectral_norm, dtype=dtype,
                                  name='classifier')(features, train=train)
  else:
    class_logits = head(features).astype(jnp.float32)
  discriminator.sow('intermediates', 'class_logits', class_logits)
  if d_cond == SEMI_SUPERVISED:
    return losses.semi_supervised_logit(class_logits)
  return logits
