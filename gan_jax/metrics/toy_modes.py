"""Mode-collapse metrics for the 2-D Gaussian mixtures (ring, grid): the PacGAN protocol.

The offline `proxy` metrics of toy runs (`config.data.source == 'toy'`):
`modes_captured`, `high_quality` and `reverse_kl`; see `toy_mode_metrics`.
"""

import numpy as np

from gan_jax.metrics import stats


def toy_mode_metrics(samples, centers, std, *, num_std=3.0):
  """Mode-collapse metrics of the PacGAN protocol for 2-D Gaussian mixtures.

  Each sample is assigned to its nearest mode. A sample is high quality when it
  lies within `num_std` standard deviations (Euclidean distance <= num_std * std)
  of that mode; a mode is captured when at least one high-quality sample is
  assigned to it.

  Args:
    samples: f[N, 2] generated points.
    centers: f[K, 2] mode centres (`gan_jax.data.toy.mixture(name)[0]`).
    std: per-mode standard deviation.
    num_std: quality radius in standard deviations (3 in PacGAN).

  Returns:
    {'modes_captured': int in [0, K],
     'high_quality': share of high-quality samples in [0, 1],
     'reverse_kl': KL(mode histogram of the high-quality samples || uniform over
       the K modes) in nats, with 0 log 0 = 0 (uncaptured modes contribute
       nothing). In [0, log K]; with no high-quality sample at all the histogram
       is undefined and we report log K, the value of total collapse.}
  """
  x = np.asarray(samples, np.float64)
  c = np.asarray(centers, np.float64)
  if x.ndim != 2 or x.shape[1] != c.shape[1]:
    raise ValueError(f'samples must be [N, {c.shape[1]}], got {x.shape}')
  d2 = ((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=-1)
  nearest = d2.argmin(axis=1)
  good = np.sqrt(d2[np.arange(len(x)), nearest]) <= num_std * std
  counts = np.bincount(nearest[good], minlength=len(c))
  return {
      'modes_captured': int((counts > 0).sum()),
      'high_quality': float(good.mean()) if len(x) else 0.0,
      'reverse_kl': stats.kl_to_uniform(counts) if good.any() else float(np.log(len(c))),
  }
