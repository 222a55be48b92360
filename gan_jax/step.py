"""The per-device training step and the generate function: pure functions, no I/O.

  train_step(state, batch, key) -> (state, metrics)
    = n_critic x D update (each on its own real batch slice and a fresh G(z))
      -> one G update against the updated D -> EMA / historical averages.

The step is written per device with explicit collectives over the mapped axis
(`parallel.DATA_AXIS`): gradients and metrics are `lax.pmean`-ed. It runs under
`jax.shard_map` or `jax.pmap` (see `parallel.DataParallel`). Noise (z, and the
labels of fakes for a conditional model) is drawn for the *global* batch from
a replicated key and sliced per device (`parallel.global_slice`), so the result
does not depend on the number of devices. With `data.random_flip` the step first
mirrors each real image left-right with probability 1/2 (`flip_real_images`), the
same way.
"""

import dataclasses
import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax

from gan_jax import augment
from gan_jax import ema as ema_lib
from gan_jax import models
from gan_jax import objectives
from gan_jax import optim
from gan_jax import parallel
from gan_jax import penalties


@dataclasses.dataclass(frozen=True)
class StepSetup:
  """What the step needs besides its arguments: networks, optimisers, settings.

  Built once from the config by `make_train_step`; static under `jax.jit`.
  """
  generator: Any
  discriminator: Any
  g_tx: Any
  d_tx: Any
  axis_name: str
  z_dim: int
  num_classes: int        # > 0: batches carry labels, D takes them
  g_conditional: bool     # G takes labels (fakes get uniformly drawn labels)
  d_cond: str             # 'none', 'projection', 'acgan' or 'semi_supervised'
  augment_policy: str
  bcr_policy: str         # bCR's T, on top of augment_policy (the config's, or augment_policy)
  augment_fill: float
  augment_translation_ratio: float
  augment_cutout_ratio: float
  loss_type: str
  label_smoothing: float
  gp_weight: float
  r1_weight: float
  hist_weight: float
  ortho_weight: float
  aux_weight: float
  fm_weight: float
  entropy_weight: float   # semi-supervised D: entropy of its class softmax on the reals
  g_adv_weight: float
  d_adv_weight: float
  d_noise: bool           # D draws Gaussian noise (model.d_input_noise / d_hidden_noise)
  bcr_real_weight: float
  bcr_fake_weight: float
  g_top_k: float
  g_top_k_decay: float    # top-k annealing (`losses.top_k_fraction`); 0 = off
  g_top_k_decay_steps: int
  weight_clip: float
  ema_decay: float
  ema_start: int
  n_critic: int
  reuse_fake: bool
  g_bn_stats_in_d_updates: bool  # False: the D updates' G calls leave G's BN averages
  sync_bn: bool
  random_flip: bool       # data.random_flip: mirror each real image with probability 1/2
  lecam_weight: float     # LeCam regularisation of D (0 = off)
  lecam_decay: float      # decay of its running averages of D's outputs
  lecam_start: int        # the averages decay from this step, the term is added after it
  zcr_d_weight: float     # zCR's D term: D(G(z)) against D(G(z + dz)) (0 = off)
  zcr_g_weight: float     # zCR's G term: G(z) pushed away from G(z + dz) (0 = off)
  zcr_radius: float       # dz = zcr_radius * N(0, I)
  ada_target: float       # ADA's target share of augmented reals D calls real (0 = off)
  ada_interval: int       # D updates between adjustments of ADA's p
  ada_kimg: float         # thousands of real images for p to move by 1


# Folded into the step's key for the flips of the real batch, next to the D keys (0)
# and the G key (1), so that turning flips on changes no other draw.
_FLIP_KEY = 2
# Folded into an update's z key for zCR's latent perturbation, next to the fake
# labels' key (1), so that turning zCR on changes no other draw.
_ZCR_KEY = 2


