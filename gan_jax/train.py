"""GAN training: state creation, the per-device D/G steps, and the training loop.

The step is a pure function of `(state, batch, key)`:

  train_step = n_critic x d_step (each on its own real batch slice and fresh z)
               -> g_step against the updated D -> EMA / historical averages.

It is written per device with explicit collectives over `parallel.DATA_AXIS`
(gradients and metrics are `lax.pmean`-ed) and compiled by
`parallel.DataParallel` with shard_map (default) or pmap. Noise is drawn for the
global batch and sliced per device (`parallel.global_slice`), so the result does
not depend on the number of devices.

`train_and_evaluate(config, workdir)` is the whole run: data, state, compiled
step, the loop, logging, sample grids, evaluation and checkpoints.
"""

import json
import logging
import os
import signal
import threading
import queue
import time

from etils import epath
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gan_jax import losses
from gan_jax import models
from gan_jax import parallel
from gan_jax.state import GANState

OPTIMIZERS = ('adam', 'rmsprop', 'sgd')


# ----------------------------------------------------------------------------
# Construction
# ----------------------------------------------------------------------------


def data_shape(config):
  """Shape of one example: (H, W, C) for image models, (channels,) for 'mlp'."""
  m = config.model
  if m.name == 'mlp':
    return (m.channels,)
  return (m.resolution, m.resolution, m.channels)


SCHEDULES = ('constant', 'linear', 'cosine')


def learning_rate_schedule(learning_rate, *, schedule='constant', num_updates=None,
                           decay_start=0.5):
  """A learning rate, constant or decaying to 0 over the end of training.

  Args:
    learning_rate: the peak (initial) learning rate.
    schedule: 'constant', 'linear' or 'cosine' (decay to 0 at `num_updates`).
    num_updates: optimiser updates in the whole run (needed unless constant).
    decay_start: fraction of `num_updates` trained at the full rate first.

  Returns:
    A float or an optax schedule (update count -> learning rate).
  """
  if schedule not in SCHEDULES:
    raise ValueError(f'Unknown config.optim.schedule {schedule!r}; known: {list(SCHEDULES)}.')
  if schedule == 'constant':
    return learning_rate
  start = int(num_updates * decay_start)
  length = max(1, num_updates - start)
  decay = (optax.linear_schedule(learning_rate, 0.0, length) if schedule == 'linear'
           else optax.cosine_decay_schedule(learning_rate, length))
  return optax.join_schedules([optax.constant_schedule(learning_rate), decay], [start])


def make_optimizer(opt_config, *, schedule='constant', num_updates=None, decay_start=0.5):
  """An optax transformation from an optimiser config (`config.optim.g` / `.d`).

  Args:
    opt_config: ConfigDict with name ('adam' | 'rmsprop' | 'sgd'),
      learning_rate, b1, b2, eps. RMSprop uses b2 as its decay (PyTorch alpha),
      SGD uses b1 as momentum (0 = plain SGD).
    schedule, num_updates, decay_start: see `learning_rate_schedule`.

  Returns:
    An `optax.GradientTransformation`.
  """
  name = opt_config.name
  lr = learning_rate_schedule(opt_config.learning_rate, schedule=schedule,
                              num_updates=num_updates, decay_start=decay_start)
  if name == 'adam':
    return optax.adam(lr, b1=opt_config.b1, b2=opt_config.b2, eps=opt_config.eps)
  if name == 'rmsprop':
    # PyTorch's RMSprop adds eps outside the square root, like optax's eps.
    return optax.rmsprop(lr, decay=opt_config.b2, eps=opt_config.eps)
  if name == 'sgd':
    return optax.sgd(lr, momentum=opt_config.b1 or None)
  raise ValueError(f'Unknown optimizer {name!r}; known: {list(OPTIMIZERS)}.')


