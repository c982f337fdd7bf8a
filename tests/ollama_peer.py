"""An Ollama-protocol TEST PEER for the `ollama` adapter's tests. It is not Ollama.

It speaks real HTTP on 127.0.0.1 and streams NDJSON over /api/generate and /api/chat, and answers
/api/show, /api/ps, /api/version, /api/create and /api/blobs with the documented fields. Its tokens
come from llama.cpp (llama-cpp-python) on the GGUF the client created, so its timing fields are real.
Like Ollama it has no ignore_eos (stops at end-of-generation), serves one request at a time
(OLLAMA_NUM_PARALLEL=1), and truncates a prompt longer than num_ctx. Fault knobs: `early_stop_after`,
`error_after`, `ignore_num_ctx_above` (pretend a smaller context, to show truncation).
"""

from __future__ import annotations

import codecs
import json
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import llama_cpp

PEER_VERSION = "0.0.0-enginebench-test-peer"


class OllamaTestPeer:
    def __init__(
        self,
        blob_dir: Path,
        early_stop_after: int | None = None,
        error_after: int | None = None,
        ignore_num_ctx_above: int | None = None,
    ):
        self.blob_dir = blob_dir
        self.early_stop_after, self.error_after, self.ctx_cap = early_stop_after, error_after, ignore_num_ctx_above
        self.models: dict[str, dict] = {}  # tag -> {"path", "llm", "digest"}
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
        for model in self.models.values():
            model["llm"].close()

    # --- the model side, backed by llama.cpp ---
    def create(self, tag: str, digest: str) -> None:
        path = self.blob_dir / digest.replace(":", "-")
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=8192, n_threads=1, verbose=False)
        self.models[tag] = {"path": path, "llm": llm, "digest": digest}

    def stream(self, tag: str, prompt: str, options: dict):
        """Yields (text, done_record_or_None) per token, like Ollama's runner responses."""
        llm = self.models[tag]["llm"]
        started = time.perf_counter_ns()
        num_ctx = min(options.get("num_ctx", 2048), self.ctx_cap or 10**9)
        tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        if len(tokens) > num_ctx:  # Ollama's /api/generate truncates silently
            tokens = tokens[:1] + tokens[len(tokens) - num_ctx + 1 :]
        with self.lock:
            llm.reset()
            llama_cpp.llama_perf_context_reset(llm.ctx)
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            count, reason = 0, "length"
            for token in llm.generate(tokens, temp=options.get("temperature", 0.8), repeat_penalty=1.0, reset=True):
                if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token) or count == self.early_stop_after:
                    reason = "stop"
                    break
                if count == self.error_after:
                    yield None, {"error": "test peer: simulated runner failure"}
                    return
                count += 1
                yield decoder.decode(llm.detokenize([token])), None
                if count >= options.get("num_predict", 128):
                    break
            perf = llama_cpp.llama_perf_context(llm.ctx)
        yield (
            "",
            {
                "done": True,
                "done_reason": reason,
                "total_duration": time.perf_counter_ns() - started,
                "load_duration": 0,
                "prompt_eval_count": len(tokens),
                "prompt_eval_duration": int(perf.t_p_eval_ms * 1e6),
                "eval_count": count,
                "eval_duration": int(perf.t_eval_ms * 1e6),
            },
        )

    def details(self, tag: str) -> dict:
        metadata = self.models[tag]["llm"].metadata
        file_type = {"0": "F32", "1": "F16", "7": "Q8_0", "15": "Q4_K_M", "32": "BF16"}.get(
            metadata.get("general.file_type"), "unknown"
        )
        return {
            "format": "gguf",
            "family": metadata.get("general.architecture"),
            "parameter_size": "test",
            "quantization_level": file_type,
        }


def _handler(peer: OllamaTestPeer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _json(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                parts = []
                while (size := int(self.rfile.readline().strip().split(b";")[0], 16)) > 0:
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(parts)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _ndjson(self, lines) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for line in lines:
                data = json.dumps(line).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

        def do_HEAD(self):
            exists = (
                self.path.startswith("/api/blobs/")
                and (peer.blob_dir / self.path.rsplit("/", 1)[1].replace(":", "-")).exists()
            )
            self.send_response(200 if exists else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):
            if self.path == "/api/version":
                return self._json(200, {"version": PEER_VERSION})
            if self.path == "/api/ps":
                models = [
                    {
                        "name": tag,
                        "model": tag,
                        "size": m["path"].stat().st_size,
                        "size_vram": 0,
                        "digest": m["digest"],
                        "details": peer.details(tag),
                        "expires_at": datetime.now(timezone.utc).isoformat(),
                        "context_length": 8192,
                    }
                    for tag, m in peer.models.items()
                ]
                return self._json(200, {"models": models})
            return self._json(404, {"error": f"test peer: no route {self.path}"})

        def do_POST(self):
            body = self._body()
            if self.path.startswith("/api/blobs/"):
                (peer.blob_dir / self.path.rsplit("/", 1)[1].replace(":", "-")).write_bytes(body)
                return self._json(201, {})
            request = json.loads(body or b"{}")
            peer.requests.append({"path": self.path, **{k: v for k, v in request.items() if k != "prompt"}})
            if self.path == "/api/create":
                peer.create(request["model"], next(iter(request["files"].values())))
                return self._json(200, {"status": "success"})
            tag = request.get("model")
            if tag not in peer.models:
                return self._json(404, {"error": f"model '{tag}' not found"})
            if self.path == "/api/show":
                return self._json(
                    200,
                    {
                        "details": peer.details(tag),
                        "modelfile": "",
                        "parameters": "",
                        "template": "",
                        "model_info": {},
                        "modified_at": datetime.now(timezone.utc).isoformat(),
                    },
                )
            if self.path in ("/api/generate", "/api/chat"):
                chat = self.path == "/api/chat"
                prompt = request["messages"][-1]["content"] if chat else request.get("prompt") or ""
                if not prompt:  # an empty generate loads the model, as in Ollama
                    return self._json(200, {"model": tag, "response": "", "done": True, "done_reason": "load"})
                return self._ndjson(self._lines(tag, prompt, request.get("options") or {}, chat))
            return self._json(404, {"error": f"test peer: no route {self.path}"})

        def _lines(self, tag, prompt, options, chat):
            created = datetime.now(timezone.utc).isoformat()
            for text, final in peer.stream(tag, prompt, options):
                if final is not None and "error" in final:
                    yield final
                    return
                line = {"model": tag, "created_at": created, "done": False}
                line.update({"message": {"role": "assistant", "content": text}} if chat else {"response": text})
                if final is not None:
                    line.update(final)
                yield line

    return Handler
