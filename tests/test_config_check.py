"""Tests of the whole-config check that runs before anything is loaded (gan_jax.config_check)."""

import ml_collections
import pytest

from configs import cgan_digits
from configs import semi_supervised_digits
from configs import toy_ring
from gan_jax import augment
from gan_jax import config_files
from gan_jax import config_check
from gan_jax import defaults
from gan_jax import errors
from gan_jax import models
from gan_jax import optim
from tests.helpers import tiny_config


def test_shipped_smoke_config_passes():
  assert config_check.validate(tiny_config()) is None


@pytest.mark.parametrize('field,value,message', [
    ('model.name', 'nope', r"'nope'.*dcgan"),
    ('loss.type', 'nope', r"config.loss.type 'nope'.*non_saturating"),
    ('optim.g.name', 'nope', r"config.optim.g.name 'nope'.*adam"),
    ('parallel.mode', 'nope', r"config.parallel.mode 'nope'.*shard_map"),
    ('parallel.cpu_conv_kernels', 'mkl', r"cpu_conv_kernels 'mkl'.*eigen.*xla_default"),
    ('model.stride2_forms', 'cudnn', r"stride2_forms.*'custom', 'xla'.*'cudnn'"),
    ('data.source', 'nope', r"'nope'.*digits"),
    ('eval.metrics', 'fid,nope', r"nope.*fid"),
])
def test_unknown_names_list_the_known_ones(field, value, message):
  with pytest.raises(errors.ConfigError, match=message):
    config_check.validate(tiny_config(**{field: value}))


@pytest.mark.parametrize('field,value', [
    ('train.batch_size', 0), ('train.batch_size', -4), ('train.num_steps', -1),
    ('train.n_critic', 0), ('train.log_every', 0), ('train.checkpoint_every', 0),
    ('eval.num_samples', 0), ('seed', -1),
])
def test_bad_counts_name_the_field_and_the_minimum(field, value):
  with pytest.raises(errors.ConfigError, match=rf'config.{field} must be an integer >='):
    config_check.validate(tiny_config(**{field: value}))


def test_a_seed_beyond_32_bits_is_refused():
  # JAX keeps a seed's low 32 bits: seed 2**32 would train seed 0's run again.
  config_check.validate(tiny_config(seed=2**32 - 1))
  with pytest.raises(errors.ConfigError, match=r'config.seed must be at most 2\*\*32 - 1'):
    config_check.validate(tiny_config(seed=2**32))
  # A run saved with one still loads, to sample and evaluate (its record is kept).
  defaults.check_types_and_counts(tiny_config(seed=2**40))


@pytest.mark.parametrize('overrides,message', [
    ({'loss.g_top_k': 0.5, 'loss.g_adversarial_weight': 0.0},
     'g_top_k=0.5 picks the fakes of G.s adversarial loss.*would change nothing'),
    ({'loss.g_top_k': 0.5, 'loss.g_top_k_decay_steps': 5},
     'g_top_k_decay_steps=5 is the period.*g_top_k_decay is 0'),
    ({'eval.every': 2, 'eval.metrics': ''},
     r'eval.every=2 asks for evaluations, and config.eval.metrics is empty.*proxy'),
])
def test_switches_with_nothing_to_act_on_are_refused(overrides, message):
  with pytest.raises(errors.ConfigError, match=message):
    config_check.validate(tiny_config(**overrides))
  # Each on its own, with what it acts on, is fine.
  fixed = dict(overrides)
  fixed.update({'loss.g_adversarial_weight': 1.0} if 'loss.g_adversarial_weight' in fixed
               else {'loss.g_top_k_decay': 0.9} if 'loss.g_top_k_decay_steps' in fixed
               else {'eval.metrics': 'proxy'})
  assert config_check.validate(tiny_config(**fixed)) is None


@pytest.mark.parametrize('field', ['data.split', 'eval.reference_split'])
def test_a_digits_split_that_does_not_exist_is_named_by_its_own_field(field):
  # A bad eval.reference_split was reported as config.data.split, when the evaluation
  # first opened it (or never, while eval.every=-1).
  with pytest.raises(errors.ConfigError, match=f"config.{field}='bogus': the digits have the "
                                               'splits'):
    config_check.validate(tiny_config(**{field: 'bogus'}))
  config_check.validate(tiny_config(**{field: 'test'}))


