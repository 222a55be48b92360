"""Checks a whole experiment config before anything is loaded, built or compiled.

Each name is validated by the module that owns it (models, losses, optim,
parallel, data, metrics); this module calls them and adds the checks of counts
and intervals that belong to no single module. Every failure is a
`gan_jax.errors.ConfigError` naming the field, its value and what is allowed.
"""

import difflib

import jax

from gan_jax import augment
from gan_jax import defaults
from gan_jax import errors
from gan_jax import losses
from gan_jax import metrics
from gan_jax import models
from gan_jax import optim
from gan_jax import parallel
from gan_jax import standing_stats
from gan_jax import state as state_lib
from gan_jax.data import digits as digits_lib
from gan_jax.data import sources as data_sources
from gan_jax.metrics import class_metrics
from gan_jax.metrics import classifier as classifier_lib
from gan_jax.metrics import evaluator as evaluator_lib
from gan_jax.models import conditional

def _check_fields(config):
  """Raises ConfigError for a field of `gan_jax.defaults` that `config` lacks (a config
  file that built its own ConfigDict instead of starting from the defaults), then
  for a field the defaults do not have (a typo such as `config.model.zdim = 4` made
  in Python, which would otherwise be ignored)."""
  known = set(defaults.flatten(defaults.get_config().to_dict()))
  present = set(defaults.flatten(config.to_dict()))
  missing = sorted(known - present)
  if missing:
    more = f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''
    raise errors.ConfigError(
        f'config.{missing[0]} is missing{more}: a config file starts from '
        'gan_jax.defaults.get_config() and changes fields, so every field has a value.')
  unknown = sorted(present - known)
  if unknown:
    close = difflib.get_close_matches(unknown[0], known, n=1)
    hint = f' (did you mean {close[0]}?)' if close else ''
    raise errors.ConfigError(
        f'config.{unknown[0]} is not a config field{hint}; every field and its default is in '
        'gan_jax/defaults.py.')


def _check_switches_that_would_change_nothing(config):
  """A ConfigError for settings that are on but have nothing to act on."""
  l, e = config.loss, config.eval
  if l.g_top_k < 1.0 and not l.g_adversarial_weight:
    raise errors.ConfigError(
        f'config.loss.g_top_k={l.g_top_k} picks the fakes of G\'s adversarial loss, and '
        'config.loss.g_adversarial_weight is 0 (G learns by feature matching only), so it '
        'would change nothing: set g_top_k=1, or give G an adversarial loss.')
  if l.g_top_k_decay_steps and not l.g_top_k_decay:
    raise errors.ConfigError(
        f'config.loss.g_top_k_decay_steps={l.g_top_k_decay_steps} is the period of the top-k '
        'annealing, and config.loss.g_top_k_decay is 0 (no annealing): set the decay too '
        '(Sinha et al.: 0.99 per epoch), or leave the steps at 0.')
  if e.every > 0 and not str(e.metrics).strip():
    raise errors.ConfigError(
        f'config.eval.every={e.every} asks for evaluations, and config.eval.metrics is empty: '
        'name them (e.g. --config.eval.metrics=proxy, offline on digits and toy data; fid '
        'with the Inception weights), or set eval.every=-1.')


def _ops(augment_config):
  """The op names of augment.policy and augment.bcr_policy (the ops any run applies)."""
  return set(augment.parse_policy(augment_config.policy)) | set(
      augment.parse_policy(augment_config.bcr_policy, 'config.augment.bcr_policy'))


def _optimizer_reads(net, field):
  """Whether optimiser `net` ('g' or 'd') of a config reads its field `field`."""
  # An unknown optimiser name is refused by `optim.make_optimizers`, in `validate`.
  return lambda c: field in optim.FIELDS_READ.get(c.optim[net].name, (field,))


def _statistics(config):
  """(G's statistics, D's statistics) of `config`'s networks, as shapes only."""
  state = state_lib.abstract_state(config)
  return state.g_batch_stats, state.d_batch_stats


def _has_batch_norm(config):
  """Whether G or D of `config` has a BatchNorm layer (conditional ones included)."""
  return any(models.count_batch_norm_leaves(s) for s in _statistics(config))


