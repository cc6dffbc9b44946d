"""Vitrine's benchmark: runs in one go and writes BENCHMARKS.md.

Same ViT-B/16 demo model file for every engine, same run, same machine:
  - onnxruntime (Python) at 1 and 2 intra-op threads, bare model;
  - tract native (`vitrine bench-native`), bare model;
  - tract in wasm (`vitrine bench-wasm`): the guest's tract compiled to
    wasm32-wasip2 as a command, in the server's wasmtime engine (epoch
    interruption and ticker on) with no server: what the guest path costs
    before serving adds anything;
  - vitrine served over HTTP on loopback, driven by `oha` in its own
    process: the host path on the onnxruntime engine and on the tract
    engine, each with and without batching, and the guest path; plus the
    onnxruntime engine with intra-op spinning on and off;
  - an instance per request (Spin's model) in vitrine, and the component
    under `wasmtime serve` and `spin up` themselves (bench/runtimes.py).
Every figure is also given as a ratio to onnxruntime with 2 threads.
"""

import argparse
import datetime
import glob
import json
import os
import platform
import subprocess
import statistics
import sys
import time
from pathlib import Path

import runtimes
from common import free_port, oha, run_json, say

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = [1, 2, 8, 32]
# vitrine_request_phase_seconds's phases, in the order a request meets them.
PHASES = ["queue", "start", "preprocess", "engine_queue", "engine_run", "engine_return", "postprocess", "guest"]


def onnxruntime_library():
    """The onnxruntime wheel's libonnxruntime.so* in this Python, for the host's engine."""
    import onnxruntime
    found = sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))
    if not found:
        sys.exit("the onnxruntime package has no capi/libonnxruntime.so*")
    return found[0]


def load_average():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    return f"{cpu}, {os.cpu_count()} vCPUs, {mem / 2**20:.0f} GiB, {platform.system()} {platform.release()}"


class Server(runtimes.Runtime):
    """`vitrine serve` on the demo model, on a loopback port."""

    def __init__(self, vitrine, base, flags, log):
        port = free_port()
        self.metrics_url = f"http://127.0.0.1:{port}/monitoring/prometheus/metrics"
        super().__init__([vitrine, "serve", "--rest_api_host=127.0.0.1", f"--rest_api_port={port}", "--port=0",
                          "--model_name=hf-vit", f"--model_base_path={base}", *flags], port, log)

    def first_predict(self, body):
        ready = super().first_predict(body)
        if ready is None:
            sys.exit(f"vitrine exited or gave no 200 within {runtimes.START_LIMIT_S} s; see {self.log}")
        return ready

    def stop(self):
        return super().stop()[1]

    def time_sums(self):
        """(sum s, count) of each phase of vitrine_request_phase_seconds, and
        of the REST predict latency as "server", from the server's metrics."""
        import urllib.request
        from prometheus_client.parser import text_string_to_metric_families  # as tests/clients/ parse it
        text = urllib.request.urlopen(self.metrics_url, timeout=60).read().decode()
        sums = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                series = s.name.removeprefix(family.name + "_")
                if series not in ("sum", "count"):
                    continue
                if family.name == "vitrine_request_phase_seconds":
                    key = s.labels.get("phase")
                elif (family.name == "vitrine_request_duration_seconds" and s.labels.get("api") == "rest_v1"
                      and s.labels.get("status") == "OK"):
                    key = "server"
                else:
                    continue
                total = sums.setdefault(key, [0.0, 0.0])
                total[0 if series == "sum" else 1] += s.value
        return sums


def mean_ms(before, after):
    """Mean ms per request of each series between two time_sums()."""
    means = {}
    for key, (s, n) in after.items():
        s0, n0 = before.get(key, [0.0, 0.0])
        if n > n0:
            means[key] = (s - s0) / (n - n0) * 1e3
    return means


