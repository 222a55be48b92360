"""Every shipped config: it loads, passes the config check, and its `:smoke` variant trains.

TFDS configs run under `tfds.testing.mock_data` (random examples with the
dataset's features, labels included); nothing touches the network.
"""

import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from gan_jax import augment
from gan_jax import config_check
from gan_jax import config_files
from gan_jax import errors
from gan_jax import models
from gan_jax import objectives
from gan_jax import workdir as workdir_lib
from tests.compile_flags import FAST_COMPILE_XLA_FLAG
from tests.compile_flags import subprocess_xla_flags
from tests.test_main import REPO

ZOO = ('sngan_cifar10', 'sngan_stl10', 'sngan_celeba', 'cgan_pd_cifar10', 'acgan_cifar10',
       'sagan_cifar10', 'biggan_cifar10', 'biggan_imagenet128')


@pytest.mark.parametrize('name', config_files.names())
def test_config_and_its_smoke_variant_pass_the_check(name):
  full, smoke = config_files.load(name), config_files.load(name + ':smoke')
  for config in (full, smoke):
    config_check.validate(config)
    config_check.check_settings_read(config)
  assert smoke.train.num_steps <= 20 and not smoke.train.progress_bar
  assert smoke.train.num_steps < full.train.num_steps
  g, d = models.count_params(smoke.model)
  assert g + d < 2_000_000, 'a smoke variant must be small enough for a CPU test'


def _variant_specs():
  """Every config with each of its on / off variants alone and with ':smoke' (those
  taking a value, such as biggan_cifar10:data=P, have tests of their own)."""
  for name in config_files.names():
    for variant, default in config_files.variants(name).items():
      if not isinstance(default, bool):
        continue
      yield f'{name}:{variant}'
      if variant != 'smoke':
        yield f'{name}:{variant},smoke'


@pytest.mark.parametrize('spec', list(_variant_specs()))
def test_every_variant_passes_the_check(spec):
  try:
    config = config_files.load(spec)
  except errors.ConfigError as e:  # variants that exclude each other say so
    assert 'Pick one of' in str(e) or 'cannot be combined' in str(e), str(e)
    return
  config_check.validate(config)
  config_check.check_settings_read(config)


def test_zoo_configs_have_the_reference_parameter_counts():
  # torch_mimicry (SNGAN / cGAN-PD) and PyTorch-StudioGAN (SAGAN, BigGAN) counts,
  # as read off the reference code (tests/test_resnet.py, tests/test_biggan.py).
  expected = {'sngan_cifar10': (4_276_739, 1_053_825), 'cgan_pd_cifar10': (4_304_387, 1_055_105),
              'sngan_stl10': (4_878_083, 10_141_441), 'sngan_celeba': (12_220_675, 10_141_441),
              'sagan_cifar10': (4_386_308, 1_075_586), 'biggan_cifar10': (9_416_196, 2_415_170),
              'biggan_imagenet128': (70_433_988, 87_982_370)}
  for name, counts in expected.items():
    assert models.count_params(config_files.load(name).model) == counts, name


# Trains CONFIG into WORKDIR on TFDS mock data, checkpointing the step before the last.
SMOKE_DRIVER = """
import sys
import tensorflow_datasets as tfds
from gan_jax import config_files, train
spec, workdir = sys.argv[1:]
config = config_files.load(spec)
config.train.checkpoint_every = config.train.num_steps - 1  # and the last step
with tfds.testing.mock_data(num_examples=24):
  train.train_and_evaluate(config, workdir)
"""


@pytest.mark.parametrize('name', ZOO + (
    'cgan_digits', 'dcgan_digits:few',
    # StudioGAN's BigGAN-DiffAug-LeCam recipe: the BigGAN smoke run again with both
    # switched on (LeCam from the first step): a repeat, so slow. (`sagan_cifar10:studiogan`
    # changes only training settings, each trained by other tests; its values are
    # checked below.)
    pytest.param('biggan_cifar10:diffaug,lecam', marks=pytest.mark.slow),
    # StudioGAN's BigGAN-ICR: bCR with CR's flip and reflection-padded shift, and zCR.
    pytest.param('biggan_cifar10:icr', marks=pytest.mark.slow)))
