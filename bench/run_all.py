"""Run every benchmark script in bench/ and write bench/RESULTS.md.

Each script prints a Markdown table; this collects them with the machine description
and the date. Scripts that need the real data read $TGS_DATA (defaulting here to
../shared/data/tgs-salt when it exists).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from saltseg.atomic import atomic_write_text

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{mem_kb / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        mem = "unknown memory"
    cores = len(os.sched_getaffinity(0))
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {cores} cores, {mem}, {system}, Python {platform.python_version()}"


def main() -> int:
    env = dict(os.environ)
    default_data = ROOT.parent / "shared" / "data" / "tgs-salt"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "TGS_DATA" not in env and default_data.is_dir():
        env["TGS_DATA"] = str(default_data)
    scripts = sorted(p for p in BENCH.glob("*.py") if p.name != Path(__file__).name)
    parts = [
        "# Benchmark results",
        "",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine()}",
        f"- data: {env.get('TGS_DATA', 'none (TGS_DATA not set)')}",
        "",
        "Regenerate with `make bench`.",
    ]
    failed = 0
    for script in scripts:
        print(f"== {script.name}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True
        )
        took = time.perf_counter() - t0
        print(proc.stdout, end="", flush=True)
        parts += ["", f"## {script.stem}", ""]
        if proc.returncode == 0:
            parts += [proc.stdout.rstrip(), "", f"_{script.name}: {took:.0f} s_"]
        else:
            failed += 1
            print(proc.stderr, file=sys.stderr)
            parts.append(f"not run (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
    atomic_write_text(BENCH / "RESULTS.md", "\n".join(parts) + "\n")
    print(f"wrote {BENCH / 'RESULTS.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
