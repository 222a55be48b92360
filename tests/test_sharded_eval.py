"""Tests of evaluation split over devices and processes (exchange.py, sharded.py, sampling.py,
the evaluator and the reference cache).

Processes are simulated by threads (`eval_fakes.simulate_processes`): exchange's
byte primitives meet at a barrier, so every collective runs as across P
processes, in seconds; tests/test_multiprocess_eval.py runs the evaluator in
real JAX processes. Inception is replaced by a counting random projection
(`eval_fakes.CountingExtractor`), sharded over the devices it is given.
"""

import jax
import numpy as np
import pytest

from gan_jax import checkpoint
from gan_jax import metrics
from gan_jax.metrics import cache
from gan_jax.metrics import digits_judge
from gan_jax.metrics import exchange
from gan_jax.metrics import inception
from gan_jax.metrics import sampling
from gan_jax.metrics import sharded
from gan_jax.metrics import stats

import eval_fakes

ALL = 'proxy,fid,is,kid,pr,intra_fid,cas'


@pytest.fixture(scope='module')
def reference():
  digits_judge.fitted_judge()  # fitted once, before any thread needs it
  return eval_fakes.reference_digits()


@pytest.fixture
def extractor(monkeypatch):
  fake = eval_fakes.CountingExtractor()
  monkeypatch.setattr(inception, 'extract_features', fake)
  return fake


def _evaluator(reference, extractor, cache_dir, *, num_samples=120, **kwargs):
  return metrics.make_evaluator(
      eval_fakes.config(ALL, num_samples=num_samples), data_shape=eval_fakes.SHAPE,
      cache_dir=cache_dir, inception_variables=extractor.variables,
      load_eval_data=eval_fakes.Loader(*reference), **kwargs)


def _assert_close(got, want, rel=1e-6):
  assert set(got) == set(want)
  for key in want:
    assert got[key] == pytest.approx(want[key], rel=rel, abs=1e-12), key


def test_latents_of_a_share_are_rows_of_the_global_set():
  whole = sampling.latents(3, 2500, 4)
  np.testing.assert_array_equal(sampling.latents(3, 10, 4), whole[:10])
  for start, num in [(0, 7), (990, 25), (1000, 1000), (2499, 1), (5, 0)]:
    np.testing.assert_array_equal(sampling.latents(3, num, 4, start=start),
                                  whole[start:start + num])


def test_process_shares_are_contiguous_and_balanced():
  assert [exchange.process_share(10, index=i, count=3) for i in range(3)] == [
      (0, 3), (3, 6), (6, 10)]
  assert [exchange.process_share(2, index=i, count=4) for i in range(4)] == [
      (0, 0), (0, 1), (1, 1), (1, 2)]
  assert exchange.process_share(7) == (0, 7)  # one process: everything


def test_every_process_makes_the_same_calls_of_its_own_rows():
  calls = {}

  def generator(index):
    def generate(z, labels):
      calls.setdefault(index, []).append((z.shape, labels.tolist()))
      return z[:, :2] + 10.0 * labels[:, None]
    return generate

  kwargs = dict(seed=0, num_samples=25, z_dim=3, batch_size=4, num_classes=10)
  whole = sampling.generate_samples(generator('all'), **kwargs)
  shares = [sampling.generate_samples(generator(i), process_index=i, process_count=3, **kwargs)
            for i in range(3)]
  np.testing.assert_array_equal(np.concatenate(shares), whole)
  # Shares of 8, 8 and 9 rows: three calls of 4 latents each on every process.
  assert all([shape for shape, _ in calls[i]] == [(4, 3)] * 3 for i in range(3))
  assert [labels for _, labels in calls[2]] == [[6, 7, 8, 9], [0, 1, 2, 3], [4, 0, 0, 0]]
  np.testing.assert_allclose(whole - sampling.latents(0, 25, 3)[:, :2],
                             np.repeat(10.0 * (np.arange(25) % 10)[:, None], 2, axis=1),
                             atol=1e-5)


