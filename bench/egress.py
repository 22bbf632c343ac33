#!/usr/bin/env python3
"""Egress policy cost: start -> running with `allowlist` vs `open`, and the
throughput of a 50 MB download through the allowlisting proxy vs a direct
one. Everything stays on this machine: the download comes from a busybox
httpd container (`big.test`) on a bench network.

Usage: bench/egress.py [--reps N] [--bin PATH]
Needs a Docker engine and the local test image (tests/fixtures/agent/build.sh).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "ai-sessions-test-agent:latest"
NET = "ais-bench-egress"
BIG = "ais-bench-egress-big"
MB = 50


def sh(*args, check=True, env=None, cwd=None):
    r = subprocess.run(args, env=env, cwd=cwd, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and r.returncode != 0:
        sys.exit(f"bench: {' '.join(args)} failed:\n{r.stderr}")
    return r.stdout


def med(samples):
    return statistics.median(samples), min(samples), max(samples)


def fmt(m, unit):
    return f"{m[0]:.1f} ({m[1]:.1f}..{m[2]:.1f}) {unit}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "ai-sessctl"))
    a = ap.parse_args()
    a.bin = os.path.abspath(a.bin)
    sh("bash", os.path.join(ROOT, "tests/fixtures/agent/build.sh"), IMAGE)
    home = tempfile.mkdtemp(prefix="ais-bench-eg-")
    os.chmod(home, 0o700)
    projects = tempfile.mkdtemp(prefix="ais-bench-eg-proj-")
    sh("docker", "rm", "-f", BIG, check=False)
    sh("docker", "network", "rm", NET, check=False)
    sh("docker", "network", "create", NET)
    sh("docker", "run", "-d", "--name", BIG, "--network", NET, "--network-alias", "big.test",
       IMAGE, "sh", "-c",
       f"mkdir -p /tmp/w && dd if=/dev/urandom of=/tmp/w/f bs=1M count={MB} 2>/dev/null"
       " && exec httpd -f -p 80 -h /tmp/w")
    time.sleep(2)

    def config(egress):
        with open(os.path.join(home, "config.toml"), "w") as f:
            f.write(f"""[networking]
port_range = [29500, 29599]
egress = "{egress}"
allow = ["big.test"]
proxy_network = "{NET}"

[global]
runtime = "docker"
stop_timeout = "2s"
max_instances = 50

[agents.claude]
image = "{IMAGE}"
env_passthrough = ["FAKE_AGENT_STAY"]
""")

    env = dict(os.environ, AI_SESSIONS_HOME=home, FAKE_AGENT_STAY="1", NO_COLOR="1")

    def ctl(*args, cwd=None, check=True):
        return sh(a.bin, *args, env=env, cwd=cwd, check=check)

    proj = os.path.join(projects, "bench")
    os.makedirs(proj)

    def start_once():
        t = time.perf_counter()
        out = ctl("start", "--mode", "claude", "--detach", cwd=proj)
        dt = (time.perf_counter() - t) * 1000
        return out.strip(), dt

    results = {}
    try:
        # Start -> running. The sidecar image is built once per binary:
        # an untimed first start builds it.
        for egress in ["open", "allowlist"]:
            config(egress)
            iid, _ = start_once()
            ctl("rm", "--force", iid)
        for egress in ["open", "allowlist"]:
            config(egress)
            samples = []
            for _ in range(a.reps):
                iid, dt = start_once()
                samples.append(dt)
                ctl("rm", "--force", iid)
            results[f"start {egress}"] = med(samples)
            print(f"start --detach -> running, egress = {egress:<9} {fmt(results[f'start {egress}'], 'ms')}", flush=True)

        # 50 MB download: direct (open; the bench attaches the agent to the
        # network of big.test) vs through the proxy (allowlist).
        def download(cid, script):
            noop = []
            full = []
            for _ in range(a.reps):
                t = time.perf_counter()
                sh("docker", "exec", cid, "sh", "-c", "true")
                noop.append(time.perf_counter() - t)
                t = time.perf_counter()
                out = sh("docker", "exec", cid, "sh", "-c", script)
                full.append(time.perf_counter() - t)
                got = int(out.strip() or 0)
                if got < MB * 1024 * 1024:
                    sys.exit(f"bench: download got {got} bytes")
            base = statistics.median(noop)
            return med([MB / max(s - base, 1e-3) for s in full])

        fetch = "printf 'GET {url} HTTP/1.0\\r\\nHost: big.test\\r\\n\\r\\n' | nc {host} {port} | wc -c"
        config("open")
        iid, _ = start_once()
        cid = f"ai-{iid}"
        cid = sh("docker", "ps", "-q", "--filter", f"label=ai.instance={iid}").split()[0]
        sh("docker", "network", "connect", NET, cid)
        results["dl open"] = download(cid, fetch.format(url="/f", host="big.test", port=80))
        print(f"{MB} MB download, direct (open)              {fmt(results['dl open'], 'MB/s')}", flush=True)
        ctl("rm", "--force", iid)
        config("allowlist")
        iid, _ = start_once()
        cid = sh("docker", "ps", "-q", "--filter", f"label=ai.instance={iid}").split()[0]
        results["dl proxy"] = download(
            cid, fetch.format(url="http://big.test/f", host="egress-proxy", port=3128))
        print(f"{MB} MB download, through the proxy           {fmt(results['dl proxy'], 'MB/s')}", flush=True)
        connect = ("printf 'CONNECT big.test:80 HTTP/1.1\\r\\n\\r\\nGET /f HTTP/1.0\\r\\nHost: big.test\\r\\n\\r\\n'"
                   " | nc egress-proxy 3128 | wc -c")
        results["dl connect"] = download(cid, connect)
        print(f"{MB} MB download, CONNECT tunnel              {fmt(results['dl connect'], 'MB/s')}", flush=True)
        ctl("rm", "--force", iid)
    finally:
        ctl("rm", "--all", "--force", check=False)
        sh("docker", "rm", "-f", BIG, check=False)
        sh("docker", "network", "rm", NET, check=False)

    s = results["start allowlist"][0] / results["start open"][0]
    d = results["dl proxy"][0] / results["dl open"][0]
    c = results["dl connect"][0] / results["dl open"][0]
    print(f"\nstart ratio allowlist/open: {s:.2f}x (goal <= 1.3x)")
    print(f"throughput ratio proxy/direct: {d:.2f}x, CONNECT/direct: {c:.2f}x (goal >= 0.8x)")


if __name__ == "__main__":
    main()
