"""Addresses: every spelling senders use gives one canonical Address, and the MM1 sender
comes only from what the network vouched for (DESIGN.md §4, feature-matrix §3.6, §4.4, §4.9).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from mmsc.addresses import (
    Address,
    AddressError,
    NumberPlan,
    parse_address,
    resolve_sender,
)
from mmsc.config import ConfigError, apply_env

SCALE = float(os.environ.get("MMSC_HYPOTHESIS_SCALE", "1"))


def examples(n: int) -> int:
    return max(5, int(n * SCALE))


PLANS: dict[str, NumberPlan] = {
    "NONE": NumberPlan(),
    "DE": NumberPlan(country_code="49"),
    # NANP: trunk prefix 1, international prefix 011; Verizon's MDN lacks both.
    "US": NumberPlan(country_code="1", national_prefix="1", international_prefix="011"),
    # Italy has no trunk prefix: a national number is dialled as written.
    "IT": NumberPlan(country_code="39", national_prefix=""),
    # A CLIR code handsets prepend, and a gateway that sends international numbers bare.
    "DE_STRIP": NumberPlan(country_code="49", strip_prefixes=("#31#", "49")),
    "NO_SHORT": NumberPlan(country_code="49", shortcode_max_digits=0),
}

DE_MOBILE = "+491511234567"

# (input, plan, kind, canonical value)
VALID: list[tuple[str, str, str, str]] = [
    # Handset PLMN addresses, with separators and the TYPE suffix in any case.
    ("+49 151 1234-567/TYPE=PLMN", "DE", "msisdn", DE_MOBILE),
    ("+49 151 1234-567/TYPE=PLMN", "NONE", "msisdn", DE_MOBILE),
    ("+49.151.1234567/TYPE=PLMN", "US", "msisdn", DE_MOBILE),
    ("1511234567/type=plmn", "DE", "msisdn", DE_MOBILE),
    ("1511234567/type=plmn", "NONE", "msisdn", "1511234567"),
    ("01511234567/Type=Plmn", "DE", "msisdn", DE_MOBILE),
    ("  +491511234567/TYPE=PLMN  ", "NONE", "msisdn", DE_MOBILE),
    ("<+491511234567/TYPE=PLMN>", "NONE", "msisdn", DE_MOBILE),
    ("+491511234567890", "NONE", "msisdn", "+491511234567890"),  # 15 digits: the E.164 limit
    # International prefix and national forms.
    ("00491511234567", "DE", "msisdn", DE_MOBILE),
    ("00491511234567", "NONE", "msisdn", DE_MOBILE),
    ("0049 (151) 1234567", "NONE", "msisdn", DE_MOBILE),
    ("01511234567", "DE", "msisdn", DE_MOBILE),
    ("01511234567", "NONE", "msisdn", "01511234567"),
    ("0151 1234567", "NONE", "msisdn", "01511234567"),
    # tel: URIs; parameters are dropped.
    ("tel:+49-151-1234567", "DE", "msisdn", DE_MOBILE),
    ("tel:+49-151-1234567", "NONE", "msisdn", DE_MOBILE),
    ("TEL:+49.151.1234567;phone-context=example.com", "NONE", "msisdn", DE_MOBILE),
    ("tel:0151-1234567", "DE", "msisdn", DE_MOBILE),
    ("tel:0151-1234567", "NONE", "msisdn", "01511234567"),
    # NANP and Verizon's x-vzw-mdn (no country code, no trunk prefix).
    ("2125551234", "US", "msisdn", "+12125551234"),
    ("2125551234", "NONE", "msisdn", "2125551234"),
    ("1 (212) 555-1234", "US", "msisdn", "+12125551234"),
    ("+1 212 555 1234", "US", "msisdn", "+12125551234"),
    ("011 49 151 1234567", "US", "msisdn", DE_MOBILE),
    # No trunk prefix: a national number that begins like the country code stays national.
    ("06 1234 5678", "IT", "msisdn", "+390612345678"),
    ("392 123 4567", "IT", "msisdn", "+393921234567"),
    ("0039 392 123 4567", "IT", "msisdn", "+393921234567"),
    # International without "+": read as national (documented), unless strip_prefixes says so.
    ("491511234567", "DE", "msisdn", "+49491511234567"),
    ("491511234567", "DE_STRIP", "msisdn", DE_MOBILE),
    ("#31#01511234567", "DE_STRIP", "msisdn", DE_MOBILE),
    ("+491511234567", "DE_STRIP", "msisdn", DE_MOBILE),
    ("00491511234567", "DE_STRIP", "msisdn", DE_MOBILE),
    # E-mail: domain lower-cased, local part kept, display name dropped.
    ("user@example.com", "NONE", "email", "user@example.com"),
    ("User.Name+tag@Example.COM", "DE", "email", "User.Name+tag@example.com"),
    ("Name <user@Example.COM>", "NONE", "email", "user@example.com"),
    ('"Doe, Jane" <Jane@MAIL.Example.org>', "DE", "email", "Jane@mail.example.org"),
    ("<ops@xn--mnchen-3ya.de>", "NONE", "email", "ops@xn--mnchen-3ya.de"),
    # IP device addresses.
    ("192.0.2.1/TYPE=IPv4", "NONE", "ipv4", "192.0.2.1"),
    ("192.0.2.1/type=ipv4", "DE", "ipv4", "192.0.2.1"),
    ("2001:DB8:0:0:0:0:0:0001/TYPE=IPv6", "NONE", "ipv6", "2001:db8::1"),
    ("[2001:db8::1]/type=IPV6", "DE", "ipv6", "2001:db8::1"),
    ("::1/TYPE=IPv6", "DE", "ipv6", "::1"),
    # Short codes: bare numbers up to shortcode_max_digits, with or without TYPE.
    ("1234", "DE", "shortcode", "1234"),
    ("1234", "NONE", "shortcode", "1234"),
    ("1234/TYPE=PLMN", "DE", "shortcode", "1234"),
    ("12-34", "NONE", "shortcode", "1234"),
    ("tel:1234", "DE", "shortcode", "1234"),
    ("123456", "DE", "shortcode", "123456"),
    ("0800", "DE", "shortcode", "0800"),
    ("1234567", "DE", "msisdn", "+491234567"),
    ("1234567", "NONE", "msisdn", "1234567"),
    ("+1234/TYPE=PLMN", "DE", "msisdn", "+1234"),
    ("1234", "NO_SHORT", "msisdn", "+491234"),
]


@pytest.mark.parametrize(("text", "plan", "kind", "value"), VALID)
def test_parse_gives_canonical_value(text: str, plan: str, kind: str, value: str) -> None:
    address = parse_address(text, PLANS[plan])
    assert (address.kind, address.value) == (kind, value)
    assert str(address) == value


@pytest.mark.parametrize(("text", "plan", "kind", "value"), VALID)
def test_to_mms_round_trips(text: str, plan: str, kind: str, value: str) -> None:
    """What we write on the wire is read back as the same Address."""
    address = parse_address(text, PLANS[plan])
    assert parse_address(address.to_mms(), PLANS[plan]) == address


@pytest.mark.parametrize(
    ("address", "wire"),
    [
        (Address("msisdn", DE_MOBILE), "+491511234567/TYPE=PLMN"),
        (Address("msisdn", "01511234567"), "01511234567/TYPE=PLMN"),
        (Address("shortcode", "1234"), "1234/TYPE=PLMN"),
        (Address("email", "user@example.com"), "user@example.com"),
        (Address("ipv4", "192.0.2.1"), "192.0.2.1/TYPE=IPv4"),
        (Address("ipv6", "2001:db8::1"), "2001:db8::1/TYPE=IPv6"),
    ],
)
def test_to_mms_wire_form(address: Address, wire: str) -> None:
    assert address.to_mms() == wire


def test_spellings_of_one_subscriber_are_equal_and_hashable() -> None:
    plan = PLANS["DE"]
    spellings = ["+49 151 1234567", "00491511234567", "01511234567", "tel:+491511234567"]
    assert len({parse_address(text, plan) for text in spellings}) == 1


def test_address_is_frozen_and_checks_kind() -> None:
    address = Address("msisdn", DE_MOBILE)
    with pytest.raises(AttributeError):
        address.value = "+1"  # type: ignore[misc]
    with pytest.raises(ValueError, match="unknown address kind"):
        Address("fax", "123")  # type: ignore[arg-type]


# (input, plan, expected reason fragment)
INVALID: list[Any] = [
    ("", "DE", "empty address"),
    ("   ", "NONE", "empty address"),
    ("<>", "NONE", "empty address"),
    ("/TYPE=PLMN", "NONE", "empty address"),
    pytest.param("x" * 2000, "NONE", "longer than 1024", id="too-long"),
    ("hello", "DE", "not an e-mail address, phone number, IP address or short code"),
    ("<insert address>", "DE", "not an e-mail address"),
    ("+49abc", "DE", "non-digit"),
    ("0151-CALL-ME", "DE", "non-digit"),
    ("abc/TYPE=PLMN", "NONE", "non-digit"),
    ("user@example.com/TYPE=PLMN", "NONE", "non-digit"),
    ("+49 151 12345678901", "NONE", "at most 15 digits"),
    ("004915112345678901", "NONE", "at most 15 digits"),
    ("0151123456789012", "DE", "at most 15 digits"),
    ("1511234567890123", "NONE", "at most 15 digits"),
    ("+0151234567", "NONE", "country code cannot start with 0"),
    ("00", "DE", "no digits after the international prefix"),
    ("0", "NO_SHORT", "no digits after the national prefix"),
    ("+", "DE", "non-digit"),
    ("1234/TYPE=X-FAX", "NONE", "unsupported address type"),
    ("192.0.2.1/TYPE=IPv6", "NONE", "not a valid IPv6 address"),
    ("2001:db8::1/TYPE=IPv4", "NONE", "not a valid IPv4 address"),
    ("192.0.2.256/TYPE=IPv4", "NONE", "not a valid IPv4 address"),
    ("fe80::1%eth0/TYPE=IPv6", "NONE", "not a valid IPv6 address"),
    ("192.0.2.1", "DE", "IPv4 address without its /TYPE=IPv4 suffix"),
    ("2001:db8::1", "DE", "IPv6 address without its /TYPE=IPv6 suffix"),
    ("user@", "NONE", "invalid e-mail address"),
    ("@example.com", "NONE", "invalid e-mail address"),
    ("us er@example.com", "NONE", "invalid e-mail address"),
    ("user@exa mple.com", "NONE", "invalid e-mail address"),
    ("user@example..com", "NONE", "invalid e-mail address"),
    ("user@-example.com", "NONE", "invalid e-mail address"),
    ("user@münchen.de", "NONE", "xn-- form"),
    ("#31#", "DE_STRIP", "no number left"),
]


@pytest.mark.parametrize(("text", "plan", "reason"), INVALID)
def test_parse_errors_say_why(text: str, plan: str, reason: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_address(text, PLANS[plan])
    assert reason in info.value.reason
    assert isinstance(info.value, ValueError)


def test_error_reason_never_contains_the_input_but_the_message_previews_it() -> None:
    secret = "+49151123abc"
    with pytest.raises(AddressError) as info:
        parse_address(secret, PLANS["DE"])
    assert secret not in info.value.reason
    assert repr(secret) in str(info.value)
    with pytest.raises(AddressError) as info:
        parse_address("+" + "1" * 200, PLANS["DE"])
    assert len(str(info.value)) < 200


# ----------------------------------------------------------------------------- NumberPlan


def test_number_plan_defaults() -> None:
    plan = NumberPlan.from_config({})
    assert plan == NumberPlan()
    assert plan == NumberPlan(None, "0", "00", 6, ())


def test_number_plan_from_config_coerces_toml_and_env_values() -> None:
    plan = NumberPlan.from_config(
        {
            "mm1": {
                "country_code": "+1",
                "national_prefix": 1,
                "international_prefix": "011",
                "shortcode_max_digits": "5",
                "strip_prefixes": ["#31#", "*67 "],
            }
        }
    )
    assert plan == NumberPlan("1", "1", "011", 5, ("#31#", "*67"))


def test_number_plan_from_environment_override() -> None:
    """MMSC_MM1__COUNTRY_CODE=49 arrives as the TOML integer 49 and must still work."""
    config: dict[str, Any] = {"mm1": {}}
    apply_env(
        config,
        {
            "MMSC_MM1__COUNTRY_CODE": "49",
            "MMSC_MM1__NATIONAL_PREFIX": "0",
            "MMSC_MM1__INTERNATIONAL_PREFIX": "00",
            "MMSC_MM1__STRIP_PREFIXES": '["#31#"]',
        },
    )
    plan = NumberPlan.from_config(config)
    assert plan == NumberPlan("49", "0", "00", 6, ("#31#",))
    assert parse_address("#31#0151 1234567", plan).value == DE_MOBILE


def test_number_plan_empty_country_code_means_none_and_scalar_strip_prefix() -> None:
    plan = NumberPlan.from_config({"mm1": {"country_code": "", "strip_prefixes": "#31#"}})
    assert plan.country_code is None
    assert plan.strip_prefixes == ("#31#",)


@pytest.mark.parametrize(
    ("mm1", "key"),
    [
        ({"country_code": "0049"}, "mm1.country_code"),
        ({"country_code": "1234"}, "mm1.country_code"),
        ({"country_code": "DE"}, "mm1.country_code"),
        ({"country_code": True}, "mm1.country_code"),
        ({"country_code": -49}, "mm1.country_code"),
        ({"national_prefix": "O"}, "mm1.national_prefix"),
        ({"international_prefix": ["00"]}, "mm1.international_prefix"),
        ({"national_prefix": "00"}, "mm1.national_prefix"),
        ({"shortcode_max_digits": -1}, "mm1.shortcode_max_digits"),
        ({"shortcode_max_digits": 15}, "mm1.shortcode_max_digits"),
        ({"shortcode_max_digits": True}, "mm1.shortcode_max_digits"),
        ({"shortcode_max_digits": "six"}, "mm1.shortcode_max_digits"),
        ({"strip_prefixes": [""]}, "mm1.strip_prefixes"),
        ({"strip_prefixes": [" - "]}, "mm1.strip_prefixes"),
        ({"strip_prefixes": [None]}, "mm1.strip_prefixes"),
        ({"strip_prefixes": {"a": 1}}, "mm1.strip_prefixes"),
    ],
)
def test_number_plan_config_errors_name_the_key(mm1: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        NumberPlan.from_config({"mm1": mm1})


def test_number_plan_section_must_be_a_table() -> None:
    with pytest.raises(ConfigError, match=r"\[mm1\]"):
        NumberPlan.from_config({"mm1": "x"})


# ----------------------------------------------------------------------------- resolve_sender

HEADERS = ["X-MSISDN", "X-WAP-Network-Client-MSISDN"]
PDU_FROM = "+447700900123/TYPE=PLMN"
DE = PLANS["DE"]


def sender(
    headers: Any,
    pdu_from: str | None = None,
    *,
    lab: bool = False,
    names: list[str] | None = None,
    plan: NumberPlan = DE,
) -> Address | None:
    return resolve_sender(
        headers,
        pdu_from,
        msisdn_headers=HEADERS if names is None else names,
        trust_pdu_sender=lab,
        plan=plan,
    )


@pytest.mark.parametrize(
    ("headers", "pdu_from", "lab", "expected"),
    [
        # The first configured header wins, whatever order the request has them in.
        (
            {"X-WAP-Network-Client-MSISDN": "+4917600000000", "X-MSISDN": DE_MOBILE},
            None,
            False,
            DE_MOBILE,
        ),
        ({"X-WAP-Network-Client-MSISDN": "+4917600000000"}, None, False, "+4917600000000"),
        # Names are case-insensitive; values may be spaced, tel: URIs, or national.
        ({"x-msisdn": DE_MOBILE}, None, False, DE_MOBILE),
        ({"X-Msisdn": " tel:+49 151 1234567 "}, None, False, DE_MOBILE),
        ({"x-wap-network-client-msisdn": "0151 1234567"}, None, False, DE_MOBILE),
        ({"X-MSISDN": "1511234567"}, None, False, DE_MOBILE),
        # Without lab mode the PDU's From is never the sender.
        ({}, PDU_FROM, False, None),
        ({"X-Other": DE_MOBILE}, PDU_FROM, False, None),
        # Lab mode: the PDU From counts when no header gives a sender ...
        ({}, PDU_FROM, True, "+447700900123"),
        ({}, "07700 900123", True, "+497700900123"),
        # ... but a network header still outranks what the handset claims ...
        ({"X-MSISDN": DE_MOBILE}, PDU_FROM, True, DE_MOBILE),
        # ... and an Insert-address-token From (None) still needs a header.
        ({}, None, True, None),
        ({"X-MSISDN": DE_MOBILE}, None, True, DE_MOBILE),
        # Only MSISDNs send on MM1.
        ({}, "user@example.com", True, None),
        ({}, "192.0.2.1/TYPE=IPv4", True, None),
        ({}, "1234/TYPE=PLMN", True, None),
        ({}, "garbage", True, None),
        ({}, "", True, None),
        # A bad header falls through to the next configured one.
        ({"X-MSISDN": "garbage", "X-WAP-Network-Client-MSISDN": DE_MOBILE}, None, False, DE_MOBILE),
        ({"X-MSISDN": "", "X-WAP-Network-Client-MSISDN": DE_MOBILE}, None, False, DE_MOBILE),
        ({"X-MSISDN": "1234", "X-WAP-Network-Client-MSISDN": DE_MOBILE}, None, False, DE_MOBILE),
        ({"X-MSISDN": "a@b.com", "X-WAP-Network-Client-MSISDN": DE_MOBILE}, None, False, DE_MOBILE),
        # ... and to the PDU in lab mode when no header is usable.
        ({"X-MSISDN": "garbage"}, PDU_FROM, True, "+447700900123"),
        ({"X-MSISDN": "garbage"}, PDU_FROM, False, None),
        # Folded values: the same number twice is fine, two numbers are not.
        ({"X-MSISDN": f"{DE_MOBILE}, 01511234567"}, None, False, DE_MOBILE),
        ({"X-MSISDN": f"{DE_MOBILE}, +4917600000000"}, None, False, None),
        ({"X-MSISDN": f"{DE_MOBILE},garbage"}, None, False, None),
    ],
)
def test_resolve_sender(
    headers: dict[str, str], pdu_from: str | None, lab: bool, expected: str | None
) -> None:
    result = sender(headers, pdu_from, lab=lab)
    assert (None if result is None else result.value) == expected
    assert result is None or result.kind == "msisdn"


def test_resolve_sender_verizon_mdn_without_country_code() -> None:
    result = sender({"x-vzw-mdn": "2125551234"}, names=["X-VzW-MDN"], plan=PLANS["US"])
    assert result == Address("msisdn", "+12125551234")


def test_resolve_sender_without_configured_headers_needs_lab_mode() -> None:
    assert sender({"X-MSISDN": DE_MOBILE}, PDU_FROM, names=[]) is None
    assert sender({"X-MSISDN": DE_MOBILE}, PDU_FROM, names=[], lab=True) == Address(
        "msisdn", "+447700900123"
    )


def test_resolve_sender_repeated_header_must_agree() -> None:
    """A client-forged header appended to by the gateway shows up as two values."""
    forged = CIMultiDict([("X-MSISDN", "+4917600000000"), ("x-msisdn", DE_MOBILE)])
    assert sender(forged) is None
    forged.add("X-WAP-Network-Client-MSISDN", DE_MOBILE)
    assert sender(forged) == Address("msisdn", DE_MOBILE)
    same = CIMultiDict([("X-MSISDN", DE_MOBILE), ("X-MSISDN", "0151 1234567")])
    assert sender(same) == Address("msisdn", DE_MOBILE)


def test_resolve_sender_logs_header_name_and_reason_never_the_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    value = "+49151SECRET99"
    with caplog.at_level(logging.WARNING, logger="mmsc.addresses"):
        result = sender({"x-msisdn": value, "X-WAP-Network-Client-MSISDN": DE_MOBILE})
    assert result == Address("msisdn", DE_MOBILE)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "X-MSISDN" in message and "non-digit" in message
    assert "SECRET" not in caplog.text and DE_MOBILE not in caplog.text


def test_resolve_sender_lab_mode_logs_without_the_value(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mmsc.addresses"):
        assert sender({}, "Mallory <mallory@example.com>", lab=True) is None
        assert sender({}, "+49 SECRET", lab=True) is None
    assert "mallory" not in caplog.text and "SECRET" not in caplog.text
    assert "email" in caplog.text and "non-digit" in caplog.text


def test_resolve_sender_refuses_a_single_string_of_header_names() -> None:
    with pytest.raises(TypeError):
        resolve_sender(
            {"X-MSISDN": DE_MOBILE},
            None,
            msisdn_headers="X-MSISDN",
            trust_pdu_sender=False,
            plan=DE,
        )


# ----------------------------------------------------------------------------- properties

SEPARATOR = st.sampled_from(["", "", "", " ", "-", "."])
# (national_prefix, international_prefix): Germany-like, NANP, Italy-like, Russia-like.
PLAN_STYLES = [("0", "00"), ("1", "011"), ("", "00"), ("8", "810")]
DOTTED_QUAD = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")


@st.composite
def spaced(draw: st.DrawFn, digits: str) -> str:
    """``digits`` with a random visual separator (or none) between any two of them."""
    seps = draw(st.lists(SEPARATOR, min_size=len(digits) - 1, max_size=len(digits) - 1))
    return digits[0] + "".join(sep + digit for sep, digit in zip(seps, digits[1:], strict=True))


@st.composite
def e164_spellings(draw: st.DrawFn) -> tuple[str, NumberPlan, str]:
    """An E.164 number, a plan, and one way a sender could write that number under it.

    National and bare spellings are drawn only when they are unambiguous under the plan
    (the plan's own country, long enough not to be a short code, not starting with a
    prefix that means something else), which is when a person would use them.
    """
    cc = draw(st.from_regex(r"[1-9][0-9]{0,2}", fullmatch=True))
    size = draw(st.integers(1, 15 - len(cc)))  # more long numbers than st.text would draw
    sn = draw(st.text("0123456789", min_size=size, max_size=size))
    national, international = draw(st.sampled_from(PLAN_STYLES))
    home = draw(st.sampled_from([cc, cc, None, "7" if cc != "7" else "44"]))
    plan = NumberPlan(
        country_code=home, national_prefix=national, international_prefix=international
    )
    forms = ["+" + draw(spaced(cc + sn)), "tel:+" + draw(spaced(cc + sn))]
    forms.append(draw(spaced(international + cc + sn)))
    if home == cc:
        dialled = national + sn
        if (
            national
            and not dialled.startswith(international)
            and len(dialled) > plan.shortcode_max_digits
        ):
            forms.append(draw(spaced(dialled)))
            forms.append("tel:" + draw(spaced(dialled)))
        if (
            not (national and sn.startswith(national))
            and not sn.startswith(international)
            and len(sn) > plan.shortcode_max_digits
        ):
            forms.append(draw(spaced(sn)))
    number = draw(st.sampled_from(forms))
    if DOTTED_QUAD.fullmatch(number):
        # Only dots, in an IPv4 shape: refused as an IPv4 address without its TYPE.
        number = number.replace(".", "-", 1)
    suffix = draw(st.sampled_from(["", "/TYPE=PLMN", "/type=plmn", "/Type=PLMN"]))
    wrapper = draw(st.sampled_from(["{}", "<{}>", "Alice <{}>", " {} "]))
    return wrapper.format(number + suffix), plan, f"+{cc}{sn}"


@settings(max_examples=examples(500), deadline=None)
@given(e164_spellings())
def test_every_spelling_of_an_e164_number_is_canonical(case: tuple[str, NumberPlan, str]) -> None:
    text, plan, expected = case
    address = parse_address(text, plan)
    assert address == Address("msisdn", expected)
    assert parse_address(address.to_mms(), plan) == address


# Fragments of real addresses, so that the fuzzer reaches deep into every branch.
ADDRESSISH = st.lists(
    st.sampled_from(
        [
            *"+0123456789 -.()/:;<>@#é\x00\u00a0",
            *("TYPE=", "/TYPE=PLMN", "/type=IPv4", "/TYPE=IPv6", "tel:", "00"),
            *("user", "Example.COM", "::", "ff"),
        ]
    ),
    max_size=15,
).map("".join)
FUZZ_PLANS = {**PLANS, "DE_STRIP": NumberPlan(country_code="49", strip_prefixes=("#31#",))}


@settings(max_examples=examples(500), deadline=None)
@given(text=st.one_of(ADDRESSISH, st.text(max_size=40)), plan=st.sampled_from(list(FUZZ_PLANS)))
def test_any_text_gives_an_address_that_round_trips_or_an_address_error(
    text: str, plan: str
) -> None:
    """Lenient decode never crashes, and whatever it accepts is stable under to_mms().

    (A strip prefix made of digits is left out: a short code that begins with it would
    lose it again when re-read, as NumberPlan documents.)
    """
    try:
        address = parse_address(text, FUZZ_PLANS[plan])
    except AddressError as exc:
        assert exc.reason
        return
    assert parse_address(address.to_mms(), FUZZ_PLANS[plan]) == address