def make_optimizers(config):
  """(generator optimiser, discriminator optimiser) of a config, schedules included.

  The discriminator makes `n_critic` updates per train step, so its schedule
  spans `num_steps * n_critic` updates.
  """
  o, t = config.optim, config.train
  common = dict(schedule=o.get('schedule', 'constant'), decay_start=o.get('decay_start', 0.5))
  return (make_optimizer(o.g, num_updates=t.num_steps, **common),
          make_optimizer(o.d, num_updates=t.num_steps * t.n_critic, **common))


def validate_config(config):
  """Checks names and numbers of a config before anything is built.

  Raises:
    ValueError: naming the bad field, its value and what is allowed.
  """
  models.get(config.model.name)  # raises with the known names
  if config.loss.type not in losses.LOSS_TYPES:
    raise ValueError(f'Unknown config.loss.type {config.loss.type!r}; '
                     f'known: {list(losses.LOSS_TYPES)}.')
  for which in ('g', 'd'):
    name = config.optim[which].name
    if name not in OPTIMIZERS:
      raise ValueError(f'Unknown config.optim.{which}.name {name!r}; '
                       f'known: {list(OPTIMIZERS)}.')
  if config.optim.get('schedule', 'constant') not in SCHEDULES:
    raise ValueError(f'Unknown config.optim.schedule {config.optim.schedule!r}; '
                     f'known: {list(SCHEDULES)}.')
  if config.parallel.mode not in parallel.MODES:
    raise ValueError(f'Unknown config.parallel.mode {config.parallel.mode!r}; '
                     f'known: {list(parallel.MODES)}.')
  parallel.cpu_compiler_options(
      config.parallel.get('cpu_conv_kernels', parallel.DEFAULT_CPU_CONV_KERNELS))
  if config.train.n_critic < 1:
    raise ValueError(f'config.train.n_critic must be >= 1, got {config.train.n_critic}.')
  if config.train.get('reuse_fake', False) and config.train.n_critic != 1:
    raise ValueError(
        'config.train.reuse_fake needs config.train.n_critic == 1 (the G update reuses '
        f'the one D update\'s fake batch), got n_critic={config.train.n_critic}. Set '
        'train.reuse_fake=False or train.n_critic=1.')
  if not 0.0 < config.loss.get('g_top_k', 1.0) <= 1.0:
    raise ValueError(f'config.loss.g_top_k must be in (0, 1], got {config.loss.g_top_k}.')
  if not 0.0 <= config.train.ema_decay < 1.0:
    raise ValueError(f'config.train.ema_decay must be in [0, 1), got {config.train.ema_decay}.')
  if config.loss.label_smoothing and config.loss.type not in ('minimax', 'non_saturating'):
    raise ValueError('config.loss.label_smoothing applies to the BCE losses '
                     f"('minimax', 'non_saturating') only, not {config.loss.type!r}.")


def create_state(config, key):
  """Initialises parameters, statistics and optimiser states.

  Args:
    config: the experiment ConfigDict.
    key: a typed PRNG key for parameter initialisation.

  Returns:
    A host-side `GANState` at step 0.
  """
  generator, discriminator = models.build(config.model)
  g_key, d_key = jax.random.split(key)
  batch = max(2, config.model.pack)
  z = jnp.zeros((batch, config.model.z_dim), jnp.float32)
  x = jnp.zeros((batch,) + data_shape(config), jnp.float32)
  g_vars = generator.init({'params': g_key}, z, train=False)
  d_vars = discriminator.init({'params': d_key}, x, train=False)
  g_params, d_params = g_vars['params'], d_vars['params']
  g_tx, d_tx = make_optimizers(config)
  hist = config.loss.hist_avg_weight > 0
  return GANState(
      step=jnp.zeros((), jnp.int32),
      g_params=g_params,
      d_params=d_params,
      g_batch_stats=g_vars.get('batch_stats', {}),
      d_batch_stats=d_vars.get('batch_stats', {}),
      g_opt_state=g_tx.init(g_params),
      d_opt_state=d_tx.init(d_params),
      ema_g_params=g_params,
      g_params_avg=g_params if hist else {},
      d_params_avg=d_params if hist else {},
  )


# ----------------------------------------------------------------------------
# The per-device step
# ----------------------------------------------------------------------------