def test_a_field_defaults_does_not_have_is_refused_with_the_closest_name():
  config = tiny_config()
  config.model.zdim = 4  # a typo made in Python adds a field instead of setting z_dim
  with pytest.raises(errors.ConfigError, match=r'config.model.zdim is not a config field '
                                               r'\(did you mean model.z_dim\?\)'):
    config_check.validate(config)
  config = tiny_config()
  config.trian = {'num_steps': 3}
  with pytest.raises(errors.ConfigError, match='config.trian.num_steps is not a config field'):
    config_check.validate(config)


def test_a_negative_weight_clip_is_refused():
  # jnp.clip(p, c, -c) with c < 0 would set every parameter of D to c.
  with pytest.raises(errors.ConfigError, match=r'config.optim.weight_clip must be a finite number >= 0.*-1'):
    config_check.validate(tiny_config(**{'optim.weight_clip': -1.0}))


@pytest.mark.parametrize('z_dim', [0, -3])
def test_a_latent_of_no_size_is_refused(z_dim):
  # A z_dim of 0 would train (G's first weight has no entries) and fail at the first
  # checkpoint, which cannot save an empty array.
  with pytest.raises(errors.ConfigError, match=rf'model.z_dim must be an integer >= 1.*{z_dim}'):
    config_check.validate(tiny_config(**{'model.z_dim': z_dim}))


def test_class_metrics_of_the_semi_supervised_gan_are_refused_before_training():
  config = semi_supervised_digits.get_config('smoke')
  config.eval.metrics = 'proxy,cas'
  with pytest.raises(errors.ConfigError, match="'cas' needs a class-conditional generator"):
    config_check.validate(config)


def test_labels_per_class_for_a_model_without_labels_is_refused():
  with pytest.raises(errors.ConfigError, match=r'labels_per_class=10.*reads no labels'):
    config_check.validate(tiny_config(**{'data.labels_per_class': 10}))


@pytest.mark.parametrize('d_cond,refused', [('projection', True), ('acgan', False)])
def test_labels_per_class_needs_a_discriminator_that_reads_no_labels(d_cond, refused):
  # A projection D would read the dropped labels (-1) as the last class.
  config = cgan_digits.get_config('smoke')
  config.update_from_flattened_dict({'model.d_cond': d_cond, 'data.labels_per_class': 10})
  if refused:
    with pytest.raises(errors.ConfigError, match=r"labels_per_class=10 leaves.*'projection' "
                                                 r"needs the class of every real image"):
      config_check.validate(config)
  else:
    assert config_check.validate(config) is None
  # The semi-supervised D reads no labels either.
  assert config_check.validate(semi_supervised_digits.get_config('smoke')) is None


def test_labelled_fraction_without_unlabelled_examples_is_refused():
  with pytest.raises(errors.ConfigError, match=r'labelled_fraction=0.5 .*every example is '
                                               r'labelled.*only repeats examples'):
    config_check.validate(tiny_config(**{'data.labelled_fraction': 0.5}))
  config = semi_supervised_digits.get_config('smoke')
  config.data.labelled_fraction = 0.5
  assert config.data.labels_per_class > 0 and config_check.validate(config) is None


def test_the_celeba_crop_of_the_digits_is_refused():
  with pytest.raises(errors.ConfigError, match="crop='celeba' cuts CelebA.*8x8"):
    config_check.validate(tiny_config(**{'data.crop': 'celeba'}))


@pytest.mark.parametrize('train_split,accuracy_split,refused', [
    ('train', 'test', False), ('train', 'train', True), ('all', 'test', True),
    ('test', 'all', True), ('test', 'train', False)])
