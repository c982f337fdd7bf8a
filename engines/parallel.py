"""The parallel layout of a run, recorded in the results as `engine.parallel`: tensor, pipeline and data parallel
sizes, expert parallelism, the GPUs they take, the executor and the nodes, read from the engine's resolved args.
Engines without multi-GPU modes (llamacpp, ollama, hf, null, http) record one device."""

from __future__ import annotations

from typing import Any

VLLM_KEYS = (
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "data_parallel_size",
    "enable_expert_parallel",
    "distributed_executor_backend",
    "nnodes",
)
SGLANG_KEYS = ("tp_size", "pp_size", "dp_size", "ep_size", "enable_dp_attention", "nnodes")


def parallel_layout(engine_name: str, args: dict[str, Any]) -> dict[str, Any]:
    if engine_name in ("vllm", "vllm-batch"):
        return _vllm_layout(args)
    if engine_name == "sglang":
        return _sglang_layout(args)
    return _layout(1, 1, 1, expert=None, num_gpus=1, executor=None, nodes=None)


def _vllm_layout(args: dict[str, Any]) -> dict[str, Any]:
    tp, pp, dp = (_size(args, key) for key in VLLM_KEYS[:3])
    executor = args.get("distributed_executor_backend")
    if executor is not None and not isinstance(executor, str):  # vLLM also takes an executor class
        executor = getattr(executor, "__name__", str(executor))
    expert = args.get("enable_expert_parallel")
    nodes = args.get("nnodes")
    return _layout(
        tp,
        pp,
        dp,
        expert=None if expert is None else bool(expert),
        num_gpus=tp * pp * dp,
        executor=executor,
        nodes=None if nodes is None else int(nodes),
    )


def _sglang_layout(args: dict[str, Any]) -> dict[str, Any]:
    tp, pp, dp = _size(args, "tp_size"), _size(args, "pp_size"), _size(args, "dp_size")
    # with DP attention the dp_size attention groups split the tp_size GPUs; plain DP runs dp_size replicas of tp x pp
    num_gpus = tp * pp if args.get("enable_dp_attention") else tp * pp * dp
    ep = args.get("ep_size")
    return _layout(
        tp,
        pp,
        dp,
        expert=None if ep is None else int(ep) > 1,
        num_gpus=num_gpus,
        executor=None,
        nodes=_size(args, "nnodes"),
    )


def _size(args: dict[str, Any], key: str) -> int:
    value = args.get(key)
    return 1 if value in (None, "", 0) else int(value)


def _layout(
    tp: int, pp: int, dp: int, expert: bool | None, num_gpus: int, executor: str | None, nodes: int | None
) -> dict[str, Any]:
    return {
        "tensor_parallel": tp,
        "pipeline_parallel": pp,
        "data_parallel": dp,
        "expert_parallel": expert,
        "num_gpus": num_gpus,
        "executor": executor,
        "nodes": nodes,
    }
