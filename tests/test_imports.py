"""Import structure: no cycles among lps_jax modules (function-level imports included), and
config_lib stays below the data layer and parallel.py."""
import ast
import os
import pathlib
import subprocess
import sys

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / 'lps_jax'


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def import_graph():
  """{module: {lps_jax modules it imports anywhere in the file, or names in a string}}."""
  modules = {_module_name(p): p for p in PACKAGE.rglob('*.py')}
  graph = {}
  for name, path in modules.items():
    edges = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        targets = [f'{node.module}.{a.name}' if f'{node.module}.{a.name}' in modules
                   else node.module for a in node.names]
      elif isinstance(node, ast.Constant) and isinstance(node.value, str):
        targets = [node.value]          # a module imported by name (importlib, registries)
      else:
        continue
      edges.update(t for t in targets if t in modules and t != name
                   and not name.startswith(t + '.'))      # a package's own __init__
    graph[name] = edges
  return graph


def find_cycle(graph):
  state, stack = {}, []

  def visit(node):
    state[node] = 'open'
    stack.append(node)
    for child in sorted(graph[node]):
      if state.get(child) == 'open':
        return stack[stack.index(child):] + [child]
      if child not in state:
        cycle = visit(child)
        if cycle:
          return cycle
    state[node] = 'done'
    stack.pop()
    return None

  for node in sorted(graph):
    if node not in state:
      cycle = visit(node)
      if cycle:
        return cycle
  return None


def test_no_import_cycle():
  graph = import_graph()
  assert find_cycle(graph) is None, ' -> '.join(find_cycle(graph))


def test_config_lib_does_not_reach_up():
  imported = import_graph()['lps_jax.config_lib']
  assert not {m for m in imported if m.startswith('lps_jax.data') or m == 'lps_jax.parallel'}, \
      imported


def test_find_cycle_finds_one():
  assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
  assert find_cycle({'a': {'b'}, 'b': set()}) is None


def test_entry_points_leave_orbax_until_a_checkpoint_is_written():
  """orbax.checkpoint costs every process ~0.4 s of imports; a run refused on bad input never
  writes a checkpoint, so the entry points import it on first use (checkpoint._orbax). The
  run record still names its version."""
  code = ('import sys, lps_jax.main, lps_jax.vmap_sweep, lps_jax.bench, lps_jax.rundir; '
          'print(sorted(m for m in sys.modules if m.startswith("orbax"))); '
          'print(sorted(lps_jax.rundir._versions()))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       check=True, timeout=300, env={**os.environ, 'JAX_PLATFORMS': 'cpu'}).stdout
  modules, versions = out.strip().splitlines()
  assert modules == '[]', modules
  assert versions == str(sorted(['python', 'jax', 'flax', 'optax', 'orbax.checkpoint'])), versions
  from lps_jax import checkpoint  # pylint: disable=g-import-not-at-top
  assert checkpoint.ocp.StandardCheckpointer      # the module attribute still resolves
