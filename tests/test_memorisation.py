"""Tests of the discriminator memorisation statistics (`gan_jax.bench.memorisation`)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import checkpoint
from gan_jax import models
from gan_jax import state as state_lib
from gan_jax import train
from gan_jax import workdir as workdir_lib
from gan_jax.bench import memorisation
from tests.helpers import tiny_config


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


def test_a_packed_discriminator_scores_groups_and_completes_the_last_one(tmp_path):
  # A PacGAN D (pack 4; batch 32: 4 per fake device) sees 4 images at a time: 6
  # images make 2 groups, the second completed with the first two (6 images used to
  # raise a ValueError, and `--set=model.pack=4` crashed the little-data bench).
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(tiny_config(**{'train.num_steps': 1, 'model.pack': 4,
                                          'train.batch_size': 32}), workdir)
  config, score = memorisation.load_scorer(workdir)
  assert config.model.pack == 4 and not config.augment.policy
  images = np.random.default_rng(0).uniform(-1, 1, (6, 32, 32, 1)).astype(np.float32)
  _, state, _ = workdir_lib.restore_state(workdir)
  _, discriminator = models.build(config.model)
  variables = {'params': state.d_params, 'batch_stats': state.d_batch_stats}
  by_hand = discriminator.apply(variables, images[[0, 1, 2, 3, 4, 5, 0, 1]], train=False)
  scores = score(images)
  assert scores.shape == (2,)
  np.testing.assert_allclose(scores, np.asarray(by_hand).reshape(-1), rtol=1e-5, atol=1e-6)
  # Seen and unseen sets of sizes that are not multiples of 4 are ranked as groups.
  rng = np.random.default_rng(1)
  seen = (rng.uniform(-1, 1, (9, 32, 32, 1)).astype(np.float32), np.zeros(9, np.int32))
  unseen = (rng.uniform(-1, 1, (5, 32, 32, 1)).astype(np.float32), np.zeros(5, np.int32))
  result = memorisation.measure(workdir, seen=seen, unseen=unseen, num_fakes=10)
  # By hand: 9 seen images are 3 groups (the last completed with images 0-2), 5 unseen
  # are 2 (the last completed with 0-2); the AUC is the share of (seen, unseen) group
  # pairs whose seen score is higher, ties counting one half.
  seen_groups = np.asarray(discriminator.apply(
      variables, seen[0][[0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2]], train=False)).reshape(-1)
  unseen_groups = np.asarray(discriminator.apply(
      variables, unseen[0][[0, 1, 2, 3, 4, 0, 1, 2]], train=False)).reshape(-1)
  assert seen_groups.shape == (3,) and unseen_groups.shape == (2,)
  pairs = [1.0 if a > b else 0.5 if a == b else 0.0 for a in seen_groups for b in unseen_groups]
  assert result['seen_vs_unseen'] == pytest.approx(np.mean(pairs))
  assert 0 <= result['unseen_vs_fake'] <= 1
  assert result['augment_probability'] is None  # no ADA


def test_an_ada_run_s_d_is_scored_with_its_checkpoint_s_probability(tmp_path):
  # D trained on each op applied with probability p: at p = 0 it saw the raw images,
  # so its scores are those of the raw images; at p = 1 those of the whole policy.
  workdir = str(tmp_path / 'run')
  config = tiny_config(**{'augment.policy': 'translation,cutout', 'augment.ada_target': 0.6})
  workdir_lib.prepare(config, workdir)
  state = state_lib.create_state(config, jax.random.key(0))
  images = np.random.default_rng(0).uniform(-1, 1, (6, 32, 32, 1)).astype(np.float32)
  _, discriminator = models.build(config.model)
  raw = np.asarray(discriminator.apply(
      {'params': state.d_params, 'batch_stats': state.d_batch_stats}, images,
      train=False)).reshape(-1)
  scores = {}
  for p in (0.0, 1.0):
    stats = dict(state.d_batch_stats)
    stats['ada'] = {**stats['ada'], 'p': jnp.float32(p)}
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'), async_save=False)
    ckpt.save(int(p) + 1, state.replace(d_batch_stats=stats), {})
    ckpt.close()
    _, score = memorisation.load_scorer(workdir, int(p) + 1, draws=4)
    assert score.probability == p
    scores[p] = score(images)
  scale = np.abs(raw).max()  # (a new D's outputs are small)
  np.testing.assert_allclose(scores[0.0], raw, rtol=1e-4, atol=1e-4 * scale)
  assert np.abs(scores[1.0] - raw).max() > 0.1 * scale
