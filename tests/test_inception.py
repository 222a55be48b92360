"""Tests of gan_jax.metrics.inception: the torch-free .pth reader, weight
conversion and loading, and pool3 / logits parity with pytorch-fid.

Parity fixtures: ../shared/fixtures/fid_inception beside the repository (override
with $GAN_JAX_FID_FIXTURES); see its README.md. The float32 network runs once per
module (8 images at 299 px, sharded over conftest's 8 fake CPU devices); the
float64 run happens once, in a subprocess with jax_enable_x64, so the other
tests keep JAX's default float32.
"""

import collections
import hashlib
import importlib.util
import io
import json
import os
from pathlib import Path
import pickle
import subprocess
import sys
import zipfile

import jax
import numpy as np
import pytest

from gan_jax.metrics import cache
from gan_jax.metrics import inception
from gan_jax.metrics import stats

FIXTURES = Path(os.environ.get('GAN_JAX_FID_FIXTURES') or
                Path(__file__).resolve().parents[2] / 'shared' / 'fixtures' / 'fid_inception')
if not (FIXTURES / 'README.md').is_file():
  pytest.skip(f'FID fixtures not found at {FIXTURES} (set GAN_JAX_FID_FIXTURES)',
              allow_module_level=True)

STATE_DICT_SHA256 = 'ff394b3d56773f9ff5b8d9970bd81a86fb4af69cbca91aed5de4acc0b8e9fda7'
IS_OF_EXPECTED_LOGITS = 1.0277190343419287


def _rel(a, ref):
  return float(np.max(np.abs(np.asarray(a, np.float64) - ref)) / np.max(np.abs(ref)))


