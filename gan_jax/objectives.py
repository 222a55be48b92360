"""What one D update and one G update minimise: the config's loss terms, assembled.

D's objective, for a real batch x (labels y) and a fake batch G(z) (labels y'):

  d_adversarial_weight * adversarial loss of D(A(x)) and D(A(G(z)))   (`loss.type`)
  + aux_weight * [CE(D_cls(A(x)), y) + CE(D_cls(A(G(z))), y')]   (ACGAN)
  + aux_weight * CE(D_cls(A(x)), y) over labelled x               (semi-supervised)
  + entropy_weight * mean entropy of softmax(D_cls(A(x))) over all x  (semi-supervised)
  + bcr_real_weight * ||D(A(x)) - D(T(A(x)))||^2 + bcr_fake_weight * (same for G(z))
  + gp_weight * GP(x, G(z)) + r1_weight / 2 * R1 + hist_avg_weight * historical averaging
  + lecam_weight * LeCam(D(A(x)), D(A(G(z))); running averages a_real, a_fake)
  + zcr_d_weight * mean (D(A(G(z))) - D(A(G(z + dz))))^2   (zCR; one draw of A for both)
  where, for an ACGAN D, each of the three consistency terms also adds the mean over
  samples and classes of the squared difference of D_cls on the same pair (StudioGAN)

G's objective, through the fakes:

  g_adversarial_weight * generator loss of D(A(G(z)))   (top-k of `loss.g_top_k`)
  + aux_weight * CE(D_cls(A(G(z))), y')                  (ACGAN)
  + feature_matching_weight * ||mean f(A(x)) - mean f(A(G(z)))||^2  (means over the global batch)
  - zcr_g_weight * mean (G(z) - G(z + dz))^2 over every pixel       (zCR)
  and, on G's parameters (`generator_regularizer`): hist_avg_weight * historical
  averaging + ortho_weight / 2 * orthogonal regularisation.

A is DiffAugment with `augment.policy` (the identity when ''), each application
with its own key; with ADA (`augment.ada_target` > 0, Karras et al. 2020) each op of
A is applied to each image with probability p, which the D updates adapt so that
the share of augmented reals D calls real stays near the target (`_add_ada`). T,
bCR's augmentation, is the ops of `augment.bcr_policy`
(default: those of `augment.policy`; CR's own, a flip and a reflection-padded
shift, is `augment.CR_POLICY`) applied on top of A, as in the DiffAugment
authors' CR code, so without DiffAugment the bCR term is the paper's
||D(x) - D(T(x))||^2. zCR's dz is `zcr_radius` * N(0, I) (`step.perturbed_latents`);
its D term gives G(z + dz) the draw of A (and of D's noise) that G(z) got, so that
only the latent differs (StudioGAN's ICR, which has no DiffAugment, compares D on
the two unaugmented batches: the same without DiffAugment). GP interpolates the
raw x and G(z) and runs D without A; R1 is E ||d D(A(x)) / dx||^2, the gradient
with respect to the raw real image (StudioGAN, StyleGAN2-ADA). D_cls are the class
logits and f the features D sows. D adds its Gaussian noise (`model.d_input_noise` /
`d_hidden_noise`, off by default) in every call but the penalties'.
"""

import jax
import jax.numpy as jnp

from gan_jax import augment
from gan_jax import ema
from gan_jax import losses
from gan_jax import models
from gan_jax import parallel
from gan_jax import penalties
from gan_jax.models import conditional

# The shared class embedding of BigGAN is left out of orthogonal regularisation,
# as in BigGAN-PyTorch.
_ORTHO_EXCLUDE = ('shared',)
# Folded into a D call's augmentation key to get the key of its Gaussian noise, so
# the augmentation keys stay what they are without noise.
_NOISE = 0x6e6f6973
# LeCam's running averages of D's mean outputs live in D's statistics under this
# name ({'real': f32[], 'fake': f32[]}): they change with every D update, like
# BatchNorm's, and a run without LeCam keeps the state it always had.
LECAM_STATS = 'lecam'
# ADA's probability p and its accumulated verdicts live there too, under this name
# ({'p', 'sign_sum', 'updates'}: f32[] each), for the same reasons.
ADA_STATS = 'ada'


