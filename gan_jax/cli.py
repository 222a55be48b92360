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

import importlib.util
import logging as py_logging
import os
import re
import signal
import sys

from absl import app
from absl import flags
from absl import logging

from gan_jax import config_files
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


# absl's help flags print the help and exit with status 1; asking for help is no failure.
_HELP_FLAGS = ('--help', '-help', '-h', '-?', '--helpshort', '--helpfull', '--helpxml')


# Path flags that, given but empty (an unset shell variable: --workdir=$W), would fall
# back to a default or the current folder instead of failing.
_PATH_FLAGS = ('workdir', 'output', 'input', 'json', 'out', 'config')


def _flag_name(arg, flag_values):
  """The flag an argument sets ('config', 'config.train.num_steps', 'best' for
  --nobest), or None for what is not a defined flag (values, absl's own)."""
  if not arg.startswith('-') or arg in ('-', '--'):
    return None
  name = arg.lstrip('-').split('=', 1)[0]
  if name.startswith('no') and name[2:] in flag_values and flag_values[name[2:]].boolean:
    name = name[2:]
  root = name.split('.', 1)[0]
  if root not in flag_values or name in ('flagfile', 'undefok') or name.startswith('help'):
    return None
  if isinstance(flag_values[root], flags.MultiFlag):  # meant to be repeated (--set)
    return None
  return name


def refuse_repeated_flags(argv, flag_values=flags.FLAGS):
  """Exits with a short error when a flag is given twice: absl keeps the last, silently,
  so a launcher's --process_id followed by the user's, or two --config, would run with
  one of them unannounced. Flags meant to repeat (absl's multi flags) may.

  Args:
    argv: the command line (argv[0] the program); arguments after '--' are not flags.
    flag_values: the defined flags.
  """
  given = {}
  args = argv[1:argv.index('--')] if '--' in argv else argv[1:]
  for i, arg in enumerate(args):
    name = _flag_name(arg, flag_values)
    if name is None:
      continue
    takes_value = '=' not in arg and not (name in flag_values and flag_values[name].boolean)
    if takes_value and i + 1 < len(args):  # --flag value
      arg = f'{arg} {args[i + 1]}'
    given.setdefault(name, []).append(arg)
  for name, args in given.items():
    if len(args) > 1:
      fail(f'--{name} is given {len(args)} times ({", ".join(args)}); give it once (a '
           'launch script may pass it already: then use its own option for it).')


# Path flags whose values are used as written: a '~' there names a folder called '~'.
# (Data, weights and cache paths are expanded by the code that reads them.)
_UNEXPANDED_PATH_FLAGS = ('workdir', 'output', 'input', 'json', 'out')


def check_path_values(flag_values=flags.FLAGS):
  """Exits with a short error for a path that would go wrong later: a literal '~' in a
  flag whose path is used as written (`_UNEXPANDED_PATH_FLAGS`; the shell does not
  expand it after '--flag='), or gs:// with neither gcsfs (the [gcs] extra) nor
  TensorFlow to reach it (found only when the path is first used, often after the
  work). Checks the string flags given and a given config's string fields.

  Args:
    flag_values: the parsed flags.
  """
  values = []
  for name in list(flag_values):
    flag = flag_values[name]
    if not flag.present or name != flag.name:
      continue
    value = flag.value
    if isinstance(value, str):
      values.append((f'--{name}', value))
    elif hasattr(value, 'to_dict'):  # a config: its string fields
      from gan_jax import defaults  # pylint: disable=g-import-not-at-top
      values += [(f'config.{field}', v) for field, v in defaults.flatten(value.to_dict()).items()
                 if isinstance(v, str)]
  for where, value in values:
    if (where.lstrip('-') in _UNEXPANDED_PATH_FLAGS and
        (value == '~' or value.startswith('~/'))):
      fail(f'{where}={value}: the shell does not expand ~ after an =; write $HOME instead '
           f'(--flag=$HOME/...) or put a space before the path (--flag ~/...).')
    if value.startswith('gs://') and not any(
        importlib.util.find_spec(name) for name in ('gcsfs', 'tensorflow')):
      fail(f"{where}={value}: Google Cloud Storage paths need the gcs extra: "
           f"pip install -e '.[gcs]' (or pip install gcsfs).")


