"""Tests of gan_jax.langevin (DDLS): D's log density ratio per loss, the Langevin
steps against Gaussian targets in closed form, row paths independent of batching,
and the refiner's steps following the gradient of |z|^2/2 - d(G(z)) of the
sampling generator."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import checkpoint
from gan_jax import errors
from gan_jax import langevin
from gan_jax import metrics
from gan_jax import models
from gan_jax import sample
from gan_jax import state as state_lib
from gan_jax import step as step_lib
from gan_jax import workdir as workdir_lib
from gan_jax.bench import digits_check
from tests.helpers import tiny_config
from tests.test_main import assert_short_error
from tests.test_main import run_module


def test_the_log_density_ratio_is_the_logit_or_the_lsgan_log_odds():
  d = jnp.asarray([-2.0, 0.0, 0.5, 0.8, 3.0])
  for loss_type in ('minimax', 'non_saturating', 'hinge', 'wasserstein'):
    np.testing.assert_array_equal(langevin.log_density_ratio(d, loss_type=loss_type), d)
  # LSGAN (targets 0 / 1): the optimal D is p / (p + q), so the ratio is D / (1 - D);
  # outside [e, 1 - e] the log-odds continue along their tangent at the bound.
  eps = langevin.LSGAN_EPS
  logit_eps, slope_eps = math.log(eps / (1 - eps)), 1 / (eps * (1 - eps))
  expected = [logit_eps + (-2.0 - eps) * slope_eps, logit_eps - eps * slope_eps, 0.0,
              math.log(4.0), -logit_eps + (3.0 - (1 - eps)) * slope_eps]
  lsgan = lambda x: langevin.log_density_ratio(x, loss_type='least_squares')
  np.testing.assert_allclose(lsgan(d), expected, rtol=1e-5, atol=1e-5)
  # Its slope: that of the log-odds inside, of the tangent outside (never 0).
  slopes = jax.vmap(jax.grad(lambda x: lsgan(x[None])[0]))(d)
  np.testing.assert_allclose(slopes, [slope_eps, slope_eps, 4.0, 1 / (0.8 * 0.2), slope_eps],
                             rtol=1e-4)
  with pytest.raises(errors.ConfigError, match='loss.type'):
    langevin.log_density_ratio(d, loss_type='lsgan')


def _gaussian_energy(mean, std):
  return lambda z: jnp.sum(jnp.square(z - mean), axis=-1) / (2 * std**2)


def test_without_noise_the_steps_are_gradient_descent_in_closed_form():
  mean, std, step_size, steps = 1.5, 0.5, 0.1, 7
  z0 = jnp.asarray([[0.0, -1.0], [3.0, 1.5]])
  options = langevin.Options(steps=steps, step_size=step_size, noise_std=0.0)
  z = langevin.langevin(_gaussian_energy(mean, std), z0, jax.random.key(0), options)
  # z' - m = (z - m)(1 - step / (2 std^2)) per step.
  np.testing.assert_allclose(z, mean + (z0 - mean) * (1 - step_size / (2 * std**2))**steps,
                             rtol=1e-5)
  # A decay of 1/2 every 2 steps: factors with step sizes 0.1, 0.1, 0.05, 0.05, 0.025, ...
  decayed = langevin.Options(steps=steps, step_size=step_size, noise_std=0.0, decay=0.5,
                             decay_every=2)
  z = langevin.langevin(_gaussian_energy(mean, std), z0, jax.random.key(0), decayed)
  factor = np.prod([1 - step_size * 0.5**(t // 2) / (2 * std**2) for t in range(steps)])
  np.testing.assert_allclose(z, mean + (z0 - mean) * factor, rtol=1e-5)


def test_langevin_dynamics_sample_a_gaussian_target():
  # Unadjusted Langevin on N(m, s^2): its stationary law is N(m, s^2 / (1 - e / (4 s^2))).
  mean, std, step_size = 1.5, 0.5, 0.05
  # Distinct starts: equal latents would share their noise (`row_keys`).
  z0 = jnp.asarray(np.random.default_rng(0).normal(size=(4000, 2)), jnp.float32)
  options = langevin.Options(steps=600, step_size=step_size)
  z = np.asarray(langevin.langevin(_gaussian_energy(mean, std), z0, jax.random.key(3),
                                   options))
  variance = std**2 / (1 - step_size / (4 * std**2))
  assert abs(z.mean() - mean) < 0.03  # standard error 0.006
  assert abs(z.var() - variance) < 0.02  # standard error 0.004
  # Half the noise: a quarter of the variance (the tempered sampler).
  half = langevin.Options(steps=600, step_size=step_size, noise_std=0.5)
  z = np.asarray(langevin.langevin(_gaussian_energy(mean, std), z0, jax.random.key(3), half))
  assert abs(z.var() - variance / 4) < 0.01


def test_no_steps_leave_the_latents_as_they_are():
  z0 = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
  out = langevin.langevin(_gaussian_energy(0.0, 1.0), z0, jax.random.key(0), langevin.Options())
  np.testing.assert_array_equal(out, z0)


def test_a_latent_follows_the_same_path_in_any_batch_and_position():
  energy = _gaussian_energy(0.5, 1.0)
  run = jax.jit(lambda z, key: langevin.langevin(energy, z, key, langevin.Options(steps=5)))

  def refine_with(seed):
    return lambda z, labels=None: np.asarray(run(jnp.asarray(z), jax.random.key(seed)))

  z0 = np.random.default_rng(1).normal(size=(10, 4)).astype(np.float32)
  by_3 = sample.generate_in_batches(refine_with(2), z0, batch_size=3)
  by_7 = sample.generate_in_batches(refine_with(2), z0, batch_size=7)
  np.testing.assert_allclose(by_3, by_7, rtol=1e-6, atol=1e-6)
  order = np.random.default_rng(2).permutation(10)
  shuffled = sample.generate_in_batches(refine_with(2), z0[order], batch_size=4)
  np.testing.assert_allclose(shuffled, by_3[order], rtol=1e-6, atol=1e-6)
  # Each row its own noise: the moves of two rows are not alike.
  moves = by_3 - z0
  assert np.abs(moves[1:] - moves[:1]).min(axis=1).max() > 0.05
  other_seed = sample.generate_in_batches(refine_with(3), z0, batch_size=3)
  assert np.abs(other_seed - by_3).max() > 0.1


def test_row_keys_differ_for_latents_one_bit_apart():
  z = np.zeros((3, 8), np.float32)
  z[1, 5] = np.float32(1e-45)  # the smallest subnormal: one bit
  z[2, 0] = -0.0  # the sign bit
  keys = jax.random.key_data(langevin.row_keys(jax.random.key(0), z))
  assert len({tuple(np.asarray(k).tolist()) for k in keys}) == 3


@pytest.mark.parametrize('field, value, message', [
    ('steps', -1, '--langevin_steps'), ('step_size', 0.0, '--langevin_step_size'),
    ('step_size', float('nan'), '--langevin_step_size'),
    ('noise_std', -0.1, '--langevin_noise_std'), ('decay', 0.0, '--langevin_decay'),
    ('decay', 1.5, '--langevin_decay'), ('decay_every', -2, '--langevin_decay_every'),
    ('decay', 0.9, 'would change nothing'), ('decay_every', 10, 'would change nothing')])
def test_bad_settings_are_refused_by_their_flag_name(field, value, message):
  with pytest.raises(errors.ConfigError, match=message):
    langevin.Options(**{field: value}).check()


def _saved_run(tmp_path, **overrides):
  """A tiny digits run with one saved checkpoint whose EMA G differs from G, its
  weights scaled up from the small initial ones so that D's logits of G's samples
  vary enough with z to move the latents."""
  config = tiny_config(**{'model.resolution': 8, 'loss.type': 'non_saturating', **overrides})
  workdir = str(tmp_path / 'run')
  workdir_lib.prepare(config, workdir)
  state = state_lib.create_state(config, jax.random.key(0))
  scaled = lambda factor, tree: jax.tree.map(lambda p: factor * p, tree)
  state = state.replace(g_params=scaled(3.0, state.g_params),
                        ema_g_params=scaled(4.0, state.g_params),
                        d_params=scaled(5.0, state.d_params))
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'), async_save=False)
  ckpt.save(1, state, {})
  ckpt.close()
  return workdir


def test_a_step_follows_the_gradient_of_the_sampling_generator_s_energy(tmp_path):
  workdir = _saved_run(tmp_path)
  config, state, step = workdir_lib.restore_state(workdir)
  generate = sample.generator_from_state(config, state, step)  # the EMA G
  step_size = 0.1
  refine = langevin.make_refiner(config, state, *generate.variables,
                                 langevin.Options(steps=1, step_size=step_size, noise_std=0.0),
                                 seed=0)
  z0 = np.random.default_rng(0).normal(size=(6, config.model.z_dim)).astype(np.float32)
  gradient = (z0 - refine(z0)) / (0.5 * step_size)
  _, discriminator = models.build(config.model)

  def energy(z):  # from the sample CLI's generator; a non-saturating D's logit is d
    d, _ = step_lib.apply_model(discriminator, state.d_params, state.d_batch_stats,
                                jnp.asarray(generate(z)), train=False)
    return 0.5 * np.sum(np.square(z.astype(np.float64)), axis=-1) - np.asarray(d, np.float64)

  # Central differences along each row's gradient direction and a random one.
  rng, h = np.random.default_rng(1), 1e-2
  for direction in (gradient, rng.normal(size=z0.shape)):
    unit = (direction / np.linalg.norm(direction, axis=1, keepdims=True)).astype(np.float32)
    slope = (energy(z0 + h * unit) - energy(z0 - h * unit)) / (2 * h)
    np.testing.assert_allclose(np.sum(gradient * unit, axis=1), slope, rtol=0.03, atol=0.02)
  # The D term matters: the step is not the prior's alone (z0).
  assert np.sqrt(np.mean(np.square(gradient - z0))) > 0.02


def test_the_digits_check_samples_moved_latents_and_says_so(tmp_path):
  workdir = _saved_run(tmp_path)
  plain = digits_check.run_check(workdir, num_samples=40, logistic=False)
  moved = digits_check.run_check(workdir, num_samples=40, logistic=False,
                                 ddls=langevin.Options(steps=20, step_size=0.5))
  assert plain['sampler'] == 'generator'
  assert moved['sampler'] == 'DDLS: 20 Langevin steps of 0.5, noise std 1'
  assert 'latents by DDLS: 20 Langevin steps' in digits_check.format_report(moved)
  assert plain['judge']['class_shares'] != moved['judge']['class_shares']


@pytest.mark.parametrize('overrides, fragment', [
    ({'model.pack': 2}, 'model.pack=2 (PacGAN)'),
    ({'model.minibatch_std': True}, 'model.minibatch_std'),
    ({'model.minibatch_discrimination': 4}, 'model.minibatch_discrimination=4'),
    ({'loss.label_smoothing': 0.1}, 'loss.label_smoothing=0.1'),
])
def test_a_d_that_compares_rows_or_smooths_its_labels_is_refused(tmp_path, overrides, fragment):
  # A row's path would depend on its batch (or D's logit is no log density ratio).
  workdir = _saved_run(tmp_path, **overrides)
  with pytest.raises(errors.ConfigError, match='--langevin_steps') as error:
    digits_check.run_check(workdir, num_samples=8, ddls=langevin.Options(steps=1))
  assert fragment in str(error.value)


def test_the_sample_cli_writes_the_samples_of_the_moved_latents(tmp_path):
  workdir = _saved_run(tmp_path)
  output = str(tmp_path / 'moved.npz')
  result = run_module('gan_jax.sample', [f'--workdir={workdir}', f'--output={output}',
                                         '--num_samples=10', '--batch_size=4', '--seed=3',
                                         '--langevin_steps=4', '--langevin_step_size=0.05'])
  assert result.returncode == 0, result.stderr[-3000:]
  assert '(DDLS: 4 Langevin steps of 0.05, noise std 1)' in result.stdout
  config, state, step = workdir_lib.restore_state(workdir)
  generate = sample.generator_from_state(config, state, step)
  refine = langevin.make_refiner(config, state, *generate.variables,
                                 langevin.Options(steps=4, step_size=0.05), seed=3)
  z = sample.latents(3, 10, config.model.z_dim)
  expected = generate(refine(z))
  with np.load(output) as written:
    np.testing.assert_allclose(written['samples'], expected, atol=1e-5)
    assert np.abs(written['samples'] - generate(z)).max() > 1e-3  # not G's own samples


def test_latents_that_diverge_are_a_short_error_and_nothing_is_written(tmp_path):
  # A step size far too large overflows the latents to inf, then NaN: the sample file
  # was all NaN and the evaluator's and the digits judge's errors were tracebacks.
  workdir = _saved_run(tmp_path)
  config, state, step = workdir_lib.restore_state(workdir)
  generate = sample.generator_from_state(config, state, step)
  refine = langevin.make_refiner(config, state, *generate.variables,
                                 langevin.Options(steps=5, step_size=1e30), seed=0)
  with pytest.raises(errors.NonFiniteError, match=r'The latents diverged \(DDLS: 5 Langevin '
                     r'steps of 1e\+30, noise std 1\): 4 of a batch of 4 became NaN or '
                     r'infinite'):
    refine(sample.latents(0, 4, config.model.z_dim))
  output = tmp_path / 'moved.npz'
  for module, args in (('gan_jax.sample', [f'--output={output}', '--num_samples=6']),
                       ('gan_jax.evaluate', ['--metrics=proxy', '--num_samples=6',
                                             f'--output={tmp_path / "eval.json"}'])):
    result = run_module(module, [f'--workdir={workdir}', '--langevin_steps=5',
                                 '--langevin_step_size=1e30', *args])
    assert_short_error(result, 'The latents diverged', 'Lower --langevin_step_size')
  assert not output.exists() and not (tmp_path / 'eval.json').exists()


def test_samples_with_nan_are_refused_by_the_sample_tools_and_the_evaluator():
  good = np.zeros((3, 8, 8, 1), np.float32)
  sample.check_finite_samples(good, 5)
  bad = good.copy()
  bad[1, 2, 3, 0], bad[2, 0, 0, 0] = np.nan, np.inf
  with pytest.raises(errors.NonFiniteError, match=r'2 of 3 samples of step 5 hold NaN or inf'):
    sample.check_finite_samples(bad, 5)
  evaluator = metrics.make_evaluator(tiny_config(**{'model.resolution': 8,
                                                    'eval.metrics': 'proxy',
                                                    'eval.num_samples': 20}),
                                     data_shape=(8, 8, 1))
  with pytest.raises(errors.NonFiniteError,
                     match=r'the generator diverged \(gan_jax.evaluate: try '):
    evaluator(lambda z: np.full((len(z), 8, 8, 1), np.nan, np.float32), seed=0)


@pytest.mark.parametrize('flag', ['--interpolate=4', '--truncation=1'])
def test_ddls_with_an_interpolation_or_truncation_is_refused_before_loading(tmp_path, flag):
  result = run_module('gan_jax.sample', [f'--workdir={tmp_path / "nope"}', '--output=x.npz',
                                         '--langevin_steps=5', flag])
  assert_short_error(result, '--langevin_steps moves each latent')


def test_evaluate_scores_the_moved_latents_records_the_sampler_and_keeps_g_s_record(tmp_path):
  from gan_jax import evaluate  # pylint: disable=g-import-not-at-top
  workdir = _saved_run(tmp_path)
  cache = str(tmp_path / 'cache')
  ddls = langevin.Options(steps=20, step_size=0.5)
  plain = evaluate.evaluate(workdir, metrics='proxy', num_samples=60, cache_dir=cache)
  moved = evaluate.evaluate(workdir, metrics='proxy', num_samples=60, cache_dir=cache,
                            ddls=ddls)
  assert 'ddls' not in plain['protocol']
  assert moved['protocol']['ddls'] == dict(steps=20, step_size=0.5, noise_std=1.0, decay=1.0,
                                           decay_every=0)
  assert moved['results']['proxy_fd'] != plain['results']['proxy_fd']
  # G's own record was kept beside the DDLS one (another protocol), not replaced.
  records = sorted(os.listdir(os.path.join(workdir, 'eval')))
  assert len(records) == 2 and 'step_1.json' in records
  # The same samples in other batches, and those the digits check judges.
  rebatched = evaluate.evaluate(workdir, metrics='proxy', num_samples=60, cache_dir=cache,
                                ddls=ddls, batch_size=7, output=str(tmp_path / 'r.json'))
  assert rebatched['results']['proxy_fd'] == pytest.approx(moved['results']['proxy_fd'],
                                                           rel=1e-4)
  check = digits_check.run_check(workdir, num_samples=60, logistic=False, ddls=ddls)
  assert check['judge']['generated_confident_share'] == moved['results']['proxy_confident']


def test_evaluate_refuses_ddls_without_a_sample_metric(tmp_path):
  from gan_jax import evaluate  # pylint: disable=g-import-not-at-top
  workdir = _saved_run(tmp_path, **{'model.num_classes': 10,
                                    'model.d_cond': 'semi_supervised'})
  with pytest.raises(errors.ConfigError, match='--metrics=accuracy draw no samples'):
    evaluate.evaluate(workdir, metrics='accuracy', ddls=langevin.Options(steps=3))
  # Standing statistics likewise (they were accepted and ignored).
  with pytest.raises(errors.ConfigError, match='--standing_stats re-estimates the statistics '
                     'G samples with, and --metrics=accuracy draw no samples'):
    evaluate.evaluate(workdir, metrics='accuracy', standing_stats=4)
  # Without --metrics the refusal names the default it fell back on, not a flag.
  with pytest.raises(errors.ConfigError, match=r"and this run's default metrics \(accuracy; "
                     r'--metrics picks others\) draw no samples'):
    evaluate.evaluate(workdir, standing_stats=4)


def test_a_conditional_run_moves_each_latent_under_d_s_score_for_its_class(tmp_path):
  workdir = _saved_run(tmp_path, **{'model.num_classes': 10})  # projection D, cBN G
  config, state, step = workdir_lib.restore_state(workdir)
  generate = sample.generator_from_state(config, state, step)
  refine = langevin.make_refiner(config, state, *generate.variables,
                                 langevin.Options(steps=3, step_size=0.1, noise_std=0.0), seed=0)
  z = sample.latents(0, 8, config.model.z_dim)
  as_3, as_7 = refine(z, np.full(8, 3, np.int32)), refine(z, np.full(8, 7, np.int32))
  assert np.abs(as_3 - as_7).max() > 1e-4  # the class enters G and D's projection
  # The evaluator's sampler hands each row its label.
  refined = langevin.refined_generator(generate, refine)
  labels = sample.cycled_labels(8, 10)
  np.testing.assert_allclose(refined(z, labels), generate(refine(z, labels), labels), atol=1e-6)
