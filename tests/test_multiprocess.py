"""Multi-process runs: 2 local processes x 2 fake CPU devices, started like a pod.

Every test starts real `gan_jax.main` processes (CPU, gloo collectives,
coordinator on 127.0.0.1 at a free port) and checks what multi-host users
rely on:

  * the two processes end with identical parameters, equal to a one-process
    4-device run fed the same global batches;
  * only process 0 writes metrics.jsonl, TensorBoard events, sample grids and
    eval.jsonl, and each process's data-iterator state is checkpointed;
  * a run whose process 1 is SIGKILLed after the checkpoint of step N ends on
    process 0 with JAX's error naming process 1 within --distributed_timeout,
    keeps checkpoint N, and resumes (launch/local_multiprocess.sh) to step 2N
    with the result of an uninterrupted run;
  * a process whose peer never starts ends within --distributed_timeout with an
    error naming the missing process;
  * SIGTERM to one process stops both at the same step with a checkpoint and
    status 143, and the run resumes to the uninterrupted result.

The runs share a persistent compilation cache, so only the first run of each
kind compiles. They use the toy MLP (no BatchNorm) with SGD: the all-reduce of
gloo and that of one process sum in different orders, and over several Adam
steps such float32 differences are amplified in coordinates with tiny
gradients (Adam divides by their RMS), while SGD keeps them at rounding level.
"""

import datetime
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.compile_flags import subprocess_xla_flags

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
N = 2  # checkpoint / kill step; every run trains to 2N
TIMEOUT_S = 10  # --distributed_timeout of the runs that lose a process
MISSING_TIMEOUT_S = 10  # --distributed_timeout of the never-arriving peer test
RUN_LIMIT_S = 240  # a hung run fails the test instead of hanging CI

ARGS = [
    '--config=configs/toy_grid.py:baseline,smoke',
    f'--config.train.num_steps={2 * N}',
    f'--config.train.checkpoint_every={N}',
    f'--config.train.sample_every={N}',
    '--config.train.log_every=1',
    '--config.train.batch_size=16',
    '--config.train.num_sample_images=64',
    '--config.model.hidden=32',
    '--config.optim.g.name=sgd',
    '--config.optim.d.name=sgd',
    '--config.optim.g.learning_rate=0.05',
    '--config.optim.d.learning_rate=0.05',
    '--config.eval.every=0',  # evaluate at the end, on both processes
    '--config.eval.metrics=proxy',
    '--config.eval.num_samples=256',
]

