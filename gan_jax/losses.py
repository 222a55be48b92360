"""Pure GAN losses: what D and G minimise for a batch of logits or features.

Adversarial losses (`discriminator_loss`, `generator_loss`), the classification
loss of class logits (ACGAN, semi-supervised GAN), the semi-supervised GAN's
unsupervised loss, feature matching, LeCam, bCR's consistency term
(`consistency_loss`) and zCR's G term (its D term is `consistency_loss` on D(G(z))
and D(G(z + dz))).

Every loss is pure, returns a float32 scalar, and works inside or outside
`jax.jit` / `shard_map` (the `loss_type` string and `label_smoothing` must be
static Python values); helpers return other things: `generator_loss_per_example`
(f32[B]), top-k training's `top_k_mask` (f32[B] of 0 / 1), `top_k_count` and
`top_k_fraction` (the annealed share), and `semi_supervised_logit` (f32[B]). Logits are
the raw discriminator outputs (no sigmoid).

Adversarial losses (means over the batch; l_r = real logits, l_f = fake logits,
sigma = sigmoid, so D(x) = sigma(l) for the two cross-entropy losses):

| loss_type       | discriminator minimises                  | generator minimises       |
|-----------------|------------------------------------------|---------------------------|
| minimax         | -log sigma(l_r) - log(1 - sigma(l_f))    | log(1 - sigma(l_f))       |
| non_saturating  | (same as minimax)                        | -log sigma(l_f)           |
| wasserstein     | l_f - l_r                                | -l_f                      |
| hinge           | relu(1 - l_r) + relu(1 + l_f)            | -l_f                      |
| least_squares   | 0.5 (l_r - 1)^2 + 0.5 l_f^2              | 0.5 (l_f - 1)^2           |

The cross-entropy terms use softplus of the logits (-log sigma(l) = softplus(-l),
-log(1 - sigma(l)) = softplus(l)), which stays finite at any logit, instead of the
log of a sigmoid: in float32 1 - sigma(l) rounds to 0 from l of about 17, and the
log then gives -inf.
"""

import math

import jax
import jax.numpy as jnp

from gan_jax import errors

LOSS_TYPES = ('minimax', 'non_saturating', 'wasserstein', 'hinge', 'least_squares')
# The two losses whose discriminator is a binary classifier with cross-entropy;
# only these have targets that one-sided label smoothing can soften, and only
# their logits have a probability reading (sigmoid).
BCE_LOSS_TYPES = ('minimax', 'non_saturating')

__all__ = [
    'BCE_LOSS_TYPES',
    'LOSS_TYPES',
    'check_loss_config',
    'class_cross_entropy',
    'class_entropy',
    'consistency_loss',
    'discriminator_loss',
    'feature_matching_loss',
    'generator_loss',
    'generator_loss_per_example',
    'latent_consistency_generator_term',
    'lecam_regularization',
    'semi_supervised_logit',
    'semi_supervised_unsupervised_loss',
    'top_k_count',
    'top_k_fraction',
    'top_k_mask',
]


def _check_loss_type(loss_type):
  if loss_type not in LOSS_TYPES:
    raise errors.ConfigError(
        f'Unknown config.loss.type {loss_type!r}; known: {", ".join(LOSS_TYPES)}.')