def test_accuracy_on_images_the_run_trains_on_is_refused(train_split, accuracy_split, refused):
  config = semi_supervised_digits.get_config('smoke')
  config.update_from_flattened_dict({'data.split': train_split, 'eval.metrics': 'accuracy',
                                     'eval.every': 2, 'eval.accuracy_split': accuracy_split})
  if refused:
    with pytest.raises(errors.ConfigError, match=rf"accuracy_split='{accuracy_split}' holds "
                                                 'images the run trains on'):
      config_check.validate(config)
  else:
    assert config_check.validate(config) is None


def test_entropy_weight_needs_the_semi_supervised_discriminator():
  with pytest.raises(errors.ConfigError, match="entropy_weight=0.5.*d_cond='semi_supervised'"):
    config_check.validate(tiny_config(**{'loss.entropy_weight': 0.5}))


def test_semi_supervised_discriminator_needs_a_cross_entropy_loss():
  config = semi_supervised_digits.get_config('smoke')
  config.loss.type = 'hinge'
  with pytest.raises(errors.ConfigError, match="d_cond='semi_supervised' needs a cross-entropy"):
    config_check.validate(config)


def test_negative_entropy_weight_is_refused():
  with pytest.raises(errors.ConfigError, match='config.loss.entropy_weight must be a finite number >= 0'):
    config_check.validate(tiny_config(**{'loss.entropy_weight': -1.0}))


def test_label_smoothing_needs_a_cross_entropy_loss():
  with pytest.raises(errors.ConfigError, match='label_smoothing'):
    config_check.validate(tiny_config(**{'loss.type': 'hinge', 'loss.label_smoothing': 0.1}))


def test_reuse_fake_with_several_critic_updates_is_rejected():
  config = tiny_config(**{'train.reuse_fake': True, 'train.n_critic': 2})
  with pytest.raises(errors.ConfigError, match='reuse_fake needs config.train.n_critic == 1'):
    config_check.validate(config)


def test_ema_decay_outside_the_unit_interval_is_rejected():
  with pytest.raises(errors.ConfigError, match='ema_decay'):
    config_check.validate(tiny_config(**{'train.ema_decay': 1.0}))


@pytest.mark.parametrize('field,value,message', [
    ('augment.bcr_policy', 'flip,nope', r"config.augment.bcr_policy 'flip,nope' has unknown "
                                        r"name 'nope'"),
    ('augment.policy', 'cutout,,color', r"config.augment.policy 'cutout,,color' has an empty"),
    ('augment.fill', float('nan'), 'config.augment.fill must be a finite number'),
    ('augment.fill', float('inf'), 'config.augment.fill must be a finite number'),
    ('augment.fill', 5.0, r'config.augment.fill must be a finite number in \[-1, 1\].*5.0'),
    ('augment.cutout_ratio', 1.5, r'config.augment.cutout_ratio must be in \[0, 1\]'),
    ('augment.translation_ratio', -0.1, r'config.augment.translation_ratio must be in \[0, 1\]'),
])
def test_bad_augment_settings_name_the_field(field, value, message):
  with pytest.raises(errors.ConfigError, match=message):
    config_check.validate(tiny_config(**{field: value}))


@pytest.mark.parametrize('overrides', [
    {'augment.policy': 'cutout', 'augment.cutout_ratio': 0.0},
    {'augment.policy': 'color,cutout', 'augment.cutout_ratio': 0.015},  # 0.48 px at 32 px
    {'augment.bcr_policy': 'translation', 'augment.translation_ratio': 0.0,
     'loss.bcr_real_weight': 1.0},
    {'augment.bcr_policy': 'flip,reflect_translation', 'augment.translation_ratio': 0.01,
     'loss.bcr_real_weight': 1.0},
])
def test_an_augmentation_that_rounds_to_no_pixels_is_refused(overrides):
  config = tiny_config(**overrides)
  assert config.model.resolution == 32
  with pytest.raises(errors.ConfigError, match=r'_ratio=0\.\d+ is 0 pixels at 32 px'):
    config_check.validate(config)


@pytest.mark.parametrize('overrides', [
    {'augment.policy': 'cutout', 'augment.cutout_ratio': 1 / 64},  # 0.5 px rounds up to 1
    {'augment.bcr_policy': 'flip,reflect_translation', 'augment.translation_ratio': 1 / 64,
     'loss.bcr_real_weight': 1.0},  # a bCR-only op reads the ratio too
])
def test_an_augmentation_of_at_least_one_pixel_is_accepted(overrides):
  assert config_check.validate(tiny_config(**overrides)) is None  # no error


