"""Smoke test of the throughput harness: a tiny width, two rounds, the JSON schema.

The real measurement (`python -m gan_jax.bench.throughput`) takes minutes; this only
checks that the harness runs the real training step end to end and reports every
field. PyTorch is exercised when it is installed.
"""

import pytest

from gan_jax import errors
from gan_jax import models
from gan_jax.bench import presets
from gan_jax.bench import report_files
from gan_jax.bench import throughput
from gan_jax.bench import worker_process

ROW_FIELDS = {
    'framework', 'variant', 'width', 'batch', 'it_per_s', 'it_per_s_min', 'it_per_s_max',
    'images_per_s', 'per_round_it_per_s', 'input_wait_share', 'cpu_s_per_iter',
    'compile_s', 'compile_cpu_s', 'first_step_s', 'peak_mem_mb', 'xla_mem_mb', 'gflop_per_iter'}


def test_harness_smoke_reports_every_field():
  have_torch = throughput.torch_available()
  report = throughput.run_benchmark(throughput.Settings(
      widths=(2,), batch=4, rounds=2, round_seconds=0.05, torch_variants=('eager',),
      profile=1))
  assert report['settings']['batch'] == 4
  assert report['machine']['cpu'] == report_files.cpu_model() != ''
  rows = report['rows']
  assert [r['framework'] for r in rows] == ['gan_jax'] + (['torch'] if have_torch else [])
  for row in rows:
    assert ROW_FIELDS <= set(row), ROW_FIELDS - set(row)
    assert row['width'] == 2 and row['batch'] == 4
    assert len(row['per_round_it_per_s']) == 2
    assert 0 < row['it_per_s_min'] <= row['it_per_s'] <= row['it_per_s_max']
    assert row['images_per_s'] == pytest.approx(row['it_per_s'] * 4)
    assert 0.0 <= row['input_wait_share'] <= 1.0
    assert row['compile_s'] > 0 and row['gflop_per_iter'] > 0
  ours = rows[0]
  assert ours['xla_mem_mb'] > 0
  if have_torch:
    assert set(report['ratio_vs_torch_eager']) == {'2'}
    assert report['ratio_vs_torch_eager']['2'] > 0
    # Same architecture and iteration (G forward once, reused by the G update).
    assert 0.5 < ours['gflop_per_iter'] / rows[1]['gflop_per_iter'] < 2.0
  assert 'float32/w2' in report['profile']
  assert '| gan_jax | float32 | 2 |' in throughput.markdown_table(report)


def test_jax_config_matches_pytorch_example():
  config = presets.jax_config(32, 64)
  assert (config.model.resolution, config.model.channels, config.model.z_dim) == (64, 3, 100)
  assert config.model.ngf == config.model.ndf == 32
  assert config.train.batch_size == 64 and config.train.ema_decay == 0.0
  assert config.loss.type == 'non_saturating'
  assert config.optim.g.b1 == config.optim.d.b1 == 0.5


@pytest.mark.parametrize('settings', [dict(jax_variants=('float16',)),
                                      dict(jax_variants=('float32/mkl',)),
                                      dict(torch_variants=('compiled',))])
def test_bad_variants_are_config_errors(settings):
  with pytest.raises(errors.ConfigError):
    throughput.Settings(**settings)


def test_variants_pick_dtype_and_cpu_conv_kernels():
  assert presets.parse_jax_variant('float32') == ('float32', 'eigen')
  assert presets.parse_jax_variant('bfloat16/xla_default') == (
      'bfloat16', 'xla_default')
  config = presets.jax_config(16, 8, 'float32/xla_default')
  assert config.parallel.cpu_conv_kernels == 'xla_default'
  assert config.model.dtype == 'float32'
  assert presets.jax_config(16, 8).parallel.cpu_conv_kernels == 'eigen'


def test_the_jax_preset_has_the_pytorch_examples_parameter_counts():
  # PyTorch's DCGAN example (nz 100, ngf = ndf = 64, 3 channels), by hand:
  # G: 4x4 transposed convs 100->512->256->128->64->3 without bias,
  #    16 * (100*512 + 512*256 + 256*128 + 128*64 + 64*3) = 3,574,784, plus BatchNorm
  #    gains and biases 2 * (512 + 256 + 128 + 64) = 1,920: 3,576,704.
  # D: 4x4 convs 3->64->128->256->512->1 without bias,
  #    16 * (3*64 + 64*128 + 128*256 + 256*512 + 512) = 2,763,776, plus BatchNorm
  #    2 * (128 + 256 + 512) = 1,792: 2,765,568.
  assert models.count_params(presets.jax_config(64, 64).model) == (3_576_704, 2_765_568)


@pytest.mark.parametrize('model,family,classes', [('toy_ring', 'mlp', 0),
                                                  ('cgan_digits', 'dcgan', 10)])
def test_model_flag_times_any_config(model, family, classes):
  report = throughput.run_benchmark(throughput.Settings(
      model=model, batch=8, rounds=1, round_seconds=0.05, torch=False))
  config = presets.model_config(model, batch=8)
  assert (config.model.name, config.model.num_classes) == (family, classes)
  (row,) = report['rows']
  assert row['framework'] == 'gan_jax' and row['batch'] == 8 and row['it_per_s'] > 0
  assert report['benchmark'].startswith(f'{model}_')


def test_zoo_model_names_load_their_config_files():
  assert presets.model_config('sagan', batch=4).model.name == 'sagan'
  assert presets.model_config('resnet', batch=4, width=8).model.ngf == 8
  with pytest.raises(errors.ConfigError, match="'nope' is not one of the benchmark models"):
    throughput.Settings(model='nope')


def test_a_width_for_a_config_whose_family_reads_no_ngf_is_refused():
  # toy_grid's MLP is sized by model.hidden: every --widths value would time one network.
  for width in (16, 64):  # 64 is the default ngf: still not what the MLP reads
    with pytest.raises(errors.ConfigError, match='--widths sets model.ngf / ndf, which the mlp'):
      presets.model_config('toy_grid', batch=8, width=width)
  assert presets.model_config('toy_grid', batch=8).model.name == 'mlp'


def test_widths_are_positive_and_named_once():
  assert throughput._parse_widths(['16', '32']) == (16, 32)  # pylint: disable=protected-access
  assert throughput._parse_widths([]) is None  # pylint: disable=protected-access
  for bad, message in ((['8', '8'], 'names a width twice'), (['0'], 'positive integers'),
                       (['a'], 'positive integers')):
    with pytest.raises(errors.ConfigError, match=message):
      throughput._parse_widths(bad)  # pylint: disable=protected-access


def test_a_worker_that_exits_without_a_reply_is_a_short_error():
  # XLA ends the worker at start-up on a flag it does not know: a user's error to fix
  # (one line from the tools), not a traceback.
  with pytest.raises(errors.WorkerExitedError, match='gan_jax worker exited with code .* '
                     'without a reply: .*an XLA flag'):
    worker_process.Worker({'framework': 'gan_jax', 'variant': 'float32',
                           'xla_flags': '--no_such_xla_flag_for_this_test'})
