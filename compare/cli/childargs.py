"""The argv an isolated point's child repeats: the user's, without the options its parent sets itself."""

from __future__ import annotations

PARENT_ONLY = {
    "--engine": True,
    "--mode": True,
    "--out": True,
    "--sweep": True,
    "--ablation": True,
    "--resume": True,
    "--deadline": True,
    "--repeat-baseline": False,
    "--start-together": False,
    "--isolate": False,
    "--no-isolate": False,
    "--no-progress": False,
}  # takes a value?


def child_args(argv: list[str]) -> tuple[str, ...]:
    """argv without the options an isolated point's parent sets itself (compare/run/points/sweep.py adds its own)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in PARENT_ONLY:
            skip = PARENT_ONLY[name] and "=" not in arg
            continue
        kept.append(arg)
    return tuple(kept)