def check_loss_config(loss_config):
  """Checks `config.loss` before anything is built (names and ranges).

  Raises:
    ConfigError: naming the bad field, its value and what is allowed.
  """
  _check_loss_type(loss_config.type)
  _check_label_smoothing(loss_config.label_smoothing, loss_config.type)
  if not 0.0 < loss_config.g_top_k <= 1.0:
    raise errors.ConfigError(
        f'config.loss.g_top_k must be in (0, 1], got {loss_config.g_top_k}.')
  decay, decay_steps = loss_config.g_top_k_decay, loss_config.g_top_k_decay_steps
  if not 0.0 <= decay < 1.0:
    raise errors.ConfigError(f'config.loss.g_top_k_decay must be in [0, 1) (0 = no annealing; '
                             f'Sinha et al. use 0.99 per epoch), got {decay}.')
  if decay and (loss_config.g_top_k == 1.0 or not isinstance(decay_steps, int)
                or isinstance(decay_steps, bool) or decay_steps < 1):
    raise errors.ConfigError(
        f'config.loss.g_top_k_decay={decay} anneals the top-k share down to config.loss.g_top_k '
        f'every config.loss.g_top_k_decay_steps steps: set g_top_k < 1 (e.g. 0.5) and '
        f'g_top_k_decay_steps to an integer >= 1 (an epoch), got g_top_k='
        f'{loss_config.g_top_k}, g_top_k_decay_steps={decay_steps!r}.')
  weights = {name: loss_config[name] for name in (
      'gp_weight', 'r1_weight', 'hist_avg_weight', 'g_adversarial_weight',
      'd_adversarial_weight', 'aux_weight', 'feature_matching_weight', 'ortho_weight',
      'bcr_real_weight', 'bcr_fake_weight', 'entropy_weight', 'lecam_weight', 'zcr_d_weight',
      'zcr_g_weight')}
  for name, value in weights.items():
    if not value >= 0 or not math.isfinite(value):
      raise errors.ConfigError(f'config.loss.{name} must be a finite number >= 0, got {value}.')
  if not 0.0 <= loss_config.lecam_decay < 1.0:
    raise errors.ConfigError(
        f'config.loss.lecam_decay must be in [0, 1), got {loss_config.lecam_decay}.')
  start = loss_config.lecam_start
  if not isinstance(start, int) or isinstance(start, bool) or start < 0:
    raise errors.ConfigError(
        f'config.loss.lecam_start must be an integer >= 0 (a step), got {start!r}.')
  radius = loss_config.zcr_radius
  if not (isinstance(radius, (int, float)) and 0.0 < radius and math.isfinite(radius)):
    raise errors.ConfigError(
        f'config.loss.zcr_radius must be a finite number > 0 (the scale of zCR\'s latent '
        f'perturbation; the zCR weights switch it off), got {radius!r}.')


def _check_label_smoothing(label_smoothing, loss_type):
  label_smoothing = float(label_smoothing)
  if label_smoothing != 0.0 and loss_type not in BCE_LOSS_TYPES:
    raise errors.ConfigError(
        f'config.loss.label_smoothing={label_smoothing} only applies to the cross-entropy '
        f'losses {list(BCE_LOSS_TYPES)}, not {loss_type!r}. Set '
        'config.loss.label_smoothing=0.0 or use a cross-entropy loss.')
  if not 0.0 <= label_smoothing < 1.0:
    raise errors.ConfigError(
        'config.loss.label_smoothing must be in [0, 1) (real targets become 1 - s), got '
        f'{label_smoothing}.')
  return label_smoothing


def _as_logits(logits, name):
  """Casts logits to float32 and checks they are a scalar or a vector f32[B]."""
  logits = jnp.asarray(logits)
  if logits.ndim > 1:
    raise ValueError(
        f'{name} must be f32[B] (one logit per sample or packed group), got shape '
        f'{logits.shape}. If D ends in Dense(1), squeeze its last axis.')
  # Losses are accumulated in float32 even when D computes in bfloat16, so that
  # their means are not rounded to bfloat16's 8-bit mantissa.
  return logits.astype(jnp.float32)


