"""Tests of gan_jax.models.biggan: BigGAN as PyTorch-StudioGAN's `big_resnet`.

Parameter counts are read off the reference implementations (never computed with
our code). Compiling, not running, is what these tiny models cost on a CPU, so the
behaviour tests share one small conditional model with numpy-drawn variables and a
few compiled passes, and shape tests use `jax.eval_shape` (tracing only).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import defaults
from gan_jax import errors
from gan_jax import models
from gan_jax.models import biggan

NUM_CLASSES = 5
Z_DIM = 16          # 4 chunks of 4 at 32 px (3 G blocks + the linear layer)
BATCH = 4


def model_config(**overrides):
  """config.model of a small conditional 32 px BigGAN; `overrides` replace fields."""
  config = defaults.get_config().model
  config.update(dict(name='biggan', resolution=32, channels=3, ngf=8, ndf=8, z_dim=Z_DIM,
                     num_classes=NUM_CLASSES, shared_dim=8,
                     d_norm='none', spectral_norm=True, g_spectral_norm=True))
  config.update(overrides)
  return config


def random_variables(module, *args, seed=0):
  """Variables in the shapes `module.init` makes, drawn with numpy (no compiles).

  BatchNorm statistics are 0 / 1, spectral-norm sigmas 1, attention gammas 0.5 (so
  the attention path is live); every other leaf is N(0, 0.3^2) (scales N(1, 0.3^2)).
  """
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *args, train=False))
  rng = np.random.default_rng(seed)
  constants = {"['mean']": 0.0, "['var']": 1.0, "/sigma']": 1.0, "['gamma']": 0.5}

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    for suffix, value in constants.items():
      if name.endswith(suffix):
        return jnp.full(leaf.shape, value, jnp.float32)
    offset = 1.0 if name.endswith("['scale']") else 0.0
    return jnp.asarray(offset + 0.3 * rng.normal(size=leaf.shape), jnp.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def fast_jit(fn):
  """jax.jit with XLA's backend optimisation off.

  These tiny models run in microseconds; compiling is what costs, and level 0 halves
  it (one compiled graph is also far cheaper than eager op-by-op compiles).
  """
  return jax.jit(fn, compiler_options={'xla_backend_optimization_level': 0})


class Small:
  """A small conditional 32 px BigGAN (`model_config()`) with numpy variables and
  compiled forward passes shared by the tests of this module."""

  def __init__(self):
    self.generator, self.discriminator = models.build(model_config())
    self.z = jax.random.normal(jax.random.key(1), (BATCH, Z_DIM))
    self.labels = jnp.arange(BATCH, dtype=jnp.int32) % NUM_CLASSES
    self.g_vars = random_variables(self.generator, self.z, self.labels, seed=0)
    self.d_vars = random_variables(
        self.discriminator, jnp.zeros((BATCH, 32, 32, 3)), self.labels, seed=1)
    # (outputs, updated collections); eval passes also return batch_stats (to show
    # they stay put) and D's eval pass its sown intermediates.
    self.g_train = fast_jit(lambda v, z, y: self.generator.apply(
        v, z, y, train=True, mutable=['batch_stats']))
    self.g_eval = fast_jit(lambda v, z, y: self.generator.apply(
        v, z, y, train=False, mutable=['batch_stats']))
    self.d_train = fast_jit(lambda v, x, y: self.discriminator.apply(
        v, x, y, train=True, mutable=['batch_stats']))
    self.d_eval = fast_jit(lambda v, x, y: self.discriminator.apply(
        v, x, y, train=False, mutable=['batch_stats', 'intermediates']))


@pytest.fixture(scope='module')
def small():
  return Small()


# ---- parameter counts vs the references ---------------------------------------------
# Read off by instantiating StudioGAN's `src/models/big_resnet.py` (commit 947b35e,
# 2023-08-06) with `utils.ops` as in the repo and `utils.misc` stubbed, MODULES as
# `apply_g_sn = apply_d_sn = True` (snconv2d / snlinear / sn_embedding,
# ConditionalBatchNorm2d), ReLU, and summing `p.numel()` over `parameters()`.


def test_cifar10_param_counts_match_studiogan():
  # src/configs/CIFAR10/BigGAN.yaml: img_size 32, g/d_conv_dim 96, z_dim 80,
  # g_shared_dim 128, attn_g_loc [2], attn_d_loc [1], cBN + PD, num_classes 10.
  config = model_config(ngf=96, ndf=96, z_dim=80, shared_dim=128, num_classes=10,
                        attention_resolution=16)
  assert models.count_params(config) == (9_416_196, 2_415_170)


def test_imagenet128_param_counts_match_studiogan_and_biggan_pytorch():
  # src/configs/ImageNet/BigGAN-256.yaml: img_size 128, conv_dim 96, z_dim 120,
  # g_shared_dim 128, attn_g_loc [4], attn_d_loc [1], num_classes 1000. BigGAN-PyTorch
  # (BigGAN.py, G_ch = D_ch = 96, dim_z 120, shared_dim 128, hier, G_attn = D_attn
  # '64', n_classes 1000) gives the same two numbers.
  config = model_config(resolution=128, ngf=96, ndf=96, z_dim=120, shared_dim=128,
                        num_classes=1000, attention_resolution=64)
  assert models.count_params(config) == (70_433_988, 87_982_370)


def test_unconditional_param_counts_match_studiogan():
  # src/configs/CIFAR10/BigGAN-Uncond.yaml: as BigGAN.yaml with g/d_cond_mtd 'W/O'
  # (G's conditional BNs see only the z chunks; no D embedding).
  config = model_config(ngf=96, ndf=96, z_dim=80, num_classes=0)
  assert models.count_params(config) == (8_825_092, 2_413_250)


# ---- shapes, ranges, gradients ---------------------------------------------------------


@pytest.mark.parametrize('resolution', biggan.resolutions())
def test_shapes_at_every_resolution(resolution):
  z_dim = 2 * (len(biggan.G_CHANNELS[resolution]))   # num_blocks + 1 chunks of 2
  generator, discriminator = models.build(model_config(resolution=resolution, z_dim=z_dim))
  z = jnp.zeros((2, z_dim))
  labels = jnp.zeros((2,), jnp.int32)

  def forward():
    images, _ = generator.init_with_output(jax.random.key(0), z, labels, train=False)
    logits, _ = discriminator.init_with_output(jax.random.key(1), images, labels, train=False)
    return images, logits

  images, logits = jax.eval_shape(forward)
  assert images.shape == (2, resolution, resolution, 3) and images.dtype == jnp.float32
  assert logits.shape == (2,) and logits.dtype == jnp.float32


def test_forward_backward_finite_and_output_in_range(small):
  def loss(g_params, d_params):
    images, _ = small.generator.apply({**small.g_vars, 'params': g_params}, 3.0 * small.z,
                                      small.labels, train=True, mutable=['batch_stats'])
    logits, _ = small.discriminator.apply({**small.d_vars, 'params': d_params}, images,
                                          small.labels, train=True, mutable=['batch_stats'])
    return jnp.mean(logits), images

  grad_fn = fast_jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
  (_, images), grads = grad_fn(small.g_vars['params'], small.d_vars['params'])
  assert images.shape == (BATCH, 32, 32, 3) and images.dtype == jnp.float32
  assert float(jnp.min(images)) >= -1.0 and float(jnp.max(images)) <= 1.0
  assert float(jnp.max(jnp.abs(images))) > 0.1
  leaves = jax.tree.leaves(grads)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  assert all(float(jnp.max(jnp.abs(g))) > 0 for g in leaves)


def test_block_init_orthogonal_kernels_and_unit_bn_statistics():
  # One G block (the whole G's init compiles for long; its structure is traced above).
  block = biggan.GBlock(16)
  variables = fast_jit(lambda key: block.init(
      key, jnp.zeros((2, 4, 4, 8)), jnp.zeros((2, 3)), train=False))(jax.random.key(0))
  kernel = np.asarray(variables['params']['conv2']['kernel'])   # 3x3, 16 -> 16 channels
  matrix = kernel.reshape(-1, kernel.shape[-1])                  # [9 * 16, 16]
  np.testing.assert_allclose(matrix.T @ matrix, np.eye(16), atol=1e-5)
  np.testing.assert_array_equal(variables['params']['conv2']['bias'], 0.0)
  stats = variables['batch_stats']['bn1']['bn']
  np.testing.assert_array_equal(stats['mean'], 0.0)
  np.testing.assert_array_equal(stats['var'], 1.0)


@pytest.mark.parametrize('features,downsample', [(8, True), (6, False), (4, False)])
def test_a_later_dblock_sees_only_relu_of_its_input(features, downsample):
  # StudioGAN's DiscBlock rectifies its input in place (nn.ReLU(inplace=True)), so its
  # shortcut (1x1 conv when pooling or widening, else identity) sees relu(x) as the
  # convs do: the block's output cannot depend on x's negative entries. The first
  # ('optimized') block has no ReLU before its first conv, so it must.
  x = np.random.default_rng(6).standard_normal((2, 4, 4, 4)).astype(np.float32)
  for first, same in ((False, True), (True, False)):
    block = biggan.DBlock(features, downsample=downsample, first=first)
    run = fast_jit(lambda x, v, block=block: block.apply(v, x, train=False))
    variables = fast_jit(lambda key, block=block: block.init(key, x, train=False))(
        jax.random.key(1))
    raw, rectified = run(x, variables), run(np.maximum(x, 0), variables)
    assert np.allclose(raw, rectified, atol=1e-6) == same, (first, features, downsample)


def test_attention_sits_at_the_configured_side(small):
  # 32 px, side 16: after G block 1 (ngf * 4 = 32 channels) and D block 0 (ndf * 2 = 16).
  assert small.g_vars['params']['attention']['o']['kernel'].shape == (1, 1, 16, 32)
  assert small.d_vars['params']['attention']['o']['kernel'].shape == (1, 1, 8, 16)
  generator, discriminator = models.build(model_config(attention_resolution=0))
  assert 'attention' not in random_variables(generator, small.z, small.labels)['params']
  assert 'attention' not in random_variables(
      discriminator, jnp.zeros((BATCH, 32, 32, 3)), small.labels)['params']


# ---- conditioning ------------------------------------------------------------------------


@pytest.fixture(scope='module')
def linear_outputs(small):
  """Compiled z -> {path: output} of G's linear layer and every conditional-BN gain / bias."""
  names = {'sn_linear0', 'sn_gain', 'sn_bias'}

  def capture(z):
    _, state = small.generator.apply(
        small.g_vars, z, small.labels, train=False, mutable=['intermediates'],
        capture_intermediates=lambda mdl, method: mdl.name in names and method == '__call__')
    flat = jax.tree_util.tree_leaves_with_path(state['intermediates'])
    return {jax.tree_util.keystr(path): value for path, value in flat}

  return fast_jit(capture)


