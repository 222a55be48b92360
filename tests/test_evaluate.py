"""Tests of `python -m gan_jax.evaluate` (gan_jax/evaluate.py): the record it writes.

The evaluator itself is tested in test_evaluator.py; here the checkpoint is
replaced by a generator that returns real digits, so the plumbing (workdir config,
metrics, the JSON record and its protocol) runs in seconds. One slow test trains a
smoke run end to end and evaluates its checkpoint.
"""

import errno
import json
import logging
import os
import tempfile

import numpy as np
import pytest

from configs import dcgan_digits
from gan_jax import config_files
from gan_jax import errors
from gan_jax import evaluate as evaluate_lib
from gan_jax import sample
from gan_jax import train
from gan_jax import workdir as workdir_lib
from gan_jax.data import digits as digits_lib


def _serve(monkeypatch, config, generate, seen=None):
  """Makes evaluate's checkpoint restore hand out `generate` (step `generate.step`),
  recording what it was asked for in `seen`."""
  def restore_state(workdir, step=None, *, best=False):
    if seen is not None:
      seen.update(workdir=workdir, step=step, best=best)
    return config, None, generate.step

  def generator_from_state(config, state, restored_step, **standing):
    del config, state, restored_step
    if seen is not None:
      seen.update(standing)
    return generate

  monkeypatch.setattr(workdir_lib, 'restore_state', restore_state)
  monkeypatch.setattr(sample, 'generator_from_state', generator_from_state)


def _digits_run_at_step_5(tmp_path, monkeypatch):
  """(workdir, config, generate): a dcgan_digits workdir whose 'checkpoint' of step 5
  is a generator of real test digits (`_serve`)."""
  workdir = str(tmp_path / 'run')
  config = dcgan_digits.get_config()
  workdir_lib.prepare(config, workdir)
  generate = _pool_generator(digits_lib.digits_images('test', size=(8, 8)))
  generate.step = 5
  _serve(monkeypatch, config, generate)
  return workdir, config, generate


def _pool_generator(pool):
  """Returns pool images chosen deterministically from z."""
  def generate(z, labels=None):
    del labels
    index = (np.abs(z[:, 0]) * 1e6).astype(np.int64) % len(pool)
    return pool[index]
  return generate


def test_evaluate_writes_the_record_with_its_protocol(tmp_path, monkeypatch, caplog):
  workdir = str(tmp_path / 'run')
  config = dcgan_digits.get_config()
  config.model.dtype = 'bfloat16'
  workdir_lib.prepare(config, workdir)
  generate = _pool_generator(digits_lib.digits_images('test', size=(8, 8)))
  generate.step = 1234
  seen = {}
  _serve(monkeypatch, config, generate, seen)
  record = evaluate_lib.evaluate(workdir, step=1234, metrics='proxy', num_samples=200,
                                 cache_dir=str(tmp_path / 'cache'))
  assert seen == {'workdir': workdir, 'step': 1234, 'best': False, 'standing_stats': 0,
                  'standing_seed': 0}
  with open(tmp_path / 'run' / 'eval' / 'step_1234.json', encoding='utf-8') as f:
    saved = json.load(f)
  assert saved['step'] == 1234 and saved['results'] == record['results']
  assert saved['checkpoint'] == 'checkpoints'
  assert {'proxy_fd', 'proxy_coverage_kl', 'proxy_confident'} <= set(saved['results'])
  protocol = saved['protocol']
  assert protocol['num_samples'] == 200 and protocol['data_shape'] == [8, 8, 1]
  assert protocol['metrics'] == ['proxy'] and protocol['seed'] == 0
  assert protocol['standing_stats'] is None and protocol['generator_dtype'] == 'bfloat16'
  # Evaluating the same step the same way again replaces the record, and says so.
  with caplog.at_level(logging.WARNING):
    evaluate_lib.evaluate(workdir, step=1234, metrics='proxy', num_samples=200,
                          cache_dir=str(tmp_path / 'cache'))
  assert any('Replacing the earlier record' in r.getMessage() for r in caplog.records)