# Runs gan_jax.main's `main` unchanged; besides, it records this process's
# parameters at the start and the end (every local device's copy) and the files it
# opened for writing, into $GAN_TEST_DUMP. With $GAN_TEST_CONCAT_SHARDS=K
# (one process only) each batch is the concatenation of the K shards that K
# processes would read, i.e. the same global batch as a K-process run.
DRIVER = r'''
import json, os, sys
sys.path.insert(0, os.getcwd())  # as `python -m gan_jax.main` has it: configs/ is importable
import jax
import numpy as np
from gan_jax import data as data_lib
from gan_jax import main
from gan_jax import parallel
from gan_jax import train

dump_path = os.environ['GAN_TEST_DUMP']
writes = set()
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND


def audit(event, args):
  if event == 'os.rename':  # os.replace too: a file written whole under another name
    writes.add(os.path.abspath(os.fsdecode(args[1])))
    return
  if event != 'open' or not isinstance(args[0], (str, bytes, os.PathLike)):
    return
  mode, flags = args[1], args[2]
  writing = any(c in mode for c in 'wax+') if isinstance(mode, str) else flags & WRITE_FLAGS
  if writing:
    writes.add(os.path.abspath(os.fsdecode(args[0])))


sys.addaudithook(audit)


def copies(tree):
  """{path: f32[local devices, ...]}: every local copy of every leaf."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    shards = leaf.addressable_shards if isinstance(leaf, jax.Array) else []
    out[jax.tree_util.keystr(path)] = (np.stack([np.asarray(s.data) for s in shards])
                                       if shards else np.asarray(leaf)[None])
  return out


saved = {}
put_state = parallel.DataParallel.put_state


def recording_put_state(self, state):  # the start state: new or restored
  state = put_state(self, state)
  saved.setdefault('init', copies({'g': state.g_params, 'd': state.d_params}))
  return state


parallel.DataParallel.put_state = recording_put_state
train_and_evaluate = train.train_and_evaluate


def recording_train_and_evaluate(config, workdir, **kwargs):
  state = train_and_evaluate(config, workdir, **kwargs)
  arrays = {'final' + k: v for k, v in copies({'g': state.g_params, 'd': state.d_params}).items()}
  arrays.update({'init' + k: v for k, v in saved.get('init', {}).items()})
  np.savez(dump_path + '.npz', **arrays)
  with open(dump_path + '.json', 'w') as f:
    json.dump(sorted(writes), f)
  return state


train.train_and_evaluate = recording_train_and_evaluate

shards = int(os.environ.get('GAN_TEST_CONCAT_SHARDS', '0'))
if shards:
  create_iterator = data_lib.create_train_iterator

  class Concatenated:
    def __init__(self, iterators):
      self.iterators = iterators
    def __iter__(self):
      return self
    def __next__(self):
      batches = [next(it) for it in self.iterators]
      return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    def get_state(self):
      return self.iterators[0].get_state()
    def set_state(self, state):
      raise NotImplementedError
    def close(self):
      for it in self.iterators:
        it.close()

  def concatenated(data_config, *, data_shape, batch_size, seed, shard_index=0, shard_count=1,
                   labels=False, updates_per_batch=1):
    assert shard_count == 1 and batch_size % shards == 0
    return Concatenated([
        create_iterator(data_config, data_shape=data_shape, batch_size=batch_size // shards,
                        seed=seed, shard_index=i, shard_count=shards, labels=labels,
                        updates_per_batch=updates_per_batch)
        for i in range(shards)])

  data_lib.create_train_iterator = concatenated

# $GAN_TEST_SIGTERM_AT_STEP=S: this process gets SIGTERM (a preemption notice) in the
# training loop, at step S, after that step's stop flag was read.
sigterm_at = int(os.environ.get('GAN_TEST_SIGTERM_AT_STEP', '0'))
if sigterm_at:
  import signal
  from gan_jax import preemption
  agree = preemption.agree

  def signalled_agree(flag, step, every):
    if step == sigterm_at:
      os.kill(os.getpid(), signal.SIGTERM)
    return agree(flag, step, every)

  preemption.agree = signalled_agree

main.run()
'''


def free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


_STARTED = []  # every Process of this module, stopped at its end if still running


