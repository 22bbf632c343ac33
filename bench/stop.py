#!/usr/bin/env python3
"""`stop --all` of N running instances against `docker stop` of N
equivalent containers, several rounds taken in turn (the machine's load
changes between them), median and spread of each and of the ratio.

Usage: bench/stop.py [--count N] [--reps R] [--bin PATH] [--baseline plain|own-network]

Both sides run the local test image (its fake agent exits on SIGTERM)
with `--init`, a 64 MiB memory limit and a 2 s stop timeout. `plain`
(the default, as in `bench/run`) runs the docker side's containers on the
default bridge with no published port; `own-network` gives each one a
bridge network of its own and publishes a port on 127.0.0.1, as
ai-sessctl does (`docker stop` leaves those networks in place). Our side
also keeps each agent's output and records its end; a batch's ended
containers and their networks are removed by a detached helper after
`stop --all` returns, and the time until the last one is gone is shown too.
Needs a Docker engine and busybox-static (for the test image).
"""

import argparse
import concurrent.futures as cf
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "ai-sessions-test-agent:latest"


def sh(*args, env=None, check=True):
    r = subprocess.run(args, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and r.returncode != 0:
        sys.exit(f"bench: {' '.join(args)} failed:\n{r.stderr}")
    return r.stdout


def label_ids(kind, label):
    return sh("docker", kind, "ls", "-q", "--filter", f"label={label}",
              *(["-a"] if kind == "container" else [])).split()


def ours(binary, n):
    """Seconds for `stop --all` of n running instances, and until their
    containers and networks were gone."""
    home = tempfile.mkdtemp(prefix="ais-bench-stop-")
    projects = tempfile.mkdtemp(prefix="ais-bench-stop-proj-")
    env = dict(os.environ, AI_SESSIONS_HOME=home, NO_COLOR="1")
    with open(os.path.join(home, "config.toml"), "w") as f:
        f.write(f"""[global]
runtime = "docker"
max_instances = 500
stop_timeout = "2s"
[resources.memory]
limit = "64Mi"
[networking]
port_range = [32000, 32999]
[agents.claude]
image = "{IMAGE}"
""")
    label = f"ai.home={os.path.realpath(home)}"
    try:
        dirs = []
        for i in range(n):
            d = os.path.join(projects, f"p{i}")
            os.makedirs(d)
            dirs.append(d)
        with cf.ThreadPoolExecutor(min(n, 10)) as ex:
            list(ex.map(lambda d: sh(binary, "start", d, "--mode", "claude", "--detach", env=env), dirs))
        t = time.perf_counter()
        sh(binary, "stop", "--all", env=env)
        stop = time.perf_counter() - t
        running = sh("docker", "ps", "-q", "--filter", f"label={label}").split()
        if running:
            sys.exit(f"bench: {len(running)} containers still running after stop --all")
        deadline = time.time() + 120
        # The pool keeps its ready networks (4 by default).
        while (len(label_ids("network", label)) > 4 or label_ids("container", label)) \
                and time.time() < deadline:
            time.sleep(0.05)
        nets_gone = time.perf_counter() - t
        return stop, nets_gone
    finally:
        ids = label_ids("container", label)
        if ids:
            sh("docker", "rm", "-f", *ids, check=False)
        nets = label_ids("network", label)
        if nets:
            sh("docker", "network", "rm", *nets, check=False)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(projects, ignore_errors=True)


def docker(n, baseline):
    """Seconds for `docker stop -t 2` of n running containers."""
    tag = f"ais-bench-stop-{os.getpid()}-{time.time_ns()}"
    names = [f"{tag}-{i}" for i in range(n)]

    def run(i):
        args = ["docker", "run", "-d", "--label", "ai.bench=stop", "--name", names[i],
                "-t", "-i", "--init", "-m", "64m"]
        if baseline == "own-network":
            # A /28 each, as ours get (the engine's default pools hold
            # about thirty networks).
            subnet = f"10.213.{i // 16}.{i % 16 * 16}/28"
            sh("docker", "network", "create", "--label", "ai.bench=stop", "--subnet", subnet, names[i])
            args += ["--network", names[i], "-p", f"127.0.0.1:{33000 + i}:{33000 + i}"]
        sh(*args, IMAGE)

    try:
        with cf.ThreadPoolExecutor(min(n, 10)) as ex:
            list(ex.map(run, range(n)))
        t = time.perf_counter()
        sh("docker", "stop", "-t", "2", *names)
        return time.perf_counter() - t
    finally:
        ids = label_ids("container", "ai.bench=stop")
        if ids:
            sh("docker", "rm", "-f", *ids, check=False)
        nets = label_ids("network", "ai.bench=stop")
        if nets:
            sh("docker", "network", "rm", *nets, check=False)


def spread(xs, unit="s"):
    return f"{statistics.median(xs):.2f} {unit} ({min(xs):.2f}..{max(xs):.2f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "ai-sessctl"))
    ap.add_argument("--baseline", choices=["plain", "own-network"], default="plain")
    a = ap.parse_args()
    sh("bash", os.path.join(ROOT, "tests/fixtures/agent/build.sh"), IMAGE)
    stops, gones, dockers, ratios = [], [], [], []
    for r in range(a.reps):
        s, g = ours(a.bin, a.count)
        d = docker(a.count, a.baseline)
        stops.append(s)
        gones.append(g)
        dockers.append(d)
        ratios.append(s / d)
        print(f"round {r + 1}: stop --all {s:.2f} s (containers and networks removed after {g:.2f} s), "
              f"docker stop {d:.2f} s, ratio {s / d:.2f}x", flush=True)
    print(f"\n{a.count} instances, {a.reps} rounds, baseline {a.baseline}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"stop --all                 {spread(stops)}")
    print(f"  left removed after  {spread(gones)}")
    print(f"docker stop                {spread(dockers)}")
    print(f"ratio                      {spread(ratios, 'x')}")


if __name__ == "__main__":
    main()