def discriminator_loss(*, real_logits, fake_logits, loss_type, label_smoothing=0.0):
  """The discriminator's loss for one batch of real and one batch of fake samples.

  Args:
    real_logits: f32[B] raw D outputs on real data (any real value; bf16 is upcast).
    fake_logits: f32[B'] raw D outputs on generated data; B' may differ from B, as
      each term is a mean over its own batch.
    loss_type: one of `LOSS_TYPES` (see the module docstring for the formulas).
      'minimax' and 'non_saturating' share this loss (binary cross-entropy);
      'least_squares' is LSGAN with a=0, b=c=1 and the 1/2 convention,
      0.5 * E[(D(x) - 1)^2] + 0.5 * E[D(G(z))^2], with D(x) the raw logit.
    label_smoothing: s in [0, 1): one-sided smoothing, the real targets become
      1 - s (fake targets stay 0). Only for 'minimax' / 'non_saturating'; must be
      a Python number.

  Returns:
    f32[] scalar loss.

  Raises:
    ValueError: for an unknown `loss_type` (listing the known ones), a non-zero
      `label_smoothing` with a non-cross-entropy loss, `label_smoothing` outside
      [0, 1), or logits of rank > 1.
  """
  _check_loss_type(loss_type)
  real = _as_logits(real_logits, 'real_logits')
  fake = _as_logits(fake_logits, 'fake_logits')
  label_smoothing = _check_label_smoothing(label_smoothing, loss_type)

  # Each branch names its own types (not BCE_LOSS_TYPES, which serves label smoothing
  # and probability readings): a type added there without a branch must raise.
  if loss_type in ('minimax', 'non_saturating'):
    # BCE with target t on logit l: t * softplus(-l) + (1 - t) * softplus(l).
    target = 1.0 - label_smoothing
    real_term = target * jax.nn.softplus(-real) + (1.0 - target) * jax.nn.softplus(real)
    fake_term = jax.nn.softplus(fake)
    return jnp.mean(real_term) + jnp.mean(fake_term)
  if loss_type == 'wasserstein':
    return jnp.mean(fake) - jnp.mean(real)
  if loss_type == 'hinge':
    return jnp.mean(jax.nn.relu(1.0 - real)) + jnp.mean(jax.nn.relu(1.0 + fake))
  if loss_type == 'least_squares':
    return 0.5 * jnp.mean(jnp.square(real - 1.0)) + 0.5 * jnp.mean(jnp.square(fake))
  raise _no_branch(loss_type)


