"""Tests of the discriminator memorisation statistics (`gan_jax.bench.memorisation`)."""

import numpy as np
import pytest

from gan_jax.bench import memorisation


@pytest.mark.parametrize('higher, lower, expected', [
    ([3.0, 4.0], [1.0, 2.0], 1.0),        # every pair ordered
    ([1.0, 2.0], [3.0, 4.0], 0.0),        # every pair reversed
    ([1.0, 3.0], [2.0], 0.5),             # one pair each way
    ([1.0], [1.0], 0.5),                  # a tie counts one half
    ([2.0, 2.0], [1.0, 2.0], 0.75),       # (1 + 1/2 + 1 + 1/2) / 4
    ([0.0, 5.0, 6.0], [1.0, 2.0], 4 / 6),
])
def test_rank_auc_by_hand(higher, lower, expected):
  assert memorisation.rank_auc(higher, lower) == pytest.approx(expected)


def test_rank_auc_equals_the_share_of_ordered_pairs():
  rng = np.random.default_rng(0)
  a = rng.normal(0.5, 1.0, 300).round(1)  # rounded: many ties
  b = rng.normal(0.0, 1.0, 200).round(1)
  pairs = np.mean((a[:, None] > b[None]) + 0.5 * (a[:, None] == b[None]))
  assert memorisation.rank_auc(a, b) == pytest.approx(pairs, abs=1e-12)
  assert memorisation.rank_auc(b, a) == pytest.approx(1 - pairs, abs=1e-12)


@pytest.mark.parametrize('higher, lower, match', [
    ([], [1.0], 'non-empty'),
    ([1.0], [np.nan], 'NaN or infinite'),
    ([np.inf], [1.0], 'NaN or infinite'),
])
def test_rank_auc_rejects_empty_or_non_finite_scores(higher, lower, match):
  with pytest.raises(ValueError, match=match):
    memorisation.rank_auc(higher, lower)
