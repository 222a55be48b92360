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


def test_a_model_dtype_or_form_named_twice_is_refused():
  # Every row was timed twice.
  with pytest.raises(errors.ConfigError, match='--dtypes names float32 twice'):
    device_check.Settings(dtypes=('float32', 'float32'))
  with pytest.raises(errors.ConfigError, match='--models names dcgan twice'):
    device_check.Settings(models=('dcgan', 'resnet', 'dcgan'))
  with pytest.raises(errors.ConfigError, match='--stride2_forms names custom twice'):
    device_check.Settings(stride2_forms=('custom', 'xla', 'custom'))
  device_check.Settings(stride2_forms=('custom', 'xla'))


def _fake_check(monkeypatch, budget_s, models=('dcgan', 'resnet', 'biggan'),
                stride2_forms=('custom',)):
  """run_check with every measurement replaced by a stub that records the call order.

  The stub's rows use 50% of the matmul rate, 60% with XLA's stride-2 forms.
  """
  calls = []

  def fake_time_step(model, *, dtype, batch, stride2_forms='custom', **unused):
    calls.append(f'{model} {dtype} {batch}' + ('' if stride2_forms == 'custom' else ' xla'))
    return dict(model=model, dtype=dtype, batch=batch, it_per_s=1.0, tflops=1.0,
                images_per_s=batch, gflop_per_step=1.0, conv_dtypes_lowered={},
                conv_dtypes_compiled={}, stride2_forms=stride2_forms,
                matmul_fraction=0.6 if stride2_forms == 'xla' else 0.5,
                xla_mem_mb=200.0 if stride2_forms == 'xla' else 100.0)

  def fake_largest(model, *, batch, estimate_at_batch, **unused):
    calls.append(f'{model} largest (estimate at {batch}: {estimate_at_batch / 2**20:.0f} MB)')
    return 4 * batch, 2**30

  def fake_inception(batch, seconds):
    calls.append('inception')
    return dict(batch=batch, images_per_s=1000.0, compile_s=0.0, fid50k_projected_s=100.0)

  monkeypatch.setattr(device_check, 'time_step', fake_time_step)
  monkeypatch.setattr(device_check, 'largest_power_of_two_batch', fake_largest)
  monkeypatch.setattr(device_check, 'inception_rate', fake_inception)
  monkeypatch.setattr(device_check, 'matmul_rate', lambda *a: dict(tflops=2.0))
  settings = device_check.Settings(models=models, batch=8, budget_s=budget_s,
                                   stride2_forms=stride2_forms)
  lines = []
  return device_check.run_check(settings, log=lines.append), calls, lines


def test_every_model_at_the_reference_batch_before_any_largest_batch(monkeypatch):
  report, calls, lines = _fake_check(monkeypatch, budget_s=1e9)
  assert calls == [
      'dcgan float32 8', 'dcgan bfloat16 8', 'inception',
      'resnet float32 8', 'resnet bfloat16 8', 'biggan float32 8', 'biggan bfloat16 8',
      'dcgan largest (estimate at 8: 100 MB)', 'dcgan float32 32', 'dcgan bfloat16 32',
      'resnet largest (estimate at 8: 100 MB)', 'resnet float32 32', 'resnet bfloat16 32',
      'biggan largest (estimate at 8: 100 MB)', 'biggan float32 32', 'biggan bfloat16 32']
  assert report['largest_batch']['dcgan'] == {'batch': 32, 'estimate_mb': 1024.0}
  assert report['targets']['dcgan_bf16_largest_matmul_fraction'] == 0.5
  assert not report['skipped']
  assert sum(line.endswith('(50.0% of matmul)') for line in lines) == 12


def test_stride2_forms_time_every_dcgan_row_in_each_form(monkeypatch):
  report, calls, lines = _fake_check(monkeypatch, budget_s=1e9, models=('dcgan', 'resnet'),
                                     stride2_forms=('custom', 'xla'))
  assert calls == [
      'dcgan float32 8', 'dcgan bfloat16 8', 'dcgan float32 8 xla', 'dcgan bfloat16 8 xla',
      'inception', 'resnet float32 8', 'resnet bfloat16 8',
      # The largest batch is searched from the custom forms' float32 estimate.
      'dcgan largest (estimate at 8: 100 MB)',
      'dcgan float32 32', 'dcgan bfloat16 32', 'dcgan float32 32 xla', 'dcgan bfloat16 32 xla',
      'resnet largest (estimate at 8: 100 MB)', 'resnet float32 32', 'resnet bfloat16 32']
  # The target takes the better form.
  assert report['targets']['dcgan_bf16_largest_matmul_fraction'] == 0.6
  assert report['targets']['dcgan_bf16_largest_stride2_forms'] == 'xla'
  assert any(line.startswith('dcgan bfloat16 batch 32 xla:') for line in lines)
  assert 'dcgan (xla stride-2 forms)' in device_check.markdown_table(report)
  with pytest.raises(errors.ConfigError, match='stride2_forms'):
    device_check.Settings(stride2_forms=('cudnn',))


def test_nothing_starts_after_the_budget(monkeypatch):
  report, calls, _ = _fake_check(monkeypatch, budget_s=-1.0, models=('dcgan', 'biggan'))
  assert calls == []
  assert report['skipped'] == [
      'dcgan float32 batch 8', 'dcgan bfloat16 batch 8', 'inception',
      'biggan float32 batch 8', 'biggan bfloat16 batch 8',
      'dcgan largest batch', 'biggan largest batch']
  assert report['rows'] == [] and report['largest_batch'] == {}


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


def test_both_stride2_forms_are_credited_the_same_flops():
  # XLA counts the input-dilated forms' FLOPs differently from the custom forms';
  # the arithmetic is the same, so the matmul fractions must use one count.
  counts = {}
  for forms in ('custom', 'xla'):
    spec = dict(model='dcgan', variant='float32', batch=4, width=8, stride2_forms=forms)
    runner = throughput_runners.JaxRunner(spec, devices=jax.devices()[:1])
    try:
      assert runner.config.model.stride2_forms == forms
      counts[forms] = runner.model_gflop
    finally:
      runner.close()
  assert counts['custom'] > 0 and counts['xla'] == pytest.approx(counts['custom'], rel=1e-9)


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


class _Rounds:
  """A runner whose timed rounds run at the given speeds (it/s); the first call is
  the warm-up that sizes the rounds."""

  def __init__(self, speeds):
    self.speeds = list(speeds)

  def run(self, iterations):
    if iterations == 1:
      return 0.01, 0.0, None
    speed = self.speeds.pop(0)
    return iterations / speed, 0.1 * iterations / speed, None


def test_time_runner_reports_the_median_round_not_the_fastest():
  speed, wait = device_check._time_runner(_Rounds([100.0, 50.0, 80.0]), seconds=3.0)  # pylint: disable=protected-access
  assert speed == pytest.approx(80.0) and wait == pytest.approx(0.1)


def test_quick_keeps_the_sizes_given_explicitly():
  settings = device_check.Settings(batch=4, seconds=0.5)
  out = device_check.quick(settings, given={'batch', 'seconds'})
  assert (out.batch, out.seconds) == (4, 0.5)
  assert out.max_batch == device_check.QUICK_SETTINGS['max_batch']
  assert device_check.quick(settings).batch == device_check.QUICK_SETTINGS['batch']
