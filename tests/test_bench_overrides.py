"""Tests of the benchmarks' `--set=FIELD=VALUE` overrides (`gan_jax.bench.overrides`)."""

import os
import subprocess
import sys

import ml_collections
import pytest

from configs import semi_supervised_digits
from gan_jax import errors
from gan_jax.bench import overrides

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config():
  return ml_collections.ConfigDict({
      'loss': {'weight': 1.0, 'type': 'hinge', 'steps': 3, 'on': False},
      'name': 'x'})


def test_parse_keeps_order_and_splits_at_the_first_equals_sign():
  assert overrides.parse(['loss.weight=2', 'name=a=b', ' loss.on = true ']) == (
      ('loss.weight', '2'), ('name', 'a=b'), ('loss.on', 'true'))
  assert overrides.parse(None) == ()


@pytest.mark.parametrize('text', ['loss.weight', '=2', ' =1'])
def test_parse_rejects_a_text_without_a_field_and_value(text):
  with pytest.raises(errors.ConfigError, match='FIELD=VALUE'):
    overrides.parse([text])


def test_parse_rejects_a_field_named_twice():
  with pytest.raises(errors.ConfigError, match='twice'):
    overrides.parse(['loss.weight=2', 'loss.weight=3'])


def test_apply_converts_to_each_fields_type():
  config = overrides.apply(_config(), overrides.parse(
      ['loss.weight=2', 'loss.type=hinge2', 'loss.steps=7', 'loss.on=yes', 'name=0.5']))
  assert config.loss.weight == 2.0 and isinstance(config.loss.weight, float)
  assert config.loss.type == 'hinge2'
  assert config.loss.steps == 7 and isinstance(config.loss.steps, int)
  assert config.loss.on is True
  assert config.name == '0.5'  # a str field keeps the text
  assert overrides.apply(config, overrides.parse(['loss.on=0'])).loss.on is False


@pytest.mark.parametrize('text, message', [
    ('loss.steps=2.5', 'loss.steps is an integer'),
    ('loss.weight=big', 'loss.weight is a number'),
    ('loss.on=maybe', 'loss.on is a bool'),
])
def test_apply_rejects_a_value_of_the_wrong_type(text, message):
  with pytest.raises(errors.ConfigError, match=message):
    overrides.apply(_config(), overrides.parse([text]))


def test_apply_names_the_fields_of_the_section_for_an_unknown_field():
  with pytest.raises(errors.ConfigError, match=r"loss has no field 'wieght'; its fields: "
                                               r'on, steps, type, weight'):
    overrides.apply(_config(), overrides.parse(['loss.wieght=2']))
  with pytest.raises(errors.ConfigError, match="the config has no field 'los'"):
    overrides.apply(_config(), overrides.parse(['los.weight=2']))
  with pytest.raises(errors.ConfigError, match='it is a value, not a section'):
    overrides.apply(_config(), overrides.parse(['name.sub=2']))
  with pytest.raises(errors.ConfigError, match='that is a section'):
    overrides.apply(_config(), overrides.parse(['loss=2']))


def test_apply_sets_fields_of_a_real_config():
  config = semi_supervised_digits.get_config()
  assert config.loss.d_adversarial_weight == 1.0 and config.model.d_input_noise == 0.3
  overrides.apply(config, overrides.parse(
      ['loss.d_adversarial_weight=2', 'model.d_input_noise=0.6']))
  assert config.loss.d_adversarial_weight == 2.0
  assert config.model.d_input_noise == 0.6


def test_describe_and_slug():
  pairs = overrides.parse(['loss.weight=2', 'name=a'])
  assert overrides.describe(pairs) == 'loss.weight=2 name=a'
  assert overrides.describe(()) == '' and overrides.slug(()) == ''
  tag = overrides.slug(pairs)
  assert tag.startswith('-set') and len(tag) == 12
  assert tag == overrides.slug(overrides.parse(['loss.weight=2', 'name=a']))
  assert tag != overrides.slug(overrides.parse(['loss.weight=3', 'name=a']))


def test_row_label_names_the_overrides_only_when_there_are_some():
  assert overrides.row_label({'config': 'a:b'}) == '`a:b`'
  assert overrides.row_label({'config': 'a:b', 'overrides': ''}) == '`a:b`'
  assert overrides.row_label({'config': 'a', 'overrides': 'x.y=1 z=2'}) == '`a` with `x.y=1 z=2`'


def test_parse_refuses_a_field_the_harness_sets_itself():
  with pytest.raises(errors.ConfigError, match='sets seed itself.*pass --seeds'):
    overrides.parse(['loss.type=hinge', 'seed=9'], controlled={'seed': 'pass --seeds'})
  assert overrides.parse(['seed=9']) == (('seed', '9'),)  # no harness: any field


@pytest.mark.parametrize('module,field,advice', [
    ('toy', 'seed', '--first_seed'), ('toy', 'train.num_steps', '--num_steps'),
    ('little_data', 'data.train_examples', '--fractions'),
    ('little_data', 'eval.num_samples', '--num_samples'),
    ('semi_supervised', 'seed', '--seeds')])
def test_each_benchmark_refuses_to_label_a_value_it_would_replace(tmp_path, module, field,
                                                                  advice):
  # Its table would have said `field=9` ran while every trial ran the harness's value.
  out = tmp_path / 'out'
  result = subprocess.run(
      [sys.executable, '-m', f'gan_jax.bench.{module}', f'--set={field}=9', f'--out={out}'],
      capture_output=True, text=True, timeout=300, cwd=REPO)
  assert result.returncode == 2, result.stderr[-2000:]
  assert f'sets {field} itself' in result.stderr and advice in result.stderr
  assert 'Traceback' not in result.stderr and not out.exists()


@pytest.mark.parametrize('module', ['toy', 'little_data', 'semi_supervised'])
def test_each_benchmark_s_help_lists_the_shared_flags(module):
  # They are defined in gan_jax.bench.trials; absl's --help shows the main module's.
  result = subprocess.run([sys.executable, '-m', f'gan_jax.bench.{module}', '--help'],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
  text = result.stdout + result.stderr
  for flag in ('--set', '--out', '--num_steps', '--[no]keep_workdirs'):
    assert f'  {flag}:' in text, flag


def test_a_value_the_config_checks_refuse_leaves_no_out_folder(tmp_path):
  out = tmp_path / 'out'
  result = subprocess.run(
      [sys.executable, '-m', 'gan_jax.bench.toy', '--configs=toy_ring:smoke', '--trials=1',
       '--set=loss.type=hnige', f'--out={out}'], capture_output=True, text=True, timeout=300,
      cwd=REPO)
  assert result.returncode == 2 and "Unknown config.loss.type 'hnige'" in result.stderr
  assert not out.exists()
