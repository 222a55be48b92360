"""Tests of gan_jax.bench.device_check: reading convolution dtypes off HLO, the settings,
and (slow) the whole check at CPU size."""

import json

import jax
import pytest

from gan_jax import errors
from gan_jax.bench import device_check
from gan_jax.bench import throughput_runners

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


def test_step_flops_fall_back_to_the_cpu_count_when_the_platform_reports_none(monkeypatch):
  # XLA:GPU gave no FLOP count for the lowered step (an H200, JAX 0.11.2), which left
  # the device check's TFLOP/s columns NaN. Simulate that: the first count (the
  # platform's own lowering) is missing; the runner must take step_gflop's count,
  # which on this CPU equals the platform's own count of the same step.
  spec = dict(model='dcgan', variant='float32', batch=4, width=8)
  runner = throughput_runners.JaxRunner(spec, devices=jax.devices()[:1])
  try:
    own = runner.model_gflop
    assert own > 0
    assert throughput_runners.step_gflop(runner.config) == pytest.approx(own, rel=1e-9)
  finally:
    runner.close()
  real_flops, calls = throughput_runners._flops, []

  def none_first(cost):
    calls.append(cost)
    return float('nan') if len(calls) == 1 else real_flops(cost)

  monkeypatch.setattr(throughput_runners, '_flops', none_first)
  runner = throughput_runners.JaxRunner(spec, devices=jax.devices()[:1])
  try:
    assert runner.model_gflop == pytest.approx(own, rel=1e-9)
  finally:
    runner.close()


@pytest.mark.slow
def test_quick_check_on_cpu_reports_every_part(tmp_path):
  settings = device_check.Settings(
      models=('dcgan',), **{**device_check.QUICK_SETTINGS, 'seconds': 0.5, 'max_batch': 16})
  lines = []
  report = device_check.run_check(settings, log=lines.append)
  json.dumps(report)   # JSON-serialisable as written by --json
  assert report['matmul']['tflops'] > 0
  dtypes = {(r['dtype'], r['batch']) for r in report['rows'] if r['model'] == 'dcgan'}
  assert ('float32', settings.batch) in dtypes and ('bfloat16', settings.batch) in dtypes
  for row in report['rows']:
    assert row['it_per_s'] > 0 and row['images_per_s'] == pytest.approx(row['it_per_s'] * row['batch'])
  assert report['inception']['images_per_s'] > 0
  assert not report['targets']['applies']   # no GPU: the targets are not judged
  # Every row is logged when measured (a run killed from outside keeps them).
  for row in report['rows']:
    assert any(line.startswith(f'{row["model"]} {row["dtype"]} batch {row["batch"]}:')
               for line in lines)
