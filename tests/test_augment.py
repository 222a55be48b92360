"""Tests of gan_jax.augment: DiffAugment ops and policies, consistency regularisation's T.

Expected values come from the definitions in the module docstring, written out
with numpy here: color's parameters are recovered in closed form from the
output of structured inputs, translations from coordinate-coded images, and
cutout's rectangle from the zeros of an all-ones image; the bounds use
round-half-up of ratio * size, as the reference `int(size * ratio + 0.5)`.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from gan_jax import augment
from gan_jax.errors import ConfigError

KEY = jax.random.key(0)
FULL = 'color,translation,cutout'
SIZES = [(8, 8), (32, 16)]
# 20 * 0.125 = 2.5 and 9 * 0.5 = 4.5: round half up gives 3 and 5 (half-even
# would give 2 and 4), and cutout's side is odd, in each axis in turn.
ODD_SIZES = SIZES + [(20, 9)]
ODD_CUTOUT_SIZES = ODD_SIZES + [(9, 20)]
# One batch size per image size, so that tests share compiled functions: the
# file's run time is mostly XLA compiles (threefry alone takes ~0.2 s).
BATCH = 2048

# Everything runs jitted (and so checks that the ops trace): un-jitted, every
# primitive is compiled on its own, tens of seconds for one policy on 2 cores.
_color = jax.jit(augment.color)
_translation = jax.jit(augment.translation, static_argnames='ratio')
_cutout = jax.jit(augment.cutout, static_argnames='ratio')
_augment = jax.jit(augment.augment, static_argnames='policy')
_flip = jax.jit(augment.flip)
_reflect = jax.jit(augment.reflect_translation, static_argnames='ratio')


@functools.partial(jax.jit, static_argnums=0)
def _vjp(op, x, g):
  """The input gradient of sum(op(x, KEY) * g): the transpose of op applied to g."""
  _, vjp = jax.vjp(lambda v: op(v, KEY), x)
  return vjp(g)[0]


def _bound(ratio, size):
  """round(ratio * size), rounding halves up as the reference does."""
  return int(math.floor(ratio * size + 0.5))


def _color_input(batch):
  """The same 2x2 RGB image in every sample: pixel means and channel spreads all differ."""
  image = np.array([[[-0.5, 0.0, 0.5], [0.2, 0.4, 0.9]],
                    [[-0.8, -0.6, -0.1], [0.1, 0.3, -0.5]]], np.float32)
  return np.broadcast_to(image, (batch,) + image.shape).copy()


def _color_params(x, y):
  """Recovers brightness b, saturation s and contrast c per sample from y = color(x).

  With m_px the channel mean of each pixel and m the image mean, the module's
  definitions compose to
    y = s c (x - m_px(x)) + c (m_px(x) - m(x)) + m(x) + b,
  so b = m(y) - m(x), c is the gain of the pixel means about the image mean, and
  s c the gain of the within-pixel deviations (least squares over pixels).
  """
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  b = y.mean(axis=(1, 2, 3)) - x.mean(axis=(1, 2, 3))
  px_x = x.mean(axis=3) - x.mean(axis=(1, 2, 3))[:, None, None]
  px_y = y.mean(axis=3) - y.mean(axis=(1, 2, 3))[:, None, None]
  c = (px_x * px_y).sum(axis=(1, 2)) / (px_x ** 2).sum(axis=(1, 2))
  dev_x = x - x.mean(axis=3, keepdims=True)
  dev_y = y - y.mean(axis=3, keepdims=True)
  sc = (dev_x * dev_y).sum(axis=(1, 2, 3)) / (dev_x ** 2).sum(axis=(1, 2, 3))
  return b, sc / c, c


def _color_map(x, b, s, c):
  """The documented affine map of color for per-sample parameters, in float64."""
  x = np.asarray(x, np.float64)
  b, s, c = (np.asarray(v)[:, None, None, None] for v in (b, s, c))
  m_px = x.mean(axis=3, keepdims=True)
  m = x.mean(axis=(1, 2, 3), keepdims=True)
  return s * c * (x - m_px) + c * (m_px - m) + m + b


def _coordinate_image(batch, height, width, channels):
  """Pixel values 1, 2, 3, ... (channel fastest), so each value names its source position."""
  image = 1.0 + np.arange(height * width * channels, dtype=np.float32)
  image = image.reshape(height, width, channels)
  return np.broadcast_to(image, (batch, height, width, channels)).copy()


def _recovered_shifts(y):
  """(dy, dx) per sample of a translated coordinate image: y[i, j] = x[i - dy, j - dx]."""
  y = np.asarray(y)
  _, _, width, channels = y.shape
  shifts = []
  for sample in y:
    i, j = np.argwhere(sample[..., 0] != 0)[0]
    source_i, source_j = divmod(int(sample[i, j, 0] - 1) // channels, width)
    shifts.append((i - source_i, j - source_j))
  return np.array(shifts)


def _np_shift(image, dy, dx):
  """out[i, j] = image[i - dy, j - dx] where that is inside, 0 elsewhere."""
  h, w = image.shape[:2]
  out = np.zeros_like(image)
  out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = (
      image[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)])
  return out


# --- color --------------------------------------------------------------------------


@pytest.fixture(scope='module')
def color_samples():
  x = _color_input(BATCH)
  return x, np.asarray(_color(jnp.asarray(x), KEY))


def test_color_is_the_documented_affine_map(color_samples):
  x, y = color_samples
  np.testing.assert_allclose(y, _color_map(x, *_color_params(x, y)), atol=1e-5)


def test_color_brightness_shift_has_mean_zero_and_range_half(color_samples):
  b, _, _ = _color_params(*color_samples)
  assert b.min() >= -0.5 - 1e-5 and b.max() <= 0.5 + 1e-5
  assert b.min() < -0.45 and b.max() > 0.45
  # U[-0.5, 0.5): the standard error of the mean of 2048 draws is 0.0064.
  assert abs(b.mean()) < 0.03
  assert abs(np.mean(b < 0) - 0.5) < 0.05


def test_color_saturation_factor_in_zero_two(color_samples):
  _, s, _ = _color_params(*color_samples)
  assert s.min() >= -1e-4 and s.max() <= 2 + 1e-4
  assert s.min() < 0.1 and s.max() > 1.9
  assert abs(s.mean() - 1.0) < 0.06


def test_color_contrast_factor_in_half_to_one_and_half(color_samples):
  _, _, c = _color_params(*color_samples)
  assert c.min() >= 0.5 - 1e-4 and c.max() <= 1.5 + 1e-4
  assert c.min() < 0.55 and c.max() > 1.45
  assert abs(c.mean() - 1.0) < 0.03


def test_color_parameters_are_independent(color_samples):
  b, s, c = _color_params(*color_samples)
  correlations = np.corrcoef(np.stack([b, s, c]))[np.triu_indices(3, 1)]
  assert np.all(np.abs(correlations) < 0.1), correlations


def test_color_gradient_is_the_transposed_affine_map(color_samples):
  x, y = color_samples
  _, s, c = _color_params(x, y)  # the same key and batch give the same parameters
  g = np.random.default_rng(0).normal(size=x.shape).astype(np.float32)
  grad = _vjp(augment.color, jnp.asarray(x), jnp.asarray(g))
  # The map is built from channel and image means (self-adjoint), so its transpose
  # is the same map without the offset b.
  np.testing.assert_allclose(grad, _color_map(g, 0.0 * s, s, c), atol=1e-5)


# --- translation --------------------------------------------------------------------


@pytest.mark.parametrize('height,width', ODD_SIZES)
def test_translation_moves_a_pixel_at_most_the_bound_both_ways(height, width):
  x = np.zeros((BATCH, height, width, 3), np.float32)
  x[:, height // 2, width // 2, :] = 1.0
  y = np.asarray(_translation(jnp.asarray(x), KEY))[..., 0]
  assert np.all(np.count_nonzero(y, axis=(1, 2)) == 1)
  _, rows, cols = np.nonzero(y)
  dy, dx = rows - height // 2, cols - width // 2
  for shift, bound in ((dy, _bound(0.125, height)), (dx, _bound(0.125, width))):
    values, counts = np.unique(shift, return_counts=True)
    np.testing.assert_array_equal(values, np.arange(-bound, bound + 1))
    expected = BATCH / (2 * bound + 1)  # uniform: counts within ~4 standard deviations
    assert np.all(np.abs(counts - expected) < 4.5 * np.sqrt(expected)), counts


@pytest.mark.parametrize('height,width', SIZES)
def test_translation_is_a_zero_filled_shift(height, width):
  x = _coordinate_image(BATCH, height, width, 3)
  y = np.asarray(_translation(jnp.asarray(x), KEY))
  shifts = _recovered_shifts(y)
  assert np.abs(shifts[:, 0]).max() <= _bound(0.125, height)
  assert np.abs(shifts[:, 1]).max() <= _bound(0.125, width)
  expected = np.stack([_np_shift(xi, dy, dx) for xi, (dy, dx) in zip(x, shifts)])
  np.testing.assert_array_equal(y, expected)


def test_translation_ratio_sets_the_bound():
  height, width = SIZES[1]
  x = np.zeros((BATCH, height, width, 3), np.float32)
  x[:, height // 2, width // 2, :] = 1.0
  y = np.asarray(_translation(jnp.asarray(x), KEY, ratio=0.25))[..., 0]
  _, rows, cols = np.nonzero(y)
  assert set(rows - height // 2) == set(range(-8, 9))
  assert set(cols - width // 2) == set(range(-4, 5))


def test_translation_gradient_is_the_shifted_back_upstream_gradient():
  height, width = SIZES[1]
  x = _coordinate_image(BATCH, height, width, 3)
  shifts = _recovered_shifts(_translation(jnp.asarray(x), KEY))
  g = np.random.default_rng(1).normal(size=x.shape).astype(np.float32)
  grad = np.asarray(_vjp(augment.translation, jnp.asarray(x), jnp.asarray(g)))
  expected = np.stack([_np_shift(gi, -dy, -dx) for gi, (dy, dx) in zip(g, shifts)])
  np.testing.assert_array_equal(grad, expected)


# --- cutout -------------------------------------------------------------------------


@pytest.mark.parametrize('height,width', ODD_CUTOUT_SIZES)
def test_cutout_zeroes_one_rectangle_of_the_stated_size_or_its_clipped_part(height, width):
  rng = np.random.default_rng(2)
  x = rng.uniform(0.1, 1.0, size=(BATCH, height, width, 3)).astype(np.float32)
  y = np.asarray(_cutout(jnp.asarray(x), KEY))
  side_y, side_x = _bound(0.5, height), _bound(0.5, width)
  zero = y == 0
  # Every channel of a pixel is cut or none; the rest is untouched.
  assert np.all(zero.all(axis=3) == zero.any(axis=3))
  np.testing.assert_array_equal(y[~zero], x[~zero])
  full = clipped = 0
  for hole in zero[..., 0]:
    rows, cols = np.nonzero(hole.any(axis=1))[0], np.nonzero(hole.any(axis=0))[0]
    n_rows, n_cols = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    assert hole.sum() == n_rows * n_cols  # a solid rectangle
    assert n_rows <= side_y and n_cols <= side_x  # never more than the square
    for n, side, first, last, size in ((n_rows, side_y, rows[0], rows[-1], height),
                                       (n_cols, side_x, cols[0], cols[-1], width)):
      if n < side:  # clipped: it must end at a border and keep at least half its side
        assert first == 0 or last == size - 1
        assert n >= math.ceil(side / 2)
    if n_rows == side_y and n_cols == side_x:
      full += 1
    else:
      clipped += 1
  assert full > BATCH // 5 and clipped > BATCH // 5


def test_cutout_clips_at_all_four_borders_alike():
  # Side 4 of 8, centres 0..8 (uniform): a hole clipped at the first border covers
  # lines 0-1 or 0-2 (centres 0, 1), at the last border 5-7 or 6-7 (centres 7, 8).
  x = np.ones((BATCH, 8, 8, 3), np.float32)
  hole = np.asarray(_cutout(jnp.asarray(x), KEY))[..., 0] == 0
  for lines in (hole.any(axis=2), hole.any(axis=1)):  # rows, then columns
    first = lines[:, 0] & ~lines[:, 3]
    last = lines[:, 7] & ~lines[:, 4]
    assert abs(first.mean() - 2 / 9) < 0.04 and abs(last.mean() - 2 / 9) < 0.04


def test_cutout_gradient_is_the_masked_upstream_gradient():
  x = np.ones((BATCH,) + SIZES[1] + (3,), np.float32)
  kept = np.asarray(_cutout(jnp.asarray(x), KEY)) != 0
  g = np.random.default_rng(3).normal(size=x.shape).astype(np.float32)
  grad = _vjp(augment.cutout, jnp.asarray(x), jnp.asarray(g))
  np.testing.assert_array_equal(grad, np.where(kept, g, 0.0))


def test_fill_is_written_where_translation_and_cutout_remove_content():
  # Content > 0 everywhere: the filled pixels are exactly those the zero fill leaves at 0,
  # and they hold -1 there; the other pixels are untouched by the fill value.
  height, width = SIZES[1]
  x = jnp.asarray(_coordinate_image(BATCH, height, width, 3))
  for op in (augment.translation, augment.cutout):
    zero_filled = np.asarray(op(x, KEY))
    black_filled = np.asarray(op(x, KEY, fill=-1.0))
    removed = zero_filled == 0
    assert 0 < removed.mean() < 1
    np.testing.assert_array_equal(black_filled[removed], -1.0)
    np.testing.assert_array_equal(black_filled[~removed], zero_filled[~removed])
  through_policy = augment.augment(x, KEY, 'translation', fill=-1.0)
  np.testing.assert_array_equal(through_policy,
                                augment.translation(x, jax.random.fold_in(KEY, 0), fill=-1.0))


def test_fill_leaves_the_gradient_unchanged():
  x = jnp.asarray(_coordinate_image(BATCH, *SIZES[1], 3))
  g = jnp.asarray(np.random.default_rng(4).normal(size=x.shape).astype(np.float32))
  for op in (augment.translation, augment.cutout):
    black = lambda images, k, op=op: op(images, k, fill=-1.0)
    np.testing.assert_array_equal(_vjp(black, x, g), _vjp(op, x, g))


# --- flip and reflect_translation (consistency regularisation's T) -------------------


def _np_reflect_shift(image, dy, dx):
  """out[i, j] = image[i - dy, j - dx] of the image extended by numpy's 'reflect' padding."""
  h, w = image.shape[:2]
  padded = np.pad(image, ((h - 1, h - 1), (w - 1, w - 1), (0, 0)), mode='reflect')
  return padded[h - 1 - dy:2 * h - 1 - dy, w - 1 - dx:2 * w - 1 - dx]