@pytest.mark.parametrize('field,value,switch_off,switch_on', [
    ('augment.cutout_ratio', 0.25, {'augment.policy': 'color,translation'},
     {'augment.policy': 'color,cutout'}),
    ('augment.translation_ratio', 0.25, {'augment.policy': 'cutout'},
     {'augment.policy': 'translation'}),
    ('augment.fill', -1.0, {'augment.policy': 'color'}, {'augment.policy': 'cutout'}),
    ('augment.ada_interval', 8, {'augment.policy': 'cutout'},
     {'augment.policy': 'cutout', 'augment.ada_target': 0.6}),
    ('augment.ada_kimg', 100.0, {}, {'augment.policy': 'cutout', 'augment.ada_target': 0.6}),
    ('loss.lecam_decay', 0.9, {}, {'loss.lecam_weight': 0.3}),
    ('loss.lecam_start', 0, {}, {'loss.lecam_weight': 0.3}),
    ('loss.zcr_radius', 0.03, {}, {'loss.zcr_d_weight': 1.0}),
    ('train.ema_start', 100, {'train.ema_decay': 0.0}, {'train.ema_decay': 0.999}),
    ('optim.decay_start', 0.0, {'optim.schedule': 'constant'}, {'optim.schedule': 'linear'}),
    ('loss.label_smoothing', 0.1, {'loss.d_adversarial_weight': 0.0}, {}),
    ('loss.aux_weight', 0.5, {}, {'model.num_classes': 10, 'model.d_cond': 'acgan'}),
    ('loss.aux_weight', 0.5, {'model.num_classes': 10, 'model.d_cond': 'projection'}, None),
    ('model.d_cond', 'acgan', {}, {'model.num_classes': 10}),
    ('optim.g.b2', 0.9, {'optim.g.name': 'sgd'}, {'optim.g.name': 'rmsprop'}),
    ('optim.d.b1', 0.0, {'optim.d.name': 'rmsprop'}, {'optim.d.name': 'sgd'}),
    ('optim.d.eps', 1e-6, {'optim.d.name': 'sgd'}, {'optim.d.name': 'adam'}),
    ('model.bn_momentum', 0.5, {'model.g_norm': 'none', 'model.d_norm': 'none'}, {}),
    ('parallel.sync_batch_stats', False, {'model.g_norm': 'none', 'model.d_norm': 'layer'},
     {'model.g_norm': 'none', 'model.d_norm': 'layer', 'model.minibatch_std': True}),
    ('train.ema_batch_stats', True, {'model.g_norm': 'none'}, {}),
    ('train.g_bn_stats_in_d_updates', False, {'model.g_norm': 'none'}, {}),
    ('train.g_bn_stats_in_d_updates', False, {'train.reuse_fake': True}, {}),
    ('data.crop', 'none', {}, None),
    ('data.toy', 'grid', {}, None),
])
def test_a_setting_of_a_switched_off_feature_is_refused(field, value, switch_off, switch_on):
  # Accepted and ignored before: a run "with cutout 0.25" trained with no cutout at all.
  config = tiny_config(**switch_off, **{field: value})
  assert config_check.validate(config) is None  # it would run, ignoring the field
  with pytest.raises(errors.ConfigError,
                     match=rf'config.{field}={value!r} would change nothing: it is read only '
                           rf'by .*, not used here.*leave {field} at its default'):
    config_check.check_settings_read(config)
  if switch_on is not None:
    assert config_check.unread_settings(tiny_config(**switch_on, **{field: value})) == []


def test_toy_data_reads_data_toy_and_no_split():
  config = toy_ring.get_config('smoke')
  config.data.toy = 'grid'
  assert config_check.unread_settings(config) == []
  config.data.split, config.eval.reference_split = 'test', 'all'
  assert [field for field, _ in config_check.unread_settings(config)] == [
      'data.split', 'eval.reference_split']


