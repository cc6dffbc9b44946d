"""What every benchmark script here shares: progress lines, JSON from a
subprocess, ports and the load generator."""

import json
import subprocess
import sys
import time


def say(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_json(cmd, timeout):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{out.stderr[-3000:]}")
    text = out.stdout.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(text.splitlines()[-1])


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def oha(oha_bin, url, body_file, c, n, timeout):
    cmd = [oha_bin, "--no-tui", "--output-format", "json", "-n", str(n), "-c", str(c), "-m", "POST",
           "-T", "application/json", "-D", str(body_file), url]
    r = run_json(cmd, timeout)
    codes = r.get("statusCodeDistribution", {})
    ok = int(codes.get("200", 0))
    lat = r.get("latencyPercentiles", {})
    return {
        "requests": n,
        "ok": ok,
        "errors": n - ok,
        "images_per_s": r["summary"]["requestsPerSec"] * ok / max(n, 1),
        "mean_ms": (r["summary"].get("average") or 0) * 1e3,
        "p50_ms": (lat.get("p50") or 0) * 1e3,
        "p99_ms": (lat.get("p99") or 0) * 1e3,
    }