def test_flip_mirrors_about_half_of_the_images_and_keeps_the_others():
  x = _coordinate_image(BATCH, 8, 6, 3)
  y = np.asarray(_flip(jnp.asarray(x), KEY))
  mirrored = np.all(y == x[:, :, ::-1], axis=(1, 2, 3))
  kept = np.all(y == x, axis=(1, 2, 3))
  assert np.all(mirrored ^ kept)  # each image is one or the other, never mixed
  assert abs(mirrored.mean() - 0.5) < 4.5 * np.sqrt(0.25 / BATCH)


def test_flip_gradient_is_the_upstream_gradient_mirrored_back():
  x = _coordinate_image(BATCH, 8, 6, 3)
  mirrored = np.all(np.asarray(_flip(jnp.asarray(x), KEY)) == x[:, :, ::-1], axis=(1, 2, 3))
  g = np.random.default_rng(13).normal(size=x.shape).astype(np.float32)
  grad = np.asarray(_vjp(augment.flip, jnp.asarray(x), jnp.asarray(g)))
  np.testing.assert_array_equal(grad, np.where(mirrored[:, None, None, None], g[:, :, ::-1], g))


@pytest.mark.parametrize('height,width', ODD_SIZES)
def test_reflect_translation_is_a_reflection_padded_shift_with_translations_draw(height, width):
  # The same key draws the same shifts as 'translation' (read off its zero-filled
  # output), so each sample must equal numpy's reflect-padded shift by them.
  x = _coordinate_image(BATCH, height, width, 3)
  shifts = _recovered_shifts(_translation(jnp.asarray(x), KEY))
  y = np.asarray(_reflect(jnp.asarray(x), KEY))
  expected = np.stack([_np_reflect_shift(xi, dy, dx) for xi, (dy, dx) in zip(x, shifts)])
  np.testing.assert_array_equal(y, expected)
  bounds = (_bound(0.125, height), _bound(0.125, width))
  for axis, bound in enumerate(bounds):
    np.testing.assert_array_equal(np.unique(shifts[:, axis]), np.arange(-bound, bound + 1))