def _parse_flags(argv):
  """absl's flag parsing, with bad flags and config overrides as short errors."""
  refuse_repeated_flags(argv)
  try:
    remaining = flags.FLAGS(argv)
  except SystemExit as e:
    if e.code == 1 and any(arg in _HELP_FLAGS for arg in argv[1:]):
      sys.exit(0)
    raise
  except flags.Error as e:
    if _CONFIG_FILE_ERROR in str(e) and not _verbose(argv):
      # ml_collections re-raises get_config's exception (its text now the traceback),
      # and absl raises this flag error while handling it.
      fail(_config_file_message(str(e), argv,
                                user_error=isinstance(e.__context__, errors.UserError)))
    # absl words some errors as a tuple: "flag --x=maybe: ('Non-boolean argument to
    # boolean flag', 'maybe')".
    text = re.sub(r": \('([^']*)', (.*)\)$", r': \1: \2', str(e))
    # A value for a whole section (--config.optim.g=adam): ml_collections reports the
    # Python parser's complaint about the text.
    section = re.match(r"flag (--[\w.]+)=.*Failed to parse '.*' as a ConfigDict: ", text)
    if section:
      text = (f'{section.group(1)} is a section of the config, not a field: set its fields, '
              f'{section.group(1)}.FIELD=VALUE (--print_config lists them).')
    fail(f'{text}\nSee --help for the flags of this command.')
  except Exception as e:  # pylint: disable=broad-except
    # Past absl's own flag errors, what is left comes from the config flag: ml_collections
    # raises an AttributeError or KeyError whose text is the quoted field (and 'Did you
    # mean ...') for an unknown field, a TypeError or ValueError for a value of the wrong
    # type, and whatever a config file's own code raises while it loads.
    if _verbose(argv):
      raise
    text = str(e).strip().strip('\'"').replace('\\n', '\n').replace("\\'", "'")
    # The field is quoted when a 'Did you mean' line follows, bare after the strip above
    # when none does.
    if isinstance(e, (AttributeError, KeyError)) and re.fullmatch(r"'?\w+'?", text.split('\n')[0]):
      fail(_unknown_field_message(text, argv))
    if isinstance(e, AttributeError) and str(e).endswith("has no attribute 'get_config'"):
      fail(f'{_config_flag(argv)}: the file defines no get_config(); a config file is a '
           'Python file whose get_config(arg=None) returns an ml_collections.ConfigDict '
           '(configs/*.py are examples).')
    if isinstance(e, errors.UserError):
      fail(f'{_config_flag(argv)}: {e}')
    if not isinstance(e, (AttributeError, KeyError, TypeError, ValueError, OSError)):
      text = f'{_config_flag(argv)}: {type(e).__name__}: {str(e).strip()}'  # the file's own
    fail(f'{text}\nRun with --verbose for the traceback.')
  for name in _PATH_FLAGS:
    if name in flags.FLAGS and flags.FLAGS[name].present and _is_empty(flags.FLAGS[name].value):
      fail(f'--{name} is empty (an unset shell variable?); give a path.')
  check_path_values()
  return remaining


def _is_empty(value):
  return isinstance(value, str) and not value.strip()


# ml_collections' flag error when a config file's get_config raises: its text
# holds the whole traceback, of which the user needs the last line.
_CONFIG_FILE_ERROR = 'Error whilst parsing config file'


def _config_file_message(text, argv, *, user_error):
  """'--config=NAME:ARG: <the error get_config raised>' without its traceback.

  Args:
    text: the flag error's text (a traceback ending in 'module.SomeError: message').
    argv: the command line.
    user_error: get_config refused its argument (an `errors.UserError`): the message is
      the whole story, no traceback to ask for.

  Returns:
    The error paragraph.
  """
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  message = re.sub(r'^[A-Za-z_][\w.]*: ', '', lines[-1])
  return f'{_config_flag(argv)}: {message}' + (
      '' if user_error else '\nRun with --verbose for the traceback.')


def _config_flag(argv):
  """The `--config=...` argument as the user wrote it (a shipped config by its name)."""
  flag = next((arg for arg in argv[1:] if arg.startswith('--config=')), '--config')
  # `gan_jax.main` resolved a shipped config's name to its file: show the name again.
  shipped = str(config_files.configs_dir()) + os.sep
  if flag.startswith('--config=' + shipped):
    flag = '--config=' + flag[len('--config=' + shipped):].replace('.py', '', 1)
  return flag


def _unknown_field_message(text, argv):
  """Names the override that has an unknown config field, with ml_collections' hint.

  Args:
    text: the error's text, `'field'` and maybe a line 'Did you mean "x" ...?'.
    argv: the command line.

  Returns:
    The error paragraph, e.g. `--config.model.nme=x: config.model has no field 'nme'.
    Did you mean "name" instead of "nme"?` and where to see every field.
  """
  field, _, hint = text.partition('\n')
  field = field.strip('\'"')
  for arg in argv[1:]:
    name = arg.split('=', 1)[0]
    if not name.startswith('--config.'):
      continue
    path = name[len('--'):].split('.')
    if field in path[1:]:
      parent = '.'.join(path[:path.index(field, 1)])
      message = f"{arg}: {parent} has no field '{field}'."
      break
  else:
    message = f"unknown config field '{field}'."
  if not hint.strip():
    # ml_collections suggests names within the section; the field may live in another.
    elsewhere = _sections_with_field(field)
    if elsewhere:
      hint = 'Did you mean ' + ' or '.join(f'--config.{s}.{field}' for s in elsewhere) + '?'
  hint = f'\n{hint.strip()}' if hint.strip() else ''
  return (f'{message}{hint}\nEvery field and its default: python -m gan_jax.main '
          '--config=NAME --print_config (or gan_jax/defaults.py).')


def _sections_with_field(field):
  """The sections of the default config (`gan_jax/defaults.py`) that have `field`."""
  from gan_jax import defaults  # pylint: disable=g-import-not-at-top
  config = defaults.get_config()
  return [name for name, section in config.items()
          if hasattr(section, 'keys') and field in section.keys()]


