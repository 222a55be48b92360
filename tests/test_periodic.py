"""Tests of gan_jax.periodic: when periodic work is due, and what the sample grids draw."""

import jax
import numpy as np

from gan_jax import periodic
from tests.helpers import tiny_config


def test_is_time_on_multiples_and_at_the_last_step():
  due = [s for s in range(1, 26) if periodic.is_time(s, 10, num_steps=25)]
  assert due == [10, 20, 25]
  assert not any(periodic.is_time(s, 0, num_steps=25) for s in range(1, 25))


def _grids(tmp_path, num_classes, count, d_cond='projection'):
  config = tiny_config(**{'model.num_classes': num_classes, 'model.d_cond': d_cond,
                          'train.num_sample_images': count})
  return periodic.SampleGrids(config, str(tmp_path), writer=None, key=jax.random.key(0))


def test_conditional_grid_has_one_row_per_class(tmp_path):
  grids = _grids(tmp_path, num_classes=10, count=64)
  # 6 columns of each class 0..9, in order.
  np.testing.assert_array_equal(grids._labels, np.repeat(np.arange(10), 6))


def test_many_classes_show_evenly_spread_rows_only(tmp_path):
  grids = _grids(tmp_path, num_classes=1000, count=64)
  rows = np.unique(grids._labels)
  assert len(rows) == periodic.MAX_GRID_CLASSES
  assert rows[0] == 0 and rows[-1] == 999
  assert len(grids._labels) <= 64


def test_the_semi_supervised_gan_grid_is_unconditional(tmp_path):
  # Its G takes no labels: rows per class would repeat the same images.
  grids = _grids(tmp_path, num_classes=10, count=64, d_cond='semi_supervised')
  assert grids._labels is None and grids._columns is None and grids._z.shape[0] == 64


def test_the_progress_bar_shows_only_when_there_are_steps_to_train(capsys):
  for start_step, shown in ((0, True), (5, True), (10, False)):
    logger = periodic.MetricLogger(None, None, num_steps=10, log_every=5, start_step=start_step,
                                   checkpoint_dir='/tmp', progress_bar=True)
    logger.close()
    assert ('train:' in capsys.readouterr().err) == shown, start_step
