"""Imports run one way, down the layers of compare/__init__.py's LAYERS (cli -> run -> report -> analysis ->
results -> workloads -> engine contract), and no module imports itself back through others (lazy imports
inside functions count too)."""

import ast
from pathlib import Path

import pytest

from compare import LAYERS as TOP_DOWN

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parent.parent
LAYERS = {
    name: (len(TOP_DOWN) - index, prefixes) for index, (name, prefixes) in enumerate(TOP_DOWN)
}  # higher rank: higher


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> tuple[int, str]:
    if module == "compare":  # compare/__init__.py: the map itself, imported by nothing in the harness
        return len(TOP_DOWN) + 1, "the layer map"
    for name, (rank, prefixes) in LAYERS.items():
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank, name
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def project_modules() -> dict[str, Path]:
    """Every module; a package's __init__ only where it holds code (engines/__init__.py is the registry)."""
    files = [p for package in ("engines", "workloads", "compare") for p in (ROOT / package).rglob("*.py")]
    return {module_name(p): p for p in files if p.name != "__init__.py" or p.read_text().strip()}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every project module that `path` imports, at top level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found


def test_every_import_goes_down_or_sideways_never_up():
    modules = project_modules()
    upward = []
    for module, path in modules.items():
        rank, layer = layer_of(module)
        for target in imports_of(path, modules) - {module}:
            target_rank, target_layer = layer_of(target)
            if target_rank > rank:
                upward.append(f"{module} ({layer}) imports {target} ({target_layer})")
    assert upward == []


def test_no_module_imports_itself_back_through_others():
    modules = project_modules()
    graph = {m: imports_of(p, modules) - {m} for m, p in modules.items()}
    cycles = []

    def visit(module, stack):
        for target in graph[module]:
            if target in stack:
                cycles.append(" -> ".join([*stack[stack.index(target) :], target]))
            elif target not in done:
                visit(target, [*stack, target])
        done.add(module)

    done: set[str] = set()
    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    assert cycles == []


def test_the_layer_check_sees_an_upward_import(tmp_path):
    """The check itself can fail: a lower module that imports the CLI is caught."""
    fake = tmp_path / "fake.py"
    fake.write_text("def f():\n    from compare.cli.main import main\n")
    assert imports_of(fake, project_modules()) == {"compare.cli.main"}
    assert layer_of("compare.cli.main")[0] > layer_of("compare.analysis.metrics")[0]


def test_compare_shows_its_layers_at_a_glance():
    """Whoever opens compare/ sees the layers: each a package whose __init__ says what it owns and may import."""
    entries = sorted(p.name for p in (ROOT / "compare").iterdir() if p.name != "__pycache__")
    packages = [p for p in (ROOT / "compare").iterdir() if (p / "__init__.py").exists()]
    assert len(entries) <= 9 and len(packages) == 6
    for package in packages:
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc and "May import" in doc, package
    listed = {prefix for _, prefixes in TOP_DOWN for prefix in prefixes}
    assert {f"compare.{p.name}" for p in packages} <= listed
