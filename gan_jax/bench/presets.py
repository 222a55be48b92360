"""The models the benchmarks time, as configs: `model_config(model, batch=...)`.

  dcgan      DCGAN 64x64 RGB as the PyTorch DCGAN example (`jax_config`; the default)
  resnet     SNGAN-32: `configs/sngan_cifar10.py` (torch_mimicry's CIFAR-10 SNGAN)
  sagan      SAGAN-32: `configs/sagan_cifar10.py` (StudioGAN's CIFAR-10 SAGAN)
  biggan     BigGAN-32: `configs/biggan_cifar10.py` (StudioGAN's CIFAR-10 BigGAN)
  biggan128  BigGAN-128: `configs/biggan_imagenet128.py` (StudioGAN's ImageNet BigGAN)
  CONFIG     any other config name or file (`gan_jax.main --list_configs`), e.g.
             `cgan_pd_cifar10`, `toy_ring` (the MLP family), `semi_supervised_digits`

Used by the throughput benchmark (`throughput_runners.JaxRunner`), the memory
benchmark and the device check. A variant 'DTYPE[/KERNELS]' picks the compute
dtype (`model.dtype`) and, on CPU, the convolution kernels
(`parallel.cpu_conv_kernels`).
"""

from gan_jax import config_files
from gan_jax import defaults
from gan_jax import errors
from gan_jax import models
from gan_jax import parallel

RESOLUTION = 64
CHANNELS = 3
Z_DIM = 100

JAX_DTYPES = ('float32', 'bfloat16')
MODELS = ('dcgan', 'resnet', 'sagan', 'biggan', 'biggan128')


def parse_jax_variant(variant):
  """'DTYPE' or 'DTYPE/KERNELS' -> (compute dtype, config.parallel.cpu_conv_kernels).

  Raises:
    ConfigError: for an unknown dtype or kernel name.
  """
  dtype, _, kernels = variant.partition('/')
  kernels = kernels or parallel.DEFAULT_CPU_CONV_KERNELS
  if dtype not in JAX_DTYPES or kernels not in parallel.CPU_CONV_KERNELS:
    raise errors.ConfigError(
        f'unknown gan_jax variant {variant!r}: use DTYPE or DTYPE/KERNELS with DTYPE in '
        f'{list(JAX_DTYPES)} and KERNELS in {list(parallel.CPU_CONV_KERNELS)}, '
        'e.g. float32 or float32/xla_default')
  return dtype, kernels


# The zoo models are the shipped configs' networks and training settings, so a
# benchmark times exactly what `python -m gan_jax.main --config=NAME` trains.
ZOO_CONFIGS = {'resnet': 'sngan_cifar10', 'sagan': 'sagan_cifar10', 'biggan': 'biggan_cifar10',
               'biggan128': 'biggan_imagenet128'}


def _config_model(model, variant):
  """A config file's networks and training (ZOO_CONFIGS, or a config name), in `variant`."""
  dtype, kernels = parse_jax_variant(variant)
  try:
    config = config_files.load(ZOO_CONFIGS.get(model, model))
  except KeyError as e:
    raise errors.ConfigError(f'{model!r} is not one of the benchmark models {list(MODELS)}, '
                             f'and {str(e).strip(chr(34) + chr(39))}') from None
  config.parallel.cpu_conv_kernels = kernels
  config.model.dtype = dtype
  return config


def model_config(model, *, batch, variant='float32', width=0):
  """The config a benchmark times for `model` (see the module docstring).

  Args:
    model: one of MODELS, or a config name / file whose model and training are timed.
    batch: global batch size (of each D update).
    variant: 'DTYPE[/KERNELS]' (see `parse_jax_variant`).
    width: > 0 sets ngf = ndf = width; 0 keeps the reference widths (DCGAN: 64).

  Raises:
    ConfigError: for an unknown model or variant.
  """
  if model == 'dcgan':
    return jax_config(width or 64, batch, variant)
  config = _config_model(model, variant)
  config.train.batch_size = batch
  if width:
    # A config whose family sizes itself otherwise (an MLP) would time the same network
    # at every width.
    if not models.reads_field(config.model.name, 'ngf'):
      raise errors.ConfigError(
          f'--widths sets model.ngf / ndf, which the {config.model.name} family of {model!r} '
          'does not read (its widths are model.hidden): leave --widths out.')
    config.model.update(dict(ngf=width, ndf=width))
  return config


def jax_config(width, batch, variant='float32'):
  """The default config at 64x64 RGB with the PyTorch DCGAN example's settings.

  Args:
    width: ngf = ndf.
    batch: global batch size.
    variant: 'DTYPE[/KERNELS]' (see `parse_jax_variant`): the model compute
      dtype ('float32' or 'bfloat16') and, optionally, the CPU convolution
      kernels ('eigen', the default, or 'xla_default').

  Returns:
    A ConfigDict for `state.create_state` / `step.make_train_step`.
  """
  dtype, kernels = parse_jax_variant(variant)
  config = defaults.get_config()
  config.parallel.cpu_conv_kernels = kernels
  config.model.update(dict(resolution=RESOLUTION, channels=CHANNELS, z_dim=Z_DIM,
                           ngf=width, ndf=width, dtype=dtype))
  config.train.batch_size = batch
  config.train.ema_decay = 0.0  # the PyTorch example keeps no EMA
  # The PyTorch example runs G forward once per iteration and its G update
  # back-propagates through that same fake batch: the same algorithm here.
  config.train.reuse_fake = True
  return config
