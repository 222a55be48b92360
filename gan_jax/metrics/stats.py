"""FID, KID, Inception Score, improved precision / recall, density / coverage; KL of a
histogram to uniform.

Pure functions of features (numpy, float64 where it matters); the Inception
network that produces the features lives in `inception.py`. Reference
implementations matched (see tests/test_metrics.py):
  FID: pytorch-fid 0.3.0 `calculate_frechet_distance`, with the matrix square
       root taken by symmetric eigen-decompositions instead of scipy's sqrtm.
  KID: torch-fidelity 0.4.0 `kid_features_to_metric` (cubic polynomial kernel,
       unbiased MMD^2, its subset sampling).
  IS:  torch-fidelity 0.4.0 `isc_features_to_metric` (its shuffle and splits).
  Precision / recall: Kynkaanniemi et al. 2019 (k-NN hyperspheres, k = 3).
  Density / coverage: Naeem et al. 2020, clovaai's prdc 0.2 `compute_prdc` (as
       PyTorch-StudioGAN computes them: k = 5, strict inequalities).
"""

import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np


def check_finite(name, x):
  """Raises ValueError naming `name` when the array `x` (any shape) holds NaN or inf:
  every metric of it would be NaN or garbage."""
  bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
  if bad:
    raise ValueError(f'{name}: {bad} of {np.size(x)} values are NaN or infinite; a metric '
                     'of such features means nothing (check the images and the network).')


def feature_statistics(features):
  """Mean and covariance of features, as pytorch-fid computes them.

  Args:
    features: f[N, D], N >= 2.

  Returns:
    (mu f64[D], sigma f64[D, D]): `mean(axis=0)` and `np.cov(rowvar=False)`
    (normalised by N - 1) of the float64-cast features.
  """
  x = np.asarray(features, dtype=np.float64)
  if x.ndim != 2 or x.shape[0] < 2:
    raise ValueError(f'features must be [N >= 2, D], got shape {x.shape}')
  check_finite('features', x)
  return x.mean(axis=0), np.cov(x, rowvar=False)


