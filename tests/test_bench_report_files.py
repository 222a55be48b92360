"""Tests of gan_jax.bench.report_files: a benchmark never replaces another's report."""

import json
import os

from gan_jax.bench import report_files

_MACHINE = {'cpu': 'test cpu', 'cpu_count': 2, 'jax_backend': 'cpu', 'jax_devices': 1,
            'jax_version': '0', 'python': '3', 'platform': 'test'}


def _result(command, created, rows):
  return {'command': command, 'created': created, 'machine': _MACHINE, 'rows': rows,
          'table': f'| {command} |\n'}


def _write(out, result, monkeypatch):
  monkeypatch.setattr(report_files, '_WRITTEN', set())  # as a new process
  report_files.write_result(result, str(out), json_name='bench.json', table_name='bench.md')


def test_another_commands_report_is_kept_beside_and_the_same_commands_replaced(
    tmp_path, monkeypatch):
  _write(tmp_path, _result('bench a', '2026-12-07T00:10:00', [1]), monkeypatch)
  # The same process rewrites its own report after every trial.
  report_files.write_result(_result('bench a', '2026-12-07T00:10:00', [1, 2]), str(tmp_path),
                            json_name='bench.json', table_name='bench.md')
  assert sorted(os.listdir(tmp_path)) == ['bench.json', 'bench.md']
  _write(tmp_path, _result('bench b', '2026-12-07T00:20:00', [3]), monkeypatch)
  assert sorted(os.listdir(tmp_path)) == ['bench.20261207T001000.json',
                                          'bench.20261207T001000.md', 'bench.json', 'bench.md']
  kept = json.loads((tmp_path / 'bench.20261207T001000.json').read_text())
  assert kept['command'] == 'bench a' and kept['rows'] == [1, 2]
  assert json.loads((tmp_path / 'bench.json').read_text())['rows'] == [3]
  # The same command again (e.g. resuming kept trials) replaces its report.
  _write(tmp_path, _result('bench b', '2026-12-07T00:30:00', [4]), monkeypatch)
  assert len(os.listdir(tmp_path)) == 4
  assert json.loads((tmp_path / 'bench.json').read_text())['rows'] == [4]
  # A third command: a second report of the same time gets a free name.
  (tmp_path / 'bench.json').write_text(json.dumps(_result('bench c', '2026-12-07T00:10:00', [])))
  _write(tmp_path, _result('bench d', '2026-12-07T00:40:00', [5]), monkeypatch)
  assert (tmp_path / 'bench.20261207T001000_2.json').exists()
  assert (tmp_path / 'bench.20261207T001000_2.md').exists()  # the table went with it
