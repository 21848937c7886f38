"""``[smpp]`` and ``[[smpp.bind]]``: configuration of the SMPP notification backend.

Every key of a bind may also be written once in ``[smpp]`` itself, where it
is the default for all binds. That lets a single-bind deployment be
configured entirely from the environment (``MMSC_SMPP__HOST``,
``MMSC_SMPP__PASSWORD``, ...; DESIGN.md §3: secrets may come from the
environment), and keeps a password out of the file when several binds share
it. With no ``[[smpp.bind]]`` at all, ``[smpp]`` describes the one bind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mmsc.config import ConfigError
from mmsc.smpp_client import BindConfig
from protocol import smpp
from protocol.smpp_session import BindParams

ENCODINGS = ("udh", "sar", "payload")
MODES = ("transmitter", "transceiver")
DEFAULT_SUBMIT_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class SmppSettings:
    binds: tuple[BindConfig, ...]
    submit_timeout: float = DEFAULT_SUBMIT_TIMEOUT


def _text(where: str, section: Mapping[str, Any], key: str, default: str) -> str:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ConfigError(f"{where}.{key}: expected a string, got {value!r}")
    return str(value)


def _int(
    where: str, section: Mapping[str, Any], key: str, default: int, low: int, high: int
) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where}.{key}: expected an integer {low}..{high}, got {value!r}")
    return value


def _number(
    where: str, section: Mapping[str, Any], key: str, default: float, *, zero_ok: bool = False
) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}.{key}: expected a number, got {value!r}")
    if value < 0 or (value == 0 and not zero_ok):
        raise ConfigError(f"{where}.{key}: expected a positive number, got {value!r}")
    return float(value)


def default_source_numbering(source_addr: str) -> tuple[int, int]:
    """TON/NPI that suit a source address when the operator did not say (§5.2.5, §5.2.6):
    letters are alphanumeric (5/0), a full number international (1/1), a short code
    network specific (3/0)."""
    if not source_addr:
        return smpp.TON_UNKNOWN, smpp.NPI_UNKNOWN
    digits = source_addr.lstrip("+")
    if not digits.isdigit():
        return smpp.TON_ALPHANUMERIC, smpp.NPI_UNKNOWN
    if source_addr.startswith("+") or len(digits) > 8:
        return smpp.TON_INTERNATIONAL, smpp.NPI_ISDN
    return 3, smpp.NPI_UNKNOWN


def _bind(index: int, table: Mapping[str, Any]) -> BindConfig:
    where = f"smpp.bind[{index}]"
    host = _text(where, table, "host", "127.0.0.1")
    port = _int(where, table, "port", 2775, 1, 65535)
    name = _text(where, table, "name", f"{host}:{port}")
    mode = _text(where, table, "mode", "transceiver").lower()
    if mode not in MODES:
        raise ConfigError(f"{where}.mode: {mode!r}; expected one of {', '.join(MODES)}")
    encoding = _text(where, table, "encoding", "udh").lower()
    if encoding not in ENCODINGS:
        raise ConfigError(f"{where}.encoding: {encoding!r}; expected one of {', '.join(ENCODINGS)}")
    system_id = _text(where, table, "system_id", "mmsc")
    password = _text(where, table, "password", "")
    if len(system_id) > 15 or len(password) > 8:
        raise ConfigError(f"{where}: system_id is at most 15 and password at most 8 characters")
    source_addr = _text(where, table, "source_addr", "MMS")
    if len(source_addr) > 20:
        raise ConfigError(f"{where}.source_addr: at most 20 characters")
    ton, npi = default_source_numbering(source_addr)
    reconnect_min = _number(where, table, "reconnect_min", 1.0)
    reconnect_max = _number(where, table, "reconnect_max", 60.0)
    if reconnect_max < reconnect_min:
        raise ConfigError(f"{where}.reconnect_max is below reconnect_min")
    try:
        params = BindParams(
            system_id=system_id,
            password=password,
            mode=mode,
            system_type=_text(where, table, "system_type", ""),
            addr_ton=_int(where, table, "addr_ton", 0, 0, 255),
            addr_npi=_int(where, table, "addr_npi", 0, 0, 255),
            address_range=_text(where, table, "address_range", ""),
        )
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return BindConfig(
        name=name,
        host=host,
        port=port,
        params=params,
        source_addr=source_addr,
        source_ton=_int(where, table, "source_ton", ton, 0, 255),
        source_npi=_int(where, table, "source_npi", npi, 0, 255),
        dest_ton=_int(where, table, "dest_ton", smpp.TON_INTERNATIONAL, 0, 255),
        dest_npi=_int(where, table, "dest_npi", smpp.NPI_ISDN, 0, 255),
        window=_int(where, table, "window", 10, 1, 1000),
        rate=_number(where, table, "rate", 0.0, zero_ok=True),
        response_timeout=_number(where, table, "response_timeout", 10.0),
        enquire_link_interval=_number(where, table, "enquire_link_interval", 30.0),
        reconnect_min=reconnect_min,
        reconnect_max=reconnect_max,
        throttle_pause=_number(where, table, "throttle_pause", 1.0),
        throttle_pause_max=_number(where, table, "throttle_pause_max", 30.0),
        registered_delivery=_int(where, table, "registered_delivery", 0, 0, 255),
        data_coding=_int(where, table, "data_coding", smpp.DATA_CODING_OCTETS, 0, 255),
        encoding=encoding,
        service_type=_text(where, table, "service_type", ""),
    )


def load_settings(config: Mapping[str, Any]) -> SmppSettings:
    """The binds of a loaded configuration; ConfigError names the key at fault."""
    section = config.get("smpp", {})
    if not isinstance(section, Mapping):
        raise ConfigError("[smpp] is not a table")
    tables = section.get("bind")
    defaults = {key: value for key, value in section.items() if key != "bind"}
    submit_timeout = _number("smpp", defaults, "submit_timeout", DEFAULT_SUBMIT_TIMEOUT)
    defaults.pop("submit_timeout", None)
    if tables is None:
        tables = [{}]
    if isinstance(tables, Mapping):
        tables = [tables]
    if not isinstance(tables, list) or not tables:
        raise ConfigError("smpp.bind: expected one or more [[smpp.bind]] tables")
    binds = []
    for index, table in enumerate(tables):
        if not isinstance(table, Mapping):
            raise ConfigError(f"smpp.bind[{index}]: expected a table")
        binds.append(_bind(index, {**defaults, **table}))
    names = [b.name for b in binds]
    if len(set(names)) != len(names):
        raise ConfigError(f"smpp.bind: names must differ, got {names}")
    return SmppSettings(tuple(binds), submit_timeout)