@pytest.mark.parametrize('chunk', [0, 1, 2, 3])
def test_hierarchical_z_chunk_reaches_only_its_block(small, linear_outputs, chunk):
  before = linear_outputs(small.z)
  size = Z_DIM // 4
  after = linear_outputs(small.z.at[:, chunk * size:(chunk + 1) * size].add(1.0))
  assert len(before) == 1 + 3 * 4   # linear0 + 3 blocks x 2 BNs x (gain, bias)
  changed = {path for path in before if not np.array_equal(before[path], after[path])}
  if chunk == 0:
    assert changed == {path for path in before if 'linear0' in path}
  else:
    block = f"['block{chunk - 1}']"
    assert changed == {path for path in before if path.startswith(block)}
    assert len(changed) == 4


def test_labels_change_generator_and_projection_discriminator(small):
  other = (small.labels + 1) % NUM_CLASSES
  images, _ = small.g_eval(small.g_vars, small.z, small.labels)
  other_images, _ = small.g_eval(small.g_vars, small.z, other)
  assert float(jnp.max(jnp.abs(other_images - images))) > 1e-3
  logits, _ = small.d_eval(small.d_vars, images, small.labels)
  other_logits, _ = small.d_eval(small.d_vars, images, other)
  assert float(jnp.max(jnp.abs(other_logits - logits))) > 1e-3