def test_a_reflection_padded_shift_beyond_one_reflection_is_refused():
  # round(0.98 * 32) = 31 pixels is the most one reflection of 32 covers; 0.99 -> 32.
  overrides = {'augment.policy': 'reflect_translation'}
  accepted = tiny_config(**overrides, **{'augment.translation_ratio': 0.98})
  assert config_check.validate(accepted) is None
  with pytest.raises(errors.ConfigError,
                     match=r"'reflect_translation' at 32 px: a shift of up to .* = 32 pixels"):
    config_check.validate(tiny_config(**overrides, **{'augment.translation_ratio': 0.99}))


def test_ema_statistics_without_an_ema_are_refused():
  with pytest.raises(errors.ConfigError, match=r'ema_batch_stats averages .*ema_decay is 0'):
    config_check.validate(tiny_config(**{'train.ema_batch_stats': True,
                                         'train.ema_decay': 0.0}))
  assert config_check.validate(tiny_config(**{'train.ema_batch_stats': True})) is None


def test_a_bcr_policy_without_a_bcr_weight_is_refused():
  config = tiny_config(**{'augment.bcr_policy': augment.CR_POLICY})
  with pytest.raises(errors.ConfigError,
                     match=r"bcr_policy='flip,reflect_translation' is the augmentation of the "
                           r'bCR terms, and both .* are 0'):
    config_check.validate(config)
  for weight in ('loss.bcr_real_weight', 'loss.bcr_fake_weight'):
    assert config_check.validate(tiny_config(**{'augment.bcr_policy': augment.CR_POLICY,
                                                weight: 1.0})) is None


def test_augmenting_two_dimensional_points_is_refused():
  config = config_files.load('toy_ring:smoke')
  config_check.validate(config)
  config.augment.policy = 'translation'
  with pytest.raises(errors.ConfigError, match=r"augment.policy='translation' / bcr_policy=''"
                                               r" augment images"):
    config_check.validate(config)
  config = config_files.load('toy_ring:smoke')  # bCR alone augments too
  config.augment.bcr_policy = 'cutout'
  config.loss.bcr_real_weight = 1.0
  with pytest.raises(errors.ConfigError, match=r"bcr_policy='cutout' augment images"):
    config_check.validate(config)


@pytest.mark.parametrize('overrides,message', [
    ({'eval.metrics': 'is', 'eval.num_samples': 10}, 'at least 2 per split'),
    ({'eval.metrics': 'fid,pr', 'eval.num_samples': 100, 'eval.num_reference': 3},
     'got 100 generated, 3 real'),
])
def test_too_few_evaluation_images_are_refused_before_training(overrides, message):
  with pytest.raises(errors.ConfigError, match=message):
    config_check.validate(tiny_config(**overrides))


def test_random_flip_of_two_dimensional_points_is_refused():
  config = config_files.load('toy_ring:smoke')
  config.data.random_flip = True
  with pytest.raises(errors.ConfigError, match=r'random_flip mirrors images .*Set it to False'):
    config_check.validate(config)


def test_random_flip_must_be_a_boolean():
  # ConfigDict refuses 'yes' for a bool field, but a config file can build its
  # own config.data.
  config = tiny_config()
  config.data = ml_collections.ConfigDict({**config.data.to_dict(), 'random_flip': 'yes'})
  with pytest.raises(errors.ConfigError, match=r"random_flip must be True or False, got 'yes'"):
    config_check.validate(config)


def test_standing_statistics_need_a_generator_with_batch_norm():
  config = config_files.load('toy_ring:smoke')
  config.eval.metrics = 'proxy'
  config.eval.standing_stats = 4
  with pytest.raises(errors.ConfigError, match='no BatchNorm statistics'):
    config_check.validate(config)
  # Without sample metrics too: it is the sample / evaluate tools' default.
  config.eval.metrics = ''
  with pytest.raises(errors.ConfigError, match='set config.eval.standing_stats to 0'):
    config_check.validate(config)
  config.eval.standing_stats = 0
  config_check.validate(config)
  with pytest.raises(errors.ConfigError, match=r'config.eval.standing_stats must be an integer >= 0'):
    config_check.validate(tiny_config(**{'eval.standing_stats': -1}))