def _make_weights_module():
  spec = importlib.util.spec_from_file_location('fid_make_weights', FIXTURES / 'make_weights.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope='module')
def state_dict():
  return _make_weights_module().make_state_dict(0)


@pytest.fixture(scope='module')
def variables(state_dict):
  return inception.convert_pytorch_fid_state_dict(state_dict)


@pytest.fixture(scope='module')
def images():
  """The 8 fixture images as NHWC in [-1, 1] (float32)."""
  x = np.load(FIXTURES / 'inputs_seed0.npy')
  return (2.0 * x.transpose(0, 2, 3, 1) - 1.0).astype(np.float32)


@pytest.fixture(scope='module')
def features32(variables, images):
  return inception.extract_features(variables, images)


# ----------------------------------------------------------------------------
# A minimal torch.save writer (no torch) for building test checkpoints
# ----------------------------------------------------------------------------

class _Global:
  """Written as the pickle GLOBAL `module name` without importing it."""

  def __init__(self, module, name):
    self.module, self.name = module, name

  def __call__(self, *args):  # pickle wants reduce functions to be callable
    raise AssertionError('never called')


_STORAGE_NAMES = {np.dtype(np.float32): 'FloatStorage', np.dtype(np.float64): 'DoubleStorage',
                  np.dtype(np.int64): 'LongStorage', np.dtype(np.float16): 'HalfStorage'}


class _StorageRef:

  def __init__(self, key, array, view=None):
    self.key, self.array, self.view = key, array, view


class _Tensor:
  """A tensor as torch pickles it: _rebuild_tensor_v2(storage, offset, size, stride, ...)."""

  def __init__(self, storage, offset, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

  def __reduce__(self):
    return (_Global('torch._utils', '_rebuild_tensor_v2'),
            (self.storage, self.offset, tuple(self.size),
             tuple(self.stride) if isinstance(self.stride, (list, tuple)) else self.stride, False,
             collections.OrderedDict()))


class _TorchPickler(pickle._Pickler):  # pylint: disable=protected-access
  """Pure-Python pickler that can write arbitrary GLOBALs and torch storage ids."""

  def __init__(self, file, legacy):
    super().__init__(file, protocol=2)
    self.legacy = legacy

  def persistent_id(self, obj):
    if isinstance(obj, _StorageRef):
      pid = ('storage', _Global('torch', _STORAGE_NAMES[obj.array.dtype]), obj.key, 'cpu',
             obj.array.size)
      return pid + (obj.view,) if self.legacy else pid
    return None

  def save(self, obj, save_persistent_id=True):
    if isinstance(obj, _Global):
      self.write(pickle.GLOBAL + f'{obj.module}\n{obj.name}\n'.encode())
      return
    super().save(obj, save_persistent_id)


def _tensors(entries):
  """{key: array or (flat storage, offset, size, stride)} -> ({key: _Tensor}, storages)."""
  out, storages = collections.OrderedDict(), collections.OrderedDict()
  for i, (key, value) in enumerate(entries.items()):
    if isinstance(value, tuple):
      flat, offset, size, stride = value
    else:
      dense = np.array(value, order='C')  # (ascontiguousarray would make 0-d arrays 1-d)
      flat = dense.reshape(-1)
      offset, size = 0, dense.shape
      stride = tuple(int(s) // dense.itemsize for s in dense.strides)
    storages[str(i)] = _StorageRef(str(i), flat)
    out[key] = _Tensor(storages[str(i)], offset, size, stride)
  return out, storages


def _pickle_bytes(obj, legacy=False):
  buf = io.BytesIO()
  _TorchPickler(buf, legacy).dump(obj)
  return buf.getvalue()


def write_zip_pth(path, entries=None, *, payload=None):
  """torch's zip format; `payload` replaces data.pkl's bytes (for malicious files)."""
  tensors, storages = _tensors(entries or {})
  prefix = Path(path).stem + '/'
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as zf:
    zf.writestr(prefix + 'data.pkl', payload if payload is not None else _pickle_bytes(tensors))
    zf.writestr(prefix + 'byteorder', 'little')
    for key, ref in storages.items():
      zf.writestr(f'{prefix}data/{key}', ref.array.astype(ref.array.dtype.newbyteorder('<'))
                  .tobytes())
    zf.writestr(prefix + 'version', '3\n')


def write_legacy_pth(path, entries=None, *, payload=None):
  """torch < 1.6 stream: magic, protocol, sys_info, object, keys, raw storages."""
  tensors, storages = _tensors(entries or {})
  with open(path, 'wb') as f:
    for header in (0x1950a86a20f9469cfc6c, 1001,
                   dict(protocol_version=1001, little_endian=True,
                        type_sizes=dict(short=2, int=4, long=4))):
      f.write(pickle.dumps(header, protocol=2))
    f.write(payload if payload is not None else _pickle_bytes(tensors, legacy=True))
    f.write(pickle.dumps(list(storages), protocol=2))
    for ref in storages.values():
      f.write(int(ref.array.size).to_bytes(8, 'little'))
      f.write(ref.array.tobytes())


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


# ----------------------------------------------------------------------------
# Reader
# ----------------------------------------------------------------------------

def test_reads_the_fixture_pth_exactly():
  got = inception.read_torch_state_dict(FIXTURES / 'tiny_state_dict.pth')
  with np.load(FIXTURES / 'tiny_state_dict_expected.npz') as want:
    assert list(got) == list(want.files)
    for key in want.files:
      assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape, key
      assert got[key].flags.c_contiguous
      np.testing.assert_array_equal(got[key], want[key])
  assert int(got['features.0.bn.num_batches_tracked']) == 12345


@pytest.mark.parametrize('writer', [write_zip_pth, write_legacy_pth], ids=['zip', 'legacy'])
def test_round_trip_of_views_dtypes_and_both_formats(tmp_path, writer):
  entries, views = _mixed_entries()
  path = tmp_path / 'mixed.pth'
  writer(path, entries)
  got = inception.read_torch_state_dict(path)
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
  storage = _StorageRef('0', np.zeros(4, np.float32))
  tensor = _Tensor(storage, 0, (4,), (1,))
  tensor.stride = Exploit()
  return _pickle_bytes(collections.OrderedDict(w=tensor))


@pytest.mark.parametrize('make_payload', [_os_system_payload, _exec_payload, _nested_payload],
                         ids=['os.system', 'exec', 'nested'])
@pytest.mark.parametrize('writer', [write_zip_pth, write_legacy_pth], ids=['zip', 'legacy'])
def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path, writer, make_payload):
  marker = tmp_path / 'pwned'
  payload = make_payload(marker)
  path = tmp_path / 'evil.pth'
  # A real storage '0' too, so the nested payload gets past its tensor's storage.
  writer(path, {'w': np.zeros(4, np.float32)}, payload=payload)
  with pytest.raises(inception.UnsafeCheckpointError, match='refusing to load the global'):
    inception.read_torch_state_dict(path)
  assert not marker.exists(), 'code from the checkpoint ran'


def test_the_malicious_payload_is_live_under_a_plain_unpickler(tmp_path):
  """Control: the same bytes do run code under pickle.loads, so the test above means something."""
  marker = tmp_path / 'pwned'
  pickle.loads(_exec_payload(marker))  # our own payload: writes one file in tmp_path
  assert marker.exists()


def test_a_view_outside_its_storage_is_refused(tmp_path):
  path = tmp_path / 'oob.pth'
  write_zip_pth(path, {'w': (np.zeros(4, np.float32), 2, (4,), (1,))})
  with pytest.raises(inception.UnsafeCheckpointError, match='reaches element'):
    inception.read_torch_state_dict(path)
  write_zip_pth(path, {'w': (np.zeros(4, np.float32), 0, (10 ** 12,), (0,))})
  with pytest.raises(inception.UnsafeCheckpointError, match='larger than its storage'):
    inception.read_torch_state_dict(path)


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
  path = tmp_path / 'junk.pth'
  path.write_bytes(b'this is not a checkpoint')
  with pytest.raises(ValueError, match='not a torch checkpoint'):
    inception.read_torch_state_dict(path)


# ----------------------------------------------------------------------------
# Conversion and loading
# ----------------------------------------------------------------------------

def test_synthetic_weights_hash_then_convert(state_dict, variables):
  digest = hashlib.sha256()
  for key, value in state_dict.items():
    digest.update(key.encode('utf-8') + value.tobytes())
  assert digest.hexdigest() == STATE_DICT_SHA256
  assert len(state_dict) == 472
  params, bn = variables['params'], variables['batch_stats']
  np.testing.assert_array_equal(params['Mixed_6b']['branch7x7_2']['conv']['kernel'],
                                state_dict['Mixed_6b.branch7x7_2.conv.weight'].transpose(
                                    2, 3, 1, 0))
  assert params['Mixed_6b']['branch7x7_2']['conv']['kernel'].shape == (1, 7, 128, 128)
  np.testing.assert_array_equal(bn['Mixed_7c']['branch_pool']['bn']['var'],
                                state_dict['Mixed_7c.branch_pool.bn.running_var'])
  np.testing.assert_array_equal(params['fc']['kernel'], state_dict['fc.weight'].T)
  assert sum(a.size for a in jax.tree.leaves(variables)) == sum(
      v.size for v in state_dict.values())


def test_conversion_errors_name_the_keys(state_dict):
  broken = dict(state_dict)
  del broken['Mixed_5b.branch1x1.bn.running_var']
  broken['Conv2d_1a_3x3.conv.weight'] = np.zeros((32, 3, 5, 5), np.float32)
  broken['extra.weight'] = np.zeros(3, np.float32)
  with pytest.raises(ValueError) as info:
    inception.convert_pytorch_fid_state_dict(broken)
  message = str(info.value)
  assert 'missing Mixed_5b.branch1x1.bn.running_var' in message
  assert 'Conv2d_1a_3x3.conv.weight' in message and 'extra.weight' in message
  ok = dict(state_dict, **{'Conv2d_1a_3x3.bn.num_batches_tracked': np.array(7)})
  inception.convert_pytorch_fid_state_dict(ok)  # num_batches_tracked entries are ignored


@pytest.fixture
def no_weights_anywhere(tmp_path, monkeypatch):
  monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
  monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / 'cache'))
  monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
  return tmp_path / 'cache' / inception.WEIGHTS_NAME


