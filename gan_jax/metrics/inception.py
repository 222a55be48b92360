"""Inception features of images, computed as pytorch-fid computes them.

`extract_features(variables, images)` resizes NHWC images in [-1, 1] to 299x299
with `torch_bilinear_resize` (torch's bilinear, align_corners=False, no
antialiasing) and runs `inception_net.FIDInceptionV3`, data parallel over the
devices. The network lives in `inception_net.py`, its weights in
`inception_weights.py`.

Typical use:
  variables = inception_weights.load_weights()     # or load_weights('/path/to.pth')
  feats = extract_features(variables, images)      # images f32[N, H, W, 3] in [-1, 1]
  feats['pool3']  # f32[N, 2048]
"""

import logging
import time

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import parallel
from gan_jax.metrics import inception_net

Precision = inception_net.Precision

# Bumped whenever a change here or in the network could change the features, so
# cached reference statistics computed by an older version are not reused.
# v2: images rounded to 8 bits before the network (cached v1 reference features were not).
FEATURES_VERSION = 'pytorch-fid-0.3.0-inception-v3-pool3/v2'
# How `extract_features` resizes, for the evaluation protocol.
RESIZE_METHOD = ('torch_bilinear_resize to 299x299: F.interpolate(mode="bilinear", '
                 'align_corners=False), no antialiasing, as pytorch-fid')


QUANTIZE_METHOD = ('real and generated images rounded to 8 bits first, floor(255 (x + 1) / 2 '
                   '+ 0.5) clipped to 0..255, as saved PNGs (pytorch-fid) and StudioGAN\'s '
                   'quantize_images')


def quantize_8_bit(images):
  """Images in [-1, 1] rounded to the 256 levels of an 8-bit image, still in [-1, 1].

  Args:
    images: f[N, H, W, C], nominally in [-1, 1] (values outside are clipped).

  Returns:
    np.float32[N, H, W, C] in [-1, 1]: u8 / 127.5 - 1 with
    u8 = clip(floor(255 (x + 1) / 2 + 0.5), 0, 255), so an image decoded from 8
    bits comes back unchanged.
  """
  levels = np.clip(np.floor(255.0 * (np.asarray(images, np.float64) + 1.0) / 2.0 + 0.5),
                   0.0, 255.0)
  return (levels / 127.5 - 1.0).astype(np.float32)


def _bilinear_taps(in_size, out_size):
  """torch's bilinear (align_corners=False) source taps along one axis.

  Returns:
    (i0, i1, w0, w1): int32[out] neighbour indices and float64[out] weights,
    src = (dst + 0.5) * in / out - 0.5 clamped below at 0, as in
    `F.interpolate(mode='bilinear', align_corners=False)` without antialiasing.
  """
  src = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
  src = np.maximum(src, 0.0)
  i0 = np.floor(src).astype(np.int32)
  i0 = np.minimum(i0, in_size - 1)
  i1 = np.minimum(i0 + 1, in_size - 1)
  w1 = src - i0
  return i0, i1, 1.0 - w1, w1


def torch_bilinear_resize(images, size):
  """Bilinear resize exactly as torch's `F.interpolate(..., align_corners=False)`.

  No antialiasing when shrinking (unlike `jax.image.resize` and the data
  pipeline's resize), because pytorch-fid has none and FID parity needs its pixels.

  Args:
    images: f[N, H, W, C].
    size: (out_h, out_w).

  Returns:
    f[N, out_h, out_w, C] in the input dtype.
  """
  _, h, w, _ = images.shape
  out_h, out_w = size
  if (h, w) == (out_h, out_w):
    return images  # torch's weights are exactly (1, 0) here
  dtype = images.dtype

  def along(x, axis, n_in, n_out):
    i0, i1, w0, w1 = _bilinear_taps(n_in, n_out)
    shape = [1] * x.ndim
    shape[axis] = n_out
    w0 = jnp.asarray(w0.reshape(shape), dtype)
    w1 = jnp.asarray(w1.reshape(shape), dtype)
    return w0 * jnp.take(x, i0, axis=axis) + w1 * jnp.take(x, i1, axis=axis)

  # Width first, then height: torch's per-pixel formula
  # h0 * (w0 * x00 + w1 * x01) + h1 * (w0 * x10 + w1 * x11), factorised.
  return along(along(images, 2, w, out_w), 1, h, out_h)


def _forward_fn(variables, images, precision=Precision.HIGHEST):
  """images f[B, H, W, 3] (already in the compute dtype) -> (pool3, logits)."""
  size = (inception_net.INPUT_SIZE, inception_net.INPUT_SIZE)
  return inception_net.FIDInceptionV3(precision=precision).apply(
      variables, torch_bilinear_resize(images, size))


