"""Pure GAN losses and regularisers: adversarial losses, WGAN-GP, R1, historical averaging.

Every function is pure, returns a float32 scalar, and works inside or outside
`jax.jit` / `shard_map` (the `loss_type` string and `label_smoothing` must be
static Python values). Logits are the raw discriminator outputs (no sigmoid).

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

import jax
import jax.numpy as jnp

LOSS_TYPES = ('minimax', 'non_saturating', 'wasserstein', 'hinge', 'least_squares')
# The two losses whose discriminator is a binary classifier with cross-entropy;
# only these have targets that one-sided label smoothing can soften.
_BCE_TYPES = ('minimax', 'non_saturating')

__all__ = [
    'LOSS_TYPES',
    'discriminator_loss',
    'generator_loss',
    'gradient_penalty',
    'r1_penalty',
    'historical_averaging_penalty',
    'update_historical_average',
]


def _check_loss_type(loss_type):
  if loss_type not in LOSS_TYPES:
    raise ValueError(
        f'Unknown loss_type {loss_type!r}; known: {", ".join(LOSS_TYPES)}. '
        'Set config.loss.type to one of them.')


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
  label_smoothing = float(label_smoothing)
  if label_smoothing != 0.0 and loss_type not in _BCE_TYPES:
    raise ValueError(
        f'label_smoothing={label_smoothing} only applies to the cross-entropy '
        f'losses {list(_BCE_TYPES)}, not {loss_type!r}. Set '
        'config.loss.label_smoothing=0.0 or use a cross-entropy loss.')
  if not 0.0 <= label_smoothing < 1.0:
    raise ValueError(
        f'label_smoothing must be in [0, 1) (real targets become 1 - s), got '
        f'{label_smoothing}.')

  if loss_type in _BCE_TYPES:
    # BCE with target t on logit l: t * softplus(-l) + (1 - t) * softplus(l).
    target = 1.0 - label_smoothing
    real_term = target * jax.nn.softplus(-real) + (1.0 - target) * jax.nn.softplus(real)
    fake_term = jax.nn.softplus(fake)
    return jnp.mean(real_term) + jnp.mean(fake_term)
  if loss_type == 'wasserstein':
    return jnp.mean(fake) - jnp.mean(real)
  if loss_type == 'hinge':
    return jnp.mean(jax.nn.relu(1.0 - real)) + jnp.mean(jax.nn.relu(1.0 + fake))
  # least_squares
  return 0.5 * jnp.mean(jnp.square(real - 1.0)) + 0.5 * jnp.mean(jnp.square(fake))


def top_k_logits(fake_logits, fraction):
  """The highest `fraction` of D's logits on a fake batch (top-k training).

  Top-k training (Sinha et al. 2020, "Top-k Training of GANs: Improving GAN
  Performance by Throwing Away Bad Samples"): G's loss uses only the generated
  samples D rates most real, so the samples D rejects (e.g. the thin bridges a
  continuous G draws between the modes of a mixture) do not pull G around.

  Args:
    fake_logits: f[B] raw D outputs on generated data (any real values).
    fraction: share of the batch to keep, in (0, 1]; 1 returns the logits as is.

  Returns:
    f[k] with k = max(1, round(fraction * B)), the k largest logits (descending).

  Raises:
    ValueError: if `fraction` is outside (0, 1].
  """
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f'config.loss.g_top_k must be in (0, 1], got {fraction}.')
  logits = _as_logits(fake_logits, 'fake_logits')
  if fraction == 1.0:
    return logits
  k = max(1, int(round(fraction * logits.shape[0])))
  return jax.lax.top_k(logits, k)[0]


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
  _check_loss_type(loss_type)
  fake = _as_logits(fake_logits, 'fake_logits')
  if loss_type == 'minimax':
    return -jnp.mean(jax.nn.softplus(fake))
  if loss_type == 'non_saturating':
    return jnp.mean(jax.nn.softplus(-fake))
  if loss_type in ('wasserstein', 'hinge'):
    return -jnp.mean(fake)
  # least_squares
  return 0.5 * jnp.mean(jnp.square(fake - 1.0))


def _safe_norm(x, axes):
  """L2 norm over `axes` whose gradient is 0 (not NaN) where the norm is 0."""
  squared = jnp.sum(jnp.square(x), axis=axes)
  positive = squared > 0
  # The inner where keeps sqrt's infinite derivative at 0 out of the backward
  # pass; the outer one puts the exact 0 back.
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def _input_gradients(d_fn, x):
  """grad_x sum(d_fn(x)): f32[B, ...], each sample's gradient of its own logit."""
  # Summing makes one backward pass give every sample's gradient, as samples do
  # not interact in D. With PacGAN packing a sample's gradient is that of its
  # group's logit; BatchNorm in train mode would couple samples, so call D in
  # eval mode (or without BN) inside d_fn.
  return jax.grad(lambda inputs: jnp.sum(d_fn(inputs).astype(jnp.float32)))(x)


def _check_batch(x, name):
  x = jnp.asarray(x)
  if x.ndim < 1:
    raise ValueError(f'{name} must be f32[B, ...] with a batch axis, got a scalar.')
  return x.astype(jnp.float32)


def gradient_penalty(d_fn, real, fake, key):
  """WGAN-GP penalty (Gulrajani et al., 2017), unweighted.

  E_i[(||grad_x D(x_hat_i)||_2 - 1)^2] with x_hat_i = eps_i * real_i + (1 - eps_i) * fake_i.

  eps is drawn exactly as
  `jax.random.uniform(key, (B,) + (1,) * (real.ndim - 1), dtype=jnp.float32)`
  (one eps ~ U[0, 1) per sample, broadcast over its features), so a test can
  reproduce it from the same key.

  Args:
    d_fn: maps f32[B, ...] -> logits f32[B'] (B' = B, or B // pack with PacGAN
      packing). The penalty differentiates sum(d_fn(x)) wrt x and takes each
      sample's norm over its own features, so with packing each sample's
      gradient is that of its group's logit. Close over D's variables; samples
      must not interact (use D's eval mode if it has BatchNorm).
    real: f32[B, ...] real batch.
    fake: f32[B, ...] generated batch, same shape as `real`.
    key: a PRNG key (typed `jax.random.key` or raw uint32) for eps.

  Returns:
    f32[] penalty; multiply by the weight lambda (e.g. 10) yourself.

  Raises:
    ValueError: if `real` and `fake` differ in shape or have no batch axis.
  """
  real = _check_batch(real, 'real')
  fake = _check_batch(fake, 'fake')
  if real.shape != fake.shape:
    raise ValueError(
        f'real and fake must have the same shape for interpolation, got '
        f'{real.shape} and {fake.shape}.')
  eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1),
                           dtype=jnp.float32)
  interpolates = eps * real + (1.0 - eps) * fake
  grads = _input_gradients(d_fn, interpolates)
  norms = _safe_norm(grads, tuple(range(1, grads.ndim)))
  return jnp.mean(jnp.square(norms - 1.0)).astype(jnp.float32)


