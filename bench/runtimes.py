"""The component on the runtimes users run it on, run as they run it:
`wasmtime serve` (wasmtime-cli, which ./test.sh installs) and, where a Spin
CLI is installed, `spin up`. Both make an instance per request.

For each: the component's size, the start to the first 200 for the blog's
request with an empty compile cache and again with the cache the first
start wrote, the latency of one request at a time, and the memory of the
runtime's processes. A runtime that is not installed is listed as SKIPPED
with the reason, never left out silently.
"""

import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from common import free_port, oha, say

# Past this the start is reported as failed rather than waited for.
START_LIMIT_S = 900


def tree_memory_mb(pid):
    """(RSS now, largest peak RSS) over `pid` and its descendants: `spin up`
    runs its HTTP trigger as a child process."""
    pids, rss, peak = [pid], 0.0, 0.0
    while pids:
        p = pids.pop()
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
            for task in os.listdir(f"/proc/{p}/task"):
                children = open(f"/proc/{p}/task/{task}/children").read().split()
                pids.extend(int(c) for c in children)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return rss, peak


class Runtime:
    """One runtime process serving the component on a loopback port."""

    def __init__(self, cmd, port, log):
        self.url = f"http://127.0.0.1:{port}/v1/models/hf-vit:predict"
        self.started = time.perf_counter()
        self.log = log
        self.proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def first_predict(self, body):
        """Seconds from exec to the first 200, or None (see the log) if it
        exits or does not answer within START_LIMIT_S."""
        while time.perf_counter() - self.started < START_LIMIT_S:
            if self.proc.poll() is not None:
                return None
            try:
                req = urllib.request.Request(self.url, data=body, headers={"content-type": "application/json"})
                if urllib.request.urlopen(req, timeout=120).status == 200:
                    return time.perf_counter() - self.started
            except Exception:
                time.sleep(0.1)
        return None

    def stop(self):
        rss, peak = tree_memory_mb(self.proc.pid)
        # The whole group: spin's trigger child too.
        try:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, 9)
        return rss, peak


def measure(label, make_cmd, cache, body, body_file, oha_bin, n, work):
    """Two starts on one compile cache (emptied first), then `n` requests one
    at a time on the second."""
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    row = {"runtime": label}
    for start in ("first", "second"):
        port = free_port()
        log = work / f"runtime-{re.sub(r'[^a-z0-9.]+', '-', label.lower())}-{start}.log"
        say(f"{label}: {start} start (compile cache {'empty' if start == 'first' else 'warm'})")
        rt = Runtime(make_cmd(port), port, log)
        ready = rt.first_predict(body)
        row[f"{start}_start_s"] = ready
        if ready is None:
            rt.stop()
            row["error"] = f"exited or gave no 200 within {START_LIMIT_S} s; see {log}"
            say(f"{label}: FAILED, {row['error']}")
            return row
        say(f"{label}: {start} start answered after {ready:.1f} s")
        if start == "second":
            say(f"{label}: oha -c 1 -n {n}")
            row["run"] = oha(oha_bin, rt.url, body_file, 1, n, timeout=1800)
            time.sleep(1)  # the last request's instance is gone
            row["rss_after_mb"], row["peak_rss_mb"] = rt.stop()
        else:
            rt.stop()
    row["cache_mb"] = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 2**20
    return row


def wasmtime_cache_config(work):
    cache = work / "wasmtime-serve-cache"
    config = work / "wasmtime-serve-cache.toml"
    config.write_text(f'[cache]\ndirectory = "{cache}"\n')
    return cache, config


