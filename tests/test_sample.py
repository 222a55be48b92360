"""Tests of the sampling controls of `python -m gan_jax.sample` (gan_jax/sample.py)."""

import logging
import os
import types

import numpy as np
import pytest
from PIL import Image

from gan_jax import ema as ema_lib
from gan_jax import errors
from gan_jax import sample
from gan_jax.metrics import sampling
from tests.helpers import tiny_config


def test_truncated_latents_stay_inside_the_bound_and_keep_their_spread():
  z = sample.latents(0, 4000, 16, truncation=0.5)
  assert np.abs(z).max() <= 0.5
  # A normal truncated to [-0.5, 0.5]: variance 1 - 2 * 0.5 * phi(0.5) / (2 Phi(0.5) - 1)
  # = 0.08056, std 0.28383 (closed form); 64,000 entries estimate it to +-0.001.
  assert abs(z.std() - 0.28383) < 0.003
  assert abs(z.mean()) < 0.003
  plain = sample.latents(0, 4000, 16)
  assert np.abs(plain).max() > 3.0
  for bad in (0.0, -1.0, float('nan'), float('inf')):
    with pytest.raises(errors.ConfigError, match='truncation must be a finite number > 0'):
      sample.latents(0, 4, 2, truncation=bad)


def test_truncation_redraws_only_the_entries_outside_the_bound():
  plain = sample.latents(3, 1000, 8)
  for bound in (0.5, 1.0, 2.0):
    z = sample.latents(3, 1000, 8, truncation=bound)
    inside = np.abs(plain) <= bound
    np.testing.assert_array_equal(z[inside], plain[inside])
    assert np.abs(z[~inside]).max() <= bound
  # The redraws are not the next entries of the plain latents (another stream).
  more = sample.latents(3, 2000, 8)[1000:]
  z = sample.latents(3, 1000, 8, truncation=0.5)
  assert not np.any(np.isin(z[np.abs(plain) > 0.5], more))


@pytest.mark.parametrize('num_classes', [0, 10])
def test_a_seed_draws_the_samples_an_evaluation_with_that_seed_scores(num_classes):
  def generate(z, labels=None):  # a deterministic stand-in: one row per latent
    out = np.asarray(z)[:, :3] * 2.0
    return out if labels is None else out + np.asarray(labels, np.float32)[:, None]

  labels = sample.cycled_labels(1234, num_classes) if num_classes else None
  ours = sample.generate_samples(generate, z_dim=5, num_samples=1234, seed=7, batch_size=100,
                                 labels=labels)
  scored = sampling.generate_samples(generate, seed=7, num_samples=1234, z_dim=5,
                                     batch_size=500, num_classes=num_classes)
  assert ours.shape == (1234, 3)
  np.testing.assert_array_equal(ours, scored)
  other = sampling.generate_samples(generate, seed=8, num_samples=1234, z_dim=5,
                                    num_classes=num_classes)
  assert not np.allclose(ours, other)


def test_labels_cycle_over_the_requested_classes():
  np.testing.assert_array_equal(sample.cycled_labels(7, 3), [0, 1, 2, 0, 1, 2, 0])
  np.testing.assert_array_equal(sample.cycled_labels(4, 10, [3]), [3, 3, 3, 3])
  np.testing.assert_array_equal(sample.cycled_labels(5, 10, [0, 5]), [0, 5, 0, 5, 0])
  assert np.bincount(sample.cycled_labels(1000, 10)).tolist() == [100] * 10
  with pytest.raises(errors.ConfigError, match=r'\[12\]'):
    sample.cycled_labels(4, 10, [1, 12])


def test_slerp_ends_at_its_endpoints_and_keeps_the_norm_of_equal_norm_latents():
  a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
  path = sample.slerp(a, b, np.linspace(0, 1, 5))
  np.testing.assert_allclose(path[0], a, atol=1e-6)
  np.testing.assert_allclose(path[-1], b, atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(path, axis=1), 1.0, atol=1e-6)
  np.testing.assert_allclose(path[2], [np.sqrt(0.5), np.sqrt(0.5), 0.0], atol=1e-6)


@pytest.mark.parametrize('b', [[-2.0, 1e-7], [-2.0, 0.0], [-1.0, 0.3], [0.5, 3.0]])
def test_slerp_never_steps_farther_out_than_its_longer_end(b):
  # Nearly opposite latents of unequal length made the plain formula's
  # sin(omega) denominator throw a step 1e7 times farther out (2-D toy latents).
  a, b = np.array([1.0, 0.0]), np.array(b)
  path = sample.slerp(a, b, np.linspace(0, 1, 9))
  np.testing.assert_allclose(path[0], a, atol=1e-6)
  np.testing.assert_allclose(path[-1], b, atol=1e-6)
  assert np.all(np.linalg.norm(path, axis=1) <= max(np.linalg.norm(a), np.linalg.norm(b)) + 1e-6)


