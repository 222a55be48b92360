"""Tests of the evaluator (gan_jax.metrics.make_evaluator, evaluator.py) and the
reference-feature cache (reference.py).

Inception itself is tested in test_inception.py; here its forward pass is replaced
by a cheap fixed random feature map so the plumbing (sample generation, reference
caching, metric keys, protocol) runs in seconds. The CLI `python -m
gan_jax.evaluate` is tested in test_evaluate.py.
"""

import logging

import numpy as np
import pytest

from configs import dcgan_digits
from configs import toy_ring
from gan_jax import errors
from gan_jax import metrics
from gan_jax.data import digits as digits_lib
from gan_jax.data import toy
from gan_jax.metrics import inception
from gan_jax.metrics import inception_weights
from gan_jax.metrics import protocols


def _ring_generator(z):
  """A perfect ring sampler driven by z (z_dim >= 10)."""
  centers, std = toy.mixture('ring')
  return (centers[np.argmax(z[:, :8], axis=1)] + std * z[:, 8:10]).astype(np.float32)


def _toy_config(num_samples=800):
  config = toy_ring.get_config('smoke')
  config.model.z_dim = 10
  config.eval.metrics = 'proxy'
  config.eval.num_samples = num_samples
  return config


def test_unknown_metric_names_name_the_flag_and_the_known_ones():
  assert metrics.parse_metrics(' fid, KID ,fid') == ('fid', 'kid')
  with pytest.raises(errors.ConfigError,
                     match=r"--metrics: .*'lpips'.*known: \['proxy', 'fid', 'is', 'kid', 'pr', 'dc', "
                           r"'intra_fid', 'cas'\]"):
    metrics.parse_metrics('fid,lpips', flag='--metrics')
  with pytest.raises(errors.ConfigError, match='^--config.eval.metrics: '):
    metrics.parse_metrics('lpips')


def test_empty_metrics_are_refused():
  config = _toy_config()
  config.eval.metrics = ' , '
  with pytest.raises(errors.ConfigError, match='config.eval.metrics is empty'):
    metrics.make_evaluator(config, data_shape=(2,))


def test_toy_evaluator_perfect_and_collapsed_generators():
  evaluator = metrics.make_evaluator(_toy_config(), data_shape=(2,))
  perfect = evaluator(_ring_generator, seed=0)
  assert set(perfect) == {'modes_captured', 'high_quality', 'reverse_kl'}
  assert all(isinstance(v, float) for v in perfect.values())
  assert perfect['modes_captured'] == 8.0 and perfect['high_quality'] > 0.97
  assert perfect['reverse_kl'] < 0.02
  one_mode = lambda z: _ring_generator(np.concatenate(
      [np.eye(8)[np.full(len(z), 5)], z[:, 8:10]], axis=1))
  collapsed = evaluator(one_mode, seed=0)
  assert collapsed['modes_captured'] == 1.0
  assert collapsed['reverse_kl'] == pytest.approx(np.log(8))


def test_latents_are_seeded_and_batches_padded():
  config = _toy_config(num_samples=25)
  calls = []

  def generate(z):
    calls.append(z.shape)
    return _ring_generator(z)

  evaluator = metrics.make_evaluator(config, data_shape=(2,), batch_size=10)
  first = evaluator.generate(generate, seed=3)
  again = evaluator.generate(generate, seed=3)
  other = evaluator.generate(generate, seed=4)
  assert calls == [(10, 10)] * 9  # 25 = 10 + 10 + 5 padded to 10, three times
  np.testing.assert_array_equal(first, again)
  assert first.shape == (25, 2) and not np.array_equal(first, other)
  with pytest.raises(ValueError, match='shape'):
    evaluator.generate(lambda z: np.zeros((len(z), 3), np.float32), seed=0)


def test_inception_metrics_on_toy_data_are_refused():
  config = _toy_config()
  config.eval.metrics = 'proxy,fid'
  with pytest.raises(errors.ConfigError, match='need images'):
    metrics.make_evaluator(config, data_shape=(2,))


