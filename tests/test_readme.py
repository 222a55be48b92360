"""The README's two opening commands: what CI runs, and what they name exists."""

import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[1]


def _opening_commands():
  """The one line of each of the README's first two ```sh blocks."""
  blocks = re.findall(r'```sh\n(.*?)\n```', (REPO / 'README.md').read_text(), re.S)
  assert len(blocks) >= 2 and all('\n' not in b for b in blocks[:2]), blocks[:2]
  return blocks[0], blocks[1]


def test_ci_runs_the_readme_test_line_after_its_venv():
  # .ci/run makes its own venv, then must run what the README's test line runs in the
  # venv it makes (its pip quietly).
  _, test_line = _opening_commands()
  venv = 'python3 -m venv .venv && . .venv/bin/activate && '
  assert test_line.startswith(venv)
  ci_lines = [line.replace('pip install -q ', 'pip install ')
              for line in (REPO / '.ci' / 'run').read_text().splitlines()]
  assert test_line[len(venv):] in ci_lines


def test_the_default_line_installs_and_trains_an_existing_config():
  install_line, _ = _opening_commands()
  assert install_line.startswith('python3 -m venv .venv && . .venv/bin/activate && pip install -e . && ')
  (config,) = re.findall(r'python -m gan_jax\.main --config=(\w+)$', install_line)
  assert (REPO / 'configs' / f'{config}.py').is_file()