def top_k_fraction(step, *, final, decay=0.0, decay_steps=1):
  """The share of the fakes top-k training keeps at `step` (Sinha et al. 2020).

  The paper anneals k: it starts at the whole batch and is multiplied by `decay`
  (0.99 there) every `decay_steps` steps (an epoch), never below `final` (nu);
  `decay` 0 keeps `final` from the first step.

  Args:
    step: int32[] (or int) training step, >= 0.
    final: nu in (0, 1], the share k ends at (`loss.g_top_k`).
    decay: gamma in [0, 1) (`loss.g_top_k_decay`).
    decay_steps: steps per decay, >= 1 (`loss.g_top_k_decay_steps`).

  Returns:
    f32[] share in [final, 1]: max(final, decay ** floor(step / decay_steps)), or
    `final` when `decay` is 0.
  """
  if not decay:
    return jnp.float32(final)
  periods = (jnp.asarray(step, jnp.int32) // int(decay_steps)).astype(jnp.float32)
  return jnp.maximum(jnp.float32(final), jnp.float32(decay) ** periods)


def top_k_count(batch_size, fraction):
  """k = max(1, round(fraction * batch_size)): how many fakes top-k training keeps.

  `fraction` may be a traced f32[] (an annealed share); then k is an int32[].

  Raises:
    ValueError (a ConfigError): if a concrete `fraction` is outside (0, 1].
  """
  if isinstance(fraction, (int, float)):
    if not 0.0 < fraction <= 1.0:
      raise errors.ConfigError(f'config.loss.g_top_k must be in (0, 1], got {fraction}.')
    return max(1, int(round(fraction * batch_size)))
  return jnp.maximum(1, jnp.round(fraction * batch_size)).astype(jnp.int32)


def top_k_mask(fake_logits, fraction):
  """Marks the highest `fraction` of D's logits on a fake batch (top-k training).

  Top-k training (Sinha et al. 2020, "Top-k Training of GANs: Improving GAN
  Performance by Throwing Away Bad Samples"): G's loss uses only the generated
  samples D rates most real, so the samples D rejects (e.g. the thin bridges a
  continuous G draws between the modes of a mixture) do not pull G around. A mask
  rather than the kept logits, so that a batch split over devices can be ranked as
  one (the caller gathers the logits) and each device keep its own rows.

  Args:
    fake_logits: f[B] raw D outputs on generated data (any real values).
    fraction: share of the batch to keep, in (0, 1] (a float, or a traced f32[]
      such as `top_k_fraction`'s).

  Returns:
    f32[B] of 0 / 1 with exactly k = `top_k_count(B, fraction)` ones, at the k
    largest logits (equal logits: the earlier rows first). No gradient flows
    through it.

  Raises:
    ValueError (a ConfigError): if `fraction` is outside (0, 1].
  """
  logits = jax.lax.stop_gradient(_as_logits(fake_logits, 'fake_logits'))
  k = top_k_count(logits.shape[0], fraction)
  # A stable descending sort ranks equal logits in batch order; O(B log B), so a
  # large global batch costs no B x B comparison matrix.
  order = jnp.argsort(logits, descending=True, stable=True)
  rank = jnp.zeros(logits.shape[0], jnp.int32).at[order].set(
      jnp.arange(logits.shape[0], dtype=jnp.int32))
  return (rank < k).astype(jnp.float32)


def generator_loss(*, fake_logits, loss_type):
  """The generator's loss for one batch of generated samples.

  Args:
    fake_logits: f32[B] raw D outputs on generated data.
    loss_type: one of `LOSS_TYPES`.
      'minimax': the saturating game of Goodfellow et al. (2014), G minimises
        E[log(1 - D(G(z)))] = -E[softplus(l)]; its gradient wrt the logit is
        -sigmoid(l), which vanishes when D confidently rejects the fakes.
      'non_saturating': G minimises -E[log D(G(z))] = E[softplus(-l)]; gradient
        -sigmoid(-l) -> -1 in the same regime.
      'wasserstein' and 'hinge': -E[l].
      'least_squares': 0.5 * E[(l - 1)^2] (LSGAN, c = 1, 1/2 convention).

  Returns:
    f32[] scalar loss.

  Raises:
    ValueError: for an unknown `loss_type` (listing the known ones) or logits of
      rank > 1.
  """
  return jnp.mean(generator_loss_per_example(fake_logits=fake_logits, loss_type=loss_type))


def generator_loss_per_example(*, fake_logits, loss_type):
  """`generator_loss` before the mean over the batch: f32[B], one term per fake.

  Raises:
    ValueError: as `generator_loss`.
  """
  _check_loss_type(loss_type)
  fake = _as_logits(fake_logits, 'fake_logits')
  if loss_type == 'minimax':
    return -jax.nn.softplus(fake)
  if loss_type == 'non_saturating':
    return jax.nn.softplus(-fake)
  if loss_type in ('wasserstein', 'hinge'):
    return -fake
  if loss_type == 'least_squares':
    return 0.5 * jnp.square(fake - 1.0)
  raise _no_branch(loss_type)


def _no_branch(loss_type):
  # A type in LOSS_TYPES whose branch was not written must not train as another loss.
  return NotImplementedError(f'loss type {loss_type!r} is in LOSS_TYPES but has no branch '
                             'here: write its discriminator and generator losses.')


def class_cross_entropy(*, logits, labels, num_labelled=None):
  """Mean softmax cross-entropy of class logits over the labelled examples.

  The classification loss of an auxiliary-classifier D (ACGAN, Odena et al.
  2017) and the supervised loss of the semi-supervised GAN (Salimans et al.
  2016). Examples with label -1 (unlabelled) are left out of the mean.

  Args:
    logits: f32[B, K] class logits (any real values; bf16 is upcast).
    labels: int32[B] in [0, K), or -1 for unlabelled examples.
    num_labelled: f32[] >= 0, what the sum is divided by; None: the labelled examples
      of `labels`. A data-parallel step passes the global batch's count over the
      number of devices, so that the mean of the devices' losses is the mean over
      every labelled example (devices hold different numbers of them).

  Returns:
    f32[] sum of -log softmax(logits)[label] over labelled examples divided by
    `num_labelled` (0 when that is 0).
  """
  logits = jnp.asarray(logits).astype(jnp.float32)
  labels = jnp.asarray(labels)
  labelled = labels >= 0
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  picked = jnp.take_along_axis(log_probs, jnp.maximum(labels, 0)[:, None], axis=-1)[:, 0]
  count = jnp.sum(labelled) if num_labelled is None else jnp.asarray(num_labelled, jnp.float32)
  total = -jnp.sum(jnp.where(labelled, picked, 0.0))
  return jnp.where(count > 0, total / jnp.maximum(count, 1e-30), 0.0)


def class_entropy(*, logits):
  """Mean entropy of the softmax over K class logits: the entropy-minimisation term.

  Added to the semi-supervised discriminator's loss on its real batch (labelled
  and unlabelled), it pushes the class boundaries away from the data: entropy
  minimisation (Grandvalet & Bengio 2005), the conditional-entropy term that Dai et
  al. 2017 ("Good Semi-supervised Learning that Requires a Bad GAN") add to the
  semi-supervised GAN of Salimans et al. 2016.

  Args:
    logits: f32[B, K] class logits (any real values; bf16 is upcast).

  Returns:
    f32[] mean over the batch of -sum_k p_k log p_k, p = softmax(logits); in
    [0, log K] (0: one-hot predictions, log K: uniform).
  """
  log_probs = jax.nn.log_softmax(jnp.asarray(logits).astype(jnp.float32), axis=-1)
  return -jnp.mean(jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1))