def test_the_proxy_of_an_image_folder_run_is_refused():
  config = dcgan_digits.get_config()
  config.data.source = 'image_folder'
  with pytest.raises(errors.ConfigError, match='digits and toy'):
    metrics.make_evaluator(config, data_shape=(8, 8, 1))


@pytest.fixture(scope='module')
def shared_cache(tmp_path_factory):
  """One cache folder for the module, so reference features are computed once."""
  return tmp_path_factory.mktemp('cache')


@pytest.fixture(scope='module')
def digits_config():
  config = dcgan_digits.get_config()
  config.model.resolution = 32  # these tests use 32x32 digits images
  config.model.z_dim = 4
  config.eval.metrics = 'proxy'
  config.eval.num_samples = 300
  return config


def _pool_generator(pool):
  """Returns pool images chosen deterministically from z."""
  def generate(z):
    index = (np.abs(z[:, 0]) * 1e6).astype(np.int64) % len(pool)
    return pool[index]
  return generate


def test_digits_proxy_prefers_digits_over_noise(digits_config, shared_cache):
  evaluator = metrics.make_evaluator(digits_config, data_shape=(32, 32, 1),
                                     cache_dir=shared_cache)
  real = evaluator(_pool_generator(digits_lib.digits_images('test', size=(32, 32))), seed=0)
  assert set(real) == {'proxy_fd', 'proxy_coverage_kl', 'proxy_confident'}
  noise = evaluator(lambda z: np.random.default_rng(0).uniform(
      -1, 1, (len(z), 32, 32, 1)).astype(np.float32), seed=0)
  assert real['proxy_fd'] * 20 < noise['proxy_fd']
  assert noise['proxy_confident'] < 0.05
  # Held-out digits are about as often confident as the (train) reference digits.
  protocol = evaluator.protocol['proxy']
  assert abs(real['proxy_confident'] - protocol['reference_confident_share']) < 0.1
  assert real['proxy_coverage_kl'] < 0.1
  assert protocol['reference']['num_examples'] == 300
  # The cache file is named by the source (no toy mixture's name for digits).
  assert len(list((shared_cache / 'reference').glob('digits-train-32x32x1-300-*.npz'))) == 1
  assert protocol['input'] == ('32x32 images averaged over equal areas to 8x8 '
                               '(digits_judge.to_digits_scale)')


def test_reference_cache_is_reused_only_for_identical_data(tmp_path):
  calls = []
  images = np.random.default_rng(0).uniform(-1, 1, (20, 8, 8, 1)).astype(np.float32)

  def loader(data_config, *, data_shape, split, num_examples):
    del data_config, split
    assert data_shape == (8, 8, 1)
    return images[:num_examples]

  def extract(x):
    calls.append(len(x))
    return x.reshape(len(x), -1)[:, :5]

  config = dcgan_digits.get_config()
  kwargs = dict(data_shape=(8, 8, 1), split='train', num_examples=20, extractor_id={'v': 1},
                extract=extract, cache_dir=tmp_path, load_eval_data=loader)
  first = metrics.reference_features(config.data, **kwargs)
  second = metrics.reference_features(config.data, **kwargs)
  assert calls == [20] and first['path'] == second['path']
  np.testing.assert_array_equal(first['sigma'], second['sigma'])
  config.data.num_workers = 4  # throughput knob: same images, same cache
  config.data.data_dir, config.data.train_examples = '/elsewhere', 5  # same images too
  metrics.reference_features(config.data, **kwargs)
  metrics.reference_features(config.data, **dict(kwargs, num_examples=30))  # all 20 again
  assert calls == [20]
  images[0, 0, 0, 0] += 0.5   # a preprocessing change shows up in the pixels
  metrics.reference_features(config.data, **kwargs)
  metrics.reference_features(config.data, **dict(kwargs, extractor_id={'v': 2}))
  metrics.reference_features(config.data, **dict(kwargs, num_examples=10))
  assert calls == [20, 20, 20, 10]
  assert len(list((tmp_path / 'reference').glob('*.npz'))) == 4


