"""The server's log output: standard error, written in blocks rather than line by line.

Every state change of a message is a log line (about five per message), and a
StreamHandler on standard error makes one write(2) per line: under load that
was 4-5% of the event loop's time (bench/README.md, session 6). Here a line is
written at once when none was written for ``interval`` seconds (a quiet server
logs as before), and otherwise collects in a buffer that a background thread
writes out every ``interval``; a WARNING or worse, and logging.shutdown at exit,
flush at once. So a line is at most ``interval`` late. What a kill -9 can cost is the last
interval's INFO lines; the events they describe are rows in the database.
"""

from __future__ import annotations

import io
import logging
import math
import os
import select
import sys
import threading
import time
from typing import Any, TextIO

DEFAULT_INTERVAL = 0.2  # seconds an INFO line may wait in the buffer
# ``extra={LINES: True}`` on a record whose message is several log lines of our own
# making (the events of a commit): each gets the record's prefix.
LINES = "mmsc_lines"


class BlockBufferedHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler whose stream is flushed by time, not per record."""

    def __init__(self, stream: TextIO | None = None, interval: float = DEFAULT_INTERVAL) -> None:
        target = stream if stream is not None else sys.stderr
        # Our own text layer over the same file, with a buffer large enough for an
        # interval's lines under load; line_buffering off (stderr's own is on).
        buffered: TextIO = target
        fileno = _fileno(target)
        if fileno is not None:
            buffered = io.TextIOWrapper(
                io.BufferedWriter(_LineAlignedWrites(fileno), buffer_size=256 * 1024),
                encoding=getattr(target, "encoding", None) or "utf-8",
                errors="backslashreplace",
                line_buffering=False,
                write_through=False,
            )
        super().__init__(buffered)
        self.interval = interval
        self._flushed_at = -math.inf  # time.monotonic() of the last flush
        self._stop = threading.Event()
        self._start_flusher()
        # ``[server] workers`` forks: nothing buffered may be written twice, and a
        # thread does not survive the fork.
        os.register_at_fork(before=self.flush_now, after_in_child=self._start_flusher)

    def _start_flusher(self) -> None:
        flusher = threading.Thread(target=self._flush_periodically, daemon=True)
        flusher.name = "mmsc-log-flush"
        flusher.start()

    def flush(self) -> None:
        """Called by emit for every record: only a WARNING or worse (see ``emit``), the
        flusher thread and logging.shutdown really flush."""

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        if (
            record.levelno >= logging.WARNING
            or time.monotonic() - self._flushed_at >= self.interval
        ):
            self.flush_now()

    def flush_now(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self.stream is not None and hasattr(self.stream, "flush"):
                self.stream.flush()
            self._flushed_at = time.monotonic()

    def close(self) -> None:
        self._stop.set()
        try:
            self.flush_now()
        finally:
            super().close()

    def _flush_periodically(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush_now()
            except (OSError, ValueError):  # a closed or broken stream: nothing to write to
                return


PIPE_BUF = select.PIPE_BUF  # octets a write(2) to a pipe writes at once (4096 on Linux)


class _LineAlignedWrites(io.RawIOBase):
    """A file descriptor written in whole lines of at most PIPE_BUF octets per write(2).

    A write of up to PIPE_BUF octets to a pipe is atomic (POSIX), a bigger one is not:
    with ``[server] workers`` every worker writes its blocks to the same pipe (systemd,
    docker), and 256 KiB blocks came out torn into each other's lines when the reader
    was slow. A single line longer than PIPE_BUF goes out in pieces (it could not be
    atomic anyway)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def write(self, data: Any) -> int:  # any bytes-like object (BufferedWriter hands them)
        view = memoryview(data).cast("B")
        total, start = len(view), 0
        while start < total:
            end = min(start + PIPE_BUF, total)
            if end < total:  # back to the end of the last whole line in the chunk
                cut = bytes(view[start:end]).rfind(b"\n")
                if cut >= 0:
                    end = start + cut + 1
            start += os.write(self._fd, view[start:end])
        return total


def _fileno(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None  # e.g. a StringIO or pytest's capture: keep writing to it as is


class SecondCachedFormatter(logging.Formatter):
    """logging.Formatter with the default time format (``2026-12-05 07:20:03,123``),
    whose date and time are formatted once per second rather than per line
    (time.localtime and strftime were a quarter of the cost of a log line).

    A message of several lines becomes several log lines, each with the record's
    prefix (time, level, logger): the events of one commit are logged as one record
    (mmsc/core.py) and still read, grep and parse as a line per event."""

    def __init__(self, fmt: str | None = None) -> None:
        super().__init__(fmt)
        self._second = -1
        self._text = ""

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        message = record.message
        if "\n" not in message and "\r" not in message:
            return text
        if not getattr(record, LINES, False) or not text.endswith(message):
            # A record is one line: a newline in text from outside (a part's name, a
            # VASP's fault string) must not forge a line of its own.
            return text.replace("\r", "\\r").replace("\n", "\\n")
        prefix = text[: len(text) - len(message)]
        return prefix + ("\n" + prefix).join(message.split("\n"))

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._text = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return f"{self._text},{int(record.msecs):03d}"  # logging's default_msec_format
