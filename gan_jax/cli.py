"""What every command-line entry point shares: flags, logging, errors, exit codes.

`run(main)` runs an absl program (`gan_jax.main`, `gan_jax.sample`,
`gan_jax.evaluate`, the benchmarks) with the same conventions:

  * flags are absl flags; `--verbose` shows INFO logs of every library and
    tracebacks of expected errors;
  * an expected error (`gan_jax.errors.UserError`, or a bad flag / config
    override) prints one short `error:` paragraph and exits with status 2,
    without a traceback; any other exception keeps its traceback (a bug);
  * INFO chatter of orbax / grain / tensorstore and JAX's search for absent
    accelerator backends is dropped; warnings always show.
"""

import logging as py_logging
import sys

from absl import app
from absl import flags
from absl import logging

from gan_jax import errors

USAGE_ERROR_STATUS = 2
_QUIET_PATHS = ('/orbax/', '/grain/', '/tensorstore/')
# JAX tries every backend it knows at start-up and logs each missing one.
_BACKEND_NOISE = ('Unable to initialize backend', 'An NVIDIA GPU may be present')

flags.DEFINE_bool('verbose', False, 'Show INFO logs of every library and full tracebacks.')


class _QuietLibraries(py_logging.Filter):
  """Drops library INFO chatter and backend-probing noise; keeps warnings."""

  def filter(self, record):
    message = str(record.msg)
    if any(noise in message for noise in _BACKEND_NOISE) and record.levelno < py_logging.ERROR:
      return False
    return record.levelno >= py_logging.WARNING or not any(
        part in record.pathname for part in _QUIET_PATHS)


def _verbose(argv):
  return any(arg in ('--verbose', '--verbose=true', '--verbose=True') for arg in argv)


def fail(message, *, status=USAGE_ERROR_STATUS):
  """Prints `error: message` to stderr and exits (never returns)."""
  sys.stderr.write(f'error: {message}\n')
  sys.stderr.flush()
  sys.exit(status)


def _parse_flags(argv):
  """absl's flag parsing, with bad flags and config overrides as short errors."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(f'{e}\nSee --help for the flags of this command.')
  except (AttributeError, KeyError, TypeError, ValueError, OSError) as e:
    # ml_collections' config flags raise these for an unknown field ('Did you
    # mean ...'), a value of the wrong type, or a config file that fails to load.
    if _verbose(argv):
      raise
    text = str(e).strip().strip('\'"').replace('\\n', '\n').replace("\\'", "'")
    fail(f'{text}\nRun with --verbose for the traceback.')


def run(main, *, quiet=False):
  """Runs `main(argv)` under absl with gan_jax's error and logging conventions.

  Args:
    main: the program, `main(argv)`.
    quiet: log warnings only (tools that print their own results), unless
      --verbose.
  """
  if not _verbose(sys.argv):
    logging.get_absl_handler().addFilter(_QuietLibraries())
    if quiet:
      logging.set_verbosity(logging.WARNING)

  def wrapped(argv):
    try:
      return main(argv)
    except errors.UserError as e:
      if flags.FLAGS.verbose:
        raise
      fail(str(e))

  app.run(wrapped, flags_parser=_parse_flags)
