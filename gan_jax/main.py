"""Train a GAN: `python -m gan_jax.main --config=NAME[:VARIANT] [--workdir=DIR] [--config.FIELD=VALUE ...]`.

  --config        a config by name (`dcgan_digits`, `configs/dcgan_digits.py`) or
                  any config file path, optionally with `:VARIANT` (e.g.
                  `dcgan_digits:smoke`); fields can be overridden, e.g.
                  `--config.train.num_steps=100 --config.seed=3`.
  --workdir       output folder (default `runs/NAME[-VARIANT]`); a run already
                  there is resumed from its latest checkpoint.
  --list_configs  lists the configs with one line each; --print_config prints
                  the resolved config and exits.
  --allow_config_change
                  resume a workdir with a changed training config (recorded in
                  its config_history.jsonl).
  --distributed   'off' (default), 'auto' (TPU VM pods, SLURM: detected by JAX)
                  or 'explicit' (with --coordinator_address, --num_processes,
                  --process_id); --distributed_timeout seconds before a missing
                  process ends the run with an error naming it.

Exit status: 0 when training finished, 2 for a usage / config / data error, and
128 + signal number (130 Ctrl-C, 143 SIGTERM) when a signal stopped the run
after saving a checkpoint (rerun the same command to resume).
"""

import os
import re
import sys
import time

from absl import flags
from absl import logging
from ml_collections import config_flags

from gan_jax import cli
from gan_jax import config_files
from gan_jax import errors

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config name or file, e.g. dcgan_digits or configs/dcgan_digits.py[:smoke].',
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Output folder; defaults to runs/<config name>[-<variant>]. Resumes a run found there.')
_LIST = flags.DEFINE_bool('list_configs', False, 'List the configs and exit.')
_PRINT = flags.DEFINE_bool('print_config', False, 'Print the resolved config and exit.')
_ALLOW_CHANGE = flags.DEFINE_bool(
    'allow_config_change', False,
    'Resume a workdir although the training config changed (recorded in the workdir).')
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
  """`runs/<config name>[-<variant>]` for `--config=<...>/<name>.py[:<variant>]`."""
  path, _, arg = (config_arg or 'default').partition(':')
  name = os.path.splitext(os.path.basename(path))[0]
  if arg:
    name += '-' + re.sub(r'[^A-Za-z0-9_.=-]+', '_', arg)
  return os.path.join('runs', name)


def _start_processes():
  """Joins a multi-process job when the flags ask for one."""
  from gan_jax import distributed  # pylint: disable=g-import-not-at-top
  mode = _DISTRIBUTED.value
  if _COORDINATOR.value and mode == 'off':
    mode = 'explicit'
  if mode == 'off' and ((_NUM_PROCESSES.value or 1) > 1 or _PROCESS_ID.value):
    cli.fail('--num_processes / --process_id need --coordinator_address=HOST:PORT of '
             'process 0 (or --distributed=auto on Cloud TPU / SLURM).')
  distributed.initialize_distributed(
      distributed=mode, coordinator_address=_COORDINATOR.value,
      num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value,
      timeout_s=_TIMEOUT.value)


def main(argv):
  """The `python -m gan_jax.main` program (its flags parsed by absl)."""
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}; flags look like --name=value.')
  if _LIST.value:
    if flags.FLAGS['config'].present:
      cli.fail('--list_configs lists every config; leave out --config (and its overrides), '
               'or --list_configs.')
    print(config_files.describe_all())
    return
  if _CONFIG.value is None:
    cli.fail('pass --config=NAME, e.g. --config=dcgan_digits (list them with --list_configs).')
  if _PRINT.value:
    print(_CONFIG.value.to_json_best_effort(indent=2, sort_keys=True))
    # Printed first, so that a config the check refuses can still be read in full.
    from gan_jax import config_check  # pylint: disable=g-import-not-at-top
    config_check.validate(_CONFIG.value)
    config_check.check_settings_read(_CONFIG.value)
    return
  # Imported here so that --help and --list_configs do not wait for JAX.
  import jax  # pylint: disable=g-import-not-at-top
  from gan_jax import config_check  # pylint: disable=g-import-not-at-top
  from gan_jax import distributed  # pylint: disable=g-import-not-at-top
  from gan_jax import preemption  # pylint: disable=g-import-not-at-top
  from gan_jax import train  # pylint: disable=g-import-not-at-top
  from gan_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top

  _start_processes()
  # Until training is complete, SIGTERM raises errors.Stopped (one line and status 143,
  # not the default action's silent death; jax.distributed's start-up installs a handler
  # that only logs it); the loop itself saves, then stops.
  with preemption.sigterm_raises():
    chief = jax.process_index() == 0
    if not chief:
      logging.set_verbosity(logging.WARNING)
    workdir = _WORKDIR.value or default_workdir(
        flags.FLAGS['config'].serialize().partition('=')[2])
    logging.info('gan_jax: process %d/%d, %d local devices, %d global devices, workdir %s',
                 jax.process_index(), jax.process_count(), jax.local_device_count(),
                 jax.device_count(), workdir)
    start = time.monotonic()
    try:
      # Here, not in train_and_evaluate: the benchmarks train configs a --set may not
      # touch. After jax.distributed starts: the check may trace the networks' shapes.
      config_check.check_settings_read(_CONFIG.value)
      train.train_and_evaluate(_CONFIG.value, workdir,
                               allow_config_change=_ALLOW_CHANGE.value)
    except preemption.Interrupted as e:
      if chief:
        print(workdir_lib.summary(workdir, stopped=str(e), seconds=time.monotonic() - start))
      sys.exit(128 + e.signum)
    except Exception as e:  # pylint: disable=broad-except
      if jax.process_count() == 1:
        raise
      distributed.exit_after_failure(
          e, timeout_s=_TIMEOUT.value,
          user_error=isinstance(e, errors.UserError) and not flags.FLAGS.verbose)
  # One process leaves at once on a signal now; several ignore it, to leave together
  # through jax.distributed's shutdown.
  preemption.finish_on_signal(0, at_once=jax.process_count() == 1)
  if chief:
    print(workdir_lib.summary(workdir, seconds=time.monotonic() - start))


def run():
  """Console entry point."""
  try:
    sys.argv = config_files.resolve_argv(sys.argv)
  except errors.ConfigError as e:
    cli.fail(str(e))
  cli.run(main)


if __name__ == '__main__':
  run()
