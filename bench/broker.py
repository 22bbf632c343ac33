#!/usr/bin/env python3
"""Credential broker cost, on this machine only: the broker (`ai-sessctl net
proxy --broker-…`, a host process here as in the tests) in front of a fake
model API (bench/fake_model_api.py) vs the fake asked directly.

- throughput of a 50 MiB streamed reply (text deltas), fetched with curl
  (or http.client without it): broker / direct, goal >= 0.8x;
- per-request latency of small non-streamed calls on one keep-alive
  connection (http.client), p50 and p99 of each, broker / direct.

Usage: bench/broker.py [--reps N] [--calls N] [--bin PATH]
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 50
PLACEHOLDER = "sk-ant-api03-aisessions-" + "ab" * 24
KEY = "sk-ant-api03-bench-not-a-real-key"
STREAM = json.dumps({"model": "claude-sonnet-4-5-20250929", "max_tokens": 64, "stream": True,
                     "messages": [{"role": "user", "content": "say pong"}]})
PLAIN = json.dumps({"model": "claude-sonnet-4-5-20250929", "max_tokens": 64,
                    "messages": [{"role": "user", "content": "say pong"}]})


def med(samples):
    return statistics.median(samples), min(samples), max(samples)


def fmt(m, unit):
    return f"{m[0]:.1f} ({m[1]:.1f}..{m[2]:.1f}) {unit}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    end = time.time() + 10
    while time.time() < end:
        if proc.poll() is not None:
            sys.exit(f"bench: {what} exited")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"bench: {what} does not listen on {port}")


def fetch_stream(port, headers):
    """Seconds to fetch one streamed reply, and its size."""
    if shutil.which("curl"):
        args = ["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}", "-X", "POST",
                "--data-binary", STREAM, "-H", "content-type: application/json"]
        for k, v in headers.items():
            args += ["-H", f"{k}: {v}"]
        t = time.perf_counter()
        out = subprocess.run(args + [f"http://127.0.0.1:{port}/v1/messages"],
                             capture_output=True, text=True, check=True).stdout
        return time.perf_counter() - t, int(out)
    c = http.client.HTTPConnection("127.0.0.1", port)
    t = time.perf_counter()
    c.request("POST", "/v1/messages", STREAM, dict(headers, **{"content-type": "application/json"}))
    r = c.getresponse()
    n = 0
    while chunk := r.read(1 << 20):
        n += len(chunk)
    dt = time.perf_counter() - t
    c.close()
    return dt, n


def latencies(port, headers, calls):
    """Milliseconds per small call, one keep-alive connection."""
    c = http.client.HTTPConnection("127.0.0.1", port)
    h = dict(headers, **{"content-type": "application/json"})
    out = []
    for i in range(calls + 10):
        t = time.perf_counter()
        c.request("POST", "/v1/messages", PLAIN, h)
        r = c.getresponse()
        body = r.read()
        dt = (time.perf_counter() - t) * 1000
        if r.status != 200 or b"pong" not in body:
            sys.exit(f"bench: a call answered {r.status}: {body[:200]!r}")
        if i >= 10:  # warm-up
            out.append(dt)
    c.close()
    return out


def pct(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "ai-sessctl"))
    a = ap.parse_args()
    a.bin = os.path.abspath(a.bin)
    if not os.path.exists(a.bin):
        sys.exit(f"bench: no {a.bin} (cargo build --release)")
    work = tempfile.mkdtemp(prefix="ais-bench-broker-")
    os.chmod(work, 0o700)
    meter = os.path.join(work, "meter", "bench-claude")
    os.makedirs(meter)
    procs = []
    try:
        fport = free_port()
        fake = subprocess.Popen([sys.executable, os.path.join(ROOT, "bench/fake_model_api.py"),
                                 "--port", str(fport), "--big-mib", str(MIB)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(fake)
        wait_port(fport, fake, "the fake model API")
        with open(os.path.join(work, "rules.json"), "w") as f:
            json.dump({"instance": "bench-claude", "allow": [], "deny": []}, f)
        with open(os.path.join(work, "broker.json"), "w") as f:
            json.dump({"instance": "bench-claude", "api": "anthropic",
                       "upstream": {"tls": False, "host": "127.0.0.1", "port": fport, "base_path": ""},
                       "placeholder": PLACEHOLDER, "budget": {},
                       "prices": {"claude-sonnet-4-5": {"input_per_mtok": 3.0, "output_per_mtok": 15.0}}},
                      f)
        bport = free_port()
        broker = subprocess.Popen(
            [a.bin, "net", "proxy", "--rules", os.path.join(work, "rules.json"),
             "--events", os.path.join(work, "events.jsonl"),
             "--broker-settings", os.path.join(work, "broker.json"),
             "--broker-listen", f"127.0.0.1:{bport}", "--meter", meter],
            env=dict(os.environ, AI_SESSIONS_HOME=work), stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(broker)
        broker.stdin.write(f"{KEY}\n".encode())
        broker.stdin.close()
        wait_port(bport, broker, "the broker")
        via = {"x-api-key": PLACEHOLDER, "anthropic-version": "2023-06-01"}
        direct = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}

        # Throughput, alternating so both see the same machine load.
        fetch_stream(fport, direct)
        fetch_stream(bport, via)
        tp = {"direct": [], "broker": []}
        for _ in range(a.reps):
            for name, port, h in (("direct", fport, direct), ("broker", bport, via)):
                dt, n = fetch_stream(port, h)
                if n < MIB << 20:
                    sys.exit(f"bench: {name} stream got {n} bytes")
                tp[name].append(n / (1 << 20) / dt)
        d, b = med(tp["direct"]), med(tp["broker"])
        print(f"{MIB} MiB streamed reply, direct         {fmt(d, 'MiB/s')}", flush=True)
        print(f"{MIB} MiB streamed reply, via broker     {fmt(b, 'MiB/s')}", flush=True)

        # Latency of small calls.
        ld = latencies(fport, direct, a.calls)
        lb = latencies(bport, via, a.calls)
        for name, s in (("direct", ld), ("via broker", lb)):
            print(f"small call, {name:<11} p50 {pct(s, 50):.2f} ms  p99 {pct(s, 99):.2f} ms  ({len(s)} calls)",
                  flush=True)

        with open(os.path.join(meter, "usage.jsonl")) as f:
            recorded = sum(1 for _ in f)
        want = 1 + a.reps + a.calls + 10
        print(f"ledger: {recorded} calls recorded of {want} made through the broker")
        print(f"\nthroughput ratio broker/direct: {b[0] / d[0]:.2f}x (goal >= 0.8x)")
        print(f"latency ratio broker/direct: p50 {pct(lb, 50) / pct(ld, 50):.2f}x, "
              f"p99 {pct(lb, 99) / pct(ld, 99):.2f}x "
              f"(+{pct(lb, 50) - pct(ld, 50):.2f} ms at p50)")
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