def test_sharded_moments_and_inception_score_match_the_whole_set(monkeypatch):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((50, 5)) * [1, 2, 3, 4, 5] + 100.0  # a large mean: no cancellation
  logits = 3 * rng.standard_normal((50, 7))

  def process(index):
    lo, hi = exchange.process_share(50)
    assert index == exchange.process_index()
    return (sharded.feature_statistics(x[lo:hi]),
            sharded.inception_score(logits[lo:hi], start=lo, num_rows=50, splits=10))

  results = eval_fakes.simulate_processes(monkeypatch, 3, process)
  for (mu, sigma), score in results:
    np.testing.assert_allclose(mu, x.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), rtol=1e-11)
    np.testing.assert_allclose(score, stats.inception_score(logits, splits=10), rtol=1e-12)
  assert results[0][1] == results[1][1] == results[2][1]  # the same bits everywhere


def test_sharded_kid_and_precision_recall_match_the_whole_set(monkeypatch):
  rng = np.random.default_rng(1)
  real = rng.standard_normal((60, 4)).astype(np.float32)
  fake = (rng.standard_normal((47, 4)) * 1.3 + 0.4).astype(np.float32)
  block = stats.pr_block(len(real), len(fake), 16)

  def process(_):
    lo, hi = exchange.process_share(len(fake))
    radii = sharded.real_radii(real, k=3, block=block)
    return (sharded.kernel_inception_distance(real, fake, subset_size=20, num_subsets=7, seed=1),
            sharded.precision_recall(real, radii, fake[lo:hi], fake, k=3, block=block))

  kid = stats.kernel_inception_distance(real, fake, subset_size=20, num_subsets=7, seed=1)
  pr = stats.precision_recall(real, fake, block_size=16)
  assert 0 < pr[0] < 1 and 0 < pr[1] < 1
  for got_kid, got_pr in eval_fakes.simulate_processes(monkeypatch, 3, process):
    np.testing.assert_allclose(got_kid, kid, rtol=1e-9)
    assert got_pr == pr


@pytest.mark.parametrize('num_fake', [47, 2])
def test_sharded_density_coverage_match_the_whole_set(monkeypatch, num_fake):
  # With 2 fake rows over 3 processes one process holds none.
  rng = np.random.default_rng(2)
  real = rng.standard_normal((60, 4)).astype(np.float32)
  fake = (rng.standard_normal((num_fake, 4)) * 1.3 + 0.4).astype(np.float32)
  block = stats.pr_block(len(real), len(fake), 16)

  def process(_):
    lo, hi = exchange.process_share(len(fake))
    radii = sharded.real_radii(real, k=5, block=block)
    return sharded.density_coverage(real, radii, fake[lo:hi], num_fake=len(fake), k=5,
                                    block=block)

  want = stats.density_coverage(real, fake, block_size=16)
  assert want[0] > 0 and 0 < want[1] < 1
  for got in eval_fakes.simulate_processes(monkeypatch, 3, process):
    assert got == want


def test_eight_devices_and_one_give_the_same_metrics(reference, extractor, tmp_path):
  generate = eval_fakes.RowGenerator(*reference, seed=0, num_samples=120, shift=1,
                                         offset=0.3)
  devices = jax.local_devices()
  assert len(devices) == 8
  eight = _evaluator(reference, extractor, tmp_path / 'a')(generate, seed=0)
  assert set(extractor.devices_seen) == {8}
  one = _evaluator(reference, extractor, tmp_path / 'b', devices=devices[:1])(generate, seed=0)
  assert set(extractor.devices_seen) == {8, 1}
  assert eight['fid'] > 0.1 and eight['intra_fid'] > 0.1 and 0 < eight['precision'] < 1
  _assert_close(one, eight)


def test_simulated_processes_give_the_same_metrics_and_embed_only_their_share(
    reference, extractor, tmp_path, monkeypatch):
  generate = eval_fakes.RowGenerator(*reference, seed=0, num_samples=121, shift=1,
                                         offset=0.3)
  alone = _evaluator(reference, extractor, tmp_path / 'one', num_samples=121).run(
      generate, seed=0)
  assert extractor.counts == {0: 120 + 121}
  extractor.counts.clear()

  def process(_):
    return _evaluator(reference, extractor, tmp_path / 'three', num_samples=121).run(
        generate, seed=0)

  together = eval_fakes.simulate_processes(monkeypatch, 3, process)
  # 120 reference images: 40 each; 121 samples: rows 0-39, 40-79, 80-120.
  assert extractor.counts == {0: 40 + 40, 1: 40 + 40, 2: 40 + 41}
  for run in together:
    assert run == together[0]  # identical on every process
  _assert_close(together[0]['results'], alone['results'])
  for metric in ('intra_fid', 'cas'):
    np.testing.assert_allclose(together[0]['per_class'][metric], alone['per_class'][metric],
                               rtol=1e-6)