def test_slerp_moves_the_direction_along_the_great_circle_and_the_length_straight():
  a, b = np.array([2.0, 0.0, 0.0]), np.array([0.0, 4.0, 0.0])
  path = sample.slerp(a, b, np.array([0.0, 1 / 3, 0.5, 1.0]))
  np.testing.assert_allclose(np.linalg.norm(path, axis=1), [2.0, 8 / 3, 3.0, 4.0], atol=1e-6)
  np.testing.assert_allclose(np.degrees(np.arctan2(path[:, 1], path[:, 0])),
                             [0.0, 30.0, 45.0, 90.0], atol=1e-4)


def test_one_dimensional_latents_interpolate_straight():
  z = sample.interpolation_latents(0, 1, rows=50, steps=6)
  ends = sample.latents(0, 100, 1)
  for r in range(50):
    np.testing.assert_allclose(z[6 * r:6 * r + 6, 0],
                               np.linspace(ends[2 * r, 0], ends[2 * r + 1, 0], 6), atol=1e-5)


def test_interpolation_rows_start_and_end_at_independent_latents():
  z = sample.interpolation_latents(0, 4, rows=3, steps=5)
  ends = sample.latents(0, 6, 4)
  assert z.shape == (15, 4)
  np.testing.assert_allclose(z[0], ends[0], atol=1e-5)
  np.testing.assert_allclose(z[4], ends[1], atol=1e-5)
  np.testing.assert_allclose(z[10], ends[4], atol=1e-5)


def test_truncated_interpolations_stay_inside_the_bound():
  # Straight steps between two points of the box [-T, T]^D stay inside it; spherical
  # ones between such points can leave it by up to sqrt(2).
  z = sample.interpolation_latents(0, 128, rows=50, steps=9, truncation=0.5)
  assert np.abs(z).max() <= 0.5
  ends = sample.latents(0, 2, 128, truncation=0.5)
  np.testing.assert_allclose(z[4], (ends[0] + ends[1]) / 2, atol=1e-6)


def _flags(**values):
  base = dict(labels=[], interpolate=0, num_samples=10, seed=0, truncation=None)
  return types.SimpleNamespace(**{**base, **values})


def test_conditional_requests_cycle_classes_and_interpolate_per_class():
  config = tiny_config(**{'model.num_classes': 10})
  z, labels, columns = sample._requested(config, _flags(labels=['3', '5']))  # pylint: disable=protected-access
  assert z.shape == (10, 16) and labels.tolist() == [3, 5] * 5 and columns == 2
  # A grid has one column per class: every column holds one class.
  assert sample._requested(config, _flags())[2] == 10  # pylint: disable=protected-access
  assert sample._requested(config, _flags(labels=['4']))[2] is None  # pylint: disable=protected-access
  assert sample._requested(tiny_config(), _flags())[2] is None  # pylint: disable=protected-access
  z, labels, columns = sample._requested(config, _flags(interpolate=4))  # pylint: disable=protected-access
  assert z.shape == (40, 16) and columns == 4
  assert labels.tolist() == [c for c in range(10) for _ in range(4)]
  np.testing.assert_array_equal(z[:4], z[4:8])  # the same latent path for every class


def test_classes_outside_the_range_are_refused_for_interpolations_too():
  config = tiny_config(**{'model.num_classes': 10})
  for labels in (['12'], ['-1'], ['3', '10']):
    with pytest.raises(errors.ConfigError, match=r'--labels: classes .* outside \[0, 10\)'):
      sample._requested(config, _flags(labels=labels, interpolate=4))  # pylint: disable=protected-access


def test_labels_for_an_unconditional_run_are_refused():
  with pytest.raises(errors.ConfigError, match='--labels needs a class-conditional generator'):
    sample._requested(tiny_config(), _flags(labels=['1']))  # pylint: disable=protected-access


def test_labels_may_be_the_run_s_class_names():
  config = tiny_config(**{'model.num_classes': 3})
  names = ['cat', 'dog', '7up']
  _, labels, _ = sample._requested(config, _flags(labels=['dog', '0', '7up']), names)  # pylint: disable=protected-access
  assert labels.tolist()[:3] == [1, 0, 2]
  with pytest.raises(errors.ConfigError, match=r"got 'cow'; this run's classes: \['cat'"):
    sample._requested(config, _flags(labels=['cow']), names)  # pylint: disable=protected-access
  with pytest.raises(errors.ConfigError, match="class names of the run, got 'dog'.$"):
    sample._requested(config, _flags(labels=['dog']))  # pylint: disable=protected-access


