"""FID / IS / KID / precision-recall / density-coverage of samples split over processes.

Each process holds the features of its own contiguous rows of the global sample
set (`exchange.process_share`); these functions return, on every process, the
same numbers as the functions of `stats.py` applied to the whole set, and
exchange as little as each metric allows:

  FID   counts and sums (f64[D]), then the scatter about the global mean
        (f64[D, D]): a two-pass covariance, as `np.cov`.
  IS    per split of the torch-fidelity shuffle: row count, sum of p(y|x)
        (f64[C]) and sum of p log p: f64[splits, C + 2].
  KID   the fake features themselves, once (`exchange.gather_rows`): every
        subset draws rows from the whole set. Each process then computes every
        P-th subset's MMD^2, and the S values are exchanged.
  PR    the fake features, once (each fake row's k-NN radius is over the whole
        fake set); each process then tests its own fake rows against the real
        balls (a count) and all real rows against its own fake balls (bool[N_r],
        OR-ed over processes).
  DC    nothing of the fakes but counts: each process counts the real balls around
        its own fake rows (density, a sum) and the nearest of its fake rows to
        every real row (f[N_r], the minimum over processes: coverage).

The real features are on every process (the reference set, `reference.py`).
Everything here is a collective: all processes call it in the same order.
"""

import numpy as np

from gan_jax.metrics import exchange
from gan_jax.metrics import stats


def feature_statistics(local):
  """Mean and covariance of the features of all processes, as `stats.feature_statistics`.

  Args:
    local: f[N_p, D], this process's rows (N_p may be 0; the total must be >= 2).

  Returns:
    (mu f64[D], sigma f64[D, D]) of the whole set, normalised by N - 1.
  """
  x = np.asarray(local, np.float64)
  if x.ndim != 2:
    raise ValueError(f'features must be [N, D], got shape {x.shape}')
  sums = exchange.sum_across(np.concatenate([[len(x)], x.sum(axis=0)]))
  n = sums[0]
  if n < 2:
    raise ValueError(f'features must be [N >= 2, D] over all processes, got N = {int(n)}')
  mu = sums[1:] / n
  centred = x - mu
  # About the *global* mean, so no cancellation between per-process sums.
  scatter = exchange.sum_across(centred.T @ centred)
  return mu, scatter / (n - 1)


def split_of_rows(start, stop, *, num_rows, splits, shuffle=True, seed=2020):
  """int[stop - start]: the Inception Score split of each global row in [start, stop).

  `stats.inception_score` permutes rows with RandomState(seed).permutation(N)
  and cuts the permuted order into chunks [i N / splits, (i + 1) N / splits).
  """
  if shuffle:
    position = np.empty(num_rows, np.int64)
    position[np.random.RandomState(seed).permutation(num_rows)] = np.arange(num_rows)
    position = position[start:stop]
  else:
    position = np.arange(start, stop)
  bounds = np.arange(splits + 1) * num_rows // splits
  return np.searchsorted(bounds, position, side='right') - 1


def inception_score(local_logits, *, start, num_rows, splits=10, shuffle=True, seed=2020):
  """`stats.inception_score` of the logits of all processes.

  Args:
    local_logits: f[N_p, C], the logits of global rows [start, start + N_p).
    start: this process's first global row.
    num_rows: N, rows over all processes (>= splits).
    splits, shuffle, seed: as `stats.inception_score` (torch-fidelity's defaults).

  Returns:
    (mean, std) over splits, Python floats (std with ddof=0).
  """
  z = np.asarray(local_logits, np.float64)
  if num_rows < splits or splits < 1:
    raise ValueError(f'Inception Score needs N >= splits, got N={num_rows}, splits={splits}')
  split = split_of_rows(start, start + len(z), num_rows=num_rows, splits=splits,
                        shuffle=shuffle, seed=seed)
  shifted = z - z.max(axis=1, keepdims=True)
  log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
  p = np.exp(log_p)
  one_hot = (split[None, :] == np.arange(splits)[:, None]).astype(np.float64)
  # 0 log 0 = 0 (a probability that underflowed to 0), as `stats.inception_score`.
  with np.errstate(invalid='ignore'):  # -inf logits: 0 * -inf, then dropped
    p_log_p_rows = np.where(p > 0, p * log_p, 0.0).sum(axis=1, keepdims=True)
  rows = np.concatenate([np.ones((len(z), 1)), p, p_log_p_rows], axis=1)
  totals = exchange.sum_across(one_hot @ rows)  # [splits, 1 + C + 1]
  count, p_sum, p_log_p = totals[:, 0], totals[:, 1:-1], totals[:, -1]
  # mean_i KL(p_i || q) with q = p_sum / count: (sum p log p - p_sum . log q) / count.
  log_q = np.log(np.where(p_sum > 0, p_sum / count[:, None], 1.0))  # p_sum = 0 adds 0
  kl = (p_log_p - (p_sum * log_q).sum(axis=1)) / count
  scores = np.exp(kl)
  return float(np.mean(scores)), float(np.std(scores))