def initial_lecam_stats():
  """LeCam's running averages before the first D update: 0. (Their value only shows
  with `loss.lecam_start` 0; from a later start, as the references', the averages
  are the last batch's means when decay begins.)"""
  return {'real': jnp.zeros((), jnp.float32), 'fake': jnp.zeros((), jnp.float32)}


def initial_ada_stats():
  """ADA before the first D update: p = 0 (no augmentation), nothing accumulated."""
  return {name: jnp.zeros((), jnp.float32) for name in ('p', 'sign_sum', 'updates')}


def ada_probability(setup, d_batch_stats):
  """ADA's current p (f32[]) from D's statistics, or None without ADA."""
  return d_batch_stats[ADA_STATS]['p'] if setup.ada_target else None


def ada_update(stats, verdict, *, target, interval, images, kimg):
  """One D update's step of ADA's p (StyleGAN2-ADA's heuristic, as StudioGAN's).

  The verdicts of `interval` D updates are averaged into r_t, the mean over the
  augmented reals of sign(D's output - threshold); then p moves by
  sign(r_t - target) * images * interval / (kimg * 1000), clipped to [0, 1], so
  that p can cross [0, 1] in `kimg` thousand real images.

  Args:
    stats: {'p', 'sign_sum', 'updates'}, f32[] each (`initial_ada_stats`).
    verdict: f32[], this update's mean sign over the global real batch.
    target: the wanted r_t in (0, 1) (0.6 in the paper).
    interval: D updates per adjustment.
    images: real images per D update (the global batch).
    kimg: thousands of images for p to move by 1.

  Returns:
    the new stats (same structure).
  """
  sign_sum = stats['sign_sum'] + verdict
  updates = stats['updates'] + 1.0
  due = updates >= interval
  r_t = sign_sum / updates
  adjust = jnp.sign(r_t - target) * (images * interval / (kimg * 1000.0))
  return {'p': jnp.where(due, jnp.clip(stats['p'] + adjust, 0.0, 1.0), stats['p']),
          'sign_sum': jnp.where(due, 0.0, sign_sum),
          'updates': jnp.where(due, 0.0, updates)}


def run_discriminator(setup, d_params, batch_stats, x, labels, *, collect=False, key=None):
  """D in train mode: (logits f32[B // pack], sown extras, batch_stats).

  x: f32[B, ...] this device's images (or 2-D points); logits are f32[B // pack]
  (PacGAN packs `model.pack` samples into one). With `collect` the extras are
  {'features': f32[B, F] (the layer feature matching compares), 'class_logits':
  f32[B, K] (a D with class logits)}, as D sows them; else {}.
  `labels` (int32[B]) go to D for a class-conditional model and are ignored otherwise.
  `key`, the call's augmentation key, also seeds D's Gaussian noise
  (`model.d_input_noise` / `d_hidden_noise`; folded with `_NOISE`); without it
  (the penalties' calls) D runs noise-free. The noise is drawn per device (the key
  is folded with the device index), so unlike the rest of the step it depends on
  how the batch is split.
  """
  variables = models.variables(d_params, batch_stats)
  args = (x, labels) if setup.num_classes else (x,)
  mutable = ['batch_stats'] + (['intermediates'] if collect else [])
  rngs = {}
  if setup.d_noise and key is not None:
    rngs['noise'] = jax.random.fold_in(jax.random.fold_in(key, _NOISE),
                                       jax.lax.axis_index(setup.axis_name))
  logits, updates = setup.discriminator.apply(variables, *args, train=True, mutable=mutable,
                                              rngs=rngs)
  extras = {name: value[0] for name, value in updates.get('intermediates', {}).items()}
  return logits, extras, updates.get('batch_stats', batch_stats)


