"""Tests of `python -m gan_jax.classify` (gan_jax/classify.py): input checks, and a
round trip through a tiny trained semi-supervised run."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from configs import cgan_digits
from configs import dcgan_digits
from configs import semi_supervised_digits
from gan_jax import classify
from gan_jax import config_check
from gan_jax import data as data_lib
from gan_jax import errors
from gan_jax import evaluate
from gan_jax import models
from gan_jax import train
from gan_jax import workdir as workdir_lib
from gan_jax.metrics import classifier as classifier_lib
from tests.compile_flags import subprocess_xla_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (8, 8, 1)


def test_images_of_the_wrong_shape_are_refused():
  with pytest.raises(errors.ConfigError, match=r'f32\[N, 8, 8, 1\].*\[3, 8, 8\]'):
    classifier_lib.check_images(np.zeros((3, 8, 8), np.float32), SHAPE)
  with pytest.raises(errors.ConfigError, match=r'\[3, 16, 16, 1\]'):
    classifier_lib.check_images(np.zeros((3, 16, 16, 1), np.float32), SHAPE)


def test_images_outside_minus_one_to_one_or_not_floats_are_refused():
  with pytest.raises(errors.ConfigError, match=r'\[-1, 1\].*255'):
    classifier_lib.check_images(np.full((2,) + SHAPE, 255.0, np.float32), SHAPE)
  with pytest.raises(errors.ConfigError, match='uint8'):
    classifier_lib.check_images(np.zeros((2,) + SHAPE, np.uint8), SHAPE)


def test_input_without_images_or_missing_is_a_user_error(tmp_path):
  np.savez(tmp_path / 'x.npz', x=np.zeros((2,) + SHAPE, np.float32))
  with pytest.raises(errors.ConfigError, match=r'no key "images" \(keys: \[.x.\]\)'):
    classify.read_input(str(tmp_path / 'x.npz'))
  # What `gan_jax.sample` writes reads as it is; "images" wins when both are there.
  np.savez(tmp_path / 's.npz', samples=np.ones((2,) + SHAPE, np.float32))
  assert classify.read_input(str(tmp_path / 's.npz')).shape == (2,) + SHAPE
  np.savez(tmp_path / 'b.npz', samples=np.ones((2,) + SHAPE), images=np.zeros((3,) + SHAPE))
  assert classify.read_input(str(tmp_path / 'b.npz')).shape == (3,) + SHAPE
  with pytest.raises(errors.MissingFileError, match='--input'):
    classify.read_input(str(tmp_path / 'missing.npz'))


def test_input_that_is_no_npz_of_images_is_a_user_error(tmp_path):
  np.save(tmp_path / 'x.npy', np.zeros((2,) + SHAPE, np.float32))
  with pytest.raises(errors.ConfigError, match=r'one array \(.npy\).*np.savez'):
    classify.read_input(str(tmp_path / 'x.npy'))
  (tmp_path / 'junk.npz').write_text('not an archive')
  with pytest.raises(errors.ConfigError, match='not an .npz file.*np.savez'):
    classify.read_input(str(tmp_path / 'junk.npz'))
  np.savez(tmp_path / 'objects.npz', images=np.array([None, 1], dtype=object))
  with pytest.raises(errors.ConfigError, match='not an .npz file'):
    classify.read_input(str(tmp_path / 'objects.npz'))
  np.savez(tmp_path / 'empty.npz', images=np.zeros((0,) + SHAPE, np.float32))
  with pytest.raises(errors.ConfigError, match='holds no images'):
    classify.read_input(str(tmp_path / 'empty.npz'))
  # What a kill in the middle of writing an archive leaves: nothing, or a prefix of it.
  np.savez(tmp_path / 'whole.npz', images=np.random.default_rng(0).uniform(
      -1, 1, (500,) + SHAPE).astype(np.float32))
  whole = (tmp_path / 'whole.npz').read_bytes()
  for size in (0, 100, len(whole) // 2, len(whole) - 10):
    (tmp_path / 'cut.npz').write_bytes(whole[:size])
    with pytest.raises(errors.ConfigError, match='not an .npz file'):
      classify.read_input(str(tmp_path / 'cut.npz'))


def test_images_with_nan_are_refused():
  images = np.zeros((2,) + SHAPE, np.float32)
  images[1, 0, 0, 0] = np.nan
  with pytest.raises(errors.ConfigError, match='1 of the 128 values are NaN or infinite'):
    classifier_lib.check_images(images, SHAPE)


def test_a_run_without_class_logits_is_refused():
  with pytest.raises(errors.ConfigError,
                     match=r'runs/x has no classifier head: it is an unconditional model') as e:
    classifier_lib.check_classifier(dcgan_digits.get_config('smoke'), 'runs/x')
  assert 'd_cond' not in str(e.value).split('needs')[0]  # no projection head to speak of
  projection = dcgan_digits.get_config('smoke')
  projection.model.num_classes = 10
  with pytest.raises(errors.ConfigError, match=r"conditioned by d_cond='projection'"):
    classifier_lib.check_classifier(projection, 'runs/x')


@pytest.fixture(scope='module')
def trained_workdir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('ssl') / 'run')
  train.train_and_evaluate(semi_supervised_digits.get_config('smoke'), workdir)
  return workdir


@pytest.mark.slow
def test_command_line_round_trip_agrees_with_test_accuracy(trained_workdir, tmp_path):
  images, labels = data_lib.load_eval_data(
      semi_supervised_digits.get_config('smoke').data, data_shape=SHAPE, split='test',
      num_examples=10**6, labels=True)
  np.savez(tmp_path / 'in.npz', images=images)
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=subprocess_xla_flags())
  result = subprocess.run(
      [sys.executable, '-m', 'gan_jax.classify', f'--workdir={trained_workdir}',
       f'--input={tmp_path / "in.npz"}', f'--output={tmp_path / "out.npz"}'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  out = np.load(tmp_path / 'out.npz')
  assert out['labels'].dtype == np.int32 and out['labels'].shape == (450,)
  assert out['probs'].dtype == np.float32 and out['probs'].shape == (450, 10)
  np.testing.assert_allclose(out['probs'].sum(axis=1), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(out['labels'], out['probs'].argmax(axis=1))
  accuracy = classify.test_accuracy(trained_workdir)
  assert accuracy == pytest.approx(np.mean(out['labels'] == labels))
  # `gan_jax.evaluate --metrics=accuracy` reports the same share, beside a sample metric.
  result = subprocess.run(
      [sys.executable, '-m', 'gan_jax.evaluate', f'--workdir={trained_workdir}',
       '--metrics=proxy,accuracy', '--num_samples=100', f'--output={tmp_path / "e.json"}',
       f'--cache_dir={tmp_path / "cache"}'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(tmp_path / 'e.json', encoding='utf-8') as f:
    record = json.load(f)
  assert record['results']['accuracy'] == pytest.approx(np.mean(out['labels'] == labels))
  assert 'proxy_fd' in record['results']
  assert record['protocol']['accuracy']['split'] == 'test'
  assert record['protocol']['accuracy']['num_examples'] == 450
  assert record['protocol']['metrics'] == ['proxy', 'accuracy']
  # The predictions never replace the images they were made from.
  result = subprocess.run(
      [sys.executable, '-m', 'gan_jax.classify', f'--workdir={trained_workdir}',
       f'--input={tmp_path / "in.npz"}', f'--output={tmp_path / "." / "in.npz"}'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2 and 'is the --input file' in result.stderr, result.stderr
  np.testing.assert_array_equal(np.load(tmp_path / 'in.npz')['images'], images)


def test_evaluate_accuracy_needs_class_logits_and_says_so_before_loading(tmp_path):
  workdir = str(tmp_path / 'run')
  workdir_lib.prepare(dcgan_digits.get_config('smoke'), workdir)  # no checkpoint
  with pytest.raises(errors.ConfigError, match='classifier head'):
    evaluate.evaluate(workdir, metrics='accuracy')
  with pytest.raises(errors.ConfigError, match='empty'):
    evaluate.evaluate(workdir, metrics=' , ')


def test_evaluate_names_the_flag_of_an_unknown_split_before_loading(tmp_path):
  workdir = str(tmp_path / 'run')
  workdir_lib.prepare(semi_supervised_digits.get_config('smoke'), workdir)  # no checkpoint
  with pytest.raises(errors.ConfigError, match=r"--accuracy_split='validation'.*'test'"):
    evaluate.evaluate(workdir, metrics='accuracy', accuracy_split='validation')
  with pytest.raises(errors.ConfigError, match=r"--reference_split='valid'.*'train'"):
    evaluate.evaluate(workdir, metrics='proxy', reference_split='valid')


@pytest.mark.parametrize('flag,expected', [(None, 'train'), ('test', 'test')])
def test_evaluate_classifies_the_run_s_accuracy_split_unless_told(tmp_path, monkeypatch, flag,
                                                                  expected):
  # As the evaluations during training do (config.eval.accuracy_split).
  config = semi_supervised_digits.get_config('smoke')
  config.eval.accuracy_split = 'train'
  workdir = str(tmp_path / 'run')
  workdir_lib.prepare(config, workdir)
  seen = {}

  def accuracy_on_split(config, classify_fn, *, split):
    seen['split'] = split
    return dict(step=classify_fn.step, accuracy=0.5, split=split, num_examples=10)
  classify_fn = lambda images: None
  classify_fn.step = 3
  monkeypatch.setattr(workdir_lib, 'restore_state',
                      lambda workdir, step=None, best=False: (config, None, 3))
  monkeypatch.setattr(classify, 'classifier_from_state', lambda *args: classify_fn)
  monkeypatch.setattr(classify, 'accuracy_on_split', accuracy_on_split)
  record = evaluate.evaluate(workdir, metrics='accuracy', accuracy_split=flag,
                             output=str(tmp_path / 'e.json'))
  assert seen['split'] == expected and record['protocol']['accuracy']['split'] == expected


def test_an_acgan_discriminator_classifies(tmp_path):
  # ACGAN's D has class logits beside its real-vs-fake logit and reads no labels.
  config = cgan_digits.get_config('smoke')
  config.model.d_cond = 'acgan'
  config.loss.aux_weight = 1.0
  config.train.num_steps = 2
  workdir = str(tmp_path / 'acgan')
  train.train_and_evaluate(config, workdir)
  images, labels = data_lib.load_eval_data(
      config.data, data_shape=models.data_shape(config.model), split='test', num_examples=40,
      labels=True)
  _, classify_fn = classify.load_classifier(workdir)
  probs = classify_fn(images)
  assert probs.shape == (40, 10) and classify_fn.step == 2
  # The class logits D gives in training (with the labels it is trained with).
  _, state, _ = workdir_lib.restore_state(workdir)
  _, discriminator = models.build(config.model)
  _, extras = discriminator.apply(
      {'params': state.d_params, 'batch_stats': state.d_batch_stats}, images, labels,
      train=False, mutable=['intermediates'])
  logits = np.asarray(extras['intermediates']['class_logits'][0], np.float64)
  expected = np.exp(logits - logits.max(axis=1, keepdims=True))
  np.testing.assert_allclose(probs, expected / expected.sum(axis=1, keepdims=True), rtol=1e-5,
                             atol=1e-6)
  result = classify.split_accuracy(workdir, num_examples=40)
  assert result['accuracy'] == pytest.approx(np.mean(probs.argmax(axis=1) == labels))


def test_evaluate_restores_one_checkpoint_for_samples_and_accuracy(tmp_path, monkeypatch):
  # A run training in the workdir deletes old checkpoints (train.max_to_keep): evaluate
  # must score G and classify with D of the checkpoint it restored, not restore the step
  # again once the samples are scored (it failed with 'No checkpoint for step N').
  config = semi_supervised_digits.get_config('smoke')
  config.train.num_steps = 2
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  restore, calls = workdir_lib.restore_state, []

  def restore_then_rotate(*args, **kwargs):
    calls.append(args)
    restored = restore(*args, **kwargs)
    shutil.rmtree(os.path.join(workdir, workdir_lib.CHECKPOINTS, str(restored[2])))
    return restored
  monkeypatch.setattr(workdir_lib, 'restore_state', restore_then_rotate)
  record = evaluate.evaluate(workdir, metrics='proxy,accuracy', num_samples=100,
                             output=str(tmp_path / 'e.json'), cache_dir=str(tmp_path / 'cache'))
  assert len(calls) == 1 and record['step'] == 2
  assert {'proxy_fd', 'accuracy'} <= set(record['results'])
  assert 0 <= record['results']['accuracy'] <= 1


def test_accuracy_is_tracked_during_training(tmp_path):
  # `config.eval.metrics='accuracy'` logs the test accuracy of D at every evaluation,
  # the number `gan_jax.evaluate --metrics=accuracy` gives for the same checkpoint.
  config = semi_supervised_digits.get_config('smoke')
  config.eval.metrics = 'accuracy'
  config.eval.every = 2
  config.train.checkpoint_every = 2
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, 'eval.jsonl'), encoding='utf-8') as f:
    rows = [json.loads(line) for line in f]
  steps = list(range(2, config.train.num_steps + 1, 2))
  assert [row['step'] for row in rows] == steps and all(set(row) == {'step', 'accuracy'}
                                                          for row in rows)
  for row in rows:
    assert row['accuracy'] == pytest.approx(classify.test_accuracy(workdir, step=row['step']))
  assert not os.path.exists(os.path.join(workdir, 'best'))  # no FID-like metric to rank by


def test_accuracy_during_training_needs_class_logits():
  config = semi_supervised_digits.get_config('smoke')
  config.eval.metrics = 'proxy,accuracy'
  config_check.validate(config)
  config.eval.accuracy_split = 'validation'
  with pytest.raises(errors.ConfigError, match=r"config.eval.accuracy_split='validation'.*'test'"):
    config_check.validate(config)
  config = dcgan_digits.get_config('smoke')
  config.eval.metrics = 'accuracy'
  with pytest.raises(errors.ConfigError, match=r"config.eval.metrics has 'accuracy'.*classifier"):
    config_check.validate(config)
  # An image folder has no held-out split: 'test' would be its training images.
  config = semi_supervised_digits.get_config('smoke')
  config.eval.metrics = 'accuracy'
  config.data.source, config.data.path = 'image_folder', '/data/digits'
  with pytest.raises(errors.ConfigError, match=r"accuracy_split='test': an image folder has no "
                                               r'held-out split') as error:
    config_check.validate(config)
  assert 'python -m gan_jax.classify --workdir=W --input=held_out.npz' in str(error.value)
