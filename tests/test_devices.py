"""Device classes (mmsc/devices.py): ``[[adapt.class]]`` configuration and its errors,
the resolution order (override, profile-prefix class, UAProf, User-Agent class,
default), and variant keys that are stable and change exactly when adaptation would.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from dataclasses import replace
from typing import Any

import pytest

from mmsc.config import ConfigError
from mmsc.devices import (
    BUILTIN_CLASSES,
    MAX_USER_AGENT,
    DeviceClass,
    default_caps,
    find_class,
    load_classes,
    resolve,
    variant_key,
)
from protocol.uaprof import DEFAULT, Capabilities, parse_profile
from tests.conftest import CORPUS, ROOT

IPHONE_PROFILE = "http://www.apple.com/mms/uaprof.rdf"

CONFIG = """
[[adapt.class]]
name = "iphone"
user_agent = "iPhone|iOS"
profile_prefix = "http://www.apple.com/mms/"
max_message_size = 1048576
max_image = "1200X1600"
accept = ["image/JPG", "image/gif", "image/png", "video/3gpp", "application/smil", "text/plain"]
charsets = ["UTF8", "106", "us-ascii"]

[[adapt.class]]
name = "feature"
user_agent = "^(Nokia|SonyEricsson|SAMSUNG-SGH)"
profile_prefixes = ["http://nds1.nds.nokia.com/uaprof/N6", "HTTP://wap.sonyericsson.com/"]
max_message_size = 102400
max_image = "160x120"
accept = ["image/jpeg", "text/plain"]

[[adapt.class]]
name = "default"
max_message_size = 204800
"""


def classes_from(text: str) -> list[DeviceClass]:
    return load_classes(tomllib.loads(text))


# ------------------------------------------------------------------------ configuration


def test_builtin_classes_when_none_configured() -> None:
    configs: list[dict[str, Any]] = [{}, {"adapt": {}}, {"adapt": {"class": []}}]
    for config in configs:
        classes = load_classes(config)
        assert [c.name for c in classes] == ["small", "default", "large", "smartphone"]
    by_name = {c.name: c.caps for c in load_classes({})}
    # research §3.5's suggested classes
    assert (by_name["small"].max_message_size, by_name["small"].max_image) == (102400, (160, 120))
    assert by_name["default"] == DEFAULT
    assert (DEFAULT.max_message_size, DEFAULT.max_image) == (307200, (640, 480))
    assert (by_name["large"].max_message_size, by_name["large"].max_image) == (614400, (1024, 768))
    assert by_name["smartphone"].max_message_size == 1048576
    assert by_name["smartphone"].max_image == (1600, 1200)
    assert all(c.user_agent is None and not c.profiles for c in BUILTIN_CLASSES)


def test_configured_classes() -> None:
    classes = classes_from(CONFIG)
    # configured ones first, in file order; then the built-ins not configured
    assert [c.name for c in classes] == [
        "iphone",
        "feature",
        "default",
        "small",
        "large",
        "smartphone",
    ]
    iphone = classes[0]
    assert iphone.caps.max_message_size == 1048576
    assert iphone.caps.max_image == (1600, 1200)  # orientation-free
    assert iphone.caps.accept == {
        "image/jpeg",
        "image/gif",
        "image/png",
        "video/3gpp",
        "application/smil",
        "text/plain",
    }
    assert iphone.caps.charsets == {"utf-8", "us-ascii"}
    assert iphone.caps.smil and iphone.caps.animation
    assert iphone.user_agent is not None and iphone.user_agent.flags & re.IGNORECASE
    assert iphone.profiles == ("http://www.apple.com/mms/",)
    feature = classes[1]
    assert not feature.caps.smil and not feature.caps.animation  # follow accept
    assert feature.caps.charsets == DEFAULT.charsets  # not configured: the default's
    assert len(feature.profiles) == 2


def test_configured_builtin_name_starts_from_the_builtin() -> None:
    classes = classes_from('[[adapt.class]]\nname = "large"\nmax_image = "1600x1200"\n')
    large = find_class(classes, "large")
    assert large is not None
    assert (large.caps.max_message_size, large.caps.max_image) == (614400, (1600, 1200))
    default = classes_from(CONFIG)
    assert default_caps(default).max_message_size == 204800
    assert default_caps(default).max_image == (640, 480)
    assert default_caps([]) == DEFAULT


def test_explicit_switches_win_over_accept() -> None:
    text = """