def test_missing_weights_say_where_to_download_and_put_them(no_weights_anywhere):
  with pytest.raises(FileNotFoundError) as info:
    inception.load_weights()
  message = str(info.value)
  assert inception.WEIGHTS_URL in message
  assert 'pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth' in message
  assert str(no_weights_anywhere) in message
  assert inception.WEIGHTS_ENV in message


def test_missing_explicit_path_is_reported(no_weights_anywhere, tmp_path):
  with pytest.raises(FileNotFoundError, match='not found at .*nowhere.pth') as info:
    inception.load_weights(tmp_path / 'nowhere.pth')
  assert inception.WEIGHTS_URL in str(info.value)


def test_a_file_whose_hash_does_not_match_its_name_is_refused(tmp_path):
  bad = tmp_path / 'pt_inception-2015-12-05-6726825d.pth'
  write_zip_pth(bad, {'w': np.zeros(3, np.float32)})
  with pytest.raises(ValueError, match='SHA-256 starts with .*expected 6726825d'):
    inception.load_weights(bad)
  renamed = tmp_path / 'inception.pth'  # no hash in the name: the official prefix applies
  renamed.write_bytes(bad.read_bytes())
  with pytest.raises(ValueError, match='expected 6726825d'):
    inception.load_weights(renamed)