def test_a_class_name_wins_over_an_index():
  # Numbered class folders, sorted as strings: '1' is class '1' (index 0), not index 1.
  config = tiny_config(**{'model.num_classes': 4})
  names = ['1', '10', '2', '3']
  _, labels, _ = sample._requested(config, _flags(labels=['1', '10', '3', '2']), names)  # pylint: disable=protected-access
  assert labels.tolist()[:4] == [0, 1, 3, 2]
  for bad in ('\u00b2', '--3', '4x'):
    with pytest.raises(errors.ConfigError, match='--labels must be class indices'):
      sample._requested(config, _flags(labels=[bad]), names)  # pylint: disable=protected-access


def test_a_folder_of_conditional_samples_names_each_file_s_class(tmp_path):
  samples = np.zeros((3, 8, 8, 1), np.float32)
  sample.write_samples(samples, str(tmp_path / 'pngs'), labels=np.array([2, 0, 1]))
  assert sorted(os.listdir(tmp_path / 'pngs')) == [
      '000000_class2.png', '000001_class0.png', '000002_class1.png']
  sample.write_samples(samples, str(tmp_path / 'plain'))
  assert sorted(os.listdir(tmp_path / 'plain')) == ['000000.png', '000001.png', '000002.png']


def test_the_semi_supervised_generator_is_sampled_as_unconditional():
  # Its labels train D only: G takes none, so no labels are written and an
  # interpolation has one row per latent path, not one per class.
  config = tiny_config(**{'model.num_classes': 10, 'model.d_cond': 'semi_supervised'})
  with pytest.raises(errors.ConfigError, match='semi-supervised GAN.s labels train D only'):
    sample._requested(config, _flags(labels=['3']))  # pylint: disable=protected-access
  z, labels, columns = sample._requested(config, _flags())  # pylint: disable=protected-access
  assert z.shape == (10, 16) and labels is None and columns is None
  z, labels, columns = sample._requested(config, _flags(interpolate=5))  # pylint: disable=protected-access
  assert z.shape == (10, 16) and labels is None and columns == 5


def test_npz_output_carries_the_labels(tmp_path):
  samples = np.zeros((4, 8, 8, 1), np.float32)
  sample.write_samples(samples, str(tmp_path / 's.npz'), labels=np.array([1, 2, 1, 2]))
  saved = np.load(tmp_path / 's.npz')
  assert saved['labels'].dtype == np.int32 and saved['labels'].tolist() == [1, 2, 1, 2]


def test_generate_in_batches_passes_each_chunk_its_labels():
  calls = []

  def generate(z, labels=None):
    calls.append((len(z), None if labels is None else labels.tolist()))
    return np.zeros((len(z), 2), np.float32)

  out = sample.generate_in_batches(generate, np.zeros((5, 3)), np.arange(5), batch_size=2)
  assert out.shape == (5, 2)
  assert calls == [(2, [0, 1]), (2, [2, 3]), (1, [4])]


def test_generator_labels_are_checked_before_the_generator_runs():
  # A label outside [0, K) would index past the class embedding: NaN or another class.
  checked = sample._checked_labels  # pylint: disable=protected-access
  np.testing.assert_array_equal(checked([0, 9, 3], 3, 10), [0, 9, 3])
  assert checked([5, 5], 2, 0) is None  # an unconditional G ignores them
  for labels, message in [(None, 'needs labels'), ([0, 10], r'\[0, 10\).*\[0, 10\]'),
                          ([-1, 2], r'\[-1, 2\]'), ([0.5, 1.0], 'int32'),
                          ([1, 2, 3], r'int32\[2\]')]:
    with pytest.raises(ValueError, match=message):
      checked(labels, 2, 10)