def flip_real_images(images, key, axis_name):
  """Mirrors each real image left-right with probability 1/2 (`data.random_flip`).

  The horizontal flip of StudioGAN's training data (`PRE.apply_rflip`) and
  StyleGAN's `--mirror`, done in the compiled step instead of the input pipeline:
  one fair coin per example of the global batch, drawn from `key` and sliced like z
  (`parallel.global_slice`), so any device count flips the same examples, and a
  resumed run the same ones as an uninterrupted run.

  Args:
    images: f32[n_critic, B_local, H, W, C] this device's real images, for each D
      update of the step.
    key: the step's flip key (replicated).
    axis_name: the mapped axis the batch is split over.

  Returns:
    f32[n_critic, B_local, H, W, C]: each image as it was or mirrored along W.
  """
  n_critic, local = images.shape[:2]
  devices = jax.lax.psum(1, axis_name)
  # Drawn example-major so that a device's rows are one slice of the first axis.
  flips = jax.random.bernoulli(key, 0.5, (local * devices, n_critic))
  flips = parallel.global_slice(flips, axis_name).T
  return jnp.where(flips[:, :, None, None, None], images[:, :, :, ::-1, :], images)


def apply_model(module, params, batch_stats, inputs, labels=None, *, train):
  """Runs G or D; in train mode also returns the updated `batch_stats`.

  Args:
    module: a generator or discriminator of `models.build`.
    params, batch_stats: its variables (`batch_stats` may be {}).
    inputs: z f32[B, z_dim] (G) or samples f32[B, ...] (D).
    labels: int32[B] class labels for a conditional model, else None.
    train: batch statistics and spectral-norm updates on.

  Returns:
    (outputs, batch_stats after the call).
  """
  variables = models.variables(params, batch_stats)
  args = (inputs,) if labels is None else (inputs, labels)
  if not train:
    return module.apply(variables, *args, train=False), batch_stats
  out, updates = module.apply(variables, *args, train=True, mutable=['batch_stats'])
  return out, updates.get('batch_stats', batch_stats)


def _pmean(setup, tree):
  return jax.lax.pmean(tree, setup.axis_name)


def _global_normal(setup, key, local_batch):
  """This device's rows f32[B_local, z_dim] of N(0, I) drawn for the global batch
  from `key`, so any device count gives each row the same values."""
  n = jax.lax.psum(1, setup.axis_name)
  noise = jax.random.normal(key, (local_batch * n, setup.z_dim), jnp.float32)
  return parallel.global_slice(noise, setup.axis_name)


def sample_latents(setup, key, local_batch):
  """z f32[B_local, z_dim] (and fake labels int32[B_local] or None) for this device.

  Drawn for the global batch from `key` and sliced, so any device count gives
  the same rows. Labels are uniform over the classes, from their own key.
  """
  z = _global_normal(setup, key, local_batch)
  if not setup.g_conditional:
    return z, None
  n = jax.lax.psum(1, setup.axis_name)
  labels = jax.random.randint(jax.random.fold_in(key, 1), (local_batch * n,), 0,
                              setup.num_classes, jnp.int32)
  return z, parallel.global_slice(labels, setup.axis_name)


def perturbed_latents(setup, z_key, z):
  """zCR's z + dz, dz = `zcr_radius` * N(0, I) (Zhao et al. 2021; StudioGAN's `zs_eps`).

  Args:
    setup: the `StepSetup`.
    z_key: the key z was drawn from (`sample_latents`, replicated); dz comes from
      it folded with `_ZCR_KEY`.
    z: f32[B_local, z_dim] this device's latents.

  Returns:
    f32[B_local, z_dim]; dz is drawn for the global batch and sliced like z, so any
    device count perturbs each row alike.
  """
  noise = _global_normal(setup, jax.random.fold_in(z_key, _ZCR_KEY), z.shape[0])
  return z + setup.zcr_radius * noise


