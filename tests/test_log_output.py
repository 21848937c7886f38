"""The server's block-buffered log output and its id pool: nothing lost, nothing twice."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mmsc.log_output import BlockBufferedHandler


def _logger(handler: logging.Handler, name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_lines_under_load_wait_for_the_flusher_and_a_warning_flushes_at_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log"
    with open(path, "w") as target:
        handler = BlockBufferedHandler(target, interval=3600.0)  # the thread never fires
        logger = _logger(handler, "test.log_output.load")
        logger.info("first")  # nothing flushed for an interval: written at once
        assert path.read_text() == "first\n"
        for i in range(100):
            logger.info("line %d", i)
        assert path.read_text() == "first\n"  # buffered, no write(2) per line
        logger.warning("trouble")
        lines = path.read_text().splitlines()
        assert lines == ["first"] + [f"line {i}" for i in range(100)] + ["trouble"]
        logger.info("last")
        handler.close()  # what logging.shutdown does at exit
        assert path.read_text().splitlines()[-1] == "last"


def test_the_flusher_thread_writes_buffered_lines_within_its_interval(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with open(path, "w") as target:
        handler = BlockBufferedHandler(target, interval=0.05)
        logger = _logger(handler, "test.log_output.flusher")
        logger.info("a")
        logger.info("b")  # within the interval of "a": left to the thread
        flushed = threading.Event()
        original = handler.flush_now

        def observed() -> None:
            original()
            if path.read_text().endswith("b\n"):
                flushed.set()

        handler.flush_now = observed  # type: ignore[method-assign]
        assert flushed.wait(10)
        handler.close()
    assert path.read_text() == "a\nb\n"


def test_a_forked_worker_neither_repeats_the_parents_lines_nor_loses_its_own(
    tmp_path: Path,
) -> None:
    """[server] workers forks after logging started; each line must appear exactly once."""
    script = f"""
import logging, os, sys
sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
from mmsc.log_output import BlockBufferedHandler
logging.basicConfig(level=logging.INFO, format="%(message)s",
                    handlers=[BlockBufferedHandler(interval=3600.0)])
log = logging.getLogger("t")
log.info("start")
for i in range(50):
    log.info("parent %d", i)
pid = os.fork()
if pid == 0:
    for i in range(50):
        log.info("child %d", i)
    logging.shutdown()
    os._exit(0)
os.waitpid(pid, 0)
log.info("parent done")
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    ).stderr.splitlines()
    assert sorted(out) == sorted(
        ["start", "parent done"]
        + [f"parent {i}" for i in range(50)]
        + [f"child {i}" for i in range(50)]
    )


def test_the_second_cached_formatter_writes_what_logging_s_own_would() -> None:
    from mmsc.log_output import SecondCachedFormatter

    fmt = "%(asctime)s %(levelname)s %(name)s %(message)s"
    ours, theirs = SecondCachedFormatter(fmt), logging.Formatter(fmt)
    for created in (1_764_000_000.001, 1_764_000_000.999, 1_764_000_001.5, 1_764_000_000.25):
        record = logging.LogRecord("mmsc.events", logging.INFO, "", 0, "m=%s", ("x",), None)
        record.created, record.msecs = created, int((created - int(created)) * 1000)
        assert ours.format(record) == theirs.format(record)
    record.created = 1_764_000_000.0
    assert ours.formatTime(record, "%H") == theirs.formatTime(record, "%H")


def test_a_message_of_several_lines_becomes_a_log_line_each_with_its_prefix() -> None:
    """The events of one commit are one record (mmsc/core.py): each still reads as a log
    line of its own, with time, level and logger; a traceback is left as it is."""
    from mmsc.log_output import SecondCachedFormatter

    fmt = "%(asctime)s %(levelname)s %(name)s %(message)s"
    ours = SecondCachedFormatter(fmt)
    record = logging.LogRecord(
        "mmsc.events", logging.INFO, "", 0, "%s", ("event=a\nevent=b\nevent=c",), None
    )
    record.created, record.msecs = 1_764_000_000.5, 500
    record.mmsc_lines = True  # extra={LINES: True}, as mmsc.core logs a commit's events
    single = logging.Formatter(fmt)
    expected = []
    for line in ("event=a", "event=b", "event=c"):
        one = logging.LogRecord("mmsc.events", logging.INFO, "", 0, line, (), None)
        one.created, one.msecs = record.created, record.msecs
        expected.append(single.format(one))
    assert ours.format(record).split("\n") == expected

    try:
        raise ValueError("boom")
    except ValueError:
        failing = logging.LogRecord("mmsc", logging.ERROR, "", 0, "one\ntwo", (), sys.exc_info())
    text = ours.format(failing).split("\n")
    # Any other record stays one line: a newline in outside text cannot forge a line.
    assert text[0].endswith(" ERROR mmsc one\\ntwo")
    assert text[1] == "Traceback (most recent call last):"


def test_an_event_detail_cannot_forge_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    """A part's name, a VASP's fault string: outside text in an event's detail."""
    from mmsc.core import _log_events
    from mmsc.log_output import SecondCachedFormatter
    from storage import repository as repo

    forged = "x.bin\n2026-12-06 18:00:00,000 INFO mmsc.events message=FORGED event=retrieved"
    rows = [repo.Event("M1", "adaptation-notes", 1.0, 7, None, forged)]
    rows.append(repo.Event("M1", "fetched", 1.0, 7, None, "MMS 1.2"))
    with caplog.at_level(logging.INFO, logger="mmsc.events"):
        _log_events(rows)
    lines = SecondCachedFormatter("%(levelname)s %(name)s %(message)s").format(caplog.records[-1])
    assert [line.split(" event=")[1].split()[0] for line in lines.split("\n")] == [
        "adaptation-notes",
        "fetched",
    ]
    assert "FORGED" in lines.split("\n")[0]  # kept, escaped, on its event's line


def test_blocks_reach_a_pipe_in_whole_lines_of_at_most_pipe_buf(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Workers share one pipe: only writes of at most PIPE_BUF octets are atomic."""
    import os

    from mmsc.log_output import PIPE_BUF, _LineAlignedWrites

    read_end, write_end = os.pipe()
    sizes: list[int] = []
    real_write = os.write

    def counted(fd: int, data: bytes | memoryview) -> int:
        sizes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", counted)
    block = b"".join(b"line %05d %s\n" % (i, b"x" * (i % 90)) for i in range(300))
    try:
        assert _LineAlignedWrites(write_end).write(block) == len(block)
        monkeypatch.undo()
        received = b""
        while len(received) < len(block):
            received += os.read(read_end, 65536)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert received == block
    assert len(sizes) > 1 and max(sizes) <= PIPE_BUF
    offsets = [sum(sizes[: i + 1]) for i in range(len(sizes))]
    assert all(block[end - 1 : end] == b"\n" for end in offsets)  # every write ends a line