def test_smoke_variant_trains(tmp_path, name):
  # In a process of its own, on one CPU device and with LLVM unoptimised: these runs
  # are XLA compiles (init, step, grids) more than training, and both make them faster
  # (the step's 8-device equivalence is tests/test_step.py's job).
  spec = name + (',smoke' if ':' in name else ':smoke')
  config = config_files.load(spec)
  workdir = str(tmp_path / 'run')
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS=f'{subprocess_xla_flags()} {FAST_COMPILE_XLA_FLAG}'.strip())
  result = subprocess.run([sys.executable, '-c', SMOKE_DRIVER, spec, workdir], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  _, state, step = workdir_lib.restore_state(workdir, config.train.num_steps)
  _, before, step_before = workdir_lib.restore_state(workdir, config.train.num_steps - 1)
  assert (step, step_before) == (config.train.num_steps, config.train.num_steps - 1)
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.g_params))
  # The last train step changed every parameter array of G and D (from the
  # checkpoint one step before it). One exception: under the hinge loss a bias
  # that shifts every example's output by the same amount gets the gradient
  # (share of fakes inside the margin) - (share of reals inside it) times a
  # constant, exactly 0 while every output is inside, as at the start. That is
  # D's output bias, and the last block's conv2 / shortcut biases while the final
  # ReLU passes all of its inputs (seen with JAX 0.11.2 on sngan_celeba:smoke).
  may_rest = set()
  if config.loss.type == 'hinge':
    blocks = sorted((k for k in before.d_params if re.fullmatch(r'block\d+', k)),
                    key=lambda k: int(k[len('block'):]))
    may_rest = {"d_params['linear']['bias']"} | {
        f"d_params['{blocks[-1]}']['{layer}']['bias']" for layer in ('conv2', 'shortcut')
        if blocks}
  for params in ('g_params', 'd_params'):
    earlier = jax.tree_util.tree_flatten_with_path(getattr(before, params))[0]
    last = jax.tree.leaves(jax.device_get(getattr(state, params)))
    unchanged = {params + jax.tree_util.keystr(path) for (path, a), b in zip(earlier, last)
                 if np.array_equal(a, b)}
    assert len(earlier) == len(last) and unchanged <= may_rest, unchanged
  if config.model.num_classes:
    assert os.path.exists(os.path.join(workdir, workdir_lib.CLASS_NAMES_FILE))
  if config.loss.lecam_weight:
    # LeCam's averages of D's outputs start at 0 and moved with every D update.
    averages = jax.device_get(state.d_batch_stats[objectives.LECAM_STATS])
    before_averages = before.d_batch_stats[objectives.LECAM_STATS]
    assert all(averages[k] != 0 and averages[k] != before_averages[k]
               for k in ('real', 'fake')), averages


# Transcribed from the references, not from the configs: torch_mimicry's README
# training tables and trainer defaults (hinge, Adam 2e-4 with (0.0, 0.9), 5 D steps,
# batch 64, 100k G steps, linear decay to 0, no EMA, z 128), StudioGAN's
# src/config.py defaults with CIFAR10/BigGAN.yaml (Adam 2e-4 / 2e-4 (0.5, 0.999),
# 5 D steps, batch 64, 100k steps, G EMA 0.9999 from step 1000, z 80) and
# ImageNet/BigGAN-256.yaml (Adam G 5e-5 / D 2e-4 (0.0, 0.999), 2 D steps, batch 256,
# 200k steps, EMA 0.9999 from step 20000, z 120); attention at half the image side
# (attn_g_loc / attn_d_loc), which `attention_resolution=-1` means.
_RECIPES = {
    # name: (loss, (lr G, lr D), (b1, b2), n_critic, batch, steps, schedule, ema, z)
    'sngan_cifar10': ('hinge', (2e-4, 2e-4), (0.0, 0.9), 5, 64, 100000, 'linear', (0.0, 0),
                      128),
    'sngan_stl10': ('hinge', (2e-4, 2e-4), (0.0, 0.9), 5, 64, 100000, 'linear', (0.0, 0), 128),
    'sngan_celeba': ('hinge', (2e-4, 2e-4), (0.0, 0.9), 5, 64, 100000, 'linear', (0.0, 0), 128),
    'cgan_pd_cifar10': ('hinge', (2e-4, 2e-4), (0.0, 0.9), 5, 64, 100000, 'linear', (0.0, 0),
                        128),
    'biggan_cifar10': ('hinge', (2e-4, 2e-4), (0.5, 0.999), 5, 64, 100000, 'constant',
                       (0.9999, 1000), 80),
    'biggan_imagenet128': ('hinge', (5e-5, 2e-4), (0.0, 0.999), 2, 256, 200000, 'constant',
                           (0.9999, 20000), 120),
}


