"""XLA_FLAGS of the test processes (no JAX import: conftest.py sets them before JAX starts).

  FAST_COMPILE_XLA_FLAG   LLVM without optimisation, for processes that compile more
                          than they run (the slow suite, the `:smoke` trainings)
  FAST_COMPILE_OPTIONS    the same as compiler options of one compiled function
                          (`tests.helpers.run_steps`: the step tests)
  subprocess_xla_flags    the flags for a process a test starts
"""

import os

# Compiles take about a third less time and the compiled code runs slower; the
# optimised HLO (fusions, memory) is the same as the default's, float32 results can
# differ from it in the last bits.
FAST_COMPILE_XLA_FLAG = '--xla_backend_optimization_level=0'
# The same for one compiled function (`jax.jit(..., compiler_options=...)`), in a
# process whose other programs keep the default.
FAST_COMPILE_OPTIONS = {'xla_backend_optimization_level': 0}


def subprocess_xla_flags(devices=None):
  """XLA_FLAGS for a process a test starts.

  Args:
    devices: fake CPU devices of that process (None: JAX's one device).

  Returns:
    This process's XLA_FLAGS (conftest.py's, with `FAST_COMPILE_XLA_FLAG` in the slow
    suite) without its device count of 8, plus `devices`' count if given.
  """
  flags = [flag for flag in os.environ.get('XLA_FLAGS', '').split()
           if not flag.startswith('--xla_force_host_platform_device_count')]
  if devices:
    flags.append(f'--xla_force_host_platform_device_count={devices}')
  return ' '.join(flags)
