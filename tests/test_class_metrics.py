"""Tests of the class-aware metrics of conditional generators (class_metrics.py, through
the evaluator): intra_fid, cas, and cycled labels for every metric.

The reference set is 12 real digits of each class (row j of class j mod 10) and
the generator returns, for sample row r with label c, digit r // 10 of class
c + shift (`eval_fakes.RowGenerator`): with shift 0 each class's samples are
exactly that class's reference images. Inception is replaced by a random
projection (`eval_fakes.CountingExtractor`).
"""

import logging

import numpy as np
import pytest
from scipy import linalg

from gan_jax import errors
from gan_jax import metrics
from gan_jax.metrics import digits_judge
from gan_jax.metrics import inception

import eval_fakes

K = eval_fakes.NUM_CLASSES


@pytest.fixture(scope='module')
def reference():
  return eval_fakes.reference_digits()


@pytest.fixture
def extractor(monkeypatch):
  fake = eval_fakes.CountingExtractor()
  monkeypatch.setattr(inception, 'extract_features', fake)
  return fake


def _evaluator(metric_names, reference, extractor, tmp_path, **kwargs):
  config = eval_fakes.config(metric_names, **kwargs)
  return metrics.make_evaluator(config, data_shape=eval_fakes.SHAPE, cache_dir=tmp_path,
                                inception_variables=extractor.variables,
                                load_eval_data=eval_fakes.Loader(*reference))


def _generator(reference, **kwargs):
  return eval_fakes.RowGenerator(*reference, seed=0, num_samples=120, **kwargs)


