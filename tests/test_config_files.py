"""Tests of finding configs by name or path (gan_jax.config_files) and of configs/common.py."""

import os

import pytest

from configs import common
from gan_jax import config_files
from gan_jax import errors


def test_names_are_the_shipped_experiments():
  names = config_files.names()
  assert 'dcgan_digits' in names and 'toy_ring' in names
  assert 'common' not in names and '__init__' not in names


@pytest.mark.parametrize('value', ['dcgan_digits', 'configs/dcgan_digits.py',
                                   'some/where/dcgan_digits.py'])
def test_a_shipped_config_resolves_from_any_directory(tmp_path, monkeypatch, value):
  monkeypatch.chdir(tmp_path)
  path = config_files.resolve(value + ':smoke')
  assert path == str(config_files.configs_dir() / 'dcgan_digits.py') + ':smoke'


def test_an_existing_file_wins_over_a_shipped_name(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  (tmp_path / 'dcgan_digits.py').write_text('def get_config():\n  return None\n')
  assert config_files.resolve('dcgan_digits.py') == str(tmp_path / 'dcgan_digits.py')


def test_an_unknown_config_suggests_close_names():
  with pytest.raises(KeyError, match='Did you mean dcgan_digits'):
    config_files.resolve('dcgan_digit')


def test_every_shipped_config_loads_with_a_one_line_description_and_its_variants():
  lines = config_files.describe_all().splitlines()
  # Every config has at least its ':smoke' variant, on the line below its description.
  assert len(lines) == 2 * len(config_files.names())
  for name, line, variant_line in zip(config_files.names(), lines[::2], lines[1::2]):
    assert line.split()[0] == name and len(line.split()) > 3, line
    assert variant_line.split()[0] == 'variants:' and 'smoke' in variant_line, variant_line
    assert config_files.load(name).name.startswith(name.split('_')[0])


def test_variants_are_the_ones_get_config_takes():
  assert config_files.variants('dcgan_digits') == dict(
      smoke=False, few=False, noaug=False, policy=None, fill=None)
  assert config_files.variants('biggan_cifar10:smoke') == dict(
      smoke=False, diffaug=False, lecam=False, cr=False, icr=False, data=100)
  assert config_files.variants('sagan_cifar10') == dict(smoke=False, studiogan=False)
  for name, default in config_files.variants('semi_supervised_digits').items():
    assert default is False
    config_files.load(f'semi_supervised_digits:{name}')  # each one loads


def test_load_passes_the_variant():
  assert config_files.load('dcgan_digits:smoke').train.num_steps == 6


def test_parse_arg_reads_bare_words_and_typed_values():
  args = common.parse_arg('smoke,steps=7,name=x', smoke=False, steps=1, name=None)
  assert (args.smoke, args.steps, args.name) == (True, 7, 'x')
  with pytest.raises(ValueError, match=r"unknown config variant 'nope'.*smoke"):
    common.parse_arg('nope', smoke=False)


def test_a_switch_variant_takes_on_or_off_spellings_only():
  assert common.parse_arg('few=true,smoke=off', few=False, smoke=True).to_dict() == dict(
      few=True, smoke=False)
  assert not common.parse_arg('few=0', few=True).few
  with pytest.raises(errors.ConfigError, match=r"few='3'.*few=true / few=false"):
    common.parse_arg('few=3', few=False)


@pytest.mark.parametrize('num_steps,log_every,checkpoint_every', [
    (1, 1, 1), (6, 3, 4), (100, 34, 51), (1000, 334, 501)])
def test_smoke_intervals_follow_an_overridden_step_count(num_steps, log_every, checkpoint_every):
  config = config_files.load('dcgan_digits:smoke')
  config.train.num_steps = num_steps
  assert config.train.log_every == log_every
  assert config.train.checkpoint_every == checkpoint_every
  assert config.train.sample_every == checkpoint_every


def test_configs_dir_is_beside_the_package():
  assert os.path.isfile(config_files.configs_dir() / 'common.py')


@pytest.mark.parametrize('name', ['dcgan_digits:smoke', 'toy_grid:baseline,smoke', 'toy_ring'])
def test_overriding_an_interval_leaves_the_step_count_alone(name):
  config = config_files.load(name)
  steps = config.train.num_steps
  config.train.checkpoint_every = 2
  config.train.sample_every = 3
  assert config.train.num_steps == steps
  assert (config.train.checkpoint_every, config.train.sample_every) == (2, 3)
  config.train.num_steps = steps + 1  # and the step count still moves only itself
  assert (config.train.checkpoint_every, config.train.sample_every) == (2, 3)


def test_dcgan_digits_few_takes_another_augmentation_policy():
  assert config_files.load('dcgan_digits:few').augment.policy == 'cutout'
  assert config_files.load('dcgan_digits:few,noaug').augment.policy == ''
  few_color = config_files.load('dcgan_digits:few,policy=color')
  assert few_color.augment.policy == 'color' and few_color.data.train_examples == 134
  assert config_files.load('dcgan_digits:few').augment.fill == 0.0
  assert config_files.load('dcgan_digits:few,fill=-1').augment.fill == -1.0
  for arg in ('policy=color', 'fill=-1'):
    with pytest.raises(ValueError, match="variants of ':few'"):
      config_files.load(f'dcgan_digits:{arg}')
