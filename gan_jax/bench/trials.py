"""What the seed-by-seed benchmarks share: configs by name, one run folder per trial, flags.

`gan_jax.bench.toy`, `gan_jax.bench.little_data` and `gan_jax.bench.semi_supervised`
each train the configs named by `--configs` for several seeds, one run folder per
(config, seed) trial, and rewrite their report after every trial (the same command
again continues it: `report_files.earlier_trial`). This module holds
the parts they share, so each of them keeps only its protocol and its scores:

  split_config_names   '--configs' text -> config specs ('name[:variant,...]')
  load_config          a spec -> its ConfigDict, a bad name as a one-line ConfigError
  slug                 a spec (and the trial's other settings) -> a file-name-safe name
  trial_workdir        the run folder of one trial (temporary, or kept under --out)
  command_line, machine_description   what a report records about how it was made
  define_flags         --out, --num_steps, --set and --keep_workdirs
"""

import contextlib
import json
import os
import platform
import re
import signal
import shlex
import shutil
import sys
import tempfile
import time

from absl import flags
import jax

from gan_jax import config_check
from gan_jax import config_files
from gan_jax import errors
from gan_jax import preemption
from gan_jax import train
from gan_jax import workdir as workdir_lib
from gan_jax import writers
from gan_jax.bench import report_files


def split_config_names(text):
  """Splits `--configs` into config specs, keeping variant arguments together.

  A variant argument may itself hold commas (`toy_ring:baseline,smoke`), so a
  piece that is not a config (no ':' and no shipped config of that name) is
  glued to the previous spec: 'toy_ring:baseline,smoke,toy_grid' ->
  ['toy_ring:baseline,smoke', 'toy_grid'].

  Args:
    text: comma-separated config specs.

  Returns:
    list of specs 'name[:arg]' in the given order.

  Raises:
    ConfigError: when `text` names no config at all, or one twice (the same trials
      would be trained and reported twice).
  """
  specs = []
  for piece in (p.strip() for p in text.split(',')):
    if not piece:
      continue
    is_config = piece.endswith('.py') or piece in config_files.names()
    if specs and ':' in specs[-1] and ':' not in piece and not is_config:
      specs[-1] += ',' + piece
    else:
      specs.append(piece)
  if not specs:
    raise errors.ConfigError(f'--configs names no config (got {text!r}); pass e.g. '
                             '--configs=dcgan_digits:few,dcgan_digits:few,noaug.')
  twice = sorted({spec for spec in specs if specs.count(spec) > 1})
  if twice:
    raise errors.ConfigError(f'--configs names {", ".join(twice)} twice; name each config once '
                             '(--trials sets the runs of each).')
  return specs


def load_config(spec):
  """The ConfigDict of a config spec 'name[:arg]' or 'path.py[:arg]'.

  Raises:
    ConfigError: an unknown config or variant (config_files' message).
  """
  try:
    return config_files.load(spec)
  except KeyError as e:
    raise errors.ConfigError(e.args[0]) from None


def slug(spec, *extra, no_variant=''):
  """'name[-variant][-extra...]' of a config spec 'name[:variant]' or 'path.py[:variant]'
  (a path by its file name; `no_variant` stands for a missing variant when given),
  with every run of characters other than letters, digits and `_.=-` replaced by
  '_': a folder or file name. Kept trial folders are found again by it, so it
  does not change."""
  name, _, variant = spec.partition(':')
  variant = variant or no_variant
  parts = [os.path.splitext(os.path.basename(name))[0]] + ([variant] if variant else [])
  return re.sub(r'[^A-Za-z0-9_.=-]+', '_', '-'.join(parts + [str(e) for e in extra]))


@contextlib.contextmanager
def trial_workdir(out_dir, slug, seed, *, keep):
  """The run folder of one trial, as a context manager yielding its path.

  Args:
    out_dir: the benchmark's --out folder.
    slug: a file-name-safe name of the trial's config (and overrides).
    seed: the trial's seed.
    keep: True: `<out_dir>/workdirs/<slug>/seed_<seed>`, kept afterwards (a run
      already there is resumed); False: a new temporary folder, deleted when the
      block ends, also when it raises (a failed trial leaves nothing behind).

  Raises:
    errors.Stopped: SIGTERM or Ctrl-C during the trial (training saves its
      checkpoint first), with a message saying what became of the trial's folder.
      SIGTERM raises here instead of killing the process, so a temporary folder
      is deleted then too.
  """
  try:
    with preemption.sigterm_raises():
      if keep:
        kept = os.path.join(out_dir, 'workdirs', slug, f'seed_{seed}')
        try:
          yield kept
        except errors.WorkdirError as e:
          # Its advice (--workdir, --allow_config_change) is for gan_jax.main.
          raise errors.WorkdirError(
              f'{e}\n(This is the benchmark\'s kept trial folder {kept}, made by an earlier '
              'run with other settings, e.g. another --num_steps; the benchmarks have no '
              '--workdir or --allow_config_change: rerun with the flags that made it, pass '
              'another --out, or delete that folder.)') from None
      else:
        workdir = tempfile.mkdtemp(prefix=f'bench_{slug}_{seed}_')
        try:
          yield workdir
        finally:
          shutil.rmtree(workdir, ignore_errors=True)
  except (errors.Stopped, KeyboardInterrupt) as e:
    signum = getattr(e, 'signum', signal.SIGINT)
    fate = ('its folder is kept: the same command again resumes it' if keep else
            'its folder was temporary: the same command again trains it from the start '
            '(add --keep_workdirs to keep trial folders, so that a stopped trial resumes)')
    raise errors.Stopped(
        f'Stopped by {signal.Signals(signum).name} during the trial {slug}, seed {seed}: '
        f'{fate}. The report in --out holds the trials finished before it, if any, and the '
        'same command again keeps them.', signum) from None