def _fid(a, b):
  """pytorch-fid's formula with scipy's sqrtm (an independent implementation)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  covmean = linalg.sqrtm(s1 @ s2).real
  diff = a.mean(0) - b.mean(0)
  return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_intra_fid_of_real_images_of_the_requested_class_is_zero(reference, extractor,
                                                                 tmp_path):
  evaluator = _evaluator('fid,intra_fid', reference, extractor, tmp_path)
  run = evaluator.run(_generator(reference), seed=0)
  assert set(run['results']) == {'fid', 'intra_fid'}
  # (12 images per class, 16 features: singular covariances, whose square roots
  # are exact to about 1e-8 only.)
  assert abs(run['results']['intra_fid']) < 1e-6 and abs(run['results']['fid']) < 1e-9
  assert len(run['per_class']['intra_fid']) == K
  assert max(abs(v) for v in run['per_class']['intra_fid']) < 1e-6


def test_intra_fid_of_the_wrong_class_is_the_fid_between_classes(reference, extractor,
                                                                 tmp_path):
  evaluator = _evaluator('fid,intra_fid', reference, extractor, tmp_path)
  run = evaluator.run(_generator(reference, shift=1), seed=0)
  images, labels = reference
  # The network sees images rounded to 8 bits (these digits are resized, not 8-bit).
  features = extractor.features(inception.quantize_8_bit(images))
  want = [_fid(features[labels == c], features[labels == (c + 1) % K]) for c in range(K)]
  np.testing.assert_allclose(run['per_class']['intra_fid'], want, rtol=1e-6)
  assert run['results']['intra_fid'] == pytest.approx(np.mean(want), rel=1e-6)
  assert min(want) > 0.1
  assert abs(run['results']['fid']) < 1e-9  # the same images overall, only mislabelled


def test_every_metric_samples_a_conditional_generator_with_cycled_labels(reference, extractor,
                                                                         tmp_path):
  evaluator = _evaluator('fid', reference, extractor, tmp_path)
  generate = _generator(reference)
  evaluator(generate, seed=0)
  rows = [r for call_rows, _ in generate.calls for r in call_rows]
  labels = [c for _, call_labels in generate.calls for c in call_labels]
  assert sorted(r for r in rows if r >= 0) == list(range(120))
  assert all(c == r % K for r, c in zip(rows, labels) if r >= 0)
  unconditional = _evaluator('fid', reference, extractor, tmp_path, num_classes=0)
  assert unconditional(_generator(reference, conditional=False), seed=0)['fid'] < 1e-9


def test_cas_is_the_share_classified_as_the_requested_class(reference, extractor, tmp_path):
  images, labels = reference
  judge = digits_judge.fitted_judge()
  evaluator = _evaluator('cas', reference, extractor, tmp_path)
  for shift in (0, 1):
    shown = np.concatenate([images[labels == (c + shift) % K][r // K:r // K + 1]
                            for r, c in zip(range(120), np.arange(120) % K)])
    probs = judge.probabilities(shown)
    right = probs.argmax(axis=1) == np.arange(120) % K
    run = evaluator.run(_generator(reference, shift=shift), seed=0)
    assert run['results'] == {'cas': pytest.approx(right.mean(), abs=1e-12),
                              'cas_confident': pytest.approx(
                                  (right & (probs.max(axis=1) >= 0.9)).mean(), abs=1e-12)}
    per_class = [right[np.arange(120) % K == c].mean() for c in range(K)]
    np.testing.assert_allclose(run['per_class']['cas'], per_class, atol=1e-12)
  assert run['results']['cas'] < 0.2  # shifted: the judge sees the wrong digits
  assert evaluator.protocol['cas']['num_fake_per_class'] == [12] * K


def test_intra_fid_states_its_image_counts_split_and_resize(reference, extractor, tmp_path,
                                                            caplog):
  evaluator = _evaluator('intra_fid', reference, extractor, tmp_path, num_samples=125)
  protocol = evaluator.protocol['intra_fid']
  assert protocol['num_real_per_class'] == [12] * K
  assert protocol['num_fake_per_class'] == [13] * 5 + [12] * 5
  assert protocol['reference_split'] == 'train' and 'no antialiasing' in protocol['resize']
  with caplog.at_level(logging.INFO):
    evaluator(_generator(reference), seed=0)
  line = [r.getMessage() for r in caplog.records if r.getMessage().startswith('intra-FID ')][0]
  assert "(mean over 10 classes): per class 12-13 generated vs 12 real images (digits split "\
         "'train')" in line and 'no antialiasing' in line


@pytest.mark.parametrize('metric', ['cas', 'intra_fid'])
def test_class_aware_metrics_of_an_unconditional_model_are_refused(metric, reference, extractor,
                                                                   tmp_path):
  with pytest.raises(errors.ConfigError, match=f"'{metric}' needs a class-conditional generator"):
    _evaluator(metric, reference, extractor, tmp_path, num_classes=0)


@pytest.mark.parametrize('metric', ['cas', 'intra_fid'])
def test_class_aware_metrics_of_the_semi_supervised_gan_are_refused(metric, reference,
                                                                    extractor, tmp_path):
  # Its D has 10 classes, its G none: there is no requested class to score.
  config = eval_fakes.config(metric)
  config.model.d_cond = 'semi_supervised'
  with pytest.raises(errors.ConfigError, match=f"'{metric}' needs a class-conditional generator"):
    metrics.make_evaluator(config, data_shape=eval_fakes.SHAPE, cache_dir=tmp_path,
                           inception_variables=extractor.variables,
                           load_eval_data=eval_fakes.Loader(*reference))


def test_cas_without_a_classifier_of_the_classes_is_refused(reference, extractor, tmp_path):
  config = eval_fakes.config('cas')
  config.data.source = 'image_folder'
  with pytest.raises(errors.ConfigError, match='"cas" needs a classifier.*digits'):
    metrics.make_evaluator(config, data_shape=eval_fakes.SHAPE)
  with pytest.raises(errors.ConfigError, match='num_classes=10'):
    _evaluator('cas', reference, extractor, tmp_path, num_classes=5)


def test_intra_fid_needs_two_images_of_every_class(reference, extractor, tmp_path):
  with pytest.raises(errors.ConfigError, match='num_samples=15 .*at least 20'):
    _evaluator('intra_fid', reference, extractor, tmp_path, num_samples=15)
  with pytest.raises(errors.ConfigError, match=r'classes \[5, 6, 7, 8, 9\].*num_reference'):
    _evaluator('intra_fid', reference, extractor, tmp_path, num_reference=15)
