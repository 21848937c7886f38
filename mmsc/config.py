"""Configuration: one TOML file, every key overridable from the environment.

DESIGN.md §3 makes the keys and the ``MMSC_<SECTION>__<KEY>`` override rule
part of the external contract, so this module is the only place that knows
how a setting is found and read. Environment values are parsed as TOML values
when they parse and read back as written (numbers, booleans, arrays), and kept as
text otherwise; the typed readers at the end read every key by its own type.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PREFIX = "MMSC_"
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "conf" / "mmsc.toml"

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/mmsc.db"

DEFAULTS: dict[str, dict[str, Any]] = {
    "storage": {
        "database_url": DEFAULT_DATABASE_URL,
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
    """The TOML value ``raw`` spells, or ``raw`` itself.

    A number is taken only when it reads back as written: ``+4912345``, ``0x1F2A``
    or ``1_000`` stay text, because for a text key (a source address, a password)
    the ``+`` or the digits as written are the value. The typed readers below turn
    such text into a number where a number is wanted."""
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return raw if is_number and str(value) != raw.strip() else value


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


def config_file(path: str | os.PathLike[str] | None = None) -> Path | None:
    """The file to read: ``path`` when given, else ``conf/mmsc.toml`` in the working
    directory (where the README runs ``mmsc serve``, and where an installed server's
    operator puts it), else the one beside the package (a source checkout); None
    when there is none and the built-in defaults apply."""
    if path is not None:
        return Path(path)
    for candidate in (Path("conf") / "mmsc.toml", DEFAULT_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def load(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Defaults, then the file (``config_file``), then the environment."""
    config: dict[str, Any] = {section: dict(values) for section, values in DEFAULTS.items()}
    file = config_file(path)
    if file is not None:
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


# ----------------------------------------------------------------------------- typed readers
# Every setting goes through one of these, so a value of the wrong type is a ConfigError
# naming its key at startup, never a traceback later or a silent misreading (bool("false")
# is True; list("X-MSISDN") is eight one-letter header names). Text from the environment
# that did not parse as TOML (see _env_value) is read here by the key's own type.

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def _bad(where: str, key: str, expected: str, value: object) -> ConfigError:
    return ConfigError(f"{where}.{key}: expected {expected}, got {value!r}")


def _parsed_text(value: str) -> Any:
    try:
        return tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return None


def boolean(section: Mapping[str, Any], where: str, key: str, default: bool) -> bool:
    value = section.get(key, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str | int) and str(value).strip().lower() in _TRUE | _FALSE:
        return str(value).strip().lower() in _TRUE
    raise _bad(where, key, "true or false", value)


def integer(
    section: Mapping[str, Any],
    where: str,
    key: str,
    default: int,
    *,
    low: int | None = 0,
    high: int | None = None,
) -> int:
    value = section.get(key, default)
    if isinstance(value, str):
        value = _parsed_text(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(where, key, "an integer", section.get(key, default))
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"{'' if low is None else low}..{'' if high is None else high}"
        raise _bad(where, key, f"an integer in {span}", value)
    return value


def number(
    section: Mapping[str, Any],
    where: str,
    key: str,
    default: float,
    *,
    low: float | None = 0.0,
    positive: bool = False,
) -> float:
    """A finite number; ``positive`` refuses 0 as well."""
    value = section.get(key, default)
    if isinstance(value, str):
        value = _parsed_text(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise _bad(where, key, "a number", section.get(key, default))
    if value in (float("inf"), float("-inf")):
        raise _bad(where, key, "a finite number", value)
    if (low is not None and value < low) or (positive and value <= 0):
        raise _bad(where, key, "a positive number" if positive else f"a number >= {low}", value)
    return float(value)


def text(section: Mapping[str, Any], where: str, key: str, default: str) -> str:
    """A string; a number is taken as the digits it was written with (a numeric password)."""
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _bad(where, key, "a string", value)
    return str(value)


def optional_text(section: Mapping[str, Any], where: str, key: str) -> str | None:
    """A string, or None when the key is missing or empty."""
    if section.get(key) in (None, ""):
        return None
    return text(section, where, key, "")


def strings(section: Mapping[str, Any], where: str, key: str, default: Sequence[str]) -> list[str]:
    """A list of strings; one string, or comma-separated text from the environment
    (``MMSC_MM1__MSISDN_HEADERS=X-MSISDN,X-Up-Calling-Line-ID``), is a list too."""
    value = section.get(key, list(default))
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise _bad(where, key, "a list of strings", value)
    return list(value)


def table(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """The ``[name]`` section, empty when absent."""
    section = config.get(name, {})
    if not isinstance(section, Mapping):
        raise ConfigError(f"[{name}] is not a table")
    return section
