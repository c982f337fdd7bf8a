"""Any engine knob as --engine-arg: keys and types from the engine's own signature, checked before anything is
measured (unit, on fake dataclasses and SGLang's committed field list), and for real on vLLM's CPU build."""

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Literal, Optional

import pytest

from engines.base import UsageError
from engines.engine_args import dataclass_fields, split_args
from engines.servers import cli_flags


@dataclasses.dataclass
class FakeArgs:  # a FAKE engine-args dataclass with real type objects
    max_num_seqs: int = 256
    enforce_eager: bool = False
    gpu_memory_utilization: float = 0.9
    block_size: Optional[int] = None
    scheduling_policy: Literal["fcfs", "priority"] = "fcfs"
    compilation_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    cudagraph_capture_sizes: list[int] | None = None


STRING_FIELDS = {  # the same fields as a `from __future__ import annotations` dataclass keeps them
    "max_num_seqs": "int",
    "enforce_eager": "bool",
    "gpu_memory_utilization": "float",
    "block_size": "int | None",
    "scheduling_policy": "Literal['fcfs', 'priority']",
    "compilation_config": "dict[str, Any] | CompilationConfig",
    "cudagraph_capture_sizes": "list[int] | None",
}


@pytest.mark.unit
@pytest.mark.parametrize("fields", [dataclass_fields(FakeArgs), STRING_FIELDS], ids=["types", "strings"])
def test_values_are_typed_from_each_fields_annotation(fields):
    given = {
        "max_num_seqs": "64",
        "enforce_eager": "true",
        "gpu_memory_utilization": "0.5",
        "block_size": "none",
        "scheduling_policy": "priority",
        "compilation_config": '{"level": 0}',
        "cudagraph_capture_sizes": "[1, 8]",
    }
    typed = split_args("fake", given, {}, fields)
    assert typed == {
        "max_num_seqs": 64,
        "enforce_eager": True,
        "gpu_memory_utilization": 0.5,
        "block_size": None,
        "scheduling_policy": "priority",
        "compilation_config": {"level": 0},
        "cudagraph_capture_sizes": [1, 8],
    }
    assert split_args("fake", {"block_size": "16"}, {}, fields) == {"block_size": 16}


@pytest.mark.unit
@pytest.mark.parametrize(
    "key, raw, message",
    [
        ("max_num_seq", "4", "has no engine arg 'max_num_seq'; nearest: max_num_seqs"),
        ("max_num_seqs", "many", "max_num_seqs='many' does not parse as int"),
        ("scheduling_policy", "lifo", "scheduling_policy='lifo' does not parse as Literal['fcfs', 'priority']"),
        ("compilation_config", "{level: 0}", "compilation_config='{level: 0}' is not valid JSON"),
        ("enforce_eager", "maybe", "enforce_eager='maybe' does not parse as bool"),
    ],
)
def test_a_typo_or_a_bad_value_is_one_line_naming_the_nearest_keys_or_the_type(key, raw, message):
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        split_args("fake", {key: raw}, {}, STRING_FIELDS)


@pytest.mark.unit
def test_an_unknown_key_names_three_near_ones():
    with pytest.raises(UsageError) as error:
        split_args("fake", {"schedule_polcy": "fcfs"}, {"seed": 0}, STRING_FIELDS)
    near = str(error.value).split("nearest: ")[1].split(", ")
    assert len(near) == 3 and near[0] == "scheduling_policy"


@pytest.mark.unit
def test_sglang_knobs_are_checked_and_typed_on_a_machine_without_sglang():
    from engines.sglang.args import DEFAULT_ARGS, launch_flags, server_args_fields

    fields = server_args_fields()
    assert len(fields) > 400 and fields["schedule_policy"].startswith("Literal['lpm'")
    typed = split_args(
        "sglang",
        {"schedule_policy": "lpm", "cuda_graph_max_bs_decode": "32", "disable_radix_cache": "true"},
        DEFAULT_ARGS,
        fields,
    )
    assert typed == {"schedule_policy": "lpm", "cuda_graph_max_bs_decode": 32}  # disable_radix_cache is one of ours
    with pytest.raises(UsageError, match="has no engine arg 'cuda_graph_max_bs'; nearest: cuda_graph_max_bs_decode"):
        split_args("sglang", {"cuda_graph_max_bs": "32"}, DEFAULT_ARGS, fields)
    assert launch_flags({"model_path": "m", "schedule_policy": "lpm", "json_model_override_args": {"a": 1}}) == [
        "--schedule-policy",
        "lpm",
        "--json-model-override-args",
        '{"a": 1}',
    ]


