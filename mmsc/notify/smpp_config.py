"""``[smpp]`` and ``[[smpp.bind]]``: configuration of the SMPP notification backend.

Every key of a bind may also be written once in ``[smpp]`` itself, where it
is the default for all binds. That lets a single-bind deployment be
configured entirely from the environment (``MMSC_SMPP__HOST``,
``MMSC_SMPP__PASSWORD``, ...; DESIGN.md §3: secrets may come from the
environment), and keeps a password out of the file when several binds share
it. With no ``[[smpp.bind]]`` at all, ``[smpp]`` describes the one bind.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mmsc import config as settings
from mmsc.config import ConfigError
from mmsc.smpp_client import BindConfig
from protocol import smpp
from protocol.smpp_session import BindParams

log = logging.getLogger("mmsc.notify.smpp")

ENCODINGS = ("udh", "sar", "payload")
# A receiver bind (§4.1.3 bind_receiver) only brings deliver_sm: carriers often hand
# out a transmitter bind for submits and a receiver bind for the receipts.
MODES = ("transmitter", "transceiver", "receiver")
DEFAULT_SUBMIT_TIMEOUT = 30.0
# Both bounds are measured from the start of a send; with the scheduler's default
# push_lease (60 s) a send that ends within half of it never outlives its claim.
DEFAULT_CONGESTION_MAX_WAIT = 30.0


@dataclass(frozen=True, slots=True)
class SmppSettings:
    binds: tuple[BindConfig, ...]
    submit_timeout: float = DEFAULT_SUBMIT_TIMEOUT
    congestion_max_wait: float = DEFAULT_CONGESTION_MAX_WAIT


def _eight_bit(data_coding: int) -> bool:
    """Whether ``data_coding`` carries octets as they are: a WAP push is binary WSP, and a
    7-bit or UCS-2 coding would have the SMSC or the handset rewrite it (SMPP 3.4
    §5.2.19: 0x02 and 0x04; 3GPP TS 23.038 §4: general group 00x0 with alphabet 01,
    and the message-class group 0xF4-0xF7)."""
    return data_coding == 0x02 or data_coding & 0xEC == 0x04 or data_coding & 0xFC == 0xF4


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
    host = settings.text(table, where, "host", "127.0.0.1")
    port = settings.integer(table, where, "port", 2775, low=1, high=65535)
    name = settings.text(table, where, "name", f"{host}:{port}")
    mode = settings.text(table, where, "mode", "transceiver").lower()
    if mode not in MODES:
        raise ConfigError(f"{where}.mode: {mode!r}; expected one of {', '.join(MODES)}")
    encoding = settings.text(table, where, "encoding", "udh").lower()
    if encoding not in ENCODINGS:
        raise ConfigError(f"{where}.encoding: {encoding!r}; expected one of {', '.join(ENCODINGS)}")
    system_id = settings.text(table, where, "system_id", "mmsc")
    password = settings.text(table, where, "password", "")
    if len(system_id) > 15 or len(password) > 8:
        raise ConfigError(f"{where}: system_id is at most 15 and password at most 8 characters")
    source_addr = settings.text(table, where, "source_addr", "MMS")
    if len(source_addr) > 20:
        raise ConfigError(f"{where}.source_addr: at most 20 characters")
    ton, npi = default_source_numbering(source_addr)
    data_coding = settings.integer(
        table, where, "data_coding", smpp.DATA_CODING_OCTETS, low=0, high=255
    )
    if not _eight_bit(data_coding):
        raise ConfigError(
            f"{where}.data_coding: 0x{data_coding:02X} is not an 8-bit coding; a WAP push "
            "needs one (0x04, the default, or 0xF5)"
        )
    reconnect_min = settings.number(table, where, "reconnect_min", 1.0, positive=True)
    reconnect_max = settings.number(table, where, "reconnect_max", 60.0, positive=True)
    if reconnect_max < reconnect_min:
        raise ConfigError(f"{where}.reconnect_max is below reconnect_min")
    try:
        params = BindParams(
            system_id=system_id,
            password=password,
            mode=mode,
            system_type=settings.text(table, where, "system_type", ""),
            addr_ton=settings.integer(table, where, "addr_ton", 0, low=0, high=255),
            addr_npi=settings.integer(table, where, "addr_npi", 0, low=0, high=255),
            address_range=settings.text(table, where, "address_range", ""),
        )
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return BindConfig(
        name=name,
        host=host,
        port=port,
        params=params,
        source_addr=source_addr,
        source_ton=settings.integer(table, where, "source_ton", ton, low=0, high=255),
        source_npi=settings.integer(table, where, "source_npi", npi, low=0, high=255),
        dest_ton=settings.integer(
            table, where, "dest_ton", smpp.TON_INTERNATIONAL, low=0, high=255
        ),
        dest_npi=settings.integer(table, where, "dest_npi", smpp.NPI_ISDN, low=0, high=255),
        window=settings.integer(table, where, "window", 10, low=1, high=1000),
        rate=settings.number(table, where, "rate", 0.0),
        response_timeout=settings.number(table, where, "response_timeout", 10.0, positive=True),
        enquire_link_interval=settings.number(
            table, where, "enquire_link_interval", 30.0, positive=True
        ),
        reconnect_min=reconnect_min,
        reconnect_max=reconnect_max,
        throttle_pause=settings.number(table, where, "throttle_pause", 1.0, positive=True),
        throttle_pause_max=settings.number(table, where, "throttle_pause_max", 30.0, positive=True),
        max_response_timeouts=settings.integer(
            table, where, "max_response_timeouts", 3, low=1, high=1000
        ),
        registered_delivery=settings.integer(
            table, where, "registered_delivery", 0, low=0, high=255
        ),
        data_coding=data_coding,
        encoding=encoding,
        service_type=settings.text(table, where, "service_type", ""),
    )


def load_settings(config: Mapping[str, Any]) -> SmppSettings:
    """The binds of a loaded configuration; ConfigError names the key at fault."""
    section = config.get("smpp", {})
    if not isinstance(section, Mapping):
        raise ConfigError("[smpp] is not a table")
    tables = section.get("bind")
    defaults = {key: value for key, value in section.items() if key != "bind"}
    submit_timeout = settings.number(
        defaults, "smpp", "submit_timeout", DEFAULT_SUBMIT_TIMEOUT, positive=True
    )
    congestion_max_wait = settings.number(
        defaults, "smpp", "congestion_max_wait", DEFAULT_CONGESTION_MAX_WAIT, positive=True
    )
    defaults.pop("submit_timeout", None)
    defaults.pop("congestion_max_wait", None)
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
    senders = [b for b in binds if b.params.can_submit]
    if not senders:
        raise ConfigError(
            "smpp.bind: every bind is a receiver; a transmitter or transceiver bind must send"
        )
    # §5.2.17 registered_delivery bits 1-0 ask for an SMSC delivery receipt, which only
    # a receiver or transceiver bind is given.
    if any(b.registered_delivery & 0x03 for b in senders) and not any(
        b.params.can_receive for b in binds
    ):
        log.warning(
            "smpp: registered_delivery asks for receipts but no bind is a transceiver or "
            "receiver: the SMSC has nowhere to deliver them"
        )
    return SmppSettings(tuple(binds), submit_timeout, congestion_max_wait)