@pytest.fixture
def fake_inception(monkeypatch):
  """Replaces the network by a fixed random feature map (32-d pool3, 10 logits)."""
  rng = np.random.default_rng(0)
  weights = {}
  seen = []  # every image batch the network was given

  def extract_features(variables, images, *, quantize=False, **unused):
    del variables
    images = inception.quantize_8_bit(images) if quantize else images  # as the network
    seen.append(np.asarray(images))
    x = np.asarray(images, np.float64).reshape(len(images), -1)
    if x.shape[1] not in weights:
      weights[x.shape[1]] = rng.standard_normal((x.shape[1], 42)) / np.sqrt(x.shape[1])
    h = np.tanh(x @ weights[x.shape[1]])
    return {'pool3': h[:, :32].astype(np.float32), 'logits': 5 * h[:, 32:].astype(np.float32)}

  extract_features.inputs = seen
  monkeypatch.setattr(inception, 'extract_features', extract_features)
  return {'params': {'fc': {'kernel': np.zeros((2, 2), np.float32)}}}


def test_inception_metrics_keys_and_identical_sets(digits_config, tmp_path, fake_inception):
  from gan_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  config = digits_config.copy_and_resolve_references()
  config.eval.metrics = 'fid,is,kid,pr,dc'
  config.eval.num_samples = 64
  reference = data_lib.load_eval_data(config.data, data_shape=(32, 32, 1), split='train',
                                      num_examples=64)
  evaluator = metrics.make_evaluator(config, data_shape=(32, 32, 1), cache_dir=tmp_path,
                                     inception_variables=fake_inception)
  calls = iter(range(100))

  def replay(z):  # the reference set itself, in order, batch by batch
    start = next(calls) * len(z)
    return reference[start:start + len(z)]

  out = evaluator(replay, seed=0)
  assert set(out) == {'fid', 'is_mean', 'is_std', 'kid_mean', 'kid_std', 'precision', 'recall',
                      'density', 'coverage'}
  assert abs(out['fid']) < 1e-9 and out['precision'] == 1.0 and out['recall'] == 1.0
  assert out['coverage'] == 1.0 and out['density'] >= 1.0  # each fake is inside its own ball
  noise = evaluator(lambda z: np.random.default_rng(1).uniform(
      -1, 1, (len(z), 32, 32, 1)).astype(np.float32), seed=0)
  assert noise['fid'] > 1.0 and noise['kid_mean'] > 0 > out['kid_mean']
  assert noise['precision'] < 0.5  # (recall need not fall: noise features spread wide)
  assert noise['density'] < 0.5 and noise['coverage'] < out['coverage']
  protocol = evaluator.protocol
  assert protocol['inception']['reference']['num_examples'] == 64
  assert protocol['inception']['reference']['split'] == 'train'
  assert protocol['kid']['subset_size'] == 64 and protocol['is']['splits'] == 10
  assert protocol['dc']['k'] == 5 and protocol['dc']['num_real'] == 64


def test_values_against_other_real_images_are_not_comparable(digits_config, tmp_path,
                                                             fake_inception):
  # An image folder's files (or data.path) may change on resume with no other change:
  # the best checkpoint compared FIDs against two different sets of real images.
  config = digits_config.copy_and_resolve_references()
  config.eval.metrics, config.eval.num_samples = 'fid,proxy', 40
  from gan_jax import data as data_lib  # pylint: disable=g-import-not-at-top

  def loader(shift):
    def load(data_config, **kwargs):
      return np.clip(data_lib.load_eval_data(data_config, **kwargs) + shift, -1, 1)
    return load

  def comparable(shift):
    evaluator = metrics.make_evaluator(config, data_shape=(32, 32, 1), cache_dir=tmp_path,
                                       inception_variables=fake_inception, num_reference=30,
                                       load_eval_data=loader(shift))
    return evaluator.comparable, evaluator.protocol

  (same, protocol), (again, _), (other, other_protocol) = (
      comparable(0.0), comparable(0.0), comparable(0.5))
  assert same == again
  for name in ('inception', 'proxy'):
    assert same[name]['real'] != other[name]['real']
    assert {k: v for k, v in same[name].items() if k != 'real'} == {
        k: v for k, v in other[name].items() if k != 'real'}
    assert protocol[name]['reference']['content_sha256'][:16] == same[name]['real']
  assert (protocol['inception']['reference']['content_sha256'] !=
          other_protocol['inception']['reference']['content_sha256'])


