"""The digits judge: one calibrated classifier of 8x8 handwritten digits.

The offline `proxy` metrics of digits runs (`proxy_fd`, `proxy_confident`,
`proxy_coverage_kl`, computed by the evaluator) and `python -m
gan_jax.bench.digits_check` both use `fitted_judge()`, so they report the same
confident share for the same samples.

Inputs: images of any resolution, f[N, H, W, C] in [-1, 1], are averaged to 8x8
over equal areas (exact block means when H and W are multiples of 8), mapped to
the bundled digits' 0..16 scale (`to_digits_scale`), then to pixels in [0, 1].
One global scale, not per-pixel standardisation: border pixels that real digits
almost never ink have tiny spreads, and standardising them would let faint ink
there dominate every kernel distance.

Classifier: scikit-learn's RBF-kernel SVC (C = 1, gamma = 1 / (64 var(pixels)),
scikit-learn's 'scale') fitted on the digits 'train' split only.
Probabilities: libsvm's Platt scaling with pairwise coupling. Each of the 45
one-vs-one decision values f_ij gets a sigmoid P(i | i or j) = 1 / (1 + exp(A f_ij
+ B)) fitted on 5-fold cross-validated decision values (values like those of
unseen images), and the 45 pairwise probabilities are coupled into 10 class
probabilities by the second method of Wu, Lin & Weng (2004). Far from every
training digit the RBF decision values fall back to the intercepts, so noise
gets no confident class. (Implemented here because scikit-learn deprecates
`SVC(probability=True)`, and its suggested replacement `CalibratedClassifierCV`
calibrates one-vs-rest scores, a different method.)
Features for the Frechet distance: the 45 one-vs-one decision values; blur,
noise and missing classes move them far from those of real digits.

Fitting takes about a second and is deterministic (fixed folds, no other
randomness), so the judge is fitted once per process and not cached on disk;
`DigitsJudge.digest` identifies the fitted parameters in cache keys.
"""

import functools
import hashlib
import itertools
import logging
import time

import numpy as np

from gan_jax.metrics import stats

# Bumped when the inputs, the classifier or the calibration change, so reference
# statistics computed with an older judge are not reused.
JUDGE_VERSION = 'digits-svc-platt/v1'
NUM_DIGITS = 10
SIZE = 8               # the bundled digits' resolution
MAX_VALUE = 16.0       # their pixel scale is 0..16
CONFIDENCE = 0.9       # a sample is confident when its top class probability is >= this
_C = 1.0
_FOLDS = 5
_FOLD_SEED = 0
_PAIRS = tuple(itertools.combinations(range(NUM_DIGITS), 2))  # sklearn's 'ovo' column order
_PAIR_PROB_CLIP = 1e-7  # as libsvm: keeps the coupling system well posed
DESCRIPTION = ('RBF SVC (C=1, gamma=scale) on 8x8 pixels / 16, Platt-scaled one-vs-one '
               'probabilities (5-fold CV) coupled by Wu-Lin-Weng; fitted on the digits '
               "'train' split")


def _area_weights(n_in, n_out):
  """f64[n_out, n_in]: each output cell averages the input cells it overlaps."""
  edges_in = np.arange(n_in + 1) / n_in
  edges_out = np.arange(n_out + 1) / n_out
  lo = np.maximum(edges_out[:-1, None], edges_in[None, :-1])
  hi = np.minimum(edges_out[1:, None], edges_in[None, 1:])
  weights = np.clip(hi - lo, 0.0, None)
  return weights / weights.sum(axis=1, keepdims=True)


