"""The `mmsc` command as a user runs it: a real process, real files, real exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from protocol import mms, wap_push
from tests.conftest import CORPUS, ROOT

MMSC = [sys.executable, "-m", "mmsc.cli"]


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*MMSC, *args], input=stdin, capture_output=True, cwd=ROOT, timeout=60, check=False
    )


def test_decode_prints_the_design_json() -> None:
    result = run("pdu", "decode", str(CORPUS / "mms" / "vectorcore__m-send-req-sonim.bin"))
    assert result.returncode == 0, result.stderr
    obj = json.loads(result.stdout)
    assert obj["message_type"] == "m-send-req"
    assert obj["transaction_id"] == "T19d6aeff2a3"
    assert obj["mms_version"] == "1.2"
    assert obj["headers"]["To"] == ["3342012832/TYPE=PLMN"]
    assert obj["content_type"] == "application/vnd.wap.multipart.related"
    assert obj["content_type_params"]["start"] == "<smil>"
    assert [p["content_type"] for p in obj["parts"]] == ["application/smil", "image/jpeg"]
    assert obj["parts"][0]["headers"]["Content-ID"] == "<smil>"


def test_decode_encode_decode_is_stable(tmp_path: Path) -> None:
    source = CORPUS / "mms" / "mmsd__rc-mms-1-3-con-211.mms"
    first = run("pdu", "decode", str(source))
    (tmp_path / "a.json").write_bytes(first.stdout)
    encoded = run("pdu", "encode", str(tmp_path / "a.json"), "-o", str(tmp_path / "a.mms"))
    assert encoded.returncode == 0, encoded.stderr
    second = run("pdu", "decode", str(tmp_path / "a.mms"))
    assert json.loads(second.stdout) == json.loads(first.stdout)


def test_stdin_hex_and_version_target() -> None:
    hex_text = (CORPUS / "mms" / "mmsd__m-send-conf-1.mms").read_bytes().hex().encode()
    decoded = run("pdu", "decode", "--hex", "-", stdin=hex_text)
    assert json.loads(decoded.stdout)["headers"]["X-Mms-Response-Status"] == "Ok"
    encoded = run("pdu", "encode", "--hex", "--mms-version", "1.3", "-", stdin=decoded.stdout)
    raw = bytes.fromhex(encoded.stdout.decode())
    assert mms.decode(raw).mms_version == "1.3"


def test_bad_pdu_is_one_line_without_traceback(tmp_path: Path) -> None:
    result = run("pdu", "decode", str(CORPUS / "mms" / "capcom6__m-notification-ind-truncated.mms"))
    assert result.returncode == 1
    assert result.stdout == b""
    err = result.stderr.decode()
    assert err.count("\n") == 1 and "offset 105" in err and "Traceback" not in err
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"message_type": "m-send-req", "headers": {"X-Mms-Priority": "Urgent"}}')
    result = run("pdu", "encode", str(bad_json))
    assert result.returncode == 1 and "Traceback" not in result.stderr.decode()
    result = run("pdu", "decode", str(tmp_path / "missing.mms"))
    assert result.returncode == 1 and "no such file" in result.stderr.decode()


def test_push_command_prints_sms_user_data(tmp_path: Path) -> None:
    notification = {
        "message_type": "m-notification-ind",
        "transaction_id": "abc",
        "mms_version": "1.2",
        "headers": {
            "X-Mms-Message-Class": "Personal",
            "X-Mms-Message-Size": 1000,
            "X-Mms-Expiry": {"relative": 3600},
            "X-Mms-Content-Location": "http://m/abc",
        },
    }
    source = tmp_path / "n.json"
    source.write_text(json.dumps(notification))
    result = run("pdu", "push", "--tid", "9", str(source))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().split()
    assert len(lines) == 1
    _udh, datagram = wap_push.reassemble([bytes.fromhex(line) for line in lines])
    _push, pdu = wap_push.decode_mms_push(datagram)
    assert pdu.headers["X-Mms-Content-Location"] == "http://m/abc"


@pytest.mark.timeout(120)
def test_serve_with_no_configuration(tmp_path: Path) -> None:
    """The README's run command: no config file, SQLite under ./var, then SIGTERM."""
    env = dict(
        os.environ,
        MMSC_MM1__LISTEN="127.0.0.1:0",
        MMSC_ADMIN__LISTEN="127.0.0.1:0",
        MMSC_MM7__LISTEN="127.0.0.1:0",
        PYTHONPATH=str(ROOT),
    )
    proc = subprocess.Popen(
        [*MMSC, "serve"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        urls: dict[str, str] = {}
        seen = []
        while len(urls) < 3:
            line = proc.stdout.readline().decode()  # blocks until each listener is bound
            assert line, "".join(seen)
            seen.append(line)
            if "listening on http://" in line and line.startswith("mmsc: "):
                urls[line.split()[1]] = line.split()[-1]
        with urllib.request.urlopen(urls["admin"] + "/healthz", timeout=10) as resp:
            assert resp.status == 200 and resp.read() == b"ok\n"
        with urllib.request.urlopen(urls["admin"] + "/readyz", timeout=10) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(urls["admin"] + "/metrics", timeout=10) as resp:
            assert b"# TYPE mmsc_messages_received_total counter" in resp.read()
        assert (tmp_path / "var" / "mmsc.db").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("variable", "value", "key"),
    [
        ("MMSC_MM1__MAX_MESSAGE_SIZE", "1MB", "mm1.max_message_size"),
        ("MMSC_MM1__TRUST_PDU_SENDER", "perhaps", "mm1.trust_pdu_sender"),
        ("MMSC_SCHEDULER__BATCH", "many", "scheduler.batch"),
        ("MMSC_STORAGE__PAYLOAD_FSYNC", "sometimes", "storage.payload_fsync"),
        ("MMSC_ADAPT__TIMEOUT", "0", "adapt.timeout"),
        ("MMSC_ADAPT__RETRY_AFTER", "later", "adapt.retry_after"),
    ],
)
def test_serve_refuses_a_bad_value_before_starting(
    tmp_path: Path, variable: str, value: str, key: str
) -> None:
    """A bad value stops `mmsc serve` with the key's name, before the database exists."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), **{variable: value})
    result = subprocess.run(
        [*MMSC, "serve"], cwd=tmp_path, env=env, capture_output=True, timeout=60, check=False
    )
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert key in stderr and "Traceback" not in stderr
    assert not (tmp_path / "var").exists()


def test_serve_reports_bad_config(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[admin]\nlisten = 'nonsense'\n")
    result = run("serve", "-c", str(cfg))
    assert result.returncode == 2
    assert "admin.listen" in result.stderr.decode() and "Traceback" not in result.stderr.decode()


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("pdu", "encode", "-"), b'{"message_type": "m-send-req", "transaction_id": 5}', "string"),
        (("pdu", "encode", "-"), b'{"message_type": "m-send-req", "content_type": 5}', "string"),
        (
            ("pdu", "encode", "-"),
            b'{"message_type": "m-send-req", "content_type_params": [1]}',
            "content_type_params",
        ),
        (
            ("pdu", "encode", "-"),
            b'{"message_type": "m-send-req", "parts": [{"content_type": "a/b", "params": 1}]}',
            "part 0",
        ),
        (("pdu", "decode", "/"), None, "cannot read /"),
    ],
)
def test_bad_input_is_one_line_not_a_traceback(
    args: tuple[str, ...], stdin: bytes | None, message: str
) -> None:
    result = run(*args, stdin=stdin)
    stderr = result.stderr.decode()
    assert result.returncode != 0 and "Traceback" not in stderr
    assert stderr.count("\n") == 1 and message in stderr, stderr
