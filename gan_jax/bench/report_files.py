"""Writing benchmark reports: atomic files, so a killed benchmark never leaves half a report."""

import json
import os

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
  """
  writers.write_text_atomic(os.path.join(out_dir, json_name),
                            json.dumps(result, indent=2) + '\n')
  writers.write_text_atomic(os.path.join(out_dir, table_name),
                            result['table'] + machine_note(result['machine']))