[[adapt.class]]
name = "x"
accept = ["image/jpeg"]
smil = true
animation = false
mms_version = "1.3"
"""
    caps = classes_from(text)[0].caps
    assert caps.smil and not caps.animation and caps.mms_version == "1.3"


def test_single_table_and_environment_style_values() -> None:
    classes = load_classes({"adapt": {"class": {"name": "one", "profile_prefix": "https://p/"}}})
    assert classes[0].name == "one" and classes[0].profiles == ("https://p/",)
    assert classes[0].caps == DEFAULT


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"adapt": "small"}, "[adapt]"),
        ({"adapt": {"class": "small"}}, "adapt.class"),
        ({"adapt": {"class": ["small"]}}, "adapt.class[0]"),
        ({"adapt": {"class": [{}]}}, "adapt.class[0].name"),
        ({"adapt": {"class": [{"name": ""}]}}, "adapt.class[0].name"),
        ({"adapt": {"class": [{"name": "a b"}]}}, "adapt.class[0].name"),
        ({"adapt": {"class": [{"name": 5}]}}, "adapt.class[0].name"),
        ({"adapt": {"class": [{"name": "a"}, {"name": "a"}]}}, "adapt.class[1].name"),
        ({"adapt": {"class": [{"name": "a", "max_imgae": "1x1"}]}}, "adapt.class[0].max_imgae"),
        ({"adapt": {"class": [{"name": "a", "user_agent": "(["}]}}, "user_agent"),
        ({"adapt": {"class": [{"name": "a", "user_agent": ""}]}}, "user_agent"),
        ({"adapt": {"class": [{"name": "a", "user_agent": ["x"]}]}}, "user_agent"),
        (
            {"adapt": {"class": [{"name": "a", "profile_prefix": "www.apple.com"}]}},
            "profile_prefix",
        ),
        ({"adapt": {"class": [{"name": "a", "profile_prefixes": [1]}]}}, "profile_prefixes"),
        ({"adapt": {"class": [{"name": "a", "max_message_size": "300KB"}]}}, "max_message_size"),
        ({"adapt": {"class": [{"name": "a", "max_message_size": 300}]}}, "max_message_size"),
        ({"adapt": {"class": [{"name": "a", "max_message_size": True}]}}, "max_message_size"),
        ({"adapt": {"class": [{"name": "a", "max_message_size": -1}]}}, "max_message_size"),
        ({"adapt": {"class": [{"name": "a", "max_image": "640*x"}]}}, "max_image"),
        ({"adapt": {"class": [{"name": "a", "max_image": "10x10"}]}}, "max_image"),
        ({"adapt": {"class": [{"name": "a", "max_image": "9000x480"}]}}, "max_image"),
        ({"adapt": {"class": [{"name": "a", "max_image": 640}]}}, "max_image"),
        ({"adapt": {"class": [{"name": "a", "accept": "not a type"}]}}, "accept"),
        ({"adapt": {"class": [{"name": "a", "accept": []}]}}, "accept"),
        ({"adapt": {"class": [{"name": "a", "accept": [1]}]}}, "accept"),
        ({"adapt": {"class": [{"name": "a", "charsets": ["bad charset!"]}]}}, "charsets"),
        ({"adapt": {"class": [{"name": "a", "smil": "yes"}]}}, "smil"),
        ({"adapt": {"class": [{"name": "a", "animation": 1}]}}, "animation"),
        ({"adapt": {"class": [{"name": "a", "mms_version": "1"}]}}, "mms_version"),
        ({"adapt": {"class": [{"name": "a", "mms_version": 1.2}]}}, "mms_version"),
    ],
)
def test_config_errors_name_the_key(config: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_classes(config)
    assert key in str(info.value)


# --------------------------------------------------------------------------- resolution

PROFILE = parse_profile((CORPUS / "uaprof" / "nokia_n95-1.xml").read_bytes())
OVERRIDE = replace(DEFAULT, max_message_size=51200)


def run(**kwargs: Any) -> tuple[str, Capabilities]:
    args: dict[str, Any] = {
        "override": None,
        "profile": None,
        "user_agent": None,
        "classes": classes_from(CONFIG),
        "default": default_caps(classes_from(CONFIG)),
    }
    args.update(kwargs)
    return resolve(**args)


def test_override_beats_everything() -> None:
    key, caps = run(
        override=OVERRIDE, profile=PROFILE, user_agent="iPhone", profile_url=IPHONE_PROFILE
    )
    assert caps is OVERRIDE and key == f"override:{variant_key(OVERRIDE)}"


def test_profile_prefix_class_beats_the_profile() -> None:
    key, caps = run(profile=PROFILE, user_agent="Nokia N95", profile_url=IPHONE_PROFILE)
    assert key.startswith("class:iphone:") and caps.max_message_size == 1048576
    # prefixes compare case-insensitively, and the second prefix of a class counts
    key, _ = run(profile=PROFILE, profile_url="http://WAP.SonyEricsson.com/UAprof/W810iR201.xml")
    assert key.startswith("class:feature:")


def test_profile_beats_user_agent_class() -> None:
    key, caps = run(
        profile=PROFILE, user_agent="Mozilla/5.0 (iPhone)", profile_url="http://x/p.rdf"
    )
    assert caps is PROFILE and key == f"profile:{variant_key(PROFILE)}"


def test_user_agent_class_when_no_profile() -> None:
    key, caps = run(user_agent="mozilla/5.0 (IPHONE; CPU iPhone OS 17_0)")
    assert key.startswith("class:iphone:") and caps.max_image == (1600, 1200)
    key, _ = run(user_agent="SonyEricssonW810i/R4EA Browser/NetFront/3.3")
    assert key.startswith("class:feature:")
    # "^Nokia" must match at the start only
    key, _ = run(user_agent="Opera (Nokia)")
    assert key.startswith("class:default:")


def test_first_matching_class_wins() -> None:
    text = CONFIG + '\n[[adapt.class]]\nname = "late"\nuser_agent = "iPhone"\n'
    key, _ = run(user_agent="iPhone", classes=classes_from(text))
    assert key.startswith("class:iphone:")


def test_default_when_nothing_matches() -> None:
    default = default_caps(classes_from(CONFIG))
    for kwargs in ({}, {"user_agent": ""}, {"user_agent": "Unknown/1.0"}, {"profile_url": ""}):
        key, caps = run(**kwargs)
        assert caps == default and key == f"class:default:{variant_key(default)}"


def test_builtin_classes_match_nothing() -> None:
    classes = load_classes({})
    key, caps = resolve(
        override=None,
        profile=None,
        user_agent="Mozilla/5.0 (iPhone) smartphone large small",
        classes=classes,
        default=default_caps(classes),
        profile_url=IPHONE_PROFILE,
    )
    assert caps == DEFAULT and key.startswith("class:default:")


def test_user_agent_is_cut_before_matching() -> None:
    classes = classes_from('[[adapt.class]]\nname = "t"\nuser_agent = "TAIL$"\n')
    assert classes[0].matches_user_agent("x" * 10 + "TAIL")
    assert not classes[0].matches_user_agent("x" * MAX_USER_AGENT + "TAIL")


# ------------------------------------------------------------------------- variant keys


def test_variant_key_is_stable_and_short() -> None:
    key = variant_key(DEFAULT)
    assert re.fullmatch(r"[0-9a-f]{16}", key)
    assert variant_key(DEFAULT) == key
    # Pinned: a change here silently orphans every cached variant, so make it on purpose
    # (and bump the "v1" inside variant_key).
    assert key == "dec9355e06ad9f1e"


def test_variant_key_is_the_same_in_another_process() -> None:
    code = (
        "from mmsc.devices import variant_key; from protocol.uaprof import DEFAULT; "
        "print(variant_key(DEFAULT))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == variant_key(DEFAULT)


def test_equal_capabilities_share_a_key() -> None:
    same = Capabilities(
        max_message_size=DEFAULT.max_message_size,
        max_image=DEFAULT.max_image,
        accept=frozenset(sorted(DEFAULT.accept, reverse=True)),
        charsets=frozenset(DEFAULT.charsets),
        mms_version="1.0",  # these four do not change the adapted content
        screen=(128, 128),
        smil=DEFAULT.smil,
        animation=DEFAULT.animation,
        vendor="Nokia",
        model="6230i",
    )
    assert variant_key(same) == variant_key(DEFAULT)
    data = (CORPUS / "uaprof" / "nokia_6230i.xml").read_bytes()
    renamed = data.replace(b"<prf:Model>5140i</prf:Model>", b"<prf:Model>6230i</prf:Model>")
    assert renamed != data
    assert variant_key(parse_profile(renamed)) == variant_key(parse_profile(data))


@pytest.mark.parametrize(
    "change",
    [
        {"max_message_size": DEFAULT.max_message_size + 1},
        {"max_image": (800, 600)},
        {"accept": DEFAULT.accept | {"video/3gpp"}},
        {"accept": DEFAULT.accept - {"image/png"}},
        {"charsets": frozenset({"utf-8"})},
        {"smil": False},
        {"animation": False},
    ],
    ids=lambda change: next(iter(change)),
)
def test_what_adaptation_depends_on_changes_the_key(change: dict[str, Any]) -> None:
    assert variant_key(replace(DEFAULT, **change)) != variant_key(DEFAULT)


def test_editing_a_class_changes_its_key() -> None:
    before, _ = run(user_agent="iPhone")
    edited = CONFIG.replace("max_message_size = 1048576", "max_message_size = 600000")
    after, _ = run(user_agent="iPhone", classes=classes_from(edited))
    assert before.startswith("class:iphone:") and after.startswith("class:iphone:")
    assert before != after


def test_corpus_profiles_get_distinct_keys_by_budget() -> None:
    keys = {
        name: variant_key(parse_profile((CORPUS / "uaprof" / name).read_bytes()))
        for name in ("nokia_6230i.xml", "nokia_n95-1.xml", "nokia_n97-4_mini.xml")
    }
    assert len(set(keys.values())) == 3