def _apply(module, params, batch_stats, inputs, *, train):
  """Runs a module; in train mode also returns its updated batch_stats."""
  variables = {'params': params}
  if batch_stats:
    variables['batch_stats'] = batch_stats
  if not train:
    return module.apply(variables, inputs, train=False), batch_stats
  out, updates = module.apply(variables, inputs, train=True, mutable=['batch_stats'])
  return out, updates.get('batch_stats', batch_stats)


def _bce_prob(logits):
  return jnp.mean(jax.nn.sigmoid(logits.astype(jnp.float32)))


def make_train_step(config, *, axis_name=parallel.DATA_AXIS):
  """Builds the per-device `train_step(state, batch, key) -> (state, metrics)`.

  Args:
    config: the experiment ConfigDict.
    axis_name: the mapped axis the batch is split over; the step must run
      under shard_map / pmap / vmap with this axis name.

  Returns:
    `train_step(state, batch, key)` where batch is f32[n_critic, B_local, ...]
    (this device's real examples for each D update) and key a typed PRNG key
    (the run's base key; the step folds in `state.step`). Metrics are scalar
    float32 averaged over devices: d_loss, g_loss, d_real / d_fake (mean raw
    logits; also *_prob for BCE losses), d_grad_norm, g_grad_norm, and the
    unweighted gp / r1 / hist_avg penalties when enabled.
  """
  sync_bn = config.parallel.sync_batch_stats
  generator, discriminator = models.build(
      config.model, bn_axis_name=axis_name if sync_bn else None)
  g_tx, d_tx = make_optimizers(config)
  loss_type = config.loss.type
  smoothing = config.loss.label_smoothing
  gp_weight, r1_weight = config.loss.gp_weight, config.loss.r1_weight
  hist_weight = config.loss.hist_avg_weight
  g_top_k = config.loss.get('g_top_k', 1.0)
  weight_clip = config.optim.weight_clip
  ema_decay = config.train.ema_decay
  n_critic = config.train.n_critic
  z_dim = config.model.z_dim
  reuse_fake = config.train.get('reuse_fake', False)
  bce = loss_type in ('minimax', 'non_saturating')

  def pmean(tree):
    return jax.lax.pmean(tree, axis_name)

  def sample_z(key, local_batch):
    n = jax.lax.psum(1, axis_name)
    z = jax.random.normal(key, (local_batch * n, z_dim), jnp.float32)
    return parallel.global_slice(z, axis_name)

  def d_update(state, real, key, fake=None, g_batch_stats=None):
    z_key, gp_key = jax.random.split(key)
    if fake is None:
      z = sample_z(z_key, real.shape[0])
      fake, g_batch_stats = _apply(generator, state.g_params, state.g_batch_stats,
                                   z, train=True)
    fake = jax.lax.stop_gradient(fake)

    def loss_fn(d_params):
      real_logits, bs = _apply(discriminator, d_params, state.d_batch_stats,
                               real, train=True)
      fake_logits, bs = _apply(discriminator, d_params, bs, fake, train=True)
      loss = losses.discriminator_loss(
          real_logits=real_logits, fake_logits=fake_logits,
          loss_type=loss_type, label_smoothing=smoothing)
      aux = {'d_real': jnp.mean(real_logits.astype(jnp.float32)),
             'd_fake': jnp.mean(fake_logits.astype(jnp.float32))}
      if bce:
        aux['d_real_prob'] = _bce_prob(real_logits)
        aux['d_fake_prob'] = _bce_prob(fake_logits)
      # Penalties see D with its current statistics, without updating them.
      d_fn = lambda x: _apply(discriminator, d_params, bs, x, train=True)[0]
      if gp_weight:
        # Interpolation weights are per device (key folded with the device index).
        gp = losses.gradient_penalty(
            d_fn, real, fake,
            jax.random.fold_in(gp_key, jax.lax.axis_index(axis_name)))
        loss = loss + gp_weight * gp
        aux['gp'] = gp
      if r1_weight:
        r1 = losses.r1_penalty(d_fn, real)
        loss = loss + 0.5 * r1_weight * r1
        aux['r1'] = r1
      if hist_weight:
        hist = losses.historical_averaging_penalty(d_params, state.d_params_avg)
        loss = loss + hist_weight * hist
        aux['d_hist_avg'] = hist
      aux['d_loss'] = loss
      return loss, (bs, aux)

    grads, (d_batch_stats, aux) = jax.grad(loss_fn, has_aux=True)(state.d_params)
    grads = pmean(grads)
    updates, d_opt_state = d_tx.update(grads, state.d_opt_state, state.d_params)
    d_params = optax.apply_updates(state.d_params, updates)
    if weight_clip:
      d_params = jax.tree.map(lambda p: jnp.clip(p, -weight_clip, weight_clip), d_params)
    if not sync_bn:
      # Per-device statistics normalise each device's rows; the running
      # averages are averaged so the state stays replicated.
      d_batch_stats = pmean(d_batch_stats)
      g_batch_stats = pmean(g_batch_stats)
    aux['d_grad_norm'] = optax.global_norm(grads)
    state = state.replace(d_params=d_params, d_opt_state=d_opt_state,
                          d_batch_stats=d_batch_stats, g_batch_stats=g_batch_stats)
    return state, pmean(aux)

  def g_loss_of_fake(d_params, d_batch_stats, fake):
    # D runs in train mode (its statistics update), as in the PyTorch DCGAN example.
    fake_logits, d_bs = _apply(discriminator, d_params, d_batch_stats, fake, train=True)
    fake_logits = losses.top_k_logits(fake_logits, g_top_k)
    return losses.generator_loss(fake_logits=fake_logits, loss_type=loss_type), d_bs

  def g_grads_fresh_fake(state, local_batch, key):
    """G loss gradients through a new fake batch G(z), z drawn from `key`."""
    z = sample_z(key, local_batch)

    def loss_fn(g_params):
      fake, g_bs = _apply(generator, g_params, state.g_batch_stats, z, train=True)
      loss, d_bs = g_loss_of_fake(state.d_params, state.d_batch_stats, fake)
      return loss, (g_bs, d_bs)

    (loss, (g_bs, d_bs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.g_params)
    return loss, grads, g_bs, d_bs

  def g_grads_reused_fake(state, fake, g_vjp):
    """G loss gradients through the D update's fake batch: D (already updated) is
    differentiated with respect to the fake images, then G's saved VJP maps that
    to G's parameters, so G runs forward once per iteration."""
    (loss, d_bs), d_fake = jax.value_and_grad(
        lambda f: g_loss_of_fake(state.d_params, state.d_batch_stats, f),
        has_aux=True)(fake)
    (grads,) = g_vjp(d_fake)
    return loss, grads, state.g_batch_stats, d_bs

  def g_update(state, local_batch, key, fake=None, g_vjp=None):
    if fake is None:
      loss, grads, g_bs, d_bs = g_grads_fresh_fake(state, local_batch, key)
    else:
      loss, grads, g_bs, d_bs = g_grads_reused_fake(state, fake, g_vjp)
    aux = {}
    if hist_weight:
      hist, hist_grads = jax.value_and_grad(losses.historical_averaging_penalty)(
          state.g_params, state.g_params_avg)
      grads = jax.tree.map(lambda g, h: g + hist_weight * h, grads, hist_grads)
      loss = loss + hist_weight * hist
      aux['g_hist_avg'] = hist
    aux['g_loss'] = loss
    grads = pmean(grads)
    updates, g_opt_state = g_tx.update(grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, updates)
    if not sync_bn:
      g_bs, d_bs = pmean(g_bs), pmean(d_bs)
    aux['g_grad_norm'] = optax.global_norm(grads)
    if ema_decay:
      ema = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p,
                         state.ema_g_params, g_params)
    else:
      ema = g_params
    state = state.replace(g_params=g_params, g_opt_state=g_opt_state,
                          g_batch_stats=g_bs, d_batch_stats=d_bs, ema_g_params=ema)
    return state, pmean(aux)

  def train_step(state, batch, key):
    key = jax.random.fold_in(key, state.step)
    d_keys = jax.random.split(jax.random.fold_in(key, 0), n_critic)
    g_key = jax.random.fold_in(key, 1)
    fake = g_vjp = None
    if reuse_fake:
      # One G forward per iteration (PyTorch DCGAN example): its output feeds the D
      # update (as a constant) and, through the saved VJP, the G update. z comes
      # from the G update's key, so the G update sees the z it would draw itself.
      z = sample_z(g_key, batch.shape[1])
      fake, g_vjp, g_batch_stats = jax.vjp(
          lambda p: _apply(generator, p, state.g_batch_stats, z, train=True),
          state.g_params, has_aux=True)
      state, d_aux = d_update(state, batch[0], d_keys[0], fake, g_batch_stats)
    elif n_critic == 1:
      state, d_aux = d_update(state, batch[0], d_keys[0])
    else:
      # scan keeps the compiled program one D update long whatever n_critic is.
      state, d_aux = jax.lax.scan(
          lambda s, xs: d_update(s, xs[0], xs[1]), state, (batch, d_keys))
      d_aux = jax.tree.map(lambda v: v[-1], d_aux)
    state, g_aux = g_update(state, batch.shape[1], g_key, fake, g_vjp)
    if hist_weight:
      state = state.replace(
          g_params_avg=losses.update_historical_average(
              state.g_params_avg, state.g_params, state.step + 1),
          d_params_avg=losses.update_historical_average(
              state.d_params_avg, state.d_params, state.step + 1))
    state = state.replace(step=state.step + 1)
    metrics = {**d_aux, **g_aux}
    metrics['finite'] = (jnp.isfinite(metrics['d_loss'])
                         & jnp.isfinite(metrics['g_loss'])).astype(jnp.float32)
    return state, metrics

  return train_step


