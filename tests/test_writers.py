"""Tests of the run outputs: image grids, scatter plots, metric and eval files."""

import io
import json
import os
import stat

import numpy as np
import pytest
from PIL import Image

from gan_jax import writers
from tests import tensorboard_events


def test_small_images_are_upscaled_to_a_viewable_grid():
  images = np.full((64, 8, 8, 1), -1.0, np.float32)  # black
  images[:, 0, 0, 0] = 1.0  # one white pixel in the corner of each digit
  grid = writers.image_grid(images, padding=2)
  scale = -(-writers.MIN_TILE_PX // 8)  # 6: 8 px -> 48 px tiles
  assert grid.shape == (8 * (8 * scale + 2) + 2,) * 2 + (3,)
  # The corner pixel became a scale x scale white block (nearest neighbour).
  assert np.all(grid[2:2 + scale, 2:2 + scale] == 255)
  assert np.all(grid[2 + scale, 2:2 + scale] == 0)


def test_large_images_keep_their_size():
  grid = writers.image_grid(np.zeros((4, 64, 64, 3), np.float32), padding=2)
  assert grid.shape == (2 * 66 + 2, 2 * 66 + 2, 3)


def test_grid_columns_can_be_set_for_one_row_per_class():
  grid = writers.image_grid(np.zeros((6, 64, 64, 1), np.float32), columns=3, padding=0)
  assert grid.shape[:2] == (2 * 64, 3 * 64)


def test_scatter_plot_draws_points_over_the_reference():
  image = writers.scatter_image(np.array([[0.5, -0.5]]), reference=np.array([[-0.5, 0.5]]),
                                extent=1.0, size=101)
  assert tuple(image[75, 75]) == (40, 90, 220)     # generated point down and right
  assert tuple(image[25, 25]) == (220, 60, 60)     # reference point up and left
  assert tuple(image[10, 90]) == (255, 255, 255)   # background


def test_no_files_until_the_first_write(tmp_path):
  writer = writers.MetricWriter(str(tmp_path))
  writer.close()
  assert not (tmp_path / 'tensorboard').exists() and not (tmp_path / 'metrics.jsonl').exists()


def test_scalars_and_evaluations_append_json_lines(tmp_path):
  for step in (1, 2):  # the second writer continues from step 1, as a resumed run does
    writer = writers.MetricWriter(str(tmp_path), start_step=step - 1)
    writer.write_scalars(step, {'d_loss': 0.5 * step})
    writer.write_eval(step, {'fid': 10.0 / step}, {'num_fake': 1000} if step == 2 else None)
    writer.close()
  with open(tmp_path / 'metrics.jsonl', encoding='utf-8') as f:
    assert [json.loads(line) for line in f] == [{'step': 1, 'd_loss': 0.5},
                                                 {'step': 2, 'd_loss': 1.0}]
  with open(tmp_path / 'eval.jsonl', encoding='utf-8') as f:
    assert [json.loads(line) for line in f] == [
        {'step': 1, 'fid': 10.0}, {'step': 2, 'fid': 5.0, 'protocol': {'num_fake': 1000}}]
  assert os.listdir(tmp_path / 'tensorboard')


def _steps(path):
  with open(path, encoding='utf-8') as f:
    return [json.loads(line)['step'] for line in f]


def test_a_resumed_writer_drops_what_the_killed_run_logged_after_its_checkpoint(tmp_path):
  # The killed run logged steps 1-7 (and was writing step 8) after a checkpoint at 4.
  writer = writers.MetricWriter(str(tmp_path))
  for step in range(1, 8):
    writer.write_scalars(step, {'d_loss': float(step)})
    if step % 2 == 0:
      writer.write_eval(step, {'fid': float(step)})
  writer.close()
  with open(tmp_path / 'metrics.jsonl', 'a', encoding='utf-8') as f:
    f.write('{"step": 8, "d_lo')
  resumed = writers.MetricWriter(str(tmp_path), start_step=4)
  assert _steps(tmp_path / 'metrics.jsonl') == [1, 2, 3, 4]
  assert _steps(tmp_path / 'eval.jsonl') == [2, 4]
  for step in range(5, 9):  # the resumed run logs them again
    resumed.write_scalars(step, {'d_loss': float(step)})
  resumed.close()
  assert _steps(tmp_path / 'metrics.jsonl') == list(range(1, 9))
  assert sorted(os.listdir(tmp_path)) == ['eval.jsonl', 'metrics.jsonl', 'tensorboard']


def test_a_run_that_starts_again_from_step_0_drops_the_killed_attempts_lines(tmp_path):
  # Killed before its first checkpoint: the rerun starts from step 0 and logs steps 1, 2
  # again, so the first attempt's lines go.
  writer = writers.MetricWriter(str(tmp_path))
  for step in (1, 2, 3):
    writer.write_scalars(step, {'d_loss': float(step)})
  writer.write_eval(2, {'fid': 1.0})
  writer.close()
  again = writers.MetricWriter(str(tmp_path), start_step=0)
  assert _steps(tmp_path / 'metrics.jsonl') == [] and _steps(tmp_path / 'eval.jsonl') == []
  for step in (1, 2):
    again.write_scalars(step, {'d_loss': float(step)})
  again.close()
  assert _steps(tmp_path / 'metrics.jsonl') == [1, 2]


def test_dropping_lines_keeps_other_records_and_rewrites_only_when_a_line_goes(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  text = '{"step": 1}\nnot json\n{"note": "no step"}\n{"step": 2}\n'
  path.write_text(text, encoding='utf-8')
  before = os.stat(path).st_mtime_ns
  assert writers.drop_lines_after(path, 2) == 0
  assert os.stat(path).st_mtime_ns == before and path.read_text(encoding='utf-8') == text
  assert writers.drop_lines_after(path, 1) == 1
  assert path.read_text(encoding='utf-8') == '{"step": 1}\nnot json\n{"note": "no step"}\n'
  assert writers.drop_lines_after(tmp_path / 'missing.jsonl', 1) == 0


def test_a_disabled_resumed_writer_leaves_the_files_alone(tmp_path):
  (tmp_path / 'metrics.jsonl').write_text('{"step": 9}\n', encoding='utf-8')
  writers.MetricWriter(str(tmp_path), enabled=False, start_step=4).close()
  assert _steps(tmp_path / 'metrics.jsonl') == [9]


def test_a_disabled_writer_writes_nothing(tmp_path):
  writer = writers.MetricWriter(str(tmp_path), enabled=False)
  writer.write_scalars(1, {'d_loss': 1.0})
  writer.write_eval(1, {'fid': 1.0})
  writer.close()
  assert os.listdir(tmp_path) == []


def test_write_text_atomic_replaces_the_file_and_leaves_nothing_beside_it(tmp_path):
  path = tmp_path / 'sub' / 'record.json'
  writers.write_text_atomic(path, '{"a": 1}')
  writers.write_text_atomic(path, '{"b": 2}')
  assert path.read_text(encoding='utf-8') == '{"b": 2}'
  assert os.listdir(tmp_path / 'sub') == ['record.json']


def test_write_text_atomic_gives_the_permissions_of_a_plain_write(tmp_path):
  old_umask = os.umask(0o022)  # the usual one: others may read a run's outputs
  try:
    writers.write_text_atomic(tmp_path / 'whole.json', '{}')
    writers.save_png(tmp_path / 'grid.png', np.zeros((2, 2, 3), np.uint8))
  finally:
    os.umask(old_umask)
  for name in ('whole.json', 'grid.png'):
    assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


def test_write_text_atomic_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
  path = tmp_path / 'record.json'
  path.write_text('old', encoding='utf-8')

  def interrupted(src, dst):
    raise KeyboardInterrupt  # e.g. Ctrl-C between writing and renaming
  monkeypatch.setattr(os, 'replace', interrupted)
  with pytest.raises(KeyboardInterrupt):
    writers.write_text_atomic(path, 'new')
  assert path.read_text(encoding='utf-8') == 'old'
  assert os.listdir(tmp_path) == ['record.json']


def test_a_refused_write_names_the_requested_path_not_the_temporary_one(tmp_path, monkeypatch):
  path = tmp_path / 'samples.npz'
  real_open = open

  def refusing_open(file, mode='r', *args, **kwargs):
    if 'x' in mode:  # the temporary file beside the target
      raise PermissionError(13, 'Permission denied', file)
    return real_open(file, mode, *args, **kwargs)
  monkeypatch.setattr('builtins.open', refusing_open)
  with pytest.raises(PermissionError) as error:
    writers.write_text_atomic(path, 'new')
  assert error.value.filename == str(path) and error.value.strerror == 'Permission denied'
  assert os.listdir(tmp_path) == []


def test_flushed_events_are_on_disk_before_the_writer_closes(tmp_path):
  # What a checkpoint relies on: after `flush`, a kill loses none of the events.
  writer = writers.MetricWriter(str(tmp_path))
  for step in range(1, 31):  # more than tensorboardX's queue of 10
    writer.write_scalars(step, {'d_loss': float(step)})
  image = np.zeros((4, 6, 3), np.uint8)
  image[1, 2] = 255
  writer.write_image(30, 'samples', image)
  writer.flush()
  view = tensorboard_events.shown(str(tmp_path))  # read while the writer is open
  assert view[('scalar', 'd_loss')] == {s: float(s) for s in range(1, 31)}
  (png,) = view[('image', 'samples')].values()
  np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), image)
  writer.close()


