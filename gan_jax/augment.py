"""Differentiable augmentation (DiffAugment, and CR's flip and shift) and the bCR consistency term.

DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient
GAN Training", arXiv:2006.10738) applies the same kind of random, differentiable
transform T to every image the discriminator sees, real or fake:

  D update:  D sees T(x_real) and T(G(z))   (fresh parameters for each batch)
  G update:  D sees T(G(z)); the generator's gradient flows back through T

so D never sees an un-augmented image and G is not pushed to produce the
augmentations themselves. The caller applies `augment` inside the compiled
train step, to the real and the fake batch of each D update and to the fake
batch of the G update; the policy comes from `config.augment.policy`.

The policy is a comma-separated string of op names, applied left to right:

| name          | what it does to each image (parameters drawn per sample)              |
|---------------|------------------------------------------------------------------------|
| 'color'       | brightness x + b, b ~ U[-0.5, 0.5); then saturation (x - m_px) s + m_px, |
|               | s ~ U[0, 2), m_px the per-pixel channel mean; then contrast            |
|               | (x - m_img) c + m_img, c ~ U[0.5, 1.5), m_img the mean over H, W, C    |
| 'translation' | an integer shift of up to round(ratio * size) pixels in each axis     |
|               | (ratio 1/8), uniform over those integers, zero fill                    |
| 'cutout'      | a zeroed rectangle of round(ratio * H) x round(ratio * W) pixels      |
|               | (ratio 1/2) at a random position; it may be clipped by the border      |
| 'flip'        | mirrors the image left-right (W axis) with probability 1/2             |
| 'reflect_translation' | as 'translation' (same bound, same draw), but the uncovered    |
|               | border is the image reflected about its edge, not a fill value         |

'flip' and 'reflect_translation' are not DiffAugment ops: they are the augmentation
T of consistency regularisation (CR-GAN, Zhang et al. 2020; bCR, Zhao et al. 2021),
a random horizontal flip and a translation of up to 1/8 of the side with reflection
padding, as PyTorch-StudioGAN's `src/utils/cr.py` (`apply_cr_aug`, its 'cr' and
'bcr' augmentation types); `CR_POLICY` is that pair, for `config.augment.bcr_policy`.
StudioGAN's bound is int(ratio * size), rounded down; here it is rounded half up
like 'translation' (the same for the default ratio at 8, 16, 32, 48, 64, 128 px).

'' is the identity. The value that translation and cutout write where they remove
content is 0 as in the reference (`config.augment.fill` changes it; -1 is the black
background of the digits, which grey borders and squares would not resemble);
`config.augment.translation_ratio` (both translations) and `cutout_ratio` set the ops' sizes.
These are the ops, order, ranges and definitions of the
authors' reference code (mit-han-lab/data-efficient-gans, `DiffAugment_tf.py`,
`DiffAugment_pytorch.py`), which also works on images in [-1, 1]; "round" is
round-half-up there (`int(size * ratio + 0.5)`) and here. The outputs are not
clipped back to [-1, 1], as in the reference.

Every function is pure and traceable: `jax.jit` with a static policy, `vmap`,
and `shard_map` (nothing here calls a collective). Random parameters are drawn per
sample from `key`: they depend on the key, the batch size and the image size only,
never on the pixel values. The train step (`objectives._augment`) calls the ops one
image at a time, each with its own key split for the global batch and sliced like
z, so the augmentations do not depend on how the batch is split over devices; a
caller that passes one key to a per-device slice must fold the device index into
it, or every device draws the same parameters.
Translation and cutout select pixels with gathers and masks, so the gradient
w.r.t. the input is the upstream gradient shifted back or masked.

bCR's consistency term between D's logits on images and on their augmentations is
`losses.consistency_loss`.
"""

import math

import jax
import jax.numpy as jnp

from gan_jax.errors import ConfigError

__all__ = [
    'OPS',
    'CR_POLICY',
    'parse_policy',
    'check_config',
    'consistency_policy',
    'augment',
    'color',
    'translation',
    'cutout',
    'flip',
    'reflect_translation',
]


