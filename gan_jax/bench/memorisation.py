"""Does a trained discriminator memorise its training images? Two rank statistics of D.

On a small training set D can learn the training images themselves instead of
what makes an image real: it then scores the images it trained on as real and
every other image, real or generated, as fake. That is the failure DiffAugment
(Zhao et al. 2020) and ADA (Karras et al. 2020) address. Two numbers show it,
both areas under the ROC curve of D's score (its real-vs-fake output, in eval
mode), so they do not depend on the loss or the scale of that output:

  seen_vs_unseen   P(D scores a training image above a real image of the same
                   distribution it never saw). 0.5: D cannot tell them apart
                   (no memorisation); 1: it separates them perfectly.
  unseen_vs_fake   P(D scores an unseen real image above a generated one). Above
                   0.5 D still calls real images real; below 0.5 it finds G's
                   samples more real than real images it never saw.

D is scored on the inputs it trained on: the run's augmentation policy applied (with
ADA each op with the checkpoint's probability p; mean score over `draws`
augmentations; one pass for the policy ''). A PacGAN D
(`model.pack` = p > 1) scores groups of p images, so the statistics then rank
groups of p consecutive images of each set (the last group completed with the set's
first images). The digits benchmark (`python -m gan_jax.bench.little_data`) reports
both for every trial.
"""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats as scipy_stats

from gan_jax import augment
from gan_jax import models
from gan_jax import objectives
from gan_jax import sample
from gan_jax import workdir as workdir_lib

# Scores are computed in chunks of this many images (memory, not results).
_CHUNK = 500


def rank_auc(higher, lower):
  """P(a > b) + P(a == b) / 2 for a from `higher` and b from `lower` (Mann-Whitney AUC).

  Args:
    higher: float[n] scores of the group expected to score higher (n >= 1).
    lower: float[m] scores of the other group (m >= 1).

  Returns:
    float in [0, 1]: 1 when every score of `higher` exceeds every score of
    `lower`, 0 in the reverse case, 0.5 for identical groups.

  Raises:
    ValueError: an empty group or a score that is NaN or infinite.
  """
  a = np.asarray(higher, np.float64).ravel()
  b = np.asarray(lower, np.float64).ravel()
  if not len(a) or not len(b):
    raise ValueError(f'rank_auc needs two non-empty groups, got {len(a)} and {len(b)} scores.')
  if not (np.isfinite(a).all() and np.isfinite(b).all()):
    raise ValueError('rank_auc got a NaN or infinite score.')
  ranks = scipy_stats.rankdata(np.concatenate([a, b]))  # ties share their mean rank
  wins = ranks[:len(a)].sum() - len(a) * (len(a) + 1) / 2
  return float(wins / (len(a) * len(b)))


def load_scorer(workdir, step=None, *, draws=8, seed=0):
  """Restores a checkpoint's discriminator as a scoring function.

  Args:
    workdir: a run folder of `python -m gan_jax.main`.
    step: checkpoint step (None: the newest readable one).
    draws: augmentations averaged per image when the run trained with an
      augmentation policy (`config.augment.policy`; with ADA, each op applied with the
      checkpoint's probability p); ignored without one.
    seed: seeds those augmentations (the same images get the same draws).

  Returns:
    (config, score): `score(images: f32[N, H, W, C] in [-1, 1], labels: int[N] |
    None = None) -> np.float64[ceil(N / pack)]`, D's real-vs-fake output in eval
    mode, one per image (`model.pack` 1) or per group of `pack` consecutive
    images, the last group completed with the first images (labels are needed by
    a class-conditional D and ignored otherwise); `score.step` is the
    checkpoint's step, `score.probability` ADA's p the inputs are augmented with
    (None: every op of the policy, or no policy).

  Raises:
    MissingFileError: no run or no checkpoint in `workdir`.
  """
  config, state, restored_step = workdir_lib.restore_state(workdir, step)
  _, discriminator = models.build(config.model)
  variables = models.variables(state.d_params, state.d_batch_stats)
  a = config.augment
  policy = augment.parse_policy(a.policy)
  # With ADA, D trained on each op applied with the checkpoint's probability p.
  probability = (float(state.d_batch_stats[objectives.ADA_STATS]['p'])
                 if policy and a.ada_target else None)
  conditional = config.model.num_classes > 0
  draws = draws if policy else 1
  pack = int(config.model.pack or 1)
  chunk = max(pack, _CHUNK // pack * pack)  # whole groups in every chunk

  @jax.jit
  def mean_logit(variables, x, labels, key):
    def one(k):
      inputs = augment.augment(x, k, policy, translation_ratio=a.translation_ratio,
                               cutout_ratio=a.cutout_ratio, fill=a.fill,
                               probability=probability) if policy else x
      args = (inputs, labels) if conditional else (inputs,)
      return discriminator.apply(variables, *args, train=False).astype(jnp.float32)
    return jnp.mean(jax.vmap(one)(jax.random.split(key, draws)), axis=0)

  def score(images, labels=None):
    images = np.asarray(images, np.float32)
    if conditional and labels is None:
      raise ValueError('this run has a class-conditional D: pass the images\' labels.')
    labels = (np.zeros(len(images), np.int32) if labels is None
              else np.asarray(labels, np.int32))
    short = -len(images) % pack  # images missing from the last group of `pack`
    if short and len(images):
      images = np.concatenate([images, np.resize(images, (short,) + images.shape[1:])])
      labels = np.concatenate([labels, np.resize(labels, short)])
    key = jax.random.key(seed)
    out = [np.asarray(mean_logit(variables, images[i:i + chunk], labels[i:i + chunk],
                                 jax.random.fold_in(key, i)), np.float64).reshape(-1)
           for i in range(0, len(images), chunk)]
    return np.concatenate(out) if out else np.zeros((0,), np.float64)

  score.step = restored_step
  score.probability = probability
  return config, score


def measure(workdir, *, seen, unseen, num_fakes=1000, seed=0, step=None):
  """The two memorisation statistics of a run's discriminator (see the module docstring).

  Args:
    workdir: a run folder.
    seen: (images f32[n, H, W, C] in [-1, 1], labels int[n]): the training images.
    unseen: (images, labels) of real images from the same distribution that the
      run never trained on.
    num_fakes: samples of the raw (not EMA) generator, the one D trained against.
    seed: seeds the latents (and class labels) of the fakes and the augmentations.
    step: checkpoint step (None: the newest).

  Returns:
    {'seen_vs_unseen': float, 'unseen_vs_fake': float, 'step': int,
     'augment_probability': ADA's p of the checkpoint, which D's inputs were augmented
     with (None without ADA)}.
  """
  config, score = load_scorer(workdir, step, seed=seed)
  _, generate = sample.load_generator(workdir, score.step, ema=False, standing_stats=0)
  num_classes = config.model.num_classes
  fake_labels = sample.cycled_labels(num_fakes, num_classes) if num_classes else None
  fakes = sample.generate_samples(generate, z_dim=config.model.z_dim, num_samples=num_fakes,
                                  seed=seed, labels=fake_labels)
  seen_scores = score(*seen)
  unseen_scores = score(*unseen)
  fake_scores = score(fakes, fake_labels)
  return {'seen_vs_unseen': rank_auc(seen_scores, unseen_scores),
          'unseen_vs_fake': rank_auc(unseen_scores, fake_scores),
          'step': int(score.step), 'augment_probability': score.probability}
