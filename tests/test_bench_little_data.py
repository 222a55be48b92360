"""Tests of the little-data benchmark harness (`gan_jax.bench.little_data`)."""

import json
import os

import jax
import numpy as np
import pytest

from configs import dcgan_digits
from gan_jax import data
from gan_jax import errors
from gan_jax import metrics
from gan_jax import models
from gan_jax import sample
from gan_jax import workdir as workdir_lib
from gan_jax.bench import little_data as bench
from gan_jax.bench import memorisation
from gan_jax.bench import overrides
from gan_jax.data import digits


def _trial(seed, fd, confident, kl, seconds=10.0, seen_vs_unseen=0.9, unseen_vs_fake=0.4,
           copy=0.1):
  return {'seed': seed, 'step': 6, 'train_seconds': seconds, 'proxy_fd': fd,
          'proxy_confident': confident, 'proxy_coverage_kl': kl, 'copy_fd': copy,
          'd_seen_vs_unseen': seen_vs_unseen, 'd_unseen_vs_fake': unseen_vs_fake}


def test_summarize_reports_mean_std_and_the_worst_seed_of_each_metric():
  trials = [_trial(4, 1.0, 0.5, 0.1, 10.0), _trial(5, 3.0, 0.7, 0.05, 14.0),
            _trial(6, 2.0, 0.6, 0.2, 12.0)]
  summary = bench.summarize(trials)
  # FD 1, 3, 2: mean 2, sample std sqrt(((-1)^2 + 1^2 + 0) / 2) = 1; worst = highest.
  assert summary['proxy_fd'] == {'mean': pytest.approx(2.0), 'std': pytest.approx(1.0),
                                 'worst': 3.0, 'worst_seed': 5}
  # The worst confident share is the lowest one.
  assert summary['proxy_confident']['worst'] == 0.5
  assert summary['proxy_confident']['worst_seed'] == 4
  assert summary['proxy_coverage_kl']['worst_seed'] == 6
  assert summary['train_seconds']['worst'] == 14.0


def test_one_trial_has_no_std():
  summary = bench.summarize([_trial(0, 2.5, 0.6, 0.1)])
  assert summary['proxy_fd'] == {'mean': 2.5, 'std': None, 'worst': 2.5, 'worst_seed': 0}


def test_fd_change_compares_with_the_same_fraction_without_augmentation():
  rows = [
      {'fraction': 0.1, 'policy': '', 'summary': {'proxy_fd': {'mean': 8.0}}},
      {'fraction': 0.1, 'policy': 'translation', 'summary': {'proxy_fd': {'mean': 6.0}}},
      {'fraction': 0.25, 'policy': 'translation', 'summary': {'proxy_fd': {'mean': 5.0}}},
  ]
  # 6 / 8 - 1 = -25%; the 25% row has no un-augmented partner.
  assert bench.fd_changes(rows) == {1: pytest.approx(-0.25)}
  # A second un-augmented row (e.g. zCR alone) does not replace the first as the base.
  rows.append({'fraction': 0.1, 'policy': '', 'summary': {'proxy_fd': {'mean': 4.0}}})
  assert bench.fd_changes(rows) == {1: pytest.approx(-0.25)}


def test_examples_for_takes_the_floor_of_the_share_of_the_train_split():
  assert bench.examples_for(0.1) == 134      # 1,347 x 0.1 = 134.7
  assert bench.examples_for(0.25) == 336     # 1,347 x 0.25 = 336.75
  assert bench.examples_for(0.1) == dcgan_digits.FEW_EXAMPLES
  with pytest.raises(errors.ConfigError, match='--fractions'):
    bench.examples_for(0.0)
  with pytest.raises(errors.ConfigError, match='at least 10'):
    bench.examples_for(0.005)


def test_load_config_rejects_non_digits_configs():
  with pytest.raises(errors.ConfigError, match="data.source='digits'"):
    bench.load_config('toy_ring')


def test_few_variants_differ_only_in_the_augmentation():
  few, noaug = dcgan_digits.get_config('few'), dcgan_digits.get_config('few,noaug')
  assert few.data.train_examples == noaug.data.train_examples == dcgan_digits.FEW_EXAMPLES
  assert few.augment.policy and not noaug.augment.policy
  few.augment.policy = noaug.augment.policy
  few.loss.bcr_real_weight = noaug.loss.bcr_real_weight
  few.loss.bcr_fake_weight = noaug.loss.bcr_fake_weight
  assert few.to_dict() == noaug.to_dict()


