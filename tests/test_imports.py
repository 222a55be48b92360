"""The package's import order (DESIGN.md): every import goes down the layers, so no
module imports one that imports it (directly or through others)."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / 'gan_jax'

# DESIGN.md's order, top (0) to bottom; a top-level module or subpackage imports only
# from layers below its own (function-level imports included).
LAYERS = (
    ('main', 'bench', 'evaluate'),
    ('train', 'sample', 'classify'),
    ('config_check', 'cli'),
    ('periodic', 'workdir', 'metrics', 'standing_stats', 'langevin'),
    ('step', 'state', 'checkpoint', 'data'),
    ('objectives',),
    ('models', 'optim', 'writers', 'ema'),
    ('parallel', 'losses', 'penalties', 'augment', 'config_files', 'preemption', 'distributed'),
    ('defaults',),
    ('errors',),
)
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}


def _unit(path):
  """'train' for gan_jax/train.py, 'metrics' for anything in gan_jax/metrics/."""
  return path.relative_to(PACKAGE).parts[0].removesuffix('.py')


def _imported_units(tree):
  for node in ast.walk(tree):
    # The package imports absolutely: a relative import would hide from this scan.
    assert not (isinstance(node, ast.ImportFrom) and node.level), ast.unparse(node)
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      parts = node.module.split('.')
      if parts[0] != 'gan_jax':
        continue
      if len(parts) > 1:
        yield parts[1]
      else:  # from gan_jax import train, step
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.Import):
      for alias in node.names:
        parts = alias.name.split('.')
        if parts[0] == 'gan_jax' and len(parts) > 1:
          yield parts[1]


def import_edges():
  """{(importer, imported)} between the package's top-level units."""
  edges = set()
  for path in PACKAGE.rglob('*.py'):
    if path.name == '__init__.py' and path.parent == PACKAGE:
      continue
    unit = _unit(path)
    for imported in _imported_units(ast.parse(path.read_text())):
      if imported != unit:
        edges.add((unit, imported))
  return edges


def test_every_unit_has_a_layer():
  units = {_unit(p) for p in PACKAGE.iterdir()
           if (p.suffix == '.py' and p.name != '__init__.py') or (p / '__init__.py').exists()}
  assert units == set(LEVEL), (sorted(units - set(LEVEL)), sorted(set(LEVEL) - units))


def test_imports_go_down_the_layers():
  edges = import_edges()
  assert ('train', 'step') in edges and ('cli', 'config_files') in edges  # the scan sees imports
  upward = sorted((a, b) for a, b in edges if LEVEL[b] <= LEVEL[a])
  assert not upward, f'imports that do not go down (DESIGN.md): {upward}'
