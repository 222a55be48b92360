"""Smoke test of the throughput harness: a tiny width, two rounds, the JSON schema.

The real measurement (`python -m gan_jax.bench.throughput`) takes minutes; this only
checks that the harness runs the real training step end to end and reports every
field. PyTorch is exercised when it is installed.
"""

import json

import pytest

from gan_jax.bench import throughput

ROW_FIELDS = {
    'framework', 'variant', 'width', 'batch', 'it_per_s', 'it_per_s_min', 'it_per_s_max',
    'images_per_s', 'per_round_it_per_s', 'input_wait_share', 'cpu_s_per_iter',
    'compile_s', 'compile_cpu_s', 'first_step_s', 'peak_mem_mb', 'xla_mem_mb', 'gflop_per_iter'}


def test_harness_smoke_writes_json(tmp_path, capsys):
  path = tmp_path / 'bench.json'
  have_torch = throughput.torch_available()
  throughput.main([
      '--widths', '2', '--batch', '4', '--rounds', '2', '--round_seconds', '0.05',
      '--min_iters', '1', '--torch_variants', 'eager', '--profile', '1',
      '--json', str(path)])
  report = json.loads(path.read_text())
  assert report['settings']['batch'] == 4
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
    # Same architecture and iteration: FLOPs agree up to gan_jax's second G forward
    # (it draws fresh z for the G update; the PyTorch example reuses the D step's fake).
    assert 0.5 < ours['gflop_per_iter'] / rows[1]['gflop_per_iter'] < 2.0
  assert 'float32/w2' in report['profile']
  out = capsys.readouterr().out
  assert '| gan_jax | float32 | 2 |' in out


def test_jax_config_matches_pytorch_example():
  config = throughput.jax_config(32, 64)
  assert (config.model.resolution, config.model.channels, config.model.z_dim) == (64, 3, 100)
  assert config.model.ngf == config.model.ndf == 32
  assert config.train.batch_size == 64 and config.train.ema_decay == 0.0
  assert config.loss.type == 'non_saturating'
  assert config.optim.g.b1 == config.optim.d.b1 == 0.5


def test_bad_variant_is_a_usage_error():
  with pytest.raises(SystemExit):
    throughput.parse_args(['--jax_variants', 'float16'])
  with pytest.raises(SystemExit):
    throughput.parse_args(['--jax_variants', 'float32/mkl'])


def test_variants_pick_dtype_and_cpu_conv_kernels():
  assert throughput.parse_jax_variant('float32') == ('float32', 'eigen')
  assert throughput.parse_jax_variant('bfloat16/xla_default') == ('bfloat16', 'xla_default')
  config = throughput.jax_config(16, 8, 'float32/xla_default')
  assert config.parallel.cpu_conv_kernels == 'xla_default'
  assert config.model.dtype == 'float32'
  assert throughput.jax_config(16, 8).parallel.cpu_conv_kernels == 'eigen'


@pytest.mark.skipif(not throughput.torch_available(), reason='torch not installed')
def test_torch_dcgan_param_counts():
  net_g, net_d = throughput.torch_dcgan(100, 64, 64, 3)
  assert sum(p.numel() for p in net_g.parameters()) == 3_576_704
  assert sum(p.numel() for p in net_d.parameters()) == 2_765_568
