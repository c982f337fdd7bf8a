"""Multi-LoRA traffic: which adapters a run serves and which one each request asks for.

- Adapters are PEFT folders (`adapter_config.json`, `adapter_model.safetensors`): synthetic ones are built
  here, once, into the cache beside synthetic models (seeded random A and B, B non-zero so outputs differ from
  the base model), sized from the model's config.json; a local folder works too. Nothing comes from a hub.
- Each request is assigned an adapter by a seeded draw (`DISTRIBUTIONS`), per cell, and tagged with it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.base import UsageError
from engines.cache import build_lock

ADAPTER_VERSION = 1  # bump when anything that changes the built files changes
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
DISTRIBUTIONS = ("uniform", "zipf", "round-robin", "distinct", "identical")


@dataclass(frozen=True)
class Adapter:
    name: str  # what requests call it: lora0, lora1, ... or the folder's name
    path: str
    rank: int


def resolve_adapters(
    given: int | tuple[str, ...], rank: int, model_folder: Path | None, cache_dir: Path
) -> tuple[Adapter, ...]:
    """A count builds that many synthetic adapters for the model; a list of paths takes local PEFT folders."""
    if isinstance(given, int):
        if not given:
            return ()
        if model_folder is None or not (model_folder / "config.json").exists():
            raise UsageError(
                "synthetic LoRA adapters need a model folder with a config.json; give lora_adapters as paths"
            )
        config = json.loads((model_folder / "config.json").read_text())
        return tuple(Adapter(f"lora{i}", str(build_adapter(config, rank, i, cache_dir)), rank) for i in range(given))
    adapters = []
    for text in given:
        folder = Path(text).expanduser()
        if not (folder / "adapter_config.json").exists():
            raise UsageError(f"LoRA adapter {text!r}: no adapter_config.json there; give a PEFT adapter folder")
        adapter_rank = int(json.loads((folder / "adapter_config.json").read_text()).get("r", 0))
        adapters.append(Adapter(folder.name, str(folder.resolve()), adapter_rank))
    if len({a.name for a in adapters}) < len(adapters):
        raise UsageError("LoRA adapters: two folders share a name; each request names its adapter by its folder's name")
    return tuple(adapters)


def module_shapes(config: dict) -> dict[str, tuple[int, int]]:
    """(in, out) features of each projection a LoRA can target, for a Llama/Qwen-style config."""
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    kv_heads, inner = config.get("num_key_value_heads") or heads, config["intermediate_size"]
    return {
        "q_proj": (hidden, heads * head_dim),
        "k_proj": (hidden, kv_heads * head_dim),
        "v_proj": (hidden, kv_heads * head_dim),
        "o_proj": (heads * head_dim, hidden),
        "gate_proj": (hidden, inner),
        "up_proj": (hidden, inner),
        "down_proj": (inner, hidden),
    }


def build_adapter(
    config: dict, rank: int, index: int, cache_dir: Path, targets: tuple[str, ...] = DEFAULT_TARGETS
) -> Path:
    """Build (once) adapter `index` of rank `rank` for this model shape; atomic, deterministic (seeded by index)."""
    shapes = module_shapes(config)
    key = zlib.crc32(json.dumps([sorted(shapes.items()), config["num_hidden_layers"], targets]).encode())
    target = cache_dir / "lora" / f"{key:08x}-r{rank}-{index}-v{ADAPTER_VERSION}"
    if (target / "adapter_model.safetensors").exists():
        return target
    with build_lock(target):  # a run beside this one, sharing the cache, builds it once
        if (target / "adapter_model.safetensors").exists():
            return target
        staging = target.with_name(f".{target.name}.building-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            _write_adapter(staging, shapes, config["num_hidden_layers"], rank, index, targets)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _write_adapter(
    folder: Path, shapes: dict, num_layers: int, rank: int, index: int, targets: tuple[str, ...]
) -> None:
    from safetensors.numpy import save_file

    generator = np.random.default_rng(1000 + index)
    tensors = {}
    for layer in range(num_layers):
        for module in targets:
            block = "self_attn" if module in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
            prefix = f"base_model.model.model.layers.{layer}.{block}.{module}"
            fan_in, fan_out = shapes[module]
            tensors[f"{prefix}.lora_A.weight"] = (generator.standard_normal((rank, fan_in)) / np.sqrt(fan_in)).astype(
                np.float16
            )
            tensors[f"{prefix}.lora_B.weight"] = (generator.standard_normal((fan_out, rank)) * 0.05).astype(np.float16)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": rank,
        "lora_alpha": 2 * rank,
        "lora_dropout": 0.0,
        "target_modules": list(targets),
        "bias": "none",
        "fan_in_fan_out": False,
        "base_model_name_or_path": None,
        "enginebench": {"seed": 1000 + index, "version": ADAPTER_VERSION},
    }
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))


def draw_adapters(distribution: str, num_adapters: int, count: int, seed: int, zipf_alpha: float = 1.0) -> list[int]:
    """Each of `count` requests' adapter index, seeded:
    - uniform: independent, equally likely; zipf: independent, P(k) proportional to 1 / (k + 1)^alpha (adapter 0
      the most popular);
    - round-robin: 0, 1, 2, ... in turn; distinct: a seeded shuffle of all adapters, then another, so no adapter
      repeats before every other has been asked for; identical: every request adapter 0."""
    rng = np.random.default_rng(seed)
    if distribution == "uniform":
        return rng.integers(0, num_adapters, count).tolist()
    if distribution == "zipf":
        weights = 1.0 / np.arange(1, num_adapters + 1) ** zipf_alpha
        return rng.choice(num_adapters, size=count, p=weights / weights.sum()).tolist()
    if distribution == "round-robin":
        return [i % num_adapters for i in range(count)]
    if distribution == "distinct":
        rounds = -(-count // num_adapters)
        return np.concatenate([rng.permutation(num_adapters) for _ in range(rounds)])[:count].tolist()
    if distribution == "identical":
        return [0] * count
    raise UsageError(f"lora_distribution {distribution!r}: valid: {', '.join(DISTRIBUTIONS)}")


def validate_lora(scenario, fail) -> None:
    given = scenario.lora_adapters
    if isinstance(given, bool) or not (
        isinstance(given, int) and given >= 0 or isinstance(given, tuple) and all(isinstance(p, str) for p in given)
    ):
        fail("'lora_adapters' is a count of synthetic adapters (>= 0) or a list of PEFT adapter folders")
    if scenario.lora_distribution not in DISTRIBUTIONS:
        fail(f"'lora_distribution' must be one of {', '.join(DISTRIBUTIONS)}")
    if scenario.lora_rank < 1 or scenario.lora_zipf_alpha <= 0:
        fail("'lora_rank' must be >= 1 and 'lora_zipf_alpha' > 0")
    if given and scenario.prompt_mode in ("multi-turn", "language-pairs"):
        fail(
            f"'lora_adapters' works with prompt_mode same, distinct, shared-prefix or trace, not {scenario.prompt_mode}"
        )


def with_adapters(plan, scenario, adapters: tuple[Adapter, ...]):
    """The cell's measured requests, each with its drawn adapter (tag `adapter`: its index); warmups stay on the
    base model, so each adapter's first use falls inside the cell. The draw is seeded per cell."""
    if not adapters:
        return plan
    seed = zlib.crc32(f"{scenario.seed}/lora/{plan.spec.cell_id}".encode())
    drawn = draw_adapters(scenario.lora_distribution, len(adapters), len(plan.requests), seed, scenario.lora_zipf_alpha)
    requests = tuple(
        dataclasses.replace(r, lora_name=adapters[k].name, lora_path=adapters[k].path, tags=(*r.tags, ("adapter", k)))
        for r, k in zip(plan.requests, drawn)
    )
    lora = {
        "adapters": [a.name for a in adapters],
        "ranks": sorted({a.rank for a in adapters}),
        "distribution": scenario.lora_distribution,
        "zipf_alpha": scenario.lora_zipf_alpha if scenario.lora_distribution == "zipf" else None,
        "requests_per_adapter": np.bincount(drawn, minlength=len(adapters)).tolist(),
    }
    return dataclasses.replace(plan, requests=requests, traffic={**(plan.traffic or {}), "lora": lora})


def served_adapters(per_scenario) -> tuple[Adapter, ...]:
    """Every adapter the run's scenarios ask for, once each (by name), in first-seen order."""
    served: dict[str, Adapter] = {}
    for adapters in per_scenario:
        for adapter in adapters:
            if served.setdefault(adapter.name, adapter).path != adapter.path:
                raise UsageError(f"LoRA adapter name {adapter.name!r} stands for two folders in this run; rename one")
    return tuple(served.values())
