"""Finding experiment config files by name, from any directory.

The configs ship with the package (the `configs/` folder beside `gan_jax/`,
installed with it). `--config` accepts a path to any config file, or the name of
a shipped one, with an optional `:VARIANT`:

  --config=my_experiment.py          a file (relative to the current directory)
  --config=configs/dcgan_digits.py   a shipped config, from any directory
  --config=dcgan_digits:smoke        the same by name, with a variant

A config file defines `get_config(arg=None)`, which returns the experiment's
`ml_collections.ConfigDict` (start from `gan_jax.defaults.get_config()`); `arg` is
the text after ':' (None without one), which the file parses itself (the shipped
ones with `configs.common.parse_arg`, importable from anywhere once installed).
"""

import ast
import difflib
import importlib.util
import os
import pathlib
import re

from gan_jax import errors

# Helper modules in configs/ that are not experiments.
_NOT_CONFIGS = ('__init__', 'common')


def configs_dir():
  """The folder of the shipped configs (installed beside the gan_jax package)."""
  return pathlib.Path(__file__).resolve().parent.parent / 'configs'


# A variant no config has: asking for it makes a config list the ones it has.
_NO_SUCH_VARIANT = '__list_the_variants__'


def names():
  """Names of the shipped configs, sorted."""
  return sorted(p.stem for p in configs_dir().glob('*.py') if p.stem not in _NOT_CONFIGS)


def resolve(value):
  """Maps a `--config` value to `<existing file>[:VARIANT]`.

  Args:
    value: 'PATH[:VARIANT]' or 'NAME[:VARIANT]'.

  Returns:
    The value with its path made absolute.

  Raises:
    KeyError: when neither a file nor a shipped config has that name (the
      message lists close names).
  """
  path, sep, variant = value.partition(':')
  if os.path.isfile(path):
    return os.path.abspath(path) + sep + variant
  stem = pathlib.PurePath(path).stem if path.endswith('.py') else pathlib.PurePath(path).name
  candidate = configs_dir() / f'{stem}.py'
  if stem not in _NOT_CONFIGS and candidate.is_file():
    return str(candidate) + sep + variant
  close = difflib.get_close_matches(stem, names(), n=3)
  hint = f' Did you mean {", ".join(close)}?' if close else ''
  raise KeyError(f'unknown config {path!r}: no such file, and no shipped config of that '
                 f'name.{hint} List them with: python -m gan_jax.main --list_configs')


def resolve_argv(argv):
  """`argv` with the value of `--config=...` (or `--config ...`) resolved.

  Raises:
    ConfigError: an unknown config (the message names close matches).
  """
  argv = list(argv)
  for i, arg in enumerate(argv):
    try:
      if arg.startswith('--config='):
        argv[i] = '--config=' + resolve(arg[len('--config='):])
      elif arg == '--config' and i + 1 < len(argv):
        argv[i + 1] = resolve(argv[i + 1])
    except KeyError as e:
      raise errors.ConfigError(e.args[0]) from None
  return argv


def _summary_line(path):
  """The first line of a config file's docstring."""
  doc = ast.get_docstring(ast.parse(path.read_text())) or ''
  return doc.strip().splitlines()[0] if doc.strip() else ''


def describe_all():
  """Per shipped config: its name and what it is, then its variants."""
  width = max(map(len, names()), default=0)
  lines = []
  for name in names():
    lines.append(f'{name:<{width}}  {_summary_line(configs_dir() / (name + ".py"))}')
    known = variants(name)
    if known:
      lines.append(f'{"":<{width}}  variants: ' + ', '.join(
          key if default is False else
          f'{key}=...' + ('' if default is None else f' (default {default})')
          for key, default in known.items()))
  return '\n'.join(lines)


def variants(spec):
  """{variant: default} of a config (False for a switch such as 'smoke'), read from the
  error its `get_config` gives for a variant it does not have; {} for a config with none."""
  from configs import common  # pylint: disable=g-import-not-at-top (configs/ is beside the package)
  try:
    load(spec.partition(':')[0] + ':' + _NO_SUCH_VARIANT)
  except common.UnknownVariant as e:
    return e.known
  except Exception:  # pylint: disable=broad-except (a config that takes no variants)
    return {}
  return {}



def load(spec):
  """The ConfigDict of a spec 'NAME[:VARIANT]' or 'PATH[:VARIANT]' (no flags involved).

  Raises:
    KeyError: for an unknown config (see `resolve`).
  """
  path, _, variant = resolve(spec).partition(':')
  module_spec = importlib.util.spec_from_file_location(
      'gan_jax_config_' + re.sub(r'\W', '_', path), path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(variant) if variant else module.get_config()
