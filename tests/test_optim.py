"""Tests of the learning-rate schedules and optimisers (gan_jax.optim)."""

import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import errors
from gan_jax import optim
from tests.helpers import tiny_config


def test_constant_schedule_is_the_learning_rate():
  assert optim.learning_rate_schedule(2e-4) == 2e-4


def test_linear_schedule_decays_to_zero_after_decay_start():
  linear = optim.learning_rate_schedule(2e-4, schedule='linear', num_updates=100,
                                        decay_start=0.5)
  np.testing.assert_allclose([float(linear(i)) for i in (0, 50, 75, 100)],
                             [2e-4, 2e-4, 1e-4, 0.0], atol=1e-10)


def test_cosine_schedule_follows_the_half_cosine():
  # Away from the midpoint a half cosine and a line differ (0.9045 against 0.8 at 2/10).
  cosine = optim.learning_rate_schedule(1.0, schedule='cosine', num_updates=10, decay_start=0.0)
  np.testing.assert_allclose([float(cosine(i)) for i in (0, 2, 5, 8, 10)],
                             [1.0, 0.904508, 0.5, 0.095492, 0.0], atol=1e-6)
  # After decay_start: constant for 20 of 40 updates, then the half cosine over the other 20.
  late = optim.learning_rate_schedule(2.0, schedule='cosine', num_updates=40, decay_start=0.5)
  np.testing.assert_allclose([float(late(i)) for i in (0, 19, 20, 24, 30, 40)],
                             [2.0, 2.0, 2.0, 1.809017, 1.0, 0.0], atol=1e-6)


def test_unknown_schedule_lists_the_known_ones():
  with pytest.raises(errors.ConfigError, match='linear'):
    optim.learning_rate_schedule(1.0, schedule='step')


def test_discriminator_schedule_spans_n_critic_updates_per_step():
  config = tiny_config(**{'optim.schedule': 'linear', 'optim.decay_start': 0.0,
                          'train.num_steps': 10, 'train.n_critic': 5})
  g_tx, d_tx = optim.make_optimizers(config)
  params = {'w': jnp.zeros(())}
  grads = {'w': jnp.ones(())}

  def lr_after(tx, n):
    state = tx.init(params)
    for _ in range(n):
      updates, state = tx.update(grads, state, params)
    return -float(updates['w'])

  # Adam's first-moment-normalised step is ~lr for a constant gradient; half way
  # through each schedule (D: 50 updates, G: 10) the rate is half the peak.
  assert abs(lr_after(d_tx, 26) - 2e-4 * (1 - 25 / 50)) < 2e-6
  assert abs(lr_after(g_tx, 6) - 2e-4 * (1 - 5 / 10)) < 2e-6


@pytest.mark.parametrize('field,value,message', [
    ('optim.g.name', 'nope', r"config.optim.g.name 'nope'.*adam"),
    ('optim.d.learning_rate', -1.0, r'config.optim.d.learning_rate must be a finite number >= 0'),
    ('optim.g.learning_rate', float('inf'), r'config.optim.g.learning_rate must be a finite'),
    ('optim.decay_start', 1.5, r'config.optim.decay_start must be in \[0, 1\]'),
    # Each of these trained into a NaN loss blamed on the learning rate.
    ('optim.g.b1', 1.5, r"config.optim.g.b1 must be in \[0, 1\) \(a decay of running averages; "
                        r"Adam's first moment\), got 1.5"),
    ('optim.d.b2', 1.0, r"config.optim.d.b2 must be in \[0, 1\).*Adam's second moment"),
    ('optim.d.b1', float('nan'), r'config.optim.d.b1 must be in \[0, 1\)'),
    ('optim.g.eps', -1.0, r"config.optim.g.eps must be a finite number > 0 \(it keeps adam's"),
    ('optim.weight_clip', float('nan'), r'config.optim.weight_clip must be a finite number >= 0'),
])
def test_bad_optimiser_settings_name_the_field(field, value, message):
  with pytest.raises(errors.ConfigError, match=message):
    optim.make_optimizers(tiny_config(**{field: value}))


