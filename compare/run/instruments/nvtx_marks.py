"""NVTX ranges for Nsight Systems: one per cell around its measured part, one per request.

Domain `enginebench`. A cell's range is pushed on the event-loop thread when its first measured request is
about to go and popped after its last one ends; its message is the cell id. Requests overlap on that one
thread, so each gets a start/end range (not push/pop, which must nest): the message is the request id and the
category is the cell. Where `nvtx` is not importable (the `nvtx` extra), nothing is marked and a request pays
one ContextVar read.
"""

from __future__ import annotations

import contextvars
from typing import Any

DOMAIN = "enginebench"

# Set inside a cell's range; run_request (compare/run/send.py) reads it per request.
REQUEST_MARKS: contextvars.ContextVar[NvtxMarks | None] = contextvars.ContextVar("request_marks", default=None)


def load_nvtx() -> tuple[Any | None, str]:
    """The nvtx module, or None and why not."""
    try:
        import nvtx
    except ImportError:
        return None, "off: nvtx is not installed (pip install -e '.[nvtx]')"
    return nvtx, f"ranges per cell and per request in NVTX domain {DOMAIN!r}"


class NvtxMarks:
    """An async context manager around one cell's measured part; `num_request_ranges` counts what it marked."""

    def __init__(self, nvtx: Any, cell_id: str):
        self.nvtx, self.cell_id = nvtx, cell_id
        self.num_request_ranges = 0
        self._token: contextvars.Token | None = None

    async def __aenter__(self) -> NvtxMarks:
        self.nvtx.push_range(message=self.cell_id, domain=DOMAIN, category=self.cell_id)
        self._token = REQUEST_MARKS.set(self)
        return self

    async def __aexit__(self, *exc_info) -> None:
        REQUEST_MARKS.reset(self._token)
        self.nvtx.pop_range(domain=DOMAIN)

    def begin(self, request_id: str) -> Any:
        self.num_request_ranges += 1
        return self.nvtx.start_range(message=request_id, domain=DOMAIN, category=self.cell_id)

    def end(self, handle: Any) -> None:
        self.nvtx.end_range(handle)

    def summary(self) -> dict[str, Any]:
        return {"domain": DOMAIN, "cell_range": self.cell_id, "num_request_ranges": self.num_request_ranges}
