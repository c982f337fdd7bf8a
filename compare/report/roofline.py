"""Roofline per cell: how much of the device's peak a measured step reached.

- Decode model-bandwidth utilization (MBU): bytes one decode step must read / ITL p50 / peak bandwidth.
  A step reads every weight once except the input embedding table (only B rows of it are looked up; a
  tied LM head is read anyway), plus each running sequence's KV cache at its mean context (prompt +
  half the output). The batch is the cell's concurrency: in a closed loop every worker has a request
  decoding most of the time.
- Prefill model-FLOPs utilization (MFU): 2 x weights x prompt tokens not served from the cache, plus
  causal attention (2 x layers x heads x head_dim x n^2), over the prefill time, over peak dense bf16
  FLOP/s. The prefill time is the engine's own (first token - scheduled) where it reports one, else
  TTFT; only cold prefills (at most 1 cached token: SGLang shares a BOS) of concurrency-1 cells count,
  where no other request shares the step, and none where prompts repeat and the engine does not report
  cached tokens.

Peaks are datasheet figures (dense bf16, HBM/GDDR bandwidth) of one device times the GPUs the run used
(`engine.parallel.num_gpus`, engines/parallel.py; 1 where not recorded). Both utilizations are lower bounds of what
the kernels achieve: they count only the bytes and FLOPs the model needs, not what an engine re-reads (with data
parallel, every replica reads its own weights, and a concurrency-1 prefill runs on one replica only).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

DTYPE_BYTES = {
    "bfloat16": 2,
    "float16": 2,
    "bf16": 2,
    "f16": 2,
    "float32": 4,
    "fp8": 1,
    "q8_0": 1.0625,
    "q4_k_m": 0.5625,
}


@dataclass(frozen=True)
class Device:
    name: str
    match: tuple[str, ...]  # all of these in the NVML name (lower case)
    bandwidth_tb_s: float
    bf16_tflop_s: float


DEVICES = (  # datasheet: dense bf16 tensor FLOP/s, memory bandwidth
    Device("H200", ("h200",), 4.8, 989.4),
    Device("H100 PCIe", ("h100", "pcie"), 2.0, 756.5),
    Device("H100 SXM", ("h100",), 3.35, 989.4),
    Device("A100 80GB PCIe", ("a100", "80gb", "pcie"), 1.935, 312.0),
    Device("A100 80GB SXM", ("a100", "80gb"), 2.039, 312.0),
    Device("A100 40GB", ("a100",), 1.555, 312.0),
    Device("L4", ("l4",), 0.3, 121.0),
    Device("RTX 4090", ("4090",), 1.008, 165.2),
    Device("RTX 5090", ("5090",), 1.792, 209.5),
)


def device_for(nvml_name: str) -> Device | None:
    lowered = nvml_name.lower()
    return next((d for d in DEVICES if all(part in lowered for part in d.match)), None)


def model_shape(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The model's layer sizes: recorded since schema 2, else the synthetic preset's config."""
    shape = doc["model"].get("shape")
    if shape:
        return shape
    from workloads.models import PRESETS
    from workloads.models import model_shape as shape_of

    preset = PRESETS.get(doc["model"].get("preset") or "")
    return shape_of(preset.config) if preset else None


def parameter_counts(shape: dict[str, Any]) -> dict[str, float]:
    """Weights of a Llama/Qwen-style decoder: all, and those a decode step reads."""
    h, layers, vocab = shape["hidden_size"], shape["num_hidden_layers"], shape["vocab_size"]
    q_dim = shape["num_attention_heads"] * shape["head_dim"]
    kv_dim = shape["num_key_value_heads"] * shape["head_dim"]
    per_layer = h * q_dim + 2 * h * kv_dim + q_dim * h + 3 * h * shape["intermediate_size"] + 2 * h
    embedding = vocab * h
    head = 0 if shape.get("tie_word_embeddings") else vocab * h
    total = embedding + head + layers * per_layer + h
    return {"total": total, "read_per_decode_step": total - (0 if shape.get("tie_word_embeddings") else embedding)}


def kv_bytes_per_token(shape: dict[str, Any], dtype_bytes: float) -> float:
    return 2 * shape["num_hidden_layers"] * shape["num_key_value_heads"] * shape["head_dim"] * dtype_bytes


