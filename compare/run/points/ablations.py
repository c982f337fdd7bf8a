"""Named ablation sets for `--ablation NAME`: each a list of points, baseline first, and the question it answers.

A point is (label, engine, engine-arg pairs, mode); a `request.K=V` pair is a request feature (docs/features.md).
Engine defaults are the baseline, so a point changes one thing; the table then gives each point against the
baseline with a 95% interval and significant or not.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Ablation:
    question: str
    points: tuple[tuple[str, str, tuple[str, ...], str], ...]
    scenario: str | None = None  # what it runs when no --scenario is given (else smoke)

    @property
    def engines(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(engine for _, engine, _, _ in self.points))


def _one_engine(engine: str, question: str, *changes: tuple[str, tuple[str, ...]]) -> Ablation:
    points = (("baseline", engine, (), "inprocess"),) + tuple(
        (label, engine, pairs, "inprocess") for label, pairs in changes
    )
    return Ablation(question, points)


def _http(engine: str, server: str) -> Ablation:
    return Ablation(
        f"what does {server} add to each request?",
        (("in-process", engine, (), "inprocess"), ("http", engine, (), "http")),
    )


def _values(engine: str, key: str, values: tuple[str, ...], question: str) -> Ablation:
    points = tuple((f"{key}={v}", engine, (f"{key}={v}",), "inprocess") for v in values)
    return Ablation(question, points)


ABLATIONS: dict[str, Ablation] = {
    "vllm-prefix-chunked": _one_engine(
        "vllm",
        "what do vLLM's prefix caching and chunked prefill save or cost on this workload?",
        ("no-prefix-caching", ("enable_prefix_caching=false",)),
        ("no-chunked-prefill", ("enable_chunked_prefill=false",)),
    ),
    "vllm-cuda-graphs": _one_engine(
        "vllm",
        "what do CUDA graphs (and torch.compile) buy vLLM? (enforce_eager turns both off)",
        ("enforce-eager", ("enforce_eager=true",)),
    ),
    "vllm-stream-interval": _values(
        "vllm",
        "stream_interval",
        ("1", "4", "16"),
        "how much of vLLM's per-token cost is output streaming? (tokens per stream update)",
    ),
    "vllm-batched-tokens": _values(
        "vllm",
        "max_num_batched_tokens",
        ("8192", "2048"),
        "does a smaller token budget per step trade TTFT for ITL? (chunked prefill's chunk size)",
    ),
    "vllm-max-seqs": _values(
        "vllm", "max_num_seqs", ("256", "64", "16"), "where does capping the running batch start to queue requests?"
    ),
    "sglang-radix": _one_engine(
        "sglang",
        "what does SGLang's radix cache save or cost on this workload?",
        ("no-radix-cache", ("disable_radix_cache=true",)),
    ),
    "sglang-overlap": _one_engine(
        "sglang",
        "what does SGLang's overlap scheduler (CPU scheduling hidden behind the GPU step) buy?",
        ("no-overlap", ("disable_overlap_schedule=true",)),
    ),
    "sglang-chunked-prefill": _values(
        "sglang", "chunked_prefill_size", ("8192", "2048"), "does SGLang's prefill chunk size trade TTFT for ITL?"
    ),
    "sglang-stream-interval": _values(
        "sglang", "stream_interval", ("1", "4", "16"), "how much of SGLang's per-token cost is output streaming?"
    ),
    "llamacpp-threads": _values(
        "llamacpp", "n_threads", ("1", "2"), "how does llama.cpp scale with CPU threads on this machine?"
    ),
    "llamacpp-batch": _values("llamacpp", "n_batch", ("512", "64"), "does llama.cpp's prompt batch size change TTFT?"),
    "llamacpp-quant": _values(
        "llamacpp",
        "quant",
        ("f16", "q8_0", "q4_k_m"),
        "what does GGUF quantization buy in speed? (the outputs differ: compare knowingly)",
    ),
    "vllm-streaming": Ablation(
        "what does streaming every token cost vLLM? (batch generate, one timestamp per request, vs streamed)",
        (("streamed", "vllm", (), "inprocess"), ("batch", "vllm-batch", (), "inprocess")),
    ),
    "vllm-http": _http("vllm", "vLLM's own HTTP server"),
    "sglang-http": _http("sglang", "SGLang's own HTTP server"),
    "llamacpp-http": _http("llamacpp", "llama-cpp-python's server"),
}

# knobs beyond the harness's own defaults (any engine arg works; these are the questions engine developers ask first)
_VALUE_SETS = (  # name, engine, key, values (baseline first), question
    (
        "vllm-async-scheduling",
        "vllm",
        "async_scheduling",
        ("false", "true"),
        "does overlapping the scheduler with the model step (async scheduling) cut ITL?",
    ),
    (
        "vllm-block-size",
        "vllm",
        "block_size",
        ("16", "32", "64"),
        "how does the KV block size change prefix-cache hits (whole blocks only) and step time?",
    ),
    (
        "vllm-scheduling-policy",
        "vllm",
        "scheduling_policy",
        ("fcfs", "priority"),
        "does priority scheduling change tail latency under open-loop load? (use --request-rate)",
    ),
    (
        "vllm-long-prefill",
        "vllm",
        "long_prefill_token_threshold",
        ("0", "512"),
        "does capping long prefills per step protect the ITL of running requests?",
    ),
    (
        "sglang-schedule-policy",
        "sglang",
        "schedule_policy",
        ("fcfs", "lpm"),
        "does SGLang's longest-prefix-match scheduling raise hits and throughput on shared prefixes? (shared-prefix)",
    ),
    (
        "sglang-cuda-graph-bs",
        "sglang",
        "cuda_graph_max_bs_decode",
        ("160", "32"),
        "how much decode batch do SGLang's CUDA graphs need to cover? (0.5.17's cuda_graph_max_bs_decode)",
    ),
)
ABLATIONS.update({name: _values(engine, key, values, question) for name, engine, key, values, question in _VALUE_SETS})
ABLATIONS["vllm-cudagraph-sizes"] = _one_engine(
    "vllm",
    "which CUDA-graph capture sizes pay for their start-up time? (default, a short list, eager)",
    ("sizes-1-8-32", ("cudagraph_capture_sizes=[1,8,32]",)),
    ("eager", ("enforce_eager=true",)),
)
_NGRAM = '{"method": "ngram", "num_speculative_tokens": %d, "prompt_lookup_max": 4, "prompt_lookup_min": 2}'
ABLATIONS["spec-decode"] = Ablation(
    "what does speculative decoding buy vLLM: acceptance, tokens per step, tok/s and ITL against drafting off? "
    "(n-gram drafts from the prompt at K = 2, 4, 8; the model drafting for itself: about everything accepted)",
    (("off", "vllm", (), "inprocess"),)
    + tuple((f"ngram-k{k}", "vllm", (f"speculative_config={_NGRAM % k}",), "inprocess") for k in (2, 4, 8))
    + (
        (
            "draft-self-k4",
            "vllm",
            ('speculative_config={"method": "draft_model", "model": "@target", "num_speculative_tokens": 4}',),
            "inprocess",
        ),
    ),
    scenario="speculative",
)
ABLATIONS["spec-decode-llamacpp"] = Ablation(
    "what does prompt-lookup decoding buy llama.cpp: acceptance, tok/s and ITL against drafting off?",
    (("off", "llamacpp", (), "inprocess"),)
    + tuple((f"lookup-{n}", "llamacpp", (f"prompt_lookup_num_pred_tokens={n}",), "inprocess") for n in (2, 10)),
    scenario="speculative",
)
ABLATIONS["step-cost-async"] = Ablation(
    "does vLLM's async scheduling hide the per-step host floor? the step-cost fit and the share of a decode step "
    "outside the execute call, per batch size, with the next step scheduled after the current one or during it",
    (
        ("sync", "vllm", ("async_scheduling=false",), "inprocess"),
        ("async", "vllm", ("async_scheduling=true",), "inprocess"),
    ),
    scenario="batch-shapes",
)
ABLATIONS["sampling-cost"] = _one_engine(
    "vllm",
    "what does each sampling feature cost against greedy decoding? (n=4: tok/s over all four sequences)",
    ("temperature-0.8-top_p-0.95", ("request.temperature=0.8", "request.top_p=0.95")),
    ("top_k-50", ("request.temperature=0.8", "request.top_k=50")),
    ("penalties", ("request.presence_penalty=0.5", "request.frequency_penalty=0.5", "request.repetition_penalty=1.1")),
    ("logprobs-5", ("request.logprobs=5",)),
    ("logprobs-20", ("request.logprobs=20",)),
    ("n-4", ("request.temperature=0.8", "request.n=4")),
)
ABLATIONS["structured-output"] = Ablation(
    "what does each structured-output backend cost vLLM: per cell none, cached and unique, TTFT and TPOT against "
    "unconstrained? (the structured scenario)",
    tuple(
        (backend, "vllm", (f'structured_outputs_config={{"backend": "{backend}"{compact}}}',), "inprocess")
        for backend, compact in (
            ("xgrammar", ', "disable_any_whitespace": true'),
            ("guidance", ', "disable_any_whitespace": true'),
            ("outlines", ""),
        )
    ),
    scenario="structured",
)  # compact JSON where the backend takes it (engines/vllm/args.py)
ABLATIONS["vllm-lora-slots"] = Ablation(
    "where is the LoRA cliff? vLLM's max_loras (adapters in one batch) below and above the multi-lora working set "
    "(16 adapters; max_cpu_loras 16 keeps every one in host memory)",
    tuple((f"max_loras={n}", "vllm", (f"max_loras={n}", "max_cpu_loras=16"), "inprocess") for n in (1, 4, 8, 16)),
    scenario="multi-lora",
)
