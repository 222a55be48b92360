"""Tests of gan_jax.bench.device_check: reading convolution dtypes off HLO, the settings,
and (slow) the whole check at CPU size."""

import json

import pytest

from gan_jax import errors
from gan_jax.bench import device_check

HLO = """
HloModule step
ENTRY %main {
  %p0 = bf16[8,32,32,3]{3,2,1,0} parameter(0)
  %p1 = bf16[3,3,3,16]{3,2,1,0} parameter(1)
  %c0 = bf16[8,32,32,16]{3,2,1,0} convolution(%p0, %p1), window={size=3x3}, dim_labels=b01f_01io->b01f
  %c1 = f32[8,32,32,16]{3,2,1,0} convolution(f32[8,32,32,3]{3,2,1,0} %x, f32[3,3,3,16]{3,2,1,0} %w), window={size=3x3}
  %g = (f32[8,32,32,16]{3,2,1,0}, u8[0]{0}) custom-call(bf16[8,32,32,3]{3,2,1,0} %p0, bf16[3,3,3,16]{3,2,1,0} %p1), custom_call_target="__cudnn$convForward"
  ROOT %o = f32[1]{0} custom-call(f32[1]{0} %y), custom_call_target="SomethingElse"
}
"""


def test_hlo_conv_dtypes_counts_convolutions_by_operand_types():
  # Operand types come from definitions (%c0) or inline (%c1, the cuDNN call); other
  # custom calls are not convolutions.
  assert device_check.hlo_conv_dtypes(HLO) == {'bf16/bf16': 2, 'f32/f32': 1}


def test_unknown_model_or_dtype_is_a_config_error():
  with pytest.raises(errors.ConfigError, match='unknown'):
    device_check.Settings(models=('vgg',))
  with pytest.raises(errors.ConfigError):
    device_check.Settings(dtypes=('float16',))


@pytest.mark.slow
def test_quick_check_on_cpu_reports_every_part(tmp_path):
  settings = device_check.Settings(
      models=('dcgan',), **{**device_check.QUICK_SETTINGS, 'seconds': 0.5, 'max_batch': 16})
  report = device_check.run_check(settings, log=lambda line: None)
  json.dumps(report)   # JSON-serialisable as written by --json
  assert report['matmul']['tflops'] > 0
  dtypes = {(r['dtype'], r['batch']) for r in report['rows'] if r['model'] == 'dcgan'}
  assert ('float32', settings.batch) in dtypes and ('bfloat16', settings.batch) in dtypes
  for row in report['rows']:
    assert row['it_per_s'] > 0 and row['images_per_s'] == pytest.approx(row['it_per_s'] * row['batch'])
  assert report['inception']['images_per_s'] > 0
  assert not report['targets']['applies']   # no GPU: the targets are not judged
