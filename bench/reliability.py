"""Vitrine's reliability run: minutes of mixed, hostile load against the
real release server on loopback; writes RELIABILITY.md.

A steady mixed load (valid and invalid requests from a few clients, on REST
v1 and KServe v2) runs from start to end. On top of it, one after another:
an overload phase at four times the server's capacity, a phase of clients
that hang up mid-request, and a phase of slow clients (slowloris headers,
stalled bodies). Throughout, /healthz is probed every second and the
server's RSS sampled from /proc/<pid>/status.

The run passes when: no valid request of the steady load fails (5xx or a
broken connection), except 503 while the overload phase runs; every probe
answers 200 within 1 s; every slow client is cut off by the server's
timeouts (connection closed, or 408); and the server still answers at the
end. A run of 1800 s or more is a soak: the phases repeat in cycles (600 s
by default), latency is reported per 5 minutes and RSS every minute, and
RSS's slope over the last 30 minutes must stay within a bound. Each kind of
run writes its own section of RELIABILITY.md. Python standard library only.

    reliability.py --vitrine target/release/vitrine [--duration 180] [--out RELIABILITY.md]
"""

import argparse
import base64
import datetime
import http.client
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter, defaultdict
from pathlib import Path

from reliability_common import ROOT, machine, say, write_section
from reliability_swaps import swap_runs

MODEL = "hf-vit"
PREDICT = f"/v1/models/{MODEL}:predict"
INFER = f"/v2/models/{MODEL}/infer"


# A soak's RSS may drift by this much per hour over its last 30 minutes.
SLOPE_BOUND_MB_PER_HOUR = 10


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def png_claiming(width, height):
    """A PNG header that claims width x height pixels and carries nothing:
    a decompression bomb's first bytes."""
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


class Stats:
    """Every request's outcome, thread-safe."""

    def __init__(self):
        self.lock = threading.Lock()
        self.records = []  # (kind, valid, phase, started, seconds, status or error text)

    def add(self, kind, valid, phase, started, seconds, outcome):
        with self.lock:
            self.records.append((kind, valid, phase, started, seconds, outcome))


