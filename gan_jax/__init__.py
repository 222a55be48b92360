"""gan_jax: generative adversarial networks in JAX/Flax.

DESIGN.md (beside the package) maps every file to its job and states the contracts
between them; README.md has the commands.
"""

__version__ = "0.1.0"
