"""The codec runs the same as plain Python, as it does where mypyc cannot compile it.

setup.py compiles protocol/wsp.py, protocol/mms.py, protocol/mm7_mime.py and
protocol/mm7_xml.py with mypyc; the suite otherwise only sees the compiled
modules. This runs the codec tests again against a copy of the plain sources,
in a child pytest whose import path puts that copy first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

CODEC_TESTS = [
    "tests/test_wsp.py",
    "tests/test_mms.py",
    "tests/test_wap_push.py",
    "tests/test_corpus.py",
    "tests/test_properties.py",
    "tests/test_mm7_content.py",
    "tests/test_mm7_hardening.py",
]


def test_codec_suite_passes_as_plain_python(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "protocol", tmp_path / "protocol", ignore=shutil.ignore_patterns("*.so"))
    env = dict(
        os.environ,
        PYTHONPATH=str(tmp_path),
        PYTHONDONTWRITEBYTECODE="1",
        MMSC_HYPOTHESIS_SCALE="0.25",
        MMSC_EXPECT_PURE_PYTHON="1",  # tests/conftest.py checks which codec was imported
    )
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import protocol, protocol.mms as m; print(protocol.COMPILED, m.__file__)",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.split() == ["False", str(tmp_path / "protocol" / "mms.py")]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--import-mode=append",
            "-o",
            "addopts=",
            "--rootdir",
            str(ROOT),
            *(str(ROOT / t) for t in CODEC_TESTS),
        ],
        env=env,
        cwd=tmp_path,  # python -m puts the working directory first on sys.path
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and " failed" not in result.stdout


def test_installed_codec_is_compiled() -> None:
    """setup.py compiled the hot path (MMSC_PURE_PYTHON=1 opts out, and says so here)."""
    import protocol

    assert protocol.COMPILED or os.environ.get("MMSC_PURE_PYTHON") == "1"