def test_reflect_translation_gradient_sends_the_upstream_gradient_to_the_sources():
  height, width = SIZES[1]
  x = _coordinate_image(BATCH, height, width, 3)
  sources = np.asarray(_reflect(jnp.asarray(x), KEY)).astype(np.int64) - 1  # flat index + 1
  g = np.random.default_rng(14).normal(size=x.shape).astype(np.float32)
  grad = np.asarray(_vjp(augment.reflect_translation, jnp.asarray(x), jnp.asarray(g)))
  expected = np.zeros((BATCH, height * width * 3), np.float64)
  for b in range(BATCH):
    np.add.at(expected[b], sources[b].ravel(), g[b].ravel())
  np.testing.assert_allclose(grad.reshape(BATCH, -1), expected, atol=1e-5)
  assert np.any(expected != g.reshape(BATCH, -1))  # some pixels are shown twice


def test_reflect_translation_refuses_a_shift_that_needs_two_reflections():
  x = jnp.zeros((2, 8, 8, 3))
  for ratio in (0.94, 1.0):  # round(0.94 * 8) = 8: more than the 7 one reflection covers
    with pytest.raises(ConfigError, match=r'ratio below 0\.9375'):
      augment.reflect_translation(x, KEY, ratio=ratio)
  assert augment.reflect_translation(x, KEY, ratio=0.93).shape == x.shape  # round(7.44) = 7