def test_harness_reports_the_worse_seed_as_the_worst(tmp_path, monkeypatch):
  # Seed 1 is the worse one on every metric; the trials are faked (no training).
  fake = {0: (2.0, 0.8, 0.01, 10.0, 0.7, 0.6), 1: (5.0, 0.4, 0.3, 10.0, 0.95, 0.3)}
  monkeypatch.setattr(bench, 'run_trial', lambda config, *, seed, workdir, num_samples: _trial(
      seed, *fake[seed]))
  result = bench.run_benchmark(['dcgan_digits:few'], fractions=(0.1,), trials=2,
                               out_dir=str(tmp_path), log=lambda line: None)
  saved = json.loads((tmp_path / 'little_data.json').read_text())
  assert saved == json.loads(json.dumps(result))
  (row,) = saved['rows']
  assert [t['seed'] for t in row['trials']] == [0, 1]
  assert row['summary']['proxy_fd']['worst_seed'] == 1
  assert row['summary']['proxy_fd']['worst'] == 5.0
  assert row['summary']['proxy_confident']['worst'] == 0.4
  # More memorisation is worse: the higher seen-vs-unseen AUC, the lower unseen-vs-fake.
  assert row['summary']['d_seen_vs_unseen']['worst'] == 0.95
  assert row['summary']['d_unseen_vs_fake']['worst'] == 0.3
  assert row['summary']['d_unseen_vs_fake']['worst_seed'] == 1
  table = (tmp_path / 'little_data.md').read_text()
  assert table.startswith(saved['table'])  # then the line naming the machine
  assert table[len(saved['table']):].strip().startswith(f"Machine: {saved['machine']['cpu']}, ")
  assert '3.500 ± 2.121 (worst 5.000, seed 1)' in table  # FD mean 3.5, std 3 / sqrt(2)
  assert '0.600 ± 0.283 (worst 0.400, seed 1)' in table


def test_smoke_run_trains_scores_and_writes_outputs(tmp_path, monkeypatch):
  monkeypatch.setenv('GAN_JAX_CACHE_DIR', str(tmp_path / 'cache'))
  result = bench.run_benchmark(['dcgan_digits:few,smoke', 'dcgan_digits:few,noaug,smoke'],
                               fractions=(0.1,), trials=1, first_seed=3,
                               out_dir=str(tmp_path / 'out'), num_samples=50,
                               keep_workdirs=True, log=lambda line: None)
  saved = json.loads((tmp_path / 'out' / 'little_data.json').read_text())
  assert set(saved) >= {'benchmark', 'protocol', 'command', 'machine', 'rows', 'table',
                        'fd_change'}
  assert saved['machine']['cpu_count'] >= 1
  aug, plain = saved['rows']
  assert aug['train_examples'] == plain['train_examples'] == 134
  assert aug['policy'] and plain['policy'] == ''
  for row in (aug, plain):
    (trial,) = row['trials']
    assert trial['seed'] == 3 and trial['step'] == row['num_steps']
    # The FD's reference: as many 'train' digits as samples (all 1,347 from 1,347 up).
    assert trial['num_samples'] == trial['num_reference'] == 50
    assert trial['proxy_fd'] >= 0 and 0 <= trial['proxy_confident'] <= 1
    assert 0 <= trial['d_seen_vs_unseen'] <= 1 and 0 <= trial['d_unseen_vs_fake'] <= 1
  # Both configs train on the same seed's subset, so a copy of it scores the same.
  assert aug['trials'][0]['copy_fd'] == plain['trials'][0]['copy_fd'] > 0
  assert saved['fd_change'] == {'0': pytest.approx(
      aug['summary']['proxy_fd']['mean'] / plain['summary']['proxy_fd']['mean'] - 1)}
  assert '`dcgan_digits:few,smoke`' in result['table']
  assert '| proxy FD (50 samples) | FD vs no aug | FD of a copy of its digits |' in result['table']
  # The un-augmented run's memorisation statistics, recomputed from its D directly.
  workdir = next((tmp_path / 'out' / 'workdirs').glob('*noaug*')) / 'seed_3'
  config, state, _ = workdir_lib.restore_state(str(workdir))
  _, discriminator = models.build(config.model)
  variables = {'params': state.d_params, 'batch_stats': state.d_batch_stats}
  d = lambda x: np.asarray(discriminator.apply(variables, x, train=False)).reshape(-1)
  (seen, _), (unseen, _) = bench.memorisation_sets(config)
  _, generate = sample.load_generator(str(workdir), ema=False)
  fakes = generate(np.asarray(jax.random.normal(jax.random.key(3), (1000, config.model.z_dim))))
  pairs = lambda a, b: np.mean((a[:, None] > b[None]) + 0.5 * (a[:, None] == b[None]))
  assert plain['trials'][0]['d_seen_vs_unseen'] == pytest.approx(pairs(d(seen), d(unseen)),
                                                                 abs=1e-3)
  assert plain['trials'][0]['d_unseen_vs_fake'] == pytest.approx(pairs(d(unseen), d(fakes)),
                                                                 abs=1e-3)
  # D is scored on its own training inputs: averaging over augmentations changes the
  # scores of the augmented run and cannot change those of the un-augmented one.
  aug_workdir = next(p for p in (tmp_path / 'out' / 'workdirs').glob('*') if 'noaug' not in p.name)
  _, one_draw = memorisation.load_scorer(str(aug_workdir / 'seed_3'), draws=1)
  _, eight_draws = memorisation.load_scorer(str(aug_workdir / 'seed_3'), draws=8)
  assert np.abs(one_draw(unseen) - eight_draws(unseen)).max() > 1e-4
  _, plain_scores = memorisation.load_scorer(str(workdir), draws=8)
  np.testing.assert_allclose(plain_scores(unseen), d(unseen), rtol=1e-5, atol=1e-6)


