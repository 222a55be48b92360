"""Statistics and the Markdown table of the toy mode-collapse benchmark.

Each of our rows reports, over its trials, the mean +- standard error (s.e. =
sample standard deviation with ddof=1 / sqrt(trials)) and the WORST trial of
every metric: the fewest modes captured, the number of trials that captured
every mode, the lowest high-quality share, the largest reverse KL and the
slowest training time. Published rows (PacGAN Table 1, VEEGAN) follow.
"""

import math

import numpy as np

from gan_jax.bench import overrides as overrides_lib
from gan_jax.bench import trials as trials_lib

METRICS = ('modes_captured', 'high_quality', 'reverse_kl', 'train_seconds')
# The worst trial of each metric: min for the ones where more is better.
WORST = {'modes_captured': min, 'high_quality': min, 'reverse_kl': max, 'train_seconds': max}

# PacGAN (Lin et al. 2018), Table 1, and VEEGAN's numbers as quoted there:
# means over 10 trials; None where the source reports no value.
REFERENCE_ROWS = (
    dict(mixture='ring', method='GAN', modes_captured=6.3, high_quality=0.982,
         reverse_kl=0.45, source='PacGAN Table 1'),
    dict(mixture='ring', method='PacGAN2', modes_captured=7.9, high_quality=0.956,
         reverse_kl=0.07, source='PacGAN Table 1'),
    dict(mixture='ring', method='VEEGAN', modes_captured=8.0, high_quality=0.529,
         reverse_kl=None, source='Srivastava et al. 2017'),
    dict(mixture='grid', method='GAN', modes_captured=17.3, high_quality=0.948,
         reverse_kl=0.70, source='PacGAN Table 1'),
    dict(mixture='grid', method='PacGAN4', modes_captured=24.8, high_quality=0.936,
         reverse_kl=0.04, source='PacGAN Table 1'),
    dict(mixture='grid', method='VEEGAN', modes_captured=24.6, high_quality=0.40,
         reverse_kl=None, source='Srivastava et al. 2017'),
)


def mean_and_se(values):
  """Mean and standard error of the mean.

  Args:
    values: a non-empty sequence of numbers (one per trial).

  Returns:
    (mean, se) floats; se = std(values, ddof=1) / sqrt(n), None when n == 1
    (one trial has no spread to estimate).
  """
  x = np.asarray(values, np.float64)
  if x.size == 0:
    raise ValueError('mean_and_se needs at least one value.')
  if x.size == 1:
    return float(x[0]), None
  return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size))


def summarize(trials, *, num_modes):
  """Per-metric {'mean', 'se', 'worst'} over trial records, and 'all_modes' (count).

  Args:
    trials: dicts holding `METRICS`.
    num_modes: modes of the mixture (a trial 'captures all' with this many).
  """
  summary = {}
  for key in METRICS:
    values = [t[key] for t in trials]
    mean, se = mean_and_se(values)
    summary[key] = {'mean': mean, 'se': se, 'worst': float(WORST[key](values))}
  summary['all_modes'] = sum(t['modes_captured'] == num_modes for t in trials)
  return summary


def _cell(mean, se, *, scale=1.0, digits=1, worst=None):
  if mean is None:
    return '–'
  text = f'{mean * scale:.{digits}f}'
  if se is not None:
    text += f' ± {se * scale:.{digits}f}'
  if worst is not None:
    text += f' ({worst * scale:.{digits}f})'
  return text


def _our_line(r):
  s = r['summary']
  cell = lambda key, **kw: _cell(s[key]['mean'], s[key]['se'], worst=s[key]['worst'], **kw)
  return (f"| {r['mixture']} | {overrides_lib.row_label(r)} (ours) | {len(r['trials'])} "
          f"| {cell('modes_captured')} / {r['num_modes']} "
          f"| {s['all_modes']} / {len(r['trials'])} "
          f"| {cell('high_quality', scale=100)} "
          f"| {cell('reverse_kl', digits=3)} "
          f"| {cell('train_seconds')} |")


def _reference_line(r):
  return (f"| {r['mixture']} | {r['method']} ({r['source']}) | 10 "
          f"| {_cell(r['modes_captured'], None)} | – "
          f"| {_cell(r['high_quality'], None, scale=100)} "
          f"| {_cell(r['reverse_kl'], None, digits=2)} | – |")


def format_table(rows, references=REFERENCE_ROWS):
  """The Markdown results table: our rows and the published ones, per mixture.

  Args:
    rows: result rows: dicts with 'config', 'mixture', 'num_modes', 'trials'
      (a list) and 'summary' (`summarize`).
    references: published rows (`REFERENCE_ROWS`).

  Returns:
    A Markdown table (str): mixture, config, trials, modes captured (of K),
    trials with every mode, high-quality samples (%), reverse KL and training
    seconds per trial; our cells are `mean ± s.e. (worst trial)`.
  """
  lines = [f'| mixture | config{trials_lib.steps_label(rows)} | trials | modes captured (worst) '
           '| trials with all modes '
           '| high quality % (worst) | reverse KL (worst) | train s / trial (slowest) |',
           '|---|---|---:|---:|---:|---:|---:|---:|']
  mixtures = list(dict.fromkeys(r['mixture'] for r in list(rows) + list(references)))
  for mixture in mixtures:
    lines += [_our_line(r) for r in rows if r['mixture'] == mixture]
    lines += [_reference_line(r) for r in references if r['mixture'] == mixture]
  return '\n'.join(lines) + '\n'