def test_cr_policy_is_flip_then_reflect_translation():
  x = jnp.asarray(_coordinate_image(16, 8, 8, 3))
  expected = _reflect(_flip(x, jax.random.fold_in(KEY, 0)), jax.random.fold_in(KEY, 1))
  np.testing.assert_array_equal(_augment(x, KEY, policy=augment.CR_POLICY), expected)


# --- policies -----------------------------------------------------------------------


SMALL = (16, 8, 8, 3)  # the batch shape of the policy tests below


def _small_images(seed):
  return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, SMALL), jnp.float32)


def test_empty_policy_is_the_identity():
  x = _small_images(4)
  assert augment.augment(x, KEY, '') is x
  assert augment.augment(x, KEY, '  ') is x
  assert augment.parse_policy('') == ()


def test_parse_policy_keeps_order_and_ignores_spaces():
  assert augment.parse_policy('cutout, color ,translation') == ('cutout', 'color', 'translation')
  assert augment.parse_policy(('color', 'color')) == ('color', 'color')


@pytest.mark.parametrize('policy,bad', [('color,mirror', "'mirror'"), ('colour', "'colour'"),
                                        ('color,,cutout', 'empty name')])
def test_unknown_policy_names_raise_with_the_known_names(policy, bad):
  for call in (lambda: augment.parse_policy(policy),
               lambda: augment.augment(jnp.zeros((1, 8, 8, 3)), KEY, policy)):
    with pytest.raises(ConfigError) as info:
      call()
    message = str(info.value)
    assert bad in message and 'config.augment.policy' in message
    for name in ('color', 'translation', 'cutout', 'flip', 'reflect_translation'):
      assert name in message.split('known:')[1]
  assert issubclass(ConfigError, ValueError)