class Run:
    def __init__(self, args):
        self.args = args
        self.stats = Stats()
        self.stop = threading.Event()
        self.phase = "steady"
        self.phase_log = []  # [name, start, end (relative to t0), RSS MB at its end]
        self.t0 = None
        self.port = free_port()
        self.health = []  # (t, ok, seconds)
        self.rss = []  # (t, MB)
        self.slow = Counter()  # slow-client outcomes
        images = sorted((ROOT / "../shared/images").glob("*"))
        if not images:
            sys.exit("../shared/images is empty: the run sends its photos")
        self.valid_bodies = []
        for image in images:
            b64 = base64.urlsafe_b64encode(image.read_bytes()).decode()
            self.valid_bodies.append(("v1", PREDICT, json.dumps(
                {"signature_name": "serving_default", "instances": [b64]}).encode()))
            self.valid_bodies.append(("v2", INFER, json.dumps(
                {"inputs": [{"name": "string_input", "datatype": "BYTES", "shape": [1], "data": [b64]}]}).encode()))
        photo = base64.b64encode(images[0].read_bytes()).decode()
        self.long_body = json.dumps({"instances": [photo] * 8}).encode()
        self.invalid_bodies = [
            ("bad base64", "POST", PREDICT, json.dumps({"instances": ["not base64!"]}).encode(), 400),
            ("not JSON", "POST", PREDICT, b'{"instances": [', 400),
            ("not an image", "POST", PREDICT,
             json.dumps({"instances": [base64.b64encode(b"hello").decode()]}).encode(), 400),
            ("pixel bomb", "POST", PREDICT,
             json.dumps({"instances": [base64.b64encode(png_claiming(100000, 100000)).decode()]}).encode(), 400),
            ("deep JSON", "POST", PREDICT, b"[" * 5000 + b"]" * 5000, 400),
            ("too many instances", "POST", PREDICT, json.dumps({"instances": ["aGk"] * 1000}).encode(), 400),
            ("unknown model", "POST", "/v1/models/nope:predict", self.valid_bodies[0][2], 404),
            ("wrong method", "GET", PREDICT, None, 405),
            ("bad v2 input", "POST", INFER, json.dumps({"inputs": [{"name": "x"}]}).encode(), 400),
        ]

    # -- the server -------------------------------------------------------

    def server_flags(self):
        a = self.args
        return [
            f"--inference={a.inference}",
            f"--tensorflow_inter_op_parallelism={a.instances}",
            f"--max_queued_requests={a.queue}",
            f"--rest_api_header_read_timeout_in_ms={a.header_timeout_ms}",
            f"--rest_api_body_read_timeout_in_ms={a.body_timeout_ms}",
            "--max_request_bytes=8000000",
        ]

    def start_server(self, base, log):
        # Cranelift in its own process first: compiling inside the server
        # would put a one-off 400 MB in its RSS at start.
        say("compiling the component (cached after the first run)")
        subprocess.run([self.args.vitrine, "compile", f"--cache-dir={Path(self.args.work) / 'cache'}"],
                       check=True, capture_output=True)
        cmd = [self.args.vitrine, "serve", "--rest_api_host=127.0.0.1", f"--rest_api_port={self.port}",
               "--port=0", f"--model_name={MODEL}", f"--model_base_path={base}", *self.server_flags(),
               f"--cache_dir={Path(self.args.work) / 'cache'}"]
        self.command = " ".join(str(c) for c in cmd)
        say(f"starting: {self.command}")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
        deadline = time.time() + 600
        while time.time() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"vitrine exited with {self.proc.returncode}; see {log}")
            try:
                status, _ = self.request("GET", "/readyz", None, timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        sys.exit("vitrine was not ready within 10 minutes")

    def request(self, method, path, body, timeout=60, conn=None):
        """One HTTP request; returns (status, body bytes). Raises OSError or
        http.client errors on broken connections."""
        own = conn is None
        if own:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            headers = {"content-type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            if own:
                conn.close()

    def engine(self):
        """The native engine the server's log says it loaded the model on."""
        try:
            log = (Path(self.args.work) / "server.log").read_text()
        except OSError:
            return "unknown"
        found = [line.split("loaded on the ", 1)[1].split()[0] for line in log.splitlines()
                 if "loaded on the " in line]
        return found[0] if found else "the guest's tract" if self.args.inference == "guest" else "unknown"

    def now(self):
        return time.time() - self.t0

    # -- load -------------------------------------------------------------

    def mixed_client(self, seed, invalid_share, kind, stop):
        """Valid and invalid requests back to back until `stop`, each on a
        new connection: a keep-alive connection the server closes for being
        idle (its header timeout) must not count as a failed request."""
        rng = random.Random(seed)
        while not stop.is_set():
            if rng.random() < invalid_share:
                name, method, path, body, expect = rng.choice(self.invalid_bodies)
                valid = False
            else:
                name, path, body = rng.choice(self.valid_bodies)
                method, valid, expect = "POST", True, 200
            phase, started = self.phase, self.now()
            t = time.perf_counter()
            try:
                outcome, _ = self.request(method, path, body, timeout=120)
            except (OSError, http.client.HTTPException) as e:
                outcome = f"connection error: {type(e).__name__}"
            self.stats.add(kind, valid, phase, started, time.perf_counter() - t, outcome)

    def disconnecting_client(self, seed, until):
        """Sends a request and hangs up: mid-body, or with the request sent
        but before the reply (a long one, so it is running or queued)."""
        rng = random.Random(seed)
        while not self.stop.is_set() and self.now() < until:
            body = self.long_body
            head = (f"POST {PREDICT} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(body)}\r\n\r\n").encode()
            mid_body = rng.random() < 0.5
            started, t = self.now(), time.perf_counter()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
                    s.sendall(head + (body[: len(body) // 2] if mid_body else body))
                    time.sleep(rng.uniform(0.01, 0.3))
                outcome = "hung up mid-body" if mid_body else "hung up awaiting the reply"
            except OSError as e:
                outcome = f"connection error: {type(e).__name__}"
            self.stats.add("disconnect", False, self.phase, started, time.perf_counter() - t, outcome)
            time.sleep(rng.uniform(0.05, 0.2))

    def slow_client(self, seed, until, stalled_body):
        """A slowloris (headers a byte at a time) or a stalled body; checks
        the server cuts it off within twice its timeout."""
        rng = random.Random(seed)
        while not self.stop.is_set() and self.now() < until:
            started, t = self.now(), time.perf_counter()
            timeout = (self.args.body_timeout_ms if stalled_body else self.args.header_timeout_ms) / 1000
            outcome = None
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=2 * timeout + 5)
                if stalled_body:
                    s.sendall((f"POST {PREDICT} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"
                               "content-length: 100000\r\n\r\n{\"instances\": [\"").encode())
                else:
                    s.settimeout(0.2)
                    head = f"POST {PREDICT} HTTP/1.1\r\nhost: localhost\r\nx-filler: {'a' * 200}\r\n"
                    for byte in head.encode():
                        s.sendall(bytes([byte]))
                        try:
                            if s.recv(1) == b"":
                                break
                        except socket.timeout:
                            pass
                        if time.perf_counter() - t > 2 * timeout + 5:
                            break
                    s.settimeout(max(0.1, 2 * timeout + 5 - (time.perf_counter() - t)))
                received = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    received += chunk
                s.close()
                if stalled_body:
                    outcome = "408" if received.startswith(b"HTTP/1.1 408") else f"unexpected: {received[:40]!r}"
                else:
                    outcome = "closed" if not received else f"unexpected: {received[:40]!r}"
            except ConnectionResetError:
                outcome = "reset" if not stalled_body else "unexpected: reset"
            except BrokenPipeError:
                outcome = "closed" if not stalled_body else "unexpected: broken pipe"
            except socket.timeout:
                outcome = "NOT CUT OFF"
            except OSError as e:
                outcome = f"connection error: {type(e).__name__}"
            elapsed = time.perf_counter() - t
            self.slow[("stalled body" if stalled_body else "slowloris", outcome)] += 1
            self.stats.add("slow", False, self.phase, started, elapsed, outcome)
            time.sleep(rng.uniform(0, 0.2))

    def prober(self):
        while not self.stop.is_set():
            t = time.perf_counter()
            try:
                status, _ = self.request("GET", "/healthz", None, timeout=1)
                ok = status == 200
            except (OSError, http.client.HTTPException):
                ok = False
            self.health.append((self.now(), ok, time.perf_counter() - t))
            self.stop.wait(1)

    def sampler(self):
        while not self.stop.is_set():
            mb = rss_mb(self.proc.pid)
            if mb is not None:
                self.rss.append((self.now(), mb))
            self.stop.wait(1)

    # -- the run ----------------------------------------------------------

    def set_phase(self, name):
        now = self.now()
        if self.phase_log:
            self.phase_log[-1][2] = now
            self.phase_log[-1][3] = rss_mb(self.proc.pid)
        self.phase_log.append([name, now, None, None])
        self.phase = name
        say(f"phase: {name}")

    def run_cycle(self, t0, d, capacity):
        """One steady, overload, disconnects, slow clients, recovery cycle
        from `t0`, `d` seconds long."""
        a = self.args
        bounds = [t0 + f * d for f in (0.2, 0.4, 0.6, 0.85)]

        def wait_until(t):
            while self.now() < t:
                time.sleep(0.1)

        if t0 > 0:
            self.set_phase("steady")
        wait_until(bounds[0])
        self.set_phase("overload")
        overload_stop = threading.Event()
        overload = [threading.Thread(target=self.mixed_client, args=(1000 + i, 0.0, "overload", overload_stop),
                                     daemon=True)
                    for i in range(4 * capacity)]
        for t in overload:
            t.start()
        wait_until(bounds[1])
        overload_stop.set()
        for t in overload:
            t.join(timeout=130)
        self.set_phase("disconnects")
        dis = [threading.Thread(target=self.disconnecting_client, args=(2000 + i, bounds[2]), daemon=True)
               for i in range(a.disconnectors)]
        for t in dis:
            t.start()
        for t in dis:
            t.join()
        self.set_phase("slow clients")
        slow = [threading.Thread(target=self.slow_client, args=(3000 + i, bounds[3], i % 4 == 0), daemon=True)
                for i in range(a.slow_clients)]
        for t in slow:
            t.start()
        for t in slow:
            t.join(timeout=2 * max(a.header_timeout_ms, a.body_timeout_ms) / 1000 + 30)
        self.set_phase("recovery")
        wait_until(t0 + d)

    def run(self):
        a = self.args
        work = Path(a.work)
        work.mkdir(parents=True, exist_ok=True)
        base = work / "models" / a.model / MODEL
        if not (base / "1" / "model.onnx").is_file():
            say(f"writing the {a.model} demo model")
            subprocess.run([a.vitrine, "demo-model", "--size", a.model, "--out", str(base / "1")], check=True)
        log = work / "server.log"
        self.start_server(base, log)
        self.t0 = time.time()
        self.rss_ready = rss_mb(self.proc.pid)
        capacity = a.instances + a.queue
        threads = [threading.Thread(target=self.prober, daemon=True),
                   threading.Thread(target=self.sampler, daemon=True)]
        threads += [threading.Thread(target=self.mixed_client, args=(i, a.invalid_share, "steady", self.stop),
                                     daemon=True)
                    for i in range(a.clients)]
        self.set_phase("steady")
        for t in threads:
            t.start()
        cycle = a.cycle
        start = 0.0
        while start < a.duration - 1:
            length = min(cycle, a.duration - start)
            self.run_cycle(start, length, capacity)
            start += length
        self.stop.set()
        self.phase_log[-1][2] = self.now()
        self.phase_log[-1][3] = rss_mb(self.proc.pid)
        for t in threads[2:]:
            t.join(timeout=130)
        time.sleep(2)
        self.rss_end = rss_mb(self.proc.pid)
        try:
            final, _ = self.request("POST", PREDICT, self.valid_bodies[0][2], timeout=60)
        except (OSError, http.client.HTTPException) as e:
            final = f"error: {e}"
        try:
            ready, _ = self.request("GET", "/readyz", None, timeout=5)
        except (OSError, http.client.HTTPException) as e:
            ready = f"error: {e}"
        self.final = (final, ready, self.proc.poll() is None)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.save()
        return self.report(capacity)

    # Everything the report reads, kept so a report can be written again
    # (`--report-only`) without another run.
    SAVED = ("records", "rss", "health", "phase_log", "slow", "final", "command", "rss_ready", "rss_end")

    def save(self):
        state = {k: getattr(self, k) for k in self.SAVED if k not in ("records", "slow")}
        state["records"] = self.stats.records
        state["slow"] = [[k[0], k[1], n] for k, n in self.slow.items()]
        (Path(self.args.work) / "last-run.json").write_text(json.dumps(state))

    def load(self):
        state = json.loads((Path(self.args.work) / "last-run.json").read_text())
        self.stats.records = [tuple(r) for r in state.pop("records")]
        self.slow = Counter({(k, o): n for k, o, n in state.pop("slow")})
        for k, v in state.items():
            setattr(self, k, v)
        return self.report(self.args.instances + self.args.queue)

    # -- the report -------------------------------------------------------

    def report(self, capacity):
        a = self.args
        records = self.stats.records
        overload_windows = [p for p in self.phase_log if p[0] == "overload"]

        def in_overload(started):
            # A request started just after the phase may still meet its queue.
            return any(w[1] <= started <= w[2] + 2 for w in overload_windows)

        by_kind_status = defaultdict(Counter)
        failures = Counter()
        for kind, valid, phase, started, seconds, outcome in records:
            by_kind_status[kind][outcome] += 1
            if kind in ("steady", "overload") and valid:
                ok = outcome == 200 or (outcome == 503 and (kind == "overload" or in_overload(started)))
                if not ok:
                    failures[(kind, outcome)] += 1
            if kind == "steady" and not valid and (not isinstance(outcome, int) or outcome >= 500):
                # Bad input is never worth a 5xx, except a 503 shed under overload.
                if not (outcome == 503 and in_overload(started)):
                    failures[(kind + " (invalid)", outcome)] += 1
        slow_failures = {k: v for k, v in self.slow.items() if k[1] not in ("closed", "reset", "408")}
        health_failures = [h for h in self.health if not h[1]]
        final_ok = self.final[0] == 200 and self.final[1] == 200 and self.final[2]
        soak = a.duration >= 1800
        # Least squares over the last 30 minutes' samples, in MB per hour.
        tail_rss = [(t, m) for t, m in self.rss if t >= a.duration - 1800] if soak else []
        slope = None
        if len(tail_rss) >= 2:
            mt = sum(t for t, _ in tail_rss) / len(tail_rss)
            mm = sum(m for _, m in tail_rss) / len(tail_rss)
            var = sum((t - mt) ** 2 for t, _ in tail_rss)
            slope = 3600 * sum((t - mt) * (m - mm) for t, m in tail_rss) / var if var else 0.0
        flat = slope is None or abs(slope) <= SLOPE_BOUND_MB_PER_HOUR
        passed = not failures and not slow_failures and not health_failures and final_ok and flat

        bucket = 300 if soak else 60
        minutes = defaultdict(list)
        last_bucket = max(0, int((a.duration - 1) // bucket))
        for kind, valid, phase, started, seconds, outcome in records:
            if kind == "steady" and valid and outcome == 200:
                # The last requests may start a moment after the run's end.
                minutes[min(int(started // bucket), last_bucket)].append(seconds)
        phase_lat = defaultdict(list)
        for kind, valid, phase, started, seconds, outcome in records:
            if kind == "steady" and valid and outcome == 200:
                phase_lat[phase].append(seconds)
        rss_values = [m for _, m in self.rss]

        def ms(x):
            return "–" if x is None else f"{x * 1000:.1f}"

        title = (f"Soak: {a.duration / 60:.0f} minutes of mixed and hostile load, {a.model} model, {a.inference} path"
                 if soak else f"Mixed and hostile load: {a.duration:.0f} s, {a.model} model, {a.inference} path")
        lines = [
            f"## {title}",
            "",
            f"Written by `./reliability.sh` (`bench/reliability.py`) on {datetime.date.today().isoformat()}: "
            f"{a.duration:.0f} s of mixed and hostile load against the release `vitrine serve` on loopback"
            + (f", in cycles of {a.cycle:.0f} s." if a.cycle < a.duration else "."),
            "",
            f"**Verdict: {'PASS' if passed else 'FAIL'}** — "
            + ("no valid request failed outside the overload phases' 503s, every health probe answered, "
               "every slow client was cut off, "
               + (f"RSS was flat over the last 30 minutes ({slope:+.1f} MB/hour, bound "
                  f"±{SLOPE_BOUND_MB_PER_HOUR} MB/hour), " if slope is not None else "")
               + "and the server served normally at the end."
               if passed else "see the failures below."),
            "",
            "### Setup",
            "",
            f"- Machine: {machine()}.",
        ]
        if a.note:
            lines.append(f"- Note: {a.note}")
        lines += [
            f"- Model: the {a.model} demo ViT, {a.inference} path; capacity {capacity} requests in flight "
            f"({a.instances} instances + {a.queue} queue places).",
            f"- Engine: {self.engine()}.",
            f"- Server: `{self.command}`",
            f"- Run: `{os.environ.get('VITRINE_RELIABILITY_COMMAND') or ' '.join(sys.argv)}`",
            f"- Load: {a.clients} steady clients throughout ({a.invalid_share:.0%} invalid requests: "
            + ", ".join(name for name, *_ in self.invalid_bodies)
            + f"); valid ones alternate REST v1 predict and KServe v2 infer over {len(self.valid_bodies) // 2} photos.",
            "",
            "### Phases",
            "",
            "| phase | from | to | on top of the steady load | RSS at its end |",
            "|---|---|---|---|---|",
        ]
        extra = {
            "steady": "nothing",
            "overload": f"{4 * capacity} more clients back to back, valid requests only (4x capacity)",
            "disconnects": f"{a.disconnectors} clients that send an 8-image predict and hang up, mid-body or awaiting the reply",
            "slow clients": f"{a.slow_clients} slow clients: slowloris headers (a byte per 0.2 s; header timeout "
                            f"{a.header_timeout_ms} ms) and stalled bodies (body timeout {a.body_timeout_ms} ms)",
            "recovery": "nothing",
        }
        for name, start, end, rss in self.phase_log:
            lines.append(f"| {name} | {start:.0f} s | {end:.0f} s | {extra.get(name, '')} | {rss:.0f} MB |")
        total = len(records)
        lines += [
            "",
            "### Requests",
            "",
            f"{total} requests tried.",
            "",
            "| client | outcome | count |",
            "|---|---|---|",
        ]
        for kind in ("steady", "overload", "disconnect", "slow"):
            for outcome, n in sorted(by_kind_status[kind].items(), key=lambda kv: str(kv[0])):
                lines.append(f"| {kind} | {outcome} | {n} |")
        valid_steady = [r for r in records if r[0] == "steady" and r[1]]
        fivexx = [r for r in valid_steady if not isinstance(r[5], int) or r[5] >= 500]
        fivexx_outside = [r for r in fivexx if not (r[5] == 503 and in_overload(r[3]))]
        lines += [
            "",
            f"Valid steady-load requests: {len(valid_steady)}; 5xx or broken: {len(fivexx)}, "
            f"of which outside the overload phase's 503s: **{len(fivexx_outside)}**.",
        ]
        if failures:
            lines += ["", "Failures:", ""] + [f"- {k[0]}: {k[1]} × {n}" for k, n in failures.items()]
        if not flat:
            lines += ["", f"RSS grew {slope:+.1f} MB/hour over the last 30 minutes (bound ±{SLOPE_BOUND_MB_PER_HOUR})."]
        if slow_failures:
            lines += ["", "Slow clients not cut off as they should be:", ""] + [
                f"- {k[0]}: {k[1]} × {n}" for k, n in slow_failures.items()]
        lines += [
            "",
            "### Latency of valid steady-load requests (200s)",
            "",
            f"| {'minutes' if soak else 'minute'} | requests | p50 ms | p99 ms |",
            "|---|---|---|---|",
        ]
        for minute in sorted(minutes):
            v = minutes[minute]
            when = f"{minute * 5}–{minute * 5 + 5}" if soak else f"{minute}"
            lines.append(f"| {when} | {len(v)} | {ms(percentile(v, 50))} | {ms(percentile(v, 99))} |")
        served = Counter(phase for kind, valid, phase, _, _, outcome in records
                         if kind in ("steady", "overload") and outcome == 200)
        lines += ["", "| phase | requests | p50 ms | p99 ms | all 200s per second (steady + overload clients) |",
                  "|---|---|---|---|---|"]
        spent = defaultdict(float)
        for name, start, end, _ in self.phase_log:
            spent[name] += end - start
        for name in dict.fromkeys(p[0] for p in self.phase_log):
            v = phase_lat[name]
            rate = served[name] / max(spent[name], 1e-9)
            lines.append(f"| {name} | {len(v)} | {ms(percentile(v, 50))} | {ms(percentile(v, 99))} | {rate:.1f} |")
        lines += [
            "",
            "The load generator (Python threads) runs on the same cores as the server: in the overload phase",
            "its clients send several hundred requests a second, and the CPU they take is the instances'.",
            "A request whose client hung up after sending it still runs to its end on its instance (the guest is",
            "not interrupted, only its reply dropped), so the hang-up phase's 8-image requests take instance time",
            "from the steady load.",
        ]
        cut = defaultdict(list)
        for kind, valid, phase, started, seconds, outcome in records:
            if kind == "slow" and outcome in ("closed", "reset"):
                cut["slowloris headers"].append(seconds)
            elif kind == "slow" and outcome == "408":
                cut["stalled body"].append(seconds)
        if cut:
            lines += ["", "### Slow clients", "", "| client | cut off | after (p50) | after (max) | timeout |",
                      "|---|---|---|---|---|"]
            for name, timeout in (("slowloris headers", a.header_timeout_ms), ("stalled body", a.body_timeout_ms)):
                v = cut[name]
                how = "408, closed" if name == "stalled body" else "closed"
                lines.append(f"| {name} | {len(v)} × {how} | {ms(percentile(v, 50))} ms | {ms(max(v) if v else None)} ms "
                             f"| {timeout} ms |")
        probe_times = [h[2] for h in self.health]
        tail_from = self.phase_log[-2][1] if len(self.phase_log) >= 2 else 0
        tail = [m for t, m in self.rss if t >= tail_from] or rss_values
        if soak:
            lines += ["", "### RSS every minute", "",
                      "| minute | RSS MB | minute | RSS MB | minute | RSS MB | minute | RSS MB |",
                      "|---|---|---|---|---|---|---|---|"]
            per_minute = {}
            for t, m in self.rss:
                per_minute.setdefault(int(t // 60), m)
            cells = [f"{k} | {v:.0f}" for k, v in sorted(per_minute.items())]
            rows = (len(cells) + 3) // 4
            for r in range(rows):
                row = [cells[r + rows * c] if r + rows * c < len(cells) else " | " for c in range(4)]
                lines.append("| " + " | ".join(row) + " |")
            lines += ["", f"Slope over the last 30 minutes ({len(tail_rss)} samples, least squares): "
                          f"**{slope:+.1f} MB/hour**; RSS there {min(m for _, m in tail_rss):.0f}–"
                          f"{max(m for _, m in tail_rss):.0f} MB." if tail_rss else "No RSS samples."]
        lines += [
            "",
            "### Memory and health",
            "",
            f"- RSS: {self.rss_ready:.0f} MB when ready, {self.rss_end:.0f} MB after the load "
            f"(max {max(rss_values):.0f} MB, sampled every second; per phase above); over the last two phases "
            f"({tail_from:.0f} s to the end) it stayed within {min(tail):.0f}–{max(tail):.0f} MB. "
            "A wasm instance's linear memory never shrinks: it grows to what the largest request so far needed "
            "(the hang-up phase sends 8-image requests), so growth that stops once every request size has been "
            "seen is expected; growth that goes on would be a leak.",
            f"- Health probes (`/healthz`, 1 s timeout, every second): {len(self.health)} sent, "
            f"{len(health_failures)} failed; slowest {max(probe_times) * 1000:.0f} ms.",
            f"- After the run: predict {self.final[0]}, `/readyz` {self.final[1]}, "
            f"process {'alive' if self.final[2] else 'DEAD'}.",
            "",
            "Slow clients and hang-ups tie up a connection, never an instance or a queue place: bodies are read",
            "whole before a request is admitted, and a request whose client left gives its place back.",
            "",
        ]
        write_section(Path(a.out), "soak" if soak else "mixed", lines)
        say(f"wrote {a.out}: {'PASS' if passed else 'FAIL'}; {total} requests; "
            f"RSS {self.rss_ready:.0f} -> {self.rss_end:.0f} MB (max {max(rss_values):.0f})")
        return 0 if passed else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vitrine", help="the release vitrine binary")
    p.add_argument("--swaps", type=int, default=None,
                   help="instead of a load run: the e2e hot-swap tests with this many swaps each")
    p.add_argument("--duration", type=float, default=180,
                   help="seconds in all (default 180); 1800 or more is a soak: latency per 5 minutes, RSS every "
                        "minute and its slope over the last 30 minutes")
    p.add_argument("--cycle", type=float, default=None,
                   help="seconds per steady/overload/disconnects/slow/recovery cycle (default: one cycle up to "
                        "900 s, then 600 s cycles)")
    p.add_argument("--model", choices=["tiny", "base"], default="tiny", help="demo model size (default tiny)")
    p.add_argument("--inference", choices=["host", "guest"], default="host")
    p.add_argument("--instances", type=int, default=2, help="--tensorflow_inter_op_parallelism (default 2)")
    p.add_argument("--queue", type=int, default=6, help="--max_queued_requests (default 6)")
    p.add_argument("--clients", type=int, default=3, help="steady clients (default 3)")
    p.add_argument("--invalid-share", type=float, default=0.3, help="share of invalid steady requests")
    p.add_argument("--disconnectors", type=int, default=2)
    p.add_argument("--slow-clients", type=int, default=24)
    p.add_argument("--header-timeout-ms", type=int, default=2000,
                   help="--rest_api_header_read_timeout_in_ms (default 2000, shorter than the server's 10000 "
                        "so a short run sees many)")
    p.add_argument("--body-timeout-ms", type=int, default=5000,
                   help="--rest_api_body_read_timeout_in_ms (default 5000)")
    p.add_argument("--note", default="", help="a sentence for the report, e.g. what else ran on the machine")
    p.add_argument("--work", default=str(Path.home() / ".cache/vitrine/reliability"))
    p.add_argument("--out", default=str(ROOT / "RELIABILITY.md"))
    p.add_argument("--report-only", action="store_true",
                   help="write the report again from the last run's records (in --work) with these arguments")
    args = p.parse_args()
    if args.cycle is None:
        args.cycle = args.duration if args.duration <= 900 else 600
    if args.swaps is not None:
        sys.exit(swap_runs(args))
    if not args.vitrine:
        p.error("--vitrine is required")
    run = Run(args)
    sys.exit(run.load() if args.report_only else run.run())


if __name__ == "__main__":
    main()
