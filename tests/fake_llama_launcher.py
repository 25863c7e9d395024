"""Stands in for bench.runtimes.llama_server in tests of the crash paths no CPU here reproduces.

Reads the same settings file; with ``extra_bufts`` on it answers /v1/models but dies with SIGSEGV on
the first chat request, as llama-cpp-python 0.3.36 does on AMX CPUs; with it off it answers.
"""

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

cfg = json.load(open(sys.argv[1], encoding="utf-8"))
with open(cfg["facts"], "w", encoding="utf-8") as f:
    json.dump({"llama_cpp_python": "fake", "cpu_features": ["AMX_INT8", "AVX512"]}, f)
print("fake launcher: extra_bufts", cfg["extra_bufts"], flush=True)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _json(self, obj):
        data = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._json({"object": "list", "data": [{"id": cfg["model"]["model_alias"], "object": "model"}]})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if cfg["extra_bufts"]:
            print("ggml_backend_amx_mul_mat: general protection fault", flush=True)
            os.kill(os.getpid(), signal.SIGSEGV)
        self._json({"id": "x", "object": "chat.completion", "created": 0, "model": cfg["model"]["model_alias"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})


HTTPServer(("127.0.0.1", cfg["port"]), Handler).serve_forever()
