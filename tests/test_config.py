"""Configuration: environment overrides keep what the operator wrote, and every key is
read by its type, so a wrong value is a ConfigError naming the key (DESIGN.md §3)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from mmsc import config as settings
from mmsc.config import ConfigError, apply_env, load
from mmsc.core import Policy
from mmsc.mm1 import Mm1Settings
from mmsc.mm7 import Mm7Limits
from mmsc.mm7_config import load_vasps, password_variable
from mmsc.notify.base import make_backend
from mmsc.notify.smpp_config import load_settings


def env_config(**variables: str) -> dict[str, Any]:
    return load(None, environ={f"MMSC_{name}": value for name, value in variables.items()})


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("12", 12),
        ("1.5", 1.5),
        ("true", True),
        ('"quoted"', "quoted"),
        ('["A", "B"]', ["A", "B"]),
        # Numbers that do not read back as written stay text: for a text key the "+"
        # or the digits as written are the value.
        ("+4912345", "+4912345"),
        ("0x1F2A", "0x1F2A"),
        ("1_000", "1_000"),
        ("1e3", "1e3"),
        ("False", "False"),
        ("X-MSISDN", "X-MSISDN"),
    ],
)
def test_environment_values(raw: str, value: object) -> None:
    config: dict[str, Any] = {}
    apply_env(config, {"MMSC_SMPP__SOURCE_ADDR": raw})
    assert config["smpp"]["source_addr"] == value
    assert type(config["smpp"]["source_addr"]) is type(value)


def test_a_false_string_never_turns_lab_mode_on() -> None:
    for raw in ("False", "false", "no", "off", "0"):
        assert (
            Mm1Settings.from_config(env_config(MM1__TRUST_PDU_SENDER=raw)).trust_pdu_sender is False
        )
    for raw in ("True", "yes", "on", "1"):
        assert (
            Mm1Settings.from_config(env_config(MM1__TRUST_PDU_SENDER=raw)).trust_pdu_sender is True
        )
    assert Mm1Settings.from_config(env_config()).trust_pdu_sender is False
    with pytest.raises(ConfigError, match=r"mm1\.trust_pdu_sender: expected true or false"):
        Mm1Settings.from_config(env_config(MM1__TRUST_PDU_SENDER="maybe"))


def test_msisdn_headers_from_the_environment_are_header_names() -> None:
    one = Mm1Settings.from_config(env_config(MM1__MSISDN_HEADERS="X-MSISDN"))
    assert one.msisdn_headers == ["X-MSISDN"]
    two = Mm1Settings.from_config(env_config(MM1__MSISDN_HEADERS="X-MSISDN, X-Up-Calling-Line-ID"))
    assert two.msisdn_headers == ["X-MSISDN", "X-Up-Calling-Line-ID"]
    toml = Mm1Settings.from_config(env_config(MM1__MSISDN_HEADERS='["X-A", "X-B"]'))
    assert toml.msisdn_headers == ["X-A", "X-B"]
    with pytest.raises(ConfigError, match=r"mm1\.msisdn_headers"):
        Mm1Settings.from_config({"mm1": {"msisdn_headers": ["X-A", 7]}})


def test_integers_and_numbers() -> None:
    section = {"hex": "0x10", "grouped": "1_000", "float": 2.5, "flag": True, "big": 70000}
    assert settings.integer(section, "s", "hex", 0) == 16
    assert settings.integer(section, "s", "grouped", 0) == 1000
    assert settings.integer(section, "s", "missing", 7) == 7
    with pytest.raises(ConfigError, match=r"s\.float: expected an integer, got 2\.5"):
        settings.integer(section, "s", "float", 0)
    with pytest.raises(ConfigError, match=r"s\.flag"):
        settings.integer(section, "s", "flag", 0)
    with pytest.raises(ConfigError, match=r"s\.big: expected an integer in 1\.\.65535"):
        settings.integer(section, "s", "big", 0, low=1, high=65535)
    assert settings.number({"n": "1e3"}, "s", "n", 0.0) == 1000.0
    for bad in ("nan", "inf", "soon", -1, False):
        with pytest.raises(ConfigError, match=r"s\.n"):
            settings.number({"n": bad}, "s", "n", 0.0)
    assert settings.number({"n": 0}, "s", "n", 1.0) == 0.0
    with pytest.raises(ConfigError, match=r"s\.n: expected a positive number"):
        settings.number({"n": 0}, "s", "n", 1.0, positive=True)


def test_text_keeps_what_was_written() -> None:
    config = env_config(SMPP__SOURCE_ADDR="+4912345", SMPP__PASSWORD="0x1F2A")
    bind = load_settings(config).binds[0]
    assert bind.source_addr == "+4912345"
    assert bind.params.password == "0x1F2A"
    numeric = load_settings(env_config(SMPP__PASSWORD="1234")).binds[0]
    assert numeric.params.password == "1234"
    with pytest.raises(ConfigError, match=r"s\.t: expected a string"):
        settings.text({"t": True}, "s", "t", "")


@pytest.mark.parametrize(
    ("variable", "value", "key"),
    [
        ("MM1__MAX_MESSAGE_SIZE", "1MB", "mm1.max_message_size"),
        ("MM1__MAX_MESSAGE_SIZE", "0", "mm1.max_message_size"),
        ("MM1__DEFAULT_EXPIRY", "a week", "mm1.default_expiry"),
        ("MM1__NOTIFICATION_VERSION", "2.0", "mm1.notification_version"),
        ("SCHEDULER__NOTIFY_MAX_ATTEMPTS", "0", "scheduler.notify_max_attempts"),
        ("NOTIFY__RETRY_INITIAL", "-1", "notify.retry_initial"),
        ("STORAGE__KEEP_PUSHES", "forever", "storage.keep_pushes"),
    ],
)
def test_bad_values_name_the_key(variable: str, value: str, key: str) -> None:
    config = env_config(**{variable: value})
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        for read in (Policy.from_config, Mm1Settings.from_config, Mm7Limits.from_config):
            read(config)


def test_mm7_limits() -> None:
    assert Mm7Limits.from_config(env_config(MM1__MAX_MESSAGE_SIZE="1000")).max_body == 67536
    with pytest.raises(ConfigError, match=r"mm7\.max_body_size"):
        Mm7Limits.from_config(env_config(MM7__MAX_BODY_SIZE="big"))


@pytest.mark.parametrize(
    ("coding", "ok"),
    [(4, True), (0xF5, True), (2, True), (0x14, True), (0, False), (8, False), (0xF0, False)],
)
def test_smpp_data_coding_must_be_eight_bit(coding: int, ok: bool) -> None:
    config = {"smpp": {"data_coding": coding}}
    if ok:
        assert load_settings(config).binds[0].data_coding == coding
    else:
        with pytest.raises(ConfigError, match=r"smpp\.bind\[0\]\.data_coding: .* not an 8-bit"):
            load_settings(config)


def test_backend_none_with_smpp_configured_is_said_loudly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mmsc.notify"):
        assert make_backend({"notify": {}}).name == "none"
        assert not caplog.records
        assert make_backend({"notify": {}, "smpp": {"bind": [{"host": "smsc"}]}}).name == "none"
    assert "notifications are dropped" in caplog.text


def test_vasp_secrets_from_the_environment() -> None:
    assert password_variable("acme-corp") == "MMSC_MM7_VASP_ACME_CORP_PASSWORD"
    table = {"name": "acme-corp", "deliver_url": "http://127.0.0.1:9/mm7"}
    config = {"mm7": {"vasp": [table]}}
    with pytest.raises(ConfigError, match="MMSC_MM7_VASP_ACME_CORP_PASSWORD"):
        load_vasps(config, environ={})
    environ = {
        "MMSC_MM7_VASP_ACME_CORP_PASSWORD": "in",
        "MMSC_MM7_VASP_ACME_CORP_DELIVER_PASSWORD": "out",
    }
    account = load_vasps(config, environ=environ)["acme-corp"]
    assert (account.password, account.deliver_password) == ("in", "out")


def test_the_working_directory_config_comes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert settings.config_file() == settings.DEFAULT_CONFIG  # the checkout's own
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "mmsc.toml").write_text('[admin]\nlisten = "127.0.0.1:9999"\n')
    assert settings.config_file() == Path("conf/mmsc.toml")
    assert load(None, environ={})["admin"]["listen"] == "127.0.0.1:9999"
    assert settings.config_file("other.toml") == Path("other.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        load("other.toml", environ={})


def test_a_send_that_can_outlast_half_the_lease_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from mmsc.notify.smpp import SmppBackend
    from mmsc.server import _check_lease

    with caplog.at_level(logging.WARNING, logger="mmsc.server"):
        _check_lease(SmppBackend(load_settings({"smpp": {}})), 60.0)
        assert not caplog.records  # 30 s of waiting at most, under half of 60
        _check_lease(SmppBackend(load_settings({"smpp": {"submit_timeout": 45}})), 60.0)
    assert "push_lease" in caplog.text


def test_negative_keep_records_means_forever() -> None:
    policy = Policy.from_config(env_config(STORAGE__KEEP_RECORDS="-1"))
    assert policy.keep_records == -1.0
