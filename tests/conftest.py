"""Test set-up: 8 fake CPU devices (before JAX starts) and shared helpers."""

import os
import sys
import tempfile

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
_flags = os.environ.get('XLA_FLAGS', '')
if '--xla_force_host_platform_device_count' not in _flags:
  _flags += ' --xla_force_host_platform_device_count=8'
os.environ['XLA_FLAGS'] = _flags.strip()

# One persistent XLA compilation cache for the test runs and the processes they start:
# many tests (and their `python -m gan_jax.main` subprocesses), the two workers of each
# suite (`-n 2`) and the fast and slow suites compile the same small programs, which XLA then
# compiles once. Entries are keyed by the program, JAX version and flags, so a stale
# entry is never used. A size cap makes JAX evict the least recently used entries and
# take a file lock (the `filelock` test extra) around every read and write, so one
# process never reads an entry another is still writing. (The folder's name is new
# with the cap: JAX's eviction fails on entries written without one.) A user's own
# JAX_COMPILATION_CACHE_DIR wins, and is used as it is.
CACHE_LIMIT_BYTES = 2 << 30
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = os.path.join(
      tempfile.gettempdir(), f'gan_jax_test_cache_{os.getuid()}')
  os.environ.setdefault('JAX_COMPILATION_CACHE_MAX_SIZE', str(CACHE_LIMIT_BYTES))
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.3')

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

import pytest  # noqa: E402

from tests.compile_flags import FAST_COMPILE_XLA_FLAG  # noqa: E402


def pytest_configure(config):
  """The slow suite (`-m slow`) compiles with `FAST_COMPILE_XLA_FLAG`.

  It is a few dozen large programs (zoo steps in float32, bfloat16 and with remat;
  whole runs), each compiled once and run a few steps: without LLVM's optimisation
  it took 7:01 instead of 9:34 with an empty compilation cache (2026-12-05). The
  fast suite runs more than it compiles and keeps the default. JAX reads XLA_FLAGS
  when it first uses a device, which no test module does at import.
  """
  flags = os.environ['XLA_FLAGS']
  if config.getoption('markexpr') == 'slow' and '--xla_backend_optimization_level' not in flags:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    assert not xla_bridge.backends_are_initialized(), 'JAX started before XLA_FLAGS was set'
    os.environ['XLA_FLAGS'] = f'{flags} {FAST_COMPILE_XLA_FLAG}'


@pytest.fixture(scope='session', autouse=True)
def _temporary_files_in_the_session_folder(tmp_path_factory):
  """Points `tempfile` at this session's pytest folder, which pytest prunes.

  Some libraries leave temporary folders behind: `tfds.builder` of a dataset that
  is not prepared (every mock-data and missing-data test) makes an empty one for
  metadata it would copy from GCS and never removes it. Subprocesses keep the
  system default.
  """
  previous = tempfile.tempdir
  tempfile.tempdir = str(tmp_path_factory.mktemp('tempfile'))
  yield
  tempfile.tempdir = previous


@pytest.fixture(scope='session')
def repo_root():
  """Absolute path of the repository root."""
  return REPO_ROOT