def _psd_sqrt(sigma):
  """Symmetric PSD square root via eigh; tiny negative eigenvalues (rounding) clip to 0."""
  w, v = np.linalg.eigh(sigma)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2):
  """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

  d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1^1/2 S2 S1^1/2).
  tr sqrt(S1 S2) is taken from the eigenvalues of the symmetric PSD matrix
  S1^1/2 S2 S1^1/2 (same eigenvalues as S1 S2), which avoids scipy's sqrtm and
  its complex / ill-conditioned failure modes for singular covariances (N < D).

  Args:
    mu1, mu2: f[D] means.
    sigma1, sigma2: f[D, D] covariances (symmetric PSD).

  Returns:
    A Python float, >= 0 up to rounding: for (nearly) identical sets it may be a
    tiny negative number, as pytorch-fid's (-1e-5 for 300 samples of 2048 features
    against themselves), since tr S1 + tr S2 - 2 tr sqrt(.) cancels in float64.
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
    raise ValueError(f'shape mismatch: mu {mu1.shape} / {mu2.shape}, '
                     f'sigma {s1.shape} / {s2.shape}')
  for name, value in (('mu1', mu1), ('sigma1', s1), ('mu2', mu2), ('sigma2', s2)):
    check_finite(name, value)
  root1 = _psd_sqrt(s1)
  middle = root1 @ s2 @ root1
  middle = 0.5 * (middle + middle.T)  # exactly symmetric for eigvalsh
  tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh(middle), 0.0, None)).sum()
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def _cubic_kernel(a, b):
  """k(a, b) = (a.b / d + 1)^3 for all row pairs; f64[A, B]."""
  k = a @ b.T / a.shape[1] + 1.0
  return k * k * k  # not ** 3: numpy's float power is several times slower


def _mmd2_from_sums(sum_xx, sum_yy, sum_xy, diag_xx, diag_yy, m):
  """Unbiased MMD^2 (torch-fidelity's `mmd2`, mmd_est='unbiased') from kernel sums."""
  return ((sum_xx - diag_xx) + (sum_yy - diag_yy)) / (m * (m - 1)) - 2.0 * sum_xy / (m * m)


def _polynomial_mmd2(x, y):
  """Unbiased MMD^2 of one subset pair x, y: f64[m, d] (torch-fidelity's `kernel_mmd`)."""
  k_xx, k_yy, k_xy = _cubic_kernel(x, x), _cubic_kernel(y, y), _cubic_kernel(x, y)
  return _mmd2_from_sums(k_xx.sum(), k_yy.sum(), k_xy.sum(), np.trace(k_xx),
                         np.trace(k_yy), x.shape[0])


def _subset_kernel_sums(a, b, mask_a, mask_b, block=1024):
  """sum_{i in S_a, j in S_b} k(a_i, b_j) for every subset at once.

  Subsets drawn without replacement are 0/1 indicator columns, so the sum over a
  subset pair is mask_a[:, s]^T K mask_b[:, s]; K is built block by block and
  never stored whole.

  Args:
    a: f64[N_a, d]; b: f64[N_b, d].
    mask_a: f64[N_a, S]; mask_b: f64[N_b, S] indicators of the S subsets.

  Returns:
    f64[S].
  """
  total = np.zeros(mask_a.shape[1])
  for start in range(0, len(a), block):
    k = _cubic_kernel(a[start:start + block], b)
    total += np.einsum('is,is->s', mask_a[start:start + block], k @ mask_b)
  return total


def _kid_all_subsets(x, y, rows_x, rows_y):
  """MMD^2 of every subset through the kernel of the whole sets (small sets)."""
  m = rows_x.shape[1]
  mask_x = np.zeros((len(x), len(rows_x)))
  mask_y = np.zeros((len(y), len(rows_y)))
  mask_x[rows_x.T, np.arange(len(rows_x))] = 1.0
  mask_y[rows_y.T, np.arange(len(rows_y))] = 1.0
  diag_x = (np.einsum('ij,ij->i', x, x) / x.shape[1] + 1.0) ** 3
  diag_y = (np.einsum('ij,ij->i', y, y) / y.shape[1] + 1.0) ** 3
  return _mmd2_from_sums(_subset_kernel_sums(x, x, mask_x, mask_x),
                         _subset_kernel_sums(y, y, mask_y, mask_y),
                         _subset_kernel_sums(x, y, mask_x, mask_y),
                         diag_x @ mask_x, diag_y @ mask_y, m)


def kid_subsets(num_real, num_fake, *, subset_size, num_subsets, seed):
  """The rows of every KID subset, drawn as torch-fidelity draws them.

  For each subset, `rng.choice(n, subset_size, replace=False)` from one
  `np.random.RandomState(seed)`, real rows first, then fake rows.

  Args:
    num_real, num_fake: sizes of the two feature sets (>= 2 each).
    subset_size: rows per subset; when larger than min(num_real, num_fake) it
      is clipped to that (with a warning) instead of failing as torch-fidelity does.
    num_subsets: number of subsets (>= 1).
    seed: RandomState seed of the draws.

  Returns:
    (rows_real int[S, m], rows_fake int[S, m]), m the (clipped) subset size.
  """
  limit = min(num_real, num_fake)
  if limit < 2:
    raise ValueError(f'KID needs at least 2 samples in each set, got {num_real} and {num_fake}')
  if subset_size > limit:
    logging.warning('KID subset size %d > available samples (real %d, fake %d): using %d.',
                    subset_size, num_real, num_fake, limit)
    subset_size = limit
  if subset_size < 2 or num_subsets < 1:
    raise ValueError(f'need subset_size >= 2 and num_subsets >= 1, got {subset_size}, '
                     f'{num_subsets}')
  rng = np.random.RandomState(seed)
  rows = [(rng.choice(num_real, subset_size, replace=False),
           rng.choice(num_fake, subset_size, replace=False)) for _ in range(num_subsets)]
  return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])


def kid_subset_values(real, fake, rows_real, rows_fake, *, whole_sets):
  """Unbiased MMD^2 (kernel (x.y / d + 1)^3) of the given subsets.

  Args:
    real: f[N_r, D]; fake: f[N_f, D] features (cast to float64).
    rows_real, rows_fake: int[S, m] rows of each subset (`kid_subsets`).
    whole_sets: build the kernels of the whole sets once (cheaper for small
      sets) instead of per subset; the same values up to rounding.
      `kernel_inception_distance` chooses by cost over *all* its subsets, so
      callers that compute some of them pass that same choice.

  Returns:
    f64[S].
  """
  x = np.asarray(real, np.float64)
  y = np.asarray(fake, np.float64)
  if len(rows_real) == 0:
    return np.zeros(0)
  if whole_sets:
    return _kid_all_subsets(x, y, rows_real, rows_fake)
  return np.array([_polynomial_mmd2(x[rx], y[ry]) for rx, ry in zip(rows_real, rows_fake)])


