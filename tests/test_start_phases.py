"""An engine's start, phase by phase, from its own log: known answers from the logs of the 2026-11-23 H100 run
(results/gpu/2026-11-23-nvidia-h100-x1/, where INFO lines were off and only the capture bars remain) and from
INFO lines as vLLM 0.26-0.32 and SGLang 0.5.17 write them."""

from pathlib import Path

import pytest

from tools.gpu.start_phases import start_phases

pytestmark = pytest.mark.unit
H100 = Path(__file__).resolve().parent.parent / "results" / "gpu" / "2026-11-23-nvidia-h100-x1"


def test_the_h100_logs_give_each_capture_once_though_tqdm_draws_its_end_twice():
    vllm = start_phases("vllm", (H100 / "vllm-inprocess" / "vllm-inprocess.log").read_text(errors="replace"))
    assert vllm == {"vllm_graph_capture_bars_s": 3, "finished_capture_bars": 2}  # PIECEWISE 00:02 + FULL 00:01
    sglang = start_phases("sglang", (H100 / "sglang-inprocess" / "sglang-inprocess.log").read_text(errors="replace"))
    assert sglang["sglang_prefill_graph_capture_bar_s"] == 183  # 03:03: torch.compile of the first size is in it
    assert sglang["sglang_decode_graph_capture_bar_s"] == 2 and sglang["finished_capture_bars"] == 2


def test_info_lines_give_the_named_phases_and_two_starts_add_up():
    vllm_log = (
        "(EngineCore pid=9) INFO 11-23 10:35:01 [default_loader.py:502] Loading weights took 3.21 seconds\n"
        "(EngineCore pid=9) INFO [gpu_model_runner.py:5150] Model loading took 14.99 GiB memory and 4.500000 seconds\n"
        "(EngineCore pid=9) INFO [backends.py:1167] Dynamo bytecode transform time: 11.50 s\n"
        "(EngineCore pid=9) INFO [monitor.py:20] torch.compile took 41.20 s in total\n"
        "(EngineCore pid=9) INFO [gpu_model_runner.py:6582] Graph capturing finished in 3 secs, took 0.52 GiB\n"
        "(EngineCore pid=9) INFO [core.py:403] init engine (profile, create kv cache, warmup model) took 62.08 s\n"
    )
    assert start_phases("vllm", vllm_log + vllm_log.replace("41.20", "1.80")) == {
        "weights_load_s": 6.42,
        "model_load_s": 9.0,
        "dynamo_transform_s": 23.0,
        "torch_compile_s": 43.0,
        "graph_capture_s": 6.0,
        "engine_init_s": 124.16,
    }
    sglang_log = (
        "[2026-11-30 10:00:01] Init torch distributed ends. elapsed=0.42 s, mem usage=0.1 GB\n"
        "[2026-11-30 10:00:09] Load weight end. elapsed=5.20 s, type=LlamaForCausalLM, avail mem=60.00 GB, \n"
        "[2026-11-30 10:03:12] Capture prefill cuda graph end. elapsed=183.10 s, mem usage=2.00 GB, avail mem=9.6 GB.\n"
        "[2026-11-30 10:03:14] Capture decode CUDA graph end. elapsed=2.50 s, mem usage=0.40 GB, avail mem=9.2 GB.\n"
    )
    assert start_phases("sglang", sglang_log) == {
        "init_distributed_s": 0.42,
        "weights_load_s": 5.2,
        "capture_prefill_cuda_graph_s": 183.1,
        "capture_decode_cuda_graph_s": 2.5,
    }


def test_a_log_without_start_lines_gives_nothing_and_an_unfinished_bar_counts_nothing():
    assert start_phases("null", "cell c1-in32: 4/4 ok\n") == {}
    assert start_phases("vllm", "Capturing CUDA graphs (PIECEWISE):  47%|####| 24/51 [00:01<00:01, 23.1it/s]") == {}
