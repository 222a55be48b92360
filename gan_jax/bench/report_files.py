"""Writing benchmark reports: atomic files, so a killed benchmark never leaves half a report."""

import json
import os


def write_text(path, text):
  """Writes `text` to `path` through a temporary file and a rename (never half-written)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path + '.tmp', 'w', encoding='utf-8') as f:
    f.write(text)
  os.replace(path + '.tmp', path)


def write_json(path, report):
  """Writes the JSON-serialisable `report` to `path` (indented, atomic)."""
  write_text(path, json.dumps(report, indent=1) + '\n')


def write_result(result, out_dir, *, json_name, table_name):
  """A trial benchmark's outputs: `result` as JSON and `result['table']` as markdown."""
  write_text(os.path.join(out_dir, json_name), json.dumps(result, indent=2) + '\n')
  write_text(os.path.join(out_dir, table_name), result['table'])