def _check_images(x, op):
  """Checks that x is a batch of images NHWC; shapes are static, so this costs nothing."""
  if jnp.ndim(x) != 4:
    raise ValueError(
        f'augment.{op} expects images f32[B, H, W, C], got shape {jnp.shape(x)}. '
        'Add a channel axis to greyscale images and a batch axis to single images.')


def _check_ratio(ratio, what):
  """Raises ConfigError naming `what` unless 0 <= ratio <= 1."""
  if not 0.0 <= ratio <= 1.0:
    raise ConfigError(f'{what} must be in [0, 1] (a fraction of the image side), '
                      f'got {ratio!r}.')


def _round_half_up(value):
  """Round half up, as the reference's `int(value + 0.5)` (Python's round is half-even)."""
  return int(math.floor(value + 0.5))


def _per_sample_uniforms(key, batch, count):
  """f32[count, B, 1, 1, 1]: independent U[0, 1) draws, `count` per sample.

  One draw per op rather than one per parameter: every threefry call adds
  noticeably to XLA:CPU compile time, and the draws are independent either way.
  """
  return jax.random.uniform(key, (count, batch, 1, 1, 1))


def _integers(u, low, high):
  """Maps u ~ U[0, 1) to the integers low, ..., high, each with probability 1 / (high - low + 1).

  floor(u * n) is uniform up to float32 resolution (2^-24); the minimum guards the
  one rounding case u * n == n.
  """
  n = high - low + 1
  return low + jnp.minimum(jnp.floor(u * n).astype(jnp.int32), n - 1)


def color(x, key):
  """Random brightness, then saturation, then contrast, per sample (DiffAugment 'color').

  With b ~ U[-0.5, 0.5), s ~ U[0, 2), c ~ U[0.5, 1.5) drawn independently for
  each sample:

    brightness:  x1 = x + b
    saturation:  x2 = (x1 - m_px(x1)) * s + m_px(x1),  m_px = mean over C (per pixel)
    contrast:    y  = (x2 - m_img(x2)) * c + m_img(x2), m_img = mean over H, W, C

  Saturation leaves 1-channel images unchanged (each pixel is its own mean).
  Affine in x for fixed parameters, so the gradient flows to every pixel.

  Args:
    x: f32[B, H, W, C] images, nominally in [-1, 1].
    key: a PRNG key.

  Returns:
    f32[B, H, W, C] (x's dtype), not clipped: values may leave [-1, 1].
  """
  _check_images(x, 'color')
  u = _per_sample_uniforms(key, x.shape[0], 3).astype(x.dtype)
  x = x + (u[0] - 0.5)
  pixel_mean = jnp.mean(x, axis=3, keepdims=True)
  x = (x - pixel_mean) * (u[1] * 2) + pixel_mean
  image_mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  return (x - image_mean) * (u[2] + 0.5) + image_mean


def _shift_axis(x, shift, axis, fill):
  """out[b, ..., i, ...] = x[b, ..., i - shift[b], ...] along `axis`, `fill` where out of range.

  A gather with clipped indices plus a mask rather than `jnp.roll` or dynamic
  slices: it vectorises over per-sample shifts, and its transpose (scatter-add
  of one source per target) sends the upstream gradient back exactly.
  """
  n = x.shape[axis]
  source = jnp.arange(n)[None, :] - shift[:, None]             # [B, n]
  inside = (source >= 0) & (source < n)
  shape = [x.shape[0], 1, 1, 1]
  shape[axis] = n
  source = jnp.clip(source, 0, n - 1).reshape(shape)
  gathered = jnp.take_along_axis(x, source, axis=axis, mode='clip')
  return jnp.where(inside.reshape(shape), gathered, jnp.asarray(fill, x.dtype))


