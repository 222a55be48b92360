"""Pure regularisers of GAN training: WGAN-GP, R1, historical averaging, orthogonal
regularisation.

Every function is pure and returns a float32 scalar (or, for
`update_historical_average`, the new average); the weights are applied by the
caller (`gan_jax.objectives`). The gradient penalties take D as a closure
`d_fn: f32[B, ...] -> logits f32[B']` over its variables. Each sample's gradient is
its own only when samples do not interact in D: without BatchNorm in D, or with D
in eval mode (the step runs D as its loss does, in train mode, and WGAN-GP's
configs use layer norm).
"""

import jax
import jax.numpy as jnp


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
  # group's logit; BatchNorm in train mode couples samples (see the module docstring).
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
      gradient is that of its group's logit. Close over D's variables; with
      BatchNorm in train mode samples interact (see the module docstring).
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


def orthogonal_regularization(params, *, exclude=()):
  """BigGAN's orthogonal regularisation (Brock et al. 2019, eq. 3), unweighted.

  sum over weight matrices W of ||W^T W * (1 - I)||_F^2: it pushes the filters
  (columns) of every weight towards orthogonality without constraining their
  norms, as BigGAN-PyTorch's `ortho` (which leaves the diagonal out). Each
  `kernel` leaf of rank >= 2 is read as a matrix [fan_in, out] (convolution
  kernels [h, w, in, out] are flattened over h, w, in); biases, BatchNorm scales
  and embeddings are left out.

  Args:
    params: a (nested dict) pytree of parameters.
    exclude: substrings of leaf paths to leave out (e.g. ('shared',) for the
      shared class embedding).

  Returns:
    f32[] the sum over the kept matrices.
  """
  total = jnp.zeros((), jnp.float32)
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = jax.tree_util.keystr(path)
    if "'kernel'" not in name or leaf.ndim < 2 or any(e in name for e in exclude):
      continue
    w = jnp.asarray(leaf, jnp.float32).reshape(-1, leaf.shape[-1])
    gram = w.T @ w
    total = total + jnp.sum(jnp.square(gram * (1.0 - jnp.eye(gram.shape[0]))))
  return total