def test_load_weights_verifies_and_converts_a_full_checkpoint(
    tmp_path, state_dict, variables, no_weights_anywhere, monkeypatch):
  staging = tmp_path / 'staging.pth'
  write_zip_pth(staging, state_dict)
  prefix = inception.file_sha256(staging)[:8]
  named = tmp_path / f'synthetic_fid-{prefix}.pth'
  staging.rename(named)
  loaded = inception.load_weights(named)
  assert jax.tree.structure(loaded) == jax.tree.structure(variables)
  for got, want in zip(jax.tree.leaves(loaded), jax.tree.leaves(variables)):
    np.testing.assert_array_equal(got, want)
  # The environment variable is searched too, and a folder resolves to WEIGHTS_NAME.
  monkeypatch.setenv(inception.WEIGHTS_ENV, str(named))
  assert inception.find_weights() == named
  with pytest.raises(FileNotFoundError, match=inception.WEIGHTS_NAME):
    inception.find_weights(tmp_path)


# ----------------------------------------------------------------------------
# Network parity
# ----------------------------------------------------------------------------

def test_resize_matches_torch_bilinear_formula_up_and_down():
  rng = np.random.default_rng(1)
  x = rng.standard_normal((2, 17, 400, 3))

  def torch_like(x, out_h, out_w):  # per-pixel, straight from the formula
    def taps(n_in, n_out):
      src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0)
      i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
      return i0, np.minimum(i0 + 1, n_in - 1), src - i0
    h0, h1, lh = taps(x.shape[1], out_h)
    w0, w1, lw = taps(x.shape[2], out_w)
    lh, lw = lh[None, :, None, None], lw[None, None, :, None]
    top = (1 - lw) * x[:, h0][:, :, w0] + lw * x[:, h0][:, :, w1]
    bottom = (1 - lw) * x[:, h1][:, :, w0] + lw * x[:, h1][:, :, w1]
    return (1 - lh) * top + lh * bottom

  got = np.asarray(inception.resize_bilinear(x.astype(np.float32), (299, 299)))
  np.testing.assert_allclose(got, torch_like(x, 299, 299), atol=2e-6)
  # jax.image.resize's default antialiasing differs when shrinking (400 -> 299).
  antialiased = np.asarray(jax.image.resize(x.astype(np.float32), (2, 299, 299, 3), 'bilinear'))
  assert np.abs(antialiased - got).max() > 1e-2
  same = np.asarray(inception.resize_bilinear(x[:, :, :17].astype(np.float32), (17, 17)))
  np.testing.assert_array_equal(same, x[:, :, :17].astype(np.float32))