def test_a_copy_of_the_reference_scores_near_zero_and_a_copy_of_a_tenth_does_not(tmp_path,
                                                                               monkeypatch):
  monkeypatch.setenv('GAN_JAX_CACHE_DIR', str(tmp_path / 'cache'))
  config = dcgan_digits.get_config('few')
  config.seed, config.eval.metrics, config.eval.num_samples = 7, 'proxy', 10_000
  evaluator = metrics.make_evaluator(config, data_shape=(8, 8, 1))
  # The reference at 10,000 samples is the whole 'train' split: drawing from it is
  # sampling the reference distribution itself (FD of order 1 / samples).
  train = digits.digits_images('train', size=(8, 8))
  assert len(train) == 1347
  assert bench.copy_fd(evaluator, train, num_samples=10_000, seed=0) < 0.01
  # A tenth of it misses most of the split's variety: far from zero, and the draws
  # are seeded.
  (seen, _), _ = bench.memorisation_sets(config)
  tenth = bench.copy_fd(evaluator, seen, num_samples=10_000, seed=0)
  assert tenth > 0.05
  assert bench.copy_fd(evaluator, seen, num_samples=10_000, seed=0) == tenth
  # One digit repeated is as far as a generator that collapsed onto it.
  assert bench.copy_fd(evaluator, seen[:1], num_samples=10_000, seed=0) > 10 * tenth


def test_memorisation_sets_are_the_digits_the_pipeline_trains_on_and_the_test_split():
  config = dcgan_digits.get_config('few')
  config.seed = 7
  (seen, seen_labels), (unseen, unseen_labels) = bench.memorisation_sets(config)
  assert seen.shape == (dcgan_digits.FEW_EXAMPLES, 8, 8, 1) and unseen.shape == (450, 8, 8, 1)
  counts = np.bincount(seen_labels, minlength=10)
  assert counts.sum() == 134 and counts.min() >= 13 and counts.max() <= 14  # class-balanced
  np.testing.assert_array_equal(unseen, digits.digits_images('test', size=(8, 8)))
  np.testing.assert_array_equal(unseen_labels, data.digits_split('test')[1])
  # One epoch of the training iterator holds exactly these images (in another order).
  iterator = data.create_train_iterator(config.data, data_shape=(8, 8, 1),
                                        batch_size=dcgan_digits.FEW_EXAMPLES, seed=7)
  epoch = np.asarray(next(iter(iterator))['images'])
  key = lambda images: sorted(map(bytes, images.reshape(len(images), -1)))
  assert key(epoch) == key(seen)


def test_overrides_reach_every_trial_and_are_recorded(tmp_path, monkeypatch):
  seen = []

  def fake_trial(config, *, seed, workdir, num_samples):
    seen.append((config.augment.policy, config.augment.cutout_ratio,
                 config.data.train_examples, os.path.basename(os.path.dirname(workdir))))
    return _trial(seed, 1.0, 0.5, 0.1)

  monkeypatch.setattr(bench, 'run_trial', fake_trial)
  pairs = overrides.parse(['augment.cutout_ratio=0.25'])
  result = bench.run_benchmark(['dcgan_digits:few', 'dcgan_digits:few,noaug'], fractions=(0.1,),
                               trials=1, out_dir=str(tmp_path), overrides=pairs,
                               keep_workdirs=True, log=lambda line: None)
  (aug_policy, aug_ratio, aug_n, aug_dir), (plain_policy, plain_ratio, _, plain_dir) = seen
  assert aug_policy and plain_policy == ''
  assert aug_ratio == plain_ratio == 0.25 and aug_n == 134
  # Kept workdirs carry the overrides' tag, so they never resume a run without them.
  assert aug_dir.endswith(overrides.slug(pairs)) and plain_dir.endswith(overrides.slug(pairs))
  assert [row['overrides'] for row in result['rows']] == ['augment.cutout_ratio=0.25'] * 2
  assert '`dcgan_digits:few` with `augment.cutout_ratio=0.25`' in result['table']
  with pytest.raises(errors.ConfigError, match="augment has no field 'cutout'"):
    bench.run_benchmark(['dcgan_digits:few'], fractions=(0.1,), trials=1,
                        out_dir=str(tmp_path), overrides=overrides.parse(['augment.cutout=1']),
                        log=lambda line: None)


