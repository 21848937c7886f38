"""Coverage-guided fuzzing of the decoders with atheris (libFuzzer for Python).

    bash scripts/fuzz.sh                      # every target, 60 s each, two at a time
    bash scripts/fuzz.sh --seconds 600 mm7    # one target for longer

Why besides the hypothesis properties in tests/: coverage guidance reaches states
that random and mutated inputs do not. Its first run (session 12, about 24 minutes)
found five bugs the properties had missed: exceptions escaping two decoders and
three inputs on which a decoder's work grew quadratically.

Each target runs in its own process on a plain-Python copy of ``protocol/``
(bytecode that atheris can instrument), starting from the shared corpus's samples
(fuzz/targets.py ``seeds``) and the corpus it grew on earlier runs, kept under
``.cache/fuzz/corpus/<target>``. A finding stops its target; libFuzzer writes the
input to ``.cache/fuzz/findings/<target>/`` and the traceback to the target's log.
Exit status 1 if any target found something.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fuzz.targets import TARGETS, seeds

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MMSC_SHARED", ROOT.parent / "shared")).resolve()
WORK = ROOT / ".cache" / "fuzz"
MAX_LEN = {"smpp": 4096, "mm7_values": 256, "addresses": 512}  # bytes; the others 64 KB


def plain_copy(destination: Path) -> Path:
    """``protocol/``'s Python sources without the compiled modules beside them."""
    target = destination / "protocol"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for source in (ROOT / "protocol").glob("*.py"):
        shutil.copy2(source, target / source.name)
    return destination


def write_seeds(name: str, directory: Path) -> None:
    """The target's seeds as libFuzzer reads a corpus: one file per input."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for data in seeds(name, SHARED / "corpus"):
        name_of = hashlib.sha1(data, usedforsecurity=False).hexdigest()
        (directory / name_of).write_bytes(data)


def fuzz_one(name: str, seconds: int, src: Path) -> tuple[str, int, Path]:
    corpus, seed_dir = WORK / "corpus" / name, WORK / "seeds" / name
    findings, log = WORK / "findings" / name, WORK / "logs" / f"{name}.log"
    for directory in (corpus, findings, log.parent):
        directory.mkdir(parents=True, exist_ok=True)
    write_seeds(name, seed_dir)
    command = [
        sys.executable,
        "-m",
        "fuzz.atheris_main",
        name,
        f"-max_total_time={seconds}",
        "-rss_limit_mb=2048",
        "-timeout=5",  # seconds for one input: longer is a finding (a hang)
        f"-max_len={MAX_LEN.get(name, 65536)}",
        f"-artifact_prefix={findings}/",
        "-print_final_stats=1",
        str(corpus),
        str(seed_dir),
    ]
    # The plain copy first; the work directory as cwd, so the checkout's own
    # (compiled) protocol is not found through the current directory.
    env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{ROOT}", MMSC_FUZZ_SRC=str(src))
    with open(log, "wb") as out:
        status = subprocess.run(command, cwd=WORK, env=env, stdout=out, stderr=out).returncode
    return name, status, log


def executed_inputs(log: str) -> str:
    """libFuzzer's count of inputs run, from its final statistics ("?" if it has none)."""
    for line in reversed(log.splitlines()):
        if line.startswith("stat::number_of_executed_units:"):
            return line.rsplit(":", 1)[1].strip()
    return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", metavar="TARGET", help=", ".join(TARGETS))
    parser.add_argument("--seconds", type=int, default=60, help="per target (60)")
    parser.add_argument("--jobs", type=int, default=2, help="targets at once (2)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.targets if name not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    names = args.targets or list(TARGETS)
    src = plain_copy(WORK / "src")
    started = time.monotonic()
    found = []
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        for name, status, log in pool.map(lambda n: fuzz_one(n, args.seconds, src), names):
            execs = executed_inputs(log.read_text(errors="replace"))
            verdict = "clean" if status == 0 else f"FINDING (exit {status}), see {log}"
            print(f"{name:<11} {execs:>10} inputs  {verdict}", flush=True)
            if status != 0:
                found.append(name)
    took = f"{len(names)} targets in {time.monotonic() - started:.0f} s"
    if found:
        print(f"fuzz: {took}; findings in {', '.join(found)}, inputs in {WORK / 'findings'}")
    else:
        print(f"fuzz: {took}, clean")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
