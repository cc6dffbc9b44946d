"""`./reliability.sh --swaps N`: the e2e hot-swap tests with N swaps each,
and their summary lines written into RELIABILITY.md's swaps section."""

import datetime
import json
import os
import subprocess
import time
from pathlib import Path

from reliability_common import ROOT, machine, say, write_section


def swap_runs(args):
    """`--swaps N`: the e2e swap tests with N swaps each (the storm under
    load on each path and engine, and memory across swaps), their summary
    lines gathered into RELIABILITY.md's swaps section."""
    cmd = ["cargo", "test", "--release", "-p", "vitrine", "--test", "e2e", "--", "swap_storm", "swap_memory",
           "--nocapture", "--test-threads", "1"]
    env = dict(os.environ, VITRINE_SWAPS=str(args.swaps))
    say(f"running VITRINE_SWAPS={args.swaps} {' '.join(cmd)} (minutes per test; their output follows)")
    started = time.time()
    summaries, failed = [], []
    log = Path(args.work) / "swaps.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as proc, open(log, "w") as out:
        for line in proc.stdout:
            out.write(line)
            if line.startswith("RELIABILITY-SUMMARY "):
                summaries.append(json.loads(line.split(" ", 1)[1]))
                say(f"done: {summaries[-1]['test']} on the {summaries[-1]['path']}")
            elif line.startswith("test ") and (" ... " in line):
                say(line.strip())
                if line.rstrip().endswith("FAILED"):
                    failed.append(line.split()[1])
    passed = proc.returncode == 0 and not failed
    lines = [
        f"## {args.swaps} hot swaps under load, and memory across {args.swaps} swaps",
        "",
        f"Written by `./reliability.sh --swaps {args.swaps}` on {datetime.date.today().isoformat()} "
        f"({(time.time() - started) / 60:.0f} min): the e2e swap tests, which CI runs with 25 and 30 swaps, "
        f"with `VITRINE_SWAPS={args.swaps}`. Machine: {machine()}.",
        "",
        f"**Verdict: {'PASS' if passed else 'FAIL'}**"
        + ("" if passed else f" — failed: {', '.join(failed) or 'see ' + str(log)}"),
        "",
        "### Under load (`tests/e2e/swap_storm.rs`)",
        "",
        "Clients on REST v1 (two), KServe v2 and gRPC run throughout; versions are published by "
        "copy-then-rename, with a `.ready` marker, and by a slow plain copy, every fifth one broken (it must "
        "end END while the served one answers), a new `component.wasm` every 10 swaps. A request fails on "
        "any status but 200/OK, and the answering version must only ever increase.",
        "",
        "| path | swaps | seconds | requests | failed | versions that answered | broken versions that ended END |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in (r for r in summaries if r["test"] == "swap_storm"):
        lines.append(f"| {r['path']} | {r['swaps']} | {r['seconds']:.0f} | {r['requests']} | {r['failed']} | "
                     f"{r['versions_answering']} of {r['swaps'] + 1} | {len(r['broken_versions'])} |")
    lines += [
        "",
        "### Memory (`tests/e2e/swap_memory.rs`)",
        "",
        "The tiny model, three predicts after each swap; anonymous RSS (`RssAnon`) and malloc's heap in use "
        "(`/vitrine/stats`). The bound: the median of the last 5 readings within "
        f"{next((r['bound_mb'] for r in summaries if r['test'] == 'swap_memory'), 5):.0f} MB of the median "
        "of swaps 8 to 12.",
        "",
        "| path | swaps | first load | around swap 10 | last 5 | growth | heap in use, first → last |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in (r for r in summaries if r["test"] == "swap_memory"):
        lines.append(f"| {r['path']} | {r['swaps']} | {r['first_mb']:.1f} MB | {r['warm_mb']:.1f} MB | "
                     f"{r['last_mb']:.1f} MB | {r['last_mb'] - r['warm_mb']:+.1f} MB | "
                     f"{r['heap_first_mb']:.1f} → {r['heap_last_mb']:.1f} MB |")
    for r in (r for r in summaries if r["test"] == "swap_memory"):
        lines += ["", f"`RssAnon` (MB) after each swap, {r['path']}: {r['rss_anon_mb']}"]
    lines.append("")
    write_section(Path(args.out), "swaps", lines)
    say(f"wrote {args.out}: {'PASS' if passed else 'FAIL'}; log in {log}")
    return 0 if passed else 1
