"""HTTP mode's streaming client: one POST per request, the response body read as it arrives, and the SSE
events of each read of the socket handed over together.

Why its own read loop: a line iterator (httpx's `aiter_lines`) hands k events that came in one network read
over as k lines microseconds apart, and the runner would stamp k tokens ~10 us apart while they really
arrived together (on CPU vLLM: HTTP ITL p50 0.011 ms against 3.6 ms in-process). Here every `read()` of
the socket is one batch of events, so the runner stamps it once, as it stamps a k-token chunk in-process.
h11 (the HTTP/1.1 parser under httpx) does the framing; idle connections are kept alive for the next
request, as `vllm bench serve`'s aiohttp session keeps them.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from typing import AsyncIterator
from urllib.parse import urlsplit

import h11

READ_BYTES = 1 << 16  # one read takes at most this much of what has arrived
_EVENT_END = re.compile(rb"\r?\n\r?\n")
_IGNORED_FIELDS = (b"event:", b"id:", b"retry:")


class MalformedStream(Exception):
    pass


class HttpStatusError(RuntimeError):
    def __init__(self, status: int, body: bytes):
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.status = status


class SseSplitter:
    """Raw bytes in, complete SSE events' `data` payloads out; a partial event waits for its next read.
    Comment lines (`: keep-alive`) and `event:`/`id:`/`retry:` fields carry no data and are dropped. A line
    that is none of these ends the stream: the events before it are returned, and `error` is set."""

    __slots__ = ("_pending", "error")

    def __init__(self) -> None:
        self._pending = b""
        self.error: MalformedStream | None = None

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._pending + data if self._pending else data
        if b"\r" in buffer:  # CRLF line ends (rare): the general path
            blocks = _EVENT_END.split(buffer)
        else:
            blocks = buffer.split(b"\n\n")
        self._pending = blocks.pop()  # after the last blank line: an event still arriving (or b"")
        payloads = []
        for block in blocks:
            if block.startswith(b"data: ") and b"\n" not in block:  # the common event: one data line
                payloads.append(block[6:])
            elif not self._general(block, payloads):
                break
        return payloads

    def _general(self, block: bytes, payloads: list[bytes]) -> bool:
        lines = [line for line in block.splitlines() if line and not line.startswith(b":")]
        data_lines = [line[5:].lstrip(b" ") for line in lines if line.startswith(b"data:")]
        stray = [line for line in lines if not line.startswith(b"data:") and not line.startswith(_IGNORED_FIELDS)]
        if stray:
            self.error = MalformedStream(f"malformed SSE line: {stray[0][:80].decode(errors='replace')!r}")
            return False
        if data_lines:
            payloads.append(b"\n".join(data_lines))
        return True


class ChunkedDecoder:
    """HTTP/1.1 chunked transfer coding, decoded from raw reads with `bytes.find` (h11's own reader costs ~7 us
    per chunk in pure Python, and servers send one chunk per SSE event). `done` after the last chunk and its
    trailer; `leftover` holds bytes after that (a well-behaved server sends none)."""

    __slots__ = ("_pending", "_data_left", "_crlf_left", "_in_trailer", "done", "leftover")

    def __init__(self) -> None:
        self._pending = b""
        self._data_left = self._crlf_left = 0
        self._in_trailer = self.done = False
        self.leftover = b""

    def feed(self, data: bytes) -> bytes:
        buffer = self._pending + data if self._pending else data
        self._pending = b""
        end, pos, parts = len(buffer), 0, []
        while pos < end:
            if not (self._data_left or self._crlf_left or self._in_trailer):  # fast path: a whole chunk is here
                eol = buffer.find(b"\r\n", pos)
                if 0 <= eol - pos <= 16 and buffer[pos:eol].isalnum():  # no chunk extension
                    try:
                        stop = eol + 2 + int(buffer[pos:eol], 16)
                    except ValueError:
                        raise MalformedStream(f"chunked body: bad chunk size line {buffer[pos:eol]!r}") from None
                    if stop > eol + 2 and buffer[stop : stop + 2] == b"\r\n":
                        parts.append(buffer[eol + 2 : stop])
                        pos = stop + 2
                        continue
            if self._data_left:
                take = min(self._data_left, end - pos)
                parts.append(buffer[pos : pos + take])
                pos += take
                self._data_left -= take
                if not self._data_left:
                    self._crlf_left = 2
                continue
            if self._crlf_left:
                take = min(self._crlf_left, end - pos)
                if buffer[pos : pos + take] != b"\r\n"[2 - self._crlf_left : 2 - self._crlf_left + take]:
                    raise MalformedStream("chunked body: a chunk does not end in CRLF")
                pos += take
                self._crlf_left -= take
                continue
            eol = buffer.find(b"\r\n", pos)
            if eol < 0:
                if end - pos > 4096:
                    raise MalformedStream("chunked body: a size line longer than 4 KiB")
                self._pending = buffer[pos:]
                break
            line, pos = buffer[pos:eol], eol + 2
            if self._in_trailer:
                if not line:
                    self.done, self.leftover = True, buffer[pos:]
                    break
                continue
            try:
                size = int(line.split(b";", 1)[0], 16)
            except ValueError:
                raise MalformedStream(f"chunked body: bad chunk size line {line[:40]!r}") from None
            if size:
                self._data_left = size
            else:
                self._in_trailer = True
        return b"".join(parts)


def _is_chunked(response: h11.Response) -> bool:
    return any(name == b"transfer-encoding" and b"chunked" in value.lower() for name, value in response.headers)


def _says_close(response: h11.Response) -> bool:
    return response.http_version == b"1.0" or any(
        name == b"connection" and b"close" in value.lower() for name, value in response.headers
    )


class _Connection:
    __slots__ = ("reader", "writer", "h11", "reusable")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer, self.h11 = reader, writer, h11.Connection(h11.CLIENT)
        self.reusable = False  # set when a body ended cleanly

    def close(self) -> None:
        self.writer.close()


class SseClient:
    """POSTs JSON and yields, per read of the response body, the list of SSE payloads that read completed."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None, max_idle: int = 256):
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https"):
            raise ValueError(f"endpoint must be http:// or https://, not {base_url!r}")
        self.host, self.tls = url.hostname or "127.0.0.1", url.scheme == "https"
        self.port = url.port or (443 if self.tls else 80)
        self.path_prefix = url.path.rstrip("/")
        self.headers = [
            ("Host", url.netloc),
            ("Content-Type", "application/json"),
            ("Accept", "text/event-stream"),
            *(headers or {}).items(),
        ]
        self.max_idle = max_idle
        self._idle: list[_Connection] = []

    async def _connect(self) -> _Connection:
        context = ssl.create_default_context() if self.tls else None
        reader, writer = await asyncio.open_connection(self.host, self.port, ssl=context, limit=READ_BYTES)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Connection(reader, writer)

    async def stream(self, path: str, body: bytes) -> AsyncIterator[list[bytes]]:
        """One list per read that brought body bytes (possibly empty: an event still incomplete)."""
        reused = bool(self._idle)
        conn = self._idle.pop() if reused else await self._connect()
        try:
            response = await self._send(conn, path, body)
        except (ConnectionError, h11.RemoteProtocolError, asyncio.IncompleteReadError):
            conn.close()
            if not reused:
                raise
            conn = await self._connect()  # the server closed an idle keep-alive connection: once more on a new one
            response = await self._send(conn, path, body)
        reusable = False
        try:
            if response.status_code != 200:
                raise HttpStatusError(response.status_code, await self._rest_of_body(conn))
            splitter = SseSplitter()
            reads = self._chunked_reads(conn) if _is_chunked(response) else self._body_reads(conn)
            async for data in reads:
                yield splitter.feed(data)
                if splitter.error is not None:  # after the events before it were handed over
                    raise splitter.error
            reusable = conn.reusable and not _says_close(response)
        finally:
            if reusable and len(self._idle) < self.max_idle:
                conn.h11 = h11.Connection(h11.CLIENT)
                conn.reusable = False
                self._idle.append(conn)
            else:
                conn.close()

    async def _chunked_reads(self, conn: _Connection) -> AsyncIterator[bytes]:
        """A chunked body (every SSE server's): decoded here, h11 only read the head."""
        decoder = ChunkedDecoder()
        data = conn.h11.trailing_data[0]
        while True:
            if data:
                body = decoder.feed(data)
                if body:
                    yield body
                if decoder.done:
                    conn.reusable = not decoder.leftover
                    return
            data = await conn.reader.read(READ_BYTES)
            if not data:
                raise ConnectionError("the server closed the connection in the middle of the body")

    async def _send(self, conn: _Connection, path: str, body: bytes) -> h11.Response:
        h = conn.h11
        request = h11.Request(
            method="POST", target=self.path_prefix + path, headers=[*self.headers, ("Content-Length", str(len(body)))]
        )
        conn.writer.write(h.send(request) + h.send(h11.Data(data=body)) + h.send(h11.EndOfMessage()))
        await conn.writer.drain()
        while True:
            event = h.next_event()
            if event is h11.NEED_DATA:
                h.receive_data(await self._read(conn))
            elif isinstance(event, h11.Response):
                return event
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the server closed the connection before answering")

    async def _body_reads(self, conn: _Connection) -> AsyncIterator[bytes]:
        """The body bytes per read; the first may be what came with the response head."""
        h = conn.h11
        while True:
            parts, ended = [], False
            while True:
                event = h.next_event()
                if event is h11.NEED_DATA:
                    break
                if isinstance(event, h11.Data):
                    parts.append(bytes(event.data))
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    ended = True
                    break
            if parts:
                yield b"".join(parts)
            if ended:
                conn.reusable = h.our_state is h11.DONE and h.their_state is h11.DONE
                return
            h.receive_data(await self._read(conn))

    @staticmethod
    async def _read(conn: _Connection) -> bytes:
        data = await conn.reader.read(READ_BYTES)
        if not data and conn.h11.their_state is not h11.SEND_BODY:
            raise ConnectionError("the server closed the connection")
        return data  # b"" while sending a body: h11 then ends a close-delimited body or raises

    async def _rest_of_body(self, conn: _Connection) -> bytes:
        return b"".join([data async for data in self._body_reads(conn)])

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()
