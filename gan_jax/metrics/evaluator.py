"""Evaluation of a generator against a data set: reference caching and the evaluator.

`make_evaluator(config, *, data_shape)` builds, once, everything an evaluation
needs (Inception weights or the digits classifier, and the reference features
of the real data, cached on disk), and returns `evaluator(generate, *, seed)`
which draws `config.eval.num_samples` latents z ~ N(0, I), generates, and
returns a flat dict of floats:

  fid                      Frechet Inception Distance (lower is better)
  is_mean, is_std          Inception Score (torch-fidelity protocol: 10 shuffled splits)
  kid_mean, kid_std        Kernel Inception Distance (100 subsets of <= 1000, seed 2020)
  precision, recall        improved precision / recall (k = 3) on pool3 features
  proxy_fd, proxy_coverage_kl, proxy_confident      digits (offline)
  modes_captured, high_quality, reverse_kl          toy mixtures (offline)

Reference statistics are cached as `.npz` under `<cache>/reference/`, keyed by
the data config, split, shape, number of images, a SHA-256 of the loaded images
themselves (so any change of preprocessing gives a new key) and the feature
extractor (network version, weights hash, dtype).
"""

import functools
import hashlib
import logging
import os
from pathlib import Path
import time

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax.metrics import cache
from gan_jax.metrics import inception
from gan_jax.metrics import proxies
from gan_jax.metrics import stats

METRICS = ('proxy', 'fid', 'is', 'kid', 'pr')
INCEPTION_METRICS = ('fid', 'is', 'kid', 'pr')
# Data-config fields that cannot change the images (throughput knobs only).
_IRRELEVANT_DATA_FIELDS = ('num_workers', 'prefetch')
KID_SUBSET_SIZE = 1000
KID_NUM_SUBSETS = 100
KID_SEED = 2020     # torch-fidelity's default rng_seed
IS_SPLITS = 10
PR_K = 3


def parse_metrics(spec):
  """'fid, kid' -> ('fid', 'kid'); unknown names raise ValueError listing the known ones."""
  names = [m.strip().lower() for m in (spec or '').split(',') if m.strip()]
  unknown = [m for m in names if m not in METRICS]
  if unknown:
    raise ValueError(f'Unknown metrics {unknown}; known: {list(METRICS)}. '
                     'Set --config.eval.metrics (e.g. "fid,kid" or "proxy").')
  return tuple(dict.fromkeys(names))


def _config_dict(data_config):
  raw = data_config.to_dict() if hasattr(data_config, 'to_dict') else dict(data_config)
  return {k: v for k, v in sorted(raw.items()) if k not in _IRRELEVANT_DATA_FIELDS}


def _default_loader():
  from gan_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  return data_lib.load_eval_data


def reference_features(data_config, *, data_shape, split, num_examples, extractor_id,
                       extract, cache_dir=None, load_eval_data=None):
  """Features and statistics of a real evaluation set, cached on disk.

  The real images are always loaded (cheap next to the feature extractor) and
  hashed; the cache file is reused only when the stored key, which includes
  that hash, matches exactly.

  Args:
    data_config: config.data.
    data_shape: shape of one example, e.g. (32, 32, 3).
    split: data split of the reference set.
    num_examples: images wanted (fewer when the split is smaller).
    extractor_id: JSON-serialisable description of `extract` (version, weights).
    extract: f32[N, *data_shape] -> f[N, D] features.
    cache_dir: cache root (default `cache.cache_dir()`); files go to `reference/`.
    load_eval_data: the data loader (default `gan_jax.data.load_eval_data`).

  Returns:
    dict with 'features' f32[N, D], 'mu' f64[D], 'sigma' f64[D, D],
    'num_examples' (int) and 'path' (the cache file).
  """
  load_eval_data = load_eval_data or _default_loader()
  images = np.ascontiguousarray(load_eval_data(
      data_config, data_shape=tuple(data_shape), split=split, num_examples=num_examples),
                                dtype=np.float32)
  if len(images) < 2:
    raise ValueError(f'Only {len(images)} reference examples in split {split!r}; need at '
                     'least 2 (check config.data and the reference split).')
  content = hashlib.sha256(repr(images.shape).encode() + images.tobytes()).hexdigest()
  key = dict(kind='reference_features/v1', data=_config_dict(data_config),
             data_shape=list(data_shape), split=split, requested=int(num_examples),
             num_examples=len(images), content_sha256=content, extractor=extractor_id)
  source = _config_dict(data_config).get('source', 'data')
  name = _config_dict(data_config).get('name') or _config_dict(data_config).get('toy') or ''
  stem = '-'.join(str(p) for p in (source, name, split, 'x'.join(map(str, data_shape)),
                                   len(images)) if p != '')
  root = Path(cache_dir) if cache_dir else cache.cache_dir()
  path = root / 'reference' / f'{stem}-{cache.key_digest(key)}.npz'
  stored = cache.load_npz(path, key)
  if stored is None:
    logging.info('Computing reference features of %d %s/%s images -> %s',
                 len(images), source, split, path)
    features = np.asarray(extract(images))
    mu, sigma = stats.feature_statistics(features)
    stored = dict(features=features.astype(np.float32), mu=mu, sigma=sigma)
    if jax.process_index() == 0:
      cache.save_npz(path, key, stored)
  else:
    logging.info('Reusing reference features from %s', path)
  return dict(stored, num_examples=len(images), path=str(path))


