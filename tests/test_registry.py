"""The engine registry: lazy imports, plug-in classes, and errors that say what to do."""

import pytest

import engines
from engines import EngineEntry, load_engine_class
from engines.base import EngineUnavailable, UsageError, resolve_engine_args

pytestmark = pytest.mark.unit


def test_unknown_engine_lists_the_valid_ones():
    with pytest.raises(
        UsageError,
        match=r"unknown engine 'vlm'; valid: hf, http, llamacpp, null, ollama, sglang, vllm, vllm-batch "
        r"\(or package.module:Class\)",
    ):
        load_engine_class("vlm")


def test_missing_package_says_what_to_install(monkeypatch):
    entry = EngineEntry(
        "engines.null:NullEngine", ("surely_not_installed_pkg",), "pip install 'enginebench[vllm]'", "test"
    )
    monkeypatch.setitem(engines.REGISTRY, "needs-pkg", entry)
    with pytest.raises(EngineUnavailable, match=r"needs surely_not_installed_pkg: pip install 'enginebench\[vllm\]'"):
        load_engine_class("needs-pkg")


def test_user_engine_plugs_in_as_module_colon_class():
    from tests.fakes import FakeEngine

    assert load_engine_class("tests.fakes:FakeEngine") is FakeEngine
    with pytest.raises(UsageError, match="has no class 'Nope'"):
        load_engine_class("tests.fakes:Nope")
    with pytest.raises(EngineUnavailable, match="cannot import 'no_such_module_xyz'"):
        load_engine_class("no_such_module_xyz:Engine")


def test_engine_args_are_cast_to_the_defaults_types():
    defaults = {"threads": 1, "interval_ms": 1.0, "eager": False, "dtype": "auto"}
    args = resolve_engine_args("x", {"threads": "4", "interval_ms": "2.5", "eager": "true"}, defaults)
    assert args == {"threads": 4, "interval_ms": 2.5, "eager": True, "dtype": "auto"}
    with pytest.raises(UsageError, match="engine 'x' has no engine arg 'thread'; nearest: threads, eager, interval_ms"):
        resolve_engine_args("x", {"thread": "4"}, defaults)
    with pytest.raises(UsageError, match="threads='four' is not a valid int"):
        resolve_engine_args("x", {"threads": "four"}, defaults)


def test_engine_args_with_a_dict_default_parse_as_json_objects():
    defaults = {"structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True}}
    given = {"structured_outputs_config": '{"backend": "guidance", "disable_any_whitespace": false}'}
    args = resolve_engine_args("vllm", given, defaults)
    assert args["structured_outputs_config"] == {"backend": "guidance", "disable_any_whitespace": False}
    for bad in ("guidance", "[1]", "{not json"):
        with pytest.raises(UsageError, match="structured_outputs_config"):
            resolve_engine_args("vllm", {"structured_outputs_config": bad}, defaults)
