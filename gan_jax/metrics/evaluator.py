"""The evaluator: generates samples and scores them against the real data.

`make_evaluator(config, *, data_shape)` builds, once, everything an evaluation
needs (Inception weights or the digits judge, and the reference features of the
real data, cached on disk by `reference.py`), and returns
`evaluator(generate, *, seed)` which draws `config.eval.num_samples` latents
z ~ N(0, I) (with cycled labels 0, 1, ..., K-1, 0, ... for a conditional model),
generates, and returns a flat dict of floats:

  fid                      Frechet Inception Distance (lower is better)
  is_mean, is_std          Inception Score (torch-fidelity protocol: 10 shuffled splits)
  kid_mean, kid_std        Kernel Inception Distance (100 subsets of <= 1000, seed 2020)
  precision, recall        improved precision / recall (k = 3) on pool3 features
  density, coverage        density / coverage (Naeem et al. 2020, k = 5) on pool3 features
  intra_fid                mean over classes of the per-class FID (`class_metrics.py`)
  cas, cas_confident       classification accuracy of the samples (digits judge)
  proxy_fd, proxy_coverage_kl, proxy_confident      digits (offline, `digits_judge.py`)
  modes_captured, high_quality, reverse_kl          toy mixtures (offline, `toy_modes.py`)

`evaluator.run(generate, *, seed)` also returns the per-class values of the
class-aware metrics. `evaluator.protocol` spells out how they were computed
(implementations, weights hash, numbers of real and generated images, reference
split, resize).

With several processes, each generates and embeds only its own rows of the
same global latents (rows [p N / P, (p + 1) N / P) on process p), on its own
devices, and the metrics reduce statistics across processes (`sharded.py`), so
any number of devices or processes gives the same numbers. Every process must
then build the evaluator and call it together (they are collectives).
"""

import hashlib
import logging
import time

import jax
import numpy as np

from gan_jax import errors
from gan_jax import models
from gan_jax.metrics import class_metrics
from gan_jax.metrics import digits_judge
from gan_jax.metrics import exchange
from gan_jax.metrics import inception
from gan_jax.metrics import inception_weights
from gan_jax.metrics import protocols
from gan_jax.metrics import reference
from gan_jax.metrics import sampling
from gan_jax.metrics import sharded
from gan_jax.metrics import stats
from gan_jax.metrics import toy_modes

METRICS = ('proxy', 'fid', 'is', 'kid', 'pr', 'dc', 'intra_fid', 'cas')
INCEPTION_METRICS = ('fid', 'is', 'kid', 'pr', 'dc', 'intra_fid')
# Metrics that need the pool3 features of every process's samples, not only sums.
GATHERED_METRICS = ('kid', 'pr', 'intra_fid')


def parse_metrics(spec, *, flag='--config.eval.metrics', known=METRICS):
  """'fid, kid' -> ('fid', 'kid'), lower-cased, duplicates dropped.

  Args:
    spec: comma-separated metric names (None or '' gives ()).
    flag: the flag or config field that passed `spec`, named in the error.
    known: the accepted names (`gan_jax.evaluate` adds its 'accuracy').

  Raises:
    ConfigError: an unknown name; the message lists the known ones.
  """
  names = [m.strip().lower() for m in (spec or '').split(',') if m.strip()]
  unknown = [m for m in names if m not in known]
  if unknown:
    raise errors.ConfigError(f'{flag}: unknown metrics {unknown}; known: {list(known)} '
                             '(e.g. "fid,kid", or "proxy" offline for digits and toy data).')
  return tuple(dict.fromkeys(names))


# Of the metrics' protocol entries, what each eval.jsonl line repeats (the whole
# entries, with intra_fid's counts of every class, are in `gan_jax.evaluate`'s record).
_SUMMARY_KEYS = {
    'fid': ('num_real', 'num_fake', 'reference_split', 'resize'),
    'intra_fid': ('num_classes', 'real_per_class_range', 'fake_per_class_range',
                  'reference_split', 'resize'),
}


