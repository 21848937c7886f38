"""The fuzz targets (fuzz/targets.py) stay runnable between fuzzing runs: every seed
reaches its target, and each target passes on its seeds and on random bytes. The
fuzzing itself (atheris, scripts/fuzz.sh) is not part of the suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz.run import plain_copy
from fuzz.targets import TARGETS, InternalError, seeds, target_mm7
from tests.conftest import CORPUS, ROOT

SCALE = float(os.environ.get("MMSC_HYPOTHESIS_SCALE", "1"))


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_target_has_seeds_and_passes_them(name: str) -> None:
    found = list(seeds(name, CORPUS))
    assert len(found) >= 5, f"{name}: only {len(found)} seeds"
    for data in found:
        TARGETS[name](data)


@settings(max_examples=max(5, int(200 * SCALE)), deadline=None)
@given(st.sampled_from(list(TARGETS)), st.binary(max_size=2048))
def test_targets_pass_random_bytes(name: str, data: bytes) -> None:
    TARGETS[name](data)


def test_an_internal_error_of_mm7_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 3000 from mm7.decode means an exception of ours escaped inside it."""
    from protocol import mm7

    def broken(*_args: object, **_kwargs: object) -> None:
        raise mm7.Mm7DecodeError(3000, "internal error: KeyError")

    monkeypatch.setattr(mm7, "decode", broken)
    with pytest.raises(InternalError):
        target_mm7(b"text/xml\x00<a/>")


def test_the_fuzzed_codec_is_the_plain_python_copy(tmp_path: Path) -> None:
    """atheris instruments bytecode: the run must not import the compiled modules."""
    src = plain_copy(tmp_path)
    assert not list((src / "protocol").glob("*.so"))
    code = "import protocol, sys; print(protocol.COMPILED, protocol.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{ROOT}"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out[0] == "False" and out[1].startswith(str(src))