def _generator_adversarial_loss(setup, fake_logits, step, aux):
  """G's adversarial loss on this device's fakes; with top-k training (`loss.g_top_k`
  < 1) the k fakes D rates highest are picked from the global batch, gathered from
  every device, so that any device count keeps the same fakes; this device's term
  is scaled so that the mean over devices is the mean over those k. With annealing
  (`loss.g_top_k_decay`) k follows `losses.top_k_fraction` of `step`, reported as
  aux['g_top_k_share']."""
  if setup.g_top_k >= 1.0:
    return losses.generator_loss(fake_logits=fake_logits, loss_type=setup.loss_type)
  fraction = setup.g_top_k
  if setup.g_top_k_decay:
    fraction = aux['g_top_k_share'] = losses.top_k_fraction(
        step, final=setup.g_top_k, decay=setup.g_top_k_decay,
        decay_steps=setup.g_top_k_decay_steps)
  everyone = jax.lax.all_gather(fake_logits, setup.axis_name, tiled=True)
  keep = parallel.global_slice(losses.top_k_mask(everyone, fraction), setup.axis_name)
  per_example = losses.generator_loss_per_example(fake_logits=fake_logits,
                                                  loss_type=setup.loss_type)
  k = losses.top_k_count(everyone.shape[0], fraction)
  devices = jax.lax.psum(1, setup.axis_name)
  return jnp.sum(keep * per_example) * devices / k


def _augment(setup, x, key, policy=None, p=None):
  """DiffAugment of this device's rows with per-example keys of the global batch.

  Every example's augmentation comes from its own key, split from `key` for the
  whole global batch and sliced like z, so it does not depend on how
  the batch is split over devices. `policy` defaults to `augment.policy`; `p`
  (ADA's probability, f32[]) gates each op per image, None applies every op.
  """
  policy = setup.augment_policy if policy is None else policy
  if not policy:
    return x
  devices = jax.lax.psum(1, setup.axis_name)
  keys = parallel.global_slice(jax.random.split(key, x.shape[0] * devices), setup.axis_name)
  one = lambda example, k: augment.augment(
      example[None], k, policy, fill=setup.augment_fill,
      translation_ratio=setup.augment_translation_ratio,
      cutout_ratio=setup.augment_cutout_ratio, probability=p)[0]
  return jax.vmap(one)(x, keys)


def _class_terms_wanted(setup):
  return setup.d_cond in conditional.CLASS_LOGIT_HEADS


def _mean_sigmoid(logits):
  return jnp.mean(jax.nn.sigmoid(logits.astype(jnp.float32)))


def _class_consistency(class_logits, other_class_logits):
  """The class logits' part of an ACGAN D's consistency terms: f32[B, K] twice -> f32[].

  The mean over samples and classes of the squared difference: StudioGAN adds
  `MSELoss(cls_output, cls_output')` to bCR's and zCR's D terms for an auxiliary
  classifier D (`d_cond_mtd == 'AC'`), and MSELoss averages over every element.
  """
  return losses.consistency_loss(logits=class_logits,
                                 augmented_logits=other_class_logits) / class_logits.shape[-1]


def _consistency(setup, d_params, bs, x, logits, extras, labels, key):
  """bCR: D on T(x) against D on `x` (`logits`, sown `extras`), x the images D's loss
  saw; for an ACGAN D its class logits too."""
  augmented = _augment(setup, x, key, policy=setup.bcr_policy)
  with_classes = setup.d_cond == 'acgan'
  other, other_extras, bs = run_discriminator(setup, d_params, bs, augmented, labels,
                                              collect=with_classes, key=key)
  loss = losses.consistency_loss(logits=logits, augmented_logits=other)
  if with_classes:
    loss = loss + _class_consistency(extras['class_logits'], other_extras['class_logits'])
  return loss, bs


def _class_cross_entropy(setup, logits, labels):
  """`losses.class_cross_entropy` as a mean over the global batch's labelled rows.

  Devices hold different numbers of labelled rows (the semi-supervised batches, ACGAN
  with `data.labels_per_class`), and the step averages the devices' losses: each
  divides its sum by the global count over the number of devices, not by its own
  count, which would weight a row by 1 / (devices x its device's count)."""
  count = jax.lax.psum(jnp.sum(labels >= 0), setup.axis_name)
  return losses.class_cross_entropy(
      logits=logits, labels=labels,
      num_labelled=count / jax.lax.psum(1, setup.axis_name))