def test_discriminator_sows_pooled_features(small):
  x = jax.random.uniform(jax.random.key(4), (BATCH, 32, 32, 3), minval=-1, maxval=1)
  _, state = small.d_eval(small.d_vars, x, small.labels)
  (features,) = state['intermediates']['features']
  assert features.shape == (BATCH, 16) and features.dtype == jnp.float32
  assert float(jnp.min(features)) >= 0.0   # sum-pooled ReLU outputs
  assert 'class_logits' not in state['intermediates']


def test_acgan_head_sows_class_logits_and_ignores_labels():
  _, discriminator = models.build(model_config(d_cond='acgan'))
  x = jnp.zeros((BATCH, 32, 32, 3))

  def forward():
    d_vars = discriminator.init(jax.random.key(0), x, train=False)
    return discriminator.apply(d_vars, x, train=False, mutable=['intermediates']), d_vars

  (logits, state), d_vars = jax.eval_shape(forward)
  assert logits.shape == (BATCH,)
  assert state['intermediates']['class_logits'][0].shape == (BATCH, NUM_CLASSES)
  assert 'embedding' not in d_vars['params']


def test_conditional_generator_needs_labels(small):
  with pytest.raises(ValueError, match='labels'):
    jax.eval_shape(lambda: small.generator.apply(small.g_vars, small.z, train=False))