@pytest.mark.parametrize('field,value,message', [
    ('loss.lecam_weight', -0.1, r'config.loss.lecam_weight must be a finite number >= 0, got -0.1'),
    ('loss.lecam_decay', 1.0, r'config.loss.lecam_decay must be in \[0, 1\), got 1.0'),
    ('loss.lecam_start', -1, r'config.loss.lecam_start must be an integer >= 0'),
])
def test_bad_lecam_settings_name_the_field(field, value, message):
  with pytest.raises(errors.ConfigError, match=message):
    config_check.validate(tiny_config(**{field: value}))


@pytest.mark.parametrize('overrides,message', [
    ({'augment.ada_target': 0.6}, r"ada_target=0.6 adapts how often the ops of config.augment.policy "
                                  r"are applied, and the policy is ''"),
    ({'augment.ada_target': 1.0, 'augment.policy': 'cutout'},
     r'config.augment.ada_target must be a number in \[0, 1\)'),
    ({'augment.ada_target': -0.1, 'augment.policy': 'cutout'},
     r'config.augment.ada_target must be a number in \[0, 1\)'),
    ({'augment.ada_interval': 0}, r'config.augment.ada_interval must be an integer >= 1'),
    ({'augment.ada_kimg': 0.0}, r'config.augment.ada_kimg must be a finite number > 0'),
    ({'augment.ada_target': 0.6, 'augment.policy': 'cutout', 'loss.type': 'wasserstein'},
     r"a Wasserstein critic's output has no sign"),
])
def test_bad_ada_settings_are_refused(overrides, message):
  with pytest.raises(errors.ConfigError, match=message):
    config_check.validate(tiny_config(**overrides))


@pytest.mark.parametrize('value', [1.5, -0.1, float('nan')])
def test_a_labelled_fraction_out_of_range_is_refused_before_anything_is_written(value):
  # It was refused only where the batches are drawn, after a benchmark made its --out.
  config = semi_supervised_digits.get_config('smoke')
  config.data.labelled_fraction = value
  with pytest.raises(errors.ConfigError, match=r'config.data.labelled_fraction must be in '
                     r'\[0, 1\)'):
    config_check.validate(config)


def test_ada_on_points_is_refused_without_advice_that_would_be_refused_too():
  toy = toy_ring.get_config('smoke')
  toy.augment.ada_target = 0.6
  with pytest.raises(errors.ConfigError, match=r"adapts how often image augmentations are "
                     r"applied; model.name='mlp' trains on points of shape \(2,\). Set it to 0."):
    config_check.validate(toy)


def test_ada_with_a_policy_and_a_loss_with_a_verdict_passes():
  for loss_type in ('non_saturating', 'least_squares', 'hinge', 'minimax'):
    config_check.validate(tiny_config(**{'augment.ada_target': 0.6, 'augment.policy': 'cutout',
                                         'loss.type': loss_type}))


@pytest.mark.parametrize('field,value,message', [
    ('loss.zcr_d_weight', -1.0, r'config.loss.zcr_d_weight must be a finite number >= 0'),
    ('loss.zcr_g_weight', -0.5, r'config.loss.zcr_g_weight must be a finite number >= 0'),
    ('loss.zcr_radius', 0.0, r"config.loss.zcr_radius must be a finite number > 0 \(the scale"),
    ('loss.zcr_radius', float('inf'), r'config.loss.zcr_radius must be a finite number > 0'),
])
def test_bad_zcr_settings_name_the_field(field, value, message):
  with pytest.raises(errors.ConfigError, match=message):
    config_check.validate(tiny_config(**{field: value}))


def test_zcr_g_term_refuses_a_generator_of_points():
  # The 2-D MLP's outputs are unbounded: -mean (G(z) - G(z + dz))^2 has no minimum.
  toy = toy_ring.get_config('smoke')
  toy.loss.zcr_g_weight = 0.5
  with pytest.raises(errors.ConfigError,
                     match=r"model.name='mlp' generates points of shape \(2,\)"):
    config_check.validate(toy)
  toy.loss.zcr_g_weight, toy.loss.zcr_d_weight = 0.0, 20.0
  config_check.validate(toy)