def kid_whole_sets(num_real, num_fake, subset_size, num_subsets):
  """Whether whole-set kernels ((N_r + N_f)^2 entries once) are cheaper than per-subset ones."""
  return (num_real + num_fake) ** 2 <= 3 * num_subsets * subset_size ** 2


def kernel_inception_distance(real, fake, *, subset_size=1000, num_subsets=100, seed=0):
  """Kernel Inception Distance (Binkowski et al. 2018) as torch-fidelity computes it.

  Subsets are drawn by `kid_subsets`; each subset's unbiased MMD^2 uses the
  kernel (x.y / d + 1)^3. torch-fidelity's default seed is 2020 (pass
  seed=2020 to reproduce its numbers).

  Args:
    real: f[N_r, D] features.
    fake: f[N_f, D] features.
    subset_size: rows per subset (clipped to min(N_r, N_f), with a warning).
    num_subsets: number of subsets.
    seed: RandomState seed of the subset draws.

  Returns:
    (mean, std) over subsets of MMD^2, Python floats (std with ddof=0).
  """
  x = np.asarray(real, np.float64)
  y = np.asarray(fake, np.float64)
  if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
    raise ValueError(f'real and fake must be [N, D] with one D, got {x.shape} and {y.shape}')
  check_finite('real', x)
  check_finite('fake', y)
  rows_x, rows_y = kid_subsets(len(x), len(y), subset_size=subset_size,
                               num_subsets=num_subsets, seed=seed)
  values = kid_subset_values(
      x, y, rows_x, rows_y,
      whole_sets=kid_whole_sets(len(x), len(y), rows_x.shape[1], num_subsets))
  return float(values.mean()), float(values.std())


def kl_to_uniform(counts):
  """KL divergence of a histogram from the uniform distribution over its bins.

  Args:
    counts: f[K] or int[K], non-negative with a positive sum.

  Returns:
    KL(counts / sum || uniform over K) in nats, a Python float in [0, log K];
    empty bins contribute nothing (0 log 0 = 0).
  """
  q = np.asarray(counts, np.float64)
  q = q / q.sum()
  nonzero = q > 0
  return float(np.sum(q[nonzero] * np.log(q[nonzero] * len(q))))


