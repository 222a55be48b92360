"""Writing benchmark reports: atomic files, so a killed benchmark never leaves half a report."""

import json
import os
import re

from absl import logging

from gan_jax import writers

# The reports this process has written (it replaces its own after every trial).
_WRITTEN = set()


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
  A report already in `out_dir` that another command made (an earlier benchmark in
  the same --out) is kept beside, renamed by its creation time, not replaced; one the
  same command made (a rerun, e.g. resuming kept trials) is replaced.
  """
  path = os.path.join(out_dir, json_name)
  if path not in _WRITTEN:
    _keep_earlier(path, os.path.join(out_dir, table_name), result.get('command'))
    _WRITTEN.add(path)
  writers.write_text_atomic(os.path.join(out_dir, json_name),
                            json.dumps(result, indent=2) + '\n')
  writers.write_text_atomic(os.path.join(out_dir, table_name),
                            result['table'] + machine_note(result['machine']))


def _keep_earlier(json_path, table_path, command):
  """Renames an earlier report at `json_path` (and its table) that `command` did not make."""
  if not os.path.exists(json_path):
    return
  try:
    with open(json_path, encoding='utf-8') as f:
      earlier = json.load(f)
  except (OSError, ValueError):
    earlier = {}
  earlier = earlier if isinstance(earlier, dict) else {}
  if command is not None and earlier.get('command') == command:
    return  # the same benchmark again: its report is replaced
  stamp = re.sub(r'[^0-9T]', '', str(earlier.get('created') or '')) or 'earlier'
  n, suffix = 1, ''
  while any(os.path.exists(_stamped(p, stamp + suffix)) for p in (json_path, table_path)):
    n += 1
    suffix = f'_{n}'
  for p in (json_path, table_path):
    if os.path.exists(p):
      os.rename(p, _stamped(p, stamp + suffix))
  logging.warning('%s holds the report of another command (%s); kept it as %s.', json_path,
                  earlier.get('command', 'unknown'), _stamped(json_path, stamp + suffix))


def _stamped(path, stamp):
  stem, ext = os.path.splitext(path)
  return f'{stem}.{stamp}{ext}'