def test_the_best_checkpoint_is_evaluated_on_other_latents_than_picked_it(
    tmp_path, monkeypatch, caplog):
  # The evaluations during training drew latents from config.seed and kept the lowest
  # value; reporting the same draw again would report the luckiest estimate.
  workdir = str(tmp_path / 'run')
  config = dcgan_digits.get_config()
  config.seed = 7
  workdir_lib.prepare(config, workdir)
  pool = digits_lib.digits_images('test', size=(8, 8))
  outputs = iter(range(10))
  generate = _pool_generator(pool)
  generate.step = 10
  _serve(monkeypatch, config, generate)
  run = lambda **kwargs: evaluate_lib.evaluate(
      workdir, metrics='proxy', num_samples=100, cache_dir=str(tmp_path / 'cache'),
      output=str(tmp_path / f'out{next(outputs)}.json'), **kwargs)['protocol']
  protocol = run(best=True)
  assert (protocol['seed'], protocol['best_selected_with_seed']) == (8, 7)
  assert run()['seed'] == 0 and 'best_selected_with_seed' not in run()
  with caplog.at_level(logging.WARNING):
    assert run(best=True, seed=7)['seed'] == 7  # asked for: done, with a warning
  assert 'picked the best checkpoint' in caplog.text and 'optimistic' in caplog.text


def test_the_record_of_a_conditional_model_has_per_class_values(tmp_path, monkeypatch):
  workdir = str(tmp_path / 'run')
  config = dcgan_digits.get_config()
  config.model.num_classes = 10
  workdir_lib.prepare(config, workdir)
  digits, classes = digits_lib.digits_split('test')
  pools = [digits_lib.digits_images('test', size=(8, 8))[classes == c] for c in range(10)]

  def generate(z, labels):  # a real test digit of the requested class
    index = (np.abs(z[:, 0]) * 1e6).astype(np.int64)
    return np.stack([pools[c][i % len(pools[c])] for c, i in zip(labels, index)])

  generate.step = 7
  _serve(monkeypatch, config, generate)
  record = evaluate_lib.evaluate(workdir, metrics='cas', num_samples=200,
                                 cache_dir=str(tmp_path / 'cache'))
  with open(tmp_path / 'run' / 'eval' / 'step_7.json', encoding='utf-8') as f:
    saved = json.load(f)
  assert saved['per_class'] == record['per_class'] and len(saved['per_class']['cas']) == 10
  assert saved['results']['cas'] > 0.9  # the judge's test accuracy is about 0.98
  assert saved['results']['cas'] == pytest.approx(np.mean(saved['per_class']['cas']))
  assert saved['protocol']['labels'].startswith('sample row i generated with label i mod 10')
  # The same metrics asked in another order are the same measurement: replaced, not kept.
  kwargs = dict(num_samples=200, cache_dir=str(tmp_path / 'cache'))
  evaluate_lib.evaluate(workdir, metrics='proxy,cas', **kwargs)
  evaluate_lib.evaluate(workdir, metrics='cas,proxy', **kwargs)
  assert len(os.listdir(tmp_path / 'run' / 'eval')) == 2  # the cas-only record, and this


@pytest.mark.parametrize('overrides,expected', [
    ({}, ['proxy']),  # the config's own eval.metrics
    ({'eval.metrics': '', 'model.num_classes': 10}, ['proxy', 'cas']),  # offline, for digits
])
def test_without_metrics_the_run_s_own_or_offline_metrics_are_evaluated(
    tmp_path, monkeypatch, overrides, expected):
  # Not 'fid', whose Inception weights a new user may not have.
  workdir = str(tmp_path / 'run')
  config = dcgan_digits.get_config()
  config.update_from_flattened_dict(overrides)
  workdir_lib.prepare(config, workdir)
  generate = _pool_generator(digits_lib.digits_images('test', size=(8, 8)))
  generate.step = 5
  _serve(monkeypatch, config, generate)
  record = evaluate_lib.evaluate(workdir, num_samples=100, cache_dir=str(tmp_path / 'cache'))
  assert record['protocol']['metrics'] == expected and 'proxy_fd' in record['results']
  assert record['generator'] == 'EMA (decay 0.99, from step 0)'


