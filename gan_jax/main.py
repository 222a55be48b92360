"""Command-line entry point: `python -m gan_jax.main --config=configs/NAME.py[:ARG]`.

Parses flags only; all work happens in `gan_jax.train.train_and_evaluate`.

  --config        an ml-collections config file, optionally with `:ARG`
                  (e.g. `configs/dcgan_digits.py:smoke`); fields can be
                  overridden, e.g. `--config.train.num_steps=100 --config.seed=3`.
  --workdir       output folder (default `runs/NAME[-ARG]`); a run already
                  there is resumed from its latest checkpoint.
  --distributed   'off' (default), 'auto' (TPU VM pods, SLURM: detected by JAX)
                  or 'explicit' (with --coordinator_address, --num_processes,
                  --process_id).
  --distributed_timeout
                  seconds (default 120) after which a process that never joined,
                  or stopped sending heartbeats, ends the whole run with an
                  error naming it (see launch/README.md for the messages).
"""

import logging as py_logging
import os
import re

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file, e.g. configs/dcgan_digits.py[:smoke].',
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Output folder; defaults to runs/<config name>. Resumes a run found there.')
_DISTRIBUTED = flags.DEFINE_enum(
    'distributed', 'off', ['off', 'auto', 'explicit'],
    "Multi-process start-up: 'auto' calls jax.distributed.initialize() and lets JAX "
    "detect Cloud TPU / SLURM; 'explicit' uses the three flags below.")
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'host:port of process 0 (implies --distributed=explicit).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Number of processes.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process index in [0, N).')
_TIMEOUT = flags.DEFINE_integer(
    'distributed_timeout', 120,
    'Multi-process runs: seconds for every process to join after process 0 starts, '
    'and without a heartbeat from a peer, before the run fails with an error '
    'naming the missing process.', lower_bound=1)


def default_workdir(config_arg):
  """`runs/<file stem>[-<arg>]` for `--config=configs/<file stem>.py[:<arg>]`."""
  path, _, arg = (config_arg or 'default').partition(':')
  name = os.path.splitext(os.path.basename(path))[0]
  if arg:
    name += '-' + re.sub(r'[^A-Za-z0-9_.=-]+', '_', arg)
  return os.path.join('runs', name)


class _QuietLibraries(py_logging.Filter):
  """Drops INFO chatter of orbax / grain / tensorstore; keeps their warnings."""

  def filter(self, record):
    return record.levelno >= py_logging.WARNING or not any(
        part in record.pathname for part in ('/orbax/', '/grain/', '/tensorstore/'))


def main(argv):
  logging.get_absl_handler().addFilter(_QuietLibraries())
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if _CONFIG.value is None:
    raise app.UsageError('Pass --config=configs/NAME.py, e.g. --config=configs/dcgan_digits.py')
  # Imported here so that --help is fast and XLA flags set by the caller apply.
  import jax  # pylint: disable=g-import-not-at-top
  from gan_jax import parallel  # pylint: disable=g-import-not-at-top
  from gan_jax import train  # pylint: disable=g-import-not-at-top

  distributed = _DISTRIBUTED.value
  if _COORDINATOR.value and distributed == 'off':
    distributed = 'explicit'
  if distributed == 'off' and ((_NUM_PROCESSES.value or 1) > 1 or _PROCESS_ID.value):
    raise app.UsageError(
        '--num_processes / --process_id need --coordinator_address=HOST:PORT of process 0 '
        '(or --distributed=auto on Cloud TPU / SLURM).')
  parallel.initialize_distributed(
      distributed=distributed, coordinator_address=_COORDINATOR.value,
      num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value,
      timeout_s=_TIMEOUT.value)
  if jax.process_index() != 0:
    logging.set_verbosity(logging.WARNING)
  flag_value = flags.FLAGS['config'].serialize().partition('=')[2]
  workdir = _WORKDIR.value or default_workdir(flag_value)
  logging.info('gan_jax: process %d/%d, %d local devices, %d global devices, workdir %s',
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count(), workdir)
  try:
    train.train_and_evaluate(_CONFIG.value, workdir)
  except Exception as e:  # pylint: disable=broad-except
    if jax.process_count() == 1:
      raise
    parallel.exit_after_failure(e, timeout_s=_TIMEOUT.value)


def run():
  """Console entry point."""
  app.run(main)


if __name__ == '__main__':
  run()
