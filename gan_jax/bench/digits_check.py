"""Do a digits run's samples look like digits? A calibrated classifier that never saw them decides.

  python -m gan_jax.bench.digits_check --workdir=runs/dcgan_digits [--num_samples=1000]

The check (pass / fail; exit status 1 on fail) uses the digits judge of
`gan_jax.metrics.digits_judge`, the classifier behind the in-training proxy
metrics (an RBF SVC with calibrated probabilities, fitted on the digits 'train'
split):
  1. confident share of real digits: the share of the 'test' split (never seen
     by the judge), preprocessed as the run's data, whose top class probability
     is >= the threshold (0.9);
  2. the same share for `num_samples` samples of the run's final (EMA)
     generator, drawn from the evaluation latents of `gan_jax.evaluate` (so
     `--metrics=proxy` with the same seed and count reports the same share as
     `proxy_confident`); with --langevin_steps, those latents moved by D first
     (`gan_jax.langevin`, DDLS; `gan_jax.evaluate --langevin_steps` scores the same);
  3. pass when 2 >= 0.8 x 1 and every digit (the judge's most probable class)
     gets between 5% and 15% of the samples.
A secondary line, outside the pass / fail decision, gives the confident shares of
scikit-learn's LogisticRegression fitted on the same 'train' split at 8x8; its
probabilities are not calibrated (over-confident), so its shares run higher.
"""

import functools
import sys

from absl import flags
import numpy as np
from sklearn.linear_model import LogisticRegression
import threadpoolctl

from gan_jax import cli
from gan_jax import data as data_lib
from gan_jax import defaults
from gan_jax import errors
from gan_jax import langevin
from gan_jax import models
from gan_jax import sample
from gan_jax import workdir as workdir_lib
from gan_jax.bench import report_files
from gan_jax.metrics import digits_judge as judge_lib
from gan_jax.metrics import sampling

MIN_RATIO = 0.8
CLASS_SHARE_RANGE = (0.05, 0.15)


def real_test_digits(data_config, *, image_shape):
  """The digits 'test' split preprocessed as the run's data.

  Args:
    data_config: the run's config.data (source 'digits').
    image_shape: (H, W, C) of the run's images.

  Returns:
    f32[450, H, W, C] in [-1, 1].
  """
  count = len(data_lib.digits_split('test')[1])
  return data_lib.load_eval_data(data_config, data_shape=tuple(image_shape), split='test',
                                 num_examples=count)


@functools.lru_cache(maxsize=1)
def _logistic_regression():
  """scikit-learn's LogisticRegression fitted on the digits 'train' split (8x8, 0..16)."""
  train, labels = data_lib.digits_split('train')
  # A problem this small gains nothing from BLAS threads, and on a busy machine
  # their synchronisation slows the fit down by an order of magnitude or more.
  with threadpoolctl.threadpool_limits(1):
    return LogisticRegression(max_iter=5000).fit(train.reshape(len(train), 64), labels)


def _logistic_confident_shares(real_test, samples, threshold):
  """(real, generated) confident shares of the secondary LogisticRegression."""
  classifier = _logistic_regression()
  share = lambda x: judge_lib.confident_share(
      classifier.predict_proba(judge_lib.to_digits_scale(x).reshape(len(x), 64)),
      confidence=threshold)
  return share(real_test), share(samples)


def check_samples(samples, *, real_test, threshold=judge_lib.CONFIDENCE, logistic=True):
  """Runs the check on given samples.

  Args:
    samples: f32[N, H, W, C] generated images in [-1, 1].
    real_test: f32[M, H', W', C] real 'test' digits in [-1, 1] (`real_test_digits`).
    threshold: confidence threshold on the top class probability.
    logistic: also compute the secondary LogisticRegression shares.

  Returns:
    JSON-ready dict: 'judge' {'real_confident_share', 'generated_confident_share',
    'ratio', 'class_shares' (10 floats), 'classes_balanced'}, 'passed' (bool),
    and 'logistic_regression' {'real_confident_share', 'generated_confident_share'}
    when `logistic`.
  """
  judge = judge_lib.fitted_judge()
  real_share = judge_lib.confident_share(judge.probabilities(real_test), confidence=threshold)
  if not real_share:
    raise errors.ConfigError(
        f'--threshold={threshold}: no real held-out digit is judged that confidently, so the '
        'ratio to real digits is undefined; use a lower threshold (the check\'s is '
        f'{judge_lib.CONFIDENCE}).')
  probs = judge.probabilities(samples)
  fake_share = judge_lib.confident_share(probs, confidence=threshold)
  shares = judge_lib.class_shares(probs)
  low, high = CLASS_SHARE_RANGE
  ratio = fake_share / max(real_share, 1e-12)
  balanced = bool(np.all((shares >= low) & (shares <= high)))
  result = {
      'judge': dict(description=judge_lib.DESCRIPTION, test_accuracy=judge.test_accuracy,
                    real_confident_share=real_share, generated_confident_share=fake_share,
                    ratio=ratio, class_shares=[float(s) for s in shares],
                    classes_balanced=balanced),
      'num_real': len(real_test), 'num_samples': len(samples), 'threshold': threshold,
      'passed': bool(ratio >= MIN_RATIO and balanced),
  }
  if logistic:
    real_lr, fake_lr = _logistic_confident_shares(real_test, samples, threshold)
    result['logistic_regression'] = dict(real_confident_share=real_lr,
                                         generated_confident_share=fake_lr)
  return result