def _shifts(key, batch, max_dy, max_dx):
  """int32[B] dy and dx, uniform over the integers in [-max_dy, max_dy] and [-max_dx, max_dx]."""
  u = _per_sample_uniforms(key, batch, 2).reshape(2, batch)
  return _integers(u[0], -max_dy, max_dy), _integers(u[1], -max_dx, max_dx)


def translation(x, key, *, ratio=0.125, fill=0.0):
  """Shifts each image by a random whole number of pixels, zero fill (DiffAugment 'translation').

  For each sample dy and dx are drawn uniformly from the integers in
  [-round(ratio * H), round(ratio * H)] and [-round(ratio * W), round(ratio * W)]
  (round half up, as the reference), and

    y[b, i, j, :] = x[b, i - dy, j - dx, :]  if 0 <= i - dy < H and 0 <= j - dx < W,
                    fill                     otherwise

  i.e. content moves down by dy and right by dx and the uncovered border is the
  value `fill`: by default 0 (mid-grey in [-1, 1]), as the reference pads with
  zeros; -1 is black, the background of the digits. The
  gradient w.r.t. x is the upstream gradient shifted back by (-dy, -dx), zero
  where the content left the image.

  Args:
    x: f32[B, H, W, C] images, nominally in [-1, 1].
    key: a PRNG key.
    ratio: the largest shift as a fraction of each side, in [0, 1] (Python float).
    fill: the value of the uncovered pixels (Python float).

  Returns:
    f32[B, H, W, C] (x's dtype), in the range of x and `fill`.

  Raises:
    ConfigError: ratio outside [0, 1].
  """
  _check_images(x, 'translation')
  _check_ratio(ratio, 'augment.translation: ratio')
  batch, height, width, _ = x.shape
  dy, dx = _shifts(key, batch, _round_half_up(ratio * height), _round_half_up(ratio * width))
  return _shift_axis(_shift_axis(x, dy, axis=1, fill=fill), dx, axis=2, fill=fill)


def cutout(x, key, *, ratio=0.5, fill=0.0):
  """Zeroes a random rectangle of each image (DiffAugment 'cutout'), or sets it to `fill`.

  The rectangle has side h = round(ratio * H) rows by w = round(ratio * W)
  columns (round half up). Per sample a centre row cy is drawn uniformly from
  {0, ..., H - 1} when h is odd and from {0, ..., H} when h is even (likewise cx
  with W and w), and the zeroed pixels are

    rows    cy - h // 2 <= i < cy - h // 2 + h    (intersected with [0, H))
    columns cx - w // 2 <= j < cx - w // 2 + w    (intersected with [0, W))

  in every channel. The rectangle may stick out of the image and is then clipped
  (only the part inside is zeroed), but at least ceil(h / 2) of its rows and
  ceil(w / 2) of its columns are always inside, the same at both borders. They
  become `fill`: by default 0, as the reference multiplies by a 0/1 mask. The gradient w.r.t. x
  is the upstream gradient with the zeroed pixels set to 0.

  Args:
    x: f32[B, H, W, C] images, nominally in [-1, 1].
    key: a PRNG key.
    ratio: side of the rectangle as a fraction of each side, in [0, 1] (Python float).
    fill: the value of the cut-out pixels (Python float).

  Returns:
    f32[B, H, W, C] (x's dtype), in the range of x and `fill`.

  Raises:
    ConfigError: ratio outside [0, 1].
  """
  _check_images(x, 'cutout')
  _check_ratio(ratio, 'augment.cutout: ratio')
  batch, height, width, _ = x.shape
  size_y = _round_half_up(ratio * height)
  size_x = _round_half_up(ratio * width)
  u = _per_sample_uniforms(key, batch, 2).reshape(2, batch)
  # With an even side the centre is the pixel just after the middle, so it may
  # also sit one past the last pixel: that keeps the clipping symmetric.
  top = _integers(u[0], 0, height - size_y % 2) - size_y // 2
  left = _integers(u[1], 0, width - size_x % 2) - size_x // 2
  rows = jnp.arange(height)[None, :]
  cols = jnp.arange(width)[None, :]
  in_rows = (rows >= top[:, None]) & (rows < top[:, None] + size_y)   # [B, H]
  in_cols = (cols >= left[:, None]) & (cols < left[:, None] + size_x)  # [B, W]
  hole = in_rows[:, :, None, None] & in_cols[:, None, :, None]
  return jnp.where(hole, jnp.asarray(fill, x.dtype), x)