def test_processes_with_other_reference_images_are_refused(tmp_path, monkeypatch):
  # Each process would describe (and embed) its own images.
  from gan_jax.metrics import exchange  # pylint: disable=g-import-not-at-top
  images = np.zeros((4, 8, 8, 1), np.float32)
  monkeypatch.setattr(exchange, 'process_count', lambda: 2)
  monkeypatch.setattr(exchange, 'allgather', lambda d: np.stack([d, d[::-1]]))
  with pytest.raises(errors.ConfigError, match=r'Process\(es\) \[1\] loaded other reference '
                                               'images than process 0'):
    metrics.reference_features(
        dcgan_digits.get_config().data, data_shape=(8, 8, 1), split='train', num_examples=4,
        extractor_id={'v': 1}, extract=lambda x: x.reshape(len(x), -1), cache_dir=tmp_path,
        load_eval_data=lambda data_config, **kwargs: images)


def test_fid_states_its_image_counts_split_and_resize(digits_config, tmp_path, fake_inception,
                                                      caplog):
  config = digits_config.copy_and_resolve_references()
  config.eval.metrics = 'fid'
  config.eval.num_samples = 40
  with caplog.at_level(logging.WARNING):
    evaluator = metrics.make_evaluator(config, data_shape=(32, 32, 1), cache_dir=tmp_path,
                                       inception_variables=fake_inception, num_reference=30,
                                       reference_split='test')
  assert 'Few images for FID, 40 generated and 30 real: fewer than 2048' in caplog.text
  fid = evaluator.protocol['fid']
  assert (fid['num_real'], fid['num_fake'], fid['reference_split']) == (30, 40, 'test')
  assert 'no antialiasing' in fid['resize'] and 'align_corners=False' in fid['resize']
  assert 'rank deficient' in fid['note']  # 30 and 40 images of 2048-d features
  comparable = evaluator.comparable
  assert comparable['num_fake'] == 40 and comparable['reference_split'] == 'test'
  assert comparable['inception']['num_real'] == 30
  assert comparable['inception']['weights'] == (
      evaluator.protocol['inception']['weights']['sha256'][:16])
  assert 'rounded to 8 bits' in evaluator.protocol['inception']['input']
  inception.extract_features.inputs.clear()
  with caplog.at_level(logging.INFO):
    evaluator(lambda z: np.full((len(z), 32, 32, 1), 0.3, np.float32), seed=0)
  # The network sees the nearest of the 256 levels of an 8-bit image: 0.3 -> 166.
  (fakes,) = inception.extract_features.inputs
  np.testing.assert_allclose(fakes, 166 / 127.5 - 1, rtol=0, atol=1e-7)
  line = [r.getMessage() for r in caplog.records if r.getMessage().startswith('FID ')][0]
  assert "40 generated vs 30 real images (digits split 'test')" in line
  assert 'no antialiasing' in line


def test_missing_weights_fail_when_the_evaluator_is_built(digits_config, tmp_path, monkeypatch):
  monkeypatch.delenv(inception_weights.WEIGHTS_ENV, raising=False)
  monkeypatch.setenv('GAN_JAX_CACHE_DIR', str(tmp_path / 'cache'))
  monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
  config = digits_config.copy_and_resolve_references()
  config.eval.metrics = 'fid'
  with pytest.raises(errors.MissingFileError,
                     match='fid_weights/pt_inception-2015-12-05-6726825d'):
    metrics.make_evaluator(config, data_shape=(32, 32, 1))


