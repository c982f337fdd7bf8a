"""What a request's output was, kept without its token ids: a digest of the ids, and a fingerprint of 16 bits per
token from which two runs' outputs are compared position by position (compare/analysis/agreement.py).

- `output_digest`: blake2b (64 bits) of the ids as little-endian int64: equal digests, identical outputs.
- `output_fingerprint`: per token, the top 16 bits of id x a 64-bit odd constant (Fibonacci hashing), as 4 hex
  characters. The first position where two fingerprints differ is where the outputs first differ, unless the two ids
  there collide (1 in 65,536), and then it is a later position. It is not the ids: 49,152 to 151,936 ids share 65,536
  values.

Both are computed once per request, after its end (StreamRecorder.finish), off the per-chunk path. With n > 1
sequences the ids are the engine's interleaving of them, as streamed.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
HEX_PER_TOKEN = 4


def output_digest(ids: Sequence[int]) -> str:
    return hashlib.blake2b(np.asarray(ids, dtype="<i8").tobytes(), digest_size=8).hexdigest()


def output_fingerprint(ids: Sequence[int]) -> str:
    with np.errstate(over="ignore"):  # the product wraps modulo 2^64 by design
        mixed = np.asarray(ids, dtype=np.uint64) * _MULTIPLIER
    return (mixed >> np.uint64(48)).astype(">u2").tobytes().hex()


def first_divergence(fingerprint_a: str, fingerprint_b: str) -> int | None:
    """The first token position where two outputs differ (one ending before the other differs where it ends); None
    where they are the same."""
    if fingerprint_a == fingerprint_b:
        return None
    step = HEX_PER_TOKEN
    for position in range(min(len(fingerprint_a), len(fingerprint_b)) // step):
        if (
            fingerprint_a[position * step : (position + 1) * step]
            != fingerprint_b[position * step : (position + 1) * step]
        ):
            return position
    return min(len(fingerprint_a), len(fingerprint_b)) // step