# In a trial's run folder: the seconds its training has taken so far, over every
# invocation that trained there ({"wall": s, "cpu": s}).
TRAIN_SECONDS_FILE = 'bench_train_seconds.json'


def train_timed(config, workdir):
  """`train.train_and_evaluate(config, workdir)`, and the (wall, CPU) seconds the trial's
  training has taken: a kept trial resumed after an interrupt adds this invocation's
  time to what the earlier ones recorded in the folder (a stop records its part too),
  and a finished one run again adds nothing, so a table of resumed trials reports
  whole trials. CPU seconds are this process's (all its threads)."""
  path = os.path.join(workdir, TRAIN_SECONDS_FILE)
  before = {'wall': 0.0, 'cpu': 0.0}
  if os.path.exists(path):
    try:
      with open(path, encoding='utf-8') as f:
        before = {k: float(v) for k, v in json.load(f).items() if k in before}
    except (OSError, ValueError, AttributeError, TypeError):
      pass  # a damaged record: count from here
  done = (workdir_lib.checkpoint_steps(workdir) or [-1])[-1] >= config.train.num_steps
  start, cpu_start = time.perf_counter(), time.process_time()
  try:
    train.train_and_evaluate(config, workdir)
  finally:
    if not done:
      before = {'wall': before['wall'] + time.perf_counter() - start,
                'cpu': before['cpu'] + time.process_time() - cpu_start}
      if os.path.isdir(workdir):
        writers.write_text_atomic(path, json.dumps(before))
  return before['wall'], before['cpu']


def check_configs(configs, num_steps=None, *, as_trained=None):
  """Runs the config checks (`config_check.validate`) on every (spec, config) of a
  benchmark, with `num_steps` as --num_steps sets it and `as_trained(config)` (what
  the harness changes in every trial, in place) applied, before anything is written:
  a bad --set value must not leave an empty --out folder; and the batch against this
  process's devices (PacGAN's groups included), which every trial trains on. (Checks
  that need the data still come at training.)

  Two specs whose `slug`s coincide (config files of the same name in different
  folders) are refused: their trials would share run folders and plots.

  A setting that changes nothing in a config (`config_check.unread_settings`, e.g.
  a --set augment.cutout_ratio for the run without augmentation) is refused only
  when it changes nothing in any of them.
  """
  unread, seen = [], {}
  for spec, config in configs:
    config = config.copy_and_resolve_references()
    if num_steps is not None:
      config.train.num_steps = int(num_steps)
    if as_trained is not None:
      as_trained(config)
    same = seen.setdefault(config.to_json(sort_keys=True), spec)
    if same != spec:  # e.g. 'x:few,noaug' and 'x:noaug,few', or a name and its file
      raise errors.ConfigError(f'--configs names the same config twice: {same} and {spec}; '
                               'name each once (--trials sets the runs of each).')
    config_check.validate(config)
    config_check.check_batch_over_devices(config, jax.device_count(), jax.process_count())
    unread.append(dict(config_check.unread_settings(config)))
  by_slug = {}
  for spec, _ in configs:
    other = by_slug.setdefault(slug(spec), spec)
    if other != spec:  # e.g. a/model.py and b/model.py: one would resume the other's trials
      raise errors.ConfigError(
          f'--configs names {other} and {spec}, whose trial folders and files would have '
          f'the same name ({slug(spec)}); copy one of the config files under another name.')
  for field, message in unread[0].items() if unread else ():
    if all(field in other for other in unread):
      raise errors.ConfigError(
          ('In every config of this benchmark: ' if len(unread) > 1 else '') + message)


def steps_label(rows):
  """' (8,000 steps)' for a table's header: the train.num_steps of its rows (each
  different count once, in order), '' when the rows do not say."""
  steps = sorted({int(r['num_steps']) for r in rows if r.get('num_steps')})
  return f" ({' / '.join(f'{n:,}' for n in steps)} steps)" if steps else ''


def command_line(module):
  """The command that started this process, as `python -m <module> <its flags>`."""
  return shlex.join([os.path.basename(sys.executable), '-m', module] + sys.argv[1:])


def machine_description():
  """Where the numbers were measured: OS, CPU, core count, JAX backend and version."""
  return {'platform': platform.platform(), 'cpu': report_files.cpu_model(),
          'cpu_count': os.cpu_count(),
          'jax_backend': jax.default_backend(), 'jax_devices': jax.device_count(),
          'jax_version': jax.__version__, 'python': platform.python_version()}


def define_flags(*, out, out_help, set_example):
  """Defines the flags every trial benchmark takes, with `out` the default --out.

  --out (output folder; `out_help` says what goes there), --num_steps (overrides
  every config's train.num_steps), --set (repeatable FIELD=VALUE, `set_example`
  shows one; `gan_jax.bench.overrides`) and --keep_workdirs (`trial_workdir`).
  """
  flags.DEFINE_string('out', out, out_help)
  flags.DEFINE_integer('num_steps', None,
                       "Every config's train.num_steps (default: each config's own).",
                       lower_bound=1)
  flags.DEFINE_multi_string('set', [], 'FIELD=VALUE: set a field of every config, e.g. '
                            f'--set={set_example} (repeat for more).')
  flags.DEFINE_bool('keep_workdirs', False,
                    'Keep each trial run in <out>/workdirs/ (default: a temp folder).')
