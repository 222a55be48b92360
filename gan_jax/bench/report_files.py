"""Writing benchmark reports: atomic files, so a killed benchmark never leaves half a report."""

import json
import os
import pathlib
import shlex

from gan_jax import errors
from gan_jax import writers


def write_json(path, report):
  """Writes the JSON-serialisable `report` to `path` (indented, atomic)."""
  writers.write_text_atomic(path, json.dumps(report, indent=1) + '\n')


def machine_note(machine):
  """One markdown line naming where a result was measured.

  GAN training is chaotic: the rounding of XLA's CPU code differs between CPU types
  (AVX-512 or not), so the same seed gives other per-trial numbers on another CPU.

  Args:
    machine: `trials.machine_description()`'s dict ('cpu', 'cpu_count', 'jax_backend',
      'jax_devices', 'jax_version', 'python', 'platform').

  Returns:
    '\nMachine: <cpu>, <n> CPUs, JAX <version> (<backend>, <d> devices), Python <v>, <platform>.\n'
  """
  return (f"\nMachine: {machine['cpu']}, {machine['cpu_count']} CPUs, "
          f"JAX {machine['jax_version']} ({machine['jax_backend']}, "
          f"{machine['jax_devices']} devices), Python {machine['python']}, "
          f"{machine['platform']}.\n")


def write_result(result, out_dir, *, json_name, table_name):
  """A trial benchmark's outputs: `result` as JSON and `result['table']` as markdown.

  The markdown ends with `machine_note(result['machine'])` (every trial benchmark's
  result names its machine), so a table copied into the docs says where it was measured.
  `check_out_dir` keeps it from replacing another command's report.
  """
  writers.write_text_atomic(os.path.join(out_dir, json_name),
                            json.dumps(result, indent=2) + '\n')
  writers.write_text_atomic(os.path.join(out_dir, table_name),
                            result['table'] + machine_note(result['machine']))


def _flags_of(command):
  """A `trials.command_line` as what it asks for, whichever Python ran it: the module,
  and its flags in any order ('--name value' read as '--name=value'; of a repeated
  flag the last value counts, as absl reads it, except --set, which collects them)."""
  try:
    tokens = shlex.split(command)[1:]
  except ValueError:
    tokens = command.split()[1:]
  words = []
  for token in tokens:
    if words and words[-1].startswith('--') and '=' not in words[-1] and (
        not token.startswith('-')):
      words[-1] += '=' + token
    else:
      words.append(token)
  flags, settings = {}, []
  for word in words:
    name, _, value = word.partition('=')
    if name == '--set':
      settings.append(value)
    else:
      flags[name] = value
  return flags, sorted(settings)


def check_out_dir(out_dir, json_name, command):
  """Raises ConfigError when `out_dir` holds a report (`json_name`) that another
  command made: the benchmark would replace it after its first trial (and a toy
  report's plots before that). The same command again (a rerun, or resuming kept
  trials) may replace its own report. Call before any trial writes there."""
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise errors.ConfigError(f'--out={out_dir} is a file; give a folder for the report.')
  above = next((p for p in pathlib.Path(os.path.abspath(out_dir)).parents if p.exists()), None)
  if above is not None and not above.is_dir():
    raise errors.ConfigError(f'--out={out_dir}: {above} is a file, not a folder.')
  path = os.path.join(out_dir, json_name)
  if not os.path.exists(path):
    return
  try:
    with open(path, encoding='utf-8') as f:
      earlier = json.load(f)
  except (OSError, ValueError):
    earlier = {}
  earlier = earlier.get('command') if isinstance(earlier, dict) else None
  if earlier is None or _flags_of(earlier) != _flags_of(command):
    raise errors.ConfigError(
        f'--out={out_dir} holds the report of another benchmark ({earlier or "unreadable"}); '
        'this one would replace it. Pass another --out, or move that report away.')
