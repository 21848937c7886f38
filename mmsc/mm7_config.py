"""``[mm7]`` and ``[[mm7.vasp]]``: the VASP accounts of the MM7 interface.

Each VASP is an HTTP Basic account (``name``/``password``) tied to one VASPID,
the short codes it may send from (and receive MO messages at), where our
outbound requests to it go (``deliver_url``), and the dialect switches its
software needs (feature-matrix §5: "make every vendor quirk a per-peer config
flag"). Its passwords may come from the environment as ``MMSC_MM7_VASP_<NAME>_PASSWORD``
and ``MMSC_MM7_VASP_<NAME>_DELIVER_PASSWORD`` (DESIGN.md §3: secrets may come from the
environment), so the file need not hold them.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mmsc import config as settings
from mmsc.config import ConfigError

DEFAULT_NAMESPACE = "REL-6-MM7-1-4"
BOUNDARY_STYLES = ("default", "alnum", "nextpart")


def make_boundary(style: str) -> str | None:
    """A MIME boundary in the style a VASP's parser copes with (None: the codec's own,
    ``mm7-<hex>``). Some MMSCs and VASPs mis-parse boundaries with punctuation
    (feature-matrix §1: the Vodafone UK case), others expect the mail-client style."""
    token = secrets.token_hex(12)
    if style == "alnum":
        return "MM7" + token
    if style == "nextpart":
        return "----=_NextPart_" + token
    return None


@dataclass(frozen=True, slots=True)
class VaspAccount:
    name: str
    password: str
    vasp_id: str
    shortcodes: tuple[str, ...] = ()
    deliver_url: str | None = None
    deliver_username: str | None = None
    deliver_password: str | None = None
    allowed_ips: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    namespace: str = DEFAULT_NAMESPACE  # for requests we send to this VASP
    prefix: str | None = "mm7"  # None: the MM7 namespace as default namespace, no prefix
    unqualified_children: bool = False  # only the operation element in the MM7 namespace
    boundary_style: str = "default"  # MIME boundaries we write: default | alnum | nextpart
    max_message_size: int | None = None
    max_concurrency: int = 4
    rate: float = 0.0  # outbound requests per second; 0: no limit

    def __repr__(self) -> str:  # never print the passwords
        return f"VaspAccount({self.name!r}, vasp_id={self.vasp_id!r})"

    def allows(self, peer: str | None) -> bool:
        """Whether a request from ``peer`` may use this account (empty list: any)."""
        if not self.allowed_ips:
            return True
        if peer is None:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.allowed_ips)


def password_variable(name: str, kind: str = "PASSWORD") -> str:
    """The environment variable that may hold a VASP's secret instead of the file:
    ``MMSC_MM7_VASP_<NAME>_PASSWORD`` (the one it logs in with) or
    ``..._DELIVER_PASSWORD`` (the one we log in to its deliver_url with); every
    character of the name other than a letter or digit is written as ``_``."""
    return "MMSC_MM7_VASP_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper() + "_" + kind


def _text(where: str, table: Mapping[str, Any], key: str, default: str | None = None) -> str | None:
    """The typed readers of mmsc.config, in this module's argument order."""
    if default is None:
        return settings.optional_text(table, where, key)
    return settings.text(table, where, key, default)


def _vasp(index: int, table: Mapping[str, Any], environ: Mapping[str, str]) -> VaspAccount:
    where = f"mm7.vasp[{index}]"
    name = _text(where, table, "name")
    if not name:
        raise ConfigError(f"{where}.name: every VASP needs a name (its HTTP user name)")
    password = environ.get(password_variable(name)) or _text(where, table, "password")
    if not password:
        raise ConfigError(f"{where}.password: missing (or set {password_variable(name)})")
    shortcodes = table.get("shortcodes", [])
    if not isinstance(shortcodes, list) or not all(isinstance(s, str | int) for s in shortcodes):
        raise ConfigError(f"{where}.shortcodes: expected a list of short codes")
    ips = table.get("allowed_ips", [])
    if not isinstance(ips, list):
        raise ConfigError(f"{where}.allowed_ips: expected a list of addresses or networks")
    try:
        networks = tuple(ipaddress.ip_network(str(ip), strict=False) for ip in ips)
    except ValueError as exc:
        raise ConfigError(f"{where}.allowed_ips: {exc}") from None
    prefix = table.get("prefix", "mm7")
    if prefix is not None and (
        not isinstance(prefix, str) or not re.fullmatch(r"[A-Za-z_][\w.-]*|", prefix)
    ):
        raise ConfigError(f'{where}.prefix: expected an XML prefix or "" for none')
    unqualified = table.get("unqualified_children", False)
    if not isinstance(unqualified, bool):
        raise ConfigError(f"{where}.unqualified_children: expected true or false")
    if unqualified and not prefix:
        raise ConfigError(f"{where}.unqualified_children needs a prefix")
    boundary_style = table.get("boundary_style", "default")
    if boundary_style not in BOUNDARY_STYLES:
        raise ConfigError(f"{where}.boundary_style: expected one of {', '.join(BOUNDARY_STYLES)}")
    size = table.get("max_message_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ConfigError(f"{where}.max_message_size: expected a positive integer")
    concurrency = table.get("max_concurrency", 4)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"{where}.max_concurrency: expected a positive integer")
    rate = table.get("rate", 0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or rate < 0:
        raise ConfigError(f"{where}.rate: expected a number >= 0")
    return VaspAccount(
        name=name,
        password=password,
        vasp_id=_text(where, table, "vasp_id", name) or name,
        shortcodes=tuple(str(s) for s in shortcodes),
        deliver_url=_text(where, table, "deliver_url"),
        deliver_username=_text(where, table, "deliver_username"),
        deliver_password=environ.get(password_variable(name, "DELIVER_PASSWORD"))
        or _text(where, table, "deliver_password"),
        allowed_ips=networks,
        namespace=_text(where, table, "namespace", DEFAULT_NAMESPACE) or DEFAULT_NAMESPACE,
        prefix=prefix or None,
        unqualified_children=unqualified,
        boundary_style=str(boundary_style),
        max_message_size=size,
        max_concurrency=concurrency,
        rate=float(rate),
    )


def load_vasps(
    config: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> dict[str, VaspAccount]:
    """The VASP accounts by name; ConfigError names the key at fault."""
    section = config.get("mm7", {})
    if not isinstance(section, Mapping):
        raise ConfigError("[mm7] is not a table")
    tables = section.get("vasp", [])
    if isinstance(tables, Mapping):
        tables = [tables]
    if not isinstance(tables, list):
        raise ConfigError("mm7.vasp: expected [[mm7.vasp]] tables")
    env = os.environ if environ is None else environ
    accounts: dict[str, VaspAccount] = {}
    owners: dict[str, str] = {}
    for index, table in enumerate(tables):
        if not isinstance(table, Mapping):
            raise ConfigError(f"mm7.vasp[{index}]: expected a table")
        account = _vasp(index, table, env)
        if account.name in accounts:
            raise ConfigError(f"mm7.vasp[{index}].name: {account.name!r} is used twice")
        for code in account.shortcodes:
            if code in owners:
                raise ConfigError(
                    f"mm7.vasp[{index}].shortcodes: {code} already belongs to {owners[code]!r}"
                )
            owners[code] = account.name
        accounts[account.name] = account
    return accounts
