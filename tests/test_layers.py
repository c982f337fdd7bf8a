"""Imports run one way: cli -> orchestration -> running -> analysis -> results/report -> workloads -> engine
contract, and no module imports itself back through others (lazy imports inside functions count too)."""

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parent.parent
LAYERS = {  # higher may import lower or equal, never higher
    "engine contract": (0, ("engines",)),
    "workloads": (1, ("workloads",)),
    "results/report": (2, ("compare.records", "compare.results", "compare.tables", "compare.figures", "compare.report_md")),
    "analysis": (3, ("compare.metrics", "compare.checks", "compare.summaries", "compare.overhead", "compare.fidelity",
                     "compare.comparisons", "compare.stats", "compare.cellstats", "compare.ratios", "compare.runsets",
                     "compare.verdicts", "compare.hypotheses", "compare.hypotheses_load", "compare.roofline", "compare.vs", "compare.slo", "compare.telemetry", "compare.ablation_table")),
    "running": (4, ("compare.runner", "compare.session", "compare.gpu", "compare.environment", "compare.observe",
                    "compare.search", "compare.isolate", "compare.resume")),
    "orchestration": (5, ("compare.config", "compare.orchestrate", "compare.sweep", "compare.ablations", "compare.sweep_run")),
    "cli": (6, ("compare.cli", "compare.report", "compare.anchor_vllm", "compare.__main__")),
}  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> tuple[int, str]:
    for name, (rank, prefixes) in LAYERS.items():
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank, name
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def project_modules() -> dict[str, Path]:
    """Every module; a package's __init__ only where it holds code (engines/__init__.py is the registry)."""
    files = [p for package in ("engines", "workloads", "compare") for p in (ROOT / package).glob("*.py")]
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
                cycles.append(" -> ".join([*stack[stack.index(target):], target]))
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
    fake.write_text("def f():\n    from compare.cli import main\n")
    assert imports_of(fake, project_modules()) == {"compare.cli"}