def _os_error_text(error):
  """'No space left on device: runs/x/metrics.jsonl' for an OSError (its paths when known)."""
  paths = [p for p in (error.filename, error.filename2) if p is not None]
  if isinstance(error, (FileExistsError, NotADirectoryError)) and paths:
    # makedirs over a file, or a path through one: say which file is in the way.
    above = os.path.abspath(os.fspath(paths[0]))
    while above != os.path.dirname(above) and not os.path.exists(above):
      above = os.path.dirname(above)
    if os.path.isfile(above):
      return f'{above} is a file, where a folder is needed (for {paths[0]}).'
  text = error.strerror or str(error)
  return f'{text}: {" -> ".join(map(str, paths))}' if paths else text


class RememberingInterrupts:
  """A SIGINT handler that raises KeyboardInterrupt, as Python's own does, and remembers
  the signal in `remembered`: Python only prints a KeyboardInterrupt raised inside a
  garbage-collection callback or a __del__ (JAX runs one at every collection), so a
  Ctrl-C while a program sets up could be lost. A training loop that starts after one
  (`preemption.StopSignal`) stops at its first step, saving a checkpoint.

  Attributes:
    remembered: the signal numbers received, oldest first.
  """

  def __init__(self):
    self.remembered = []

  def __call__(self, signum, frame):
    del frame
    self.remembered.append(signum)
    raise KeyboardInterrupt


def run(main, *, quiet=False, stop_on_sigterm=False):
  """Runs `main(argv)` under absl with gan_jax's error and logging conventions.

  Args:
    main: the program, `main(argv)`.
    quiet: log warnings only (tools that print their own results), unless
      --verbose.
    stop_on_sigterm: SIGTERM stops the program as Ctrl-C does (`finally` blocks run:
      no half-written output is left; exit 143 with a message) instead of ending the
      process at once; for tools that write outputs (a training run scopes its own).
  """
  if not _verbose(sys.argv):
    logging.get_absl_handler().addFilter(_QuietLibraries())
    if quiet:
      logging.set_verbosity(logging.WARNING)
  # Only in place of Python's own handler: a job started in the background (`cmd &`)
  # ignores SIGINT, and keeps doing so.
  previous, interrupts = signal.getsignal(signal.SIGINT), RememberingInterrupts()
  if previous is signal.default_int_handler:
    signal.signal(signal.SIGINT, interrupts)

  def leave_at_once(status):
    # Every `finally` has run on the way here. The interpreter's shutdown would next
    # tear down native threads that may still be compiling, which can crash (SIGSEGV)
    # and report that instead; with several processes it would wait at JAX's shutdown
    # barrier for peers blocked in a collective, and abort. Leaving at once, the peers
    # fail fast on the closed connection or at the heartbeat timeout.
    py_logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # pylint: disable=protected-access

  def interrupted():
    sys.stderr.write('error: interrupted (Ctrl-C).\n')
    leave_at_once(128 + signal.SIGINT)

  def wrapped(argv):
    try:
      if stop_on_sigterm:
        from gan_jax import preemption  # pylint: disable=g-import-not-at-top
        with preemption.sigterm_raises() as handler:
          result = main(argv)
          if handler is not None and handler.remembered:
            # Raised where Python swallows it (a garbage-collection callback): the work
            # went on, but it was asked to stop, and says so (as Ctrl-C below).
            raise errors.Stopped('Stopped by SIGTERM.', handler.remembered[0])
      else:
        result = main(argv)
    except errors.UserError as e:
      if flags.FLAGS.verbose:
        raise
      fail(str(e))
    except OSError as e:
      # The file system refused something the run needed (a file where a folder
      # belongs, no permission, a full disk): the user's setup to fix, not a bug.
      if flags.FLAGS.verbose:
        raise
      fail(f'{_os_error_text(e)}\nRun with --verbose for the traceback.')
    except errors.Stopped as e:
      # A signal stopped the work early (what became of it is in the message).
      if flags.FLAGS.verbose:
        raise
      sys.stderr.write(f'{e}\n')  # no 'error:': stopping on request is no failure
      sys.stderr.flush()
      if type(e) is not errors.Stopped:  # a subclass: every process stopped together
        sys.exit(128 + e.signum)
      leave_at_once(128 + e.signum)  # stopped alone (before a training loop)
    except KeyboardInterrupt:
      # Ctrl-C before a training loop took over SIGINT (`preemption.StopSignal`, which
      # saves a checkpoint first): setting up, compiling, sampling, evaluating.
      if flags.FLAGS.verbose:
        raise
      interrupted()
    if interrupts.remembered:  # a Ctrl-C whose KeyboardInterrupt Python swallowed
      interrupted()
    return result

  try:
    app.run(wrapped, flags_parser=_parse_flags)
  finally:
    # Unless the program replaced it (`preemption.finish_on_signal` keeps its own).
    if signal.getsignal(signal.SIGINT) is interrupts:
      signal.signal(signal.SIGINT, previous)