class Evaluator:
  """`evaluator(generate, *, seed) -> dict[str, float]`; see the module docstring.

  Attributes:
    metrics: the metric names being computed.
    protocol: JSON-serialisable description of how the numbers are computed.
    comparable: the part of the protocol two evaluations must share for their
      distances to be compared (a small JSON-serialisable dict: generated and real
      image counts, reference split, feature extractor); the best checkpoint
      keeps it.
    summary: what an eval.jsonl line keeps: `comparable`, and for fid and intra_fid
      their image counts (per class for intra_fid), reference split and resizer,
      so that a line read alone says how its values were measured.
    rows: (start, stop), the global sample rows this process generates.
  """

  def __init__(self, config, *, data_shape, num_reference=None, reference_split=None,
               batch_size=500, inception_batch_size=64, inception_weights=None,
               inception_variables=None, cache_dir=None, load_eval_data=None, devices=None,
               metrics=None):
    """Prepares the extractors and the reference features (a collective).

    Args:
      config: the experiment ConfigDict (reads config.eval, config.data,
        config.model.z_dim and the classes G is conditioned on,
        `models.generator_classes(config.model)`).
      data_shape: shape of one example (H, W, C) or (2,) for toy data.
      num_reference: reference images (default `config.eval.num_reference` if
        present, else `config.eval.num_samples`).
      reference_split: default `config.eval.reference_split` if present, else
        `config.data.split`.
      batch_size: latents per `generate` call (the last call is padded).
      inception_batch_size: images per Inception call.
      inception_weights: weights path (default `config.eval.inception_weights`,
        then the search of `inception_weights.find_weights`).
      inception_variables: already converted variables (skips loading; tests).
      cache_dir: cache root (default `cache.cache_dir()`).
      load_eval_data: the data loader (default `gan_jax.data.load_eval_data`).
      devices: this process's devices that embed its samples (default all of
        `jax.local_devices()`).
      metrics: the comma list of metrics to compute (default `config.eval.metrics`).

    Raises:
      ConfigError: unknown metrics or metrics that do not fit the data or model.
      MissingFileError: Inception weights missing (the message says where to
        get them).
    """
    ev = config.eval
    self.metrics = parse_metrics(ev.metrics if metrics is None else metrics)
    if not self.metrics:
      raise errors.ConfigError('config.eval.metrics is empty; nothing to evaluate '
                               f'(choose from {list(METRICS)}).')
    self._num_samples = int(ev.num_samples)
    self._z_dim = int(config.model.z_dim)
    # The classes G is conditioned on (none for the semi-supervised GAN's G).
    self._num_classes = models.generator_classes(config.model)
    self._batch_size = int(batch_size)
    self._data_shape = tuple(int(s) for s in data_shape)
    self._source = config.data.source
    self._devices = list(devices) if devices is not None else jax.local_devices()
    self.rows = exchange.process_share(self._num_samples)
    class_metrics.check_config(self.metrics, source=self._source,
                               num_classes=self._num_classes, num_samples=self._num_samples)
    num_reference = int(num_reference or ev.num_reference or self._num_samples)
    split = reference_split or ev.reference_split or config.data.split
    references = dict(config=config, split=split, num_examples=num_reference,
                      cache_dir=cache_dir or None,
                      loader=load_eval_data or reference.default_loader())
    self.protocol = dict(num_samples=self._num_samples, data_shape=list(self._data_shape),
                         latents='z ~ N(0, I) float32, rows of blocks i = 0, 1, ... of '
                                 'jax.random.normal(fold_in(jax.random.key(seed), i), '
                                 f'(1000, {self._z_dim}))',
                         processes=exchange.process_count(),
                         data=reference.data_config_dict(config.data))
    if self._num_classes:
      self.protocol['labels'] = (f'sample row i generated with label i mod {self._num_classes}'
                                 ' (cycled over the classes)')
    # More samples lower a Frechet distance's bias, so a run resumed with another
    # eval.num_samples must not compare its new values with the old ones.
    self.comparable = dict(num_fake=self._num_samples, reference_split=split)

    if 'proxy' in self.metrics or 'cas' in self.metrics:
      self._setup_judges(config, references)
    wanted = [m for m in self.metrics if m in INCEPTION_METRICS]
    if wanted:
      if len(self._data_shape) != 3:
        raise errors.ConfigError(
            f'metrics {wanted} need images, but the data shape is {self._data_shape}; for '
            '2-D toy data use config.eval.metrics="proxy" (--metrics=proxy).')
      check_counts(self.metrics, num_fake=self._num_samples, num_real=num_reference)
      self._setup_inception(config, references, inception_weights, inception_variables,
                            inception_batch_size)

  # -- set-up -------------------------------------------------------------------

  def _reference(self, references, *, extractor_id, extract, labels=False):
    return reference.reference_features(
        references['config'].data, data_shape=self._data_shape, split=references['split'],
        num_examples=references['num_examples'], extractor_id=extractor_id, extract=extract,
        cache_dir=references['cache_dir'], load_eval_data=references['loader'], labels=labels)

  def _setup_judges(self, config, references):
    """The toy mode metrics or the digits judge (proxy metrics and cas)."""
    if self._source == 'toy':
      from gan_jax.data import toy  # pylint: disable=g-import-not-at-top
      self._centers, self._std = toy.mixture(config.data.toy)
      self.protocol['proxy'] = protocols.toy_proxy(config.data.toy, self._centers, self._std)
      self.comparable['toy'] = config.data.toy
      return
    if self._source != 'digits' or len(self._data_shape) != 3:
      raise errors.ConfigError(
          f'metrics "proxy" exist for data.source digits and toy, not {self._source!r}; use '
          'fid / is / kid / pr / dc (they need the Inception weights).')
    self._judge = judge = digits_judge.fitted_judge()
    height, width = self._data_shape[:2]
    # The judge sees 8x8 digits; its test numbers are of 8x8 digits, so at another
    # resolution the record says how the samples got there.
    judge_input = ('8x8 images as they are' if (height, width) == (8, 8) else
                   f'{height}x{width} images averaged over equal areas to 8x8 '
                   '(digits_judge.to_digits_scale)')
    if 'cas' in self.metrics:
      self.protocol['cas'] = dict(
          classifier=digits_judge.DESCRIPTION, input=judge_input,
          judge_test_accuracy=judge.test_accuracy,
          cas='share of samples whose top class is the label they were generated with',
          cas_confident=('share of samples whose top class is their label with probability '
                         f'>= {digits_judge.CONFIDENCE}'),
          num_fake=self._num_samples,
          num_fake_per_class=class_metrics.fake_per_class(
              self._num_samples, self._num_classes).tolist())
    if 'proxy' not in self.metrics:
      return
    extractor = dict(name=digits_judge.JUDGE_VERSION, digest=judge.digest[:16])
    self._proxy_ref = self._reference(references, extractor_id=extractor,
                                      extract=judge.features)
    # The real images' digest too: an image folder's files or data.path may change
    # on resume, and values against other real images are not comparable.
    self.comparable['proxy'] = dict(num_real=int(self._proxy_ref['num_examples']),
                                    judge=extractor['digest'],
                                    real=self._proxy_ref['content_sha256'][:16])
    real_confident = digits_judge.confident_share(
        judge.probabilities_from_features(self._proxy_ref['features']))
    self.protocol['proxy'] = dict(
        kind='digits judge (offline FID / coverage proxy)', judge=digits_judge.DESCRIPTION,
        input=judge_input, extractor=extractor, features='45 one-vs-one SVC decision values',
        confidence=digits_judge.CONFIDENCE, judge_test_accuracy=judge.test_accuracy,
        judge_test_confident_share=judge.test_confident_share,
        reference_confident_share=real_confident,
        baseline=('judge_test_confident_share: digits the judge never saw; '
                  'reference_confident_share is measured on the reference split, which '
                  "flatters it when that is 'train', the judge's own training digits"),
        reference=dict(split=references['split'], num_examples=self._proxy_ref['num_examples'],
                       content_sha256=self._proxy_ref['content_sha256'],
                       cache=self._proxy_ref['path']))
    logging.info('Digits proxy: %s; %d real %r images at %s: confident share %.4f',
                 judge.describe(), self._proxy_ref['num_examples'], references['split'],
                 'x'.join(map(str, self._data_shape)), real_confident)

  def _load_inception(self, config, weights, variables):
    """(variables, weights_id): the converted weights and what identifies them."""
    if variables is not None:
      # Given variables: identify them by their bytes so the cache stays honest.
      digest = hashlib.sha256()
      for leaf in jax.tree.leaves(variables):
        digest.update(np.ascontiguousarray(leaf).tobytes())
      return variables, dict(file='<variables>', sha256=digest.hexdigest())
    return inception_weights.load_weights_with_id(
        weights or config.eval.inception_weights or None,
        origin='config.eval.inception_weights / --inception_weights')

  def _setup_inception(self, config, references, weights, variables, batch_size):
    self._variables, weights_id = self._load_inception(config, weights, variables)
    self._inception_batch = batch_size
    extractor = dict(name=inception.FEATURES_VERSION, weights_sha256=weights_id['sha256'],
                     dtype=str(np.asarray(self._variables['params']['fc']['kernel']).dtype))
    self._ref = self._reference(references, extractor_id=extractor,
                                extract=lambda x: self._features(x)['pool3'],
                                labels='intra_fid' in self.metrics)
    n_ref, split = self._ref['num_examples'], references['split']
    self.comparable['inception'] = dict(num_real=int(n_ref), weights=weights_id['sha256'][:16],
                                        features=inception.FEATURES_VERSION,
                                        real=self._ref['content_sha256'][:16])
    stats.check_finite('the reference features', self._ref['features'])
    check_counts(self.metrics, num_fake=self._num_samples, num_real=n_ref)  # what the split had
    if 'kid' in self.metrics and min(n_ref, self._num_samples) < protocols.KID_SUBSET_SIZE:
      logging.warning(
          'KID: subsets of %d images (%d generated, %d real), not torch-fidelity\'s %d, '
          'which refuses fewer images: compare such values only with each other.',
          min(n_ref, self._num_samples), self._num_samples, n_ref, protocols.KID_SUBSET_SIZE)
    if 'fid' in self.metrics and min(n_ref, self._num_samples) < protocols.FID_MIN_IMAGES:
      logging.warning('Few images for FID, %d generated and %d real: %s (published FIDs: 10,000 or '
                      '50,000 each).', self._num_samples, n_ref, protocols.SMALL_SAMPLE_NOTE)
    data_name = '/'.join(p for p in (config.data.source, config.data.name) if p)
    self._real_images = f'({data_name} split {split!r}), resized by {inception.RESIZE_METHOD}'
    self.protocol['inception'] = dict(
        implementation='gan_jax Flax port of pytorch-fid 0.3.0 InceptionV3 (FID weights, '
                       'pool3 2048-d), parity-tested against pytorch-fid',
        weights=weights_id, input='NHWC in [-1, 1], grey repeated to RGB; '
                                  + inception.QUANTIZE_METHOD + '; ' + inception.RESIZE_METHOD,
        resolution=list(self._data_shape),
        reference=dict(source=config.data.source, name=config.data.name,
                       split=split, requested=references['num_examples'], num_examples=n_ref,
                       content_sha256=self._ref['content_sha256'], cache=self._ref['path']))
    self.protocol.update(protocols.inception_metrics(
        self.metrics, num_real=n_ref, num_fake=self._num_samples, split=split))
    if 'intra_fid' in self.metrics:
      real = class_metrics.check_intra_fid_counts(self._num_samples, self._ref['labels'],
                                                  self._num_classes)
      self.protocol['intra_fid'] = protocols.intra_fid(
          real, class_metrics.fake_per_class(self._num_samples, self._num_classes), split=split)
    self._pr_block = stats.pr_block(n_ref, self._num_samples)
    if 'pr' in self.metrics:
      self._real_radii = sharded.real_radii(self._ref['features'], k=protocols.PR_K,
                                            block=self._pr_block)
    if 'dc' in self.metrics:
      self._real_radii_dc = sharded.real_radii(self._ref['features'], k=protocols.DC_K,
                                               block=self._pr_block)

  def _features(self, images):
    # Rounded to 8 bits as the published protocols do (PNG files for pytorch-fid,
    # StudioGAN's quantize_images, for real and generated images alike); an image
    # decoded from 8 bits is unchanged, a resized or generated one is not.
    return inception.extract_features(self._variables, images, quantize=True,
                                      batch_size=self._inception_batch, devices=self._devices)

  @property
  def summary(self):
    """`comparable` plus the image counts, split and resizer of fid and intra_fid."""
    out = dict(self.comparable)
    for name, keys in _SUMMARY_KEYS.items():
      if name in self.protocol:
        out[name] = {k: self.protocol[name][k] for k in keys}
    return out

  # -- evaluation ---------------------------------------------------------------

  @property
  def labels(self):
    """int32[stop - start]: the labels of this process's rows (None when unconditional)."""
    if not self._num_classes:
      return None
    return class_metrics.row_labels(*self.rows, self._num_classes)

  def generate(self, generate, *, seed):
    """This process's samples: `generate_samples` with this evaluator's settings.

    Returns:
      np.float32[stop - start, *data_shape] for `self.rows` = (start, stop).
    """
    samples = sampling.generate_samples(
        generate, seed=seed, num_samples=self._num_samples, z_dim=self._z_dim,
        batch_size=self._batch_size, num_classes=self._num_classes,
        process_index=exchange.process_index(), process_count=exchange.process_count())
    if samples.shape[1:] != self._data_shape:
      raise ValueError(f'generate returned samples of shape {samples.shape[1:]}, but the '
                       f'evaluator was built for {self._data_shape}')
    return samples

  def __call__(self, generate, *, seed):
    """Evaluates a generator; `run(...)['results']`."""
    return self.run(generate, seed=seed)['results']

  def run(self, generate, *, seed):
    """Evaluates a generator (a collective: every process calls it).

    Args:
      generate: z f32[B, z_dim] -> f32[B, *data_shape] (images in [-1, 1]), or
        `generate(z, labels int32[B])` for a conditional model. It is called
        with this process's rows only and should run on this process's devices.
      seed: seed of the latents (the same seed gives the same z every time).

    Returns:
      {'results': dict[str, float] (keys depend on the metrics, module
       docstring), 'per_class': {metric: list of K floats} for intra_fid and
       cas}, identical on every process.
    """
    start = time.perf_counter()
    samples = self.generate(generate, seed=seed)
    if not exchange.flags(np.all(np.isfinite(samples))).all():
      raise errors.NonFiniteError(
          'Generated samples contain NaN or inf, so no metric can score them: the '
          'generator diverged (gan_jax.evaluate: try an earlier checkpoint, --step), or a '
          'sampler moved its latents too far (--langevin_step_size).')
    results, per_class = {}, {}
    if 'proxy' in self.metrics:
      results.update(self.score_proxy(samples))
    if 'cas' in self.metrics:
      cas, per_class['cas'] = class_metrics.classification_accuracy(
          self._judge.probabilities(samples), self.labels, num_classes=self._num_classes)
      results.update(cas)
    if any(m in INCEPTION_METRICS for m in self.metrics):
      inception_results, inception_per_class = self._inception_metrics(samples)
      results.update(inception_results)
      per_class.update(inception_per_class)
    logging.info('Evaluated %d samples (%d on this process) in %.1f s', self._num_samples,
                 len(samples), time.perf_counter() - start)
    return {'results': results, 'per_class': {k: [float(v) for v in values]
                                              for k, values in per_class.items()}}

  def score_proxy(self, samples):
    """The offline proxy metrics of this process's samples f32[N_p, *data_shape] (toy or digits).

    The samples (toy) or the judge's 45 features and 10 probabilities (digits)
    of every process are gathered: a few floats per sample.
    """
    if self._source == 'toy':
      out = toy_modes.toy_mode_metrics(exchange.gather_rows(samples), self._centers, self._std)
      return {k: float(v) for k, v in out.items()}
    features, probs = self._judge(samples)
    gathered = exchange.gather_rows(np.concatenate([features, probs], axis=1))
    features, probs = gathered[:, :features.shape[1]], gathered[:, features.shape[1]:]
    mu, sigma = stats.feature_statistics(features)
    out = {'proxy_fd': stats.frechet_distance(self._proxy_ref['mu'], self._proxy_ref['sigma'],
                                              mu, sigma)}
    out.update(digits_judge.class_coverage(probs))
    return out

  def _inception_metrics(self, samples):
    """(results, per_class) of the Inception metrics of this process's samples."""
    feats = self._features(samples)
    pool3, start = feats['pool3'], self.rows[0]
    stats.check_finite('the generated images\' Inception features', pool3)
    out, per_class = {}, {}
    everyone = (exchange.gather_rows(pool3)
                if any(m in GATHERED_METRICS for m in self.metrics) else None)
    real = self._ref['features']
    if 'fid' in self.metrics:
      mu, sigma = sharded.feature_statistics(pool3)
      out['fid'] = stats.frechet_distance(self._ref['mu'], self._ref['sigma'], mu, sigma)
      logging.info('FID %.4f: %d generated vs %d real images %s', out['fid'],
                   self._num_samples, self._ref['num_examples'], self._real_images)
    if 'is' in self.metrics:
      out['is_mean'], out['is_std'] = sharded.inception_score(
          feats['logits'], start=start, num_rows=self._num_samples,
          splits=protocols.IS_SPLITS)
    if 'kid' in self.metrics:
      out['kid_mean'], out['kid_std'] = sharded.kernel_inception_distance(
          real, everyone, subset_size=min(protocols.KID_SUBSET_SIZE, len(real), len(everyone)),
          num_subsets=protocols.KID_NUM_SUBSETS, seed=protocols.KID_SEED)
    if 'pr' in self.metrics:
      out['precision'], out['recall'] = sharded.precision_recall(
          real, self._real_radii, pool3, everyone, k=protocols.PR_K, block=self._pr_block)
    if 'dc' in self.metrics:
      out['density'], out['coverage'] = sharded.density_coverage(
          real, self._real_radii_dc, pool3, num_fake=self._num_samples, k=protocols.DC_K,
          block=self._pr_block)
    if 'intra_fid' in self.metrics:
      values = class_metrics.intra_fid(
          real, self._ref['labels'], everyone,
          class_metrics.row_labels(0, self._num_samples, self._num_classes),
          num_classes=self._num_classes)
      out['intra_fid'], per_class['intra_fid'] = float(values.mean()), values
      logging.info('intra-FID %.4f (mean over %d classes): per class %s generated vs %s real '
                   'images %s', out['intra_fid'], self._num_classes,
                   self.protocol['intra_fid']['fake_per_class_range'],
                   self.protocol['intra_fid']['real_per_class_range'], self._real_images)
    return out, per_class