def test_a_resumed_writer_hides_the_killed_attempts_later_events(tmp_path):
  first = writers.MetricWriter(str(tmp_path))
  for step in (1, 2, 3, 4):
    first.write_scalars(step, {'d_loss': 1.0})
  first.flush()  # then killed: steps 3 and 4 came after the checkpoint of step 2
  resumed = writers.MetricWriter(str(tmp_path), start_step=2)
  for step in (3, 4):
    resumed.write_scalars(step, {'d_loss': 2.0})
  resumed.close()
  assert tensorboard_events.shown(str(tmp_path))[('scalar', 'd_loss')] == {
      1: 1.0, 2: 1.0, 3: 2.0, 4: 2.0}


def test_save_npz_replaces_a_file_only_when_the_new_one_is_whole(tmp_path, monkeypatch):
  path = tmp_path / 'out' / 'samples.npz'  # the folder is created
  writers.save_npz(str(path), samples=np.ones(3, np.float32), labels=np.arange(3))
  with np.load(path) as f:
    assert sorted(f.files) == ['labels', 'samples'] and f['samples'].tolist() == [1, 1, 1]

  def interrupted(src, dst):  # a kill between writing the new archive and renaming it
    raise KeyboardInterrupt
  monkeypatch.setattr(os, 'replace', interrupted)
  with pytest.raises(KeyboardInterrupt):
    writers.save_npz(str(path), samples=np.zeros(1000, np.float32))
  with np.load(path) as f:  # the old file, untouched; no temporary file left beside it
    assert f['samples'].tolist() == [1, 1, 1]
  assert os.listdir(path.parent) == ['samples.npz']


def test_events_reach_the_disk_on_their_own_every_few_seconds(tmp_path, monkeypatch):
  # A live TensorBoard sees a run between checkpoints, without a flush call.
  writer = writers.EventFile(tmp_path / 'tensorboard')
  writer.scalar('d_loss', 1.0, 1)
  assert ('scalar', 'd_loss') not in tensorboard_events.shown(str(tmp_path))  # buffered
  monkeypatch.setattr(writers.EventFile, 'FLUSH_SECONDS', 0.0)
  writer.scalar('d_loss', 2.0, 2)
  assert tensorboard_events.shown(str(tmp_path))[('scalar', 'd_loss')] == {1: 1.0, 2: 2.0}
  writer.close()