def d_update(setup, state, real, real_labels, key, fake=None, fake_labels=None,
             g_batch_stats=None):
  """One D update; generates its own fake batch unless `fake` is given.

  Args:
    setup: the `StepSetup`.
    state: the `GANState`.
    real: f32[B_local, ...] this device's real examples; real_labels int32[B_local] or None.
    key: this update's key.
    fake, fake_labels, g_batch_stats: a fake batch made by the caller (reuse_fake)
      and G's statistics after making it.

  Returns:
    (state, metrics averaged over devices).
  """
  z_key, loss_key = jax.random.split(key)
  perturbed = None
  if fake is None:
    z, fake_labels = sample_latents(setup, z_key, real.shape[0])
    fake, g_batch_stats = apply_model(setup.generator, state.g_params, state.g_batch_stats,
                                      z, fake_labels, train=True)
    if setup.zcr_d_weight:
      # G in train mode as for `fake` (its statistics updated again, as StudioGAN's
      # second G call).
      perturbed, g_batch_stats = apply_model(setup.generator, state.g_params, g_batch_stats,
                                             perturbed_latents(setup, z_key, z), fake_labels,
                                             train=True)
      perturbed = jax.lax.stop_gradient(perturbed)
    if not setup.g_bn_stats_in_d_updates:
      # StudioGAN's `untrack_bn_statistics`: G normalises with its batch statistics
      # but its running averages move in the G update only; the spectral-norm
      # vectors move, as PyTorch's spectral_norm does in every train-mode call.
      g_batch_stats = models.with_batch_norm_averages_of(g_batch_stats, state.g_batch_stats)
  fake = jax.lax.stop_gradient(fake)
  grads, (d_batch_stats, aux) = jax.grad(objectives.discriminator_objective, argnums=1,
                                         has_aux=True)(
      setup, state.d_params, state, real, real_labels, fake, fake_labels, loss_key,
      perturbed_fake=perturbed)
  grads = _pmean(setup, grads)
  updates, d_opt_state = setup.d_tx.update(grads, state.d_opt_state, state.d_params)
  d_params = optax.apply_updates(state.d_params, updates)
  if setup.weight_clip:
    d_params = jax.tree.map(lambda p: jnp.clip(p, -setup.weight_clip, setup.weight_clip),
                            d_params)
  if not setup.sync_bn:
    # Per-device statistics normalise each device's rows; the running
    # averages are averaged so the state stays replicated.
    d_batch_stats = _pmean(setup, d_batch_stats)
    g_batch_stats = _pmean(setup, g_batch_stats)
  aux['d_grad_norm'] = optax.global_norm(grads)
  state = state.replace(d_params=d_params, d_opt_state=d_opt_state,
                        d_batch_stats=d_batch_stats, g_batch_stats=g_batch_stats)
  return state, _pmean(setup, aux)


