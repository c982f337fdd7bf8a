"""The parallel layout recorded per run (engines/parallel.py), the roofline's peak over the GPUs used, and the
sampler's totals over several GPUs (FAKE runs and FAKE readings: tests/fakes.py)."""

from dataclasses import dataclass

import pytest

from compare.report.roofline import roofline
from compare.run.instruments.gpu import summarize_samples
from engines.parallel import parallel_layout
from tests.fakes import fake_run, steady_records

pytestmark = pytest.mark.unit


def test_vllm_tp_pp_dp_multiply_into_the_gpus_used_and_the_executor_is_recorded():
    args = {
        "tensor_parallel_size": 2,
        "pipeline_parallel_size": 2,
        "data_parallel_size": 2,
        "distributed_executor_backend": "ray",
        "enable_expert_parallel": False,
    }
    layout = parallel_layout("vllm", args)
    assert layout["num_gpus"] == 8 and layout["executor"] == "ray"
    assert (layout["tensor_parallel"], layout["pipeline_parallel"], layout["data_parallel"]) == (2, 2, 2)
    assert layout["expert_parallel"] is False and layout["nodes"] is None


def test_vllm_batch_reads_the_same_knobs_as_vllm():
    assert parallel_layout("vllm-batch", {"tensor_parallel_size": 4})["num_gpus"] == 4


def test_sglang_tp_size_and_dp_size_multiply_into_the_gpus_used():
    layout = parallel_layout("sglang", {"tp_size": 4, "dp_size": 2, "nnodes": 2})
    assert layout["num_gpus"] == 8 and layout["nodes"] == 2 and layout["executor"] is None


def test_sglang_dp_attention_splits_the_tp_gpus_instead_of_adding_replicas():
    assert parallel_layout("sglang", {"tp_size": 8, "dp_size": 8, "enable_dp_attention": True})["num_gpus"] == 8


def test_missing_keys_default_to_one_device():
    layout = parallel_layout("vllm", {})
    sizes = (layout["tensor_parallel"], layout["pipeline_parallel"], layout["data_parallel"], layout["num_gpus"])
    assert sizes == (1, 1, 1, 1)


@pytest.mark.parametrize("engine", ["llamacpp", "ollama", "hf", "null", "http"])
def test_single_device_engines_record_one_gpu(engine):
    layout = parallel_layout(engine, {"tensor_parallel_size": 8})
    assert layout["num_gpus"] == 1 and layout["tensor_parallel"] == 1 and layout["executor"] is None


def _decode_run(parallel):
    config = {"cell_id": "c1-in128", "concurrency": 1}
    run = fake_run("vllm", "single", [(config, steady_records(8, 20, 6.0, jitter=0.0))], hardware="NVIDIA H200")
    run.doc["engine"]["parallel"] = parallel
    return roofline(run)


def test_roofline_over_two_gpus_gives_half_the_fraction_of_peak():
    one, two = _decode_run(None), _decode_run(parallel_layout("vllm", {"tensor_parallel_size": 2}))
    assert one["num_gpus"] == 1 and two["num_gpus"] == 2 and two["peak_tb_s_total"] == pytest.approx(2 * 4.8)
    decode_one, decode_two = one["cells"]["c1-in128"]["decode"], two["cells"]["c1-in128"]["decode"]
    assert decode_two["achieved_tb_s"] == pytest.approx(decode_one["achieved_tb_s"])
    assert decode_two["mbu"] == pytest.approx(decode_one["mbu"] / 2)
    assert two["peak_tb_s"] == one["peak_tb_s"] == 4.8  # the per-device datasheet figure stays as it was


def test_sampler_summary_has_each_gpu_and_their_totals():
    def fake_two_gpus(memory_mib):  # a FAKE NVML reading of two GPUs
        return [
            {"memory_used_mib": memory_mib, "utilization_pct": 80.0, "power_w": 500.0},
            {"memory_used_mib": memory_mib / 2, "utilization_pct": 40.0, "power_w": 300.0},
        ]

    summary = summarize_samples([(0, fake_two_gpus(1000.0)), (1, fake_two_gpus(3000.0))])
    assert [g["gpu"] for g in summary["per_gpu"]] == [0, 1]
    assert [g["memory_used_mib_peak"] for g in summary["per_gpu"]] == [3000.0, 1500.0]
    total = summary["total"]
    assert total["num_gpus"] == 2 and total["memory_used_mib_peak"] == 4500.0
    assert total["memory_used_mib_mean"] == 3000.0
    assert total["utilization_pct_mean"] == 60.0 and total["power_w_mean"] == 800.0


@dataclass
class FakeServerArgs:  # a FAKE of sglang's ServerArgs: the parallel fields only
    tp_size: int = 4
    dp_size: int = 2
    pp_size: int = 1
    ep_size: int = 1
    nnodes: int = 1


class FakeSGLangRuntimeWithServerArgs:
    """A FAKE started `sglang.Engine`: only the server args it resolved, read as 0.5.17's get_server_info reads them
    (`tokenizer_manager.resolved_config_dict(asdict(server_args))`). Not SGLang."""

    class tokenizer_manager:
        server_args = FakeServerArgs()

        @staticmethod
        def resolved_config_dict(base):
            return dict(base)


def test_sglang_describe_records_the_layout_the_engine_resolved(config_only_8b):
    from engines.sglang_offline import SGLangEngine

    engine = SGLangEngine(config_only_8b, {"tp_size": "4", "dp_size": "2"}, runtime=FakeSGLangRuntimeWithServerArgs())
    parallel = engine.describe().parallel
    assert parallel["num_gpus"] == 8 and parallel["tensor_parallel"] == 4 and parallel["data_parallel"] == 2
    assert parallel["expert_parallel"] is False and parallel["nodes"] == 1


def test_vllm_layout_prefers_what_the_started_engine_resolved_over_what_was_passed():
    from types import SimpleNamespace

    from engines.vllm_offline import VLLMEngine

    engine = object.__new__(VLLMEngine)  # no vLLM: only the args and a FAKE parallel_config are read
    engine.resolved = {"tensor_parallel_size": 2, "pipeline_parallel_size": 2}
    started = SimpleNamespace(
        tensor_parallel_size=2,
        pipeline_parallel_size=2,
        data_parallel_size=1,
        distributed_executor_backend="mp",
        enable_expert_parallel=False,
        nnodes=1,
    )
    layout = parallel_layout("vllm", engine._parallel_args(started))
    assert layout["num_gpus"] == 4 and layout["executor"] == "mp" and layout["nodes"] == 1
    assert parallel_layout("vllm", engine._parallel_args(None))["executor"] is None  # not started: as passed