def _log_softmax(logits):
  shifted = logits - logits.max(axis=1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def inception_score(logits, *, splits=10, shuffle=True, seed=2020):
  """Inception Score (Salimans et al. 2016) as torch-fidelity computes it.

  Rows are permuted with `np.random.RandomState(seed).permutation` (when
  `shuffle`), cut into `splits` chunks `[i*N//splits, (i+1)*N//splits)`, and each
  chunk scores exp(mean_i KL(p(y|x_i) || mean_j p(y|x_j))), in float64. The
  defaults are torch-fidelity's (splits=10, shuffled with seed 2020).

  Args:
    logits: f[N, C] unbiased logits (`extract_features(...)['logits']`).
    splits: number of chunks (N >= splits).
    shuffle: permute rows before splitting.
    seed: RandomState seed of the permutation.

  Returns:
    (mean, std) over chunks, Python floats (std with ddof=0).
  """
  z = np.asarray(logits, np.float64)
  if z.ndim != 2 or z.shape[0] < splits or splits < 1:
    raise ValueError(f'logits must be [N >= splits, C]; got {z.shape} with splits={splits}')
  n = z.shape[0]
  if shuffle:
    z = z[np.random.RandomState(seed).permutation(n)]
  log_p = _log_softmax(z)
  p = np.exp(log_p)
  scores = []
  for i in range(splits):
    lo, hi = i * n // splits, (i + 1) * n // splits
    q = p[lo:hi].mean(axis=0, keepdims=True)
    log_q = np.log(np.where(q > 0, q, 1.0))  # q = 0: every p of that class is 0 (below)
    # 0 log 0 = 0: a probability that underflowed to 0 adds nothing (torch-fidelity
    # gives NaN there; every finite value is the same).
    with np.errstate(invalid='ignore'):  # -inf logits: 0 * -inf, then dropped
      terms = np.where(p[lo:hi] > 0, p[lo:hi] * (log_p[lo:hi] - log_q), 0.0)
    kl = terms.sum(axis=1).mean()
    scores.append(np.exp(kl))
  return float(np.mean(scores)), float(np.std(scores))


@jax.jit
def _sq_distances(a, b):
  """Squared Euclidean distances f[A, B], computed by one matmul (clipped at 0)."""
  aa = jnp.sum(a * a, axis=1)[:, None]
  bb = jnp.sum(b * b, axis=1)[None, :]
  ab = jnp.dot(a, b.T, precision=jax.lax.Precision.HIGHEST)
  return jnp.maximum(aa + bb - 2.0 * ab, 0.0)


def _blocks(x, block):
  """Yields (rows, valid) with rows padded to `block` so one compiled shape serves all."""
  for start in range(0, len(x), block):
    rows = x[start:start + block]
    valid = len(rows)
    if valid < block:
      rows = np.concatenate([rows, np.zeros((block - valid, x.shape[1]), x.dtype)])
    yield rows, valid


@functools.partial(jax.jit, static_argnames=('k',))
def _kth_neighbour(rows, points, k):
  """(k+1)-th smallest squared distance per row: the point itself is the first."""
  d2 = _sq_distances(rows, points)
  index = jnp.arange(d2.shape[0])
  # k passes of "drop the row minimum" (k is small) instead of lax.top_k, which
  # XLA:CPU lowers to a full sort (far slower here).
  for _ in range(k):
    d2 = d2.at[index, jnp.argmin(d2, axis=1)].set(jnp.inf)
  return jnp.min(d2, axis=1)


@jax.jit
def _covered(rows, support, radii):
  return jnp.any(_sq_distances(rows, support) <= radii[None, :], axis=1)


def pr_dtype():
  """The dtype precision / recall distances run in: float64 under x64, else float32."""
  return jnp.result_type(float)


def pr_block(num_real, num_fake, block_size=1024):
  """Query rows per distance block for sets of these sizes (one compiled shape per run)."""
  return min(block_size, max(num_real, num_fake))


def knn_radii(queries, points, *, k, block):
  """Squared distance of every query row to its k-th nearest *other* row of `points`.

  Args:
    queries: f[Q, D], each row also a row of `points` (its own distance 0 is skipped).
    points: f[N, D].
    k: neighbourhood size.
    block: query rows per compiled call (`pr_block`).

  Returns:
    np[Q] in the dtype of the inputs.
  """
  points = jnp.asarray(points)
  out = [np.asarray(_kth_neighbour(jnp.asarray(rows), points, k))[:valid]
         for rows, valid in _blocks(np.asarray(queries), block)]
  return np.concatenate(out) if out else np.zeros(0, np.asarray(queries).dtype)


def covered(queries, support, radii, *, block):
  """bool[Q]: whether each query row lies within the radius of at least one support row.

  Args:
    queries: f[Q, D]; support: f[S, D]; radii: f[S] squared radii.
    block: query rows per compiled call.
  """
  if len(support) == 0:
    return np.zeros(len(queries), bool)
  support, radii = jnp.asarray(support), jnp.asarray(radii)
  out = [np.asarray(_covered(jnp.asarray(rows), support, radii))[:valid]
         for rows, valid in _blocks(np.asarray(queries), block)]
  return np.concatenate(out) if out else np.zeros(0, bool)


def _feature_pair(real, fake):
  """(real, fake) as finite 2-D arrays of one width in `pr_dtype()`; ValueError if not."""
  x = np.asarray(real, pr_dtype())
  y = np.asarray(fake, pr_dtype())
  if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
    raise ValueError(f'real and fake must be [N, D] with one D, got {x.shape} and {y.shape}')
  check_finite('real', x)
  check_finite('fake', y)
  return x, y


def precision_recall(real, fake, *, k=3, block_size=1024):
  """Improved precision and recall (Kynkaanniemi et al. 2019).

  Each set's manifold is the union of balls around its points, the radius of a
  point being the distance to its k-th nearest neighbour in the same set.
  Precision = share of fake points inside the real manifold; recall = share of
  real points inside the fake manifold. Distances are computed with JAX in
  blocks (float32 unless x64 is on), on the default device.

  Args:
    real: f[N_r, D] features (N_r > k).
    fake: f[N_f, D] features (N_f > k).
    k: neighbourhood size (3 in the paper).
    block_size: query rows per distance block (memory: block_size x N floats).

  Returns:
    (precision, recall), Python floats in [0, 1].
  """
  x, y = _feature_pair(real, fake)
  if min(len(x), len(y)) <= k:
    raise ValueError(f'precision/recall with k={k} needs more than {k} samples per set, '
                     f'got {len(x)} real and {len(y)} fake')
  block = pr_block(len(x), len(y), block_size)
  precision = covered(y, x, knn_radii(x, x, k=k, block=block), block=block).mean()
  recall = covered(x, y, knn_radii(y, y, k=k, block=block), block=block).mean()
  return float(precision), float(recall)


@jax.jit
def _nearest(rows, support):
  return jnp.min(_sq_distances(rows, support), axis=1)


@jax.jit
def _inside_count(rows, support, radii):
  return jnp.sum(_sq_distances(rows, support) < radii[None, :], axis=1)


def nearest_sq_distance(queries, support, *, block):
  """f[Q]: squared distance of each query row to its nearest support row (inf when
  `support` is empty).

  Args:
    queries: f[Q, D]; support: f[S, D].
    block: query rows per compiled call.
  """
  if len(support) == 0:
    return np.full(len(queries), np.inf, np.asarray(queries).dtype)
  support = jnp.asarray(support)
  out = [np.asarray(_nearest(jnp.asarray(rows), support))[:valid]
         for rows, valid in _blocks(np.asarray(queries), block)]
  return np.concatenate(out) if out else np.zeros(0, np.asarray(queries).dtype)


def inside_counts(queries, support, radii, *, block):
  """int64[Q]: how many support balls hold each query row strictly inside
  (squared distance < the ball's squared radius), as prdc's density counts.

  Args:
    queries: f[Q, D]; support: f[S, D]; radii: f[S] squared radii.
    block: query rows per compiled call.
  """
  if len(support) == 0:
    return np.zeros(len(queries), np.int64)
  support, radii = jnp.asarray(support), jnp.asarray(radii)
  out = [np.asarray(_inside_count(jnp.asarray(rows), support, radii))[:valid]
         for rows, valid in _blocks(np.asarray(queries), block)]
  return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


def check_density_coverage_counts(num_real, num_fake, k):
  """Raises ValueError unless there are more than k real rows and at least one fake."""
  if num_real <= k or num_fake < 1:
    raise ValueError(f'density/coverage with k={k} needs more than {k} real samples and at '
                     f'least one fake, got {num_real} real and {num_fake} fake')


def density_coverage(real, fake, *, k=5, block_size=1024):
  """Density and coverage (Naeem et al. 2020), as clovaai's prdc 0.2 computes them.

  Each real point r_i gets a ball of radius NND_k(r_i), the distance to its k-th
  nearest other real point. Density = (1 / kM) sum_j #{i: |f_j - r_i| < NND_k(r_i)}
  over the M fake points f_j: about 1 when the fakes are distributed as the reals,
  above 1 where they crowd into dense real regions, unbounded. Coverage = the share
  of real points whose ball holds at least one fake point, in [0, 1]. Unlike
  precision / recall, neither builds balls around fake points, so fake outliers do
  not inflate them. The inequalities are strict, as in prdc. Distances are computed
  with JAX in blocks (float32 unless x64 is on), on the default device.

  Args:
    real: f[N_r, D] features (N_r > k).
    fake: f[N_f, D] features (N_f >= 1).
    k: neighbourhood size (5, prdc's and StudioGAN's).
    block_size: query rows per distance block (memory: block_size x N floats).

  Returns:
    (density, coverage), Python floats: density >= 0, coverage in [0, 1].
  """
  x, y = _feature_pair(real, fake)
  check_density_coverage_counts(len(x), len(y), k)
  block = pr_block(len(x), len(y), block_size)
  radii = knn_radii(x, x, k=k, block=block)
  density = inside_counts(y, x, radii, block=block).sum() / (k * len(y))
  coverage = (nearest_sq_distance(x, y, block=block) < radii).mean()
  return float(density), float(coverage)