class Process:
  """A started subprocess (own session) whose combined output goes to a file."""

  def __init__(self, command, *, env, log_path):
    self.log_path = log_path
    with open(log_path, 'w', encoding='utf-8') as log:
      self.popen = subprocess.Popen(command, cwd=REPO, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
    self.start = time.monotonic()
    _STARTED.append(self)
    self.end = None  # time.monotonic() when the exit was seen
    self.end_of_day = None  # wall-clock seconds since midnight, as in absl log lines

  def _ended(self):
    if self.end is None:
      self.end = time.monotonic()
      now = datetime.datetime.now()
      self.end_of_day = now.hour * 3600 + now.minute * 60 + now.second + now.microsecond / 1e6

  def wait(self, limit_s=RUN_LIMIT_S):
    try:
      self.popen.wait(timeout=max(1, limit_s - (time.monotonic() - self.start)))
    except subprocess.TimeoutExpired:
      self.stop()
      pytest.fail(f'{self.log_path} did not finish within {limit_s} s:\n{self.output()[-3000:]}')
    self._ended()
    return self.popen.returncode

  def poll(self):
    code = self.popen.poll()
    if code is not None:
      self._ended()
    return code

  def stop(self):
    if self.popen.poll() is None:
      os.killpg(self.popen.pid, signal.SIGKILL)  # this test's own process group
      self.popen.wait()

  def output(self):
    with open(self.log_path, encoding='utf-8', errors='replace') as f:
      return f.read()


@pytest.fixture(scope='module', autouse=True)
def _stop_leftovers():
  yield
  for process in _STARTED:
    process.stop()


def environment(cache_dir, devices, **extra):
  env = dict(os.environ)
  env.update(
      JAX_PLATFORMS='cpu',
      XLA_FLAGS=subprocess_xla_flags(devices),
      JAX_COMPILATION_CACHE_DIR=cache_dir,
      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
      JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='-1',
      PYTHONUNBUFFERED='1',
      **{k: str(v) for k, v in extra.items()})
  return env


def start_processes(root, name, *, workdir, driver, cache_dir, timeout_s=60, env_by_process=None,
                    num_processes=2, only=None, extra_args=()):
  """Starts the processes of one multi-process run (or only some of them); `extra_args`
  replace the ARGS of the same flags (a flag given twice is refused) and add others."""
  overridden = {arg.split('=', 1)[0] for arg in extra_args}
  args = [arg for arg in ARGS if arg.split('=', 1)[0] not in overridden]
  port = free_port()
  processes = {}
  for i in range(num_processes) if only is None else only:
    extra = dict(GAN_TEST_DUMP=os.path.join(root, f'{name}_process{i}'))
    extra.update((env_by_process or {}).get(i, {}))
    command = [PYTHON, driver, f'--workdir={workdir}', f'--coordinator_address=127.0.0.1:{port}',
               f'--num_processes={num_processes}', f'--process_id={i}',
               f'--distributed_timeout={timeout_s}', *args, *extra_args]
    processes[i] = Process(command, env=environment(cache_dir, 2, **extra),
                           log_path=os.path.join(root, f'{name}_process{i}.log'))
  return processes


def wait_all(processes):
  codes = {i: p.wait() for i, p in processes.items()}
  for i, code in codes.items():
    assert code == 0, f'process {i} exited with {code}:\n{processes[i].output()[-4000:]}'


def load_dump(root, name):
  with np.load(os.path.join(root, name + '.npz')) as f:
    arrays = dict(f)
  with open(os.path.join(root, name + '.json'), encoding='utf-8') as f:
    writes = json.load(f)
  return arrays, writes


def restore(workdir, step):
  """(g_params and d_params as {path: array}, raw data item) of a checkpoint."""
  import jax  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from gan_jax import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  from gan_jax import state as state_lib  # pylint: disable=g-import-not-at-top
  from gan_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  config = workdir_lib.load_config(workdir)
  sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), async_save=False)
  state, _, _ = ckpt.restore(state_lib.abstract_state(config, sharding), step)
  ckpt.close()
  manager = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'), item_names=('data',))
  data = manager.restore(step, args=ocp.args.Composite(data=ocp.args.JsonRestore()))['data']
  manager.close()
  leaves = jax.tree_util.tree_flatten_with_path({'g': state.g_params, 'd': state.d_params})[0]
  return {jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves}, data


def final_params(arrays, prefix='final'):
  """{leaf: one copy}, checking that every local device holds the same copy."""
  out = {}
  for key, copies in arrays.items():
    if key.startswith(prefix):
      for copy in copies[1:]:
        np.testing.assert_array_equal(copy, copies[0], err_msg=f'local copies of {key} differ')
      out[key[len(prefix):]] = copies[0]
  return out


def relative_error(a, b):
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """The uninterrupted 2-process run and the 1-process 4-device reference."""
  root = str(tmp_path_factory.mktemp('multiprocess'))
  driver = os.path.join(root, 'driver.py')
  with open(driver, 'w', encoding='utf-8') as f:
    f.write(DRIVER)
  cache_dir = os.path.join(root, 'jax_cache')
  uninterrupted = os.path.join(root, 'uninterrupted')
  wait_all(start_processes(root, 'uninterrupted', workdir=uninterrupted, driver=driver,
                           cache_dir=cache_dir))
  single = os.path.join(root, 'single')
  process = Process([PYTHON, driver, f'--workdir={single}', *ARGS],
                    env=environment(cache_dir, 4, GAN_TEST_DUMP=os.path.join(root, 'single'),
                                    GAN_TEST_CONCAT_SHARDS=2),
                    log_path=os.path.join(root, 'single.log'))
  assert process.wait() == 0, process.output()[-4000:]
  return dict(root=root, driver=driver, cache_dir=cache_dir, uninterrupted=uninterrupted,
              single=single)