def semi_supervised_logit(class_logits):
  """The real-vs-fake logit of a K-class discriminator whose fake class has logit 0.

  With Z(x) = sum_k exp(l_k), D(x) = Z / (Z + 1) = sigmoid(log Z) (Salimans et
  al. 2016, section 5), so the binary cross-entropy losses on `logsumexp(l)`
  are exactly the paper's unsupervised loss -log D(real) - log(1 - D(fake)).

  Args:
    class_logits: f32[B, K].

  Returns:
    f32[B] = logsumexp over the K logits (float32, stable for any logits).
  """
  return jax.nn.logsumexp(jnp.asarray(class_logits).astype(jnp.float32), axis=-1)


def semi_supervised_unsupervised_loss(*, real_class_logits, fake_class_logits):
  """-E[log D(real)] - E[log(1 - D(fake))] of the K+1-class discriminator.

  The train step reaches the same value another way: the semi-supervised D head
  outputs `semi_supervised_logit`, and `discriminator_loss` under 'non_saturating'
  or 'minimax' (the losses that head accepts) is this loss of those logits
  (tests/test_losses.py checks that they agree).

  Args:
    real_class_logits: f32[B, K] class logits of (unlabelled) real examples.
    fake_class_logits: f32[B', K] class logits of generated examples.

  Returns:
    f32[] = mean softplus(-lse(real)) + mean softplus(lse(fake)), with lse the
    logsumexp over classes (`semi_supervised_logit`).
  """
  real = semi_supervised_logit(real_class_logits)
  fake = semi_supervised_logit(fake_class_logits)
  return jnp.mean(jax.nn.softplus(-real)) + jnp.mean(jax.nn.softplus(fake))


def feature_matching_loss(*, real_features, fake_features):
  """Feature matching (Salimans et al. 2016): ||E f(real) - E f(fake)||^2.

  Args:
    real_features: f32[B, F] an intermediate D layer on real examples (treated
      as a constant by the caller: G's gradient flows through the fakes only).
    fake_features: f32[B', F] the same layer on generated examples.

  Returns:
    f32[] squared L2 distance between the batch means.
  """
  real = jnp.asarray(real_features).astype(jnp.float32)
  fake = jnp.asarray(fake_features).astype(jnp.float32)
  return jnp.sum(jnp.square(jnp.mean(real, axis=0) - jnp.mean(fake, axis=0)))