def flip(x, key):
  """Mirrors each image left-right with probability 1/2 (CR's random flip).

  For each sample u ~ U[0, 1) is drawn and y[b] = x[b, :, ::-1, :] when u < 1/2,
  y[b] = x[b] otherwise, as StudioGAN's `random_flip(x, 0.5)`. The gradient
  w.r.t. x is the upstream gradient mirrored back for the flipped samples.

  Args:
    x: f32[B, H, W, C] images, nominally in [-1, 1].
    key: a PRNG key.

  Returns:
    f32[B, H, W, C] (x's dtype): each image or its mirror image, pixel values unchanged.
  """
  _check_images(x, 'flip')
  u = _per_sample_uniforms(key, x.shape[0], 1)[0]
  return jnp.where(u < 0.5, x[:, :, ::-1, :], x)


def _reflect_axis(x, shift, axis):
  """out[b, ..., i, ...] = x[b, ..., r(i - shift[b]), ...] along `axis`, r reflecting at the edges.

  r(k) = -k below 0 and 2 (n - 1) - k above n - 1 (the edge pixel is not
  repeated: numpy's and torch's 'reflect' padding), valid for |shift| <= n - 1.
  """
  n = x.shape[axis]
  source = jnp.abs(jnp.arange(n)[None, :] - shift[:, None])   # [B, n]
  source = jnp.where(source > n - 1, 2 * (n - 1) - source, source)
  shape = [x.shape[0], 1, 1, 1]
  shape[axis] = n
  return jnp.take_along_axis(x, source.reshape(shape), axis=axis, mode='clip')


def _reflect_bound(ratio, size, what='augment.reflect_translation'):
  """The largest shift, round(ratio * size); ConfigError unless it is < size (one reflection)."""
  bound = _round_half_up(ratio * size)
  if size > 1 and bound > size - 1:
    raise ConfigError(
        f'{what}: a shift of up to round({ratio!r} * {size}) = {bound} pixels needs '
        f'more than one reflection of a side of {size} pixels; use a ratio below '
        f'{(size - 0.5) / size:.4g} (config.augment.translation_ratio).')
  return min(bound, size - 1)


def reflect_translation(x, key, *, ratio=0.125):
  """Shifts each image by a random whole number of pixels, reflection padding (CR's translation).

  dy and dx are drawn exactly as in `translation` (the same key gives the same
  shifts), from the integers in [-round(ratio * H), round(ratio * H)] and
  [-round(ratio * W), round(ratio * W)], and

    y[b, i, j, :] = x[b, r_H(i - dy), r_W(j - dx), :],

  r_n(k) = |k| for k < n, 2 (n - 1) - k beyond: the uncovered border shows the
  image mirrored about its edge (the edge pixel not repeated), so no constant
  value appears, as StudioGAN's `random_translation` (pad 'reflect', then crop).
  The gradient w.r.t. x is the upstream gradient sent back to the source pixels
  (summed where a pixel is shown twice).

  Args:
    x: f32[B, H, W, C] images, nominally in [-1, 1].
    key: a PRNG key.
    ratio: the largest shift as a fraction of each side, in [0, 1] (Python float);
      round(ratio * side) must be below the side.

  Returns:
    f32[B, H, W, C] (x's dtype), every value one of x's.

  Raises:
    ConfigError: ratio outside [0, 1], or a shift bound not below the side.
  """
  _check_images(x, 'reflect_translation')
  _check_ratio(ratio, 'augment.reflect_translation: ratio')
  batch, height, width, _ = x.shape
  dy, dx = _shifts(key, batch, _reflect_bound(ratio, height), _reflect_bound(ratio, width))
  return _reflect_axis(_reflect_axis(x, dy, axis=1), dx, axis=2)


