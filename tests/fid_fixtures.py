"""Shared by the metrics tests: where the FID parity fixtures live, and their weights.

The fixtures (pytorch-fid / torch-fidelity reference outputs, random FID
Inception weights) are in ../shared/fixtures/fid_inception beside the
repository; $GAN_JAX_FID_FIXTURES overrides the folder. See its README.md. Without
them the parity tests skip, unless $GAN_JAX_REQUIRE_FID_FIXTURES is set (CI).
"""

import importlib.util
import os
from pathlib import Path

import pytest

FIXTURES = Path(os.environ.get('GAN_JAX_FID_FIXTURES') or
                Path(__file__).resolve().parents[2] / 'shared' / 'fixtures' / 'fid_inception')
AVAILABLE = (FIXTURES / 'README.md').is_file()
# CI sets this: there the parity tests must run, not skip.
if os.environ.get('GAN_JAX_REQUIRE_FID_FIXTURES') and not AVAILABLE:
  raise RuntimeError(f'GAN_JAX_REQUIRE_FID_FIXTURES is set but the FID fixtures are not at '
                     f'{FIXTURES}: put ../shared beside the repository or set '
                     'GAN_JAX_FID_FIXTURES.')
needs_fixtures = pytest.mark.skipif(
    not AVAILABLE, reason=f'FID fixtures not found at {FIXTURES} (set GAN_JAX_FID_FIXTURES)')


def make_state_dict(seed=0):
  """The fixtures' random pytorch-fid state dict (472 float32 arrays, torch names)."""
  spec = importlib.util.spec_from_file_location('fid_make_weights', FIXTURES / 'make_weights.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.make_state_dict(seed)
