"""Helpers shared by the tests of the step, the state and the training loop."""

import copy
import os
import subprocess
import sys

import jax
import numpy as np

from configs import dcgan_digits
from gan_jax import models
from gan_jax import parallel
from gan_jax import step as step_lib
from tests.compile_flags import FAST_COMPILE_OPTIONS


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(program, timeout=120):
  """Runs `program` (Python source) in a fresh interpreter in the repository root on
  the CPU; returns the `subprocess.CompletedProcess` (text stdout / stderr)."""
  return subprocess.run([sys.executable, '-c', program], cwd=REPO, capture_output=True,
                        text=True, timeout=timeout, env=dict(os.environ, JAX_PLATFORMS='cpu'))


def tiny_config(**overrides):
  """A 32x32 DCGAN small enough for a CPU test (widths 8, batch 16)."""
  config = dcgan_digits.get_config('smoke')
  config.train.ema_decay = 0.5
  config.update_from_flattened_dict(overrides)
  return config


def random_batch(config, seed=0, n_critic=None):
  """{'images': f32[n_critic, batch, *data_shape]} uniform in [-1, 1] (+ labels if conditional)."""
  n_critic = n_critic or config.train.n_critic
  rng = np.random.default_rng(seed)
  shape = (n_critic, config.train.batch_size) + models.data_shape(config.model)
  batch = {'images': rng.uniform(-1, 1, shape).astype(np.float32)}
  if config.model.num_classes:
    batch['labels'] = rng.integers(0, config.model.num_classes, shape[:2]).astype(np.int32)
  return batch


def run_steps(config, dp, state, batches, key, *, fast_compile=True):
  """Runs the compiled step over `batches`; returns (host state, last metrics).

  With `fast_compile` on CPU devices the step compiles with `FAST_COMPILE_OPTIONS`
  (LLVM unoptimised) on top of `dp`'s options: a test runs it a few times, so its time
  is XLA's compile, which this shortens by about a third. The HLO is the same; float32
  results may differ from the default's in the last bits, so a comparison's tolerance
  must not rest on them (`fast_compile=False` for one that compares rounding-sensitive
  values at the default's precision).
  """
  if fast_compile and parallel.all_cpu(dp.mesh.devices.flat):
    dp = copy.copy(dp)
    dp.compiler_options = {**dp.compiler_options, **FAST_COMPILE_OPTIONS}
  step = dp.compile(step_lib.make_train_step(config))
  state = dp.put_state(state)
  metrics = None
  for batch in batches:
    state, metrics = step(state, dp.put_batch(batch), key)
  return jax.device_get(dp.get_state(state)), dp.get_metrics(metrics)


def max_rel_diff(a, b):
  """max |a - b| / max |b| over every leaf of two pytrees."""
  diffs = jax.tree.leaves(jax.tree.map(
      lambda x, y: float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))
                         / max(float(np.max(np.abs(np.asarray(y, np.float64)))), 1e-12)), a, b))
  return max(diffs)