# name -> op(x, key); the reference's AUGMENT_FNS, with color's three steps in one
# op, and CR's two ops.
OPS = {
    'color': color,
    'translation': translation,
    'cutout': cutout,
    'flip': flip,
    'reflect_translation': reflect_translation,
}

# CR-GAN's and bCR's augmentation (StudioGAN's `apply_cr_aug`): a value for
# `config.augment.bcr_policy`.
CR_POLICY = 'flip,reflect_translation'


def parse_policy(policy, field='config.augment.policy'):
  """Splits and validates a policy string, before anything is built or traced.

  Args:
    policy: comma-separated op names, e.g. 'color,translation,cutout'; spaces
      around names are ignored; '' (or only spaces) means no augmentation. A
      tuple or list of names is accepted too (as returned here). Names may repeat.
    field: the setting the policy came from, for the messages.

  Returns:
    tuple of str, the op names in the order they are applied; () for ''.

  Raises:
    ConfigError: a name that is not in `OPS` (the message names it and the known
      ones), an empty name (e.g. 'color,,cutout'), or a policy that is not a string.
  """
  if isinstance(policy, str):
    names = tuple(name.strip() for name in policy.split(',')) if policy.strip() else ()
  elif isinstance(policy, (tuple, list)) and all(isinstance(n, str) for n in policy):
    names = tuple(policy)
  else:
    raise ConfigError(
        f'{field} must be a string such as "color,translation,cutout", got {policy!r}.')
  known = ', '.join(OPS)
  for name in names:
    if name not in OPS:
      what = 'an empty name' if not name else f'unknown name {name!r}'
      raise ConfigError(
          f'{field} {policy!r} has {what}; known: {known}. '
          'Use comma-separated names from these, or "" for no augmentation.')
  return names


def consistency_policy(augment_config):
  """bCR's augmentation T: `config.augment.bcr_policy`, or '' for the ops of `policy`."""
  return augment_config.bcr_policy or augment_config.policy


# Folded into an op's key for ADA's coins (`augment(..., probability=p)`).
_GATE = 0x61646120
# The ops with a size, and the `config.augment` field that sets it.
_RATIO_NAMES = {'translation': 'translation_ratio', 'reflect_translation': 'translation_ratio',
                'cutout': 'cutout_ratio'}


def _check_ada(augment_config):
  """ADA's fields: a target in [0, 1) (0 = off) that needs a policy to gate, an
  interval of at least one D update and a positive pace."""
  target, interval, kimg = (augment_config.ada_target, augment_config.ada_interval,
                            augment_config.ada_kimg)
  if not (isinstance(target, (int, float)) and math.isfinite(target) and 0 <= target < 1):
    raise ConfigError('config.augment.ada_target must be a number in [0, 1), the share of '
                      'augmented reals D should call real (0 = off; the paper: 0.6), got '
                      f'{target!r}.')
  if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
    raise ConfigError('config.augment.ada_interval must be an integer >= 1 (D updates between '
                      f'adjustments of p), got {interval!r}.')
  if not (isinstance(kimg, (int, float)) and math.isfinite(kimg) and kimg > 0):
    raise ConfigError('config.augment.ada_kimg must be a finite number > 0 (thousands of '
                      f'real images for p to move by 1), got {kimg!r}.')
  if target and not parse_policy(augment_config.policy):
    raise ConfigError(
        f'config.augment.ada_target={target!r} adapts how often the ops of '
        "config.augment.policy are applied, and the policy is '': set one (e.g. "
        "--config.augment.policy=translation,cutout) or ada_target to 0.")