def test_fractions_must_name_at_least_one_share():
  assert bench._parse_fractions('0.1, 0.25') == (0.1, 0.25)  # pylint: disable=protected-access
  for bad in ('', ',', 'a'):
    with pytest.raises(errors.ConfigError, match='--fractions'):
      bench._parse_fractions(bad)  # pylint: disable=protected-access


def test_an_ada_trial_records_the_probability_its_run_ended_with(tmp_path, monkeypatch):
  monkeypatch.setenv('GAN_JAX_CACHE_DIR', str(tmp_path / 'cache'))
  config = bench.load_config('dcgan_digits:few,smoke')
  config.augment.ada_target, config.augment.ada_interval = 0.6, 1
  config.augment.ada_kimg = 0.05  # 16 images per D update: p moves by 0.32 each time
  workdir = str(tmp_path / 'run')
  record = bench.run_trial(config, seed=3, workdir=workdir, num_samples=50)
  _, state, _ = workdir_lib.restore_state(workdir)
  assert record['ada_p'] == pytest.approx(float(state.d_batch_stats['ada']['p']))
  assert min(abs(record['ada_p'] - v) for v in (0, 0.32, 0.64, 0.96, 1)) < 1e-5  # steps of 0.32
  rows = [{'config': 'dcgan_digits:few', 'fraction': 0.1, 'train_examples': 134,
           'policy': 'cutout', 'num_steps': 6,
           'trials': [dict(_trial(0, 0.2, 0.5, 0.03), ada_p=0.81),
                      dict(_trial(1, 0.3, 0.5, 0.03), ada_p=0.84)]}]
  rows[0]['summary'] = bench.summarize(rows[0]['trials'])
  assert '| cutout (ADA, final p 0.81-0.84) |' in bench.format_table(rows)


@pytest.mark.parametrize('override,message', [
    ('data.split=test', r"trains on the digits 'train' split, got data.split='test'"),
    ('data.source=toy', r"trains on data.source='toy'; the little-data benchmark needs"),
])
def test_an_override_off_the_digits_train_split_is_refused_before_any_training(
    tmp_path, monkeypatch, override, message):
  monkeypatch.setattr(bench, 'run_trial', lambda *a, **k: pytest.fail('trained'))
  out = tmp_path / 'out'
  with pytest.raises(errors.ConfigError, match=message):
    bench.run_benchmark(['dcgan_digits:few'], fractions=(0.1,), trials=1, out_dir=str(out),
                        overrides=overrides.parse([override]), log=lambda line: None)
  assert not out.exists()


def test_the_same_command_again_continues_its_report(tmp_path, monkeypatch):
  trained = []

  def fake_trial(config, *, seed, workdir, num_samples):
    if seed == 1 and 'stopped' not in trained:
      trained.append('stopped')
      raise KeyboardInterrupt
    trained.append(seed)
    return _trial(seed, 1.0 + seed, 0.5, 0.1)

  monkeypatch.setattr(bench, 'run_trial', fake_trial)
  run = lambda: bench.run_benchmark(['dcgan_digits:few'], fractions=(0.1,), trials=2,
                                    out_dir=str(tmp_path), command='python -m x --trials=2',
                                    log=lambda line: None)
  with pytest.raises(errors.Stopped):
    run()
  result = run()
  assert trained == [0, 'stopped', 1]
  (row,) = result['rows']
  assert [t['proxy_fd'] for t in row['trials']] == [1.0, 2.0]


def test_fractions_that_train_on_the_same_digits_are_refused(tmp_path, monkeypatch):
  monkeypatch.setattr(bench, 'run_trial', lambda *a, **k: pytest.fail('trained'))
  for fractions in ((0.1, 0.1), (0.1, 0.0995)):
    with pytest.raises(errors.ConfigError, match=r'--fractions 0.1 and 0.(1|0995) both train '
                       r'on 134 digits'):
      bench.run_benchmark(['dcgan_digits:few'], fractions=fractions, trials=1,
                          out_dir=str(tmp_path / 'out'), log=lambda line: None)
  assert not (tmp_path / 'out').exists()
