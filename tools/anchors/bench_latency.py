"""The step-cost model against `vllm bench latency` (the peers' fixed-shape figure): for a few shapes B x C x N, run
vLLM's own latency benchmark on the model of a batch-shapes results file, with its engine args, and put its
whole-batch latency beside what the run's fit predicts (one prefill step of B x C tokens, then N - 1 decode steps)
and what the run measured at that point (its cell's E2E mean, where the shape is one of its points).

    python -m tools.anchors.bench_latency RESULTS.json [--shape 1,128,32 --shape 4,512,32 --shape 16,128,32]

vLLM's figure is the wall time of `LLM.generate` on B random prompts (offline engine, sampling at temperature 1,
detokenizing), median of --iters runs after warmups; each shape starts its own engine in a subprocess."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from compare.analysis.stepcost import predicted_decode_itl_ms, predicted_step_ms
from compare.results.store import read_text

ENGINE_FLAGS = ("max_model_len", "max_num_batched_tokens", "kv_cache_memory_bytes", "dtype", "block_size")
RUN = "import sys; from vllm.benchmarks.latency import add_cli_args, main; from vllm.utils.argparse_utils import "
RUN += "FlexibleArgumentParser as P; p = P(); add_cli_args(p); main(p.parse_args(sys.argv[1:]))"


def predicted_latency_ms(fit: dict, batch: int, context: int, output_tokens: int) -> float:
    """One prefill step of all B prompts, then N - 1 decode steps of B sequences (the first token comes with the
    prefill)."""
    prefill = predicted_step_ms(fit, batch, batch * context, batch * context * (context - 1) // 2)
    decode = predicted_decode_itl_ms(fit, batch, context, output_tokens - 1) * (output_tokens - 1)
    return prefill + decode


def bench_latency_ms(engine_args: dict, batch: int, context: int, output_tokens: int, iters: int) -> float:
    flags = [f"--{k.replace('_', '-')}={engine_args[k]}" for k in ENGINE_FLAGS if engine_args.get(k) not in (None, "")]
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "latency.json"
        command = [sys.executable, "-c", RUN, "--model", engine_args["model"], *flags, "--batch-size", str(batch)]
        command += ["--input-len", str(context), "--output-len", str(output_tokens), "--num-iters", str(iters)]
        command += ["--num-iters-warmup", "2", "--output-json", str(out)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(
                f"vllm bench latency failed for B={batch} C={context} N={output_tokens}:\n{done.stderr[-2000:]}"
            )
        latencies = sorted(json.loads(out.read_text())["latencies"])
    return 1e3 * latencies[len(latencies) // 2]


def measured_ms(doc: dict, batch: int, context: int, output_tokens: int) -> float | None:
    for cell in doc["cells"]:
        config = cell["config"]
        if (config["concurrency"], config["prompt_tokens"], config["output_tokens"]) == (batch, context, output_tokens):
            return cell["summary"]["e2e_ms"]["mean"]
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.anchors.bench_latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a vLLM batch-shapes results file (.json or .json.xz)")
    parser.add_argument("--shape", action="append", metavar="B,C,N", help="batch, prompt and output tokens")
    parser.add_argument("--iters", type=int, default=5, help="vllm bench latency --num-iters (default 5)")
    args = parser.parse_args(argv)
    doc = json.loads(read_text(args.results))
    if "coefficients" not in (doc.get("step_cost") or {}):
        print(f"error: {args.results} holds no step-cost fit; give a vLLM batch-shapes results file", file=sys.stderr)
        return 2
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shape or ("1,128,32", "4,512,32", "16,128,32")]
    engine_args = doc["engine"]["engine_args"]
    print(
        f"{'B,C,N':>12} {'bench latency':>14} {'predicted':>10} {'measured':>9} {'bench/pred':>10} {'bench/meas':>10}"
    )
    for batch, context, output_tokens in shapes:
        bench = bench_latency_ms(engine_args, batch, context, output_tokens, args.iters)
        predicted = predicted_latency_ms(doc["step_cost"], batch, context, output_tokens)
        measured = measured_ms(doc, batch, context, output_tokens)
        against = f"{bench / measured:10.2f}" if measured else f"{'n/a':>10}"
        print(
            f"{f'{batch},{context},{output_tokens}':>12} {bench:11.1f} ms {predicted:7.1f} ms "
            f"{measured or float('nan'):6.1f} ms {bench / predicted:10.2f} {against}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