def test_the_reference_cache_is_agreed_between_processes(reference, tmp_path, monkeypatch):
  images, _ = reference
  embedded, writers = [], []
  save_npz = cache.save_npz

  def extract(x):
    embedded.append((exchange.process_index(), len(x)))
    return x.reshape(len(x), -1)[:, :6]

  def recording_save(path, key, arrays):
    writers.append((exchange.process_index(), str(path)))
    save_npz(path, key, arrays)

  monkeypatch.setattr(cache, 'save_npz', recording_save)
  config = eval_fakes.config('fid')

  def features(dirs):
    def process(index):
      return metrics.reference_features(
          config.data, data_shape=eval_fakes.SHAPE, split='train', num_examples=120,
          extractor_id={'v': 1}, extract=extract, cache_dir=dirs[index],
          load_eval_data=eval_fakes.Loader(*reference))['features']
    return eval_fakes.simulate_processes(monkeypatch, 2, process)

  shared = [tmp_path / 'shared'] * 2
  first = features(shared)  # nobody has it: each embeds its half, process 0 writes
  assert sorted(embedded) == [(0, 60), (1, 60)] and [w[0] for w in writers] == [0]
  np.testing.assert_array_equal(first[0], images.reshape(120, -1)[:, :6])
  np.testing.assert_array_equal(first[1], first[0])
  features(shared)  # everybody has it
  own = [tmp_path / 'shared', tmp_path / 'empty']
  broadcast = features(own)  # only process 0 has it: it sends its copy
  assert len(embedded) == 2 and len(writers) == 1
  np.testing.assert_array_equal(broadcast[1], first[0])
  assert not (tmp_path / 'empty').exists()  # process 1 never writes
  features([tmp_path / 'new', tmp_path / 'empty'])  # nobody has it: computed again
  assert len(embedded) == 4 and len(writers) == 2


def test_the_summary_of_an_eval_line_says_the_image_counts_split_and_resizer(
    reference, extractor, tmp_path):
  # 115 reference images, row j of class j % 10: classes 0-4 have 12, 5-9 have 11;
  # 125 samples cycled over the labels: 13 of labels 0-4, 12 of 5-9.
  evaluator = metrics.make_evaluator(
      eval_fakes.config('proxy,fid,intra_fid', num_samples=125, num_reference=115),
      data_shape=eval_fakes.SHAPE, cache_dir=tmp_path,
      inception_variables=extractor.variables, load_eval_data=eval_fakes.Loader(*reference))
  summary = evaluator.summary
  assert {k: summary[k] for k in evaluator.comparable} == evaluator.comparable
  assert summary['fid'] == dict(num_real=115, num_fake=125, reference_split='train',
                                resize=inception.RESIZE_METHOD)
  assert summary['intra_fid'] == dict(num_classes=10, real_per_class_range='11-12',
                                      fake_per_class_range='12-13', reference_split='train',
                                      resize=inception.RESIZE_METHOD)
  assert set(summary) == set(evaluator.comparable) | {'fid', 'intra_fid'}


def test_the_best_checkpoint_knows_which_part_of_the_comparable_protocol_each_metric_uses(
    reference, extractor, tmp_path):
  # BestCheckpoint ignores another extractor's part of the protocol; the names it
  # uses for them must be the evaluator's, or adding a metric on resume would set
  # the best checkpoint aside for nothing.
  evaluator = metrics.make_evaluator(
      eval_fakes.config('proxy,fid'), data_shape=eval_fakes.SHAPE, cache_dir=tmp_path,
      inception_variables=extractor.variables, load_eval_data=eval_fakes.Loader(*reference))
  results = evaluator(eval_fakes.RowGenerator(*reference, seed=0, num_samples=120), seed=0)
  extractors = checkpoint.BestCheckpoint._EXTRACTORS  # pylint: disable=protected-access
  assert set(extractors) == set(checkpoint.BestCheckpoint.METRICS) <= set(results)
  assert {k for k, v in evaluator.comparable.items() if isinstance(v, dict)} == set(
      extractors.values())