def check_config(augment_config, *, resolution=None):
  """Checks `config.augment` (policy, fill, ratios, ADA) before anything is built.

  Args:
    augment_config: `config.augment`.
    resolution: the images' side in pixels (`config.model.resolution`), or None to
      skip the check that each named op changes images of that side.

  Raises:
    ConfigError: an unknown op name in policy or bcr_policy (see `parse_policy`),
      a fill outside [-1, 1], a ratio outside [0, 1], ADA settings out of range or
      ADA without a policy, or a policy naming
      'translation' / 'reflect_translation' / 'cutout' with a ratio that rounds to 0
      pixels at `resolution` (the op would change nothing), or 'reflect_translation'
      with a shift bound not below `resolution`.
  """
  named = set(parse_policy(augment_config.policy)) | set(
      parse_policy(augment_config.bcr_policy, 'config.augment.bcr_policy'))
  if not (math.isfinite(augment_config.fill) and -1 <= augment_config.fill <= 1):
    raise ConfigError('config.augment.fill must be a finite number in [-1, 1], the range of '
                      f'the images (0: grey, -1: black), got {augment_config.fill!r}.')
  for name in ('translation_ratio', 'cutout_ratio'):
    _check_ratio(augment_config[name], f'config.augment.{name}')
  _check_ada(augment_config)
  if resolution is None:
    return
  for op in sorted(named & set(_RATIO_NAMES)):
    ratio = augment_config[_RATIO_NAMES[op]]
    if _round_half_up(ratio * resolution) == 0:
      # A silent identity would make a run "with augmentation" one without it.
      raise ConfigError(
          f"config.augment.{_RATIO_NAMES[op]}={ratio!r} is 0 pixels at {resolution} px (round("
          f"{ratio!r} * {resolution}) = 0), so '{op}' would change nothing: raise the ratio "
          f"to at least {0.5 / resolution:.3g} or remove '{op}' from the policy.")
  if 'reflect_translation' in named:
    _reflect_bound(augment_config.translation_ratio, resolution,
                   what=f"'reflect_translation' at {resolution} px")


def augment(x, key, policy, *, translation_ratio=0.125, cutout_ratio=0.5, fill=0.0,
            probability=None):
  """Applies the ops of a DiffAugment policy in order, each with its own key.

  Op number i of the policy (counting from 0) uses `jax.random.fold_in(key, i)`,
  so appending an op leaves the parameters of the earlier ones unchanged. With a
  `probability` p each op is applied to each image with probability p and skipped
  otherwise, independently (ADA's gating, Karras et al. 2020); its coins come from
  another key (`fold_in(fold_in(key, i), _GATE)`), so the ops' parameters are those
  drawn without it.

  Args:
    x: f32[B, H, W, C] images, nominally in [-1, 1]; any B >= 1, H, W, C.
    key: a PRNG key (typed or raw). Under shard_map / pmap fold the device
      index in first, or every device draws the same parameters.
    policy: a policy string such as 'color,translation,cutout' (see
      `parse_policy`); must be static (a Python value) under `jax.jit`.
    translation_ratio: largest shift as a fraction of each side (see `translation`).
    cutout_ratio: side of the cut-out rectangle as a fraction of each side (see `cutout`).
    fill: the value translation and cutout write where they remove content (0, the
      reference's, is mid-grey in [-1, 1]; -1 is the black background of digits).
    probability: None (every op on every image) or a scalar in [0, 1], which may be
      traced (ADA's p, `objectives`).

  Returns:
    f32[B, H, W, C] augmented images; for the policy '' the input x itself.

  Raises:
    ConfigError: an unknown name in the policy (see `parse_policy`) or a ratio
      outside [0, 1].
  """
  names = parse_policy(policy)
  ratios = {'translation': {'ratio': translation_ratio, 'fill': fill},
            'reflect_translation': {'ratio': translation_ratio},
            'cutout': {'ratio': cutout_ratio, 'fill': fill}}
  for i, name in enumerate(names):
    op_key = jax.random.fold_in(key, i)
    out = OPS[name](x, op_key, **ratios.get(name, {}))
    if probability is None:
      x = out
    else:
      coins = jax.random.uniform(jax.random.fold_in(op_key, _GATE), (x.shape[0], 1, 1, 1))
      x = jnp.where(coins < probability, out, x)
  return x
