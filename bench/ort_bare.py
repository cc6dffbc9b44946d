"""Times the bare model under onnxruntime: no server, no preprocessing.

Prints one JSON line: p50/p99 latency at concurrency 1 and images/s at each
requested concurrency (that many Python threads sharing one session, as a
server would; onnxruntime releases the GIL while it runs).
"""

import argparse
import json
import resource
import threading
import time

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--concurrency", type=int, nargs="*", default=[1])
    ap.add_argument("--per-client", type=int, default=4)
    args = ap.parse_args()

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    started = time.perf_counter()
    sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    load_s = time.perf_counter() - started
    name = sess.get_inputs()[0].name
    x = np.zeros((1, 3, 224, 224), dtype=np.float32)
    for _ in range(2):
        sess.run(None, {name: x})
    times = []
    for _ in range(args.iterations):
        t = time.perf_counter()
        sess.run(None, {name: x})
        times.append(time.perf_counter() - t)
    times.sort()
    pct = lambda p: times[round((len(times) - 1) * p)] * 1e3

    throughput = {}
    for c in args.concurrency:
        def client():
            for _ in range(args.per_client):
                sess.run(None, {name: x})
        threads = [threading.Thread(target=client) for _ in range(c)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        throughput[str(c)] = c * args.per_client / (time.perf_counter() - t)

    print(json.dumps({
        "engine": f"onnxruntime {ort.__version__}",
        "threads": args.threads,
        "load_s": load_s,
        "mean_ms": sum(times) / len(times) * 1e3,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "images_per_s": throughput,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