def discriminator_objective(setup, d_params, state, real, real_labels, fake, fake_labels, key,
                            perturbed_fake=None):
  """D's loss for one update (see the module docstring).

  Args:
    setup: the step's `StepSetup`.
    d_params: D's parameters (differentiated).
    state: the `GANState` (D's statistics and historical average).
    real: f32[B, ...] real examples; real_labels int32[B] (-1 = unlabelled) or None.
    fake: f32[B, ...] generated examples (constants); fake_labels int32[B] or None.
    key: this update's key (augmentations, gradient-penalty interpolation).
    perturbed_fake: f32[B, ...] G(z + dz) of zCR's D term (constants), the rows of
      `fake`; None without it.

  Returns:
    (loss f32[], (D's batch_stats after the calls, metrics dict)).
  """
  keys = jax.random.split(key, 5)
  p = ada_probability(setup, state.d_batch_stats)
  real_in, fake_in = _augment(setup, real, keys[0], p=p), _augment(setup, fake, keys[1], p=p)
  collect = _class_terms_wanted(setup)
  real_logits, real_x, bs = run_discriminator(setup, d_params, state.d_batch_stats, real_in,
                                              real_labels, collect=collect, key=keys[0])
  fake_logits, fake_x, bs = run_discriminator(setup, d_params, bs, fake_in, fake_labels,
                                              collect=collect, key=keys[1])
  loss = setup.d_adv_weight * losses.discriminator_loss(
      real_logits=real_logits, fake_logits=fake_logits, loss_type=setup.loss_type,
      label_smoothing=setup.label_smoothing)
  aux = {'d_real': jnp.mean(real_logits.astype(jnp.float32)),
         'd_fake': jnp.mean(fake_logits.astype(jnp.float32))}
  if setup.loss_type in losses.BCE_LOSS_TYPES:
    aux['d_real_prob'] = _mean_sigmoid(real_logits)
    aux['d_fake_prob'] = _mean_sigmoid(fake_logits)
  if setup.d_cond == 'acgan':
    aux['d_class'] = (_class_cross_entropy(setup, real_x['class_logits'], real_labels)
                      + _class_cross_entropy(setup, fake_x['class_logits'], fake_labels))
    loss = loss + setup.aux_weight * aux['d_class']
  elif setup.d_cond == 'semi_supervised':
    aux['d_class'] = _class_cross_entropy(setup, real_x['class_logits'], real_labels)
    loss = loss + setup.aux_weight * aux['d_class']
    if setup.entropy_weight:
      aux['d_class_entropy'] = losses.class_entropy(logits=real_x['class_logits'])
      loss = loss + setup.entropy_weight * aux['d_class_entropy']
  if setup.bcr_real_weight:
    aux['bcr_real'], bs = _consistency(setup, d_params, bs, real_in, real_logits, real_x,
                                       real_labels, keys[2])
    loss = loss + setup.bcr_real_weight * aux['bcr_real']
  if setup.bcr_fake_weight:
    aux['bcr_fake'], bs = _consistency(setup, d_params, bs, fake_in, fake_logits, fake_x,
                                       fake_labels, keys[3])
    loss = loss + setup.bcr_fake_weight * aux['bcr_fake']
  if perturbed_fake is not None:
    perturbed_logits, perturbed_x, bs = run_discriminator(
        setup, d_params, bs, _augment(setup, perturbed_fake, keys[1], p=p), fake_labels,
        collect=collect, key=keys[1])
    # bCR's term on another pair: D(G(z)) against D(G(z + dz)).
    aux['zcr_d'] = losses.consistency_loss(logits=fake_logits, augmented_logits=perturbed_logits)
    if setup.d_cond == 'acgan':
      aux['zcr_d'] = aux['zcr_d'] + _class_consistency(fake_x['class_logits'],
                                                       perturbed_x['class_logits'])
    loss = loss + setup.zcr_d_weight * aux['zcr_d']
  loss, aux = _add_penalties(setup, d_params, state, bs, real, real_labels, fake, keys,
                             loss, aux, p)
  if setup.lecam_weight:
    loss, aux, bs = _add_lecam(setup, state, bs, real_logits, fake_logits, loss, aux)
  if setup.ada_target:
    aux, bs = _add_ada(setup, state, bs, real, real_logits, aux)
  aux['d_loss'] = loss
  return loss, (bs, aux)