def test_zcr_refuses_a_shared_fake_batch():
  # reuse_fake hands the D update's G(z) to the G update: no fresh z for G(z + dz).
  for weight in ('loss.zcr_d_weight', 'loss.zcr_g_weight'):
    with pytest.raises(errors.ConfigError, match=r'Set train.reuse_fake=False or both zCR'):
      config_check.validate(tiny_config(**{weight: 1.0, 'train.reuse_fake': True}))
  config_check.validate(tiny_config(**{'loss.zcr_d_weight': 1.0, 'loss.zcr_g_weight': 1.0}))


@pytest.mark.parametrize('field', ['loss.gp_weight', 'loss.lecam_weight', 'loss.zcr_g_weight'])
def test_a_weight_that_is_not_a_finite_number_is_refused(field):
  with pytest.raises(errors.ConfigError, match=rf'config.{field} must be a finite number >= 0'):
    config_check.validate(tiny_config(**{field: float('nan')}))


@pytest.mark.parametrize('field,value,message', [
    ('model.ngf', 'abc', r"config.model.ngf must be an integer, got 'abc'"),
    ('model.ngf', 8.0, r'config.model.ngf must be an integer, got 8.0'),
    ('model.spectral_norm', 1, r'config.model.spectral_norm must be True or False, got 1'),
    ('train.ema_decay', '0.99', r"config.train.ema_decay must be a number, got '0.99'"),
    ('loss.type', 3, r'config.loss.type must be text, got 3'),
])
def test_a_value_of_the_wrong_type_is_refused(field, value, message):
  # Typed flags cannot make these; a config file or an edited record can.
  section, name = field.split('.')
  config = tiny_config()
  config[section] = ml_collections.ConfigDict({**config[section].to_dict(), name: value})
  with pytest.raises(errors.ConfigError, match=message):
    config_check.validate(config)


@pytest.mark.parametrize('field', ['model.ngf', 'model.ndf', 'model.z_dim', 'model.hidden',
                                   'model.channels'])
def test_a_network_size_below_one_is_refused(field):
  # --config.model.ngf=-8 was a reshape traceback from inside the model.
  config = tiny_config(**{field: -8})
  with pytest.raises(errors.ConfigError, match=f'config.{field} must be an integer >= 1, got -8'):
    config_check.validate(config)


def test_a_config_not_built_from_the_defaults_is_refused_naming_a_missing_field():
  config = ml_collections.ConfigDict({'model': tiny_config().model.to_dict()})
  with pytest.raises(errors.ConfigError,
                     match=r'config.augment.ada_interval is missing \(and \d+ more\).*'
                           r'gan_jax.defaults.get_config\(\)'):
    config_check.validate(config)


@pytest.mark.parametrize('name, field, value, fragments', [
    ('mlp', 'ngf', 128, ['model.ngf=128 is read by the biggan, dcgan, resnet, sagan families only',
                         'its widths are model.hidden', 'Leave model.ngf at 64']),
    ('image_mlp', 'ndf', 32, ['its widths are model.d_widths']),
    ('dcgan', 'hidden', 256, ['model.hidden=256 is read by the image_mlp, mlp families only',
                              'its widths are model.ngf / model.ndf']),
    ('dcgan', 'bottom_width', 8, ['is read by the biggan, resnet, sagan families only']),
    ('resnet', 'shared_dim', 64, ['is read by the biggan families only']),
    ('dcgan', 'num_layers', 5, ['is read by the image_mlp, mlp families only']),
    ('mlp', 'resolution', 64, ['model.resolution=64 is read by the biggan, dcgan, image_mlp, '
                               "resnet, sagan families only: model.name='mlp' would train"]),
])
def test_a_size_the_family_does_not_read_is_refused(name, field, value, fragments):
  # A sweep over it would train the same networks in every trial.
  config = defaults.get_config()
  config.model.name = name
  config.model[field] = value
  with pytest.raises(errors.ConfigError) as error:
    models.check_fields_read(config.model, defaults.get_config().model)
  for fragment in fragments:
    assert fragment in str(error.value), str(error.value)
  config.model[field] = defaults.get_config().model[field]
  models.check_fields_read(config.model, defaults.get_config().model)  # the default is fine