def prepare(args, work):
    """The demo model, the compiled component and the blog's request body."""
    base = work / "models/hf-vit"
    model_dir = base / "1"
    if not (model_dir / "model.onnx").is_file():
        say("writing the ViT-B/16 demo model")
        subprocess.run([args.vitrine, "demo-model", "--size", "base", "--out", model_dir], check=True)
    # Published as TF Serving users publish (README, "Model folders"): with the
    # marker a start does not wait a second for the files to stop changing.
    (model_dir / ".ready").touch()
    say("compiling the component once, so start-up times exclude Cranelift")
    subprocess.run([args.vitrine, "compile"], check=True, capture_output=True)

    image = ROOT.parent / "shared/images/coco_000000039769.jpg"
    if not image.is_file():
        candidates = sorted((ROOT.parent / "shared/images").glob("*.jpg"))
        image = candidates[0] if candidates else None
    if image is None:
        from PIL import Image  # a stand-in photo-sized JPEG
        image = work / "synthetic.jpg"
        Image.effect_mandelbrot((640, 480), (-2, -1.2, 1, 1.2), 100).convert("RGB").save(image, quality=90)
    import base64
    jpeg = image.read_bytes()
    body = json.dumps({"signature_name": "serving_default",
                       "instances": [base64.urlsafe_b64encode(jpeg).decode()]}).encode()
    body_file = work / "request.json"
    body_file.write_bytes(body)
    # The same image for bench-wasm's timing of the guest's preprocessing.
    (work / "request.jpg").write_bytes(jpeg)
    return base, body, body_file


def per_request(args, work, base, body, body_file, scale):
    """Spin's model: a fresh instance per request (`--max_requests_per_instance=1`),
    with the plain component (the model loads in every request), the
    pre-initialized one (`vitrine preinit`), and the host path."""
    snapshot = work / "preinit-hf-vit-1.wasm"
    say("vitrine preinit: snapshotting the component with ViT-B/16 loaded")
    started = time.perf_counter()
    subprocess.run([args.vitrine, "preinit", "--model", base / "1", "--out", snapshot], check=True,
                   capture_output=True)
    preinit_s = time.perf_counter() - started
    say("compiling the pre-initialized component once, so start-up times exclude Cranelift")
    # It prints the cached file's path.
    cwasm = Path(subprocess.run([args.vitrine, "compile", "--component", snapshot], check=True,
                                capture_output=True, text=True).stdout.strip().splitlines()[-1])
    common = ["--max_requests_per_instance=1", "--tensorflow_inter_op_parallelism=1"]
    snapshot_flags = ["--inference=guest", f"--component={snapshot}", *common]
    configs = [
        ("guest path, model loaded per instance", ["--inference=guest", *common]),
        ("guest path, pre-initialized component", snapshot_flags),
        # What the warm-up inference on each instance costs the start.
        ("guest path, pre-initialized component, no warm-up inference", [*snapshot_flags, "--enable_model_warmup=false"]),
        ("host path, graph shared natively", ["--inference=host", *common]),
    ]
    runs = []
    n = max(3, int(8 * scale))
    for label, flags in configs:
        say(f"vitrine {label}, instance per request: starting")
        server = Server(args.vitrine, base, flags, work / f"server-per-request-{label.split(',')[0].replace(' ', '_')}-{len(runs)}.log")
        ready = server.first_predict(body)
        say(f"vitrine {label}, instance per request: oha -c 1 -n {n}")
        r = oha(args.oha, server.url, body_file, 1, n, timeout=1800)
        runs.append({"path": label, "flags": flags, "first_predict_s": ready, "peak_rss_mb": server.stop(), "run": r})
    return {"preinit_s": preinit_s, "component_mb": snapshot.stat().st_size / 2**20,
            "model_mb": (base / "1/model.onnx").stat().st_size / 2**20,
            "cwasm_mb": cwasm.stat().st_size / 2**20,
            # Less than its size where the memory image's zero pages are holes.
            "cwasm_disk_mb": cwasm.stat().st_blocks * 512 / 2**20, "runs": runs}