# (field, the switch that reads it as a phrase, whether the switch is on): a field
# changed from its default while its switch is off would change nothing, so a run
# "with LeCam's decay 0.9" or "with cutout 0.25" would silently be one without it.
_SETTINGS_OF_SWITCHES = (
    ('augment.translation_ratio', "'translation' or 'reflect_translation' in "
     'augment.policy / bcr_policy',
     lambda c: bool(_ops(c.augment) & {'translation', 'reflect_translation'})),
    ('augment.cutout_ratio', "'cutout' in augment.policy / bcr_policy",
     lambda c: 'cutout' in _ops(c.augment)),
    ('augment.fill', "'translation' or 'cutout' in augment.policy / bcr_policy",
     lambda c: bool(_ops(c.augment) & {'translation', 'cutout'})),
    ('augment.ada_interval', 'ADA (augment.ada_target > 0)', lambda c: bool(c.augment.ada_target)),
    ('augment.ada_kimg', 'ADA (augment.ada_target > 0)', lambda c: bool(c.augment.ada_target)),
    ('loss.lecam_decay', 'LeCam (loss.lecam_weight > 0)', lambda c: bool(c.loss.lecam_weight)),
    ('loss.lecam_start', 'LeCam (loss.lecam_weight > 0)', lambda c: bool(c.loss.lecam_weight)),
    ('loss.zcr_radius', 'zCR (loss.zcr_d_weight or zcr_g_weight > 0)',
     lambda c: bool(c.loss.zcr_d_weight or c.loss.zcr_g_weight)),
    ('loss.label_smoothing', "D's adversarial loss (loss.d_adversarial_weight > 0)",
     lambda c: bool(c.loss.d_adversarial_weight)),
    ('loss.aux_weight', "a D with class logits (model.num_classes > 0 and model.d_cond "
     f"{' or '.join(repr(h) for h in conditional.CLASS_LOGIT_HEADS)})",
     lambda c: bool(c.model.num_classes) and c.model.d_cond in conditional.CLASS_LOGIT_HEADS),
    ('model.d_cond', 'a class-conditional model (model.num_classes > 0)',
     lambda c: bool(c.model.num_classes)),
    ('model.bn_momentum', "BatchNorm in G or D (model.g_norm / d_norm 'batch', or a "
     'class-conditional G)', _has_batch_norm),
    ('parallel.sync_batch_stats', 'BatchNorm in G or D, or D\'s minibatch std '
     '(model.minibatch_std)', lambda c: c.model.minibatch_std or _has_batch_norm(c)),
    ('train.ema_batch_stats', "a G with statistics (BatchNorm or model.g_spectral_norm)",
     lambda c: bool(jax.tree.leaves(_statistics(c)[0]))),
    ('train.g_bn_stats_in_d_updates', 'a G with BatchNorm whose D updates run it '
     '(train.reuse_fake False)',
     lambda c: not c.train.reuse_fake and bool(
         models.count_batch_norm_leaves(_statistics(c)[0]))),
    ('train.ema_start', 'the EMA generator (train.ema_decay > 0)',
     lambda c: bool(c.train.ema_decay)),
    ('optim.decay_start', "a decaying schedule (optim.schedule 'linear' or 'cosine')",
     lambda c: c.optim.schedule != 'constant'),
    *((f'optim.{net}.{field}', f'optim.{net}.name ' + ' or '.join(
        repr(name) for name, fields in optim.FIELDS_READ.items() if field in fields),
       _optimizer_reads(net, field))
      for net in ('g', 'd') for field in ('b1', 'b2', 'eps')),
    ('data.crop', "images read from files (data.source 'tfds' or 'image_folder')",
     lambda c: c.data.source in ('tfds', 'image_folder')),
    ('data.toy', "toy data (data.source='toy')", lambda c: c.data.source == 'toy'),
    ('data.split', "a data set with splits (data.source other than 'toy')",
     lambda c: c.data.source != 'toy'),
    ('eval.reference_split', "a data set with splits (data.source other than 'toy')",
     lambda c: c.data.source != 'toy'),
)


def _value(config, field):
  for name in field.split('.'):
    config = config[name]
  return config


