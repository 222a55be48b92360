"""Tests of gan_jax.penalties (WGAN-GP, R1, historical averaging) against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import penalties


def _f32(x):
  return jnp.asarray(x, jnp.float32)


# ---- gradient penalty / R1 ------------------------------------------------------------


def _linear_d(w):
  """D(x) = <w, x> per sample, for x: f32[B, *w.shape]."""
  return lambda x: jnp.sum(x * w, axis=tuple(range(1, x.ndim)))


@pytest.mark.parametrize('seed', [0, 1, 7])
def test_gradient_penalty_linear_d_is_exact(seed):
  rng = np.random.default_rng(seed)
  w = _f32(rng.normal(size=(4, 4, 3)) * 0.3)
  real = _f32(rng.normal(size=(5, 4, 4, 3)))
  fake = _f32(rng.normal(size=(5, 4, 4, 3)))
  want = (np.linalg.norm(np.asarray(w, np.float64)) - 1.0) ** 2
  for key in (jax.random.key(seed), jax.random.key(seed + 100), jax.random.PRNGKey(3)):
    got = penalties.gradient_penalty(_linear_d(w), real, fake, key)
    assert got.shape == () and got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_gradient_penalty_reproduces_documented_eps():
  # D(x) = ||x||^2 / 2 per sample has gradient x, so the penalty reveals x_hat.
  rng = np.random.default_rng(0)
  real = _f32(rng.normal(size=(6, 3, 2)))
  fake = _f32(rng.normal(size=(6, 3, 2)))
  key = jax.random.key(42)
  d_fn = lambda x: 0.5 * jnp.sum(jnp.square(x), axis=(1, 2))
  eps = np.asarray(jax.random.uniform(key, (6,) + (1,) * 2, dtype=jnp.float32), np.float64)
  x_hat = eps * np.asarray(real) + (1 - eps) * np.asarray(fake)
  want = np.mean((np.linalg.norm(x_hat.reshape(6, -1), axis=1) - 1.0) ** 2)
  np.testing.assert_allclose(penalties.gradient_penalty(d_fn, real, fake, key), want, rtol=1e-5)
  assert np.all((eps >= 0) & (eps < 1)) and len(np.unique(eps)) == 6


def test_gradient_penalty_with_packing_uses_per_sample_norms():
  # PacGAN with pack=2: D sees pairs concatenated, D(pair) = <v, [x_a, x_b]>.
  # Sample a's gradient is v[:d], sample b's is v[d:].
  rng = np.random.default_rng(1)
  d = 3
  v = _f32(rng.normal(size=(2 * d,)))
  d_fn = lambda x: jnp.reshape(x, (x.shape[0] // 2, 2 * d)) @ v
  real = _f32(rng.normal(size=(4, d)))
  fake = _f32(rng.normal(size=(4, d)))
  v64 = np.asarray(v, np.float64)
  want = 0.5 * ((np.linalg.norm(v64[:d]) - 1) ** 2 + (np.linalg.norm(v64[d:]) - 1) ** 2)
  np.testing.assert_allclose(penalties.gradient_penalty(d_fn, real, fake, jax.random.key(0)),
                             want, rtol=1e-5)


def test_gradient_penalty_gradient_wrt_d_params():
  # For linear D the penalty is (||w|| - 1)^2, so d/dw = 2 (||w|| - 1) w / ||w||.
  rng = np.random.default_rng(2)
  w = _f32(rng.normal(size=(5,)))
  real = _f32(rng.normal(size=(3, 5)))
  fake = _f32(rng.normal(size=(3, 5)))
  grad = jax.grad(lambda w: penalties.gradient_penalty(_linear_d(w), real, fake,
                                                    jax.random.key(0)))(w)
  w64 = np.asarray(w, np.float64)
  norm = np.linalg.norm(w64)
  np.testing.assert_allclose(grad, 2 * (norm - 1) * w64 / norm, rtol=1e-5)
  # At w = 0 the input gradient is 0 and its norm is not differentiable; the
  # penalty is 1 and its gradient stays finite instead of NaN.
  zero = jnp.zeros((5,))
  np.testing.assert_allclose(
      penalties.gradient_penalty(_linear_d(zero), real, fake, jax.random.key(0)), 1.0)
  grad0 = jax.grad(lambda w: penalties.gradient_penalty(_linear_d(w), real, fake,
                                                     jax.random.key(0)))(zero)
  assert np.all(np.isfinite(np.asarray(grad0)))


def test_gradient_penalty_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match='same shape'):
    penalties.gradient_penalty(_linear_d(jnp.ones(3)), jnp.zeros((4, 3)), jnp.zeros((2, 3)),
                            jax.random.key(0))


def test_gradient_penalty_under_jit():
  w = _f32(np.full((2, 2), 0.25))
  real = jnp.ones((3, 2, 2))
  fake = -jnp.ones((3, 2, 2))
  got = jax.jit(lambda key: penalties.gradient_penalty(_linear_d(w), real, fake, key))(
      jax.random.key(5))
  np.testing.assert_allclose(got, (0.5 - 1) ** 2, rtol=1e-6)


def test_r1_penalty_linear_and_quadratic():
  rng = np.random.default_rng(3)
  w = _f32(rng.normal(size=(4, 4, 2)))
  real = _f32(rng.normal(size=(7, 4, 4, 2)))
  got = penalties.r1_penalty(_linear_d(w), real)
  assert got.shape == () and got.dtype == jnp.float32
  np.testing.assert_allclose(got, np.sum(np.asarray(w, np.float64) ** 2), rtol=1e-5)
  quadratic = lambda x: 0.5 * jnp.sum(jnp.square(x), axis=(1, 2, 3))
  want = np.mean(np.sum(np.asarray(real, np.float64) ** 2, axis=(1, 2, 3)))
  np.testing.assert_allclose(penalties.r1_penalty(quadratic, real), want, rtol=1e-5)


def test_r1_penalty_gradient_wrt_d_params():
  # R1 of linear D is ||w||^2, so d/dw = 2 w (a second-order derivative through D).
  w = _f32([0.5, -1.0, 2.0])
  real = _f32(np.ones((2, 3)))
  grad = jax.grad(lambda w: penalties.r1_penalty(_linear_d(w), real))(w)
  np.testing.assert_allclose(grad, 2 * np.asarray(w), rtol=1e-6)


# ---- historical averaging ------------------------------------------------------------


def test_historical_averaging_penalty_closed_form():
  params = {'a': _f32([1.0, 2.0]), 'b': {'c': _f32([[3.0]])}}
  avg = {'a': _f32([0.0, 0.0]), 'b': {'c': _f32([[1.0]])}}
  got = penalties.historical_averaging_penalty(params, avg)
  assert got.shape == () and got.dtype == jnp.float32
  np.testing.assert_allclose(got, 1.0 + 4.0 + 4.0, rtol=1e-6)
  # Gradient wrt theta is 2 (theta - average).
  grad = jax.grad(penalties.historical_averaging_penalty)(params, avg)
  np.testing.assert_allclose(grad['a'], [2.0, 4.0])
  np.testing.assert_allclose(grad['b']['c'], [[4.0]])
  assert penalties.historical_averaging_penalty({}, {}) == 0.0


def test_historical_averaging_rejects_mismatched_trees():
  with pytest.raises(ValueError, match='same tree structure'):
    penalties.historical_averaging_penalty({'a': jnp.ones(2)}, {'b': jnp.ones(2)})


def test_update_historical_average_is_running_mean():
  rng = np.random.default_rng(4)
  snapshots = [{'w': _f32(rng.normal(size=(3,))), 'b': _f32(rng.normal(size=()))}
               for _ in range(5)]
  # Starting from anything finite: step 0 returns the first snapshot itself.
  avg = jax.tree.map(jnp.zeros_like, snapshots[0])
  update = jax.jit(penalties.update_historical_average)
  for step, snap in enumerate(snapshots):
    avg = update(avg, snap, jnp.asarray(step, jnp.int32))
    for name in ('w', 'b'):
      want = np.mean([np.asarray(s[name], np.float64) for s in snapshots[:step + 1]], axis=0)
      np.testing.assert_allclose(avg[name], want, rtol=1e-5, atol=1e-6)
      assert avg[name].dtype == jnp.float32
  # Step 0 is exactly the new snapshot whatever the (finite) previous average held.
  first = penalties.update_historical_average(
      {'w': jnp.full(3, 9.0), 'b': jnp.zeros(())}, snapshots[0], 0)
  np.testing.assert_array_equal(first['w'], snapshots[0]['w'])


def test_orthogonal_regularization_leaves_the_diagonal_out():
  # Columns (filters) of a: orthogonal with different norms -> no penalty.
  a = np.array([[3.0, 0.0], [0.0, 0.5], [0.0, 0.0]])
  # Columns of b: (1, 1, 0) and (1, 0, 0), inner product 1 -> 2 off-diagonal ones.
  b = np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
  conv = np.random.default_rng(0).normal(size=(2, 2, 3, 4))
  flat = conv.reshape(-1, 4)
  gram = flat.T @ flat
  want_conv = np.sum((gram * (1 - np.eye(4))) ** 2)
  params = {'dense': {'kernel': _f32(a), 'bias': _f32([5.0, 5.0])},
            'other': {'kernel': _f32(b)}, 'conv': {'kernel': _f32(conv)},
            'shared': {'embedding': _f32(b)}}
  got = penalties.orthogonal_regularization(params)
  np.testing.assert_allclose(float(got), 0.0 + 2.0 + want_conv, rtol=1e-5)
  without = penalties.orthogonal_regularization(params, exclude=('conv',))
  np.testing.assert_allclose(float(without), 2.0, rtol=1e-6)


def test_orthogonal_regularization_gradient_matches_biggan_pytorch():
  # BigGAN-PyTorch adds strength * 2 (W W^T * (1 - I)) W to the gradient of a
  # torch weight W [out, fan_in]; half our penalty has that gradient.
  w_torch = np.random.default_rng(1).normal(size=(4, 6))
  grad = jax.grad(lambda k: 0.5 * penalties.orthogonal_regularization({'l': {'kernel': k}}))(
      _f32(w_torch.T))
  want = 2 * ((w_torch @ w_torch.T) * (1 - np.eye(4))) @ w_torch
  np.testing.assert_allclose(np.asarray(grad).T, want, rtol=1e-4, atol=1e-5)
