"""Tests of gan_jax.metrics.inception: the torch-style resize and pool3 / logits
parity of `extract_features` (the Flax network of inception_net.py with the
fixtures' random weights) with pytorch-fid.

Parity fixtures: fid_fixtures.py. The float32 network runs once per module (8
images at 299 px, sharded over conftest's 8 fake CPU devices); the float64 run
happens once, in a subprocess with jax_enable_x64, so the other tests keep
JAX's default float32.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from gan_jax.metrics import inception
from gan_jax.metrics import inception_weights
from gan_jax.metrics import stats

import fid_fixtures

if not fid_fixtures.AVAILABLE:
  pytest.skip(f'FID fixtures not found at {fid_fixtures.FIXTURES} (set GAN_JAX_FID_FIXTURES)',
              allow_module_level=True)
FIXTURES = fid_fixtures.FIXTURES
# torch-fidelity's IS of expected_logits_f64.npy (fixtures' metrics_reference.json).
IS_OF_EXPECTED_LOGITS = 1.0277190343419287


def _rel(a, ref):
  return float(np.max(np.abs(np.asarray(a, np.float64) - ref)) / np.max(np.abs(ref)))


@pytest.fixture(scope='module')
def variables():
  return inception_weights.convert_pytorch_fid_state_dict(fid_fixtures.make_state_dict(0))


@pytest.fixture(scope='module')
def images():
  """The 8 fixture images as NHWC in [-1, 1] (float32)."""
  x = np.load(FIXTURES / 'inputs_seed0.npy')
  return (2.0 * x.transpose(0, 2, 3, 1) - 1.0).astype(np.float32)


@pytest.fixture(scope='module')
def features32(variables, images):
  return inception.extract_features(variables, images)


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

  got = np.asarray(inception.torch_bilinear_resize(x.astype(np.float32), (299, 299)))
  np.testing.assert_allclose(got, torch_like(x, 299, 299), atol=2e-6)
  # jax.image.resize's default antialiasing differs when shrinking (400 -> 299).
  antialiased = np.asarray(jax.image.resize(x.astype(np.float32), (2, 299, 299, 3), 'bilinear'))
  assert np.abs(antialiased - got).max() > 1e-2
  same = np.asarray(inception.torch_bilinear_resize(x[:, :, :17].astype(np.float32), (17, 17)))
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


def test_quantize_rounds_each_batch_as_the_whole_set_would_be(variables, images):
  # Batch by batch, so that no second copy of an FID-50k sample set is made.
  rounded = inception.extract_features(variables, images[:3], batch_size=2, quantize=True)
  whole = inception.extract_features(variables, inception.quantize_8_bit(images[:3]),
                                     batch_size=2)
  for name in ('pool3', 'logits'):
    np.testing.assert_array_equal(rounded[name], whole[name])
  plain = inception.extract_features(variables, images[:3], batch_size=2)
  assert not np.array_equal(plain['pool3'], rounded['pool3'])  # the fixtures are not 8-bit


def test_float64_parity_in_a_subprocess():
  """jax_enable_x64 is process-wide, so the float64 run gets its own interpreter."""
  script = f'''
import json, importlib.util, numpy as np, jax
jax.config.update('jax_enable_x64', True)
from gan_jax.metrics import inception, inception_weights, stats
spec = importlib.util.spec_from_file_location('mw', {str(FIXTURES / 'make_weights.py')!r})
mw = importlib.util.module_from_spec(spec); spec.loader.exec_module(mw)
v = inception_weights.convert_pytorch_fid_state_dict(mw.make_state_dict(0), dtype=np.float64)
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


def test_quantize_8_bit_rounds_to_the_levels_of_an_8_bit_image():
  levels = np.arange(256, dtype=np.float64)
  decoded = (levels / 127.5 - 1).astype(np.float32)   # how 8-bit images are decoded
  np.testing.assert_array_equal(inception.quantize_8_bit(decoded), decoded)  # unchanged
  # StudioGAN's quantize_images: uint8(clamp(255 (x + 1) / 2 + 0.5, 0, 255)).
  x = np.array([-1.5, -1.0, 2 * 10.49 / 255 - 1, 2 * 10.5 / 255 - 1, 0.0, 0.999, 1.0, 1.7])
  expected_u8 = np.array([0, 0, 10, 11, 128, 255, 255, 255])
  out = inception.quantize_8_bit(x.reshape(1, 8, 1, 1)).ravel()
  assert out.dtype == np.float32
  np.testing.assert_allclose(out, expected_u8 / 127.5 - 1, rtol=0, atol=1e-7)
