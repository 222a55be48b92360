"""The evaluation protocol: each metric's settings and its description for the record.

The constants are the settings the evaluator computes with; the functions return
the JSON-serialisable descriptions that go into `evaluator.protocol` (and from
there into `python -m gan_jax.evaluate`'s record), so every number states how it
was made: implementation, numbers of real and generated images, reference
split, resize.
"""

import numpy as np

from gan_jax.metrics import inception

KID_SUBSET_SIZE = 1000
KID_NUM_SUBSETS = 100
KID_SEED = 2020     # torch-fidelity's default rng_seed
IS_SPLITS = 10
IS_SEED = 2020      # torch-fidelity's shuffle seed
PR_K = 3
DC_K = 5            # prdc's nearest_k as PyTorch-StudioGAN calls it
# Below as many images as pool3 has features (2048) a covariance estimate is rank
# deficient and a Frechet distance is strongly biased upwards (pytorch-fid's README
# calls 2048 the minimum); such values compare only with values of the same counts.
FID_MIN_IMAGES = 2048
SMALL_SAMPLE_NOTE = (f'fewer than {FID_MIN_IMAGES} images on a side: the covariance is rank '
                     'deficient and the distance biased upwards; compare only with values '
                     'of the same image counts')


def inception_metrics(metrics, *, num_real, num_fake, split):
  """{metric: description} for the requested ones of fid, is, kid, pr and dc.

  Args:
    metrics: the requested metric names.
    num_real: reference images; num_fake: generated samples.
    split: the reference split.
  """
  out = {}
  if 'fid' in metrics:
    out['fid'] = dict(formula='pytorch-fid; sqrt of covariances by symmetric eigh, float64',
                      num_real=num_real, num_fake=num_fake, reference_split=split,
                      resize=inception.RESIZE_METHOD)
    if min(num_real, num_fake) < FID_MIN_IMAGES:
      out['fid']['note'] = SMALL_SAMPLE_NOTE
  if 'is' in metrics:
    out['is'] = dict(implementation='torch-fidelity 0.4.0 isc_features_to_metric',
                     logits='pool3 @ fc.weight^T (logits_unbiased)',
                     splits=IS_SPLITS, shuffle=True, seed=IS_SEED)
  if 'kid' in metrics:
    out['kid'] = dict(implementation='torch-fidelity 0.4.0 kid_features_to_metric',
                      kernel='(x.y / 2048 + 1)^3, unbiased MMD^2',
                      subset_size=min(KID_SUBSET_SIZE, num_real, num_fake),
                      num_subsets=KID_NUM_SUBSETS, seed=KID_SEED)
  if 'pr' in metrics:
    out['pr'] = dict(implementation='Kynkaanniemi et al. 2019, pool3 features', k=PR_K)
  if 'dc' in metrics:
    out['dc'] = dict(implementation='Naeem et al. 2020, clovaai prdc 0.2 compute_prdc '
                                    '(strict <), pool3 features', k=DC_K,
                     num_real=num_real, num_fake=num_fake, reference_split=split)
  return out


def _range(counts):
  low, high = int(np.min(counts)), int(np.max(counts))
  return str(low) if low == high else f'{low}-{high}'


def intra_fid(real_per_class, fake_per_class, *, split):
  """The description of intra_fid: images per class, split, resize.

  Args:
    real_per_class: int[K] reference images of each class.
    fake_per_class: int[K] generated samples of each label.
    split: the reference split.
  """
  out = dict(
      formula='mean over classes c of FID(generated with label c, real of class c); pool3, '
              'pytorch-fid formula, float64',
      num_classes=len(real_per_class), reference_split=split,
      num_real_per_class=[int(n) for n in real_per_class],
      num_fake_per_class=[int(n) for n in fake_per_class],
      real_per_class_range=_range(real_per_class), fake_per_class_range=_range(fake_per_class),
      resize=inception.RESIZE_METHOD)
  if min(np.min(real_per_class), np.min(fake_per_class)) < FID_MIN_IMAGES:
    # The published intra-FIDs are made with fewer per class, so this is said, not warned.
    out['note'] = SMALL_SAMPLE_NOTE.replace('on a side', 'of a class on a side')
  return out


def toy_proxy(mixture, centers, std):
  """The description of the toy mode metrics."""
  return dict(kind='toy mode metrics (PacGAN protocol)', mixture=mixture, modes=len(centers),
              std=std, high_quality='distance to the nearest mode <= 3 std',
              reverse_kl='KL(mode histogram of high-quality samples || uniform), nats; '
                         '0 log 0 = 0; log(K) when no sample is high quality')
