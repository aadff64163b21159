"""The package graph: no import cycles, dependencies pointing one way, every module importable.

Data flows dataset -> directions -> steered generation -> judge -> agreement -> report, so
``harness`` may use ``dictionaries``, ``evals`` and ``reports``; ``reports`` may use ``evals``;
``evals`` and ``dictionaries`` use neither of the others (``dictionaries`` may use the leaf
utility module ``evals.io``).
"""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "dictionaries", "evals", "reports")
ALLOWED = {"harness": set(PACKAGES), "reports": {"reports", "evals"},
           "evals": {"evals"}, "dictionaries": {"dictionaries"}}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(path: Path, name: str, modules: dict[str, Path], top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if top_level_only and isinstance(node, ast.If):  # e.g. if TYPE_CHECKING: skip
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def test_imports__no_cycles_among_module_level_imports():
    modules = _modules()
    graph = {m: _imports(p, m, modules, top_level_only=True) for m, p in modules.items()}
    # a package's __init__ importing its own submodules is how packages work; not a cycle
    for m in graph:
        graph[m] = {t for t in graph[m] if not t.startswith(m + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_imports__dependencies_point_one_way():
    modules = _modules()
    bad = []
    for m, p in modules.items():
        pkg = m.split(".")[0]
        for t in _imports(p, m, modules, top_level_only=False):
            if t.split(".")[0] not in ALLOWED[pkg] and not (pkg == "dictionaries"
                                                            and t == "evals.io"):
                bad.append(f"{m} imports {t}")
    assert not bad, bad


def test_imports__every_module_imports_in_a_fresh_interpreter_in_sorted_order():
    names = sorted(m for m in _modules() if not m.endswith("__main__"))  # runs the CLI
    code = "import importlib\nfor n in %r:\n    importlib.import_module(n)\n" % names
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