def dealt_out(num, values_fn):
  """Computes `values_fn` of items 0 .. num - 1, item i on process i mod P.

  Args:
    num: number of items.
    values_fn: int[M] item indices -> f[M] one value per item (run locally).

  Returns:
    f64[num] on every process, in item order.
  """
  index, count = exchange.process_index(), exchange.process_count()
  mine = np.arange(index, num, count)
  gathered = exchange.gather_rows(np.asarray(values_fn(mine), np.float64))
  owners = np.concatenate([np.arange(p, num, count) for p in range(count)])
  out = np.empty(num)
  out[owners] = gathered
  return out


def kernel_inception_distance(real, fake, *, subset_size, num_subsets, seed):
  """`stats.kernel_inception_distance` with its subsets dealt out to the processes.

  Args:
    real, fake: f[N_r, D] and f[N_f, D], the *whole* sets (identical on every process).
    subset_size, num_subsets, seed: as `stats.kernel_inception_distance`.

  Returns:
    (mean, std) over subsets, Python floats.
  """
  rows_x, rows_y = stats.kid_subsets(len(real), len(fake), subset_size=subset_size,
                                     num_subsets=num_subsets, seed=seed)
  whole = stats.kid_whole_sets(len(real), len(fake), rows_x.shape[1], num_subsets)
  values = dealt_out(num_subsets, lambda mine: stats.kid_subset_values(
      real, fake, rows_x[mine], rows_y[mine], whole_sets=whole))
  return float(values.mean()), float(values.std())


def real_radii(real, *, k, block):
  """k-NN radii (squared) of every real row, each process computing its share of rows.

  real: [N_r, D] features (every process holds all rows); k: the neighbour (k-th
  nearest other row); block: rows per distance block. Returns the radii [N_r] in
  `stats.pr_dtype()`, gathered from every process.
  """
  x = np.asarray(real, stats.pr_dtype())
  start, stop = exchange.process_share(len(x))
  return exchange.gather_rows(stats.knn_radii(x[start:stop], x, k=k, block=block))


def precision_recall(real, radii, local_fake, all_fake, *, k, block):
  """`stats.precision_recall` with the fake rows split over processes.

  Args:
    real: f[N_r, D], the whole real set; radii: f[N_r] its `real_radii`.
    local_fake: f[N_p, D], this process's fake rows.
    all_fake: f[N_f, D], every process's fake rows (`exchange.gather_rows`).
    k: neighbourhood size.
    block: query rows per distance block (`stats.pr_block` of the whole sets).

  Returns:
    (precision, recall), Python floats in [0, 1].
  """
  dtype = stats.pr_dtype()
  x, mine, everyone = (np.asarray(a, dtype) for a in (real, local_fake, all_fake))
  if min(len(x), len(everyone)) <= k:
    raise ValueError(f'precision/recall with k={k} needs more than {k} samples per set, '
                     f'got {len(x)} real and {len(everyone)} fake')
  fake_radii = stats.knn_radii(mine, everyone, k=k, block=block)
  hits = exchange.sum_across(np.array([stats.covered(mine, x, radii, block=block).sum()],
                                      np.int64))[0]
  covered = exchange.allgather(stats.covered(x, mine, fake_radii, block=block)).any(axis=0)
  return float(hits / len(everyone)), float(covered.mean())


def density_coverage(real, radii, local_fake, *, num_fake, k, block):
  """`stats.density_coverage` with the fake rows split over processes.

  Args:
    real: f[N_r, D], the whole real set; radii: f[N_r] its `real_radii` with this k.
    local_fake: f[N_p, D], this process's fake rows (none is fine).
    num_fake: the number of fake rows over all processes.
    k: neighbourhood size.
    block: query rows per distance block (`stats.pr_block` of the whole sets).

  Returns:
    (density, coverage), Python floats: density >= 0, coverage in [0, 1].
  """
  dtype = stats.pr_dtype()
  x, mine = np.asarray(real, dtype), np.asarray(local_fake, dtype)
  stats.check_density_coverage_counts(len(x), num_fake, k)
  inside = exchange.sum_across(np.array([stats.inside_counts(mine, x, radii, block=block).sum()],
                                        np.int64))[0]
  nearest = exchange.allgather(stats.nearest_sq_distance(x, mine, block=block)).min(axis=0)
  return float(inside / (k * num_fake)), float((nearest < radii).mean())