def test_the_record_says_when_g_itself_sampled(tmp_path, monkeypatch):
  # It said 'EMA' for a run without one (train.ema_decay=0 samples G's own weights).
  workdir = str(tmp_path / 'run')
  config = dcgan_digits.get_config()
  config.train.ema_decay = 0.0
  workdir_lib.prepare(config, workdir)
  generate = _pool_generator(digits_lib.digits_images('test', size=(8, 8)))
  generate.step = 5
  _serve(monkeypatch, config, generate)
  record = evaluate_lib.evaluate(workdir, num_samples=100, cache_dir=str(tmp_path / 'cache'))
  assert record['generator'] == 'G (no EMA: train.ema_decay=0)'


def test_a_different_evaluation_of_a_step_keeps_the_earlier_record_beside(tmp_path, monkeypatch):
  # A quick 100-sample check must not replace a long evaluation of the same step.
  workdir, config, generate = _digits_run_at_step_5(tmp_path, monkeypatch)
  folder = tmp_path / 'run' / 'eval'
  kwargs = dict(metrics='proxy', cache_dir=str(tmp_path / 'cache'))
  evaluate_lib.evaluate(workdir, num_samples=300, **kwargs)
  evaluate_lib.evaluate(workdir, num_samples=300, **kwargs)  # the same: replaced
  assert sorted(p.name for p in folder.iterdir()) == ['step_5.json']
  evaluate_lib.evaluate(workdir, num_samples=100, **kwargs)  # another: the first kept
  names = sorted(p.name for p in folder.iterdir())
  assert len(names) == 2 and names[1] == 'step_5.json'
  assert names[0].startswith('step_5.') and names[0].endswith('.json')
  kept = json.loads((folder / names[0]).read_text())
  assert kept['protocol']['num_samples'] == 300
  assert json.loads((folder / 'step_5.json').read_text())['protocol']['num_samples'] == 100
  evaluate_lib.evaluate(workdir, num_samples=100, seed=9, **kwargs)  # another seed
  assert len(list(folder.iterdir())) == 3
  # The reference statistics cached elsewhere: the same measurement, replaced.
  evaluate_lib.evaluate(workdir, num_samples=100, seed=9, metrics='proxy',
                        cache_dir=str(tmp_path / 'other_cache'))
  assert len(list(folder.iterdir())) == 3
  # A record made before protocols named G's compute dtype measured the same way.
  record = json.loads((folder / 'step_5.json').read_text())
  assert record['protocol'].pop('generator_dtype') == 'float32'
  (folder / 'step_5.json').write_text(json.dumps(record))
  evaluate_lib.evaluate(workdir, num_samples=100, seed=9, **kwargs)
  assert len(list(folder.iterdir())) == 3
  evaluate_lib.evaluate(workdir, num_samples=100, seed=9, num_reference=200, **kwargs)
  assert len(list(folder.iterdir())) == 4  # another reference: kept as well


@pytest.mark.parametrize('config_name,metrics,kwargs,flag', [
    ('semi_supervised_digits', 'accuracy', dict(num_samples=1000), '--num_samples'),
    ('semi_supervised_digits', 'accuracy', dict(seed=3), '--seed'),
    ('semi_supervised_digits', 'accuracy', dict(batch_size=7), '--batch_size'),
    ('semi_supervised_digits', 'accuracy', dict(num_reference=30), '--num_reference'),
    ('dcgan_digits', 'proxy', dict(accuracy_split='test'), '--accuracy_split'),
    ('dcgan_digits', 'proxy', dict(inception_weights='/x.pth'), '--inception_weights'),
    ('dcgan_digits', 'cas', dict(reference_split='test'), '--reference_split'),
    ('toy_ring', 'proxy', dict(reference_split='nonsense'), '--reference_split'),
    ('toy_ring', None, dict(num_reference=7), '--num_reference'),
])
def test_a_setting_no_metric_reads_is_refused_not_ignored(tmp_path, config_name, metrics,
                                                          kwargs, flag):
  # Each was accepted, changed nothing, and the record did not mention it.
  config = config_files.load(config_name)
  workdir = str(tmp_path / 'run')
  workdir_lib.prepare(config, workdir)
  with pytest.raises(errors.ConfigError, match=f'{flag} is only read by'):
    evaluate_lib.evaluate(workdir, metrics=metrics, **kwargs)


