"""Learning-rate schedules and the optimisers of G and D, built from `config.optim`.

`make_optimizers(config)` is the only entry point the rest of gan_jax uses; the
names it accepts (`OPTIMIZERS`, `SCHEDULES`) are checked here and nowhere else.
"""

import math

import optax

from gan_jax import errors

OPTIMIZERS = ('adam', 'rmsprop', 'sgd')
SCHEDULES = ('constant', 'linear', 'cosine')


def learning_rate_schedule(learning_rate, *, schedule='constant', num_updates=None,
                           decay_start=0.5):
  """A learning rate, constant or decaying to 0 over the end of training.

  Args:
    learning_rate: the peak (initial) learning rate, >= 0.
    schedule: 'constant', 'linear' or 'cosine' (decay to 0 at `num_updates`).
    num_updates: optimiser updates in the whole run (needed unless constant).
    decay_start: fraction in [0, 1] of `num_updates` trained at the full rate first.

  Returns:
    A float or an optax schedule (update count -> learning rate).

  Raises:
    ConfigError: for an unknown schedule.
  """
  if schedule not in SCHEDULES:
    raise errors.ConfigError(
        f'Unknown config.optim.schedule {schedule!r}; known: {list(SCHEDULES)}.')
  if schedule == 'constant':
    return learning_rate
  start = int(num_updates * decay_start)
  length = max(1, num_updates - start)
  decay = (optax.linear_schedule(learning_rate, 0.0, length) if schedule == 'linear'
           else optax.cosine_decay_schedule(learning_rate, length))
  return optax.join_schedules([optax.constant_schedule(learning_rate), decay], [start])


# The fields of `config.optim.g` / `.d` besides name and learning_rate that each
# optimiser reads (`make_optimizer`), and what a b1 / b2 is to it (for the messages).
_FIELD_USE = {
    'adam': {'b1': "Adam's first moment", 'b2': "Adam's second moment", 'eps': None},
    'rmsprop': {'b2': "RMSprop's decay, PyTorch's alpha", 'eps': None},
    'sgd': {'b1': "SGD's momentum"},
}
FIELDS_READ = {name: tuple(uses) for name, uses in _FIELD_USE.items()}


def make_optimizer(opt_config, *, schedule='constant', num_updates=None, decay_start=0.5,
                   field='config.optim'):
  """An optax transformation from an optimiser config (`config.optim.g` / `.d`).

  Args:
    opt_config: ConfigDict with name ('adam' | 'rmsprop' | 'sgd'),
      learning_rate, b1, b2, eps. RMSprop uses b2 as its decay (PyTorch alpha),
      SGD uses b1 as momentum (0 = plain SGD).
    schedule, num_updates, decay_start: see `learning_rate_schedule`.
    field: the config path of `opt_config`, for error messages.

  Returns:
    An `optax.GradientTransformation`.

  Raises:
    ConfigError: for an unknown optimiser name, a learning rate that is negative or
      not finite, b1 / b2 outside [0, 1), or an eps that is not a positive number.
  """
  name = opt_config.name
  if name not in OPTIMIZERS:
    raise errors.ConfigError(f'Unknown {field}.name {name!r}; known: {list(OPTIMIZERS)}.')
  if not (math.isfinite(opt_config.learning_rate) and opt_config.learning_rate >= 0):
    raise errors.ConfigError(
        f'{field}.learning_rate must be a finite number >= 0 (0 freezes the network), got '
        f'{opt_config.learning_rate}.')
  # Outside these ranges the averages grow without bound or the steps divide by zero:
  # the run would end at its first NaN loss, blamed on the learning rate.
  for what, use in _FIELD_USE[name].items():
    value = opt_config[what]
    if what == 'eps' and not (math.isfinite(value) and value > 0):
      raise errors.ConfigError(f'{field}.eps must be a finite number > 0 (it keeps {name}\'s '
                               f'steps from dividing by zero), got {value}.')
    if what != 'eps' and not 0 <= value < 1:  # NaN too
      raise errors.ConfigError(
          f'{field}.{what} must be in [0, 1) (a decay of running averages; {use}), got '
          f'{value}.')
  lr = learning_rate_schedule(opt_config.learning_rate, schedule=schedule,
                              num_updates=num_updates, decay_start=decay_start)
  if name == 'adam':
    return optax.adam(lr, b1=opt_config.b1, b2=opt_config.b2, eps=opt_config.eps)
  if name == 'rmsprop':
    # PyTorch's RMSprop (which WGAN's reference code uses) adds eps outside the square
    # root; optax puts it inside unless told: with eps 1e-8 a gradient whose RMS is
    # 1e-5 would take a step 100x smaller than PyTorch's.
    return optax.rmsprop(lr, decay=opt_config.b2, eps=opt_config.eps, eps_in_sqrt=False)
  return optax.sgd(lr, momentum=opt_config.b1 or None)


def make_optimizers(config):
  """(generator optimiser, discriminator optimiser) of a config, schedules included.

  The discriminator makes `n_critic` updates per train step, so its schedule
  spans `num_steps * n_critic` updates.

  Raises:
    ConfigError: for unknown names or bad values in `config.optim`.
  """
  o, t = config.optim, config.train
  if not 0.0 <= o.decay_start <= 1.0:
    raise errors.ConfigError(
        f'config.optim.decay_start must be in [0, 1], got {o.decay_start}.')
  if not (math.isfinite(o.weight_clip) and o.weight_clip >= 0):
    raise errors.ConfigError(
        f'config.optim.weight_clip must be a finite number >= 0 (D\'s parameters are clipped '
        f'to [-c, c]; 0 = off), got {o.weight_clip}.')
  common = dict(schedule=o.schedule, decay_start=o.decay_start)
  return (make_optimizer(o.g, num_updates=t.num_steps, field='config.optim.g', **common),
          make_optimizer(o.d, num_updates=t.num_steps * t.n_critic, field='config.optim.d',
                         **common))
