"""A STAND-IN server for the launcher's tests: a fake, not an engine. It answers /health on 127.0.0.1.

    python tests/stand_in_server.py --port P [--never-ready] [--exit-now] [--child-pid-file F]
"""

import argparse
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--never-ready", action="store_true")
parser.add_argument("--exit-now", action="store_true")
parser.add_argument("--child-pid-file")
args = parser.parse_args()
print(f"stand-in server starting on port {args.port}", flush=True)
if args.exit_now:
    print("stand-in server: simulated startup failure (CUDA out of memory)", flush=True)
    sys.exit(3)
if args.child_pid_file:  # a grandchild in the same process group, like an engine's worker process
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    open(args.child_pid_file, "w").write(str(child.pid))


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        status = 503 if args.never_ready else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


HTTPServer(("127.0.0.1", args.port), Handler).serve_forever()