def test_an_explicit_output_is_json_and_never_replaces_another_kind_of_file(tmp_path,
                                                                            monkeypatch):
  workdir = str(tmp_path / 'run')
  config = dcgan_digits.get_config()
  workdir_lib.prepare(config, workdir)
  with pytest.raises(errors.ConfigError, match='the record is JSON; give a .json path'):
    evaluate_lib.evaluate(workdir, metrics='proxy', output=str(tmp_path / 'samples.npz'))
  mine = tmp_path / 'mine.json'
  mine.write_text('{"my": "notes"}')
  with pytest.raises(errors.ConfigError, match='exists and is not an evaluation record'):
    evaluate_lib.evaluate(workdir, metrics='proxy', output=str(mine))
  assert mine.read_text() == '{"my": "notes"}'
  # An earlier record there that measured otherwise is kept aside, as at the default path.
  generate = _pool_generator(digits_lib.digits_images('test', size=(8, 8)))
  generate.step = 5
  _serve(monkeypatch, config, generate)
  output = str(tmp_path / 'out' / 'e.json')
  kwargs = dict(metrics='proxy', cache_dir=str(tmp_path / 'cache'), output=output)
  evaluate_lib.evaluate(workdir, num_samples=300, **kwargs)
  evaluate_lib.evaluate(workdir, num_samples=100, **kwargs)
  names = sorted(os.listdir(tmp_path / 'out'))
  assert len(names) == 2 and names[1] == 'e.json' and names[0].startswith('e.')
  assert json.loads((tmp_path / 'out' / names[0]).read_text())['protocol']['num_samples'] == 300
  assert json.loads((tmp_path / 'out' / 'e.json').read_text())['protocol']['num_samples'] == 100
  # The same output reused for another checkpoint, measured the same way: kept too.
  generate.step = 6
  evaluate_lib.evaluate(workdir, num_samples=100, **kwargs)
  steps = sorted(json.loads((tmp_path / 'out' / name).read_text())['step']
                 for name in os.listdir(tmp_path / 'out'))
  assert steps == [5, 5, 6]


def test_a_seed_beyond_32_bits_is_refused_before_the_workdir_is_read(tmp_path):
  # JAX keeps a seed's low 32 bits: 2**32 would draw seed 0's latents under another name.
  with pytest.raises(errors.ConfigError, match=r'--seed must be in \[0, 2\*\*32 - 1\]'):
    evaluate_lib.evaluate(str(tmp_path / 'nope'), metrics='proxy', seed=2**32)


def test_an_unwritable_default_output_is_refused_before_the_evaluation(tmp_path, monkeypatch):
  # <workdir>/eval/ on a read-only mount was found only when the record was written,
  # after hours of sampling, and the results were lost.
  workdir = str(tmp_path / 'run')
  workdir_lib.prepare(dcgan_digits.get_config(), workdir)

  def read_only(*args, **kwargs):
    raise OSError(errno.EROFS, 'Read-only file system')

  def evaluation(*args, **kwargs):
    raise AssertionError('the evaluation started')

  monkeypatch.setattr(tempfile, 'mkstemp', read_only)
  monkeypatch.setattr(evaluate_lib.metrics_lib, 'make_evaluator', evaluation)
  with pytest.raises(errors.ConfigError, match=r'--output \(default <workdir>/eval/\)=.*'
                     r'cannot write in .*Read-only file system'):
    evaluate_lib.evaluate(workdir, metrics='proxy')


def test_a_record_that_cannot_be_written_is_reported_with_its_results(tmp_path, monkeypatch):
  workdir, config, generate = _digits_run_at_step_5(tmp_path, monkeypatch)

  def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, 'No space left on device')

  monkeypatch.setattr(evaluate_lib.writers, 'write_text_atomic', disk_full)
  with pytest.raises(errors.ConfigError, match=r'could not write the record to .*step_5.json '
                     r'\(No space left on device\); its results \(step 5\): \{"proxy_fd": '):
    evaluate_lib.evaluate(workdir, metrics='proxy', num_samples=100,
                          cache_dir=str(tmp_path / 'cache'))