def r1_penalty(d_fn, real):
  """R1 penalty (Mescheder et al., 2018), unweighted: E_i[||grad_x D(real_i)||_2^2].

  Args:
    d_fn: maps f32[B, ...] -> logits f32[B'] (see `gradient_penalty` for
      packing and BatchNorm).
    real: f32[B, ...] real batch.

  Returns:
    f32[] penalty; the usual regulariser adds gamma / 2 times it to D's loss.

  Raises:
    ValueError: if `real` has no batch axis.
  """
  real = _check_batch(real, 'real')
  grads = _input_gradients(d_fn, real)
  squared_norms = jnp.sum(jnp.square(grads), axis=tuple(range(1, grads.ndim)))
  return jnp.mean(squared_norms).astype(jnp.float32)


def historical_averaging_penalty(params, averaged_params):
  """Historical averaging (Salimans et al., 2016): ||theta - mean of past theta||^2.

  Args:
    params: a pytree of arrays, the current parameters theta.
    averaged_params: a pytree of the same structure, the running mean of past
      parameters (see `update_historical_average`). Treated as a constant only
      if the caller passes it through `jax.lax.stop_gradient` or keeps it out
      of the differentiated arguments (the usual case).

  Returns:
    f32[] the squared L2 distance summed over all leaves (0 for empty trees).

  Raises:
    ValueError: if the two trees differ in structure.
  """
  if jax.tree.structure(params) != jax.tree.structure(averaged_params):
    raise ValueError(
        'params and averaged_params must have the same tree structure; got '
        f'{jax.tree.structure(params)} and {jax.tree.structure(averaged_params)}.')
  squares = jax.tree.map(
      lambda p, a: jnp.sum(jnp.square(jnp.asarray(p, jnp.float32) - jnp.asarray(a, jnp.float32))),
      params, averaged_params)
  return sum(jax.tree.leaves(squares), jnp.zeros((), jnp.float32))


def update_historical_average(averaged_params, params, step):
  """Adds one parameter snapshot to a running mean.

  If `averaged_params` is the mean of `step` snapshots theta_0 .. theta_{step-1},
  the result is the mean of those and `params`:
  averaged * step / (step + 1) + params / (step + 1). With step = 0 the result is
  `params` itself for any finite `averaged_params`, so the average can start as a
  copy of (or zeros like) the initial parameters.

  Args:
    averaged_params: pytree, the mean of the `step` snapshots so far.
    params: pytree of the same structure, the snapshot to add.
    step: int or int32[] (may be traced), the number of snapshots already in
      `averaged_params`, e.g. `state.step` when the average starts from the
      initial parameters and is updated once after every update.

  Returns:
    A pytree like `params` (same dtypes) holding the mean of step + 1 snapshots.
  """
  count = jnp.asarray(step, jnp.float32)
  keep = count / (count + 1.0)
  new = 1.0 / (count + 1.0)
  return jax.tree.map(
      lambda a, p: (keep * a + new * p).astype(jnp.asarray(p).dtype),
      averaged_params, params)
