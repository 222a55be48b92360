"""gan_jax: generative adversarial networks in JAX/Flax.

Modules:
  models/     Flax linen generators and discriminators, with a name registry.
  losses.py   pure GAN losses and gradient penalties.
  state.py    the single GANState pytree that holds a whole training run.
  train.py    per-device D/G steps, state creation, and the training loop.
  parallel.py device meshes, shard_map / pmap compilation, jax.distributed start-up.
  data/       grain input pipelines (digits, TFDS, image folders, 2-D toy mixtures).
  metrics/    FID / IS / KID / precision-recall and offline proxies.
"""

__version__ = "0.1.0"
