"""What the MMSC pushes to a recipient: AOSP's mandatory fields, and one SMS when it can."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest

from mmsc.config import ConfigError
from mmsc.core import Mmsc, Policy
from protocol import mms, wap_push
from storage import db
from storage.payloads import InMemoryPayloadStore

NOW = 1_800_000_000.0


def row(subject: str | None) -> SimpleNamespace:
    return SimpleNamespace(
        token="abcdefghijklmnopqrstuvwx",
        m_sender_visible=True,
        m_originator="+447700900123",
        m_subject=subject,
        m_message_class="Personal",
        m_size=254000,
        m_expires_at=NOW + 604800,
        m_delivery_report=False,
    )


@pytest.mark.parametrize(
    ("mode", "subject", "has_subject"),
    [
        ("auto", "Hi", True),  # fits one SMS with it
        ("auto", "Holiday pictures from the beach", False),  # would need two: left out
        ("always", "Holiday pictures from the beach", True),
        ("never", "Hi", False),
    ],
)
def test_subject_policy_and_one_sms(tmp_path: Path, mode: str, subject: str, has_subject: bool):
    engine = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    policy = dataclasses.replace(Policy(), notify_subject=mode)
    core = Mmsc(engine, InMemoryPayloadStore(), policy)
    data = core.notification_pdu(row(subject), NOW)
    pdu = mms.decode(data)
    assert pdu.message_type == "m-notification-ind"
    for field in ("X-Mms-Message-Class", "X-Mms-Message-Size", "X-Mms-Expiry"):
        assert field in pdu.headers
    assert list(pdu.headers)[-1] == "X-Mms-Content-Location"
    assert ("Subject" in pdu.headers) is has_subject
    segments = wap_push.notification_segments(data, tid=1, reference=1)
    if mode == "auto":
        assert len(segments) == 1
    if mode == "always":
        assert len(segments) == 2


def test_include_subject_config_values() -> None:
    for value, mode in ((True, "always"), (False, "never"), ("auto", "auto"), ("NEVER", "never")):
        assert Policy.from_config({"notify": {"include_subject": value}}).notify_subject == mode
    with pytest.raises(ConfigError, match=r"notify\.include_subject"):
        Policy.from_config({"notify": {"include_subject": "sometimes"}})