def unread_settings(config):
  """[(field, message)] for each field of `_SETTINGS_OF_SWITCHES` that `config` sets
  to another value than its default while the feature that reads it is off."""
  default, unread = defaults.get_config(), []
  for field, switch, is_on in _SETTINGS_OF_SWITCHES:
    value, default_value = _value(config, field), _value(default, field)
    if value == default_value or is_on(config):
      continue
    unread.append((field, (
        f'config.{field}={value!r} would change nothing: it is read only by {switch}, not '
        f'used here. Use that, or leave {field} at its default {default_value!r}.')))
  return unread


def fields_not_read(config, fields):
  """The fields among `fields` (dotted names) whose feature is off in `config`, so
  that no value of theirs changes its run (the fields of `_SETTINGS_OF_SWITCHES`)."""
  return {field for field, _, is_on in _SETTINGS_OF_SWITCHES
          if field in fields and not _safely_on(is_on, config)}


def _safely_on(is_on, config):
  """`is_on(config)`, and True when it raises: a config saved under older rules may
  fail today's checks, and a change must then be reported, not hidden."""
  try:
    return is_on(config)
  except Exception:  # pylint: disable=broad-except
    return True


def check_settings_read(config):
  """A ConfigError for the first of `unread_settings(config)`.

  Called for a command-line run (`gan_jax.main`) after `validate`, not by `validate`
  itself: a benchmark applies one --set to several configs, and a setting that one
  of them (e.g. the control run without augmentation) does not read is refused only
  when none reads it (`gan_jax.bench.trials.check_configs`).
  """
  unread = unread_settings(config)
  if unread:
    raise errors.ConfigError(unread[0][1])


def late_starts(config):
  """One sentence for each feature of `config` that is on but starts at or after the
  run's last step (`train.num_steps`), so that it never acts: a shortened run of a
  config made for a long one (e.g. biggan_cifar10 with 500 steps and EMA from 1000).
  Training logs them as warnings; they are allowed (the same config continued to
  its full length uses them)."""
  t, l, o = config.train, config.loss, config.optim
  notes = []
  if not t.num_steps:  # nothing is trained
    return notes
  if t.ema_decay and t.ema_start >= t.num_steps:
    notes.append(f'train.ema_start={t.ema_start} is not before train.num_steps={t.num_steps}: '
                 'the EMA generator (which samples and evaluations use) stays a copy of G.')
  if l.lecam_weight and l.lecam_start >= t.num_steps - 1:  # added in steps > lecam_start
    notes.append(f'loss.lecam_start={l.lecam_start} is not before the last of train.num_steps='
                 f'{t.num_steps}: the LeCam term is never added.')
  # The decay's first lowered rate is that of update int(U * decay_start) + 1, of U
  # updates (G's: num_steps; D's: n_critic times as many).
  updates = (t.num_steps, t.num_steps * t.n_critic)
  if o.schedule != 'constant' and all(int(u * o.decay_start) >= u - 1 for u in updates):
    notes.append(f'optim.decay_start={o.decay_start} starts the {o.schedule} decay at the end '
                 f'of train.num_steps={t.num_steps}: the learning rates stay constant.')
  if l.g_top_k_decay and l.g_top_k_decay_steps >= t.num_steps:
    notes.append(f'loss.g_top_k_decay_steps={l.g_top_k_decay_steps} is not below '
                 f'train.num_steps={t.num_steps}: the top-k share stays 1 (all fakes).')
  return notes


def check_batch_over_devices(config, num_devices, num_processes=1):
  """A ConfigError when `config.train.batch_size` does not split evenly over the
  devices and processes, or a device's share over PacGAN's groups of `model.pack`."""
  batch, pack = config.train.batch_size, config.model.pack
  parallel.check_global_batch(batch, num_devices, num_processes)
  per_device = batch // num_devices
  if per_device % pack:
    raise errors.ConfigError(
        f'model.pack={pack} (PacGAN) packs each device\'s batch of {per_device} '
        f'(train.batch_size={batch} over {num_devices} device(s)) into groups of {pack}: '
        'make the per-device batch a multiple of it.')


