"""The engine contract is declared once (engines/base.py): every member that compare/ uses of an engine, or of an
engine class, is declared there with its default, and nothing in compare/ probes an engine with hasattr/getattr."""

import ast
import re
from pathlib import Path

import pytest

from engines.base import BatchEngine, ModelSource, StreamingEngine

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parent.parent
# what holds an engine or an engine class in compare/ (a variable narrowed to one concrete class by isinstance is
# named after that class instead, e.g. `http_engine`)
ENGINE_HOLDER = re.compile(r"(^|\.)(engine|engine_class)$")
DECLARED = set(dir(StreamingEngine)) | set(dir(BatchEngine))


def _driving_modules() -> list[Path]:
    """The layers that hold engines (compare/cli, compare/run); below them only results documents travel, where
    `engine` names a string or a record's dict."""
    return sorted(p for layer in ("cli", "run") for p in (ROOT / "compare" / layer).rglob("*.py"))


def _uses() -> list[tuple[str, int, str, str]]:
    """(file, line, holder, member) for every attribute of an engine that compare/ reads, calls or sets."""
    found = []
    for path in _driving_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and ENGINE_HOLDER.search(ast.unparse(node.value)):
                found.append((str(path.relative_to(ROOT)), node.lineno, ast.unparse(node.value), node.attr))
    return found


def _probes() -> list[tuple[str, int, str]]:
    """hasattr/getattr calls in compare/ whose object is an engine or an engine class."""
    found = []
    for path in _driving_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("hasattr", "getattr")
            ):
                if node.args and ENGINE_HOLDER.search(ast.unparse(node.args[0])):
                    found.append((str(path.relative_to(ROOT)), node.lineno, ast.unparse(node)))
    return found


def test_compare_uses_only_members_the_contract_declares():
    uses = _uses()
    seen = {use[3] for use in uses}  # the scan sees the harness's calls, and the class-level checks before a build
    assert {"start", "generate", "describe", "reset_cache", "check_args", "constraint_kinds", "serves_lora"} <= seen
    undeclared = [use for use in uses if use[3] not in DECLARED]
    assert not undeclared, f"declare these in engines/base.py (Engine), with a default: {undeclared}"


def test_compare_never_probes_an_engine_for_a_member():
    assert not _probes(), "read the declared member instead; its default in engines/base.py says 'not supported'"


def test_every_engine_in_the_registry_subclasses_the_contract_and_the_model_is_a_declared_type(tmp_path):
    from engines import REGISTRY, load_engine_class
    from workloads.models import ResolvedModel

    for name in REGISTRY:
        try:
            engine_class = load_engine_class(name)
        except Exception as exc:  # an engine whose package is missing here (sglang): its class cannot be read
            assert "sglang" in name or "ollama" in name, (name, exc)
            continue
        assert StreamingEngine in engine_class.__mro__ or BatchEngine in engine_class.__mro__, name
    model = ResolvedModel("synthetic:tiny-llama3", "synthetic", tmp_path, True)
    assert isinstance(model, ModelSource)


def _declared_members() -> set[str]:
    """Every member the three contract classes declare in their own bodies (engines/base.py)."""
    names = set()
    for node in ast.parse((ROOT / "engines" / "base.py").read_text()).body:
        if isinstance(node, ast.ClassDef) and node.name in ("Engine", "StreamingEngine", "BatchEngine"):
            for item in node.body:
                if isinstance(item, ast.AnnAssign):
                    names.add(item.target.id)
                elif isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(item.name)
    return names


def test_the_architecture_docs_list_the_contract_as_the_code_declares_it():
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text[text.index("## Writing an engine") :]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    documented = {name for row in rows for name in re.findall(r"`(\w+)", row)} - {"StreamingEngine", "BatchEngine"}
    assert documented == _declared_members()


MIXINS = {"engines/vllm/sampling.py": "VLLMSampling", "engines/threads.py": "OneWorkerTelemetry"}


@pytest.mark.parametrize("path,class_name", MIXINS.items())
def test_an_engine_mixin_reads_only_members_it_or_the_contract_declares(path, class_name):
    """A mixin that reads its subclass's attributes (vLLM's `resolved`, once) can only be understood with the
    subclass open beside it."""
    tree = ast.parse((ROOT / path).read_text())
    mixin = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    own = {t.id for n in mixin.body if isinstance(n, (ast.Assign, ast.AnnAssign)) for t in _targets(n)}
    own |= {n.name for n in mixin.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    reads = {
        node.attr
        for node in ast.walk(mixin)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
    }
    assert reads - own - _declared_members() == set()


def _targets(node) -> list:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return [t for t in targets if isinstance(t, ast.Name)]


def test_an_engine_says_it_serves_http_exactly_where_it_gives_a_server_launch():
    from engines import REGISTRY, load_engine_class
    from engines.base import Engine

    for name in REGISTRY:
        try:
            engine_class = load_engine_class(name)
        except Exception:  # a package missing here (sglang, ollama)
            continue
        gives_launch = engine_class.http_server is not Engine.http_server and name != "vllm-batch"
        assert engine_class.serves_http == gives_launch, name
