"""Configuration: one TOML file, every key overridable from the environment.

DESIGN.md §3 makes the keys and the ``MMSC_<SECTION>__<KEY>`` override rule
part of the external contract, so this module is the only place that knows
how a setting is found. Environment values are parsed as TOML values when
they parse (numbers, booleans, arrays) and taken as plain strings otherwise.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PREFIX = "MMSC_"
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "conf" / "mmsc.toml"

DEFAULTS: dict[str, dict[str, Any]] = {
    "storage": {
        "database_url": "sqlite+aiosqlite:///var/mmsc.db",
        "payload_dir": "var/payloads",
    },
    "mm1": {
        "listen": "127.0.0.1:8002",
        "public_url": "http://127.0.0.1:8002/mms",
        "msisdn_headers": ["X-MSISDN", "X-WAP-Network-Client-MSISDN"],
        "trust_pdu_sender": False,
        "max_message_size": 1048576,
    },
    "mm7": {"listen": "127.0.0.1:8007"},
    "admin": {"listen": "127.0.0.1:8080"},
    "notify": {"backend": "none", "sendsms_url": "http://127.0.0.1:13013/cgi-bin/sendsms"},
}


class ConfigError(ValueError):
    """A configuration file or override that cannot be used; the message says which key."""


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, key: str) -> Listen:
        host, sep, port = str(text).rpartition(":")
        if not sep or not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
            raise ConfigError(f"{key}: expected HOST:PORT, got {text!r}")
        return cls(host.strip("[]") or "127.0.0.1", int(port))


def _env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_env(config: dict[str, Any], environ: Mapping[str, str]) -> None:
    """MMSC_<SECTION>__<KEY>=value overrides [section] key (DESIGN.md §3)."""
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].partition("__")
        if not section or not key:
            continue
        target = config.setdefault(section.lower(), {})
        if not isinstance(target, dict):
            raise ConfigError(f"{name}: [{section.lower()}] is not a table")
        target[key.lower()] = _env_value(raw)


def load(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Defaults, then the file (``conf/mmsc.toml`` when none is given), then the environment."""
    config: dict[str, Any] = {section: dict(values) for section, values in DEFAULTS.items()}
    file = Path(path) if path is not None else DEFAULT_CONFIG
    if path is not None or file.exists():
        try:
            with open(file, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"configuration file {file} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: {exc}") from None
        for section, values in data.items():
            if isinstance(values, dict):
                config.setdefault(section, {}).update(values)
            else:
                config[section] = values
    apply_env(config, os.environ if environ is None else environ)
    return config