def wasmtime_rows(wasmtime, plain, snapshot, model_dir, body, body_file, oha_bin, n, work):
    version = subprocess.run([wasmtime, "--version"], capture_output=True, text=True).stdout.split()[1]
    cache, config = wasmtime_cache_config(work)
    base = [wasmtime, "serve", "-Scli", "-Ccache=y", f"-Ccache-config={config}"]
    rows = []
    for what, component, extra in [
        ("plain build, model as --dir", plain,
         [f"--dir={model_dir}::/model", "--env=VITRINE_MODEL_DIR=/model"]),
        # README's option: the snapshot's heap as a copy-on-write image.
        ("pre-initialized build", snapshot, ["-Omemory-guaranteed-dense-image-size=2147483648"]),
    ]:
        label = f"wasmtime serve {version}, {what}"
        row = measure(label, lambda port: [*base, f"--addr=127.0.0.1:{port}", *extra, component],
                      cache, body, body_file, oha_bin, n, work)
        row["component_mb"] = Path(component).stat().st_size / 2**20
        rows.append(row)
    return rows


def spin_rows(spin, snapshot, body, body_file, oha_bin, n, work):
    version = subprocess.run([spin, "--version"], capture_output=True, text=True).stdout.split()[1]
    # The repository's spin.toml with the snapshot bench.py made: the same
    # route, variables and component settings users get.
    manifest = work / "spin-app" / "spin.toml"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    text = (Path(__file__).resolve().parent.parent / "spin.toml").read_text()
    text = text.replace('source = "target/spin/vitrine-hf-vit-1.wasm"', f'source = "{snapshot}"')
    manifest.write_text(text.split("[component.vitrine.build]")[0])
    cache, config = wasmtime_cache_config(work / "spin-app")
    label = f"spin up {version}, pre-initialized Spin build"
    row = measure(label, lambda port: [spin, "up", "-f", manifest, "--listen", f"127.0.0.1:{port}",
                                       "--cache", config],
                  cache, body, body_file, oha_bin, n, work)
    row["component_mb"] = Path(snapshot).stat().st_size / 2**20
    return [row]


def find_tool(env, installed):
    path = os.environ.get(env) or (str(installed) if installed.is_file() else shutil.which(installed.name))
    return path if path and os.access(path, os.X_OK) else None


def runtimes(args, work, body, body_file, scale):
    """Both runtimes on the ViT-B/16 demo model; the plain and Spin builds and
    their snapshots come from ./bench.sh (--plain-component,
    --spin-component)."""
    tools = Path(os.environ.get("VITRINE_TOOLS_DIR", Path.home() / ".cache/vitrine-tools"))
    n = max(3, int(8 * scale))
    model_dir = work / "models/hf-vit/1"
    rows, skipped = [], []

    def snapshot_of(component, name):
        out = work / name
        say(f"vitrine preinit: {Path(component).name} with ViT-B/16 loaded -> {out.name}")
        subprocess.run([args.vitrine, "preinit", "--component", component, "--model", model_dir,
                        "--model_name", "hf-vit", "--model_version", "1", "--out", out],
                       check=True, capture_output=True)
        return out

    wasmtime = find_tool("VITRINE_WASMTIME", tools / "bin/wasmtime")
    if wasmtime and args.plain_component:
        snapshot = snapshot_of(args.plain_component, "runtimes-plain-preinit.wasm")
        rows += wasmtime_rows(wasmtime, args.plain_component, snapshot, model_dir, body, body_file,
                              args.oha, n, work)
    else:
        skipped.append("wasmtime serve: no wasmtime-cli (./test.sh installs it into "
                       f"{tools}/bin, or set VITRINE_WASMTIME) or no --plain-component")
    spin = find_tool("VITRINE_SPIN", tools / "spin/bin/spin")
    if spin and args.spin_component:
        snapshot = snapshot_of(args.spin_component, "runtimes-spin-preinit.wasm")
        rows += spin_rows(spin, snapshot, body, body_file, args.oha, n, work)
    else:
        skipped.append("spin up: no Spin CLI (set VITRINE_SPIN, or build Spin from source into "
                       f"{tools}/spin/bin/spin; DEPLOY.md) or no --spin-component")
    for s in skipped:
        say(f"SKIPPED: {s}")
    return {"rows": rows, "skipped": skipped}
