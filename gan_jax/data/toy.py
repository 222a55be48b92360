"""2-D Gaussian-mixture toy data of the mode-collapse literature (PacGAN protocol).

ring: 8 modes evenly spaced on the unit circle, std 0.01.
grid: 25 modes at {-4, -2, 0, 2, 4}^2, std 0.05.
"""

import numpy as np

from gan_jax import errors

MIXTURES = ('ring', 'grid')


def mixture(name):
  """Returns the mixture's mode centres and per-mode standard deviation.

  Args:
    name: 'ring' or 'grid'.

  Returns:
    (centers, std): centers f64[K, 2] (K = 8 for ring, 25 for grid), std a float.

  Raises:
    errors.ConfigError: for an unknown mixture name, listing the known ones.
  """
  if name == 'ring':
    angles = 2 * np.pi * np.arange(8) / 8
    return np.stack([np.cos(angles), np.sin(angles)], axis=1), 0.01
  if name == 'grid':
    axis = np.array([-4.0, -2.0, 0.0, 2.0, 4.0])
    xs, ys = np.meshgrid(axis, axis, indexing='ij')
    return np.stack([xs.ravel(), ys.ravel()], axis=1), 0.05
  raise errors.ConfigError(
      f'Unknown toy mixture {name!r}; known: {list(MIXTURES)}. '
      'Set --config.data.toy.')


def sample_mixture(name, num_samples, rng):
  """Draws points from a mixture with equal mode weights.

  Args:
    name: 'ring' or 'grid'.
    num_samples: number of points N.
    rng: a `np.random.Generator`.

  Returns:
    f32[N, 2] points.
  """
  centers, std = mixture(name)
  modes = rng.integers(0, len(centers), size=num_samples)
  points = centers[modes] + std * rng.standard_normal((num_samples, 2))
  return points.astype(np.float32)