def test_a_folder_of_pngs_appears_whole_and_is_never_mixed_with_another_run(tmp_path,
                                                                            monkeypatch):
  samples = np.linspace(-1, 1, 3 * 4 * 4).reshape(3, 4, 4, 1).astype(np.float32)
  sample.write_samples(samples, str(tmp_path / 'pngs/'))
  assert sorted(os.listdir(tmp_path / 'pngs')) == ['000000.png', '000001.png', '000002.png']
  assert sorted(os.listdir(tmp_path)) == ['pngs']  # no partial folder left
  pixels = np.asarray(Image.open(tmp_path / 'pngs' / '000002.png'))
  np.testing.assert_array_equal(pixels, np.round((samples[2, ..., 0] + 1) * 127.5))
  with pytest.raises(errors.ConfigError, match='already holds files'):
    sample.write_samples(samples[:2], str(tmp_path / 'pngs'))
  (tmp_path / 'empty').mkdir()  # an empty folder (a mount point, say) is written in place
  sample.write_samples(samples, str(tmp_path / 'empty'))
  assert len(os.listdir(tmp_path / 'empty')) == 3

  replace = os.replace

  def killed(src, dst):  # every PNG written; killed before the folder is renamed into place
    if os.path.isdir(src):
      assert len(os.listdir(src)) == 3
      raise KeyboardInterrupt
    replace(src, dst)
  monkeypatch.setattr(os, 'replace', killed)
  with pytest.raises(KeyboardInterrupt):
    sample.write_samples(samples, str(tmp_path / 'late'))
  assert not (tmp_path / 'late').exists()
  assert not [name for name in os.listdir(tmp_path) if 'partial' in name]  # cleaned up
  (tmp_path / 'a_file').write_text('x')
  with pytest.raises(errors.ConfigError, match='is a file, not a folder'):
    sample.check_folder_output(str(tmp_path / 'a_file'))


def test_a_folder_left_half_filled_by_a_killed_run_is_named_not_removed(tmp_path, caplog,
                                                                        monkeypatch):
  # SIGKILL leaves the hidden staging folder behind: a later run says so, and leaves it
  # (a run still writing there would lose its files).
  samples = np.zeros((2, 4, 4, 1), np.float32)
  left = tmp_path / '.pngs.partial-12345'
  left.mkdir()
  (left / '000009.png').write_bytes(b'')
  # A process id repeats (a container's first process is always 1): this run must not
  # fill, and hand out as complete, the folder a killed run of the same id left.
  monkeypatch.setattr(os, 'getpid', lambda: 12345)
  with caplog.at_level(logging.WARNING):
    sample.write_samples(samples, str(tmp_path / 'pngs/'))
  assert '.pngs.partial-12345' in caplog.text and 'delete them' in caplog.text
  assert sorted(os.listdir(tmp_path)) == ['.pngs.partial-12345', 'pngs']
  assert sorted(os.listdir(tmp_path / 'pngs')) == ['000000.png', '000001.png']
  assert os.listdir(left) == ['000009.png']
  mask = os.umask(0)
  os.umask(mask)
  assert (tmp_path / 'pngs').stat().st_mode & 0o777 == 0o777 & ~mask  # as a made folder
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    sample.write_samples(samples, str(tmp_path / 'other/'))  # another name: not its leftover
  assert 'partial' not in caplog.text


def test_the_ema_generator_samples_with_its_own_statistics_when_the_run_keeps_them(tmp_path):
  import jax  # pylint: disable=g-import-not-at-top
  from gan_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from gan_jax import state as state_lib  # pylint: disable=g-import-not-at-top
  from gan_jax import step as step_lib  # pylint: disable=g-import-not-at-top
  from gan_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  config = tiny_config(**{'train.ema_batch_stats': True})
  workdir = str(tmp_path / 'run')
  workdir_lib.prepare(config, workdir)
  state = state_lib.create_state(config, jax.random.key(0))
  trained = ema_lib.sampling_batch_stats(state.g_batch_stats, ema=False)
  # EMA statistics unlike the trained ones, so the two samplings must differ.
  ema_stats = jax.tree.map(lambda x: x - 0.5, trained)  # mean -0.5, var 0.5: past the ReLUs
  state = state.replace(g_batch_stats={**trained, ema_lib.EMA_STATS: ema_stats})
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'), async_save=False)
  ckpt.save(1, state, {})
  ckpt.close()
  z = np.random.default_rng(0).normal(size=(4, config.model.z_dim)).astype(np.float32)
  generate_fn = step_lib.make_generate_fn(config)
  for ema, params, stats in ((True, state.ema_g_params, ema_stats),
                             (False, state.g_params, trained)):
    _, generate = sample.load_generator(workdir, ema=ema)
    np.testing.assert_allclose(generate(z), generate_fn(params, stats, z, None), atol=1e-6)
  _, generate = sample.load_generator(workdir)
  with_trained_stats = np.asarray(generate_fn(state.ema_g_params, trained, z, None))
  assert np.abs(generate(z) - with_trained_stats).max() > 1e-3


def test_the_best_checkpoint_s_default_seed_differs_from_the_run_s_and_fits_32_bits():
  # config.seed's latents picked the best checkpoint; its default is the next seed,
  # which for the largest seed wraps to 0 (2**32 would be seed 0's latents anyway).
  assert sample.default_seed(tiny_config(seed=7), best=True) == 8
  assert sample.default_seed(tiny_config(seed=7), best=False) == 0
  assert sample.default_seed(tiny_config(seed=2**32 - 1), best=True) == 0