def to_digits_scale(images):
  """Maps generated images to the bundled digits' format.

  Args:
    images: f[N, H, W, C] (channels are averaged) or f[N, H, W], in [-1, 1];
      values outside are clipped.

  Returns:
    f64[N, 8, 8] in [0, 16]: 8x8 area averages (block means when H and W are
    multiples of 8), on the scale of `sklearn.datasets.load_digits().images`.
  """
  x = np.asarray(images, np.float64)
  if x.ndim == 4:
    x = x.mean(axis=-1)
  if x.ndim != 3:
    raise ValueError(f'images must be [N, H, W, C] or [N, H, W], got shape {x.shape}')
  rows = _area_weights(x.shape[1], SIZE)
  cols = _area_weights(x.shape[2], SIZE)
  pooled = np.matmul(np.matmul(rows, x), cols.T)
  return (np.clip(pooled, -1.0, 1.0) + 1.0) * (MAX_VALUE / 2)


def _pixels(digits_scale):
  """f[N, 8, 8] in 0..16 -> f64[N, 64] in [0, 1], the classifier's input."""
  x = np.asarray(digits_scale, np.float64)
  return x.reshape(len(x), SIZE * SIZE) / MAX_VALUE


def _sigmoid(z):
  return 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1 / (1 + exp(-z)), without overflow


def _fit_platt(values, positive, *, iterations=100):
  """Platt's sigmoids P(positive | f) = 1 / (1 + exp(A f + B)), one per row, by Newton.

  Maximises the likelihood of Platt's regularised targets (N+ + 1) / (N+ + 2) and
  1 / (N- + 2), a smooth convex problem in (A, B); steps are halved until the
  loss does not increase.

  Args:
    values: f64[P, M] decision values, NaN where a sample is not in the row's data.
    positive: bool[P, M], True for the row's positive samples; every row has
      positives and negatives.

  Returns:
    f64[P, 2]: (A, B) per row.
  """
  mask = ~np.isnan(values)
  f = np.where(mask, values, 0.0)
  n_pos = (positive & mask).sum(axis=1, keepdims=True)
  n_neg = (~positive & mask).sum(axis=1, keepdims=True)
  one_minus_t = np.where(positive, 1 / (n_pos + 2), (n_neg + 1) / (n_neg + 2))

  def loss(ab):
    # -[t log p + (1 - t) log(1 - p)] with p = sigmoid(-z) is softplus(z) - (1 - t) z.
    z = ab[:, :1] * f + ab[:, 1:]
    return np.sum(mask * (np.logaddexp(0.0, z) - one_minus_t * z), axis=1)

  ab = np.concatenate([np.zeros_like(n_pos, np.float64),
                       np.log((n_neg + 1) / (n_pos + 1))], axis=1)
  current = loss(ab)
  for _ in range(iterations):
    q = _sigmoid(ab[:, :1] * f + ab[:, 1:])
    dz, curvature = mask * (q - one_minus_t), mask * q * (1 - q)
    grad = np.stack([(dz * f).sum(1), dz.sum(1)], axis=1)
    hessian = np.stack([np.stack([(curvature * f * f).sum(1), (curvature * f).sum(1)], -1),
                        np.stack([(curvature * f).sum(1), curvature.sum(1)], -1)], axis=1)
    step = np.linalg.solve(hessian + 1e-12 * np.eye(2), grad[..., None])[..., 0]
    scale = np.ones((len(ab), 1))
    for _ in range(30):
      trial = loss(ab - scale * step)
      worse = trial > current
      if not worse.any():
        break
      scale[worse] /= 2
    scale[trial > current] = 0.0  # no descent left in the step's direction
    ab = ab - scale * step
    current = loss(ab)
    if np.abs(scale * step).max() < 1e-10:
      break
  return ab


