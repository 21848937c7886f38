"""Addresses: one canonical form to store and route on, and who the sender of an MM1 request is.

Addresses reach the MMSC in many spellings. Handsets write ``+49 151 1234-567/TYPE=PLMN``
or send the Insert-address-token instead of a From; VASPs send ``00491511234567``,
``tel:`` URIs or ``Name <user@Example.COM>``; trusted gateways add MSISDN headers such
as ``X-MSISDN`` or Verizon's ``x-vzw-mdn``, often without the country code
(feature-matrix §3.6, §4.4, §4.9). Routing, storage and duplicate detection need one
value per subscriber, so every address is parsed once, at the edge, into an
:class:`Address` whose ``value`` is canonical, and written back to the wire with
:meth:`Address.to_mms` (OMA-MMS-ENC §8).

How digits become an MSISDN depends on the operator's numbering plan, so
:class:`NumberPlan` carries it, built from these optional ``[mm1]`` keys:

==========================  ========  ===============================================
key                         default   meaning
==========================  ========  ===============================================
``country_code``            none      E.164 country code ("49"); national numbers get it
``national_prefix``         ``"0"``   trunk prefix of national numbers ("" for none)
``international_prefix``    ``"00"``  prefix that means "a country code follows"
``shortcode_max_digits``    ``6``     bare numbers this short are short codes
``strip_prefixes``          ``[]``    prefixes dropped before anything else
==========================  ========  ===============================================

Sender identity follows DESIGN.md §4: nothing is trusted that the network did not
vouch for. :func:`resolve_sender` takes the sender from the first configured
``msisdn_headers`` header that holds a usable MSISDN, and from the PDU's From only
in lab mode (``trust_pdu_sender``).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from mmsc.config import ConfigError

log = logging.getLogger("mmsc.addresses")

AddressKind = Literal["msisdn", "email", "ipv4", "ipv6", "shortcode"]
KINDS: frozenset[str] = frozenset(get_args(AddressKind))

E164_MAX_DIGITS = 15
"""ITU-T E.164: a number, country code included, has at most 15 digits."""

MAX_ADDRESS_LENGTH = 1024
"""Longer input is refused before any work is done: no real address comes near it."""

_TYPE_SUFFIX = re.compile(r"/type=([^/]*)\Z", re.IGNORECASE)
# Visual separators: OMA's written-sep ("-", "."), RFC 3966's "(" and ")", and white space
# that gateways and people leave in numbers.
_SEPARATORS = re.compile(r"[\s\-.()]+")
_DIGITS = re.compile(r"[0-9]+")
_ASCII_DIGIT = re.compile(r"[0-9]")
_DOTTED_QUAD = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_COUNTRY_CODE = re.compile(r"[1-9][0-9]{0,2}")
# Local part: kept as sent (it is case-sensitive by RFC 5321), but nothing that would make
# it ambiguous on the wire or in a display-name form. Quoted local parts are not accepted.
_EMAIL_LOCAL = re.compile(r"[^\s@<>()\[\],;:\\\"\x00-\x1f\x7f-\x9f]{1,64}")
_EMAIL_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


class AddressError(ValueError):
    """An address that cannot be used, and why.

    ``reason`` never contains any part of the input, so it can go into logs and
    metrics labels; ``str()`` adds a short preview of the input for the people
    (VASPs reading an MM7 fault, operators reading ``mmsc pdu`` output) who sent it.
    """

    def __init__(self, reason: str, text: str | None = None) -> None:
        self.reason = reason
        self.text = text
        if text is None:
            super().__init__(reason)
        else:
            preview = text if len(text) <= 64 else text[:61] + "..."
            super().__init__(f"{reason}: {preview!r}")


@dataclass(frozen=True)
class Address:
    """One address in canonical form: what the MMSC stores, compares and routes on.

    ``value`` by kind: ``msisdn`` is ``+`` and digits (E.164) when the number was
    international or a country code is configured, else the digits as received;
    ``email`` keeps the local part and lower-cases the domain; ``ipv4``/``ipv6`` are
    :mod:`ipaddress`'s normal form; ``shortcode`` is the digits. Two spellings of one
    subscriber give equal Addresses, so equality is routing identity.
    """

    kind: AddressKind
    value: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown address kind {self.kind!r}")

    def __str__(self) -> str:
        return self.value

    def to_mms(self) -> str:
        """The OMA-MMS-ENC §8 wire form: device addresses carry their ``/TYPE=`` suffix.

        Short codes are written as PLMN addresses, as handsets and VASPs expect.
        ``parse_address(a.to_mms(), plan) == a`` for every Address parsed with ``plan``.
        """
        if self.kind in ("msisdn", "shortcode"):
            return f"{self.value}/TYPE=PLMN"
        if self.kind == "ipv4":
            return f"{self.value}/TYPE=IPv4"
        if self.kind == "ipv6":
            return f"{self.value}/TYPE=IPv6"
        return self.value


@dataclass(frozen=True)
class NumberPlan:
    """The operator's numbering plan: how digits without a ``+`` become an MSISDN.

    Rules, in order, for a phone number once separators and a ``tel:`` scheme are gone:

    1. the first of ``strip_prefixes`` (in the order listed) that the number starts
       with is dropped, once (CLIR codes like ``#31#``, gateway routing prefixes);
    2. ``+digits`` is international;
    3. ``international_prefix`` then digits is international (``00`` 49... → ``+49...``);
    4. at most ``shortcode_max_digits`` digits is a short code;
    5. ``national_prefix`` then digits is national: ``+``, ``country_code`` and the
       rest when a country code is configured, else the digits unchanged;
    6. other digits are a national significant number without trunk prefix (Verizon's
       MDN style): ``+``, ``country_code`` and the digits, or the digits unchanged.

    Rule 6 means a gateway that sends international numbers without ``+``
    (``491511234567``) is misread as ``+49491511234567`` once ``country_code = "49"``
    is set; such a deployment lists the country code in ``strip_prefixes``. There is no
    guessing, because in several plans (Italy's 39x mobiles, for one) a national number
    can begin with the country code's digits.

    Keep ``strip_prefixes`` to things no canonical value begins with: a canonical value
    that starts with one would lose it again when parsed back.
    """

    country_code: str | None = None
    national_prefix: str = "0"
    international_prefix: str = "00"
    shortcode_max_digits: int = 6
    strip_prefixes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.country_code is not None and not _COUNTRY_CODE.fullmatch(self.country_code):
            raise ConfigError(
                f"mm1.country_code: expected 1 to 3 digits not starting with 0, "
                f"got {self.country_code!r}"
            )
        for key in ("national_prefix", "international_prefix"):
            prefix = getattr(self, key)
            if not isinstance(prefix, str) or (prefix and not _DIGITS.fullmatch(prefix)):
                raise ConfigError(f"mm1.{key}: expected digits or an empty string, got {prefix!r}")
        if self.national_prefix and self.national_prefix == self.international_prefix:
            raise ConfigError(
                "mm1.national_prefix: must differ from mm1.international_prefix, "
                f"both are {self.national_prefix!r}"
            )
        limit = self.shortcode_max_digits
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit < 15:
            raise ConfigError(f"mm1.shortcode_max_digits: expected 0 to 14, got {limit!r}")
        cleaned: list[str] = []
        for prefix in self.strip_prefixes:
            text = _SEPARATORS.sub("", prefix) if isinstance(prefix, str) else ""
            if not text:
                raise ConfigError(f"mm1.strip_prefixes: expected non-empty strings, got {prefix!r}")
            cleaned.append(text)
        object.__setattr__(self, "strip_prefixes", tuple(cleaned))

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> NumberPlan:
        """The plan the ``[mm1]`` section of a loaded configuration describes.

        Integers are accepted where digits are meant, because an environment override
        such as ``MMSC_MM1__COUNTRY_CODE=49`` reaches us as the TOML integer 49
        (mmsc.config parses environment values as TOML). A leading ``+`` on the
        country code is tolerated; problems are ConfigErrors naming the key.
        """
        section = config.get("mm1", {})
        if not isinstance(section, Mapping):
            raise ConfigError("[mm1] is not a table")
        country = _digit_setting(section, "country_code", None)
        if country is not None:
            country = country.removeprefix("+") or None
        raw_limit = section.get("shortcode_max_digits", 6)
        if isinstance(raw_limit, str) and re.fullmatch(r"\s*[0-9]+\s*", raw_limit):
            raw_limit = int(raw_limit)
        raw_strip = section.get("strip_prefixes", ())
        if raw_strip is None:
            raw_strip = ()
        elif isinstance(raw_strip, str | int) and not isinstance(raw_strip, bool):
            raw_strip = [raw_strip]
        if not isinstance(raw_strip, list | tuple):
            raise ConfigError(f"mm1.strip_prefixes: expected a list of strings, got {raw_strip!r}")
        strip: list[str] = []
        for item in raw_strip:
            if isinstance(item, bool) or not isinstance(item, str | int):
                raise ConfigError(f"mm1.strip_prefixes: expected strings, got {item!r}")
            strip.append(str(item))
        return cls(
            country_code=country,
            national_prefix=_digit_setting(section, "national_prefix", "0") or "",
            international_prefix=_digit_setting(section, "international_prefix", "00") or "",
            shortcode_max_digits=raw_limit,
            strip_prefixes=tuple(strip),
        )


def _digit_setting(section: Mapping[str, Any], key: str, default: str | None) -> str | None:
    value = section.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ConfigError(f"mm1.{key}: expected a string of digits, got {value!r}")
    if isinstance(value, int) and value < 0:
        raise ConfigError(f"mm1.{key}: expected a string of digits, got {value!r}")
    return str(value).strip()


def parse_address(text: str, plan: NumberPlan) -> Address:
    """The canonical Address for ``text``, or AddressError saying why there is none.

    Decoding is lenient (feature-matrix §4.4: real senders are quirky): the ``/TYPE=``
    suffix in any case, a ``Name <...>`` display-name wrapper, ``tel:`` URIs (their
    ``;parameters`` are dropped), and spaces, dots, dashes and parentheses in numbers.
    Without a suffix, text with ``@`` is an e-mail address and anything else a phone
    number or short code. IP addresses need their ``/TYPE=IPv4`` or ``/TYPE=IPv6``
    suffix, as OMA-MMS-ENC §8 requires; an untyped IP address is refused with a hint
    rather than read as a number written with dots (``192.0.2.1`` is not short code
    192021).
    Alphanumeric short codes are not accepted; nothing here routes on them.
    """
    body = text.strip()
    if not body:
        raise AddressError("empty address", text)
    if len(body) > MAX_ADDRESS_LENGTH:
        raise AddressError(f"address longer than {MAX_ADDRESS_LENGTH} characters", text)
    if body.endswith(">") and "<" in body:
        body = body[body.rfind("<") + 1 : -1].strip()
    suffix = _TYPE_SUFFIX.search(body)
    kind: str | None = None
    if suffix is not None:
        kind = suffix.group(1).strip().casefold()
        body = body[: suffix.start()].strip()
    if not body:
        raise AddressError("empty address", text)
    if kind == "ipv4":
        return _parse_ip(body, text, version=4)
    if kind == "ipv6":
        return _parse_ip(body, text, version=6)
    if kind is not None and kind != "plmn":
        raise AddressError("unsupported address type (expected /TYPE=PLMN, IPv4 or IPv6)", text)
    if kind is None and "@" in body:
        return _parse_email(body, text)
    return _parse_phone(body, text, plan, typed=kind is not None)


def _parse_ip(body: str, text: str, *, version: int) -> Address:
    if version == 6 and body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    try:
        ip = ipaddress.ip_address(body)
    except ValueError:
        ip = None
    if ip is None or ip.version != version or "%" in body:
        raise AddressError(f"not a valid IPv{version} address", text)
    return Address("ipv4" if version == 4 else "ipv6", str(ip))


def _parse_email(body: str, text: str) -> Address:
    local, _, domain = body.rpartition("@")
    if not _EMAIL_LOCAL.fullmatch(local):
        raise AddressError("invalid e-mail address: bad or empty local part", text)
    domain = domain.lower()
    labels = domain.split(".")
    if len(domain) > 253 or not all(_EMAIL_LABEL.fullmatch(label) for label in labels):
        raise AddressError(
            "invalid e-mail address: the domain must be ASCII host names (xn-- form for IDN)",
            text,
        )
    return Address("email", f"{local}@{domain}")


def _parse_phone(body: str, text: str, plan: NumberPlan, *, typed: bool) -> Address:
    if not typed and _DOTTED_QUAD.fullmatch(body) and _is_ip(body, 4):
        # Refused rather than read as the number 192021...: that could be a short code.
        raise AddressError("IPv4 address without its /TYPE=IPv4 suffix", text)
    if body[:4].casefold() == "tel:":
        body = body[4:].split(";", 1)[0]
    number = _SEPARATORS.sub("", body)
    for prefix in plan.strip_prefixes:
        if number.startswith(prefix):
            number = number[len(prefix) :]
            break
    if not number:
        raise AddressError("no number left after removing a configured prefix", text)
    international = number.startswith("+")
    digits = number[1:] if international else number
    if not _DIGITS.fullmatch(digits):
        if not typed and ":" in body and _is_ip(body, 6):
            raise AddressError("IPv6 address without its /TYPE=IPv6 suffix", text)
        if typed or international or _ASCII_DIGIT.search(digits):
            raise AddressError("MSISDN contains non-digit characters", text)
        raise AddressError("not an e-mail address, phone number, IP address or short code", text)
    prefix = plan.international_prefix
    if not international and prefix and digits.startswith(prefix):
        international = True
        digits = digits[len(prefix) :]
        if not digits:
            raise AddressError("no digits after the international prefix", text)
    if international:
        if digits.startswith("0"):
            raise AddressError("country code cannot start with 0", text)
        return _msisdn("+" + digits, text)
    if len(digits) <= plan.shortcode_max_digits:
        return Address("shortcode", digits)
    if plan.country_code is None:
        return _msisdn(digits, text)
    national = plan.national_prefix
    if national and digits.startswith(national):
        nsn = digits[len(national) :]
        if not nsn:
            raise AddressError("no digits after the national prefix", text)
        return _msisdn(f"+{plan.country_code}{nsn}", text)
    return _msisdn(f"+{plan.country_code}{digits}", text)


def _msisdn(value: str, text: str) -> Address:
    if len(value.removeprefix("+")) > E164_MAX_DIGITS:
        raise AddressError(f"MSISDN too long: E.164 allows at most {E164_MAX_DIGITS} digits", text)
    return Address("msisdn", value)


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text.strip("[]")).version == version
    except ValueError:
        return False


def resolve_sender(
    headers: Mapping[str, str],
    pdu_from: str | None,
    *,
    msisdn_headers: Sequence[str],
    trust_pdu_sender: bool,
    plan: NumberPlan,
) -> Address | None:
    """Who sent an MM1 request, or None when it cannot be established.

    None means the caller answers Error-sending-address-unresolved (Mbuni does the
    same): an MMSC that guessed would let any handset send as anyone.

    Sources, in order:

    1. ``msisdn_headers``, in the configured order (not the order of the request);
       names match case-insensitively. A header is used only when every value it
       carries (repeated headers, or values folded with ``,``) is the same MSISDN.
       A header that is absent is skipped silently; one that is empty, does not parse,
       is not an MSISDN (an e-mail, an IP address, a short code) or disagrees with
       itself is skipped with a warning and the next configured header is tried.
       Repeated values that disagree are what a client forging the header through a
       gateway that appends rather than replaces looks like.
    2. The PDU's From, only when ``trust_pdu_sender`` (lab mode) is on, and only when
       no header gave a sender: a header set by the network outranks what the
       handset claims. An Insert-address-token From (``None``) gives nothing.

    Warnings name the header and the reason, never the value: MSISDNs are personal
    data that log pipelines keep and ship widely, and a value chosen by a client must
    not be able to write into the log. The sender must be an MSISDN because the MMSC
    answers it with WAP Push over SMS (delivery and read reports).
    """
    if isinstance(msisdn_headers, str):
        raise TypeError("msisdn_headers must be a sequence of header names, not a string")
    wanted = {name.lower() for name in msisdn_headers}
    found: dict[str, list[str]] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in wanted:
            found.setdefault(key, []).append(value)
    for name in msisdn_headers:
        values = found.get(name.lower())
        if values is None:
            continue
        sender = _sender_from_header(name, values, plan)
        if sender is not None:
            log.debug("sender taken from header %s", name)
            return sender
    if not trust_pdu_sender or pdu_from is None:
        return None
    try:
        sender = parse_address(pdu_from, plan)
    except AddressError as exc:
        log.warning("PDU From ignored in lab mode: %s", exc.reason)
        return None
    if sender.kind != "msisdn":
        log.warning("PDU From ignored in lab mode: a %s address cannot send on MM1", sender.kind)
        return None
    log.debug("sender taken from the PDU From (trust_pdu_sender is on)")
    return sender


def _sender_from_header(name: str, values: Sequence[str], plan: NumberPlan) -> Address | None:
    parts = [part.strip() for value in values for part in value.split(",")]
    parts = [part for part in parts if part]
    if not parts:
        log.warning("sender header %s ignored: empty value", name)
        return None
    senders: set[Address] = set()
    for part in parts:
        try:
            sender = parse_address(part, plan)
        except AddressError as exc:
            log.warning("sender header %s ignored: %s", name, exc.reason)
            return None
        if sender.kind != "msisdn":
            log.warning("sender header %s ignored: holds a %s, not an MSISDN", name, sender.kind)
            return None
        senders.add(sender)
    if len(senders) > 1:
        log.warning("sender header %s ignored: it carries %d different numbers", name, len(senders))
        return None
    return senders.pop()