def test_rmsprop_is_pytorch_s_with_eps_outside_the_square_root():
  # torch.optim.RMSprop (alpha = b2): v = alpha v + (1 - alpha) g^2;
  # p -= lr g / (sqrt(v) + eps). Gradients far below 1e-4 are where eps inside the
  # root (optax's default) would shrink the step.
  config = tiny_config(**{'optim.d.name': 'rmsprop', 'optim.d.learning_rate': 5e-5,
                          'optim.d.b2': 0.99, 'optim.d.eps': 1e-8})
  tx = optim.make_optimizer(config.optim.d, num_updates=10, field='config.optim.d')
  params = jnp.zeros(4)
  state = tx.init(params)
  v = np.zeros(4)
  for step, g in enumerate([np.array([1e-2, 1e-4, 1e-5, 1e-6]),
                            np.array([-2e-2, 3e-4, -1e-5, 4e-6])]):
    updates, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
    v = 0.99 * v + 0.01 * g ** 2
    expected = -5e-5 * g / (np.sqrt(v) + 1e-8)
    np.testing.assert_allclose(np.asarray(updates), expected, rtol=1e-4, err_msg=f'step {step}')


def test_adam_uses_the_configured_betas_and_eps():
  # Kingma & Ba with optax's placement of eps (outside the root, after bias
  # correction). Betas far from each other and from the defaults make a swap or a
  # dropped field visible; gradients near 1e-6 are where eps 1e-6 halves the step.
  config = tiny_config(**{'optim.g.name': 'adam', 'optim.g.learning_rate': 1e-3,
                          'optim.g.b1': 0.3, 'optim.g.b2': 0.95, 'optim.g.eps': 1e-6})
  tx, _ = optim.make_optimizers(config)
  params = jnp.zeros(4)
  state = tx.init(params)
  b1, b2, eps, lr = 0.3, 0.95, 1e-6, 1e-3
  m = np.zeros(4)
  v = np.zeros(4)
  grads = [np.array([0.5, 1e-6, -2e-3, 3e-6]),
           np.array([-0.2, -2e-6, 1e-3, 1e-6]),
           np.array([0.4, 1e-6, -4e-3, -5e-6])]
  for t, g in enumerate(grads, start=1):
    updates, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g ** 2
    m_hat = m / (1 - b1 ** t)
    v_hat = v / (1 - b2 ** t)
    expected = -lr * m_hat / (np.sqrt(v_hat) + eps)
    np.testing.assert_allclose(np.asarray(updates), expected, rtol=1e-5, err_msg=f'step {t}')


def test_sgd_uses_b1_as_heavy_ball_momentum():
  # optax.sgd's (non-Nesterov) trace: t_k = g_k + momentum t_{k-1}, step -lr t_k,
  # as torch.optim.SGD(momentum=b1) with dampening 0.
  config = tiny_config(**{'optim.d.name': 'sgd', 'optim.d.learning_rate': 0.1,
                          'optim.d.b1': 0.9})
  _, tx = optim.make_optimizers(config)
  params = jnp.zeros(3)
  state = tx.init(params)
  g1 = np.array([1.0, -2.0, 0.5])
  g2 = np.array([0.25, 1.0, -3.0])
  first, state = tx.update(jnp.asarray(g1, jnp.float32), state, params)
  second, state = tx.update(jnp.asarray(g2, jnp.float32), state, params)
  np.testing.assert_allclose(np.asarray(first), -0.1 * g1, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(second), -0.1 * (g2 + 0.9 * g1), rtol=1e-6)


def test_a_beta_an_optimiser_does_not_read_is_not_checked():
  # RMSprop reads only b2 (its decay), SGD only b1 (its momentum).
  optim.make_optimizers(tiny_config(**{'optim.d.name': 'rmsprop', 'optim.d.b1': 1.5}))
  optim.make_optimizers(tiny_config(**{'optim.g.name': 'sgd', 'optim.g.b2': 2.0}))
  with pytest.raises(errors.ConfigError, match=r"config.optim.d.b2 must be in \[0, 1\) \(a "
                     r"decay of running averages; RMSprop's decay, PyTorch's alpha\)"):
    optim.make_optimizers(tiny_config(**{'optim.d.name': 'rmsprop', 'optim.d.b2': 1.0}))