def test_two_processes_match_one_process(runs):
  root = runs['root']
  dumps = [load_dump(root, f'uninterrupted_process{i}') for i in range(2)]
  finals = [final_params(arrays) for arrays, _ in dumps]
  inits = [final_params(arrays, 'init') for arrays, _ in dumps]
  single_arrays, _ = load_dump(root, 'single')
  single_final, single_init = final_params(single_arrays), final_params(single_arrays, 'init')
  assert finals[0].keys() == single_final.keys() and finals[0]

  for key in finals[0]:
    # The state is replicated: both processes hold bit-identical parameters.
    np.testing.assert_array_equal(finals[1][key], finals[0][key], err_msg=key)
    np.testing.assert_array_equal(inits[0][key], single_init[key], err_msg=key)
    # What training changed agrees with one process to float32 rounding.
    moved = single_final[key] - single_init[key]
    assert np.max(np.abs(moved)) > 0, f'{key} did not train'
    error = relative_error(finals[0][key] - inits[0][key], moved)
    assert error < 1e-5, f'{key}: updates differ by {error:.2g} (relative)'
    assert relative_error(finals[0][key], single_final[key]) < 1e-5, key

  # The checkpoint holds what the processes held.
  restored, data = restore(runs['uninterrupted'], 2 * N)
  assert restored.keys() == finals[0].keys()
  for key, value in finals[0].items():
    np.testing.assert_array_equal(restored[key], value, err_msg=key)
  # One data-iterator state per process, each for its own shard.
  states = data['per_process']
  assert [s['shard_index'] for s in states] == [0, 1]
  assert [s['next_batch'] for s in states] == [2 * N, 2 * N]


def test_only_process_zero_writes_outputs(runs):
  root, workdir = runs['root'], os.path.realpath(runs['uninterrupted'])
  _, writes0 = load_dump(root, 'uninterrupted_process0')
  _, writes1 = load_dump(root, 'uninterrupted_process1')

  def outputs(writes):
    inside = [os.path.relpath(os.path.realpath(p), workdir) for p in writes
              if os.path.realpath(p).startswith(workdir + os.sep)]
    return sorted(p for p in inside if not p.startswith('checkpoints'))

  assert outputs(writes1) == [], 'process 1 wrote run outputs'
  written = outputs(writes0)
  for expected in ('config.json', 'metrics.jsonl', 'eval.jsonl',
                   f'samples/step_{N:07d}.png', f'samples/step_{2 * N:07d}.png'):
    assert expected in written, (expected, written)
  assert any(p.startswith('tensorboard/events.') for p in written), written
  assert len(os.listdir(os.path.join(workdir, 'tensorboard'))) == 1
  with open(os.path.join(workdir, 'metrics.jsonl'), encoding='utf-8') as f:
    steps = [json.loads(line)['step'] for line in f if 'd_loss' in line]
  assert steps == list(range(1, 2 * N + 1))  # each step once: no second writer
  with open(os.path.join(workdir, 'eval.jsonl'), encoding='utf-8') as f:
    assert [json.loads(line)['step'] for line in f] == [2 * N]


def test_pmap_on_two_processes_trains_as_shard_map(runs):
  # pmap compiled with the CPU XLA options by hand ran only on one process (the
  # executable was built for global shapes, then given each process's own arrays).
  root, driver, cache_dir = runs['root'], runs['driver'], runs['cache_dir']
  wait_all(start_processes(root, 'pmap', workdir=os.path.join(root, 'pmap'), driver=driver,
                           cache_dir=cache_dir, extra_args=['--config.parallel.mode=pmap']))
  expected, _ = restore(runs['uninterrupted'], 2 * N)
  actual, _ = restore(os.path.join(root, 'pmap'), 2 * N)
  for key, value in expected.items():
    assert relative_error(actual[key], value) < 1e-5, key


def test_a_config_error_on_every_process_is_one_line_and_status_2(runs):
  root, driver, cache_dir = runs['root'], runs['driver'], runs['cache_dir']
  processes = start_processes(root, 'bad_batch', workdir=os.path.join(root, 'bad_batch'),
                              driver=driver, cache_dir=cache_dir,
                              extra_args=['--config.train.batch_size=6'])  # 4 devices
  for process in processes.values():
    assert process.wait() == 2, process.output()[-3000:]
    output = process.output()
    assert 'error: config.train.batch_size=6 must be a positive multiple' in output, output
    assert 'Traceback' not in output, output[-3000:]