@pytest.mark.unit
def test_every_named_sglang_ablation_uses_real_server_args():
    from compare.run.points.ablations import ABLATIONS
    from engines.sglang.args import DEFAULT_ARGS, server_args_fields

    valid = set(server_args_fields()) | set(DEFAULT_ARGS)
    keys = {
        pair.split("=", 1)[0]
        for a in ABLATIONS.values()
        for _, engine, pairs, _ in a.points
        if engine == "sglang"
        for pair in pairs
        if not pair.startswith("request.")
    }
    assert keys and keys <= valid


@pytest.mark.unit
def test_json_values_reach_a_server_as_json_flags():
    assert cli_flags({"compilation_config": {"level": 0}, "cudagraph_capture_sizes": [1, 8], "block_size": 16}) == [
        "--compilation-config",
        '{"level": 0}',
        "--cudagraph-capture-sizes",
        "[1, 8]",
        "--block-size",
        "16",
    ]


@pytest.mark.engine
def test_vllms_field_list_is_cached_and_a_typo_fails_without_importing_vllm(model_cache, tmp_path):
    """The first read imports vLLM and keeps its AsyncEngineArgs fields in the cache folder (exactly vLLM's own);
    from then on a typo in a vLLM arg is one line before vLLM is imported (it took 8 s importing vLLM first)."""
    pytest.importorskip("vllm")
    import subprocess
    import sys

    from tests.conftest import ROOT

    first = (
        "import json; from engines.cache import default_cache_dir; from engines.vllm.args import vllm_fields, "
        "_fields_from_vllm; fields = vllm_fields(); (cached,) = (default_cache_dir() / "
        "'engine-args').glob('vllm-*.json'); "
        "print(json.loads(cached.read_text()) == fields == _fields_from_vllm(), len(fields))"
    )
    typo = (
        "import sys; from pathlib import Path; from engines.vllm_offline import VLLMEngine; "
        "from workloads.models import resolve_model; model = resolve_model('synthetic:tiny-llama3', "
        "Path(sys.argv[1]))\n"
        "try:\n    VLLMEngine(model, {'blok_size': '64'})\nexcept Exception as exc:\n    print(type(exc).__name__, "
        "exc)\n"
        "print('vllm imported:', 'vllm' in sys.modules)"
    )
    env = dict(os.environ, ENGINEBENCH_CACHE=str(tmp_path))
    runs = [
        subprocess.run(
            [sys.executable, "-c", code, str(model_cache)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        for code in (first, typo)
    ]
    same, count = runs[0].stdout.split()
    assert same == "True" and int(count) > 100, runs[0].stderr[-2000:]
    assert "UsageError engine 'vllm' has no engine arg 'blok_size'; nearest: block_size" in runs[1].stdout, runs[
        1
    ].stderr[-2000:]
    assert "vllm imported: False" in runs[1].stdout


@pytest.mark.engine
def test_vllm_takes_any_async_engine_args_field_and_records_what_it_resolved(model_cache, tmp_path):
    pytest.importorskip("vllm")
    from compare.run.points.ablations import ABLATIONS
    from engines.vllm.args import DEFAULT_ARGS, vllm_fields
    from tests.conftest import ROOT, run_cli

    valid = set(vllm_fields()) | set(DEFAULT_ARGS)
    named = {
        pair.split("=", 1)[0]
        for a in ABLATIONS.values()
        for _, engine, pairs, _ in a.points
        if engine == "vllm"
        for pair in pairs
        if not pair.startswith("request.")
    }  # request features: test_request_args.py
    assert named <= valid  # every named vLLM ablation set uses real fields of the installed vLLM
    base = ["--engine", "vllm", "--scenario", "smoke", "--engine-arg", "vllm.enforce_eager=true", "--no-progress"]
    typo = run_cli([*base, "--engine-arg", "vllm.blok_size=64", "--out", str(tmp_path / "typo")], model_cache, ROOT)
    assert typo.returncode == 2 and "has no engine arg 'blok_size'; nearest: block_size" in typo.stderr
    # a sweep point (an isolated child; several points: test_sweep.py on the null engine) carries the knobs it records
    sweep = run_cli(
        [
            *base,
            "--engine-arg",
            "vllm.block_size=64",
            "--sweep",
            "vllm.long_prefill_token_threshold=256",
            "--num-requests",
            "5",
            "--out",
            str(tmp_path / "sweep"),
        ],
        model_cache,
        ROOT,
    )
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    (manifest,) = (tmp_path / "sweep").glob("sweep_*/sweep.json")
    points = json.loads(manifest.read_text())["points"]
    assert [p["status"] for p in points] == ["complete"]
    args = json.loads(Path(points[0]["files"][0]).read_text())["engine"]["engine_args"]
    assert (
        args["effective_config"]["block_size"] == 64 and args["effective_config"]["long_prefill_token_threshold"] == 256
    )
    assert args["passed_through"] == ["block_size", "long_prefill_token_threshold"]
    assert "gpu_memory_utilization" in args["ours_vs_vllm_defaults"] and args["harness_args"]["step_telemetry"] is True
