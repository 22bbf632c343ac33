#!/usr/bin/env python3
"""A fake Anthropic Messages API for benches (the tests have their own, in
Rust: tests/it/fake_model.rs). `POST /v1/messages`: with `"stream": true`
the usual event stream, its text `--big-mib` MiB of 16 KiB deltas (or
"pong"); otherwise a small JSON message. Usage is reported as the real API
does, so a broker in front of it meters every call. Keep-alive (HTTP/1.1,
streams chunked).

Usage: bench/fake_model_api.py [--port N] [--big-mib N]
Prints `listening on PORT` once it accepts connections.
"""

import argparse
import http.server
import json
import socket
import sys

PIECE = 16 << 10
USAGE = {"input_tokens": 12, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 7}


def event(name, data):
    body = f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
    return b"%x\r\n%s\r\n" % (len(body), body)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    big_mib = 0

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle
        # and the client's delayed ACK add 40 ms to every small reply.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):
        pass

    def send_json(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self):
        self.send_json(200, {})

    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        try:
            req = json.loads(self.rfile.read(n) or b"{}")
        except ValueError:
            req = {}
        if self.path.split("?")[0] != "/v1/messages":
            return self.send_json(200, {})
        model = req.get("model") or "claude-sonnet-4-5-20250929"
        if not req.get("stream"):
            return self.send_json(200, {
                "id": "msg_bench", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": "pong"}], "stop_reason": "end_turn",
                "usage": dict(USAGE, output_tokens=34)})
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        w = self.wfile
        w.write(event("message_start", {"type": "message_start", "message": {
            "id": "msg_bench", "type": "message", "role": "assistant", "model": model,
            "content": [], "usage": dict(USAGE, output_tokens=1)}}))
        w.write(event("content_block_start", {"type": "content_block_start", "index": 0,
                                              "content_block": {"type": "text", "text": ""}}))
        texts = [("x" * PIECE)] * ((self.big_mib << 20) // PIECE) if self.big_mib else ["pong"]
        delta = None
        for t in texts:
            if delta is None or t != "x" * PIECE:
                delta = event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                      "delta": {"type": "text_delta", "text": t}})
            w.write(delta)
        w.write(event("content_block_stop", {"type": "content_block_stop", "index": 0}))
        w.write(event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                        "usage": {"output_tokens": 34}}))
        w.write(event("message_stop", {"type": "message_stop"}))
        w.write(b"0\r\n\r\n")
        w.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--big-mib", type=int, default=0)
    a = ap.parse_args()
    Handler.big_mib = a.big_mib
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    print(f"listening on {srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