def _g_grads_fresh_fake(setup, state, real, real_labels, key):
  """G loss gradients through a new fake batch G(z), z drawn from `key` (and
  through G(z + dz) with zCR's G term)."""
  z_key, loss_key = jax.random.split(key)
  z, fake_labels = sample_latents(setup, z_key, real.shape[0])
  z_perturbed = perturbed_latents(setup, z_key, z) if setup.zcr_g_weight else None

  def loss_fn(g_params):
    fake, g_bs = apply_model(setup.generator, g_params, state.g_batch_stats, z, fake_labels,
                             train=True)
    perturbed = None
    if z_perturbed is not None:
      perturbed, g_bs = apply_model(setup.generator, g_params, g_bs, z_perturbed, fake_labels,
                                    train=True)
    loss, (d_bs, aux) = objectives.generator_objective(
        setup, state.d_params, state.d_batch_stats, fake, fake_labels, real, real_labels,
        loss_key, perturbed_fake=perturbed, step=state.step)
    return loss, (g_bs, d_bs, aux)

  (loss, (g_bs, d_bs, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.g_params)
  return loss, grads, g_bs, d_bs, aux


def _g_grads_reused_fake(setup, state, real, real_labels, key, reused):
  """G loss gradients through the D update's fake batch: D (already updated) is
  differentiated with respect to the fake images, then G's saved VJP maps that
  to G's parameters, so G runs forward once per iteration."""
  fake, fake_labels, g_vjp = reused
  (loss, (d_bs, aux)), d_fake = jax.value_and_grad(
      lambda f: objectives.generator_objective(
          setup, state.d_params, state.d_batch_stats, f, fake_labels, real, real_labels,
          jax.random.split(key)[1], step=state.step),
      has_aux=True)(fake)
  (grads,) = g_vjp(d_fake)
  return loss, grads, state.g_batch_stats, d_bs, aux


def g_update(setup, state, real, real_labels, key, reused=None):
  """One G update (and the EMA of G's parameters, and of its statistics with
  `train.ema_batch_stats`).

  Args:
    setup: the `StepSetup`.
    state: the `GANState` after the D updates.
    real, real_labels: this device's last real batch f32[B_local, ...] and its labels
      int32[B_local] (-1 = unlabelled) or None; used by feature matching.
    key: the key the fresh z is drawn from.
    reused: (fake, fake_labels, g_vjp) of `train.reuse_fake`, or None.

  Returns:
    (state, metrics averaged over devices).
  """
  if reused is None:
    loss, grads, g_bs, d_bs, aux = _g_grads_fresh_fake(setup, state, real, real_labels, key)
  else:
    loss, grads, g_bs, d_bs, aux = _g_grads_reused_fake(setup, state, real, real_labels, key,
                                                        reused)
  if setup.hist_weight or setup.ortho_weight:
    (reg, reg_aux), reg_grads = jax.value_and_grad(
        objectives.generator_regularizer, argnums=1, has_aux=True)(
            setup, state.g_params, state.g_params_avg)
    grads = jax.tree.map(jnp.add, grads, reg_grads)
    loss = loss + reg
    aux.update(reg_aux)
  aux['g_loss'] = loss
  grads = _pmean(setup, grads)
  updates, g_opt_state = setup.g_tx.update(grads, state.g_opt_state, state.g_params)
  g_params = optax.apply_updates(state.g_params, updates)
  if not setup.sync_bn:
    g_bs, d_bs = _pmean(setup, g_bs), _pmean(setup, d_bs)
  aux['g_grad_norm'] = optax.global_norm(grads)
  # Before ema_start the EMA simply follows G (BigGAN starts averaging late).
  decay = jnp.where(state.step >= setup.ema_start, setup.ema_decay, 0.0)
  ema = ema_lib.update(state.ema_g_params, g_params, decay) if setup.ema_decay else g_params
  g_bs = ema_lib.update_batch_stats(g_bs, decay)
  state = state.replace(g_params=g_params, g_opt_state=g_opt_state,
                        g_batch_stats=g_bs, d_batch_stats=d_bs, ema_g_params=ema)
  return state, _pmean(setup, aux)


def train_step(setup, state, batch, key):
  """One training step on this device's slice of the batch.

  Args:
    setup: the `StepSetup`.
    state: the `GANState` (replicated).
    batch: {'images': f32[n_critic, B_local, ...], 'labels': int32[n_critic, B_local]
      (conditional models only)}: this device's real examples for each D update
      (mirrored here at random with `data.random_flip`).
    key: the run's base key (replicated); the step folds in `state.step`.

  Returns:
    (state, metrics): scalar float32 metrics averaged over devices (d_loss,
    g_loss, d_real / d_fake mean logits, *_prob for BCE losses, grad norms,
    unweighted penalties when on, and 'finite' = 1.0 when both losses are finite).
  """
  images = batch['images']
  labels = batch.get('labels') if setup.num_classes else None
  local_batch = images.shape[1]
  key = jax.random.fold_in(key, state.step)
  if setup.random_flip:
    images = flip_real_images(images, jax.random.fold_in(key, _FLIP_KEY), setup.axis_name)
  d_keys = jax.random.split(jax.random.fold_in(key, 0), setup.n_critic)
  g_key = jax.random.fold_in(key, 1)
  reused = None
  first_labels = None if labels is None else labels[0]
  if setup.reuse_fake:
    # One G forward per iteration (PyTorch DCGAN example): its output feeds the D
    # update (as a constant) and, through the saved VJP, the G update. z comes
    # from the G update's key, so the G update sees the z it would draw itself.
    z, fake_labels = sample_latents(setup, jax.random.split(g_key)[0], local_batch)
    fake, g_vjp, g_batch_stats = jax.vjp(
        lambda p: apply_model(setup.generator, p, state.g_batch_stats, z, fake_labels,
                              train=True),
        state.g_params, has_aux=True)
    state, d_aux = d_update(setup, state, images[0], first_labels, d_keys[0], fake,
                            fake_labels, g_batch_stats)
    reused = (fake, fake_labels, g_vjp)
  elif setup.n_critic == 1:
    state, d_aux = d_update(setup, state, images[0], first_labels, d_keys[0])
  else:
    # scan keeps the compiled program one D update long whatever n_critic is.
    def critic(s, xs):
      return d_update(setup, s, xs['images'], xs.get('labels'), xs['key'])
    xs = {'images': images, 'key': d_keys}
    if labels is not None:
      xs['labels'] = labels
    state, d_aux = jax.lax.scan(critic, state, xs)
    d_aux = jax.tree.map(lambda v: v[-1], d_aux)
  last_labels = None if labels is None else labels[-1]
  state, g_aux = g_update(setup, state, images[-1], last_labels, g_key, reused)
  if setup.hist_weight:
    state = state.replace(
        g_params_avg=penalties.update_historical_average(
            state.g_params_avg, state.g_params, state.step + 1),
        d_params_avg=penalties.update_historical_average(
            state.d_params_avg, state.d_params, state.step + 1))
  state = state.replace(step=state.step + 1)
  metrics = {**d_aux, **g_aux}
  metrics['finite'] = (jnp.isfinite(metrics['d_loss'])
                       & jnp.isfinite(metrics['g_loss'])).astype(jnp.float32)
  return state, metrics


def make_train_step(config, *, axis_name=parallel.DATA_AXIS):
  """Builds the per-device `train_step(state, batch, key) -> (state, metrics)`.

  Args:
    config: the experiment ConfigDict.
    axis_name: the mapped axis the batch is split over; the step must run
      under shard_map / pmap / vmap with this axis name.

  Returns:
    `train_step` bound to the config's networks, optimisers and settings.
  """
  sync_bn = config.parallel.sync_batch_stats
  generator, discriminator = models.build(
      config.model, bn_axis_name=axis_name if sync_bn else None, remat=config.train.remat)
  g_tx, d_tx = optim.make_optimizers(config)
  l, t, m = config.loss, config.train, config.model
  setup = StepSetup(
      generator=generator, discriminator=discriminator, g_tx=g_tx, d_tx=d_tx,
      axis_name=axis_name, z_dim=m.z_dim, num_classes=m.num_classes,
      g_conditional=models.generator_is_conditional(m),
      d_cond=m.d_cond if m.num_classes else 'none', augment_policy=config.augment.policy,
      bcr_policy=augment.consistency_policy(config.augment),
      augment_fill=float(config.augment.fill),
      augment_translation_ratio=float(config.augment.translation_ratio),
      augment_cutout_ratio=float(config.augment.cutout_ratio),
      d_noise=models.has_discriminator_noise(m),
      loss_type=l.type, label_smoothing=l.label_smoothing, gp_weight=l.gp_weight,
      r1_weight=l.r1_weight, hist_weight=l.hist_avg_weight, ortho_weight=l.ortho_weight,
      aux_weight=l.aux_weight, fm_weight=l.feature_matching_weight,
      entropy_weight=l.entropy_weight,
      g_adv_weight=l.g_adversarial_weight, d_adv_weight=l.d_adversarial_weight,
      bcr_real_weight=l.bcr_real_weight, bcr_fake_weight=l.bcr_fake_weight, g_top_k=l.g_top_k,
      g_top_k_decay=float(l.g_top_k_decay), g_top_k_decay_steps=int(l.g_top_k_decay_steps),
      weight_clip=config.optim.weight_clip, ema_decay=t.ema_decay, ema_start=t.ema_start,
      n_critic=t.n_critic, reuse_fake=t.reuse_fake,
      g_bn_stats_in_d_updates=bool(t.g_bn_stats_in_d_updates), sync_bn=sync_bn,
      random_flip=bool(config.data.random_flip),
      lecam_weight=float(l.lecam_weight),
      lecam_decay=float(l.lecam_decay), lecam_start=int(l.lecam_start),
      zcr_d_weight=float(l.zcr_d_weight),
      zcr_g_weight=float(l.zcr_g_weight),
      zcr_radius=float(l.zcr_radius),
      ada_target=float(config.augment.ada_target),
      ada_interval=int(config.augment.ada_interval),
      ada_kimg=float(config.augment.ada_kimg))
  return functools.partial(train_step, setup)


def make_generate_fn(config):
  """`generate(g_params, g_batch_stats, z, labels=None) -> samples` in eval mode.

  Args:
    config: the experiment ConfigDict.

  Returns:
    A pure (not compiled) function mapping generator params / statistics, z
    f32[N, z_dim] and, for a conditional model, labels int32[N] to
    f32[N, *data_shape] (images in [-1, 1], or 2-D points). The statistics are the
    ones that go with the params: `ema.sampling_batch_stats(state.g_batch_stats,
    ema=...)`, not the state's whole entry (which would give the EMA weights the
    trained G's statistics in a run with `train.ema_batch_stats`).
  """
  generator, _ = models.build(config.model)

  def generate(g_params, g_batch_stats, z, labels: Optional[jnp.ndarray] = None):
    out, _ = apply_model(generator, g_params, g_batch_stats, z, labels, train=False)
    return out.astype(jnp.float32)

  return generate