def _couple(pair_probs):
  """Class probabilities from pairwise ones (Wu, Lin & Weng 2004, method 2).

  Minimises sum_i sum_{j != i} (r_ji p_i - r_ij p_j)^2 subject to sum(p) = 1,
  where r_ij = P(i | i or j), by solving its KKT linear system.

  Args:
    pair_probs: f64[N, 45], P(i | i or j) for the pairs of `_PAIRS`.

  Returns:
    f64[N, 10], rows summing to 1.
  """
  n, k = len(pair_probs), NUM_DIGITS
  r = np.zeros((n, k, k))
  first, second = np.array(_PAIRS).T
  r[:, first, second] = pair_probs
  r[:, second, first] = 1.0 - pair_probs
  r_t = np.swapaxes(r, 1, 2)                      # r_t[:, i, j] = r_ji
  system = np.zeros((n, k + 1, k + 1))
  system[:, :k, :k] = -r_t * r
  diagonal = np.arange(k)
  system[:, diagonal, diagonal] = (r_t ** 2).sum(axis=2)  # r_ii = 0 adds nothing
  system[:, :k, k] = system[:, k, :k] = 1.0
  rhs = np.zeros((n, k + 1, 1))
  rhs[:, k] = 1.0
  p = np.linalg.solve(system, rhs)[:, :k, 0]
  p = np.clip(p, 0.0, None)  # the optimum is non-negative; this only removes rounding
  return p / p.sum(axis=1, keepdims=True)


class DigitsJudge:
  """A fitted digits judge; see the module docstring.

  Attributes:
    digest: hex SHA-256 of the fitted parameters (for cache keys).
    test_accuracy: accuracy on the digits 'test' split (never seen in fitting).
    test_confident_share: share of 'test' digits with top probability >= CONFIDENCE.
    train_confident_share: the same on the 'train' split it was fitted on.
  """

  def __init__(self, svc, platt):
    """svc: a fitted `sklearn.svm.SVC` ('ovo'); platt: f64[45, 2] sigmoid (A, B) per pair."""
    self._svc = svc
    self._platt = np.asarray(platt, np.float64)
    digest = hashlib.sha256(JUDGE_VERSION.encode())
    for array in (svc.support_vectors_, svc.dual_coef_, svc.intercept_,
                  np.float64(svc.gamma), self._platt):
      digest.update(np.ascontiguousarray(array, np.float64).tobytes())
    self.digest = digest.hexdigest()
    self.test_accuracy = self.test_confident_share = self.train_confident_share = None

  def features(self, images):
    """The 45 one-vs-one decision values: images f[N, H, W(, C)] in [-1, 1] -> f64[N, 45]."""
    return self._svc.decision_function(_pixels(to_digits_scale(images)))

  def probabilities_from_features(self, features):
    """Calibrated class probabilities f64[N, 10] from `features(images)` f[N, 45]."""
    values = np.asarray(features, np.float64)
    pair_probs = _sigmoid(-(self._platt[:, 0] * values + self._platt[:, 1]))
    return _couple(np.clip(pair_probs, _PAIR_PROB_CLIP, 1 - _PAIR_PROB_CLIP))

  def __call__(self, images):
    """Features and calibrated class probabilities.

    Args:
      images: f[N, H, W, C] or f[N, H, W] in [-1, 1], any H and W.

    Returns:
      (features f64[N, 45], probs f64[N, 10]); probs rows sum to 1.
    """
    values = self.features(images)
    return values, self.probabilities_from_features(values)

  def probabilities(self, images):
    """Calibrated class probabilities f64[N, 10] of images in [-1, 1]."""
    return self(images)[1]

  def describe(self):
    """One line: what the judge is and its numbers on the real splits."""
    return (f'digits judge ({DESCRIPTION}): test accuracy {self.test_accuracy:.4f}; confident '
            f'share (p >= {CONFIDENCE}) {self.test_confident_share:.4f} on real test digits, '
            f'{self.train_confident_share:.4f} on the train digits it was fitted on')


def from_digits_scale(digits_scale):
  """The inverse of `to_digits_scale` at 8x8: f[N, 8, 8] in 0..16 -> f32[N, 8, 8, 1] in [-1, 1]."""
  x = np.asarray(digits_scale, np.float64) / (MAX_VALUE / 2) - 1.0
  return x[..., None].astype(np.float32)