def test_a_minibatch_kernel_size_without_the_layer_is_refused():
  config = tiny_config(**{'model.minibatch_kernel_dim': 7})
  with pytest.raises(errors.ConfigError, match='minibatch_discrimination is 0'):
    config_check.validate(config)
  config.model.minibatch_discrimination = 10
  config_check.validate(config)


def test_the_shared_embedding_size_of_an_unconditional_biggan_is_refused():
  config = config_files.load('biggan_cifar10:smoke')
  config.model.num_classes = 0
  config.model.shared_dim = 64
  with pytest.raises(errors.ConfigError, match='this BigGAN is unconditional'):
    config_check.validate(config)
  config.model.num_classes = 10  # conditional: the embedding exists
  config_check.validate(config)


def test_a_minibatch_kernel_size_on_a_family_without_the_layer_says_so():
  config = config_files.load('toy_grid:smoke')
  config.model.minibatch_kernel_dim = 7
  with pytest.raises(errors.ConfigError, match='the mlp family has no such layer'):
    config_check.validate(config)


def test_the_batch_is_checked_against_devices_processes_and_pacgan_groups():
  config = tiny_config(**{'model.pack': 3, 'train.batch_size': 24})
  config_check.check_batch_over_devices(config, 8)  # 3 rows per device: one group
  config_check.check_batch_over_devices(config, 4, 2)
  with pytest.raises(errors.ConfigError, match=r"packs each device's batch of 4 \("):
    config_check.check_batch_over_devices(config, 6)  # 4 rows per device: no groups of 3
  with pytest.raises(errors.ConfigError, match=r'multiple of the number of devices \(5\)'):
    config_check.check_batch_over_devices(config, 5)
  with pytest.raises(errors.ConfigError, match=r'and processes \(5\)'):
    config_check.check_batch_over_devices(config, 1, 5)


def test_features_that_start_after_the_last_step_are_named():
  # biggan_cifar10 shortened to a test length: EMA from step 1000 of 500 never averages.
  assert config_check.late_starts(tiny_config(**{'train.num_steps': 1000})) == []
  config = tiny_config(**{'train.num_steps': 500, 'train.ema_start': 500,
                          'loss.lecam_weight': 0.3, 'loss.lecam_start': 499,
                          'optim.schedule': 'linear', 'optim.decay_start': 1.0,
                          'loss.g_top_k': 0.5, 'loss.g_top_k_decay': 0.99,
                          'loss.g_top_k_decay_steps': 500})
  notes = config_check.late_starts(config)
  assert [note.split('=')[0] for note in notes] == [
      'train.ema_start', 'loss.lecam_start', 'optim.decay_start', 'loss.g_top_k_decay_steps']
  assert 'the EMA generator (which samples and evaluations use) stays a copy of G' in notes[0]
  config.train.num_steps = 501  # EMA at step 500, LeCam's term at step 500, top-k at 500
  assert [note.split('=')[0] for note in config_check.late_starts(config)] == [
      'optim.decay_start']
  config_check.validate(config)  # allowed: the same run continued to its length uses them
  assert config_check.late_starts(tiny_config(**{'train.num_steps': 0})) == []


@pytest.mark.parametrize('decay_start', [0.5, 0.8, 0.85, 0.9, 0.95, 1.0])
def test_a_decay_that_never_lowers_a_rate_is_named(decay_start):
  # Warned exactly when optax's schedule gives all 10 updates the full rate.
  config = tiny_config(**{'train.num_steps': 10, 'optim.schedule': 'linear',
                          'optim.decay_start': decay_start})
  schedule = optim.learning_rate_schedule(1.0, schedule='linear', num_updates=10,
                                          decay_start=decay_start)
  constant = all(float(schedule(update)) == 1.0 for update in range(10))
  assert constant == (decay_start >= 0.9)  # int(10 * 0.9) = 9: the rate drops after
  warned = [note for note in config_check.late_starts(config) if 'decay_start' in note]
  assert bool(warned) == constant