@pytest.mark.parametrize('output', ['config.json', 'metrics.jsonl', 'checkpoints/x.json',
                                    'samples/step_0000004.json', 'sub/../config_history.jsonl',
                                    'best_fid_step40/x.json', 'best_proxy_fd_step40_2/x'])
def test_an_output_that_would_replace_a_run_record_is_refused(tmp_path, output):
  workdir = str(tmp_path / 'run')
  workdir_lib.prepare(dcgan_digits.get_config(), workdir)
  before = (tmp_path / 'run' / 'config.json').read_bytes()
  with pytest.raises(errors.ConfigError, match='part of the record of the run in'):
    evaluate_lib.evaluate(workdir, metrics='proxy', output=str(tmp_path / 'run' / output))
  assert (tmp_path / 'run' / 'config.json').read_bytes() == before
  # Beside the records, in the eval folder or outside the workdir, is fine.
  workdir_lib.check_output_path(workdir, str(tmp_path / 'run' / 'eval' / 'mine.json'))
  workdir_lib.check_output_path(workdir, str(tmp_path / 'config.json'))
  workdir_lib.check_output_path(workdir, str(tmp_path / 'run' / 'best_fid.json'))


def test_an_output_into_another_runs_records_is_refused_too(tmp_path):
  other = tmp_path / 'other'
  workdir_lib.prepare(dcgan_digits.get_config(), str(other))
  (other / 'metrics.jsonl').write_text('')  # what a run that trained has beside config.json
  (other / 'checkpoints' / '6').mkdir(parents=True)
  for output in ('config.json', 'checkpoints/99/', 'samples/step_0000006.png',
                 'best/best.json', 'eval/../metrics.jsonl'):
    with pytest.raises(errors.ConfigError, match=f'record of the run in {other}'):
      workdir_lib.check_output_path(str(tmp_path / 'run'), str(other / output))
  workdir_lib.check_output_path(str(tmp_path / 'run'), str(other / 'eval' / 'step_6.json'))
  # A folder holding a config.json but no run's logs or checkpoints is not a run.
  plain = tmp_path / 'model'
  plain.mkdir()
  (plain / 'config.json').write_text('{}')
  workdir_lib.check_output_path(None, str(plain / 'config.json'))


def test_an_unknown_metric_fails_before_the_workdir_is_read(tmp_path):
  with pytest.raises(ValueError, match='--metrics'):
    evaluate_lib.evaluate(str(tmp_path / 'nope'), metrics='fid,nope')
  with pytest.raises(ValueError, match='--metrics'):
    evaluate_lib.evaluate(str(tmp_path / 'nope'), metrics=['fid', 'nope'])  # a list is fine


def test_a_reference_split_of_an_image_folder_run_is_refused(tmp_path):
  config = dcgan_digits.get_config()
  config.data.source, config.data.path, config.eval.metrics = 'image_folder', '/data/x', ''
  workdir = str(tmp_path / 'run')
  workdir_lib.prepare(config, workdir)
  with pytest.raises(errors.ConfigError, match="--reference_split='test': an image folder has "
                                               'no splits'):
    evaluate_lib.evaluate(workdir, metrics='fid', reference_split='test')


@pytest.mark.parametrize('kwargs,message', [
    (dict(num_samples=1), '--num_samples must be at least 2, got 1'),
    (dict(batch_size=0), '--batch_size must be at least 1, got 0'),
    (dict(num_reference=1), '--num_reference must be at least 2, got 1'),
])
def test_counts_too_small_fail_before_the_workdir_is_read(tmp_path, kwargs, message):
  with pytest.raises(errors.ConfigError, match=message):
    evaluate_lib.evaluate(str(tmp_path / 'nope'), metrics=['proxy'], **kwargs)


@pytest.mark.slow
def test_end_to_end_train_then_evaluate_the_checkpoint(tmp_path):
  config = dcgan_digits.get_config('smoke')
  workdir = tmp_path / 'run'
  train.train_and_evaluate(config, str(workdir))
  record = evaluate_lib.evaluate(str(workdir), metrics='proxy', num_samples=200,
                                 cache_dir=str(tmp_path / 'cache'))
  assert record['step'] == config.train.num_steps
  assert np.isfinite(record['results']['proxy_fd'])
  assert (workdir / 'eval' / f'step_{config.train.num_steps}.json').is_file()