def measure_runtimes(args, work, base, body, body_file, scale, reference=None):
    """The wasmtime serve / spin up section; measures its own bare onnxruntime
    reference unless the run already has one."""
    if reference is None:
        say("onnxruntime bare, 2 threads (the runtimes section's reference)")
        reference = bare_onnxruntime(base / "1/model.onnx", max(5, int(20 * scale)), scale, 2)
    rt = runtimes.runtimes(args, work, body, body_file, scale)
    rt.update(reference=reference, machine=machine(),
              date=f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    return rt


def onnxruntime_reference(results):
    """The bare onnxruntime run at 2 threads every ratio is taken against."""
    return next(r for r in results["bare"] if r["engine"].startswith("onnxruntime") and r["threads"] == 2)


# Rounds of bare onnxruntime and the served default row back to back, for the
# targets' c=1 and c=8 ratios: on a shared VM the machine's speed drifts by
# 5-10% over minutes (bare 1-thread c=8 gave 7.84 then 7.18 img/s a minute
# apart, by hand), more than the targets' margins, so one bare row at the
# start against served rows minutes later decides nothing.
PAIRED_ROUNDS = 3


def paired_rounds(args, work, base, body, body_file, model, scale, flags):
    """Each round: bare onnxruntime at 2 threads (c=1 p50, c=8) and at 1 thread
    (c=8), then the served default configuration (c=1 p50, c=8), each c=8 run
    64 requests. The targets take the median round."""
    n1, n8 = max(10, int(30 * scale)), max(16, int(64 * scale))
    rounds = []
    for i in range(PAIRED_ROUNDS):
        say(f"paired round {i + 1}/{PAIRED_ROUNDS}: bare onnxruntime, 2 and 1 threads (load average {load_average()})")
        bare = {threads: run_json([sys.executable, ROOT / "bench/ort_bare.py", "--model", model,
                                   "--threads", str(threads), "--iterations", str(n1 if threads == 2 else 2),
                                   "--concurrency", "8", "--per-client", str(n8 // 8)], 1800)
                for threads in (2, 1)}
        say(f"paired round {i + 1}/{PAIRED_ROUNDS}: vitrine host path, onnxruntime: oha -c 1 -n {n1}, -c 8 -n {n8}")
        server = Server(args.vitrine, base, flags, work / "server-paired.log")
        server.first_predict(body)
        c1 = oha(args.oha, server.url, body_file, 1, n1, timeout=1800)
        c8 = oha(args.oha, server.url, body_file, 8, n8, timeout=1800)
        server.stop()
        best = max(bare.values(), key=lambda b: b["images_per_s"]["8"])
        rounds.append({
            "bare_p50_ms": bare[2]["p50_ms"], "served_p50_ms": c1["p50_ms"],
            "bare_best8": best["images_per_s"]["8"], "bare_best8_threads": best["threads"],
            "served8": c8["images_per_s"], "load_average": load_average(),
        })
    return rounds


def bare_onnxruntime(model, iters, scale, threads):
    return run_json([sys.executable, ROOT / "bench/ort_bare.py", "--model", model, "--threads", str(threads),
                     "--iterations", str(iters), "--concurrency", *map(str, CONCURRENCY),
                     "--per-client", str(max(1, int(4 * scale)))], 1800)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vitrine", required=True)
    ap.add_argument("--oha", required=True)
    ap.add_argument("--bench-wasm-program",
                    help="the vitrine-bench-wasm .wasm for `vitrine bench-wasm` (./bench.sh builds it); "
                         "default: where that command looks")
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    ap.add_argument("--quick", action="store_true", help="fewer requests, for trying the script")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite BENCHMARKS.md from the last run's results.json (e.g. after editing bench/NOTES.md)")
    ap.add_argument("--per-request-only", action="store_true",
                    help="rerun only the instance-per-request section into the last run's results.json")
    ap.add_argument("--only", nargs="*", default=[],
                    help="served configurations to rerun, by label (e.g. 'host path, onnxruntime'); the bare "
                         "engines run again, other rows are kept from the last results.json")
    ap.add_argument("--runtimes-only", action="store_true",
                    help="rerun only the wasmtime serve / spin up section into the last run's results.json")
    ap.add_argument("--plain-component", help="the component built without features (./bench.sh builds it)")
    ap.add_argument("--spin-component", help="spin.toml's build, with spin-variables (./bench.sh builds it)")
    ap.add_argument("--skip-per-request", action="store_true",
                    help="leave out the instance-per-request section")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        write_report(Path(args.out), last_results(work))
        return
    scale = 0.25 if args.quick else 1.0
    if args.runtimes_only:
        results = last_results(work)
        base, body, body_file = prepare(args, work)
        results["runtimes"] = measure_runtimes(args, work, base, body, body_file, scale)
        save(work, Path(args.out), results)
        return
    if args.per_request_only:
        results = last_results(work)
        base, body, body_file = prepare(args, work)
        # Its ratios against bare onnxruntime measured in this run, not the last.
        say("onnxruntime bare, 2 threads (the per-request section's reference)")
        reference = bare_onnxruntime(base / "1/model.onnx", max(5, int(20 * scale)), scale, 2)
        results["per_request"] = per_request(args, work, base, body, body_file, scale)
        results["per_request"]["reference"] = reference
        results["per_request"]["machine"] = machine()
        results["per_request"]["date"] = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
        save(work, Path(args.out), results)
        return
    base, body, body_file = prepare(args, work)
    model_dir = base / "1"
    model = model_dir / "model.onnx"

    results = {"bare": [], "served": [], "load_average_start": load_average(), "machine": machine(),
               "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"}
    iters = max(5, int(20 * scale))
    for threads in (2, 1):
        say(f"onnxruntime bare, {threads} thread(s)")
        # p50s are read as ratios of a few percent: 60 runs (6 s) steady them.
        results["bare"].append(bare_onnxruntime(model, 3 * iters, scale, threads))
    for threads in (2, 1):
        say(f"tract native bare, {threads} thread(s)")
        r = run_json([args.vitrine, "bench-native", "--model", model_dir, "--threads", str(threads),
                      "--iterations", str(iters)], 1800)
        results["bare"].append(r)
    say("tract in wasm bare (vitrine bench-wasm: the guest's tract in the server's wasmtime engine, no server)")
    program = ["--program", args.bench_wasm_program] if args.bench_wasm_program else []
    if program:
        # Cached first, so Cranelift's memory stays out of the row's peak RSS.
        subprocess.run([args.vitrine, "compile", "--component", args.bench_wasm_program], check=True,
                       capture_output=True)
    r = run_json([args.vitrine, "bench-wasm", "--model", model_dir, "--iterations", str(iters),
                  "--image", work / "request.jpg", *program], 1800)
    results["bare"].append(r)

    lib = f"--onnxruntime_library={onnxruntime_library()}"
    ort = ["--inference=host", "--native_engine=onnxruntime", lib]
    configs = [
        ("host path, onnxruntime, batching", [*ort, "--enable_batching"], 1.0),
        ("host path, onnxruntime", ort, 1.0),
        ("host path, onnxruntime, spinning on", [*ort, "--onnxruntime_intra_op_spinning=true"], 1.0),
        ("host path, onnxruntime, spinning off", [*ort, "--onnxruntime_intra_op_spinning=false"], 1.0),
        ("host path, onnxruntime, lanes off", [*ort, "--onnxruntime_lanes=false"], 1.0),
        ("host path, tract, batching", ["--inference=host", "--native_engine=tract", "--enable_batching"], 1.0),
        ("host path, tract", ["--inference=host", "--native_engine=tract"], 1.0),
        ("guest path", ["--inference=guest"], 0.35),
    ]
    if args.only:
        configs = [c for c in configs if any(o == c[0] for o in args.only)]
        old = last_results(work)
        results["served"] = [s for s in old.get("served", []) if s["path"] not in {c[0] for c in configs}]
        results["per_request"] = old.get("per_request")
        results["runtimes"] = old.get("runtimes")
    # The targets' start is on a warm cache: onnxruntime's optimised copy of
    # the model is written at the first start (about 2 s more here), so that
    # start is not one of the rows.
    say("vitrine host path, onnxruntime: one untimed start, so the cache holds the optimised model")
    warm = Server(args.vitrine, base, ort, work / "server-warm-cache.log")
    warm.first_predict(body)
    warm.stop()
    for label, flags, speed in configs:
        say(f"vitrine {label}: starting (load average {load_average()})")
        server = Server(args.vitrine, base, flags, work / f"server-{label.replace(' ', '_').replace(',', '')}.log")
        ready = server.first_predict(body)
        say(f"vitrine {label}: first predict {ready:.1f} s after start")
        runs = {}
        for c in CONCURRENCY:
            # c=1 gives the p50 the targets are ratios of: twice the requests.
            n = max(int(c * 3 * scale), int((60 if c == 1 else 48) * speed * scale), c)
            say(f"vitrine {label}: oha -c {c} -n {n}")
            before = server.time_sums()
            runs[str(c)] = oha(args.oha, server.url, body_file, c, n, timeout=1800)
            runs[str(c)]["server_mean_ms"] = mean_ms(before, server.time_sums())
        rss = server.stop()
        results["served"].append({"path": label, "flags": flags, "first_predict_s": ready,
                                  "peak_rss_mb": rss, "runs": runs, "load_average": load_average()})
    order = [c[0] for c in configs]
    results["served"].sort(key=lambda s: order.index(s["path"]) if s["path"] in order else -1)
    results["paired"] = paired_rounds(args, work, base, body, body_file, model, scale, ort)

    if not args.only and not args.skip_per_request:
        results["per_request"] = per_request(args, work, base, body, body_file, scale)
    if not args.only:
        reference = onnxruntime_reference(results)
        results["runtimes"] = measure_runtimes(args, work, base, body, body_file, scale, reference)

    save(work, Path(args.out), results)


def save(work, out, results):
    """Keeps `results` for the next partial run and writes the report."""
    (work / "results.json").write_text(json.dumps(results, indent=1))
    write_report(out, results)
    say(f"wrote {out}")


def last_results(work):
    """The last run's results: its results.json, else (on a new machine) the
    raw results BENCHMARKS.md carries."""
    saved = work / "results.json"
    if saved.is_file():
        return json.loads(saved.read_text())
    report = (ROOT / "BENCHMARKS.md").read_text()
    start = report.index("```json\n", report.index("## Raw results")) + len("```json\n")
    return json.loads(report[start:report.index("```", start)])


def fmt(x, unit=""):
    return "-" if x is None else f"{x:.0f}{unit}" if x >= 100 else f"{x:.1f}{unit}" if x >= 10 else f"{x:.2f}{unit}"


def write_report(out, results):
    ref = onnxruntime_reference(results)
    ref_p50 = ref["p50_ms"]
    ref_tp = ref["images_per_s"]
    tract2 = next(r for r in results["bare"] if r["engine"] == "tract native" and r["threads"] == 2)
    tract_wasm = next((r for r in results["bare"] if r["engine"] == "tract in wasm"), None)
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [
        "# Benchmarks",
        "",
        "Written by `./bench.sh` (bench/bench.py); do not edit by hand — notes below come from `bench/NOTES.md`.",
        "",
        f"- Date: {results.get('date', 'not recorded')}; report written at commit `{rev}`",
        f"- Machine: {results.get('machine', 'not recorded')}; load average {results.get('load_average_start', '?')} at the start (other work on the machine skews every figure)",
        "- Model: the ViT-B/16 demo model (google/vit-base-patch16-224's architecture, seeded random weights), fp32, one `model.onnx` file for every engine.",
        "- Served runs: the blog's request (one COCO JPEG, URL-safe base64 in JSON) to `POST /v1/models/hf-vit:predict`, sent by `oha` from its own process over loopback, bounded by request count (and a time limit).",
        "- The host path's onnxruntime engine loads the same wheel's `libonnxruntime.so` as the bare onnxruntime rows (`--onnxruntime_library`).",
        "- Ratios: against bare onnxruntime with 2 intra-op threads. For latency lower is better; for throughput higher is better.",
        "- \"tract in wasm\" (`vitrine bench-wasm`): the guest's own tract loading and inference compiled to wasm32-wasip2 as a WASI command, run in vitrine's wasmtime engine with the server's config (epoch interruption, the epoch ticker, a far deadline) but no server: the served guest path minus what serving adds.",
        "",
        "## Bare model (no server, no image decoding), batch 1",
        "",
        "| engine | threads | p50 ms | p99 ms | p50 ratio | img/s c=1 | img/s c=8 | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["bare"]:
        tp = r["images_per_s"]
        c1 = tp.get("1") if isinstance(tp, dict) else tp
        c8 = tp.get("8") if isinstance(tp, dict) else None
        lines.append(f"| {r['engine']} | {r['threads']} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | "
                     f"{r['p50_ms'] / ref_p50:.2f}x | {fmt(c1)} | {fmt(c8)} | {fmt(r['peak_rss_mb'])} |")
    if tract_wasm and "preprocess_p50_ms" in tract_wasm:
        pre = tract_wasm["preprocess_p50_ms"]
        lines += ["", f"Guest preprocessing in wasm (`vitrine bench-wasm --image`, the served runs' JPEG, the server's "
                      f"engine config): decode {fmt(tract_wasm['decode_p50_ms'])} ms, decode to tensor (resize, crop, "
                      f"normalise) {fmt(pre)} ms p50, {fmt(tract_wasm['preprocess_p99_ms'])} ms p99: "
                      f"{pre / ref_p50:.1%} of bare onnxruntime's p50, the component's own work in every request "
                      "the host path serves."]
    lines += [
        "",
        "## Served end to end over HTTP (decode, preprocess, inference, postprocess, JSON)",
        "",
        "| path | p50 ms c=1 | p99 ms c=1 | p50 ratio | " + " | ".join(f"img/s c={c}" for c in CONCURRENCY)
        + " | errors | peak RSS MB | start to first predict s |",
        "|---" * (7 + len(CONCURRENCY)) + "|",
    ]
    for s in results["served"]:
        r1 = s["runs"]["1"]
        tps = " | ".join(f"{fmt(s['runs'][str(c)]['images_per_s'])} ({s['runs'][str(c)]['images_per_s'] / ref_tp[str(c)]:.2f}x)" for c in CONCURRENCY)
        errors = sum(r["errors"] for r in s["runs"].values())
        shown = ' '.join(f for f in s['flags'] if not f.startswith('--onnxruntime_library'))
        lines.append(f"| {s['path']} (`{shown}`) | {fmt(r1['p50_ms'])} | {fmt(r1['p99_ms'])} | "
                     f"{r1['p50_ms'] / ref_p50:.2f}x | {tps} | {errors} | {fmt(s['peak_rss_mb'])} | {s['first_predict_s']:.1f} |")
    lines += ["", "Throughput ratios in brackets are against bare onnxruntime (2 threads) at the same concurrency.", ""]
    lines += time_split_report(results)

    def served(label):
        return next((s for s in results["served"] if s["path"] == label), None)
    verdict = lambda ok: "met" if ok else "MISSED"
    ort_bare = [r for r in results["bare"] if r["engine"].startswith("onnxruntime")]
    best8 = max(r["images_per_s"]["8"] for r in ort_bare)
    paired = results.get("paired") or []
    if paired:
        lines += [
            "## Paired rounds: bare onnxruntime and the served default row back to back",
            "",
            "The c=1 and c=8 targets take the median of these rounds. Each round runs bare onnxruntime (2 threads: "
            "c=1 p50 and c=8; 1 thread: c=8), then starts `vitrine serve --inference=host "
            "--native_engine=onnxruntime` and sends the blog's request at c=1 and c=8 (64 requests), so each "
            "ratio compares runs a minute apart at most: this machine's speed drifts more than the targets' margins "
            "over the length of the whole run.",
            "",
            "| round | bare p50 ms (2 threads) | served p50 ms c=1 | c=1 ratio | best bare img/s c=8 | served img/s c=8 | c=8 ratio | load average after |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for i, r in enumerate(paired, 1):
            lines.append(f"| {i} | {fmt(r['bare_p50_ms'])} | {fmt(r['served_p50_ms'])} | "
                         f"{r['served_p50_ms'] / r['bare_p50_ms']:.2f}x | {fmt(r['bare_best8'])} "
                         f"({r['bare_best8_threads']} thread{'s' if r['bare_best8_threads'] > 1 else ''}) | "
                         f"{fmt(r['served8'])} | {r['served8'] / r['bare_best8']:.2f}x | {r['load_average']} |")
        lines += [""]
    lines += ["## Targets", "", "| target | measured | |", "|---|---|---|"]
    host, batched = served("host path, onnxruntime"), served("host path, onnxruntime, batching")
    if host and batched:
        t1 = host["runs"]["1"]["p50_ms"] / ref_p50
        t8 = max(host["runs"]["8"]["images_per_s"], batched["runs"]["8"]["images_per_s"]) / best8
        how1 = how8 = ""
        if paired:
            single1, single8 = t1, t8
            t1 = statistics.median(r["served_p50_ms"] / r["bare_p50_ms"] for r in paired)
            t8 = statistics.median(r["served8"] / r["bare_best8"] for r in paired)
            how1 = f"{t1:.2f}x (median of {len(paired)} paired rounds; {single1:.2f}x from the rows above)"
            how8 = f"{t8:.2f}x (median of {len(paired)} paired rounds, default row; {single8:.2f}x from the rows above)"
        rss = max(host["peak_rss_mb"], batched["peak_rss_mb"]) / ref["peak_rss_mb"]
        start = max(host["first_predict_s"], batched["first_predict_s"])
        lines += [
            f"| host path on onnxruntime, c=1: p50 at most 1.05x bare onnxruntime (2 threads) | {how1 or f'{t1:.2f}x'} | {verdict(t1 <= 1.05)} |",
            f"| host path on onnxruntime, c=8: throughput at least the best bare onnxruntime at c=8 (1 or 2 threads) | {how8 or f'{t8:.2f}x'} | {verdict(t8 >= 1.0)} |",
            f"| host path on onnxruntime: peak RSS at most bare onnxruntime's ({fmt(ref['peak_rss_mb'])} MB) | {rss:.2f}x | {verdict(rss <= 1.0)} |",
            f"| host path on onnxruntime: start to first predict, warm cache, at most 2 s | {start:.1f} s | {verdict(start <= 2.0)} |",
        ]
    guest = served("guest path")
    if guest:
        t3 = guest["runs"]["1"]["p50_ms"] / tract2["p50_ms"]
        lines.append(f"| guest path within 2x of tract native (2 threads) | {t3:.2f}x | {verdict(t3 <= 2.0)} |")
        if tract_wasm:
            tw = guest["runs"]["1"]["p50_ms"] / tract_wasm["p50_ms"]
            lines.append(f"| guest path, c=1: p50 at most 1.1x bare tract in wasm ({fmt(tract_wasm['p50_ms'])} ms) | "
                         f"{tw:.2f}x | {verdict(tw <= 1.1)} |")
    on, off = served("host path, onnxruntime, spinning on"), served("host path, onnxruntime, spinning off")
    if on and off:
        lines += [
            "",
            "## onnxruntime intra-op spinning, while the wasm instances preprocess on the same cores",
            "",
            "| `session.intra_op.allow_spinning` | p50 ms c=1 | " + " | ".join(f"img/s c={c}" for c in CONCURRENCY) + " |",
            "|---" * (2 + len(CONCURRENCY)) + "|",
        ]
        for label, s in (("on", on), ("off", off)):
            lines.append(f"| {label} | {fmt(s['runs']['1']['p50_ms'])} | "
                         + " | ".join(fmt(s["runs"][str(c)]["images_per_s"]) for c in CONCURRENCY) + " |")
    lanes_off = served("host path, onnxruntime, lanes off")
    if host and lanes_off:
        lines += [
            "",
            "## Side-by-side runs (`--onnxruntime_lanes`)",
            "",
            "On (the default without batching), a run that starts while another is under way goes to a second, "
            "single-threaded session of the version, one run per core at most; off, runs take turns on the "
            "multi-threaded session. Same flags otherwise, measured in this run.",
            "",
            "| `--onnxruntime_lanes` | p50 ms c=1 | " + " | ".join(f"img/s c={c}" for c in CONCURRENCY)
            + " | peak RSS MB | start to first predict s |",
            "|---" * (4 + len(CONCURRENCY)) + "|",
        ]
        for label, s in (("true", host), ("false", lanes_off)):
            lines.append(f"| {label} | {fmt(s['runs']['1']['p50_ms'])} | "
                         + " | ".join(fmt(s["runs"][str(c)]["images_per_s"]) for c in CONCURRENCY)
                         + f" | {fmt(s['peak_rss_mb'])} | {s['first_predict_s']:.1f} |")
    lines += [""]
    pr = results.get("per_request")
    if pr and guest:
        warm_guest = guest["runs"]["1"]["p50_ms"]
        pr_ref = pr.get("reference", {}).get("p50_ms", ref_p50)
        # Only against warm instances measured in the same run.
        def vs_warm(p50):
            return "-" if "date" in pr else f"{p50 / warm_guest:.2f}x"
        sizes = ""
        if pr.get("cwasm_mb"):
            sizes = (f" It is {pr['component_mb'] / pr['model_mb']:.2f}x the {pr['model_mb']:.0f} MB `model.onnx`; "
                     f"compiled, its `.cwasm` is {pr['cwasm_mb']:.0f} MB ({pr['cwasm_disk_mb']:.0f} MB on disk): the "
                     "memory image wasmtime maps copy-on-write into every instance, zero gaps included.")
        reference = ("bare onnxruntime (2 threads) measured in the same run as this section "
                     f"({fmt(pr_ref)} ms p50)" if "reference" in pr else "bare onnxruntime (2 threads) above")
        if "date" in pr:
            reference += (f". This section was measured on its own (`./bench.sh --per-request-only`), "
                          f"{pr['date']}, on {pr['machine']}; so no ratio against the warm guest "
                          "instances above, which ran on another")
        lines += [
            "## Instance per request (Spin's model)",
            "",
            "Spin and `wasmtime serve` create a new instance for every request; `vitrine serve "
            "--max_requests_per_instance=1` does the same (a fresh instance per request, instantiated on the "
            "request's time). With the plain component every request loads and optimises the model again; the "
            f"pre-initialized component (`vitrine preinit`, {pr['component_mb']:.0f} MB, written in "
            f"{pr['preinit_s']:.0f} s) starts every instance with it in memory.{sizes} c=1; ratios against "
            f"{reference}. Start to first predict is from exec to the first 200, on a warm cache.",
            "",
            "| path | p50 ms | p99 ms | vs onnxruntime (2 threads) | vs warm guest instances | errors | peak RSS MB | start to first predict s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for s in pr["runs"]:
            r = s["run"]
            lines.append(f"| {s['path']} (`{' '.join(f for f in s['flags'] if not f.startswith('--component'))}`) | "
                         f"{fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | {r['p50_ms'] / pr_ref:.2f}x | "
                         f"{vs_warm(r['p50_ms'])} | {r['errors']} | {fmt(s['peak_rss_mb'])} | {s['first_predict_s']:.1f} |")
        lines += [""]
    if results.get("runtimes"):
        lines += runtimes_report(results["runtimes"])
    notes = ROOT / "bench/NOTES.md"
    if notes.is_file():
        lines += [notes.read_text().rstrip(), ""]
    lines += ["## Raw results", "", "```json", json.dumps(results, indent=1), "```", ""]
    out.write_text("\n".join(lines))


def time_split_report(results):
    """Where a served request's time goes at c=1: oha's mean, the server's
    own latency, and its phases (vitrine_request_phase_seconds)."""
    rows = [s for s in results["served"] if s["runs"]["1"].get("server_mean_ms")]
    if not rows:
        return []
    shown = [p for p in PHASES if any(p in s["runs"]["1"]["server_mean_ms"] for s in rows)]
    ref_mean = onnxruntime_reference(results).get("mean_ms")
    lines = [
        "## Where a served request's time goes (c=1, mean ms per request)",
        "",
        "From the server's own metrics, read before and after each row's c=1 run: `vitrine_request_duration_seconds` "
        "(server: routing to the reply's headers) and `vitrine_request_phase_seconds` (its phases, each the time "
        "between two stamps on the host's clock; postprocess runs until the guest has written its reply). Client is "
        "oha's mean; outside is client less server: the connection, HTTP parsing and the reply's write"
        + (f". Bare onnxruntime (2 threads) averaged {fmt(ref_mean)} ms per run." if ref_mean else "."),
        "",
        "| path | client | server | " + " | ".join(shown) + " | outside |",
        "|---" * (4 + len(shown)) + "|",
    ]
    for s in rows:
        r = s["runs"]["1"]
        t = r["server_mean_ms"]
        client, server = r.get("mean_ms"), t.get("server")
        outside = client - server if client and server else None
        lines.append(f"| {s['path']} | {fmt(client)} | {fmt(server)} | "
                     + " | ".join(fmt(t.get(p)) for p in shown) + f" | {fmt(outside)} |")
    return lines + [""]


def runtimes_report(rt):
    ref = rt["reference"]["p50_ms"]
    lines = [
        "## Under wasmtime serve and Spin",
        "",
        f"Measured {rt['date']}, on {rt['machine']} (`./bench.sh --runtimes-only` runs this section alone). "
        "The ViT-B/16 demo model under the "
        "runtimes themselves, each making an instance per request. Each row starts the runtime twice on one "
        "compile cache, emptied before the first start; start is from exec to the first 200 for the blog's "
        "request. Then one request at a time on the second start; ratios against bare onnxruntime (2 threads) "
        f"measured in the same run ({ref:.0f} ms p50). RSS: the runtime's processes after the requests, and "
        "their peak.",
        "",
        "| runtime, component | component MB | first start s | second start s | p50 ms | p99 ms | vs onnxruntime | errors | RSS after MB | peak RSS MB | compile cache MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rt["rows"]:
        if "run" not in row:
            lines.append(f"| {row['runtime']} | {fmt(row.get('component_mb'))} | FAILED: {row.get('error')} |||||||||")
            continue
        r = row["run"]
        lines.append(f"| {row['runtime']} | {fmt(row['component_mb'])} | {fmt(row['first_start_s'])} | "
                     f"{fmt(row['second_start_s'])} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | "
                     f"{r['p50_ms'] / ref:.2f}x | {r['errors']} | {fmt(row['rss_after_mb'])} | "
                     f"{fmt(row['peak_rss_mb'])} | {fmt(row['cache_mb'])} |")
    lines += [""] + [f"- SKIPPED: {s}" for s in rt["skipped"]] + ([""] if rt["skipped"] else [])
    return lines


if __name__ == "__main__":
    main()
