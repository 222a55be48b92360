"""Writing benchmark reports: atomic files, so a killed benchmark never leaves half a report."""

import json
import os
import pathlib
import platform
import shlex

from gan_jax import errors
from gan_jax import writers


def write_json(path, report):
  """Writes the JSON-serialisable `report` to `path` (indented, atomic)."""
  writers.write_text_atomic(path, json.dumps(report, indent=1) + '\n')


def cpu_model():
  """The CPU's model name ('Intel(R) Xeon(R) CPU @ 2.20GHz', from /proc/cpuinfo on
  Linux), else what `platform` knows ('x86_64', 'arm'): a benchmark's numbers
  depend on it, so every report names it."""
  cpu = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      cpu = next((line.split(':', 1)[1].strip() for line in f
                  if line.startswith('model name')), cpu)
  except OSError:
    pass
  return cpu


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


# Flags that change where trials run, not what they measure.
_NOT_MEASURED = ('--keep_workdirs', '--nokeep_workdirs')


def _flags_of(command):
  """A `trials.command_line` as what it asks for, whichever Python ran it: the module,
  and its flags in any order ('--name value' read as '--name=value'; of a repeated
  flag the last value counts, as absl reads it, except --set, which collects them;
  --keep_workdirs left out: it keeps the trials' folders, the numbers are the same)."""
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
    if name in _NOT_MEASURED:
      continue
    if name == '--set':
      settings.append(value)
    else:
      flags[name] = value
  return flags, sorted(settings)


def _differences(earlier, command):
  """How `command`'s flags differ from `earlier`'s, e.g. '--a=1 (now --a=2), no --b (now
  --b=5), --c=x (now absent)'."""
  (then_flags, settings), (now_flags, now_settings) = _flags_of(earlier), _flags_of(command)
  said = []
  for name in sorted(set(then_flags) | set(now_flags)):
    if then_flags.get(name) != now_flags.get(name):
      then = f'{name}={then_flags[name]}' if name in then_flags else f'no {name}'
      now = f'{name}={now_flags[name]}' if name in now_flags else 'absent'
      said.append(f'{then} (now {now})')
  if settings != now_settings:
    said.append(f'--set {settings} (now {now_settings})')
  return ', '.join(said)


def check_out_dir(out_dir, json_name, command):
  """The report (`json_name`) in `out_dir` that the same command made, to continue.

  A report another command made (other flags, --keep_workdirs aside) raises
  ConfigError: the benchmark would replace it after its first trial (and a toy
  report's plots before that). The same command again (a rerun after a stop)
  continues its report: `earlier_trial` finds the trials it holds. Call before any
  trial writes there.

  Returns:
    The earlier report (a dict with 'rows'), or None when there is none.
  """
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
  made_by = earlier.get('command') if isinstance(earlier, dict) else None
  if not isinstance(made_by, str) or not isinstance(earlier.get('rows'), list):
    raise errors.ConfigError(
        f'--out={out_dir} holds a report this benchmark cannot read ({path}); it would '
        'replace it. Pass another --out, or move that report away.')
  if _flags_of(made_by) != _flags_of(command):
    raise errors.ConfigError(
        f'--out={out_dir} holds the report of another command ({made_by}): '
        f'{_differences(made_by, command)}; this one would replace it. Rerun that command '
        'to continue it, pass another --out, or move that report away.')
  return earlier


def earlier_trial(earlier, row, seed):
  """The trial record of `seed` in the earlier report's row that is `row`, or None.

  Args:
    earlier: `check_out_dir`'s report (or None).
    row: a row of the new report (every key but 'trials' and 'summary' names it:
      config, overrides, fraction, steps ...).
    seed: the trial's seed.
  """
  if not earlier:
    return None
  # Through JSON, as the earlier row was read: tuples become lists.
  same = lambda r: json.loads(json.dumps(
      {k: v for k, v in r.items() if k not in ('trials', 'summary')}))
  for old in earlier['rows']:
    if isinstance(old, dict) and same(old) == same(row):
      return next((t for t in old.get('trials') or () if isinstance(t, dict)
                   and t.get('seed') == seed), None)
  return None
