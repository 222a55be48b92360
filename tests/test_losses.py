"""Tests of gan_jax.losses against closed forms written out with numpy.

Expected values are computed independently of the module (numpy, float64) from
the textbook formulas, e.g. -log sigmoid(x) = log(1 + e^-x).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import defaults
from gan_jax import errors
from gan_jax import losses

REAL = np.array([-2.0, -0.5, 0.3, 3.0])
FAKE = np.array([-1.5, 0.0, 0.7, 2.5])


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _neg_log_sigmoid(x):
  """-log sigmoid(x) = log(1 + e^-x); fine in float64 for the logits used here."""
  return np.log1p(np.exp(-x))


def _neg_log_one_minus_sigmoid(x):
  """-log(1 - sigmoid(x)) = log(1 + e^x)."""
  return np.log1p(np.exp(x))


def _expected_d_loss(loss_type, real, fake, smoothing=0.0):
  if loss_type in ('minimax', 'non_saturating'):
    t = 1.0 - smoothing
    real_term = t * _neg_log_sigmoid(real) + (1 - t) * _neg_log_one_minus_sigmoid(real)
    return real_term.mean() + _neg_log_one_minus_sigmoid(fake).mean()
  if loss_type == 'wasserstein':
    return fake.mean() - real.mean()
  if loss_type == 'hinge':
    return np.maximum(0, 1 - real).mean() + np.maximum(0, 1 + fake).mean()
  if loss_type == 'least_squares':
    return 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake ** 2).mean()
  raise AssertionError(loss_type)


def _expected_g_loss(loss_type, fake):
  if loss_type == 'minimax':
    return np.log(1 - _sigmoid(fake)).mean()
  if loss_type == 'non_saturating':
    return -np.log(_sigmoid(fake)).mean()
  if loss_type in ('wasserstein', 'hinge'):
    return -fake.mean()
  if loss_type == 'least_squares':
    return 0.5 * ((fake - 1) ** 2).mean()
  raise AssertionError(loss_type)


def _expected_d_grads(loss_type, real, fake, smoothing=0.0):
  """Closed-form d(D loss)/d(real logits), d(D loss)/d(fake logits)."""
  n_real, n_fake = len(real), len(fake)
  if loss_type in ('minimax', 'non_saturating'):
    return (_sigmoid(real) - (1 - smoothing)) / n_real, _sigmoid(fake) / n_fake
  if loss_type == 'wasserstein':
    return -np.ones_like(real) / n_real, np.ones_like(fake) / n_fake
  if loss_type == 'hinge':
    return -(real < 1).astype(float) / n_real, (fake > -1).astype(float) / n_fake
  if loss_type == 'least_squares':
    return (real - 1) / n_real, fake / n_fake
  raise AssertionError(loss_type)


def _expected_g_grad(loss_type, fake):
  n = len(fake)
  if loss_type == 'minimax':
    return -_sigmoid(fake) / n
  if loss_type == 'non_saturating':
    return -_sigmoid(-fake) / n
  if loss_type in ('wasserstein', 'hinge'):
    return -np.ones_like(fake) / n
  if loss_type == 'least_squares':
    return (fake - 1) / n
  raise AssertionError(loss_type)


def _f32(x):
  return jnp.asarray(x, jnp.float32)


# ---- values -------------------------------------------------------------------


@pytest.mark.parametrize('loss_type', losses.LOSS_TYPES)
def test_discriminator_loss_closed_form(loss_type):
  got = losses.discriminator_loss(
      real_logits=_f32(REAL), fake_logits=_f32(FAKE), loss_type=loss_type)
  np.testing.assert_allclose(got, _expected_d_loss(loss_type, REAL, FAKE), rtol=1e-6)


@pytest.mark.parametrize('loss_type', losses.LOSS_TYPES)
def test_generator_loss_closed_form(loss_type):
  got = losses.generator_loss(fake_logits=_f32(FAKE), loss_type=loss_type)
  np.testing.assert_allclose(got, _expected_g_loss(loss_type, FAKE), rtol=1e-6)


def test_hand_computed_values():
  # A few numbers worked out by hand, independent of the helpers above.
  zero = _f32([0.0])
  # BCE at logit 0: D(x) = 1/2 for real and fake, so log 2 + log 2.
  np.testing.assert_allclose(
      losses.discriminator_loss(real_logits=zero, fake_logits=zero,
                                loss_type='non_saturating'), 2 * np.log(2), rtol=1e-6)
  np.testing.assert_allclose(
      losses.generator_loss(fake_logits=zero, loss_type='minimax'), -np.log(2), rtol=1e-6)
  np.testing.assert_allclose(
      losses.generator_loss(fake_logits=zero, loss_type='non_saturating'), np.log(2),
      rtol=1e-6)
  # Hinge: real 0.5 -> 0.5, real 2 -> 0; fake -2 -> 0, fake 1 -> 2; means 0.25 + 1.
  np.testing.assert_allclose(
      losses.discriminator_loss(real_logits=_f32([0.5, 2.0]), fake_logits=_f32([-2.0, 1.0]),
                                loss_type='hinge'), 1.25, rtol=1e-6)
  # LSGAN with the 1/2 convention: real 3 -> 0.5 * 4, fake 2 -> 0.5 * 4.
  np.testing.assert_allclose(
      losses.discriminator_loss(real_logits=_f32([3.0]), fake_logits=_f32([2.0]),
                                loss_type='least_squares'), 4.0, rtol=1e-6)
  np.testing.assert_allclose(
      losses.generator_loss(fake_logits=_f32([3.0]), loss_type='least_squares'), 2.0,
      rtol=1e-6)


@pytest.mark.parametrize('loss_type', ['minimax', 'non_saturating'])
def test_label_smoothing_closed_form(loss_type):
  got = losses.discriminator_loss(real_logits=_f32(REAL), fake_logits=_f32(FAKE),
                                  loss_type=loss_type, label_smoothing=0.1)
  np.testing.assert_allclose(got, _expected_d_loss(loss_type, REAL, FAKE, 0.1), rtol=1e-6)
  # One-sided: the fake term is unchanged, so smoothing only moves the real term.
  fake_only = losses.discriminator_loss(real_logits=_f32([50.0]), fake_logits=_f32(FAKE),
                                        loss_type=loss_type, label_smoothing=0.1)
  smoothed_real = 0.9 * _neg_log_sigmoid(50.0) + 0.1 * 50.0  # softplus(50) ~= 50
  np.testing.assert_allclose(
      fake_only, smoothed_real + _neg_log_one_minus_sigmoid(FAKE).mean(), rtol=1e-5)


def test_minimax_and_non_saturating_share_the_discriminator_loss():
  a = losses.discriminator_loss(real_logits=_f32(REAL), fake_logits=_f32(FAKE),
                                loss_type='minimax', label_smoothing=0.2)
  b = losses.discriminator_loss(real_logits=_f32(REAL), fake_logits=_f32(FAKE),
                                loss_type='non_saturating', label_smoothing=0.2)
  assert a == b


# ---- gradients ------------------------------------------------------------------


@pytest.mark.parametrize('loss_type', losses.LOSS_TYPES)
def test_discriminator_loss_gradients(loss_type):
  fn = functools.partial(losses.discriminator_loss, loss_type=loss_type)
  grad_real, grad_fake = jax.grad(
      lambda r, f: fn(real_logits=r, fake_logits=f), argnums=(0, 1))(_f32(REAL), _f32(FAKE))
  want_real, want_fake = _expected_d_grads(loss_type, REAL, FAKE)
  np.testing.assert_allclose(grad_real, want_real, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(grad_fake, want_fake, rtol=1e-5, atol=1e-7)


def test_smoothed_discriminator_loss_gradient():
  grad_real = jax.grad(lambda r: losses.discriminator_loss(
      real_logits=r, fake_logits=_f32(FAKE), loss_type='minimax', label_smoothing=0.1))(
          _f32(REAL))
  np.testing.assert_allclose(grad_real, _expected_d_grads('minimax', REAL, FAKE, 0.1)[0],
                             rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('loss_type', losses.LOSS_TYPES)
def test_generator_loss_gradients(loss_type):
  grad = jax.grad(lambda f: losses.generator_loss(fake_logits=f, loss_type=loss_type))(
      _f32(FAKE))
  np.testing.assert_allclose(grad, _expected_g_grad(loss_type, FAKE), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('loss_type', losses.LOSS_TYPES)
def test_gradients_match_finite_differences(loss_type):
  # Central differences of the float64 closed form, independent of jax.grad's rules.
  # The logits avoid the hinge kinks at +-1.
  h = 1e-5
  real, fake = REAL.copy(), FAKE.copy()
  d_real, d_fake = jax.grad(
      lambda r, f: losses.discriminator_loss(real_logits=r, fake_logits=f,
                                             loss_type=loss_type),
      argnums=(0, 1))(_f32(real), _f32(fake))
  g_fake = jax.grad(lambda f: losses.generator_loss(fake_logits=f, loss_type=loss_type))(
      _f32(fake))
  for i in range(len(real)):
    step = np.zeros_like(real)
    step[i] = h
    fd_real = (_expected_d_loss(loss_type, real + step, fake)
               - _expected_d_loss(loss_type, real - step, fake)) / (2 * h)
    fd_fake = (_expected_d_loss(loss_type, real, fake + step)
               - _expected_d_loss(loss_type, real, fake - step)) / (2 * h)
    fd_g = (_expected_g_loss(loss_type, fake + step)
            - _expected_g_loss(loss_type, fake - step)) / (2 * h)
    np.testing.assert_allclose(d_real[i], fd_real, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(d_fake[i], fd_fake, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(g_fake[i], fd_g, rtol=1e-4, atol=1e-6)


def test_minimax_and_non_saturating_fixed_points_and_saturation():
  minimax = lambda l: losses.generator_loss(fake_logits=l[None], loss_type='minimax')
  non_sat = lambda l: losses.generator_loss(fake_logits=l[None], loss_type='non_saturating')
  grad_mm = jax.vmap(jax.grad(minimax))
  grad_ns = jax.vmap(jax.grad(non_sat))
  logits = _f32(np.linspace(-15.0, 15.0, 61))
  # Same fixed points: wrt the logit, minimax has gradient -sigmoid(l) and
  # non-saturating -sigmoid(-l); both are strictly negative at every finite logit,
  # so neither loss has a stationary point there and both are minimised as
  # D(G(z)) = sigmoid(l) -> 1.
  g_mm, g_ns = np.asarray(grad_mm(logits)), np.asarray(grad_ns(logits))
  assert np.all(g_mm < 0) and np.all(g_ns < 0)
  assert np.all(np.diff(np.asarray(jax.vmap(minimax)(logits))) < 0)
  assert np.all(np.diff(np.asarray(jax.vmap(non_sat)(logits))) < 0)
  # At the game's equilibrium D(x) = 1/2 everywhere (logit 0, constant in x) the
  # two give the same logit gradient, -1/2, and the same zero gradient wrt G.
  np.testing.assert_allclose(grad_mm(_f32([0.0])), [-0.5])
  np.testing.assert_allclose(grad_ns(_f32([0.0])), [-0.5])
  constant_d = lambda x: jnp.zeros(x.shape[:1]) * jnp.sum(x, axis=1)
  generator = lambda theta: theta * jnp.ones((4, 2))
  for loss_type in ('minimax', 'non_saturating'):
    g_theta = jax.grad(lambda theta: losses.generator_loss(
        fake_logits=constant_d(generator(theta)), loss_type=loss_type))(1.5)
    assert float(g_theta) == 0.0
  # Where D rejects the fakes (D(G(z)) -> 0) minimax saturates, ~ -sigmoid(l) -> 0,
  # while non-saturating keeps a gradient ~ -1.
  at = _f32([-20.0])
  np.testing.assert_allclose(grad_mm(at), -_sigmoid(-20.0), rtol=1e-4)
  assert abs(float(grad_mm(at)[0])) < 1e-8
  np.testing.assert_allclose(grad_ns(at), [-1.0], rtol=1e-6)


# ---- dtypes, shapes, stability ----------------------------------------------------------


@pytest.mark.parametrize('loss_type', losses.LOSS_TYPES)
@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16, jnp.int32])
def test_outputs_are_float32_scalars(loss_type, dtype):
  real = jnp.asarray([1, -2, 3], dtype)
  fake = jnp.asarray([0, 2, -1], dtype)
  d = losses.discriminator_loss(real_logits=real, fake_logits=fake, loss_type=loss_type)
  g = losses.generator_loss(fake_logits=fake, loss_type=loss_type)
  for value in (d, g):
    assert value.shape == () and value.dtype == jnp.float32


@pytest.mark.parametrize('loss_type', losses.LOSS_TYPES)
def test_works_under_jit(loss_type):
  d_fn = jax.jit(functools.partial(losses.discriminator_loss, loss_type=loss_type))
  g_fn = jax.jit(functools.partial(losses.generator_loss, loss_type=loss_type))
  np.testing.assert_allclose(d_fn(real_logits=_f32(REAL), fake_logits=_f32(FAKE)),
                             _expected_d_loss(loss_type, REAL, FAKE), rtol=1e-6)
  np.testing.assert_allclose(g_fn(fake_logits=_f32(FAKE)),
                             _expected_g_loss(loss_type, FAKE), rtol=1e-6)


@pytest.mark.parametrize('loss_type', losses.LOSS_TYPES)
def test_extreme_logits_are_finite(loss_type):
  extreme = _f32([-100.0, 100.0])
  smoothing = 0.1 if loss_type in ('minimax', 'non_saturating') else 0.0
  d_loss = lambda r, f: losses.discriminator_loss(
      real_logits=r, fake_logits=f, loss_type=loss_type, label_smoothing=smoothing)
  g_loss = lambda f: losses.generator_loss(fake_logits=f, loss_type=loss_type)
  values = [d_loss(extreme, extreme), g_loss(extreme)]
  grads = [*jax.grad(d_loss, argnums=(0, 1))(extreme, extreme), jax.grad(g_loss)(extreme)]
  for x in values + grads:
    assert np.all(np.isfinite(np.asarray(x))), (loss_type, x)


def test_extreme_bce_values():
  # A perfect D has ~0 loss; a maximally wrong one has ~100 per term (softplus(100)).
  perfect = losses.discriminator_loss(real_logits=_f32([100.0]), fake_logits=_f32([-100.0]),
                                      loss_type='minimax')
  wrong = losses.discriminator_loss(real_logits=_f32([-100.0]), fake_logits=_f32([100.0]),
                                    loss_type='minimax')
  np.testing.assert_allclose(perfect, 0.0, atol=1e-30)
  np.testing.assert_allclose(wrong, 200.0, rtol=1e-6)
  np.testing.assert_allclose(
      losses.generator_loss(fake_logits=_f32([-100.0]), loss_type='non_saturating'), 100.0,
      rtol=1e-6)
  np.testing.assert_allclose(
      losses.generator_loss(fake_logits=_f32([100.0]), loss_type='minimax'), -100.0,
      rtol=1e-6)


def test_real_and_fake_batches_may_differ_in_size():
  got = losses.discriminator_loss(real_logits=_f32(REAL), fake_logits=_f32(FAKE[:2]),
                                  loss_type='hinge')
  np.testing.assert_allclose(got, _expected_d_loss('hinge', REAL, FAKE[:2]), rtol=1e-6)


# ---- bad arguments ----------------------------------------------------------------


def test_unknown_loss_type_lists_known_ones():
  for call in (
      lambda: losses.discriminator_loss(real_logits=_f32(REAL), fake_logits=_f32(FAKE),
                                        loss_type='wgan'),
      lambda: losses.generator_loss(fake_logits=_f32(FAKE), loss_type='wgan')):
    with pytest.raises(ValueError, match='wgan') as info:
      call()
    for known in losses.LOSS_TYPES:
      assert known in str(info.value)


@pytest.mark.parametrize('loss_type', ['wasserstein', 'hinge', 'least_squares'])
def test_label_smoothing_rejected_for_non_bce(loss_type):
  with pytest.raises(ValueError, match='label_smoothing'):
    losses.discriminator_loss(real_logits=_f32(REAL), fake_logits=_f32(FAKE),
                              loss_type=loss_type, label_smoothing=0.1)
  # Zero is the default and is accepted for every loss.
  losses.discriminator_loss(real_logits=_f32(REAL), fake_logits=_f32(FAKE),
                            loss_type=loss_type, label_smoothing=0.0)


@pytest.mark.parametrize('smoothing', [-0.1, 1.0, 1.5])
def test_label_smoothing_out_of_range(smoothing):
  with pytest.raises(ValueError, match=r'\[0, 1\)'):
    losses.discriminator_loss(real_logits=_f32(REAL), fake_logits=_f32(FAKE),
                              loss_type='minimax', label_smoothing=smoothing)


def test_keyword_only():
  with pytest.raises(TypeError):
    losses.discriminator_loss(_f32(REAL), _f32(FAKE), 'hinge')
  with pytest.raises(TypeError):
    losses.generator_loss(_f32(FAKE), 'hinge')


def test_rank_two_logits_rejected():
  with pytest.raises(ValueError, match='squeeze'):
    losses.discriminator_loss(real_logits=jnp.zeros((4, 1)), fake_logits=jnp.zeros((4,)),
                              loss_type='hinge')
  with pytest.raises(ValueError, match='fake_logits'):
    losses.generator_loss(fake_logits=jnp.zeros((4, 1)), loss_type='hinge')



def test_top_k_mask_marks_the_fakes_d_rates_most_real():
  logits = jnp.array([0.3, -2.0, 1.5, 0.0, -0.7, 2.2, -1.1, 0.9])
  np.testing.assert_array_equal(np.asarray(losses.top_k_mask(logits, 0.5)),
                                [1, 0, 1, 0, 0, 1, 0, 1])   # 2.2, 1.5, 0.9, 0.3
  np.testing.assert_array_equal(np.asarray(losses.top_k_mask(logits, 1.0)), np.ones(8))
  np.testing.assert_array_equal(np.asarray(losses.top_k_mask(logits, 0.01)),
                                [0, 0, 0, 0, 0, 1, 0, 0])   # k = max(1, round(0.08))
  # Equal logits: exactly k kept, the earlier rows first.
  np.testing.assert_array_equal(np.asarray(losses.top_k_mask(jnp.array([1., 3., 1., 1.]), 0.5)),
                                [1, 1, 0, 0])
  assert losses.top_k_count(8, 0.3) == 2 and losses.top_k_count(3, 0.1) == 1
  # G's gradient reaches only the kept samples.
  grad = jax.grad(lambda l: jnp.sum(losses.top_k_mask(l, 0.5) * losses.generator_loss_per_example(
      fake_logits=l, loss_type='non_saturating')) / 4)(logits)
  expected = np.where(np.asarray(logits) >= 0.3, -jax.nn.sigmoid(-logits) / 4, 0.0)
  np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-6)
  for bad in (0.0, 1.5, -0.2):
    with pytest.raises(ValueError, match='g_top_k must be in'):
      losses.top_k_mask(logits, bad)


def test_top_k_mask_equals_a_stable_sort_on_a_large_batch_with_ties():
  # Integer logits in a small range: hundreds of ties, broken by batch order.
  logits = np.random.default_rng(5).integers(-20, 20, size=1000).astype(np.float32)
  for fraction in (0.1, 0.37, 0.5, 1.0):
    k = losses.top_k_count(1000, fraction)
    expected = np.zeros(1000)
    expected[np.argsort(-logits, kind='stable')[:k]] = 1
    mask = np.asarray(losses.top_k_mask(jnp.asarray(logits), fraction))
    np.testing.assert_array_equal(mask, expected)
    assert mask.sum() == k


def test_top_k_fraction_anneals_from_the_whole_batch_to_nu():
  # Sinha et al.: k starts at the batch size and is multiplied by gamma every epoch,
  # never below nu * B.
  share = lambda step, **kw: float(losses.top_k_fraction(step, final=0.2, **kw))
  assert share(0) == share(10**6) == pytest.approx(0.2)   # no decay: nu from the start
  for step, expected in ((0, 1.0), (9, 1.0), (10, 0.5), (25, 0.25), (30, 0.2), (100, 0.2)):
    assert share(step, decay=0.5, decay_steps=10) == pytest.approx(expected), step
  assert share(jnp.int32(10), decay=0.99, decay_steps=5) == pytest.approx(0.99 ** 2)
  # A traced share gives the same mask as the concrete one.
  logits = jnp.array([0.3, -2.0, 1.5, 0.0, -0.7, 2.2, -1.1, 0.9])
  traced = jax.jit(losses.top_k_mask)(logits, jnp.float32(0.5))
  np.testing.assert_array_equal(np.asarray(traced), np.asarray(losses.top_k_mask(logits, 0.5)))


@pytest.mark.parametrize('overrides, message', [
    (dict(g_top_k_decay=1.0), r'g_top_k_decay must be in \[0, 1\)'),
    (dict(g_top_k_decay=0.99, g_top_k=0.5), 'g_top_k_decay_steps to an integer >= 1'),
    (dict(g_top_k_decay=0.99, g_top_k_decay_steps=100), 'set g_top_k < 1'),
])
def test_top_k_annealing_settings_are_checked(overrides, message):
  config = defaults.get_config().loss
  config.update(overrides)
  with pytest.raises(errors.ConfigError, match=message):
    losses.check_loss_config(config)


@pytest.mark.parametrize('loss_type', ['minimax', 'non_saturating', 'wasserstein', 'hinge',
                                       'least_squares'])
def test_generator_loss_is_the_mean_of_its_per_example_terms(loss_type):
  logits = jnp.array([0.3, -2.0, 1.5, 0.0])
  by_hand = {'minimax': -np.log1p(np.exp(logits)), 'non_saturating': np.log1p(np.exp(-logits)),
             'wasserstein': -logits, 'hinge': -logits,
             'least_squares': 0.5 * (np.asarray(logits) - 1) ** 2}[loss_type]
  np.testing.assert_allclose(np.asarray(losses.generator_loss_per_example(
      fake_logits=logits, loss_type=loss_type)), by_hand, rtol=1e-6)
  assert float(losses.generator_loss(fake_logits=logits, loss_type=loss_type)) == (
      pytest.approx(float(np.mean(by_hand)), rel=1e-6))


# ---- class logits, semi-supervised GAN, feature matching ------------------------------


CLASS_LOGITS = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0], [-2.0, 1.0, 1.0], [1.0, 1.0, 1.0]])


def _log_softmax(x):
  return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def test_class_cross_entropy_is_the_mean_over_labelled_examples():
  labels = np.array([0, 2, -1, 1])  # the third example is unlabelled
  want = -np.mean([_log_softmax(CLASS_LOGITS)[i, l] for i, l in ((0, 0), (1, 2), (3, 1))])
  got = losses.class_cross_entropy(logits=_f32(CLASS_LOGITS), labels=jnp.asarray(labels))
  np.testing.assert_allclose(float(got), want, rtol=1e-6)


def test_class_cross_entropy_without_labelled_examples_is_zero_with_zero_gradient():
  labels = jnp.full((4,), -1)
  value, grad = jax.value_and_grad(
      lambda l: losses.class_cross_entropy(logits=l, labels=labels))(_f32(CLASS_LOGITS))
  assert float(value) == 0.0 and not np.any(np.asarray(grad))


def test_class_cross_entropy_divides_by_the_given_count():
  # A device's share of the global mean: its sum over the global count per device.
  labels = np.array([0, 2, -1, 1])
  total = -np.sum([_log_softmax(CLASS_LOGITS)[i, l] for i, l in ((0, 0), (1, 2), (3, 1))])
  for count in (0.5, 2.0, 7.0):
    got = losses.class_cross_entropy(logits=_f32(CLASS_LOGITS), labels=jnp.asarray(labels),
                                     num_labelled=count)
    np.testing.assert_allclose(float(got), total / count, rtol=1e-6)
  value, grad = jax.value_and_grad(lambda l: losses.class_cross_entropy(
      logits=l, labels=jnp.asarray(labels), num_labelled=0.0))(_f32(CLASS_LOGITS))
  assert float(value) == 0.0 and not np.any(np.asarray(grad))


def test_class_entropy_closed_form():
  # Softmax probabilities written out: (0.25, 0.75) and uniform over 4 classes.
  two = np.log([[0.25, 0.75]])
  want_two = -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))
  np.testing.assert_allclose(float(losses.class_entropy(logits=_f32(two))), want_two, rtol=1e-6)
  uniform = np.full((3, 4), 7.0)
  np.testing.assert_allclose(float(losses.class_entropy(logits=_f32(uniform))), np.log(4),
                             rtol=1e-6)
  # The mean over the batch: both rows together.
  both = np.log([[0.25, 0.75], [0.5, 0.5]])
  np.testing.assert_allclose(float(losses.class_entropy(logits=_f32(both))),
                             (want_two + np.log(2)) / 2, rtol=1e-6)


def test_class_entropy_of_confident_logits_is_near_zero_and_finite():
  huge = _f32([[300.0, -300.0, 0.0], [-300.0, -300.0, 300.0]])
  value, grad = jax.value_and_grad(lambda l: losses.class_entropy(logits=l))(huge)
  assert 0.0 <= float(value) < 1e-6 and np.all(np.isfinite(np.asarray(grad)))


def test_semi_supervised_logit_gives_d_equal_z_over_z_plus_one():
  z = np.exp(CLASS_LOGITS).sum(axis=1)
  d = _sigmoid(np.asarray(losses.semi_supervised_logit(_f32(CLASS_LOGITS)), np.float64))
  np.testing.assert_allclose(d, z / (z + 1), rtol=1e-6)


def test_semi_supervised_unsupervised_loss_closed_form():
  real, fake = CLASS_LOGITS[:2], CLASS_LOGITS[2:]
  d_real = np.exp(real).sum(1) / (np.exp(real).sum(1) + 1)
  d_fake = np.exp(fake).sum(1) / (np.exp(fake).sum(1) + 1)
  want = -np.log(d_real).mean() - np.log(1 - d_fake).mean()
  got = losses.semi_supervised_unsupervised_loss(real_class_logits=_f32(real),
                                                 fake_class_logits=_f32(fake))
  np.testing.assert_allclose(float(got), want, rtol=1e-6)


def test_the_step_s_route_to_the_unsupervised_loss_gives_the_same_value():
  # The train step does not call semi_supervised_unsupervised_loss: the semi-supervised
  # D head outputs semi_supervised_logit, and D's loss is discriminator_loss under
  # 'non_saturating' or 'minimax' (the cross-entropy losses that head requires, whose D
  # losses are one): the same number.
  real, fake = CLASS_LOGITS[:2], CLASS_LOGITS[2:]
  via_step = losses.discriminator_loss(
      real_logits=losses.semi_supervised_logit(_f32(real)),
      fake_logits=losses.semi_supervised_logit(_f32(fake)), loss_type='non_saturating')
  direct = losses.semi_supervised_unsupervised_loss(real_class_logits=_f32(real),
                                                    fake_class_logits=_f32(fake))
  np.testing.assert_allclose(float(via_step), float(direct), rtol=1e-6)


def test_semi_supervised_unsupervised_loss_is_finite_for_extreme_logits():
  huge = _f32([[300.0, -300.0], [-300.0, -300.0]])
  value, grad = jax.value_and_grad(lambda l: losses.semi_supervised_unsupervised_loss(
      real_class_logits=l, fake_class_logits=l))(huge)
  assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad)))


def test_feature_matching_is_the_squared_distance_of_batch_means():
  real = np.array([[1.0, 2.0], [3.0, 4.0]])   # mean (2, 3)
  fake = np.array([[0.0, 0.0], [1.0, 2.0], [2.0, 1.0]])  # mean (1, 1)
  got = losses.feature_matching_loss(real_features=_f32(real), fake_features=_f32(fake))
  np.testing.assert_allclose(float(got), 1.0 + 4.0, rtol=1e-6)


def test_a_listed_loss_type_without_a_branch_is_an_error_not_another_loss(monkeypatch):
  # A type added to LOSS_TYPES before its losses are written must not fall through.
  monkeypatch.setattr(losses, 'LOSS_TYPES', losses.LOSS_TYPES + ('new_loss',))
  logits = jnp.zeros(4)
  with pytest.raises(NotImplementedError, match="'new_loss' is in LOSS_TYPES but has no branch"):
    losses.discriminator_loss(real_logits=logits, fake_logits=logits, loss_type='new_loss')
  with pytest.raises(NotImplementedError, match="'new_loss'"):
    losses.generator_loss(fake_logits=logits, loss_type='new_loss')
  # Nor when it is also a cross-entropy type (BCE_LOSS_TYPES serves label smoothing).
  monkeypatch.setattr(losses, 'BCE_LOSS_TYPES', losses.BCE_LOSS_TYPES + ('new_loss',))
  with pytest.raises(NotImplementedError, match="'new_loss' is in LOSS_TYPES but has no branch"):
    losses.discriminator_loss(real_logits=logits, fake_logits=logits, loss_type='new_loss')


def test_lecam_regularization_is_one_sided_squared_hinges_around_the_averages():
  # Worked by hand: a_fake = 0.5, a_real = 1.0.
  # reals 2, 0 -> relu(1.5)^2, relu(-0.5)^2 = 2.25, 0: mean 1.125;
  # fakes 0, 3, -1 -> relu(1 - 0)^2, relu(1 - 3)^2, relu(1 + 1)^2 = 1, 0, 4: mean 5 / 3.
  value = losses.lecam_regularization(real_logits=jnp.array([2.0, 0.0]),
                                      fake_logits=jnp.array([0.0, 3.0, -1.0]),
                                      real_average=1.0, fake_average=0.5)
  assert float(value) == pytest.approx(1.125 + 5.0 / 3.0, rel=1e-6)
  # Reals at most a_fake and fakes at least a_real: no penalty.
  assert float(losses.lecam_regularization(
      real_logits=jnp.array([0.5, -3.0]), fake_logits=jnp.array([1.0, 7.0]),
      real_average=1.0, fake_average=0.5)) == 0.0


def test_latent_consistency_terms_by_hand():
  # zCR's D term (bCR's consistency_loss on D(G(z)), D(G(z + dz))): logit
  # differences 1, -1, 0 -> mean of squares 2 / 3.
  d_term = losses.consistency_loss(logits=jnp.array([1.0, -2.0, 0.5]),
                                   augmented_logits=jnp.array([0.0, -1.0, 0.5]))
  assert float(d_term) == pytest.approx(2.0 / 3.0, rel=1e-6)
  # G's term: minus the mean over all 8 elements; two differ, by 2 and by -1.
  fake = np.zeros((2, 2, 2, 1), np.float32)
  perturbed = fake.copy()
  perturbed[0, 0, 0, 0], perturbed[1, 1, 1, 0] = 2.0, -1.0
  g_term = losses.latent_consistency_generator_term(fake=fake, perturbed_fake=perturbed)
  assert float(g_term) == pytest.approx(-5.0 / 8.0, rel=1e-6)
  assert float(losses.latent_consistency_generator_term(fake=fake, perturbed_fake=fake)) == 0.0
  with pytest.raises(ValueError, match='must have one shape'):
    losses.latent_consistency_generator_term(fake=fake, perturbed_fake=fake[:1])
  with pytest.raises(ValueError, match='needs two logit arrays of the same shape'):
    losses.consistency_loss(logits=jnp.zeros(2), augmented_logits=jnp.zeros((2, 1)))


# --- consistency_loss ---------------------------------------------------------------


def test_consistency_loss_is_the_batch_mean_squared_difference():
  a = np.array([0.5, -1.0, 2.0, 0.0], np.float32)
  b = np.array([1.5, -1.0, -1.0, 0.25], np.float32)
  expected = (1.0 + 0.0 + 9.0 + 0.0625) / 4
  loss = losses.consistency_loss(logits=jnp.asarray(a), augmented_logits=jnp.asarray(b))
  assert loss.shape == () and loss.dtype == jnp.float32
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  np.testing.assert_allclose(losses.consistency_loss(logits=b, augmented_logits=a), expected,
                             rtol=1e-6)
  assert losses.consistency_loss(logits=a, augmented_logits=a) == 0.0


def test_consistency_loss_sums_extra_axes_per_sample():
  a = np.array([[0.0, 1.0], [2.0, 0.0]], np.float32)
  b = np.zeros_like(a)
  np.testing.assert_allclose(losses.consistency_loss(logits=a, augmented_logits=b), (1.0 + 4.0) / 2,
                             rtol=1e-6)


def test_consistency_loss_gradient():
  a = jnp.array([0.5, -1.0, 2.0])
  b = jnp.array([1.5, -1.0, -1.0])
  grad_a, grad_b = jax.grad(lambda x, y: losses.consistency_loss(logits=x, augmented_logits=y),
                            argnums=(0, 1))(a, b)
  np.testing.assert_allclose(grad_a, [2 * -1.0 / 3, 0.0, 2 * 3.0 / 3], rtol=1e-6)
  np.testing.assert_allclose(grad_b, -np.asarray(grad_a), rtol=1e-6)


def test_consistency_loss_refuses_mismatched_shapes():
  with pytest.raises(ValueError, match='same shape'):
    losses.consistency_loss(logits=jnp.zeros(4), augmented_logits=jnp.zeros((4, 1)))