_LATENT_BLOCK = 1000


@functools.partial(jax.jit, static_argnames=('z_dim',))
def _latent_block(key, index, z_dim):
  return jax.random.normal(jax.random.fold_in(key, index), (_LATENT_BLOCK, z_dim), jnp.float32)


def latents(seed, num, z_dim):
  """z ~ N(0, I) for an evaluation: f32[num, z_dim], the same rows for any `num`.

  Drawn in blocks of 1000 rows, block i from `fold_in(jax.random.key(seed), i)`,
  so one compiled function serves every sample count and a larger evaluation
  extends a smaller one instead of replacing its latents.
  """
  key = jax.random.key(seed)
  blocks = [np.asarray(_latent_block(key, i, z_dim))
            for i in range(-(-num // _LATENT_BLOCK))]
  return np.concatenate(blocks)[:num] if blocks else np.zeros((0, z_dim), np.float32)


class Evaluator:
  """`evaluator(generate, *, seed) -> dict[str, float]`; see the module docstring.

  Attributes:
    metrics: the metric names being computed.
    protocol: JSON-serialisable description of how the numbers are computed.
  """

  def __init__(self, config, *, data_shape, num_reference=None, reference_split=None,
               batch_size=500, inception_batch_size=64, inception_weights=None,
               inception_variables=None, cache_dir=None, load_eval_data=None):
    """Prepares the extractors and the reference features.

    Args:
      config: the experiment ConfigDict (reads config.eval, config.data,
        config.model.z_dim).
      data_shape: shape of one example (H, W, C) or (2,) for toy data.
      num_reference: reference images (default `config.eval.num_reference` if
        present, else `config.eval.num_samples`).
      reference_split: default `config.eval.reference_split` if present, else
        `config.data.split`.
      batch_size: latents per `generate` call (the last call is padded).
      inception_batch_size: images per Inception call.
      inception_weights: weights path (default `config.eval.inception_weights`,
        then the search of `inception.find_weights`).
      inception_variables: already converted variables (skips loading; tests).
      cache_dir: cache root (default `cache.cache_dir()`).
      load_eval_data: the data loader (default `gan_jax.data.load_eval_data`).

    Raises:
      ValueError: unknown metrics or metrics that do not fit the data.
      FileNotFoundError: Inception weights missing (the message says where to
        get them).
    """
    ev = config.eval
    self.metrics = parse_metrics(ev.metrics)
    if not self.metrics:
      raise ValueError('config.eval.metrics is empty; nothing to evaluate.')
    self._num_samples = int(ev.num_samples)
    self._z_dim = int(config.model.z_dim)
    self._batch_size = int(batch_size)
    self._data_shape = tuple(int(s) for s in data_shape)
    self._source = config.data.source
    num_reference = int(num_reference or ev.get('num_reference', None) or self._num_samples)
    split = reference_split or ev.get('reference_split', None) or config.data.split
    cache_dir = cache_dir or None
    loader = load_eval_data or _default_loader()
    self.protocol = dict(num_samples=self._num_samples, data_shape=list(self._data_shape),
                         latents='z ~ N(0, I) float32, rows of blocks i = 0, 1, ... of '
                                 'jax.random.normal(fold_in(jax.random.key(seed), i), '
                                 f'(1000, {self._z_dim}))',
                         data=_config_dict(config.data))

    if 'proxy' in self.metrics:
      self._setup_proxy(config, split, num_reference, cache_dir, loader)
    wanted = [m for m in self.metrics if m in INCEPTION_METRICS]
    if wanted:
      if len(self._data_shape) != 3:
        raise ValueError(f'{wanted} need images, but the data shape is {self._data_shape}; '
                         'for 2-D toy data use config.eval.metrics="proxy".')
      self._setup_inception(config, split, num_reference, cache_dir, loader,
                            inception_weights, inception_variables, inception_batch_size)

  # -- set-up -------------------------------------------------------------------

  def _setup_proxy(self, config, split, num_reference, cache_dir, loader):
    if self._source == 'toy':
      from gan_jax.data import toy  # pylint: disable=g-import-not-at-top
      self._centers, self._std = toy.mixture(config.data.toy)
      self.protocol['proxy'] = dict(
          kind='toy mode metrics (PacGAN protocol)', mixture=config.data.toy,
          modes=len(self._centers), std=self._std,
          high_quality='distance to the nearest mode <= 3 std',
          reverse_kl='KL(mode histogram of high-quality samples || uniform), nats; '
                     '0 log 0 = 0; log(K) when no sample is high quality')
      return
    if self._source != 'digits':
      raise ValueError(f'metrics "proxy" exist for data.source digits and toy, not '
                       f'{self._source!r}; use fid / is / kid / pr (Inception weights).')
    if len(self._data_shape) != 3:
      raise ValueError(f'digits proxy needs image data, got shape {self._data_shape}')
    classifier = proxies.digits_classifier(self._data_shape[:2], cache_dir=cache_dir)
    self._classifier = classifier
    digest = hashlib.sha256(b''.join(
        classifier.params[k].tobytes() for k in sorted(classifier.params))).hexdigest()[:16]
    extractor = dict(name=proxies.DIGITS_CLASSIFIER_VERSION, params_sha256=digest,
                     image_size=list(classifier.image_size))
    self._proxy_ref = reference_features(
        config.data, data_shape=self._data_shape, split=split, num_examples=num_reference,
        extractor_id=extractor, extract=lambda x: classifier(x)[0], cache_dir=cache_dir,
        load_eval_data=loader)
    self.protocol['proxy'] = dict(
        kind='digits MLP classifier (offline FID / coverage proxy)', extractor=extractor,
        classifier_test_accuracy=classifier.test_accuracy,
        confidence=proxies.CONFIDENCE,
        reference=dict(split=split, num_examples=self._proxy_ref['num_examples'],
                       cache=self._proxy_ref['path']))

  def _setup_inception(self, config, split, num_reference, cache_dir, loader,
                       weights, variables, batch_size):
    if variables is None:
      path = inception.find_weights(weights or config.eval.get('inception_weights', '') or None)
      sha = inception.verify_weights_hash(path)
      variables = inception.convert_pytorch_fid_state_dict(inception.read_torch_state_dict(path))
      weights_id = dict(file=os.path.basename(path), sha256=sha)
    else:
      # Given variables: identify them by their bytes so the cache stays honest.
      digest = hashlib.sha256()
      for leaf in jax.tree.leaves(variables):
        digest.update(np.ascontiguousarray(leaf).tobytes())
      weights_id = dict(file='<variables>', sha256=digest.hexdigest())
    self._variables = variables
    self._inception_batch = batch_size
    extractor = dict(name=inception.FEATURES_VERSION, weights_sha256=weights_id['sha256'],
                     dtype=str(np.asarray(variables['params']['fc']['kernel']).dtype))
    self._ref = reference_features(
        config.data, data_shape=self._data_shape, split=split, num_examples=num_reference,
        extractor_id=extractor, extract=lambda x: self._features(x)['pool3'],
        cache_dir=cache_dir, load_eval_data=loader)
    n_ref = self._ref['num_examples']
    self.protocol['inception'] = dict(
        implementation='gan_jax Flax port of pytorch-fid 0.3.0 InceptionV3 (FID weights, '
                       'pool3 2048-d); matches pytorch-fid to 1e-14 (float64) in our tests',
        weights=weights_id, input='NHWC in [-1, 1] resized to 299x299 bilinear '
                                  '(align_corners=False, no antialias); grey repeated to RGB',
        resolution=list(self._data_shape),
        reference=dict(source=config.data.source, name=config.data.get('name', ''),
                       split=split, requested=num_reference, num_examples=n_ref,
                       cache=self._ref['path']))
    if 'fid' in self.metrics:
      self.protocol['fid'] = 'pytorch-fid formula; sqrt of covariances by symmetric eigh, float64'
    if 'is' in self.metrics:
      self.protocol['is'] = dict(implementation='torch-fidelity 0.4.0 isc_features_to_metric',
                                 logits='pool3 @ fc.weight^T (logits_unbiased)',
                                 splits=IS_SPLITS, shuffle=True, seed=2020)
    if 'kid' in self.metrics:
      self.protocol['kid'] = dict(implementation='torch-fidelity 0.4.0 kid_features_to_metric',
                                  kernel='(x.y / 2048 + 1)^3, unbiased MMD^2',
                                  subset_size=min(KID_SUBSET_SIZE, n_ref, self._num_samples),
                                  num_subsets=KID_NUM_SUBSETS, seed=KID_SEED)
    if 'pr' in self.metrics:
      self.protocol['pr'] = dict(implementation='Kynkaanniemi et al. 2019, pool3 features',
                                 k=PR_K)

  def _features(self, images):
    return inception.extract_features(self._variables, images,
                                      batch_size=self._inception_batch)

  # -- evaluation ---------------------------------------------------------------

  def generate(self, generate, *, seed):
    """Draws the latents for `seed` and runs `generate` in equal-sized batches.

    Returns:
      np.float32[num_samples, *data_shape].
    """
    n = self._num_samples
    z = latents(seed, n, self._z_dim)
    batch = min(self._batch_size, n)
    outputs = []
    for start in range(0, n, batch):
      chunk = z[start:start + batch]
      valid = len(chunk)
      if valid < batch:  # same shape every call: a jitted generate compiles once
        chunk = np.concatenate([chunk, np.zeros((batch - valid, self._z_dim), np.float32)])
      outputs.append(np.asarray(generate(chunk), np.float32)[:valid])
    samples = np.concatenate(outputs)
    if samples.shape[1:] != self._data_shape:
      raise ValueError(f'generate returned samples of shape {samples.shape[1:]}, but the '
                       f'evaluator was built for {self._data_shape}')
    return samples

  def __call__(self, generate, *, seed):
    """Evaluates a generator.

    Args:
      generate: z f32[B, z_dim] -> f32[B, *data_shape] (images in [-1, 1]).
      seed: seed of the latents (the same seed gives the same z every time).

    Returns:
      dict[str, float]; keys depend on the metrics (module docstring).
    """
    start = time.perf_counter()
    samples = self.generate(generate, seed=seed)
    if not np.all(np.isfinite(samples)):
      raise ValueError('generated samples contain NaN or inf; cannot evaluate them')
    results = {}
    if 'proxy' in self.metrics:
      results.update(self._proxy(samples))
    if any(m in INCEPTION_METRICS for m in self.metrics):
      results.update(self._inception_metrics(samples))
    logging.info('Evaluated %d samples in %.1f s', len(samples), time.perf_counter() - start)
    return results

  def _proxy(self, samples):
    if self._source == 'toy':
      out = proxies.toy_mode_metrics(samples, self._centers, self._std)
      return {k: float(v) for k, v in out.items()}
    features, probs = self._classifier(samples)
    mu, sigma = stats.feature_statistics(features)
    out = {'proxy_fd': stats.frechet_distance(self._proxy_ref['mu'], self._proxy_ref['sigma'],
                                              mu, sigma)}
    out.update(proxies.class_coverage(probs))
    return out

  def _inception_metrics(self, samples):
    feats = self._features(samples)
    pool3 = feats['pool3']
    out = {}
    if 'fid' in self.metrics:
      mu, sigma = stats.feature_statistics(pool3)
      out['fid'] = stats.frechet_distance(self._ref['mu'], self._ref['sigma'], mu, sigma)
    if 'is' in self.metrics:
      out['is_mean'], out['is_std'] = stats.inception_score(
          feats['logits'], splits=min(IS_SPLITS, len(samples)))
    if 'kid' in self.metrics:
      real = self._ref['features']
      out['kid_mean'], out['kid_std'] = stats.kernel_inception_distance(
          real, pool3, subset_size=min(KID_SUBSET_SIZE, len(real), len(pool3)),
          num_subsets=KID_NUM_SUBSETS, seed=KID_SEED)
    if 'pr' in self.metrics:
      out['precision'], out['recall'] = stats.precision_recall(
          self._ref['features'], pool3, k=PR_K)
    return out


def make_evaluator(config, *, data_shape, **kwargs):
  """Builds the evaluator for `config.eval.metrics`; see `Evaluator`.

  Args:
    config: experiment config (eval.metrics, eval.num_samples,
      eval.inception_weights, data, model.z_dim).
    data_shape: shape of one example.
    **kwargs: optional `Evaluator` settings (num_reference, reference_split, ...).

  Returns:
    `evaluator(generate, *, seed) -> dict[str, float]`.
  """
  return Evaluator(config, data_shape=data_shape, **kwargs)
