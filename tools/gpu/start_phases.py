"""An engine's start, phase by phase, read from its own log (a campaign step's log or a server's log).

Engine start is what a 15-minute lease spends most on without measuring anything (2026-11-23: 443 of 1323 s),
so each start is taken apart: weights, torch.compile, CUDA-graph capture, KV-cache setup. The lines are
vLLM's (0.26-0.32) and SGLang's (0.5.17) own; INFO lines need vLLM's default log level and SGLang's
`log_level=info` (the campaign sets both). Where the INFO lines are missing, the capture progress bars
(tqdm, always on stderr) still give the capture times: a finished bar's elapsed [mm:ss] or [h:mm:ss].
"""

from __future__ import annotations

import re
from typing import Any

_NUMBER = r"([\d.]+)"
LINES = {
    "vllm": {
        "weights_load_s": rf"Loading weights took {_NUMBER} seconds",
        "model_load_s": rf"Model loading took .*? and {_NUMBER} seconds",
        "dynamo_transform_s": rf"Dynamo bytecode transform time: {_NUMBER} s",
        "torch_compile_s": rf"torch\.compile (?:took|takes) {_NUMBER} s in total",
        "graph_capture_s": rf"Graph capturing finished in {_NUMBER} secs",
        "engine_init_s": rf"init engine \(profile, create kv cache, warmup model\) took {_NUMBER}",
    },
    "sglang": {
        "init_distributed_s": rf"Init torch distributed ends\. elapsed={_NUMBER} s",
        "weights_load_s": rf"Load weight end\. elapsed={_NUMBER} s",
    },
}
SGLANG_CAPTURE = re.compile(
    rf"Capture (.+?) end\. elapsed={_NUMBER} s"
)  # e.g. "decode CUDA graph", "prefill cuda graph"
# a tqdm bar's state: "<label> (<detail>): 100%|####| 51/51 [00:02<00:00, 21.08it/s]"; tqdm draws the finished
# state twice (last update, then close), so a bar counts once: when 100% follows a lower state of its label
BAR = re.compile(r"(Capturing [^:(\n]*?)(?: \([^)\n]*\))?: +(\d+)%\|[^|\n]*\| \d+/\d+ \[((?:\d+:)?\d+:\d+)<")
BAR_NAMES = {  # the bar's label -> our phase name
    "Capturing CUDA graphs": "vllm_graph_capture_bars_s",
    "Capturing num tokens": "sglang_prefill_graph_capture_bar_s",
    "Capturing batches": "sglang_decode_graph_capture_bar_s",
}


def _seconds(clock: str) -> int:
    total = 0
    for part in clock.split(":"):
        total = total * 60 + int(part)
    return total


def start_phases(engine: str, log_text: str) -> dict[str, Any]:
    """Seconds per start phase found in the log (a phase seen twice, e.g. two engine starts, is summed), and
    the number of finished capture bars. Empty when the log has none of the lines."""
    text = log_text.replace("\r", "\n")
    phases: dict[str, Any] = {}
    for name, pattern in LINES.get(engine, {}).items():
        values = [float(v) for v in re.findall(pattern, text)]
        if values:
            phases[name] = round(sum(values), 2)
    if engine == "sglang":
        for what, seconds in SGLANG_CAPTURE.findall(text):
            key = "capture_" + re.sub(r"[^a-z0-9]+", "_", what.lower()).strip("_") + "_s"
            phases[key] = round(phases.get(key, 0.0) + float(seconds), 2)
    bars, last_percent = 0, {}
    for label, percent, clock in BAR.findall(text):
        name = BAR_NAMES.get(label.strip())
        if name is None or not name.startswith(engine):
            continue
        if percent == "100" and last_percent.get(name) != "100":
            phases[name] = phases.get(name, 0) + _seconds(clock)
            bars += 1
        last_percent[name] = percent
    if bars:
        phases["finished_capture_bars"] = bars
    return phases
