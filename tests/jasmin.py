"""Jasmin, a real SMS gateway, as the SMSC-side SMPP 3.4 server of integration tests.

The MMSC's SMPP client is judged against an SMSC that someone else wrote, not
against a stub that shares our reading of the spec. ``scripts/jasmin.sh`` runs
it on 127.0.0.1 (its own venv, Redis and RabbitMQ) and records every submit_sm
it accepts as one JSON line; this module drives that script and reads those
lines back. Nothing leaves the machine: messages are routed to a connector
that is never started.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "jasmin.sh"
# The first start installs Jasmin (pip, about half a minute) and, on a machine without them,
# Redis and RabbitMQ (apt); later starts take a second or two.
START_TIMEOUT = 900.0
STOP_TIMEOUT = 180.0
POLL_INTERVAL = 0.05


class JasminError(RuntimeError):
    """scripts/jasmin.sh failed; the message carries its output."""


def _decode(value: Any) -> Any:
    """Binary parameters are written as {"hex": ...}: give them back as bytes."""
    if isinstance(value, dict) and set(value) == {"hex"}:
        return bytes.fromhex(value["hex"])
    return value


class Jasmin:
    """One Jasmin instance as configured by the MMSC_JASMIN_* variables (the script's defaults)."""

    def __init__(self) -> None:
        self.home = Path(os.environ.get("MMSC_JASMIN_HOME", ROOT / ".cache" / "jasmin"))
        self.host = "127.0.0.1"
        self.port = int(os.environ.get("MMSC_JASMIN_SMPP_PORT", "2775"))
        self.system_id = os.environ.get("MMSC_JASMIN_SYSTEM_ID", "mmsc")
        self.password = os.environ.get("MMSC_JASMIN_PASSWORD", "mmscpw")
        self.received_file = self.home / "received_submit_sm.jsonl"

    def _script(self, command: str, timeout: float) -> str:
        """Run ``scripts/jasmin.sh COMMAND`` with our settings; its output, or JasminError."""
        env = dict(
            os.environ, MMSC_JASMIN_HOME=str(self.home), MMSC_JASMIN_SMPP_PORT=str(self.port)
        )
        try:
            proc = subprocess.run(
                ["bash", str(SCRIPT), command],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise JasminError(f"scripts/jasmin.sh {command} took over {timeout:.0f} s") from exc
        output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise JasminError(f"scripts/jasmin.sh {command} exited {proc.returncode}:\n{output}")
        return output

    def start(self) -> str:
        """Install if needed and start (or reuse) the server; returns when user can bind."""
        return self._script("start", START_TIMEOUT)

    def stop(self) -> str:
        """Stop what the script started; returns once the SMPP port is closed."""
        return self._script("stop", STOP_TIMEOUT)

    def restart(self) -> str:
        """An SMSC outage: Jasmin goes down (connections drop) and comes back, re-provisioned."""
        return self._script("restart", START_TIMEOUT)

    def is_up(self) -> bool:
        """Whether the SMPP port answers."""
        try:
            self._script("status", 30.0)
        except JasminError:
            return False
        return True

    def clear(self) -> None:
        """Forget what was received (tests count records from here)."""
        self.received_file.parent.mkdir(parents=True, exist_ok=True)
        self.received_file.write_bytes(b"")

    def received(self) -> list[dict[str, Any]]:
        """Every submit_sm recorded since the last clear(), oldest first.

        Keys are Jasmin's parameter names: short_message (and any other octet string, TLVs
        included) as bytes, source_addr, destination_addr and the other C-Octet Strings as
        str, integers as int, enumerated values (esm_class, data_coding, registered_delivery,
        ...) as Jasmin's str() of them. Besides: ``pdu``, the whole PDU as Jasmin re-encodes
        what it parsed (bytes: parse it for the wire value of those enumerations), ``user``
        (the system_id that was bound), ``sequence_number`` and ``time`` (epoch seconds).
        """
        try:
            data = self.received_file.read_bytes()
        except FileNotFoundError:
            return []
        # Only complete lines: the interceptor may be writing the last one right now.
        lines = data.split(b"\n")[:-1]
        return [
            {key: _decode(value) for key, value in json.loads(line).items()}
            for line in lines
            if line.strip()
        ]

    def wait_received(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The records once at least ``count`` have arrived; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.received()
            if len(records) >= count:
                return records
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"Jasmin recorded {len(records)} submit_sm within {timeout} s, "
                    f"expected {count}: {records!r}"
                )
            time.sleep(POLL_INTERVAL)


@pytest.fixture(scope="session")
def jasmin_server() -> Iterator[Jasmin]:
    """Jasmin for the whole session: started once, stopped at the end if this session started it.

    Fails (never skips) when Jasmin cannot be started: a test that needs an SMSC and
    silently does not run would hide a broken SMPP client.
    """
    server = Jasmin()
    was_up = server.is_up()
    failure = None
    try:
        server.start()
    except JasminError as exc:
        failure = str(exc)
    if failure is not None:  # outside the except block: the script's output, no traceback
        pytest.fail(failure, pytrace=False)
    server.clear()
    try:
        yield server
    finally:
        if not was_up:
            server.stop()
