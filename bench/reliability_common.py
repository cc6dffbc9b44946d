"""What the reliability runs share: where the project is, progress lines,
the machine's description, and writing one section of RELIABILITY.md."""

import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_section(path, name, lines):
    """Puts `lines` in RELIABILITY.md between this section's markers,
    leaving the other runs' sections as they are."""
    begin, end = f"<!-- reliability.py: {name} -->", f"<!-- /reliability.py: {name} -->"
    body = "\n".join([begin, *lines, end])
    text = path.read_text() if path.exists() else "# Reliability\n\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + body + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    path.write_text(text)


def say(msg):
    print(f"[reliability {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
               platform.processor())
    mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    load = os.getloadavg()
    return (f"{cpu}, {os.cpu_count()} vCPUs, {mem / 2**20:.0f} GiB, {platform.system()} {platform.release()}; "
            f"load average at start {load[0]:.1f}")