def test_float32_pool3_and_logits_match_pytorch_fid(features32):
  measured = {}
  for name in ('pool3', 'logits'):
    assert features32[name].dtype == np.float32
    for precision in ('f32', 'f64'):
      ref = np.load(FIXTURES / f'expected_{name}_{precision}.npy')
      assert features32[name].shape == ref.shape
      measured[f'{name}_vs_{precision}'] = _rel(features32[name], ref)
  print('float32 max|diff|/max|ref|:', measured)
  assert max(measured.values()) <= 1e-4, measured


def test_batching_padding_and_device_count_do_not_change_features(variables, images,
                                                                  features32):
  # 3 images over 2 devices in batches of 2: one full batch and one padded one.
  out = inception.extract_features(variables, images[:3], batch_size=2,
                                   devices=jax.devices()[:2])
  assert out['pool3'].shape == (3, 2048) and out['logits'].shape == (3, 1008)
  np.testing.assert_allclose(out['pool3'], features32['pool3'][:3], rtol=0, atol=1e-5)
  np.testing.assert_allclose(out['logits'], features32['logits'][:3], rtol=0, atol=1e-5)


def test_float64_parity_in_a_subprocess():
  """jax_enable_x64 is process-wide, so the float64 run gets its own interpreter."""
  script = f'''
import json, importlib.util, numpy as np, jax
jax.config.update('jax_enable_x64', True)
from gan_jax.metrics import inception, stats
spec = importlib.util.spec_from_file_location('mw', {str(FIXTURES / 'make_weights.py')!r})
mw = importlib.util.module_from_spec(spec); spec.loader.exec_module(mw)
v = inception.convert_pytorch_fid_state_dict(mw.make_state_dict(0), dtype=np.float64)
x = np.load({str(FIXTURES / 'inputs_seed0.npy')!r}).astype(np.float64)
out = inception.extract_features(v, 2.0 * x.transpose(0, 2, 3, 1) - 1.0)
res = {{'dtype': str(out['pool3'].dtype),
        'is': stats.inception_score(out['logits'], splits=1, shuffle=False)[0]}}
for name in ('pool3', 'logits'):
  ref = np.load({str(FIXTURES)!r} + f'/expected_{{name}}_f64.npy')
  res[name] = float(np.abs(out[name] - ref).max() / np.abs(ref).max())
print('RESULT' + json.dumps(res))
'''
  env = dict(os.environ, JAX_ENABLE_X64='1')
  proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                        env=env, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith('RESULT')][-1]
  res = json.loads(line[len('RESULT'):])
  print('float64 max|diff|/max|ref|:', res)
  assert res['dtype'] == 'float64'
  assert res['pool3'] <= 1e-9 and res['logits'] <= 1e-9, res
  assert abs(res['is'] - IS_OF_EXPECTED_LOGITS) <= 1e-6 * IS_OF_EXPECTED_LOGITS
  assert not jax.config.jax_enable_x64  # this process is untouched


def test_float64_variables_without_x64_are_refused(variables, images):
  as64 = jax.tree.map(lambda a: a.astype(np.float64), variables)
  with pytest.raises(ValueError, match='jax_enable_x64'):
    inception.extract_features(as64, images[:1])


def test_inception_score_of_network_logits_matches_reference(features32):
  value, _ = stats.inception_score(features32['logits'], splits=1, shuffle=False)
  assert abs(value - IS_OF_EXPECTED_LOGITS) <= 1e-6 * IS_OF_EXPECTED_LOGITS