def test_a_workdir_in_use_stops_every_process_at_once(runs):
  # Process 0 finds the lock of another run; process 1 holds no lock of its own and
  # must not wait in the first collective until the heartbeat timeout.
  from gan_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  root, driver, cache_dir = runs['root'], runs['driver'], runs['cache_dir']
  workdir = os.path.join(root, 'locked')
  with workdir_lib.training_lock(workdir):
    processes = start_processes(root, 'locked', workdir=workdir, driver=driver,
                                cache_dir=cache_dir)
    for process in processes.values():
      assert process.wait() == 2, process.output()[-3000:]
  assert 'error: The workdir' in processes[0].output()
  assert 'in use by another training run' in processes[0].output()
  assert 'error: Process 0 could not take the workdir' in processes[1].output()
  for process in processes.values():
    assert 'Traceback' not in process.output() and 'unhealthy' not in process.output()
    assert process.end - process.start < 60  # not the heartbeat timeout of 60 s and more
  assert os.listdir(workdir) == [workdir_lib.LOCK_FILE]


def test_killed_process_ends_run_and_run_resumes(runs):
  root, driver, cache_dir = runs['root'], runs['driver'], runs['cache_dir']
  workdir = os.path.join(root, 'resumed')

  # Process 1 is SIGKILLed right after the checkpoint of step N is on disk;
  # process 0 waits in the next step's all-reduce until the heartbeat timeout.
  processes = start_processes(root, 'killed', workdir=workdir, driver=driver, cache_dir=cache_dir,
                              timeout_s=TIMEOUT_S,
                              env_by_process={1: dict(GAN_JAX_SIGKILL_AT_STEP=N)})
  assert processes[1].wait() == -signal.SIGKILL, processes[1].output()[-3000:]
  code = processes[0].wait()
  output = processes[0].output()
  assert code != 0, output[-3000:]
  assert re.search(r'The following tasks are unhealthy \(stopped sending heartbeats\):\s*1\b',
                   output), output[-3000:]
  # Bounded: the heartbeat timeout plus the time to notice and abort.
  waited = processes[0].end - processes[1].end
  assert waited < TIMEOUT_S + 20, waited
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', str(N)))
  assert not os.path.exists(os.path.join(workdir, 'checkpoints', str(2 * N)))

  # The same command, through the launch script, resumes at N and ends at 2N.
  command = ['bash', os.path.join(REPO, 'launch', 'local_multiprocess.sh'), f'--python={PYTHON}',
             '--timeout=200', '2', f'--workdir={workdir}', *ARGS]
  resumed = Process(command, env=environment(cache_dir, 2),
                    log_path=os.path.join(root, 'resumed.log'))
  assert resumed.wait() == 0, resumed.output()[-4000:]
  output = resumed.output()
  assert f'Resumed from the checkpoint at step {N}' in output, output[-3000:]
  assert 'different settings' not in output  # each process got its own data state

  expected, _ = restore(runs['uninterrupted'], 2 * N)
  actual, _ = restore(workdir, 2 * N)
  for key, value in expected.items():
    np.testing.assert_array_equal(actual[key], value, err_msg=key)


def test_sigterm_to_one_process_stops_both_at_one_step_and_resumes(runs):
  root, driver, cache_dir = runs['root'], runs['driver'], runs['cache_dir']
  workdir = os.path.join(root, 'preempted')
  # Process 1 is signalled at step N: the processes exchange their stop flags at every
  # log step (log_every=1), so both stop after step N + 1, which is no checkpoint step.
  processes = start_processes(root, 'preempted', workdir=workdir, driver=driver,
                              cache_dir=cache_dir,
                              env_by_process={1: dict(GAN_TEST_SIGTERM_AT_STEP=N)})
  codes = {i: p.wait() for i, p in processes.items()}
  assert codes == {0: 143, 1: 143}, {i: p.output()[-3000:] for i, p in processes.items()}
  assert 'Received SIGTERM' in processes[1].output()
  assert 'Received SIGTERM' not in processes[0].output()
  assert f'Stopped by SIGTERM at step {N + 1}' in processes[0].output(), (
      processes[0].output()[-3000:])
  # The stop's checkpoint is the newest (older ones are kept as the config says).
  assert max(map(int, os.listdir(os.path.join(workdir, 'checkpoints')))) == N + 1
  _, data = restore(workdir, N + 1)
  assert [s['next_batch'] for s in data['per_process']] == [N + 1, N + 1]

  resumed = start_processes(root, 'preempted_resumed', workdir=workdir, driver=driver,
                            cache_dir=cache_dir)
  wait_all(resumed)
  assert f'Resumed from the checkpoint at step {N + 1}' in resumed[0].output()
  expected, _ = restore(runs['uninterrupted'], 2 * N)
  actual, _ = restore(workdir, 2 * N)
  for key, value in expected.items():
    np.testing.assert_array_equal(actual[key], value, err_msg=key)