def make_generate_fn(config):
  """`generate(g_params, g_batch_stats, z) -> samples` in eval mode (not compiled).

  Args:
    config: the experiment ConfigDict.

  Returns:
    A pure function mapping generator params / statistics and z f32[N, z_dim]
    to f32[N, *data_shape] (images in [-1, 1]).
  """
  generator, _ = models.build(config.model)

  def generate(g_params, g_batch_stats, z):
    return _apply(generator, g_params, g_batch_stats, z, train=False)[0].astype(jnp.float32)

  return generate


# ----------------------------------------------------------------------------
# The training loop
# ----------------------------------------------------------------------------


class NonFiniteLossError(FloatingPointError):
  """A loss became NaN or infinite; the run stopped without saving that state."""


class _Prefetcher:
  """Pulls batches from the data iterator in a thread and puts them on device.

  Each queued item carries the iterator state *after* its batch, so a
  checkpoint records exactly the batches the training steps consumed, however
  far the thread has read ahead.
  """

  def __init__(self, iterator, to_device, depth):
    self._iterator = iterator
    self._to_device = to_device
    self._queue = queue.Queue(maxsize=max(1, depth))
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)
    self._thread.start()

  def _run(self):
    try:
      while not self._stop.is_set():
        batch = next(self._iterator)
        state = self._iterator.get_state()
        item = (self._to_device(batch), state, None)
        while not self._stop.is_set():
          try:
            self._queue.put(item, timeout=0.1)
            break
          except queue.Full:
            continue
    except Exception as e:  # pylint: disable=broad-except
      self._queue.put((None, None, e))

  def get(self):
    """Returns (device_batch, iterator_state_after_it, seconds_waited)."""
    start = time.perf_counter()
    batch, state, error = self._queue.get()
    if error is not None:
      raise error
    return batch, state, time.perf_counter() - start

  def close(self):
    self._stop.set()
    self._thread.join(timeout=5)