_OPS = {'color': _color, 'translation': _translation, 'cutout': _cutout, 'flip': _flip,
        'reflect_translation': _reflect, FULL: functools.partial(_augment, policy=FULL)}


def test_policy_op_i_uses_key_folded_with_i():
  x = _small_images(5)
  expected = _cutout(_translation(_color(x, jax.random.fold_in(KEY, 0)),
                                  jax.random.fold_in(KEY, 1)), jax.random.fold_in(KEY, 2))
  np.testing.assert_allclose(_augment(x, KEY, policy=FULL), expected, atol=1e-6)


def test_probability_gates_each_op_of_each_image_independently():
  # ADA's gating: op i of image b is applied when its coin (from op i's key folded with
  # the gate's constant) is below p. With p = 0.3 and two ops, 49% of the images keep
  # both untouched, 9% get both; cutout alone is recognisable by its zeroed square.
  n, p = 4000, 0.3
  x = jnp.ones((n, 8, 8, 1), jnp.float32)
  out = np.asarray(augment.augment(x, KEY, 'cutout,cutout', probability=p))
  changed = np.any(out != 1.0, axis=(1, 2, 3))
  stderr = math.sqrt(p * (1 - p) / n)
  untouched = 1 - np.mean(changed)
  assert abs(untouched - (1 - p) ** 2) < 5 * math.sqrt((1 - p) ** 2 * (1 - (1 - p) ** 2) / n)
  # One op: the images it was applied to are the ungated op's, the others untouched.
  ungated = np.asarray(augment.augment(x, KEY, 'cutout'))
  gated = np.asarray(augment.augment(x, KEY, 'cutout', probability=p))
  applied = np.any(gated != 1.0, axis=(1, 2, 3))
  assert abs(np.mean(applied) - p) < 5 * stderr
  np.testing.assert_array_equal(gated[applied], ungated[applied])
  np.testing.assert_array_equal(gated[~applied], np.asarray(x)[~applied])
  # p = 1 is the ungated policy, p = 0 the identity; p may be traced.
  np.testing.assert_array_equal(augment.augment(x, KEY, 'cutout', probability=1.0), ungated)
  np.testing.assert_array_equal(
      jax.jit(lambda q: augment.augment(x, KEY, 'cutout', probability=q))(jnp.float32(0.0)), x)


