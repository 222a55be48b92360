"""SAGAN (Zhang et al. 2019) as PyTorch-StudioGAN trains it (`src/configs/CIFAR10/SAGAN.yaml`).

StudioGAN's SAGAN config names no backbone, so it is its default `resnet` backbone
(`src/models/resnet.py`) with self-attention (`apply_attn`, after G block 2 and D
block 1: the 16x16 maps at 32 px), spectral norm in G and D, conditional BN in G
and a projection D (hinge loss). That backbone is `big_resnet` (`biggan.py`) with
two differences, both in how G is conditioned:

  * no hierarchical latent: all of z feeds G's linear layer;
  * no shared embedding: the conditional BNs' gain and bias are SN linear maps
    (no bias) of the one-hot label.

An unconditional SAGAN (`model.num_classes` = 0) has plain affine BatchNorm in G.
StudioGAN's CIFAR-10 settings: resolution 32, ngf = ndf = 64 (g_conv_dim /
d_conv_dim), z_dim 128, attention_resolution 16, num_classes 10.
"""

from gan_jax.models import biggan


def build(model_config, *, bn_axis_name=None, remat=False):
  """Builds the SAGAN pair from `config.model`.

  Args:
    model_config: ConfigDict with resolution, channels, z_dim, ngf, ndf, num_classes,
      d_cond, attention_resolution, bottom_width, bn_momentum, dtype
      (`shared_dim` and `hierarchical_z` are BigGAN's and not read).
    bn_axis_name: mapped axis name for synchronised BatchNorm, or None.
    remat: rematerialise every G and D block and the attention blocks.

  Returns:
    (generator, discriminator) flax modules (`biggan.Generator`, `biggan.Discriminator`).
  """
  return biggan.build_networks(model_config, shared_dim=0, hierarchical_z=False,
                               bn_axis_name=bn_axis_name, remat=remat)


def data_shape(model_config):
  """(H, W, C) of the images the model makes and scores."""
  return biggan.data_shape(model_config)