def test_the_small_sample_note_starts_below_2048_images_on_either_side():
  note = lambda **counts: protocols.inception_metrics(('fid',), split='train', **counts)[
      'fid'].get('note')
  assert note(num_real=2048, num_fake=50000) is None
  assert 'biased upwards' in note(num_real=2047, num_fake=50000)
  assert 'biased upwards' in note(num_real=50000, num_fake=1000)
  per_class = lambda real, fake: protocols.intra_fid(real, fake, split='train').get('note')
  assert per_class([5000, 5000], [2048, 2048]) is None
  assert 'of a class' in per_class([5000, 1300], [5000, 5000])


@pytest.mark.parametrize('metric,num_samples,num_reference,message', [
    ('is', 19, 100, r'at least 2 per split.*got 19.*>= 20'),
    ('pr', 3, 100, r'more than 3 generated and real images: got 3 generated, 100 real'),
    ('pr', 50, 3, r'got 50 generated, 3 real'),
    ('dc', 50, 5, r'more than 5 real images: got 5'),
])
def test_too_few_images_for_is_or_pr_is_refused_before_any_work(
    digits_config, tmp_path, monkeypatch, metric, num_samples, num_reference, message):
  # IS of one-sample splits is exactly 1, and PR's k-NN radii need k + 1 images: before,
  # the first scored 1.0 and the second failed with a traceback after generating.
  monkeypatch.setattr(inception_weights, 'find_weights', lambda *a, **k: pytest.fail('loaded'))
  config = digits_config.copy_and_resolve_references()
  config.eval.metrics = metric
  config.eval.num_samples = num_samples
  with pytest.raises(errors.ConfigError, match=message):
    metrics.make_evaluator(config, data_shape=(32, 32, 1), num_reference=num_reference,
                           cache_dir=tmp_path)


def test_pr_counts_are_checked_against_the_images_the_split_has(digits_config, tmp_path,
                                                                fake_inception, monkeypatch):
  # Asking for 100 reference images of a split that has 3 leaves 3.
  from gan_jax.metrics import reference  # pylint: disable=g-import-not-at-top
  config = digits_config.copy_and_resolve_references()
  config.eval.metrics, config.eval.num_samples = 'pr', 50
  loader = reference.default_loader()
  monkeypatch.setattr(reference, 'default_loader', lambda: (
      lambda data, *, num_examples, **k: loader(data, num_examples=3, **k)))
  with pytest.raises(errors.ConfigError, match='got 50 generated, 3 real'):
    metrics.make_evaluator(config, data_shape=(32, 32, 1), num_reference=100,
                           cache_dir=tmp_path, inception_variables=fake_inception)


def test_kid_on_fewer_images_than_its_subsets_says_so(digits_config, tmp_path, fake_inception,
                                                      caplog):
  config = digits_config.copy_and_resolve_references()
  config.eval.metrics, config.eval.num_samples = 'kid', 40
  with caplog.at_level(logging.WARNING):
    evaluator = metrics.make_evaluator(config, data_shape=(32, 32, 1), cache_dir=tmp_path,
                                       inception_variables=fake_inception)
  assert evaluator.protocol['kid']['subset_size'] == 40
  assert "KID: subsets of 40 images (40 generated, 40 real), not torch-fidelity's 1000" in (
      caplog.text)


def test_cas_needs_a_sample_of_every_class(tmp_path):
  from configs import cgan_digits  # pylint: disable=g-import-not-at-top
  config = cgan_digits.get_config('smoke')
  config.eval.metrics, config.eval.num_samples = 'cas', 9
  with pytest.raises(errors.ConfigError, match=r'9 samples cycled over 10 classes.*>= 10'):
    metrics.make_evaluator(config, data_shape=(8, 8, 1), cache_dir=tmp_path)