def test_gated_ops_pass_the_gradient_where_they_were_skipped():
  x = _small_images(6)
  g = jnp.asarray(np.random.default_rng(7).normal(size=SMALL), jnp.float32)
  skipped = np.asarray(_vjp(lambda y, k: augment.augment(y, k, FULL, probability=0.0), x, g))
  np.testing.assert_allclose(skipped, g)
  applied = np.asarray(_vjp(lambda y, k: augment.augment(y, k, FULL, probability=1.0), x, g))
  np.testing.assert_allclose(applied, _vjp(functools.partial(augment.augment, policy=FULL), x, g),
                             rtol=1e-5, atol=1e-6)  # (float rounding of the color op)


def test_gradient_reaches_the_input_through_the_whole_policy():
  # Each op's own gradient is checked exactly above; this checks they compose.
  x = _small_images(6)
  g = jnp.asarray(np.random.default_rng(7).normal(size=SMALL), jnp.float32)
  grad = np.asarray(_vjp(functools.partial(augment.augment, policy=FULL), x, g))
  assert np.all(np.isfinite(grad))
  assert np.all(np.abs(grad).sum(axis=(1, 2, 3)) > 0)  # every sample gets some
  assert np.mean(grad != 0) > 0.3  # cutout removes at most a quarter of the pixels


