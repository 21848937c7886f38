"""Compare this checkout's accept rate with another revision's, in ABBA order.

Why: this machine's speed drifts by tens of percent within an hour and by 3x between
sessions (bench/README.md, sessions 7 and 8), and back-to-back runs of one build are
not alike either. A single old/new pair measures the moment, not the build; old and
new interleaved as A B B A A B B A put both builds on the same moments, and their
means can be compared.

    .venv/bin/python bench/abba.py --baseline 6b2fa4a                    # MM1, 32 connections
    .venv/bin/python bench/abba.py --baseline main~3 --order ABBA -- --interface mm7

The baseline is checked out in a temporary git worktree with its own codec compiled
by mypyc (its sources may differ from this checkout's), and the durable-write helper
copied from this checkout when it has one. Each run is ``bench/mm1_bench.py`` of that
tree (which benchmarks its own tree's server) with ``--levels 32`` and the arguments
after ``--``. Prints one line per run and the means.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def compiled_modules(setup_py: Path) -> list[str]:
    """setup.py's COMPILED_MODULES, read without running setup.py (one list, not two)."""
    for node in ast.parse(setup_py.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "COMPILED_MODULES" for t in node.targets
        ):
            modules = ast.literal_eval(node.value)
            return [str(m) for m in modules]
    raise ValueError(f"{setup_py} has no COMPILED_MODULES list")


_LEVEL_LINE = re.compile(r"^\s*32\s+([\d,]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", re.M)
_PER_MESSAGE = re.compile(r"([\d,]+) µs per accepted")
_REFERENCE = re.compile(r"sum\(range\(1000\)\) takes ([\d.]+) µs")


@dataclass(frozen=True)
class Run:
    build: str  # "A" (baseline) or "B" (this checkout)
    rate: float  # accepted/s at 32 connections
    p99_ms: float
    us_per_message: float  # server CPU per accepted message
    reference_us: float | None  # the machine reference mm1_bench printed


def parse_run(build: str, output: str) -> Run:
    """The 32-connection figures of one mm1_bench output (ValueError if it has none)."""
    level = _LEVEL_LINE.search(output)
    cpu = _PER_MESSAGE.search(output)
    if level is None or cpu is None:
        raise ValueError("no 32-connection result in the benchmark's output")
    reference = _REFERENCE.search(output)
    return Run(
        build,
        float(level.group(1).replace(",", "")),
        float(level.group(4)),
        float(cpu.group(1).replace(",", "")),
        float(reference.group(1)) if reference else None,
    )


def summary(runs: list[Run]) -> str:
    """Per build: the mean rate and CPU per message, and B's change against A."""
    lines = []
    means: dict[str, tuple[float, float]] = {}
    for build in ("A", "B"):
        mine = [r for r in runs if r.build == build]
        if not mine:
            continue
        rate = statistics.mean(r.rate for r in mine)
        cpu = statistics.mean(r.us_per_message for r in mine)
        means[build] = (rate, cpu)
        rates = " / ".join(f"{r.rate:,.0f}" for r in mine)
        lines.append(f"{build}: {rates} accepted/s (mean {rate:,.0f}); {cpu:,.0f} µs per message")
    if len(means) == 2:
        (rate_a, cpu_a), (rate_b, cpu_b) = means["A"], means["B"]
        lines.append(
            f"B against A: rate {100 * (rate_b / rate_a - 1):+.1f}%,"
            f" CPU per message {100 * (cpu_b / cpu_a - 1):+.1f}%"
        )
    return "\n".join(lines)


def prepare_baseline(revision: str, where: Path) -> Path:
    """A worktree of ``revision`` with its codec compiled; removed by the caller."""
    tree = where / "baseline"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), revision],
        check=True,
        capture_output=True,
    )
    # mypyc builds through setuptools, which reads pyproject.toml; the metadata of an
    # older tree may not suit this venv's setuptools, and the build does not need it.
    pyproject = tree / "pyproject.toml"
    aside = where / "pyproject.toml"
    if pyproject.exists():
        pyproject.rename(aside)
    try:
        mypyc = Path(sys.executable).with_name("mypyc")
        subprocess.run(
            [str(mypyc), *compiled_modules(tree / "setup.py")],
            cwd=tree,
            check=True,
            capture_output=True,
            env={**os.environ, "MYPYC_OPT_LEVEL": "3"},
        )
    finally:
        if aside.exists():
            aside.rename(pyproject)
    for helper in ROOT.glob("storage/_durable*.so"):
        shutil.copy2(helper, tree / "storage" / helper.name)
    return tree


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="git revision to compare with")
    parser.add_argument("--order", default="ABBAABBA", help="A: baseline, B: this checkout")
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("bench_args", nargs="*", help="more mm1_bench.py arguments, after --")
    args = parser.parse_args(argv)
    if set(args.order) - {"A", "B"}:
        parser.error("--order is made of A and B")
    where = Path(tempfile.mkdtemp(prefix="mmsc-abba-"))
    try:
        trees = {"A": prepare_baseline(args.baseline, where), "B": ROOT}
        runs: list[Run] = []
        for i, build in enumerate(args.order, 1):
            command = [
                sys.executable,
                "bench/mm1_bench.py",
                "--levels",
                "32",
                "--duration",
                str(args.duration),
                *args.bench_args,
            ]
            done = subprocess.run(command, cwd=trees[build], capture_output=True, text=True)
            try:
                run = parse_run(build, done.stdout)
            except ValueError:
                print(f"run {i} ({build}) failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
                return 1
            runs.append(run)
            reference = f"{run.reference_us:.1f} µs" if run.reference_us else "?"
            print(
                f"run {i} {build}: {run.rate:,.0f}/s, p99 {run.p99_ms:.1f} ms,"
                f" {run.us_per_message:,.0f} µs per message (machine reference {reference})",
                flush=True,
            )
        print(summary(runs))
        return 0
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where / "baseline")],
            capture_output=True,
        )
        shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