def _saved_config_conflicts(saved, config):
  """Fields of `model` (and the data shape) that differ between two configs."""
  conflicts = []
  for key, value in config.model.items():
    if key in saved.get('model', {}) and saved['model'][key] != value:
      conflicts.append(f'model.{key}: saved {saved["model"][key]!r}, now {value!r}')
  return conflicts


def prepare_workdir(config, workdir):
  """Creates the workdir, refuses an incompatible one, and saves the config.

  Raises:
    ValueError: when the workdir holds a run whose saved config describes a
      different model (resuming it would load mismatching parameters).
  """
  path = epath.Path(workdir) / 'config.json'
  path.parent.mkdir(parents=True, exist_ok=True)
  if path.exists():
    saved = json.loads(path.read_text())
    conflicts = _saved_config_conflicts(saved, config)
    if conflicts:
      raise ValueError(
          f'The workdir {workdir} holds a run of a different model, so it cannot '
          'be resumed with this config:\n  ' + '\n  '.join(conflicts) +
          '\nUse another --workdir, or the config the run was started with.')
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices('gan_jax_workdir_checked')
  if jax.process_index() == 0:
    path.write_text(config.to_json_best_effort(indent=2, sort_keys=True))


def abstract_state(config, sharding):
  """The state's shapes and dtypes, placed with `sharding`, without allocating it."""
  shapes = jax.eval_shape(lambda: create_state(config, jax.random.key(0)))
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                      shapes)


