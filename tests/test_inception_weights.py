"""Tests of gan_jax.metrics.inception_weights: converting pytorch-fid's state dict
(the fixtures' random weights, fid_fixtures.py), the hash check, and finding
and loading the weights file.
"""

import hashlib

import jax
import numpy as np
import pytest

from gan_jax import errors
from gan_jax.metrics import cache
from gan_jax.metrics import inception_weights

import fid_fixtures
import torch_save

pytestmark = fid_fixtures.needs_fixtures
# sha256 over key + float32 bytes of make_state_dict(0), from the fixtures' README.
STATE_DICT_SHA256 = 'ff394b3d56773f9ff5b8d9970bd81a86fb4af69cbca91aed5de4acc0b8e9fda7'


@pytest.fixture(scope='module')
def state_dict():
  return fid_fixtures.make_state_dict(0)


@pytest.fixture(scope='module')
def variables(state_dict):
  return inception_weights.convert_pytorch_fid_state_dict(state_dict)


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
    inception_weights.convert_pytorch_fid_state_dict(broken)
  message = str(info.value)
  assert 'missing Mixed_5b.branch1x1.bn.running_var' in message
  assert 'Conv2d_1a_3x3.conv.weight' in message and 'extra.weight' in message
  ok = dict(state_dict, **{'Conv2d_1a_3x3.bn.num_batches_tracked': np.array(7)})
  inception_weights.convert_pytorch_fid_state_dict(ok)  # num_batches_tracked is ignored


@pytest.fixture
def no_weights_anywhere(tmp_path, monkeypatch):
  monkeypatch.delenv(inception_weights.WEIGHTS_ENV, raising=False)
  monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / 'cache'))
  monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
  return tmp_path / 'cache' / inception_weights.WEIGHTS_NAME


def test_missing_weights_say_where_to_download_and_put_them(no_weights_anywhere):
  with pytest.raises(errors.MissingFileError) as info:
    inception_weights.load_weights()
  message = str(info.value)
  assert inception_weights.WEIGHTS_URL in message
  assert 'pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth' in message
  assert str(no_weights_anywhere) in message
  assert inception_weights.WEIGHTS_ENV in message and '--inception_weights' in message


def test_missing_explicit_path_is_reported(no_weights_anywhere, tmp_path):
  with pytest.raises(errors.MissingFileError, match='not found at .*nowhere.pth') as info:
    inception_weights.find_weights(tmp_path / 'nowhere.pth', origin='config.eval.x')
  assert inception_weights.WEIGHTS_URL in str(info.value)
  assert 'given by config.eval.x' in str(info.value)


def test_the_cache_folder_comes_before_torch_hub(no_weights_anywhere, tmp_path):
  hub = tmp_path / 'torch' / 'hub' / 'checkpoints'
  hub.mkdir(parents=True)
  fidelity_copy = hub / 'weights-inception-2015-12-05-6726825d.pth'  # torch-fidelity's name
  fidelity_copy.write_bytes(b'x')
  assert inception_weights.find_weights() == fidelity_copy
  no_weights_anywhere.parent.mkdir(parents=True)
  no_weights_anywhere.write_bytes(b'x')
  assert inception_weights.find_weights() == no_weights_anywhere


def test_a_file_whose_hash_does_not_match_its_name_is_refused(tmp_path):
  bad = tmp_path / 'pt_inception-2015-12-05-6726825d.pth'
  torch_save.write_zip_pth(bad, {'w': np.zeros(3, np.float32)})
  with pytest.raises(errors.ConfigError, match='SHA-256 starts with .*expected 6726825d'):
    inception_weights.load_weights(bad)
  renamed = tmp_path / 'inception.pth'  # no hash in the name: the official prefix applies
  renamed.write_bytes(bad.read_bytes())
  with pytest.raises(errors.ConfigError, match='expected 6726825d'):
    inception_weights.load_weights(renamed)


def test_load_weights_verifies_and_converts_a_full_checkpoint(
    tmp_path, state_dict, variables, no_weights_anywhere, monkeypatch):
  staging = tmp_path / 'staging.pth'
  torch_save.write_zip_pth(staging, state_dict)
  prefix = inception_weights.file_sha256(staging)[:8]
  named = tmp_path / f'synthetic_fid-{prefix}.pth'
  staging.rename(named)
  loaded = inception_weights.load_weights(named)
  assert jax.tree.structure(loaded) == jax.tree.structure(variables)
  for got, want in zip(jax.tree.leaves(loaded), jax.tree.leaves(variables)):
    np.testing.assert_array_equal(got, want)
  # The environment variable is searched too, and a folder resolves to WEIGHTS_NAME.
  monkeypatch.setenv(inception_weights.WEIGHTS_ENV, str(named))
  assert inception_weights.find_weights() == named
  with pytest.raises(FileNotFoundError, match=inception_weights.WEIGHTS_NAME):
    inception_weights.find_weights(tmp_path)
