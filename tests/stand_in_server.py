"""A STAND-IN server for the launcher's tests: a fake, not an engine. It answers /health on 127.0.0.1.

python tests/stand_in_server.py --port P [--never-ready] [--exit-now] [--child-pid-file F]
"""

import argparse
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--never-ready", action="store_true")
parser.add_argument("--exit-now", action="store_true")
parser.add_argument("--child-pid-file")
parser.add_argument("--sse", choices=["good", "malformed"], default="good")
args = parser.parse_args()
print(f"stand-in server starting on port {args.port}", flush=True)
if args.exit_now:
    print("stand-in server: simulated startup failure (CUDA out of memory)", flush=True)
    sys.exit(3)
if args.child_pid_file:  # a grandchild in the same process group, like an engine's worker process
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    open(args.child_pid_file, "w").write(str(child.pid))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b'{"data": [{"id": "stand-in"}]}' if self.path == "/v1/models" else b""
        self.send_response(503 if args.never_ready else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # /v1/completions: two tokens, then (optionally) a line that is not SSE
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        lines = [
            b'data: {"choices": [{"text": "a", "token_ids": [1]}]}',
            b'data: {"choices": [{"text": "b", "token_ids": [2]}]}',
        ]
        lines += [b"this is not an SSE line"] if args.sse == "malformed" else []
        lines += [b'data: {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}', b"data: [DONE]"]
        body = b"\n\n".join(lines) + b"\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()  # several connections: control and streams