# D's output above which ADA counts a verdict as "real": the midpoint of the least
# squares loss's targets 0 and 1; 0 for logits (cross-entropy, hinge).
_ADA_THRESHOLD = {'least_squares': 0.5}


def _add_ada(setup, state, bs, real, real_logits, aux):
  """ADA's p after this D update (`ada_update`) from D's verdicts on the augmented
  reals, averaged over the global batch; aux gets p and the verdict."""
  threshold = _ADA_THRESHOLD.get(setup.loss_type, 0.0)
  verdict = jax.lax.stop_gradient(jax.lax.pmean(
      jnp.mean(jnp.sign(real_logits.astype(jnp.float32) - threshold)), setup.axis_name))
  images = real.shape[0] * jax.lax.psum(1, setup.axis_name)
  new = ada_update(state.d_batch_stats[ADA_STATS], verdict, target=setup.ada_target,
                   interval=setup.ada_interval, images=images, kimg=setup.ada_kimg)
  aux['ada_p'], aux['ada_sign'] = new['p'], verdict
  return aux, {**bs, ADA_STATS: new}


def _add_lecam(setup, state, bs, real_logits, fake_logits, loss, aux):
  """LeCam (`losses.lecam_regularization`) with the running averages updated first by
  this update's global-batch means, as StudioGAN's LeCamEMA and the authors' code:
  before step `lecam_start` the averages are the last means (decay 0), and the term
  is added after it (step > lecam_start)."""
  decay = jnp.where(state.step >= setup.lecam_start, setup.lecam_decay, 0.0)
  global_mean = lambda logits: jax.lax.stop_gradient(jax.lax.pmean(
      jnp.mean(logits.astype(jnp.float32)), setup.axis_name))
  new = ema.update(state.d_batch_stats[LECAM_STATS], {'real': global_mean(real_logits),
                                                      'fake': global_mean(fake_logits)}, decay)
  aux['lecam'] = losses.lecam_regularization(
      real_logits=real_logits, fake_logits=fake_logits, real_average=new['real'],
      fake_average=new['fake'])
  aux['lecam_real_average'], aux['lecam_fake_average'] = new['real'], new['fake']
  weight = jnp.where(state.step > setup.lecam_start, setup.lecam_weight, 0.0)
  loss = loss + weight * aux['lecam']
  return loss, aux, {**bs, LECAM_STATS: new}


def _add_penalties(setup, d_params, state, bs, real, real_labels, fake, keys, loss, aux, p):
  """GP, R1 and historical averaging on the raw (not augmented) images `real` and
  `fake`, as StudioGAN and StyleGAN2-ADA: R1 is the gradient of D(A(x)) with respect
  to the real image x (A: the augmentation D's loss drew, keys[0]), WGAN-GP
  interpolates the raw images and runs D without augmentation."""
  # Penalties run D as its loss does (train mode, statistics not updated). With
  # BatchNorm in D (model.d_norm='batch') samples interact through the batch
  # statistics, so a sample's gradient is not its own alone: WGAN-GP uses layer norm
  # (configs/wgan_gp_celeba.py), and defaults.py says so next to the weights.
  d_fn = lambda x: run_discriminator(setup, d_params, bs, x, real_labels)[0]
  if setup.gp_weight:
    # Interpolation weights are per device (key folded with the device index).
    aux['gp'] = penalties.gradient_penalty(
        d_fn, real, fake, jax.random.fold_in(keys[4], jax.lax.axis_index(setup.axis_name)))
    loss = loss + setup.gp_weight * aux['gp']
  if setup.r1_weight:
    aux['r1'] = penalties.r1_penalty(lambda x: d_fn(_augment(setup, x, keys[0], p=p)), real)
    loss = loss + 0.5 * setup.r1_weight * aux['r1']
  if setup.hist_weight:
    aux['d_hist_avg'] = penalties.historical_averaging_penalty(d_params, state.d_params_avg)
    loss = loss + setup.hist_weight * aux['d_hist_avg']
  return loss, aux


