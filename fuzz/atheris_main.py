"""One libFuzzer process for one target: ``python -m fuzz.atheris_main TARGET [libFuzzer
options] [corpus dirs]``, started by fuzz/run.py with a plain-Python copy of
``protocol`` first on the path (atheris instruments bytecode; the mypyc-compiled
modules of the installed codec have none)."""

from __future__ import annotations

import os
import sys

import atheris


def main() -> None:
    name, options = sys.argv[1], sys.argv[2:]
    with atheris.instrument_imports(include=["protocol", "mmsc.addresses"]):
        import protocol
        from fuzz.targets import TARGETS
    source = os.environ["MMSC_FUZZ_SRC"]
    if protocol.COMPILED or not os.path.abspath(protocol.__file__).startswith(source):
        raise SystemExit(f"fuzz: imported the compiled codec ({protocol.__file__}), not {source}")
    atheris.Setup([sys.argv[0], *options], TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