_forward = jax.jit(_forward_fn, static_argnames=('precision',))
# On CPU, XLA's Eigen convolution kernels run this network faster than its default
# YNNPACK ones; see `parallel.cpu_compiler_options`.
_forward_cpu = jax.jit(_forward_fn, static_argnames=('precision',),
                       compiler_options=parallel.cpu_compiler_options())


def _compute_dtype(variables, images):
  """The dtype the network runs in; checks images f[N, H, W, 1 or 3] and x64."""
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f'images must be NHWC with 1 or 3 channels, got shape {images.shape}')
  if not np.issubdtype(images.dtype, np.floating):
    raise ValueError(f'images must be floats in [-1, 1], got {images.dtype}; for uint8 '
                     'pixels use images / 127.5 - 1')
  dtype = np.dtype(variables['params']['fc']['kernel'].dtype)
  if dtype == np.float64 and not jax.config.jax_enable_x64:
    raise ValueError('float64 variables need jax_enable_x64 (JAX_ENABLE_X64=1 or '
                     'jax.config.update("jax_enable_x64", True)); otherwise cast them to float32')
  if jax.config.jax_enable_x64:
    # float64 images with float32 weights run in float64, like pytorch-fid's
    # model.double(): the weights' float32 values are exact in float64.
    dtype = np.result_type(dtype, images.dtype)
  return dtype


def extract_features(variables, images, *, batch_size=64, devices=None,
                     precision=Precision.HIGHEST, quantize=False):
  """pool3 features and unbiased logits of images, computed as pytorch-fid does.

  Images are resized to 299x299 by `torch_bilinear_resize` inside the compiled
  function; batches are split over `devices` (data parallel), and the last batch
  is padded so every batch has one shape (one compilation).

  Args:
    variables: from `inception_weights.load_weights`. Their dtype is the
      compute dtype; with `jax_enable_x64` on, float64 variables or float64
      images run the network in float64 (as pytorch-fid's `model.double()`),
      otherwise it runs in float32.
    images: f[N, H, W, C] in [-1, 1], C = 3 or 1 (grey images are repeated
      over three channels), any H, W.
    batch_size: images per compiled call over all devices (rounded up to a
      multiple of the device count; smaller when N is).
    devices: devices to shard the batch over (default: all of this process's).
    precision: matmul / conv precision; HIGHEST keeps float32 parity on GPUs and
      TPUs, whose default precision rounds inputs to bfloat16 / TF32.
    quantize: round the images to 8 bits first (`quantize_8_bit`, batch by batch, so
      that no copy of the whole set is made), as the evaluation protocol does.

  Returns:
    {'pool3': np[N, 2048], 'logits': np[N, 1008]} in the compute dtype.
  """
  images = np.asarray(images)
  dtype = _compute_dtype(variables, images)
  n = images.shape[0]
  if devices is None:
    devices = jax.devices() if jax.process_count() == 1 else jax.local_devices()
  n_dev = len(devices)
  round_up = lambda v: -(-v // n_dev) * n_dev
  batch = max(min(round_up(batch_size), round_up(n)), n_dev)
  mesh = jax.sharding.Mesh(np.asarray(devices), ('data',))
  data_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  variables = jax.device_put(jax.tree.map(lambda a: np.asarray(a, dtype), variables), replicated)

  forward = _forward_cpu if parallel.all_cpu(devices) else _forward
  pool3, logits = [], []

  def collect(pending):
    (p, l), valid = pending
    pool3.append(np.asarray(p)[:valid])
    logits.append(np.asarray(l)[:valid])

  pending, last_log = None, time.monotonic()
  for start in range(0, n, batch):
    chunk = images[start:start + batch]
    chunk = (quantize_8_bit(chunk) if quantize else chunk).astype(dtype, copy=False)
    if chunk.shape[-1] == 1:
      chunk = np.repeat(chunk, 3, axis=-1)
    valid = chunk.shape[0]
    if valid < batch:  # pad with zeros; their features are dropped
      chunk = np.concatenate([chunk, np.zeros((batch - valid,) + chunk.shape[1:], dtype)])
    result = (forward(variables, jax.device_put(chunk, data_sharding), precision=precision),
              valid)
    # Dispatch is asynchronous: fetching the previous batch overlaps this one,
    # and at most two batches of outputs are on the device at a time.
    if pending is not None:
      collect(pending)
    pending = result
    if time.monotonic() - last_log > 60:
      logging.info('Inception features: %d / %d images', start, n)
      last_log = time.monotonic()
  if pending is not None:
    collect(pending)
  if not pool3:
    return {'pool3': np.zeros((0, inception_net.POOL3_DIM), dtype),
            'logits': np.zeros((0, inception_net.NUM_CLASSES), dtype)}
  return {'pool3': np.concatenate(pool3), 'logits': np.concatenate(logits)}
