"""Run the benchmark scripts in bench/ and write bench/RESULTS.md.

Each script prints a Markdown table; this collects them under one heading per script
(``## <script stem>``, in sorted script order) with the machine description and the date.
Every ``*.py`` file here except this one and names starting with ``_`` is a benchmark, so
new scripts are picked up without editing this file.

``--only NAME...`` / ``--skip NAME...`` run part of the scripts and merge their sections into
the existing RESULTS.md: the other sections are kept as they were (each section's footer
says when it was measured); sections of scripts that no longer exist are dropped. Scripts
that need the real data read $TGS_DATA (defaulting here to ../shared/data/tgs-salt when it
exists).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from saltseg.core.atomic import atomic_write_text

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "RESULTS.md"
_SECTION = re.compile(r"^## (\S+)\s*$")


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


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


# --------------------------------------------------------------------------- scripts


def bench_scripts(folder: Path = BENCH) -> list[Path]:
    """The benchmark scripts of ``folder``, sorted by name."""
    me = Path(__file__).name
    return sorted(p for p in folder.glob("*.py") if p.name != me and not p.name.startswith("_"))


def select(
    names: Sequence[str], only: Sequence[str] | None, skip: Sequence[str] | None
) -> list[str]:
    """The script stems to run: all of ``names``, or ``only`` of them, minus ``skip``.

    Names may be given as ``load_tiles``, ``load_tiles.py`` or ``bench/load_tiles.py``;
    an unknown name raises ``ValueError`` listing the scripts.
    """

    def stems(given: Sequence[str] | None) -> set[str]:
        out = {Path(g).name.removesuffix(".py") for g in given or []}
        unknown = sorted(out - set(names))
        if unknown:
            raise ValueError(
                f"unknown benchmark(s) {', '.join(unknown)}; scripts: {', '.join(names)}"
            )
        return out

    wanted = stems(only) if only else set(names)
    return [n for n in names if n in wanted - stems(skip)]


def run_script(script: Path, env: dict[str, str]) -> tuple[str, bool]:
    """Run one script; return its section body (table and footer, or the error) and success."""
    print(f"== {script.name}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    took = time.perf_counter() - t0
    print(proc.stdout, end="", flush=True)
    if proc.returncode == 0:
        return f"{proc.stdout.rstrip()}\n\n_{script.name}: {took:.0f} s, {now()}_", True
    print(proc.stderr, file=sys.stderr)
    tail = proc.stderr.strip()[-300:]
    return f"not run (exit {proc.returncode}, {now()}): {tail}", False


# --------------------------------------------------------------------------- RESULTS.md


def header(data: str) -> str:
    """The top of RESULTS.md: date, machine and data."""
    return "\n".join(
        [
            "# Benchmark results",
            "",
            f"- updated: {now()}",
            f"- machine: {machine()}",
            f"- data: {data}",
            "",
            "Regenerate with `make bench`; one part with "
            "`.venv/bin/python bench/run_all.py --only NAME` (other sections are kept).",
        ]
    )


def parse_sections(text: str, names: Sequence[str]) -> dict[str, str]:
    """The ``## name`` sections of a RESULTS.md for the script stems ``names``: name -> body.

    Only headings naming a script start a section, so a ``##`` line printed by a script
    stays in its body; the text before the first section (the header) is ignored.
    """
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        m = _SECTION.match(line)
        if m and m.group(1) in names:
            current = sections.setdefault(m.group(1), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(body).strip() for name, body in sections.items()}


def merge_results(
    head: str, old_text: str | None, new: dict[str, str], scripts: Sequence[str]
) -> str:
    """RESULTS.md text: ``head``, then one section per script in sorted order.

    New sections replace old ones of the same name; old sections of other scripts are
    kept; sections whose script is not in ``scripts`` are dropped.
    """
    sections = parse_sections(old_text, scripts) if old_text else {}
    sections.update(new)
    parts = [head.rstrip()]
    for name in sorted(scripts):
        if name in sections:
            parts += ["", f"## {name}", "", sections[name]]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these scripts")
    p.add_argument("--skip", nargs="+", metavar="NAME", help="do not run these scripts")
    p.add_argument("--list", action="store_true", help="list the benchmark scripts and exit")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    scripts = {p.stem: p for p in bench_scripts()}
    if args.list:
        print("\n".join(scripts))
        return 0
    try:
        chosen = select(list(scripts), args.only, args.skip)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    default_data = ROOT.parent / "shared" / "data" / "tgs-salt"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "TGS_DATA" not in env and default_data.is_dir():
        env["TGS_DATA"] = str(default_data)
    new, failed = {}, 0
    for name in chosen:
        new[name], ok = run_script(scripts[name], env)
        failed += not ok
    partial = bool(args.only or args.skip)
    old = RESULTS.read_text(encoding="utf-8") if partial and RESULTS.is_file() else None
    head = header(env.get("TGS_DATA", "none (TGS_DATA not set)"))
    atomic_write_text(RESULTS, merge_results(head, old, new, list(scripts)))
    print(f"wrote {RESULTS} ({len(new)} section(s) updated)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
