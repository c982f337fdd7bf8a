"""Write a small synthetic Mooncake-format trace, seeded, byte-identical for the same arguments.

    .venv/bin/python scripts/make_trace.py                      # workloads/traces/synthetic-small.jsonl
    .venv/bin/python scripts/make_trace.py --seed 1 --num-requests 200 --duration-s 60 --out /tmp/t.jsonl

Arrivals are Poisson-like over the duration (a Poisson process given its count: sorted uniform
times), the first at 0 ms. Each request belongs to one of 6 prefix families; a family's 1-3 leading
hash ids are shared by all its requests, and each request then has blocks of its own, so families
share nothing. len(hash_ids) == ceil(input_length / 512). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

BLOCK_TOKENS = 512
NUM_FAMILIES = 6
INPUT_LENGTHS = (600, 2000)
OUTPUT_LENGTHS = (32, 128)
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "workloads" / "traces" / "synthetic-small.jsonl"


def make_trace(seed: int, num_requests: int, duration_s: float) -> list[dict]:
    rng = random.Random(seed)
    next_hash_id = 0
    family_prefixes = []
    for _ in range(NUM_FAMILIES):
        num_shared = rng.randint(1, 3)
        family_prefixes.append(list(range(next_hash_id, next_hash_id + num_shared)))
        next_hash_id += num_shared
    families = [i % NUM_FAMILIES for i in range(num_requests)]
    rng.shuffle(families)
    # Poisson arrivals conditioned on their count: the first at 0, the rest uniform over the duration
    timestamps = [0] + sorted(int(rng.uniform(0, duration_s * 1000)) for _ in range(num_requests - 1))
    records = []
    for timestamp, family in zip(timestamps, families):
        prefix = family_prefixes[family]
        # at least one block of the request's own after the family's shared blocks
        input_length = rng.randint(max(INPUT_LENGTHS[0], BLOCK_TOKENS * len(prefix) + 1), INPUT_LENGTHS[1])
        num_own = math.ceil(input_length / BLOCK_TOKENS) - len(prefix)
        hash_ids = prefix + list(range(next_hash_id, next_hash_id + num_own))
        next_hash_id += num_own
        records.append(
            {
                "timestamp": timestamp,
                "input_length": input_length,
                "output_length": rng.randint(*OUTPUT_LENGTHS),
                "hash_ids": hash_ids,
            }
        )
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-requests", type=int, default=48)
    parser.add_argument("--duration-s", type=float, default=24)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default: workloads/traces/synthetic-small.jsonl")
    args = parser.parse_args(argv)
    if args.num_requests < 1 or not args.duration_s > 0:
        parser.error("--num-requests must be >= 1 and --duration-s > 0")
    records = make_trace(args.seed, args.num_requests, args.duration_s)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    print(f"wrote {len(records)} requests to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