class _StopSignal:
  """Turns SIGTERM / SIGINT into a flag the loop checks (save, then exit)."""

  def __init__(self):
    self.received = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    if self.received is not None:  # a second signal: stop at once
      raise KeyboardInterrupt
    self.received = signal.Signals(signum).name
    logging.warning('Received %s: saving a checkpoint and stopping.', self.received)

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def train_and_evaluate(config, workdir):
  """Trains (or resumes) a GAN in `workdir` and returns the final host state.

  The workdir receives `config.json`, `checkpoints/`, `tensorboard/`,
  `metrics.jsonl`, `samples/step_XXXXXXX.png` grids from a fixed z, and
  `eval.json` lines when evaluation is on.

  Args:
    config: the experiment ConfigDict (see configs/default.py).
    workdir: output folder; an existing run there is resumed from its latest
      readable checkpoint.

  Returns:
    The final GANState (on device, replicated).

  Raises:
    NonFiniteLossError: when a loss becomes NaN/inf (names the first bad step;
      checkpoints written before it are kept).
    ValueError: for bad config values or an incompatible workdir.
  """
  from gan_jax import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  from gan_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from gan_jax import writers  # pylint: disable=g-import-not-at-top

  validate_config(config)
  is_chief = jax.process_index() == 0
  logging.info('JAX process %d of %d; %d local / %d global devices (%s)',
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count(), jax.devices()[0].platform)
  prepare_workdir(config, workdir)

  dp = parallel.DataParallel.from_config(config.parallel)
  n_critic = config.train.n_critic
  global_batch = config.train.batch_size
  if global_batch % (dp.num_devices) or global_batch % jax.process_count():
    raise ValueError(
        f'config.train.batch_size={global_batch} must be divisible by the number '
        f'of devices ({dp.num_devices}) and processes ({jax.process_count()}).')
  local_batch = global_batch // jax.process_count()
  shape = data_shape(config)

  iterator = data_lib.create_train_iterator(
      config.data, data_shape=shape, batch_size=n_critic * local_batch,
      seed=config.seed, shard_index=jax.process_index(),
      shard_count=jax.process_count())

  root_key = jax.random.key(config.seed)
  init_key, train_key, sample_key = jax.random.split(root_key, 3)
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                     max_to_keep=config.train.max_to_keep)
  target = (dp.replicated if dp.mode == 'shard_map'
            else jax.sharding.SingleDeviceSharding(jax.local_devices()[0]))
  restored = ckpt.restore(abstract_state(config, target))
  if restored is None:
    # One compiled init is much faster than hundreds of eager initialiser ops.
    state = jax.jit(lambda key: create_state(config, key))(init_key)
    data_state = None
    logging.info('Starting a new run in %s', workdir)
  else:
    state, data_state, restored_step = restored
    iterator.set_state(data_state)
    logging.info('Resumed from the checkpoint at step %d in %s', restored_step, workdir)
  state = dp.put_state(state)
  start_step = int(parallel.to_host(dp.get_state(state).step))

  step_fn = dp.compile(make_train_step(config))
  generate = make_generate_fn(config)
  sample_z = jax.random.normal(sample_key, (config.train.num_sample_images, config.model.z_dim))
  generate_jit = jax.jit(generate)

  def host_state():
    return dp.get_state(state)

  def generate_samples(z, st=None):
    st = host_state() if st is None else st
    return parallel.to_host(generate_jit(st.ema_g_params, st.g_batch_stats, z))

  reference_points = None
  if config.data.source == 'toy':
    reference_points = data_lib.load_eval_data(
        config.data, data_shape=shape, split='train', num_examples=1000)

  writer = writers.MetricWriter(workdir, enabled=is_chief)

  def write_samples(step):
    if not is_chief:
      generate_samples(sample_z)  # keep processes in step for multi-host arrays
      return
    image = writers.samples_to_image(generate_samples(sample_z), reference=reference_points)
    writers.save_png(os.path.join(workdir, 'samples', f'step_{step:07d}.png'), image)
    writer.write_image(step, 'samples', image)

  evaluator = None
  if config.eval.metrics and config.eval.every >= 0:
    from gan_jax import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
    evaluator = metrics_lib.make_evaluator(config, data_shape=shape)
  best_fid = _read_best(workdir)

  def evaluate(step):
    nonlocal best_fid
    st = host_state()
    results = evaluator(lambda z: generate_samples(z, st), seed=config.seed)
    logging.info('Evaluation at step %d: %s', step,
                 ', '.join(f'{k}={v:.4g}' for k, v in results.items()))
    writer.write_scalars(step, {f'eval/{k}': v for k, v in results.items()})
    if is_chief:
      eval_log = epath.Path(workdir) / 'eval.jsonl'
      previous = eval_log.read_text() if eval_log.exists() else ''
      eval_log.write_text(previous + json.dumps({'step': step, **results}) + '\n')
    # The best checkpoint by FID (or by the offline proxy's Frechet distance).
    metric = next((k for k in ('fid', 'proxy_fd') if k in results), None)
    if metric and (best_fid is None or results[metric] < best_fid[1]):
      best_fid = (step, results[metric])
      _save_best(workdir, st, step, metric, results)
    return results

  num_steps = config.train.num_steps
  log_every, sample_every = config.train.log_every, config.train.sample_every
  ckpt_every, eval_every = config.train.checkpoint_every, config.eval.every
  progress = None
  if is_chief and config.train.progress_bar:
    import tqdm  # pylint: disable=g-import-not-at-top
    progress = tqdm.tqdm(total=num_steps, initial=start_step, desc='train',
                         unit='step', dynamic_ncols=True, mininterval=1.0)

  def put_batch(batch):
    return dp.put_batch(batch.reshape((n_critic, local_batch) + batch.shape[1:]))

  first_bad = None  # device scalar: first step whose losses were not finite (-1 = none)
  track_bad = jax.jit(lambda bad, finite, step: jnp.where((bad < 0) & (finite < 1), step, bad))
  pending = None
  last_log_time, waited, steps_since_log = time.perf_counter(), 0.0, 0

  def check_finite():
    if first_bad is None:
      return
    bad = int(parallel.to_host(first_bad))
    if bad >= 0:
      raise NonFiniteLossError(
          f'A loss became NaN or infinite at step {bad + 1} (the update from step '
          f'{bad} to {bad + 1}); stopping. Checkpoints written before it are kept in '
          f'{os.path.join(workdir, "checkpoints")}. Lower the learning rate, check '
          'the data for NaNs, or enable a gradient penalty.')

  def flush_pending():
    nonlocal pending
    if pending is None:
      return
    step, metrics, rate, wait_frac = pending
    pending = None
    values = dp.get_metrics(metrics)
    values.pop('finite', None)
    check_finite()
    values.update({'steps_per_sec': rate, 'input_wait_frac': wait_frac})
    writer.write_scalars(step, values)
    if progress is not None:
      progress.set_postfix({k: f'{values[k]:.3f}' for k in ('d_loss', 'g_loss') if k in values},
                           refresh=False)
    if is_chief:
      logging.info('step %d/%d: %s', step, num_steps,
                   ', '.join(f'{k}={v:.4g}' for k, v in sorted(values.items())))

  data_state_now = data_state if data_state is not None else iterator.get_state()
  # Tests set GAN_JAX_SIGKILL_AT_STEP=N to kill the process (no clean-up, as a
  # preempted VM) right after the checkpoint of step N is on disk.
  kill_at_step = int(os.environ.get('GAN_JAX_SIGKILL_AT_STEP', '-1'))
  prefetch = _Prefetcher(iterator, put_batch, config.data.prefetch)
  step = start_step
  try:
    with _StopSignal() as stop:
      while step < num_steps:
        batch, data_state_next, wait_s = prefetch.get()
        state, metrics = step_fn(state, batch, train_key)
        data_state_now = data_state_next
        first_bad = track_bad(first_bad if first_bad is not None else jnp.int32(-1),
                              _finite_flag(dp, metrics), step)
        step += 1
        waited += wait_s
        steps_since_log += 1
        if progress is not None:
          progress.update(1)
        flush_pending()  # the previous log step's metrics: the device is busy with this one
        if step % log_every == 0 or step == num_steps:
          now = time.perf_counter()
          elapsed = max(now - last_log_time, 1e-9)
          pending = (step, metrics, steps_since_log / elapsed, min(1.0, waited / elapsed))
          last_log_time, waited, steps_since_log = now, 0.0, 0
        stop_now = _agree(stop.received is not None, step, log_every)
        if step % ckpt_every == 0 or step == num_steps or stop_now:
          check_finite()
          ckpt.save(step, host_state(), data_state_now)
        if kill_at_step == step:  # fault injection for the resume tests
          ckpt.wait()
          os.kill(os.getpid(), signal.SIGKILL)
        if sample_every and (step % sample_every == 0 or step == num_steps):
          write_samples(step)
        if evaluator is not None and ((eval_every > 0 and step % eval_every == 0)
                                      or step == num_steps):
          evaluate(step)
        if stop_now:
          logging.warning('Stopped by %s at step %d after saving a checkpoint; rerun '
                          'the same command to resume.', stop.received, step)
          break
      flush_pending()
      check_finite()
      if start_step >= num_steps and is_chief:
        logging.info('The run in %s is already at step %d >= num_steps=%d.',
                     workdir, start_step, num_steps)
  finally:
    prefetch.close()
    if hasattr(iterator, 'close'):
      iterator.close()
    ckpt.close()
    writer.close()
    if progress is not None:
      progress.close()
  return state


def _finite_flag(dp, metrics):
  finite = metrics['finite']
  return finite[0] if dp.mode == 'pmap' else finite


def _agree(flag, step, every):
  """Whether to stop now; on many processes all agree (checked at log steps)."""
  if jax.process_count() == 1:
    return flag
  if step % every:
    return False
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(np.any(multihost_utils.process_allgather(np.array([flag]))))


def _read_best(workdir):
  path = epath.Path(workdir) / 'best' / 'best.json'
  if not path.exists():
    return None
  best = json.loads(path.read_text())
  return best['step'], best['value']


def _save_best(workdir, state, step, metric, results):
  """Keeps the checkpoint with the lowest `metric` (FID) in `<workdir>/best/`."""
  from gan_jax import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  best = checkpoint_lib.Checkpointer(os.path.join(workdir, 'best'), max_to_keep=1,
                                     async_save=False)
  best.save(step, state, {'results': results})
  best.close()
  if jax.process_index() == 0:
    (epath.Path(workdir) / 'best' / 'best.json').write_text(
        json.dumps({'step': step, 'metric': metric, 'value': results[metric],
                    'results': results}))
