"""Shared test fixtures: where the shared corpus and tools live."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

import protocol
from tests.pg import temp_database

# CI runs the property tests with a fixed seed so that a landing is reproducible;
# developers' runs stay random and keep finding new cases (the failing example is
# stored in .hypothesis and printed to be turned into a regression test).
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
if os.environ.get("MMSC_EXPECT_PURE_PYTHON") == "1" and protocol.COMPILED:
    raise RuntimeError(f"expected the plain-Python codec, imported {protocol._mms.__file__}")
SHARED = Path(os.environ.get("MMSC_SHARED", ROOT.parent / "shared")).resolve()
CORPUS = SHARED / "corpus"
TOOLS = SHARED / "tools"


@dataclass(frozen=True)
class Vector:
    file: str
    pdu_type: str
    notes: str

    @property
    def path(self) -> Path:
        return CORPUS / "mms" / self.file

    @property
    def negative(self) -> bool:
        return "NEGATIVE" in self.pdu_type or "truncated" in self.pdu_type

    @property
    def kind(self) -> str:
        if self.file.endswith(".tpdu"):
            return "tpdu"
        if self.file.endswith(".wsp"):
            return "push"
        return "mms"


def mms_manifest() -> list[Vector]:
    manifest = CORPUS / "mms" / "MANIFEST.tsv"
    if not manifest.exists():
        raise RuntimeError(f"shared corpus not found at {CORPUS} (set MMSC_SHARED)")
    with open(manifest, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [Vector(r["file"], r["pdu_type"], r["notes"]) for r in rows]


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    return CORPUS


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each engine: an SQLite file, or a throw-away PostgreSQL database
    (tests/pg.py; an unreachable server fails those cases, nothing is skipped)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'mmsc.db'}"
        return
    with temp_database() as url:
        yield url
