"""Tests of gan_jax.bench.memory: the largest-batch search and the step's buffer sizes."""

import pytest

from gan_jax.bench import memory
from gan_jax.bench import presets


def linear(fixed, per_example):
  calls = []

  def peak(batch):
    calls.append(batch)
    return fixed + per_example * batch
  return peak, calls


@pytest.mark.parametrize('budget,multiple,expected_max', [
    (1000 + 7 * 300, 1, 300), (1000 + 7 * 300, 8, 296), (1000 + 7 * 5000, 1, 5000)])
def test_largest_batch_finds_the_largest_fitting_batch_within_tolerance(budget, multiple,
                                                                         expected_max):
  peak, calls = linear(1000, 7)
  batch, probes = memory.largest_batch(peak, budget, start=16, multiple=multiple)
  assert batch % multiple == 0 and peak(batch) <= budget
  assert expected_max * (1 - 1 / 16) - multiple <= batch <= expected_max
  assert len(probes) == len(set(calls) - {calls[-1]}) or len(probes) <= len(calls)
  assert len(probes) <= 12   # few probes: each compiles a step


def test_largest_batch_is_zero_when_nothing_fits():
  peak, _ = linear(10_000, 7)
  batch, _ = memory.largest_batch(peak, 5_000, start=64, multiple=4)
  assert batch == 0


def test_largest_batch_respects_max_batch():
  peak, _ = linear(0, 1)
  batch, probes = memory.largest_batch(peak, 10**9, start=4, max_batch=100)
  assert batch == 100 and max(probes) <= 100


def test_step_memory_grows_with_the_batch_and_counts_donation():
  small = memory.step_memory(memory.compile_step(_config(batch=4)))
  large = memory.step_memory(memory.compile_step(_config(batch=16)))
  assert large['temp'] > small['temp'] > 0
  for sizes in (small, large):
    # The donated state is aliased by the new state: counted once in the peak.
    assert sizes['alias'] > 0
    assert sizes['peak'] == sizes['argument'] + sizes['output'] - sizes['alias'] + sizes['temp']


def _config(batch):
  config = presets.model_config('dcgan', batch=batch, width=8)
  config.model.resolution = 32
  return config


def test_the_report_says_when_no_batch_fits():
  # A largest batch of 0 read as a batch size.
  row = dict(model='dcgan', dtype='float32', remat=False, batch=8, argument_mb=1.0,
             temp_mb=2.0, peak_mb=3.0, measured_peak_mb=None)
  assert memory.markdown_table([row]).splitlines()[-1].endswith('| 3.0 | - | - |')
  assert memory.markdown_table([dict(row, largest_batch=0)]).endswith('| none fits |')
  assert memory.markdown_table([dict(row, largest_batch=96)]).endswith('| 96 |')
