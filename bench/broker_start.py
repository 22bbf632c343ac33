#!/usr/bin/env python3
"""Credential broker start cost: start -> running (`ai-sessctl start
--detach`) under `open` egress with ANTHROPIC_API_KEY set on the host (the
broker sidecar joins the agent's network, the key goes to its stdin) vs the
same start without a key (no sidecar), alternating, `rm --force` between;
`docker run -d` of the same image as the reference. Median and p90.

Usage: bench/broker_start.py [--reps N] [--bin PATH]
Needs a Docker engine and the local test image (tests/fixtures/agent/build.sh).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "ai-sessions-test-agent:latest"
KEY = "sk-ant-api03-bench-not-a-real-key"


def sh(*args, check=True, env=None, cwd=None):
    r = subprocess.run(args, env=env, cwd=cwd, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and r.returncode != 0:
        sys.exit(f"bench: {' '.join(args)} failed:\n{r.stderr}")
    return r.stdout


def p90(s):
    s = sorted(s)
    return s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]


def show(name, s):
    print(f"{name:<44} median {statistics.median(s):7.1f} ms  p90 {p90(s):7.1f} ms"
          f"  ({min(s):.1f}..{max(s):.1f}, {len(s)} runs)", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "ai-sessctl"))
    a = ap.parse_args()
    a.bin = os.path.abspath(a.bin)
    if not os.path.exists(a.bin):
        sys.exit(f"bench: no {a.bin} (cargo build --release)")
    sh("bash", os.path.join(ROOT, "tests/fixtures/agent/build.sh"), IMAGE)
    home = tempfile.mkdtemp(prefix="ais-bench-bs-")
    os.chmod(home, 0o700)
    projects = tempfile.mkdtemp(prefix="ais-bench-bs-proj-")
    with open(os.path.join(home, "config.toml"), "w") as f:
        f.write(f"""[global]
runtime = "docker"
stop_timeout = "2s"
max_instances = 50

[networking]
port_range = [29600, 29699]
egress = "open"

[agents.claude]
image = "{IMAGE}"
env_passthrough = ["ANTHROPIC_API_KEY", "FAKE_AGENT_STAY"]
""")
    base = dict(os.environ, AI_SESSIONS_HOME=home, FAKE_AGENT_STAY="1", NO_COLOR="1")
    base.pop("ANTHROPIC_API_KEY", None)
    envs = {"open": base, "brokered": dict(base, ANTHROPIC_API_KEY=KEY)}
    proj = os.path.join(projects, "bench")
    os.makedirs(proj)

    def ctl(env, *args, check=True):
        return sh(a.bin, *args, env=env, cwd=proj, check=check)

    def start_once(kind):
        t = time.perf_counter()
        out = ctl(envs[kind], "start", proj, "--mode", "claude", "--detach")
        dt = (time.perf_counter() - t) * 1000
        ctl(envs[kind], "rm", "--force", out.strip())
        return dt

    def docker_run():
        t = time.perf_counter()
        cid = sh("docker", "run", "-d", "-e", "FAKE_AGENT_STAY=1", IMAGE).strip()
        dt = (time.perf_counter() - t) * 1000
        sh("docker", "rm", "-f", cid)
        return dt

    samples = {"open": [], "brokered": [], "docker run -d": []}
    try:
        # Untimed: the sidecar image is built once per binary.
        start_once("brokered")
        start_once("open")
        docker_run()
        for i in range(a.reps):
            order = ["open", "brokered"] if i % 2 == 0 else ["brokered", "open"]
            for kind in order:
                samples[kind].append(start_once(kind))
            samples["docker run -d"].append(docker_run())
    finally:
        ctl(base, "rm", "--all", "--force", check=False)
        shutil.rmtree(projects, ignore_errors=True)
    show("start --detach -> running, open, no key", samples["open"])
    show("start --detach -> running, open, brokered", samples["brokered"])
    show("docker run -d (reference)", samples["docker run -d"])
    r = statistics.median(samples["brokered"]) / statistics.median(samples["open"])
    r90 = p90(samples["brokered"]) / p90(samples["open"])
    print(f"\nstart ratio brokered/open: median {r:.2f}x, p90 {r90:.2f}x (goal <= 1.15x)")


if __name__ == "__main__":
    main()
