"""Evaluation in 2 real JAX processes x 2 fake CPU devices (gloo, coordinator on 127.0.0.1).

A small driver (no training run) builds the evaluator in each process with the
counting random-projection extractor of `eval_fakes` and checks what a pod
relies on:

  * both processes get the numbers of a one-process evaluation (this pytest
    process, 8 devices) for FID, IS, KID, precision / recall, density / coverage and intra-FID with
    its per-class values (the judge's proxy and cas, whose exchanges are the same
    primitives, run with simulated processes in test_sharded_eval.py);
  * each process generates only its own rows and embeds only its share of the
    reference images and of the samples;
  * the reference cache: process 0 writes it, and when only process 0 finds it
    (a cache folder per host) the others receive its copy instead of embedding;
  * a generator whose parameters live on the devices of both processes (as the
    training loop's state) evaluated with each process's own latents.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from gan_jax import metrics
from gan_jax.metrics import inception
from tests.compile_flags import subprocess_xla_flags

import eval_fakes

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT_S = 150
METRICS = 'fid,is,kid,pr,dc,intra_fid'  # proxy and cas: simulated in test_sharded_eval.py
NUM_SAMPLES = 121  # shares of 60 and 61 rows

DRIVER = r'''
import json, os, sys
sys.path[:0] = [os.getcwd(), os.path.join(os.getcwd(), 'tests')]
from gan_jax import distributed
index = int(os.environ['EVAL_PROCESS'])
distributed.initialize_distributed(
    distributed='explicit', coordinator_address=os.environ['EVAL_COORDINATOR'],
    num_processes=2, process_id=index, timeout_s=60)
import jax
import numpy as np
import eval_fakes
from gan_jax import metrics
from gan_jax import parallel
from gan_jax.metrics import inception

root = os.environ['EVAL_ROOT']
extractor = eval_fakes.CountingExtractor()
inception.extract_features = extractor
reference = eval_fakes.reference_digits()
out = {'devices': [jax.local_device_count(), jax.device_count()]}


def build(cache_dir):
  before = extractor.counts[index]
  evaluator = metrics.make_evaluator(
      eval_fakes.config(METRICS, num_samples=NUM_SAMPLES), data_shape=eval_fakes.SHAPE,
      cache_dir=cache_dir, inception_variables=extractor.variables,
      load_eval_data=eval_fakes.Loader(*reference))
  return evaluator, extractor.counts[index] - before


def evaluate(evaluator, generate):
  before = extractor.counts[index]
  return evaluator.run(generate, seed=0), extractor.counts[index] - before


shared = os.path.join(root, 'cache')
evaluator, out['embedded_reference'] = build(shared)
generate = eval_fakes.RowGenerator(*reference, seed=0, num_samples=NUM_SAMPLES, shift=1,
                                   offset=0.3)
out['rows'] = list(evaluator.rows)
out['run'], out['embedded_samples'] = evaluate(evaluator, generate)
out['generated_rows'] = sorted(r for rows, _ in generate.calls for r in rows if r >= 0)
out['cache_files'] = sorted(os.listdir(os.path.join(shared, 'reference')))
# A cache folder per process, where only process 0's holds the file.
evaluator, out['embedded_from_broadcast'] = build(
    shared if index == 0 else os.path.join(root, f'cache{index}'))
# Parameters replicated over the devices of both processes, latents per process.
mesh = jax.make_mesh((jax.device_count(),), ('data',), devices=jax.devices())
replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
weights = jax.make_array_from_process_local_data(replicated, eval_fakes.generator_weights())
forward = jax.jit(eval_fakes.linear_generator)
out['global_run'], _ = evaluate(
    evaluator, lambda z, labels: parallel.to_host(forward(weights, z, labels)))
with open(os.path.join(root, f'process{index}.json'), 'w') as f:
  json.dump(out, f)
'''


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _run_driver(tmp_path):
  driver = tmp_path / 'driver.py'
  driver.write_text(f'METRICS = {METRICS!r}\nNUM_SAMPLES = {NUM_SAMPLES}\n' + DRIVER)
  coordinator = f'127.0.0.1:{_free_port()}'
  processes = []
  for index in range(2):
    env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONUNBUFFERED='1',
               XLA_FLAGS=subprocess_xla_flags(devices=2),
               EVAL_PROCESS=str(index), EVAL_COORDINATOR=coordinator, EVAL_ROOT=str(tmp_path))
    with open(tmp_path / f'process{index}.log', 'w', encoding='utf-8') as log:
      processes.append(subprocess.Popen([sys.executable, str(driver)], cwd=REPO, env=env,
                                        stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True))
  start = time.monotonic()
  try:
    for index, process in enumerate(processes):
      code = process.wait(timeout=max(1, LIMIT_S - (time.monotonic() - start)))
      output = (tmp_path / f'process{index}.log').read_text(encoding='utf-8')
      assert code == 0, f'process {index} exited with {code}:\n{output[-4000:]}'
  finally:
    for process in processes:
      if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)  # this test's own process group
        process.wait()
  return [json.loads((tmp_path / f'process{i}.json').read_text()) for i in range(2)]


def _one_process(cache_dir, generators):
  """The same evaluations in this (one) process, on its 8 devices."""
  extractor = eval_fakes.CountingExtractor()
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(inception, 'extract_features', extractor)
    evaluator = metrics.make_evaluator(
        eval_fakes.config(METRICS, num_samples=NUM_SAMPLES), data_shape=eval_fakes.SHAPE,
        cache_dir=cache_dir, inception_variables=extractor.variables,
        load_eval_data=eval_fakes.Loader(*eval_fakes.reference_digits()))
    return [evaluator.run(generate, seed=0) for generate in generators]


@pytest.fixture(scope='module')
def processes(tmp_path_factory):
  """The outputs of the driver's two processes (it runs once for the module)."""
  root = tmp_path_factory.mktemp('two_processes')
  start = time.monotonic()
  outputs = _run_driver(root)
  print(f'two processes: {time.monotonic() - start:.1f} s')
  return outputs