def check_counts(metrics, *, num_fake, num_real):
  """Raises ConfigError when IS, precision / recall or density / coverage cannot be
  computed from these many generated (`num_fake`) and real (`num_real`) images (ints >= 1)."""
  if 'is' in metrics and num_fake < 2 * protocols.IS_SPLITS:
    raise errors.ConfigError(
        f'The Inception Score averages over {protocols.IS_SPLITS} splits of the generated '
        f'images and needs at least 2 per split (a split of one scores exactly 1): got '
        f'{num_fake}. Use --num_samples / config.eval.num_samples >= '
        f'{2 * protocols.IS_SPLITS} (published IS: 50,000).')
  if 'pr' in metrics and min(num_fake, num_real) <= protocols.PR_K:
    raise errors.ConfigError(
        f'Precision / recall compare each image with its {protocols.PR_K} nearest neighbours '
        f'and need more than {protocols.PR_K} generated and real images: got {num_fake} '
        f'generated, {num_real} real. Raise --num_samples / --num_reference (or '
        'config.eval.num_samples / num_reference).')
  if 'dc' in metrics and num_real <= protocols.DC_K:
    raise errors.ConfigError(
        f'Density / coverage give each real image a ball reaching its {protocols.DC_K}-th '
        f'nearest real neighbour and need more than {protocols.DC_K} real images: got '
        f'{num_real}. Raise --num_reference (or config.eval.num_reference).')


def make_evaluator(config, *, data_shape, **kwargs):
  """Builds the evaluator for `config.eval.metrics`; see `Evaluator`.

  Args:
    config: experiment config (eval.metrics, eval.num_samples,
      eval.inception_weights, data, model.z_dim, model.num_classes).
    data_shape: shape of one example.
    **kwargs: optional `Evaluator` settings (num_reference, reference_split,
      devices, ...).

  Returns:
    `evaluator(generate, *, seed) -> dict[str, float]` (an `Evaluator`).
  """
  return Evaluator(config, data_shape=data_shape, **kwargs)