def generator_objective(setup, d_params, d_batch_stats, fake, fake_labels, real, real_labels,
                        key, perturbed_fake=None, step=0):
  """G's loss as a function of the fake batch (see the module docstring).

  Args:
    setup: the step's `StepSetup`.
    d_params, d_batch_stats: D after its updates (D runs in train mode, as the
      PyTorch DCGAN example does).
    fake: f32[B, ...] generated examples (differentiated); fake_labels int32[B] in
      [0, K) for a conditional model, else None.
    real, real_labels: this device's real batch f32[B, ...] and its labels int32[B]
      (-1 = unlabelled) or None, for feature matching.
    key: the key of the augmentations.
    perturbed_fake: f32[B, ...] G(z + dz) of zCR's G term (differentiated, like
      `fake`); None without it.
    step: int32[] the state's step (top-k annealing).

  Returns:
    (loss f32[], (D's batch_stats after the calls, metrics dict)).
  """
  fake_key, real_key = jax.random.split(key)
  collect = setup.d_cond == 'acgan' or bool(setup.fm_weight)
  p = ada_probability(setup, d_batch_stats)
  fake_logits, fake_x, bs = run_discriminator(setup, d_params, d_batch_stats,
                                              _augment(setup, fake, fake_key, p=p), fake_labels,
                                              collect=collect, key=fake_key)
  aux = {}
  loss = jnp.zeros((), jnp.float32)
  if setup.g_adv_weight:
    loss = setup.g_adv_weight * _generator_adversarial_loss(setup, fake_logits, step, aux)
  if setup.d_cond == 'acgan':
    aux['g_class'] = _class_cross_entropy(setup, fake_x['class_logits'], fake_labels)
    loss = loss + setup.aux_weight * aux['g_class']
  if setup.fm_weight:
    _, real_x, bs = run_discriminator(setup, d_params, bs, _augment(setup, real, real_key, p=p),
                                      real_labels, collect=True, key=real_key)
    # Means over the global batch (all devices), so the term does not depend on how
    # the batch is split; the step's gradient average then gives the global gradient.
    global_mean = lambda f: jax.lax.pmean(jnp.mean(f.astype(jnp.float32), axis=0),
                                          setup.axis_name)[None]
    aux['feature_matching'] = losses.feature_matching_loss(
        real_features=jax.lax.stop_gradient(global_mean(real_x['features'])),
        fake_features=global_mean(fake_x['features']))
    loss = loss + setup.fm_weight * aux['feature_matching']
  if perturbed_fake is not None:
    aux['zcr_g'] = losses.latent_consistency_generator_term(fake=fake,
                                                            perturbed_fake=perturbed_fake)
    loss = loss + setup.zcr_g_weight * aux['zcr_g']
  return loss, (bs, aux)


def generator_regularizer(setup, g_params, g_params_avg):
  """The terms of G's loss that depend on its parameters only: (value f32[], metrics)."""
  value, aux = jnp.zeros((), jnp.float32), {}
  if setup.hist_weight:
    aux['g_hist_avg'] = penalties.historical_averaging_penalty(g_params, g_params_avg)
    value = value + setup.hist_weight * aux['g_hist_avg']
  if setup.ortho_weight:
    # Half the penalty: its gradient is BigGAN-PyTorch's ortho(strength=ortho_weight).
    aux['g_ortho'] = penalties.orthogonal_regularization(g_params, exclude=_ORTHO_EXCLUDE)
    value = value + 0.5 * setup.ortho_weight * aux['g_ortho']
  return value, aux