# ---- spectral norm and BatchNorm state -------------------------------------------------


def _paths(tree, word):
  return {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(tree)
          if word in jax.tree_util.keystr(p)}


def test_every_weight_matrix_is_spectrally_normalised(small):
  for variables, unnormalised in ((small.g_vars, 1), (small.d_vars, 0)):  # G's shared embedding
    matrices = [x for x in jax.tree.leaves(variables['params']) if x.ndim >= 2]
    assert len(_paths(variables['batch_stats'], '/sigma')) == len(matrices) - unnormalised


@pytest.mark.parametrize('net', ['generator', 'discriminator'])
def test_state_updates_in_train_mode_only(small, net):
  images, _ = small.g_eval(small.g_vars, small.z, small.labels)
  train, evaluate, variables, inputs = {
      'generator': (small.g_train, small.g_eval, small.g_vars, small.z),
      'discriminator': (small.d_train, small.d_eval, small.d_vars, images)}[net]
  stats = variables['batch_stats']
  _, trained = train(variables, inputs, small.labels)
  _, evaluated = evaluate(variables, inputs, small.labels)
  jax.tree.map(np.testing.assert_array_equal, evaluated['batch_stats'], stats)
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), stats, trained['batch_stats'])
  flat = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_leaves_with_path(changed)}
  # Every power-iteration vector u and every running mean moves (their partners sigma
  # and var may stay put by chance: sigma starts at 1, var can stay 1).
  updated = [p for p in flat if p.endswith(("/u']", "['mean']"))]
  assert len(updated) == len([p for p in flat if p.endswith(("/sigma']", "['var']"))])
  assert all(flat[p] for p in updated)


def test_bn_axis_name_synchronises_statistics(small):
  synced, _ = models.build(model_config(), bn_axis_name='data')
  images, stats = small.g_train(small.g_vars, small.z, small.labels)

  def per_shard(z, labels):
    return synced.apply(small.g_vars, z, labels, train=True, mutable=['batch_stats'])

  halves = lambda a: a.reshape((2, a.shape[0] // 2) + a.shape[1:])
  images_2, stats_2 = fast_jit(jax.vmap(per_shard, axis_name='data'))(
      halves(small.z), halves(small.labels))
  np.testing.assert_allclose(images_2.reshape(images.shape), images, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(b[0], a, atol=1e-5), stats, stats_2)


# ---- config checks ------------------------------------------------------------------------


@pytest.mark.parametrize('field,value,match', [
    ('resolution', 48, 'model.resolution'),
    ('attention_resolution', 32, 'model.attention_resolution'),
    ('d_cond', 'hinge', 'model.d_cond'),
    ('z_dim', 18, 'model.z_dim'),
    ('bottom_width', 6, 'model.bottom_width'),
    ('pack', 2, 'model.pack'),
    ('shared_dim', -1, 'model.shared_dim'),
    # What the networks normalise is fixed: asking for something else is refused, not ignored.
    ('spectral_norm', False, r"model.spectral_norm=True.*\(got spectral_norm=False\)"),
    ('g_spectral_norm', False, r'\(got g_spectral_norm=False\)'),
    ('d_norm', 'batch', r"model.d_norm='none'.*\(got d_norm='batch'\)"),
    ('g_norm', 'none', r"\(got g_norm='none'\)"),
])
def test_bad_config_raises_config_error(field, value, match):
  with pytest.raises(errors.ConfigError, match=match):
    models.build(model_config(**{field: value}))


def test_bfloat16_compute_keeps_float32_params_and_outputs():
  generator, discriminator = models.build(model_config(dtype='bfloat16'))
  z, labels = jnp.zeros((2, Z_DIM)), jnp.zeros((2,), jnp.int32)

  def forward():
    g_vars = generator.init(jax.random.key(0), z, labels, train=False)
    images = generator.apply(g_vars, z, labels, train=False)
    d_vars = discriminator.init(jax.random.key(1), images, labels, train=False)
    return g_vars, images, discriminator.apply(d_vars, images, labels, train=False)

  g_vars, images, logits = jax.eval_shape(forward)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(g_vars))
  assert images.dtype == jnp.float32 and logits.dtype == jnp.float32