@pytest.mark.parametrize('name', sorted(_RECIPES))
def test_training_recipes_are_the_references(name):
  loss, rates, betas, n_critic, batch, steps, schedule, ema, z_dim = _RECIPES[name]
  config = config_files.load(name)
  assert config.loss.type == loss
  assert (config.optim.g.learning_rate, config.optim.d.learning_rate) == rates
  for opt in (config.optim.g, config.optim.d):
    assert (opt.name, opt.b1, opt.b2) == ('adam', *betas)
  assert (config.train.n_critic, config.train.batch_size, config.train.num_steps) == (
      n_critic, batch, steps)
  assert config.optim.schedule == schedule
  assert (config.train.ema_decay, config.train.ema_start) == ema
  assert config.model.z_dim == z_dim
  if config.model.name == 'biggan':
    assert config.model.attention_resolution in (-1, config.model.resolution // 2)


def test_zoo_settings_read_from_the_references_own_files():
  # Transcribed from the references (docs/benchmarks.md, "How comparable"): StudioGAN's
  # src/config.py Adam eps and flips, mimicry's CenterCrop(178), improved-gan's
  # loss_unl = 0.5 * (...) on D's GAN term.
  for name in ('sagan_cifar10', 'biggan_cifar10', 'biggan_imagenet128'):
    config = config_files.load(name)
    assert config.optim.g.eps == config.optim.d.eps == 1e-6, name
  assert config_files.load('sngan_celeba').data.crop == 'center'
  # StudioGAN's PRE.apply_rflip = True (its BigGAN recipes); mimicry's loaders only
  # normalise.
  for name in ('biggan_cifar10', 'biggan_cifar10:diffaug', 'biggan_imagenet128'):
    assert config_files.load(name).data.random_flip is True, name
    # StudioGAN's src/utils/ema.py averages G's buffers (BatchNorm statistics,
    # spectral-norm vectors) with its weights.
    assert config_files.load(name).train.ema_batch_stats is True, name
  # StudioGAN's worker.py untracks G's BatchNorm statistics for the D steps
  # (`misc.untrack_bn_statistics`) and tracks them again for the G step.
  for name in ('biggan_cifar10', 'biggan_imagenet128', 'sagan_cifar10',
               'sagan_cifar10:studiogan'):
    assert config_files.load(name).train.g_bn_stats_in_d_updates is False, name
  # mimicry's trainer runs G in train mode in the D steps, statistics updated.
  for name in ('sngan_cifar10', 'sngan_stl10', 'sngan_celeba', 'cgan_pd_cifar10',
               'acgan_cifar10', 'cgan_digits', 'dcgan_digits'):
    assert config_files.load(name).train.g_bn_stats_in_d_updates is True, name
  for name in ('sngan_cifar10', 'sngan_stl10', 'sngan_celeba', 'cgan_pd_cifar10'):
    assert config_files.load(name).data.random_flip is False, name
  # StudioGAN's SAGAN.yaml sets the networks and the loss only; the rest is
  # src/config.py's defaults: Adam 2e-4 (0.5, 0.999), 5 D steps, batch 64, flips.
  studio = config_files.load('sagan_cifar10:studiogan')
  for opt in (studio.optim.g, studio.optim.d):
    assert (opt.learning_rate, opt.b1, opt.b2, opt.eps) == (2e-4, 0.5, 0.999, 1e-6)
  assert (studio.train.n_critic, studio.train.batch_size, studio.train.num_steps) == (5, 64,
                                                                                     100000)
  assert studio.data.random_flip and studio.train.ema_decay == 0
  assert studio.model == config_files.load('sagan_cifar10').model
  config_check.validate(studio)
  studio_smoke = config_files.load('sagan_cifar10:studiogan,smoke')
  config_check.validate(studio_smoke)
  assert studio_smoke.train.n_critic > 1  # its training test runs several D steps
  # StudioGAN's CIFAR10/BigGAN-DiffAug-LeCam.yaml: lecam_lambda 0.3,
  # lecam_ema_start_iter 1000, lecam_ema_decay 0.99, total_steps 200000.
  lecam = config_files.load('biggan_cifar10:diffaug,lecam')
  assert (lecam.loss.lecam_weight, lecam.loss.lecam_start, lecam.loss.lecam_decay) == (
      0.3, 1000, 0.99)
  assert lecam.train.num_steps == 200000 and lecam.augment.policy
  assert config_files.load('biggan_cifar10').loss.lecam_weight == 0
  # Zhao et al. 2020's FID-10k (DiffAugment-biggan-cifar/inception_tf.py, train=False):
  # 10k samples against CIFAR-10's 10k test images, for :diffaug and the :data=P
  # variants they are compared with; the plain config keeps StudioGAN's protocol.
  for name, examples in (('biggan_cifar10:diffaug', 0), ('biggan_cifar10:data=10', 5000),
                         ('biggan_cifar10:diffaug,data=20', 10000)):
    config = config_files.load(name)
    assert (config.eval.reference_split, config.eval.num_samples,
            config.eval.num_reference) == ('test', 10000, 10000), name
    assert config.data.train_examples == examples, name
  assert config_files.load('biggan_cifar10').eval.reference_split == ''
  config_check.validate(config_files.load('biggan_cifar10:lecam,smoke'))
  # StudioGAN's CIFAR10/BigGAN-CR.yaml (apply_cr, cr_lambda 10, cr_aug_type 'cr') and
  # BigGAN-ICR.yaml (apply_bcr, real_lambda 10, fake_lambda 10, apply_zcr, radius 0.05,
  # g_lambda 0.5, d_lambda 20, bcr_aug_type 'bcr'); 'cr' / 'bcr' is src/utils/cr.py's
  # apply_cr_aug: random_flip(x, 0.5), random_translation(x, 1 / 8) with reflect padding.
  assert augment.CR_POLICY == 'flip,reflect_translation'
  base = config_files.load('biggan_cifar10')
  for variant, weights in (('cr', (10.0, 0.0, 0.0, 0.0)), ('icr', (10.0, 10.0, 20.0, 0.5))):
    config = config_files.load(f'biggan_cifar10:{variant}')
    assert (config.loss.bcr_real_weight, config.loss.bcr_fake_weight, config.loss.zcr_d_weight,
            config.loss.zcr_g_weight) == weights, variant
    assert config.loss.zcr_radius == 0.05 and config.augment.translation_ratio == 1 / 8
    assert config.augment.bcr_policy == augment.CR_POLICY and not config.augment.policy
    # Only the loss differs from BigGAN.yaml (the yaml files differ in LOSS and AUG only).
    assert config.model == base.model and config.optim == base.optim
    assert config.train == base.train and config.data == base.data, variant
    config_check.validate(config)
  with pytest.raises(errors.ConfigError, match='choose one of :cr and :icr'):
    config_files.load('biggan_cifar10:cr,icr')
  for name in ('semi_supervised_svhn', 'semi_supervised_cifar10'):
    assert config_files.load(name).loss.d_adversarial_weight == 0.5, name
    assert config_files.load(f'{name}:supervised_only').loss.d_adversarial_weight == 0, name