def validate(config):
  """Raises ConfigError for the first bad field of `config`; returns None if it is fine."""
  _check_fields(config)
  defaults.check_types_and_counts(config)
  # Here, not with the counts that saved configs are checked against too: a run saved
  # with a larger seed still samples, evaluates and classifies.
  if config.seed > defaults.MAX_SEED:
    raise errors.ConfigError(
        f'config.seed must be at most 2**32 - 1 = {defaults.MAX_SEED} (JAX keeps a seed\'s '
        f'low 32 bits, so larger seeds repeat smaller ones), got {config.seed}.')
  t = config.train
  if not 0.0 <= t.ema_decay < 1.0:
    raise errors.ConfigError(f'config.train.ema_decay must be in [0, 1), got {t.ema_decay}.')
  if t.ema_batch_stats and not t.ema_decay:
    raise errors.ConfigError(
        'config.train.ema_batch_stats averages G\'s statistics for the EMA generator, and '
        'config.train.ema_decay is 0 (no EMA): set a decay (e.g. 0.9999) or '
        'ema_batch_stats=False.')
  if t.reuse_fake and t.n_critic != 1:
    raise errors.ConfigError(
        'config.train.reuse_fake needs config.train.n_critic == 1 (the G update reuses '
        f'the one D update\'s fake batch), got n_critic={t.n_critic}. Set '
        'train.reuse_fake=False or train.n_critic=1.')
  losses.check_loss_config(config.loss)
  _check_switches_that_would_change_nothing(config)
  zcr = config.loss.zcr_d_weight or config.loss.zcr_g_weight
  if t.reuse_fake and zcr:
    raise errors.ConfigError(
        'config.loss.zcr_d_weight / zcr_g_weight need G(z) and G(z + dz) from one fresh z in '
        'each update, and config.train.reuse_fake shares one fake batch between them. Set '
        'train.reuse_fake=False or both zCR weights to 0.')
  if config.augment.ada_target and len(shape := models.data_shape(config.model)) != 3:
    # Before the policy checks, whose advice (set a policy) would then be refused too.
    raise errors.ConfigError(
        f'config.augment.ada_target={config.augment.ada_target!r} adapts how often image '
        f'augmentations are applied; model.name={config.model.name!r} trains on points of '
        f'shape {shape}. Set it to 0.')
  augment.check_config(config.augment, resolution=config.model.resolution)
  if ((config.loss.bcr_real_weight or config.loss.bcr_fake_weight)
      and not augment.consistency_policy(config.augment)):
    raise errors.ConfigError(
        'config.loss.bcr_real_weight / bcr_fake_weight compare D on images and on their '
        "augmentations: set config.augment.bcr_policy (e.g. 'translation'; bCR alone) or "
        'config.augment.policy (DiffAugment, whose ops bCR then also uses).')
  if config.augment.ada_target and config.loss.type == 'wasserstein':
    # ADA counts the reals D calls real, the sign of its output: a critic's output
    # has no such sign (adding a constant changes nothing in its loss).
    raise errors.ConfigError(
        "config.augment.ada_target needs D's verdict on each real image, and a Wasserstein "
        "critic's output has no sign that says real or fake: use another config.loss.type, "
        'or a fixed policy (ada_target 0).')
  if (config.augment.bcr_policy and not config.loss.bcr_real_weight
      and not config.loss.bcr_fake_weight):
    # Only the bCR terms use it: a run "with CR's augmentation" would have none.
    raise errors.ConfigError(
        f'config.augment.bcr_policy={config.augment.bcr_policy!r} is the augmentation of '
        'the bCR terms, and both config.loss.bcr_real_weight and bcr_fake_weight are 0, so '
        'it would change nothing: set a bCR weight (e.g. --config.loss.bcr_real_weight=10, '
        "as CR-GAN), or leave bcr_policy '' (augmenting D's inputs is augment.policy).")
  optim.make_optimizers(config)
  parallel.cpu_compiler_options(config.parallel.cpu_conv_kernels)
  parallel.check_mode(config.parallel.mode)
  models.build(config.model)
  models.check_fields_read(config.model, defaults.get_config().model)
  models.check_loss(config.model, config.loss)
  shape = models.data_shape(config.model)
  bcr = config.loss.bcr_real_weight or config.loss.bcr_fake_weight
  if (config.augment.policy or bcr) and len(shape) != 3:
    raise errors.ConfigError(
        f'config.augment.policy={config.augment.policy!r} / bcr_policy='
        f'{config.augment.bcr_policy!r} augment images (H, W, C); model.name='
        f'{config.model.name!r} trains on points of shape {shape}. Set both to \'\' (and '
        'the bCR weights to 0).')
  if config.loss.zcr_g_weight and len(shape) != 3:
    # Images end in tanh, so -mean (G(z) - G(z + dz))^2 >= -4; a G of points has no
    # bound and the term pulls its outputs apart without limit (all 2-D toy runs tried
    # diverged with D's term beside it, docs/benchmarks.md).
    raise errors.ConfigError(
        f'config.loss.zcr_g_weight pushes G(z) and G(z + dz) apart, which is bounded only '
        f'for images in [-1, 1]; model.name={config.model.name!r} generates points of '
        f'shape {shape} without a bound, and its outputs run away. Set it to 0 '
        '(zCR\'s D term, loss.zcr_d_weight, is allowed).')
  flip = config.data.random_flip  # a bool (`defaults.check_types_and_counts`)
  if flip and len(shape) != 3:
    raise errors.ConfigError(
        f'config.data.random_flip mirrors images (H, W, C); model.name={config.model.name!r} '
        f'trains on points of shape {shape}. Set it to False.')
  data_sources.get(config.data.source)
  if config.data.labels_per_class and not config.model.num_classes:
    raise errors.ConfigError(
        f'config.data.labels_per_class={config.data.labels_per_class} keeps a few labels '
        'for the semi-supervised GAN, but this model reads no labels '
        '(model.num_classes=0). Set it to 0.')
  if config.data.labels_per_class and config.model.d_cond not in conditional.CLASS_LOGIT_HEADS:
    # The dropped labels are -1, which a projection embedding would read as the last
    # class: every unlabelled real image would be shown to D as class K - 1.
    raise errors.ConfigError(
        f'config.data.labels_per_class={config.data.labels_per_class} leaves most real '
        f'images unlabelled, and model.d_cond={config.model.d_cond!r} needs the class of '
        f'every real image. Use a D head that reads no labels '
        f'({" or ".join(repr(h) for h in conditional.CLASS_LOGIT_HEADS)}), or set it to 0.')
  fraction = config.data.labelled_fraction
  if not (isinstance(fraction, (int, float)) and 0 <= fraction < 1):  # NaN too
    # Also checked where the batches are drawn; here before anything is written.
    raise errors.ConfigError(
        f'config.data.labelled_fraction must be in [0, 1) (the share of every batch drawn '
        f'from the labelled examples; 0 = off), got {fraction}.')
  if config.data.labelled_fraction and not config.data.labels_per_class:
    raise errors.ConfigError(
        f'config.data.labelled_fraction={config.data.labelled_fraction} draws that share '
        'of every batch from the labelled examples, and every example is labelled '
        '(data.labels_per_class=0), so it only repeats examples. Set it to 0, or set '
        'data.labels_per_class for the semi-supervised GAN.')
  if config.data.source == 'digits' and config.data.crop == 'celeba':
    raise errors.ConfigError(
        "config.data.crop='celeba' cuts CelebA's 218x178 faces; the digits are 8x8 and "
        "are not cropped. Set it to 'center' (the default).")
  if config.data.source == 'digits':
    # Named here, not where the evaluation first opens the split (as data.split).
    for field, split in (('data.split', config.data.split),
                         ('eval.reference_split', config.eval.reference_split)):
      if split:
        digits_lib.check_split(split, f'config.{field}')
  eval_metrics = metrics.parse_metrics(config.eval.metrics,
                                       known=metrics.METRICS + (classifier_lib.ACCURACY,))
  class_metrics.check_config(eval_metrics, source=config.data.source,
                             num_classes=models.generator_classes(config.model),
                             num_samples=config.eval.num_samples)
  evaluator_lib.check_counts(
      eval_metrics, num_fake=config.eval.num_samples,
      num_real=config.eval.num_reference or config.eval.num_samples)
  # Checked even without sample metrics: it is also the sample / evaluate tools' default.
  standing_stats.check_config(config, config.eval.standing_stats, 'config.eval.standing_stats')
  if classifier_lib.ACCURACY in eval_metrics:
    classifier_lib.check_classifier(
        config, f"this model (config.eval.metrics has '{classifier_lib.ACCURACY}')")
    classifier_lib.check_labelled_split(config.data, config.eval.accuracy_split,
                                       'config.eval.accuracy_split')
    classifier_lib.check_held_out(config.data, config.eval.accuracy_split,
                                  'config.eval.accuracy_split')