@pytest.fixture(scope='module')
def alone(tmp_path_factory):
  cache_dir = tmp_path_factory.mktemp('alone')
  rows = eval_fakes.RowGenerator(*eval_fakes.reference_digits(), seed=0,
                                 num_samples=NUM_SAMPLES, shift=1, offset=0.3)
  weights = eval_fakes.generator_weights()
  linear = lambda z, labels: np.asarray(eval_fakes.linear_generator(weights, z, labels))
  return _one_process(cache_dir, [rows, linear])


def _assert_same(got, want):
  assert set(got['results']) == set(want['results'])
  for key, value in want['results'].items():
    assert got['results'][key] == pytest.approx(value, rel=1e-6, abs=1e-12), key
  for key, values in want['per_class'].items():
    np.testing.assert_allclose(got['per_class'][key], values, rtol=1e-6, err_msg=key)


def test_both_processes_get_the_numbers_of_one_process(processes, alone):
  first, second = processes
  assert first['devices'] == [2, 4]
  assert first['run'] == second['run']
  _assert_same(first['run'], alone[0])


def test_each_process_generates_and_embeds_only_its_share(processes):
  first, second = processes
  assert [first['rows'], second['rows']] == [[0, 60], [60, NUM_SAMPLES]]
  assert first['generated_rows'] == list(range(60))
  assert second['generated_rows'] == list(range(60, NUM_SAMPLES))
  assert [first['embedded_reference'], second['embedded_reference']] == [60, 60]
  assert [first['embedded_samples'], second['embedded_samples']] == [60, 61]


def test_process_0_writes_the_reference_cache_and_sends_it_where_it_is_missing(
    processes, tmp_path_factory):
  first, second = processes
  assert len(first['cache_files']) == 1
  assert first['cache_files'] == second['cache_files']  # one shared folder
  assert [first['embedded_from_broadcast'], second['embedded_from_broadcast']] == [0, 0]
  assert not list(tmp_path_factory.getbasetemp().glob('two_processes*/cache1'))


def test_a_generator_with_parameters_on_both_processes(processes, alone):
  first, second = processes
  assert first['global_run'] == second['global_run']
  _assert_same(first['global_run'], alone[1])