def decode_mbu(
    shape: dict[str, Any], dtype_bytes: float, cell: dict[str, Any], device: Device
) -> dict[str, Any] | None:
    itl_ms = cell["summary"]["itl_ms"].get("p50")
    if not itl_ms or not cell["config"].get("prompt_tokens"):
        return None
    batch = cell["config"]["concurrency"]
    context = cell["config"]["prompt_tokens"] + cell["config"]["output_tokens"] / 2
    weights = parameter_counts(shape)["read_per_decode_step"] * dtype_bytes
    kv = batch * context * kv_bytes_per_token(shape, dtype_bytes)
    achieved = (weights + kv) / (itl_ms / 1e3)
    return {
        "batch": batch,
        "weight_gb": weights / 1e9,
        "kv_gb": kv / 1e9,
        "itl_ms_p50": itl_ms,
        "achieved_tb_s": achieved / 1e12,
        "mbu": achieved / (device.bandwidth_tb_s * 1e12),
    }


def prefill_mfu(shape: dict[str, Any], cell: dict[str, Any], device: Device) -> dict[str, Any] | None:
    if cell["config"]["concurrency"] != 1:
        return None
    unknown_cache = any(r.cached_tokens is None for r in cell["requests"])
    if unknown_cache and cell["config"].get("prompt_mode") != "distinct":
        return None  # prompts repeat and the engine did not say how much was cached: the prefill work is unknown
    times_ms, tokens = [], []
    for r in cell["requests"]:
        if not r.ok or r.ttft_ms is None or (r.cached_tokens or 0) > 1:  # cold prefills only (1: a shared BOS)
            continue
        engine_prefill = ((r.engine or {}).get("durations_ns") or {}).get("prefill")
        times_ms.append(engine_prefill / 1e6 if engine_prefill else r.ttft_ms)
        tokens.append(r.prompt_tokens - (r.cached_tokens or 0))
    if not times_ms or min(tokens) < 1:
        return None
    n = float(np.median(tokens))
    weights = parameter_counts(shape)["read_per_decode_step"]
    attention = 2 * shape["num_hidden_layers"] * shape["num_attention_heads"] * shape["head_dim"] * n * n
    flops = 2 * weights * n + attention
    prefill_s = float(np.median(times_ms)) / 1e3
    source = (
        "engine"
        if any(((r.engine or {}).get("durations_ns") or {}).get("prefill") for r in cell["requests"])
        else "TTFT"
    )
    return {
        "prompt_tokens": n,
        "prefill_ms_p50": prefill_s * 1e3,
        "time_from": source,
        "achieved_tflop_s": flops / prefill_s / 1e12,
        "mfu": flops / prefill_s / (device.bf16_tflop_s * 1e12),
    }


def num_gpus_used(doc: dict[str, Any]) -> int:
    return int((doc["engine"].get("parallel") or {}).get("num_gpus") or 1)


def roofline(run) -> dict[str, Any]:
    """Per cell MBU and MFU of one run, or why there is none."""
    doc = run.doc
    gpus = doc["metadata"].get("gpus") or {}
    if not gpus.get("available"):
        return {"why_not": "no GPU in this run (CPU): a roofline needs a device's peak bandwidth and FLOP/s"}
    device = device_for(gpus["devices"][0]["name"])
    if device is None:
        return {
            "why_not": f"no datasheet peaks for {gpus['devices'][0]['name']!r} (compare/report/roofline.py DEVICES)"
        }
    shape = model_shape(doc)
    precision = str((doc["engine"].get("model") or {}).get("quantization") or doc["engine"]["model"].get("dtype"))
    dtype_bytes = DTYPE_BYTES.get(precision.lower())
    if shape is None or dtype_bytes is None:
        return {"why_not": f"model shape or bytes per weight unknown (precision {precision})"}
    num_gpus = num_gpus_used(doc)
    peak = replace(device, bandwidth_tb_s=device.bandwidth_tb_s * num_gpus, bf16_tflop_s=device.bf16_tflop_s * num_gpus)
    cells = {}
    for cell in doc["cells"]:
        row = {"decode": decode_mbu(shape, dtype_bytes, cell, peak), "prefill": prefill_mfu(shape, cell, peak)}
        if row["decode"] or row["prefill"]:
            cells[cell["cell_id"]] = row
    counts = parameter_counts(shape)
    return {
        "device": device.name,
        "peak_tb_s": device.bandwidth_tb_s,
        "peak_tflop_s": device.bf16_tflop_s,
        "num_gpus": num_gpus,
        "peak_tb_s_total": peak.bandwidth_tb_s,
        "peak_tflop_s_total": peak.bf16_tflop_s,
        "weights_total": counts["total"],
        "weights_read_per_step": counts["read_per_decode_step"],
        "bytes_per_weight": dtype_bytes,
        "cells": cells,
    }
