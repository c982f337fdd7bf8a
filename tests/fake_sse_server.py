"""A FAKE OpenAI-completions SSE server with known timings: a fake, not an engine (for HTTP mode's
known-answer tests and the client benchmarks).

Per request it streams `max_tokens` token events (`token_ids` of one id each), then a finish event, a usage
event and `data: [DONE]`, framed in chunked transfer encoding as uvicorn frames them (one HTTP chunk per
event). Every `tokens_per_write` token events go out in ONE socket write, every
`tokens_per_write * interval_ms` ms on an absolute schedule from the request's arrival; so the true
inter-token latency is `interval_ms` and the true tokens per chunk `tokens_per_write`. `interval_ms` 0:
the whole response in one write, at once (an instant server); with `write_per_event`, the instant server sends
every event in its own write and yields between them, as a real server sends one event per token (a client's
read then carries few events, not the whole body). It also answers GET /health, /v1/models and
POST /reset_prefix_cache.

    python tests/fake_sse_server.py --port P [--tokens-per-write K] [--interval-ms I] [--per-event] [--cpu C] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time


def _http_chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _event(obj) -> bytes:
    return _http_chunk(b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n")


class FakeSseServer:
    def __init__(
        self,
        tokens_per_write: int = 1,
        interval_ms: float = 10.0,
        comments: bool = False,
        write_per_event: bool = False,
    ):
        """`comments`: also send a keep-alive comment (`: ping`) and a role-only event before the tokens."""
        self.tokens_per_write, self.interval_ms, self.comments = tokens_per_write, interval_ms, comments
        self.write_per_event = write_per_event
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._instant: dict[tuple[int, int], bytes] = {}  # (max_tokens, prompt tokens) -> the whole response
        self.arrivals: list[tuple[int, object]] = []  # (perf_counter_ns when its body was read, prompt) per completion

    async def start(self, port: int = 0) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        self.server.close()
        for writer in list(self._writers):  # idle keep-alive connections end their handlers
            writer.close()
        await asyncio.sleep(0)
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                if method == "POST" and path.endswith("/v1/completions"):
                    arrived, request = time.perf_counter_ns(), json.loads(body)
                    self.arrivals.append((arrived, request.get("prompt")))
                    await self._stream(request, writer)
                else:
                    answer = b'{"data": [{"id": "fake-sse"}]}' if path.endswith("/v1/models") else b"{}"
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                        % (len(answer), answer)
                    )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _stream(self, request: dict, writer: asyncio.StreamWriter) -> None:
        start = time.perf_counter()
        n, k = int(request["max_tokens"]), self.tokens_per_write
        prompt = request.get("prompt")
        prompt_tokens = len(prompt) if isinstance(prompt, list) else len(str(prompt).split())
        if self.interval_ms <= 0 and self.write_per_event:
            await self._stream_per_event(n, prompt_tokens, writer)
            return
        if self.interval_ms <= 0 and (n, prompt_tokens) in self._instant:  # built once: the server stays cheap
            writer.write(self._instant[n, prompt_tokens])
            return
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        if self.comments:
            head += _http_chunk(b": ping\n\n") + _event({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
        tokens = [
            _event({"choices": [{"index": 0, "text": "a", "token_ids": [7], "finish_reason": None}]}) for _ in range(n)
        ]
        tail = (
            _event({"choices": [{"index": 0, "text": "", "token_ids": [], "finish_reason": "length"}]})
            + _event({"choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n}})
            + _http_chunk(b"data: [DONE]\n\n")
            + b"0\r\n\r\n"
        )
        if self.interval_ms <= 0:
            self._instant[n, prompt_tokens] = head + b"".join(tokens) + tail
            writer.write(self._instant[n, prompt_tokens])
            return
        writer.write(head)
        for index, first in enumerate(range(0, n, k)):
            due = start + (index + 1) * k * self.interval_ms / 1e3
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            writer.write(b"".join(tokens[first : first + k]) + (tail if first + k >= n else b""))
            await writer.drain()

    async def _stream_per_event(self, n: int, prompt_tokens: int, writer: asyncio.StreamWriter) -> None:
        """At once, but one write per event, yielding between writes (other connections' events interleave)."""
        token = _event({"choices": [{"index": 0, "text": "a", "token_ids": [7], "finish_reason": None}]})
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(n):
            writer.write(token)
            await writer.drain()
            await asyncio.sleep(0)
        writer.write(
            _event({"choices": [{"index": 0, "text": "", "token_ids": [], "finish_reason": "length"}]})
            + _event({"choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n}})
            + _http_chunk(b"data: [DONE]\n\n")
            + b"0\r\n\r\n"
        )


async def _main(args) -> None:
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    server = FakeSseServer(args.tokens_per_write, args.interval_ms, write_per_event=args.per_event)
    await server.start(args.port)
    print(f"fake SSE server on {server.url}", flush=True)
    await server.server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a FAKE OpenAI-completions SSE server with known timings")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens-per-write", type=int, default=1)
    parser.add_argument("--interval-ms", type=float, default=10.0)
    parser.add_argument(
        "--per-event", action="store_true", help="instant server: one write per event, not per response"
    )
    parser.add_argument("--cpu", type=int, default=None, help="pin the server to this core")
    parser.add_argument("--uvloop", action="store_true", help="serve on uvloop (if installed)")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    asyncio.run(_main(args))
