"""Tests of gan_jax.metrics.torch_pickle: the torch-free `.pth` reader.

Checkpoints are written by tests/torch_save.py (no torch needed); the file
written by real torch is the fixture `tiny_state_dict.pth` (fid_fixtures.py).
"""

import collections
import os
import pickle

import numpy as np
import pytest

from gan_jax.metrics import torch_pickle

import fid_fixtures
import torch_save

both_formats = pytest.mark.parametrize(
    'writer', [torch_save.write_zip_pth, torch_save.write_legacy_pth], ids=['zip', 'legacy'])


def _mixed_entries():
  """Tensors with an offset view, a transposed view, float64, int64 0-d, float16."""
  rng = np.random.default_rng(0)
  base = rng.standard_normal(20).astype(np.float32)
  square = rng.standard_normal(35)
  return collections.OrderedDict([
      ('a.weight', rng.standard_normal((4, 3, 3, 2)).astype(np.float32)),
      ('a.bias', (base, 3, (8,), (1,))),
      ('b.proj', (square, 0, (5, 7), (1, 5))),
      ('b.count', np.array(12345, np.int64)),
      ('c.half', rng.standard_normal(6).astype(np.float16)),
  ]), {
      'a.bias': base[3:11],
      'b.proj': square.reshape(7, 5).T,
  }


@fid_fixtures.needs_fixtures
def test_reads_the_fixture_pth_exactly():
  got = torch_pickle.read_torch_state_dict(fid_fixtures.FIXTURES / 'tiny_state_dict.pth')
  with np.load(fid_fixtures.FIXTURES / 'tiny_state_dict_expected.npz') as want:
    assert list(got) == list(want.files)
    for key in want.files:
      assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape, key
      assert got[key].flags.c_contiguous
      np.testing.assert_array_equal(got[key], want[key])
  assert int(got['features.0.bn.num_batches_tracked']) == 12345


@both_formats
def test_round_trip_of_views_dtypes_and_both_formats(tmp_path, writer):
  entries, views = _mixed_entries()
  path = tmp_path / 'mixed.pth'
  writer(path, entries)
  got = torch_pickle.read_torch_state_dict(path)
  assert list(got) == list(entries)
  for key, value in entries.items():
    want = views.get(key, value)
    assert got[key].dtype == want.dtype, key
    np.testing.assert_array_equal(got[key], want)


def _os_system_payload(marker):
  class Exploit:
    def __reduce__(self):
      return (os.system, (f'touch {marker}',))
  return pickle.dumps(collections.OrderedDict(w=Exploit()), protocol=2)


def _exec_payload(marker):
  class Exploit:
    def __reduce__(self):
      return (exec, (f'open({str(marker)!r}, "w").write("pwned")',))
  return pickle.dumps({'w': Exploit()}, protocol=2)


def _nested_payload(marker):
  """The exploit hidden inside a tensor's arguments, after legitimate globals."""
  class Exploit:
    def __reduce__(self):
      return (os.system, (f'touch {marker}',))
  storage = torch_save.StorageRef('0', np.zeros(4, np.float32))
  tensor = torch_save.Tensor(storage, 0, (4,), (1,))
  tensor.stride = Exploit()
  return torch_save.pickle_bytes(collections.OrderedDict(w=tensor))


@pytest.mark.parametrize('make_payload', [_os_system_payload, _exec_payload, _nested_payload],
                         ids=['os.system', 'exec', 'nested'])
@both_formats
def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path, writer, make_payload):
  marker = tmp_path / 'pwned'
  payload = make_payload(marker)
  path = tmp_path / 'evil.pth'
  # A real storage '0' too, so the nested payload gets past its tensor's storage.
  writer(path, {'w': np.zeros(4, np.float32)}, payload=payload)
  with pytest.raises(torch_pickle.UnsafeCheckpointError, match='refusing to load the global'):
    torch_pickle.read_torch_state_dict(path)
  assert not marker.exists(), 'code from the checkpoint ran'


def test_the_malicious_payload_is_live_under_a_plain_unpickler(tmp_path):
  """Control: the same bytes do run code under pickle.loads, so the test above means something."""
  marker = tmp_path / 'pwned'
  pickle.loads(_exec_payload(marker))  # our own payload: writes one file in tmp_path
  assert marker.exists()


def test_a_view_outside_its_storage_is_refused(tmp_path):
  path = tmp_path / 'oob.pth'
  torch_save.write_zip_pth(path, {'w': (np.zeros(4, np.float32), 2, (4,), (1,))})
  with pytest.raises(torch_pickle.UnsafeCheckpointError, match='reaches element'):
    torch_pickle.read_torch_state_dict(path)
  torch_save.write_zip_pth(path, {'w': (np.zeros(4, np.float32), 0, (10 ** 12,), (0,))})
  with pytest.raises(torch_pickle.UnsafeCheckpointError, match='larger than its storage'):
    torch_pickle.read_torch_state_dict(path)


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
  path = tmp_path / 'junk.pth'
  path.write_bytes(b'this is not a checkpoint')
  with pytest.raises(ValueError, match='not a torch checkpoint'):
    torch_pickle.read_torch_state_dict(path)