def run_check(workdir, *, num_samples=1000, seed=0, threshold=judge_lib.CONFIDENCE,
              logistic=True, ddls=None):
  """Samples the run's final EMA generator and checks the samples; see the module docstring.

  `logistic` as for `check_samples`; `ddls`: `langevin.Options` (None or 0 steps: the
  generator's own samples).

  Returns:
    `check_samples`'s dict plus 'workdir', 'step', 'seed', 'resolution',
    'standing_stats' (None, or the re-estimated statistics of G, as
    `sample.load_generator` describes them) and 'sampler' ('generator', or the DDLS
    settings' description).
  """
  if not 0.0 <= threshold <= 1.0:  # NaN too, which flag bounds let through
    raise errors.ConfigError(f'--threshold must be a probability in [0, 1], got {threshold}.')
  ddls = ddls or langevin.Options()
  ddls.check()
  if ddls.steps:
    # One restore serves G and D; G's statistics as the run's evaluations use them
    # (eval.standing_stats).
    config, state, step = workdir_lib.restore_state(workdir)
    generate = sample.generator_from_state(config, state, step, standing_seed=seed)
  else:
    config, generate = sample.load_generator(workdir, standing_seed=seed)
  if config.data.source != 'digits':
    raise errors.ConfigError(f'{workdir} is a {config.data.source!r} run; --workdir must be a '
                             'digits run (data.source digits).')
  if ddls.steps:  # the same latents, moved by D first
    generate = langevin.refined_generator(generate, langevin.make_refiner(
        config, state, *generate.variables, ddls, seed=seed))
  # A class-conditional G draws row i as class i mod K (the evaluator's rows).
  samples = sampling.generate_samples(generate, seed=seed, num_samples=num_samples,
                                      z_dim=int(config.model.z_dim),
                                      num_classes=models.generator_classes(config.model))
  sample.check_finite_samples(samples, generate.step)
  real_test = real_test_digits(config.data, image_shape=samples.shape[1:])
  result = check_samples(samples, real_test=real_test, threshold=threshold, logistic=logistic)
  result.update(workdir=workdir, step=int(generate.step), seed=seed,
                resolution=list(samples.shape[1:]), standing_stats=generate.standing_stats,
                sampler=ddls.describe() if ddls.steps else 'generator')
  return result


def format_report(result):
  """Human-readable lines for a `run_check` result."""
  judge, size = result['judge'], 'x'.join(map(str, result['resolution'][:2]))
  low, high = CLASS_SHARE_RANGE
  lines = [
      f"digits check of {result['workdir']} (step {result['step']}, {result['num_samples']} "
      f"samples, seed {result['seed']}, {size} px)" +
      (f", latents by {result['sampler']}" if result.get('sampler', 'generator') != 'generator'
       else ''),
      f"judge: {judge['description']} (test accuracy {judge['test_accuracy']:.4f})",
      f"  confident share (p >= {result['threshold']}), real 'test' split ({result['num_real']} "
      f"digits at {size}): {judge['real_confident_share']:.4f}",
      f"  confident share (p >= {result['threshold']}), generated: "
      f"{judge['generated_confident_share']:.4f}",
      f"  ratio generated / real: {judge['ratio']:.4f}  (need >= {MIN_RATIO:.2f})",
      "  class shares of generated samples (judge's top class): " +
      ' '.join(f'{d}:{s:.3f}' for d, s in enumerate(judge['class_shares'])) +
      f'  (need each in [{low:.2f}, {high:.2f}])',
      f"  PASSED: {result['passed']}",
  ]
  if 'logistic_regression' in result:
    lr = result['logistic_regression']
    lines.append(
        "secondary (not part of the check): LogisticRegression fitted on the 'train' split at "
        f"8x8, uncalibrated: confident share real 'test' {lr['real_confident_share']:.4f}, "
        f"generated {lr['generated_confident_share']:.4f}")
  return '\n'.join(lines)


def _define_flags():
  """Command-line flags, defined only when run as a program."""
  flags.DEFINE_string('workdir', 'runs/dcgan_digits', 'A digits training run folder.')
  flags.DEFINE_integer('num_samples', 1000, 'Generated samples to classify.', lower_bound=2)
  flags.DEFINE_integer('seed', 0, 'Seed of the latent vectors (as gan_jax.evaluate --seed).',
                       lower_bound=0, upper_bound=defaults.MAX_SEED)
  flags.DEFINE_float('threshold', judge_lib.CONFIDENCE, 'Confidence threshold (a top class '
                     'probability in [0, 1]).', lower_bound=0.0, upper_bound=1.0)
  flags.DEFINE_string('json', None, 'Optional path for the result as JSON.')
  langevin.add_flags()
  flags.adopt_module_key_flags(langevin)  # --langevin_* in --help too


def main(argv):
  """The `python -m gan_jax.bench.digits_check` program (its flags parsed by absl)."""
  if len(argv) > 1:
    cli.fail(f'unexpected arguments {argv[1:]}; flags look like --name=value.')
  f = flags.FLAGS
  if f.json is not None:  # before the work, and never over the run's own records
    workdir_lib.check_output_file(f.json, flag='--json', workdir=f.workdir)
  ddls = langevin.options_from_flags(f)
  result = run_check(f.workdir, num_samples=f.num_samples, seed=f.seed, threshold=f.threshold,
                     ddls=ddls)
  print(format_report(result))
  if f.json:
    report_files.write_json(f.json, result)
  sys.exit(0 if result['passed'] else 1)


if __name__ == '__main__':
  _define_flags()
  cli.run(main, quiet=True, stop_on_sigterm=True)