def _log_time(output, pattern):
  """Wall-clock time (s since midnight) of the first absl log line containing `pattern`."""
  for line in output.splitlines():
    if pattern in line:
      match = re.search(r'^[IWEF]\d{4} (\d\d):(\d\d):(\d\d\.\d+)', line)
      if match:
        h, m, s = match.groups()
        return int(h) * 3600 + int(m) * 60 + float(s)
  raise AssertionError(f'no log line with {pattern!r} in:\n{output[-3000:]}')


def test_missing_peer_ends_run_naming_it(runs):
  root, driver, cache_dir = runs['root'], runs['driver'], runs['cache_dir']
  # Two separate 2-process jobs, each missing one process: process 0 alone
  # waits for process 1; process 1 alone looks for its coordinator, process 0.
  alone = {i: start_processes(root, f'alone{i}', workdir=os.path.join(root, f'alone{i}'),
                              driver=driver, cache_dir=cache_dir, only=[i],
                              timeout_s=MISSING_TIMEOUT_S)[i] for i in (0, 1)}
  deadline = time.monotonic() + 120
  while any(p.poll() is None for p in alone.values()) and time.monotonic() < deadline:
    time.sleep(0.1)  # polled, so each exit time is seen when it happens
  for process in alone.values():
    assert process.wait(limit_s=1) != 0, process.output()[-3000:]
  out0, out1 = alone[0].output(), alone[1].output()

  # Process 0: our warning, then JAX's abort listing the process that never joined.
  assert 'has waited' in out0 and 'for all processes to join' in out0, out0[-3000:]
  assert re.search(r'Some timed out task names:\s*1\b', out0), out0[-3000:]
  # Process 1: cannot reach process 0 at all, says so and exits with status 1.
  assert alone[1].popen.returncode == 1
  assert 'cannot reach the coordinator, process 0, at 127.0.0.1:' in out1, out1[-3000:]

  # Bounded: from the start of initialisation to the exit, the timeout plus
  # the time to abort (dumping stacks of every thread on a loaded machine).
  for i, output in ((0, out0), (1, out1)):
    started = _log_time(output, 'jax.distributed.initialize(')
    waited = (alone[i].end_of_day - started) % 86400
    assert waited < MISSING_TIMEOUT_S + 15, (i, waited)


def test_hosts_that_list_other_examples_stop_every_process(runs):
  # Node-local copies of an image folder at one path: here each process is given its
  # own copy, and process 1's has one more file. Each process takes its shard by index
  # from its own listing, so the run would train on examples twice or not at all.
  from PIL import Image  # pylint: disable=g-import-not-at-top
  root, cache_dir = runs['root'], runs['cache_dir']
  copies = {i: os.path.join(root, f'host{i}_images') for i in (0, 1)}
  for i, copy in copies.items():
    for name in ('dog', 'cat'):
      os.makedirs(os.path.join(copy, name))
      for j in range(4 + (i == 1 and name == 'cat')):
        Image.fromarray(np.full((8, 8), 30 * j, np.uint8)).save(
            os.path.join(copy, name, f'{j}.png'))
  port, processes = free_port(), {}
  for i, copy in copies.items():
    processes[i] = Process(
        [PYTHON, '-m', 'gan_jax.main', '--config=dcgan_digits:smoke',
         '--config.data.source=image_folder', f'--config.data.path={copy}',
         f'--workdir={os.path.join(root, "hosts")}', f'--coordinator_address=127.0.0.1:{port}',
         '--num_processes=2', f'--process_id={i}', '--distributed_timeout=60'],
        env=environment(cache_dir, 2), log_path=os.path.join(root, f'hosts_process{i}.log'))
  for process in processes.values():
    assert process.wait() == 2, process.output()[-3000:]
    output = process.output()
    assert 'error: Process(es) [1] list other training examples than process 0' in output, (
        output[-3000:])
    assert 'Traceback' not in output, output[-3000:]
  assert not os.path.exists(os.path.join(root, 'hosts', 'config.json'))  # nothing recorded