@pytest.mark.parametrize('policy', list(_OPS))
def test_fixed_key_is_deterministic_and_keys_differ(policy):
  x = _small_images(8)
  op = _OPS[policy]
  first = np.asarray(op(x, jax.random.key(3)))
  np.testing.assert_array_equal(first, op(x, jax.random.key(3)))
  assert not np.array_equal(first, op(x, jax.random.key(4)))


# Distinct outputs expected at least, for 16 copies of one image: color's
# parameters are continuous; translation has 9 shifts and cutout 81 positions
# on 8x8, so repeats happen (about 7 and 15 distinct on average); flip has 2 outcomes.
@pytest.mark.parametrize('policy,distinct', [('color', 16), ('translation', 4), ('cutout', 8),
                                             ('flip', 2), ('reflect_translation', 4)])
def test_samples_of_one_batch_get_different_parameters(policy, distinct):
  image = np.random.default_rng(9).uniform(-1, 1, SMALL[1:]).astype(np.float32)
  x = jnp.asarray(np.broadcast_to(image, SMALL))
  y = np.asarray(_OPS[policy](x, KEY)).reshape(SMALL[0], -1)
  assert len(np.unique(y, axis=0)) >= distinct


def _per_device(images, key):
  return augment.augment(images, jax.random.fold_in(key, jax.lax.axis_index('data')), FULL)


def _expected_per_device(x, n):
  return np.concatenate([_augment(s, jax.random.fold_in(KEY, i), policy=FULL)
                         for i, s in enumerate(jnp.split(x, n))])


def _device_batch(seed):
  """8 device slices of SMALL (so the per-slice reference reuses a compiled policy)."""
  shape = (8 * SMALL[0],) + SMALL[1:]
  return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, shape), jnp.float32)


def test_vmap_with_axis_name_gives_each_slice_its_own_parameters():
  x = _device_batch(10)
  mapped = jax.jit(jax.vmap(_per_device, in_axes=(0, None), axis_name='data'))
  y = np.asarray(mapped(x.reshape((8,) + SMALL), KEY)).reshape(x.shape)
  np.testing.assert_allclose(y, _expected_per_device(x, 8), atol=1e-6)
  # Same images on two slices, different keys: different outputs.
  same = jnp.concatenate([x[:SMALL[0]]] * 8).reshape((8,) + SMALL)
  y = mapped(same, KEY)
  assert not np.allclose(y[0], y[1])


def test_shard_map_over_eight_devices_matches_per_slice_calls():
  assert jax.device_count() == 8
  mesh = jax.make_mesh((8,), ('data',), axis_types=(jax.sharding.AxisType.Auto,))
  x = _device_batch(11)
  mapped = jax.jit(jax.shard_map(_per_device, mesh=mesh, in_specs=(P('data'), P()),
                                 out_specs=P('data')))
  np.testing.assert_allclose(mapped(x, KEY), _expected_per_device(x, 8), atol=1e-6)


def test_one_sample_one_channel_non_square():
  # 3 channels, 8x8 and 32x16 are covered above.
  shape = (1, 32, 16, 1)
  x = jnp.asarray(np.random.default_rng(12).uniform(-1, 1, shape), jnp.float32)
  y = _augment(x, KEY, policy=FULL)
  assert y.shape == shape and y.dtype == jnp.float32
  assert np.all(np.isfinite(y))
  assert not np.allclose(y, x)