def fit_digits_judge(digits, labels):
  """Fits the judge's SVC and its pairwise Platt sigmoids.

  Args:
    digits: f[N, 8, 8] on the 0..16 scale (`gan_jax.data.digits_split`).
    labels: int[N] in 0..9, every class present.

  Returns:
    An unscored `DigitsJudge` (its split statistics are None).
  """
  # scikit-learn takes seconds to import and only digits runs need it.
  from sklearn import model_selection  # pylint: disable=g-import-not-at-top
  from sklearn import svm  # pylint: disable=g-import-not-at-top
  x = _pixels(digits)
  y = np.asarray(labels)
  gamma = 1.0 / (x.shape[1] * x.var())  # fixed once: every fold sees the same kernel
  make_svc = lambda: svm.SVC(kernel='rbf', C=_C, gamma=gamma, decision_function_shape='ovo')
  held_out = np.zeros((len(x), len(_PAIRS)))
  folds = model_selection.StratifiedKFold(_FOLDS, shuffle=True, random_state=_FOLD_SEED)
  for fit_rows, held_rows in folds.split(x, y):
    held_out[held_rows] = make_svc().fit(x[fit_rows], y[fit_rows]).decision_function(
        x[held_rows])
  # One row per pair: the held-out values of that pair's two classes, NaN elsewhere.
  first, second = np.array(_PAIRS).T
  in_pair = (y[None, :] == first[:, None]) | (y[None, :] == second[:, None])
  platt = _fit_platt(np.where(in_pair, held_out.T, np.nan), y[None, :] == first[:, None])
  return DigitsJudge(make_svc().fit(x, y), platt)


def confident_share(probs, *, confidence=CONFIDENCE):
  """Share of rows of probs f[N, K] whose largest probability is >= confidence."""
  probs = np.asarray(probs)
  return float((probs.max(axis=1) >= confidence).mean()) if len(probs) else 0.0


def class_shares(probs):
  """f64[K]: share of rows of probs f[N, K] whose most probable class is each class."""
  probs = np.asarray(probs)
  return np.bincount(probs.argmax(axis=1), minlength=probs.shape[1]) / max(len(probs), 1)


@functools.lru_cache(maxsize=1)
def fitted_judge():
  """The judge fitted on the digits 'train' split and scored on both splits (once per process).

  Returns:
    A `DigitsJudge` with test_accuracy, test_confident_share and
    train_confident_share set; `describe()` is logged.
  """
  # gan_jax.data pulls in the whole input pipeline (grain); only this needs it.
  from gan_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  train, train_labels = data_lib.digits_split('train')
  judge = fit_digits_judge(train, train_labels)
  test, test_labels = data_lib.digits_split('test')
  test_probs = judge.probabilities(from_digits_scale(test))
  judge.test_accuracy = float((test_probs.argmax(axis=1) == test_labels).mean())
  judge.test_confident_share = confident_share(test_probs)
  judge.train_confident_share = confident_share(judge.probabilities(from_digits_scale(train)))
  logging.info('%s (fitted in %.1f s)', judge.describe(), time.perf_counter() - start)
  return judge


def class_coverage(probs, *, confidence=CONFIDENCE):
  """How evenly confident predictions cover the classes (the proxy metrics).

  Args:
    probs: f[N, K] class probabilities.
    confidence: a sample counts when its largest probability is >= this.

  Returns:
    {'proxy_coverage_kl': KL(histogram of confident argmaxes || uniform), with
     0 log 0 = 0 (missing classes add nothing; their absence shows as more mass,
     hence more KL, on the others); log(K) when no sample is confident (the
     value of total collapse onto one class),
     'proxy_confident': `confident_share(probs)` in [0, 1]}.
  """
  probs = np.asarray(probs, np.float64)
  confident = probs.max(axis=1) >= confidence
  share = confident_share(probs, confidence=confidence)
  if not confident.any():
    return {'proxy_coverage_kl': float(np.log(probs.shape[1])), 'proxy_confident': share}
  counts = np.bincount(probs[confident].argmax(axis=1), minlength=probs.shape[1])
  return {'proxy_coverage_kl': stats.kl_to_uniform(counts), 'proxy_confident': share}
