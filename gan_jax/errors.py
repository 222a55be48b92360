"""Errors a user can act on, and nothing else.

The command-line tools (`gan_jax.cli.run`) print a `UserError` as one short
`error:` paragraph and exit with status 2, without a traceback, and a `Stopped`
(a signal ended the work early) as one line with status 128 + the signal; every
other exception is a bug or an environment failure and keeps its traceback. The
message of a `UserError` says what was wrong and what to do about it.

The subclasses also derive from the built-in exception a caller would expect
(`ValueError` for bad values, `FileNotFoundError` for missing files), so code
that catches those keeps working.
"""


class UserError(Exception):
  """An expected error caused by the user's input, config, data or files."""


class ConfigError(UserError, ValueError):
  """A config field, flag or argument has a value that cannot work."""


class MissingFileError(UserError, FileNotFoundError):
  """A file, folder, data set or weights file the run needs is not there."""


class WorkdirError(UserError, ValueError):
  """A workdir holds a run that this command cannot continue or read."""


class NonFiniteError(UserError, FloatingPointError):
  """Numbers that must be finite are NaN or infinite: a diverged checkpoint's samples,
  latents a sampler moved too far."""


class WorkerExitedError(UserError, RuntimeError):
  """A benchmark's worker process ended without a reply: a flag of --xla_flags /
  $XLA_FLAGS that XLA does not know (XLA's own message is printed above), or the
  system stopped it for memory."""


class Stopped(BaseException):
  """A run or benchmark stopped early on a signal; the tools print its message as one
  line and exit with status 128 + `signum` (not a `UserError`: nothing was wrong).
  A BaseException, as KeyboardInterrupt: the `except Exception` that treats a
  failed read as a damaged file must not take a signal for one.

  Attributes:
    signum: the signal's number.
  """

  def __init__(self, message, signum):
    super().__init__(message)
    self.signum = signum
