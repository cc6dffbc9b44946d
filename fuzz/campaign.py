#!/usr/bin/env python3
"""A fuzz campaign: every target (or the ones named) for a fixed time, some at
once, each growing its own corpus that the next campaign starts from.

    fuzz/campaign.py --seconds 600 --jobs 2 [target ...]

`run.sh` is CI's short check from the committed seeds; this is the long run
outside CI. The corpus lives in $CARGO_TARGET_DIR/fuzz/campaign-corpus/<target>
(beside the build, not in git: it grows to megabytes), libFuzzer's logs in
.../campaign-logs/. A crash leaves its input in fuzz/artifacts/<target>/, as
with run.sh. The table of figures is printed as Markdown at the end and kept
in .../campaign-logs/<date>.md, for RELIABILITY.md.
"""

import argparse
import concurrent.futures
import datetime
import os
import pathlib
import re
import subprocess
import sys
import time
import tomllib

FUZZ = pathlib.Path(__file__).resolve().parent
TARGET_DIR = (
    pathlib.Path(os.environ.get("CARGO_TARGET_DIR", pathlib.Path.home() / ".cache/vitrine-target"))
    / "fuzz"
)
BIN_DIR = TARGET_DIR / "x86_64-unknown-linux-gnu" / "release"
# The same limits as run.sh, so a campaign's finding reproduces there.
LIBFUZZER_FLAGS = ["-rss_limit_mb=2048", "-timeout=10", "-print_final_stats=1"]


def targets():
    with open(FUZZ / "Cargo.toml", "rb") as f:
        return [b["name"] for b in tomllib.load(f)["bin"]]


def build():
    env = dict(os.environ, RUSTC_BOOTSTRAP="1", CARGO_TARGET_DIR=str(TARGET_DIR))
    print(f"==> building the fuzz targets with AddressSanitizer (in {TARGET_DIR})", flush=True)
    subprocess.run(["cargo", "fuzz", "build"], cwd=FUZZ, env=env, check=True)


def stat(log, name):
    m = re.search(rf"^stat::{name}:\s+(\d+)", log, re.M)
    return int(m.group(1)) if m else 0


def fuzz(target, seconds, stamp):
    corpus = TARGET_DIR / "campaign-corpus" / target
    corpus.mkdir(parents=True, exist_ok=True)
    logs = TARGET_DIR / "campaign-logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{stamp}-{target}.log"
    artifacts = FUZZ / "artifacts" / target
    artifacts.mkdir(parents=True, exist_ok=True)
    before = len(list(corpus.iterdir()))
    started = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.run(
            [
                str(BIN_DIR / target),
                str(corpus),
                str(FUZZ / "corpus" / target),
                f"-max_total_time={seconds}",
                f"-artifact_prefix={artifacts}/",
                *LIBFUZZER_FLAGS,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    elapsed = time.monotonic() - started
    text = log_path.read_text(errors="replace")
    files = list(corpus.iterdir())
    crashed = proc.returncode != 0
    row = {
        "target": target,
        "executions": stat(text, "number_of_executed_units"),
        "seconds": elapsed,
        "peak_rss_mb": stat(text, "peak_rss_mb"),
        "corpus_files": len(files),
        "corpus_kb": sum(f.stat().st_size for f in files) // 1024,
        "new_files": len(files) - before,
        "crashed": crashed,
        "log": str(log_path),
    }
    verdict = f"CRASHED (exit {proc.returncode}; input in {artifacts}/)" if crashed else "no crash"
    print(
        f"    {target}: {row['executions']:,} executions in {elapsed:.0f} s, {verdict}; log {log_path}",
        flush=True,
    )
    return row


def table(rows, seconds, jobs, started):
    out = [
        f"Campaign of {started:%Y-%m-%d %H:%M} UTC: `fuzz/campaign.py --seconds {seconds} --jobs {jobs}`",
        "",
        "| target | executions | exec/s | peak RSS (MB) | corpus after (files) | new files | crashes |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| `{r['target']}` | {r['executions']:,} | {r['executions'] / r['seconds']:,.0f} "
            f"| {r['peak_rss_mb']} | {r['corpus_files']} ({r['corpus_kb']} KB) | {r['new_files']} "
            f"| {1 if r['crashed'] else 0} |"
        )
    total = sum(r["executions"] for r in rows)
    out.append(f"| **total** | **{total:,}** | | | | | **{sum(r['crashed'] for r in rows)}** |")
    return "\n".join(out) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=600, help="per target (default 600)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="targets at once (default: cores)")
    p.add_argument("--no-build", action="store_true", help="use the binaries already built")
    p.add_argument("targets", nargs="*", help="default: every [[bin]] of fuzz/Cargo.toml")
    args = p.parse_args()
    known = targets()
    names = args.targets or known
    unknown = set(names) - set(known)
    if unknown:
        sys.exit(f"unknown targets {sorted(unknown)}; fuzz/Cargo.toml has {known}")
    if not args.no_build:
        build()
    started = datetime.datetime.now(datetime.timezone.utc)
    stamp = f"{started:%Y%m%dT%H%M%S}"
    waves = -(-len(names) // args.jobs)
    print(
        f"==> fuzzing {len(names)} targets for {args.seconds} s each, {args.jobs} at once "
        f"(about {waves * args.seconds / 60:.0f} minutes)",
        flush=True,
    )
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda t: fuzz(t, args.seconds, stamp), names))
    md = table(rows, args.seconds, args.jobs, started)
    (TARGET_DIR / "campaign-logs" / f"{stamp}.md").write_text(md)
    print()
    print(md)
    sys.exit(1 if any(r["crashed"] for r in rows) else 0)


if __name__ == "__main__":
    main()