def lecam_regularization(*, real_logits, fake_logits, real_average, fake_average):
  """LeCam regularisation (Tseng et al. 2021, "Regularizing Generative Adversarial
  Networks under Limited Data", CVPR): D's outputs on real images are pulled down
  to the running average of its outputs on fakes, and its outputs on fakes up to the
  running average on reals, one-sided as in the authors' code (google/lecam-gan) and
  PyTorch-StudioGAN's `lecam_reg`:

    mean(relu(D(x) - a_fake)^2) + mean(relu(a_real - D(G(z)))^2)

  Args:
    real_logits: f32[B] D's raw outputs on the real batch.
    fake_logits: f32[B'] D's raw outputs on the fake batch.
    real_average, fake_average: f32[] running averages of D's mean outputs on reals
      and on fakes (constants to the caller's gradient).

  Returns:
    f32[] >= 0; 0 when every real output is at most a_fake and every fake one at
    least a_real.
  """
  real = _as_logits(real_logits, 'real_logits')
  fake = _as_logits(fake_logits, 'fake_logits')
  return (jnp.mean(jnp.square(jax.nn.relu(real - fake_average)))
          + jnp.mean(jnp.square(jax.nn.relu(real_average - fake))))


def consistency_loss(*, logits, augmented_logits):
  """The consistency term ||D(x) - D(T(x))||^2, averaged over the batch.

  bCR (Zhao et al. 2021, "Improved Consistency Regularization for GANs", AAAI,
  arXiv:2002.04724, Algorithm 1) adds to D's loss

    lambda_real * ||D(x) - D(T(x))||^2 + lambda_fake * ||D(G(z)) - D(T(G(z)))||^2

  (lambda_real = lambda_fake = 10 in the paper), where D is the last layer
  before the activation (the logit, as in CR-GAN, Zhang et al. 2020,
  arXiv:1910.12027) and T a random augmentation; the weights are the caller's.
  With one logit per sample the squared norm of a sample is the squared
  difference, and its batch mean is the mean of squares, as
  `torch.mean((D_real_aug - D_real) ** 2)` in the DiffAugment-CR reference
  (data-efficient-gans, DiffAugment-biggan-cifar/train_fns.py). For logits with
  more axes each sample's squared L2 norm is summed over them, then averaged
  over the batch. Symmetric in its two arguments; gradients flow to both, as
  in that reference (neither side is detached). zCR's D term (the same paper,
  section 3.2; StudioGAN's `MSELoss(D(G(z)), D(G(z_eps)))`) is this term on D's
  outputs for G(z) and G(z + dz) (`objectives.py`).

  Args:
    logits: f32[B] (or f32[B, ...]) D's raw outputs on the un-augmented images.
    augmented_logits: D's raw outputs on their augmentations, same shape.

  Returns:
    f32[] scalar, >= 0.

  Raises:
    ValueError: the two shapes differ (broadcasting would pair wrong samples).
  """
  logits = jnp.asarray(logits)
  augmented_logits = jnp.asarray(augmented_logits)
  if logits.shape != augmented_logits.shape or logits.ndim < 1:
    raise ValueError(
        f'consistency_loss needs two logit arrays of the same shape f32[B, ...], got '
        f'{logits.shape} and {augmented_logits.shape}. Pass D(x) and D(T(x)) for '
        'the same batch.')
  # Accumulate in float32 even when D computes in bfloat16.
  diff = logits.astype(jnp.float32) - augmented_logits.astype(jnp.float32)
  per_sample = jnp.sum(jnp.square(diff).reshape(diff.shape[0], -1), axis=1)
  return jnp.mean(per_sample)


def latent_consistency_generator_term(*, fake, perturbed_fake):
  """zCR's G term (Zhao et al. 2021, section 3.2): minus the distance between G(z)
  and G(z + dz), so that G keeps nearby latents apart in image space instead of
  collapsing them to one image.

  As PyTorch-StudioGAN's `-MSELoss(G(z), G(z_eps))`: minus the mean over every
  element (batch and pixels), so its weight is per pixel, not per image.

  Args:
    fake: f32[B, ...] G(z) (images in [-1, 1], or 2-D points).
    perturbed_fake: f32[B, ...] G(z + dz), the same shape.

  Returns:
    f32[] <= 0 (in [-4, 0] for images in [-1, 1]).
  """
  fake = jnp.asarray(fake).astype(jnp.float32)
  perturbed = jnp.asarray(perturbed_fake).astype(jnp.float32)
  if fake.shape != perturbed.shape:
    raise ValueError(f'fake {fake.shape} and perturbed_fake {perturbed.shape} must have one '
                     'shape.')
  return -jnp.mean(jnp.square(fake - perturbed))
