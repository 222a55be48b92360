"""How the model families compute: the mixed-precision policy and rematerialisation.

Mixed precision (`model.dtype='bfloat16'`): parameters (and so optimiser states and
the EMA of G) stay float32; activations and every convolution and matmul of the
networks run in bfloat16, except what needs the range or the digits of float32:

  * BatchNorm / LayerNorm statistics and normalisation (`layers.batch_norm`: flax's
    float32 reductions, forced), minibatch-stddev statistics;
  * the spectral-norm power iteration: u, v and sigma come from the float32 kernel
    and are stored in float32; the layer casts the normalised kernel itself;
  * biases: `Conv` / `Dense` add a float32 bias and cast the sum, so a bias's
    gradient (a sum over every batch row and position) is accumulated in float32;
  * D's output layers (logit, class logits): float32 results (`conv_f32_output`,
    `dot_f32_output`, or float32 layers on D's float32 pooled features), and the toy
    generator's points (`OutputDense`);
  * G's output tanh, the attention softmax, losses and penalties (float32 in
    `gan_jax.losses` / `penalties`).

Rematerialisation (`config.train.remat`): `remat_call` runs a block of layers under
`nn.remat`, so the backward pass recomputes its activations from its inputs.
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

# bf16 operands, float32 accumulation and result: D's output layers, whose bf16
# results would be rounded (bf16's spacing is 0.25 at 40). Pass as
# `nn.Conv(conv_general_dilated=...)` / `nn.Dense(dot_general=...)`; a no-op in float32.
conv_f32_output = functools.partial(lax.conv_general_dilated,
                                    preferred_element_type=jnp.float32)
dot_f32_output = functools.partial(lax.dot_general, preferred_element_type=jnp.float32)


def _promote_keep_bias(inputs, kernel, bias=None, *, dtype=None):
  """flax's `promote_dtype` hook: inputs and kernel in `dtype`, the bias left float32."""
  if dtype is None:
    return inputs, kernel, bias
  cast = lambda a: None if a is None else jnp.asarray(a, dtype)
  return cast(inputs), cast(kernel), bias


class Conv(nn.Conv):
  """`nn.Conv` that adds its bias in float32, then casts the output to `dtype`.

  A bf16 bias add would sum the bias's gradient over B x H x W positions in bf16,
  which loses most of its digits; the parameters are those of `nn.Conv`.
  """
  promote_dtype: Any = _promote_keep_bias

  def __call__(self, inputs):
    y = super().__call__(inputs)
    return y if self.dtype is None else y.astype(self.dtype)


class Dense(nn.Dense):
  """`nn.Dense` that adds its bias in float32, then casts the output to `dtype` (as `Conv`)."""
  promote_dtype: Any = _promote_keep_bias

  def __call__(self, inputs):
    y = super().__call__(inputs)
    return y if self.dtype is None else y.astype(self.dtype)


class OutputDense(nn.Dense):
  """`nn.Dense` whose result is float32 whatever `dtype`: operands in `dtype`, float32
  accumulation and bias, no cast back. For outputs with no squashing after them, such
  as the toy generator's points, where bf16's spacing (0.03 at 4) would snap samples
  to a lattice as coarse as a mode."""
  promote_dtype: Any = _promote_keep_bias
  dot_general: Any = dot_f32_output


def remat_call(method, *args, remat):
  """`method(*args)`; with `remat`, its activations are recomputed in the backward pass.

  `method` is a bound method of a compact module that builds one block of layers
  (`self._block`). Under `nn.remat` the backward pass keeps only the block's inputs
  and runs the block again, trading compute for memory; the block's variables keep
  the names they have without remat, so checkpoints work either way. Arguments that
  are None, Python scalars or strings (`train`, indices, widths) are static.

  XLA:CPU merges the recomputation back into the forward pass (its CSE runs after
  it drops remat's optimisation barriers) unless the step is compiled with
  `parallel.CPU_REMAT_COMPILER_OPTIONS` (`DataParallel(remat=True)`); XLA:GPU keeps the barriers.
  """
  if not remat:
    return method(*args)
  static = tuple(i for i, a in enumerate(args, start=1)
                 if a is None or isinstance(a, (bool, int, float, str)))
  return nn.remat(method.__func__, static_argnums=static)(method.__self__, *args)
