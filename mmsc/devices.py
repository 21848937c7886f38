"""Device classes: which capabilities a message is adapted to, and the name of that variant.

A handset's capabilities come, in this order, from (``resolve``):

1. a per-subscriber override (the operator knows this one handset better);
2. a class whose ``profile_prefixes`` match the handset's UAProf URL: the operator
   wrote down what it knows about exactly those profiles, so it beats what the
   profile itself says (research §3.3: profiles carry wrong or copied data, and §3.5:
   keep per-profile overrides, as the docker-wap setup does for iOS and Samsung);
3. the handset's own UAProf, when it could be fetched and parsed;
4. a class whose ``user_agent`` pattern matches (a coarse guess, so it only stands in
   for a missing profile);
5. the default class.

Classes come from ``[[adapt.class]]`` tables. A configured class with the name of a
built-in one starts from the built-in's values, any other from ``DEFAULT``; the
built-in classes that are not configured stay available (so "default" always
exists). The built-ins follow research §3.5's suggested classes and carry no
patterns: with no configuration, every handset without a usable profile gets
"default", and the others are there to be pointed at (by a pattern, a profile
prefix or a subscriber override).

The key ``resolve`` returns names the adapted variant for caching: handsets whose
capabilities hash the same (``variant_key``) share one stored variant per source, and
editing a class changes its key, so a stale variant is never served.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from mmsc.config import ConfigError
from protocol.uaprof import (
    DEFAULT,
    MAX_IMAGE_SIDE,
    MIN_IMAGE_SIDE,
    Capabilities,
    normalise_charset,
    normalise_type,
    parse_resolution,
)

# A User-Agent longer than this is cut before matching: the patterns are the
# operator's, the header is anyone's, and a regex's cost grows with its input.
MAX_USER_AGENT: Final = 512
MIN_CLASS_MESSAGE_SIZE: Final = 1024  # "300" was surely meant as KB: refuse, do not guess
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_VERSION: Final = re.compile(r"\d{1,2}\.\d{1,2}")
_KEYS: Final = frozenset(
    {
        "name",
        "user_agent",
        "profile_prefix",
        "profile_prefixes",
        "max_message_size",
        "max_image",
        "accept",
        "charsets",
        "smil",
        "animation",
        "mms_version",
    }
)


@dataclass(frozen=True, slots=True)
class DeviceClass:
    name: str
    caps: Capabilities
    user_agent: re.Pattern[str] | None = None  # searched in the User-Agent, any case
    profiles: tuple[str, ...] = ()  # UAProf URL prefixes, compared case-insensitively

    def matches_user_agent(self, user_agent: str | None) -> bool:
        if self.user_agent is None or not user_agent:
            return False
        return self.user_agent.search(user_agent[:MAX_USER_AGENT]) is not None

    def matches_profile(self, url: str | None) -> bool:
        if not url or not self.profiles:
            return False
        folded = url.casefold()
        return any(folded.startswith(prefix.casefold()) for prefix in self.profiles)


# Research §3.5 suggests {<=100 KB, 160x120}, {300 KB, 640x480}, {600 KB, 1024x768 or
# 1600x1200}, {>=1 MB, 1600x1200 or larger}. "large" takes 1024x768, 41% of the pixels
# of 1600x1200, so its 600 KB budget leaves room for more than one picture at good
# quality. Sizes are in KiB, as the modal profile values are (307200, 614400, 1048576).
BUILTIN_CLASSES: Final[tuple[DeviceClass, ...]] = (
    DeviceClass("small", replace(DEFAULT, max_message_size=100 * 1024, max_image=(160, 120))),
    DeviceClass("default", DEFAULT),
    DeviceClass("large", replace(DEFAULT, max_message_size=600 * 1024, max_image=(1024, 768))),
    DeviceClass(
        "smartphone", replace(DEFAULT, max_message_size=1024 * 1024, max_image=(1600, 1200))
    ),
)
DEFAULT_CLASS: Final = "default"


def _fail(where: str, key: str, expected: str, value: object) -> ConfigError:
    return ConfigError(f"{where}.{key}: expected {expected}, got {value!r}")


def _strings(where: str, key: str, value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(where, key, "a list of strings", value)
    return list(value)


def _bool(where: str, table: Mapping[str, Any], key: str) -> bool | None:
    value = table.get(key)
    if value is not None and not isinstance(value, bool):
        raise _fail(where, key, "true or false", value)
    return value


def _size(where: str, value: object) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not MIN_CLASS_MESSAGE_SIZE <= value <= 2**31
    ):
        raise _fail(where, "max_message_size", f"bytes, at least {MIN_CLASS_MESSAGE_SIZE}", value)
    return value


def _image(where: str, value: object) -> tuple[int, int]:
    parsed = parse_resolution(value) if isinstance(value, str) else None
    if parsed is None or not all(MIN_IMAGE_SIDE <= side <= MAX_IMAGE_SIDE for side in parsed):
        raise _fail(
            where, "max_image", f'"WIDTHxHEIGHT", each {MIN_IMAGE_SIDE}..{MAX_IMAGE_SIDE}', value
        )
    return max(parsed), min(parsed)  # orientation-free, as Capabilities.max_image


def _normalised(
    where: str, key: str, value: object, normalise: Callable[[str], str | None]
) -> frozenset[str]:
    out: set[str] = set()
    for item in _strings(where, key, value):
        name = normalise(item)
        if name is None:
            raise ConfigError(f"{where}.{key}: {item!r} is not a valid entry")
        out.add(name)
    if not out:
        raise ConfigError(f"{where}.{key}: the list is empty")
    return frozenset(out)


def _pattern(where: str, value: object) -> re.Pattern[str] | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _fail(where, "user_agent", "a regular expression", value)
    try:
        return re.compile(value, re.IGNORECASE)
    except re.error as exc:
        raise ConfigError(f"{where}.user_agent: not a regular expression: {exc}") from None


def _prefixes(where: str, table: Mapping[str, Any]) -> tuple[str, ...]:
    prefixes: list[str] = []
    for key in ("profile_prefix", "profile_prefixes"):
        if key in table:
            for prefix in _strings(where, key, table[key]):
                if not prefix.lower().startswith(("http://", "https://")):
                    raise _fail(where, key, "an http:// or https:// URL prefix", prefix)
                prefixes.append(prefix)
    return tuple(prefixes)


def _class(index: int, table: Mapping[str, Any]) -> DeviceClass:
    where = f"adapt.class[{index}]"
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(sorted(_KEYS))})")
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _fail(where, "name", "a name of letters, digits, '.', '_' or '-'", name)
    where = f"adapt.class[{index}] ({name})"
    base = next((c.caps for c in BUILTIN_CLASSES if c.name == name), DEFAULT)
    caps = base
    if "max_message_size" in table:
        caps = replace(caps, max_message_size=_size(where, table["max_message_size"]))
    if "max_image" in table:
        caps = replace(caps, max_image=_image(where, table["max_image"]))
    if "accept" in table:
        accept = _normalised(where, "accept", table["accept"], normalise_type)
        # Without an explicit switch, SMIL and animation follow what is accepted.
        caps = replace(
            caps,
            accept=accept,
            smil=bool({"application/smil", "application/*", "*/*"} & accept),
            animation=bool({"image/gif", "image/*", "*/*"} & accept),
        )
    if "charsets" in table:
        caps = replace(
            caps, charsets=_normalised(where, "charsets", table["charsets"], normalise_charset)
        )
    smil = _bool(where, table, "smil")
    if smil is not None:
        caps = replace(caps, smil=smil)
    animation = _bool(where, table, "animation")
    if animation is not None:
        caps = replace(caps, animation=animation)
    version = table.get("mms_version")
    if version is not None:
        if not isinstance(version, str) or not _VERSION.fullmatch(version):
            raise _fail(where, "mms_version", 'a version such as "1.2"', version)
        caps = replace(caps, mms_version=version)
    return DeviceClass(
        name, caps, _pattern(where, table.get("user_agent")), _prefixes(where, table)
    )


def load_classes(config: Mapping[str, Any]) -> list[DeviceClass]:
    """The configured ``[[adapt.class]]`` classes in file order (matching order), then the
    built-in classes not configured; ConfigError names the key at fault."""
    section = config.get("adapt", {})
    if not isinstance(section, Mapping):
        raise ConfigError("[adapt] is not a table")
    tables = section.get("class", [])
    if isinstance(tables, Mapping):
        tables = [tables]
    if not isinstance(tables, list):
        raise ConfigError("adapt.class: expected [[adapt.class]] tables")
    classes: list[DeviceClass] = []
    for index, table in enumerate(tables):
        if not isinstance(table, Mapping):
            raise ConfigError(f"adapt.class[{index}]: expected a table")
        device_class = _class(index, table)
        if any(c.name == device_class.name for c in classes):
            raise ConfigError(f"adapt.class[{index}].name: {device_class.name!r} is used twice")
        classes.append(device_class)
    names = {c.name for c in classes}
    classes.extend(c for c in BUILTIN_CLASSES if c.name not in names)
    return classes


def find_class(classes: Sequence[DeviceClass], name: str) -> DeviceClass | None:
    return next((c for c in classes if c.name == name), None)


def default_caps(classes: Sequence[DeviceClass]) -> Capabilities:
    """The "default" class's capabilities (``DEFAULT`` if a caller passes no such class)."""
    found = find_class(classes, DEFAULT_CLASS)
    return found.caps if found else DEFAULT


@functools.lru_cache(maxsize=1024)  # per retrieval otherwise (a JSON dump and a SHA-256)
def variant_key(caps: Capabilities) -> str:
    """A short, stable hash of what adaptation depends on: equal capabilities give
    equal keys across processes and restarts (no ``hash()``, which is salted). Screen,
    MMS version, vendor and model do not change the adapted content and are left out."""
    material = [
        "v1",  # bump when adaptation starts to depend on another field
        caps.max_message_size,
        list(caps.max_image),
        sorted(caps.accept),
        sorted(caps.charsets),
        caps.smil,
        caps.animation,
    ]
    encoded = json.dumps(material, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()[:16]


def resolve(
    *,
    override: Capabilities | None,
    profile: Capabilities | None,
    user_agent: str | None,
    classes: Sequence[DeviceClass],
    default: Capabilities,
    profile_url: str | None = None,
) -> tuple[str, Capabilities]:
    """The capabilities to adapt for and the variant's cache key: ``override:<hash>``,
    ``class:<name>:<hash>`` or ``profile:<hash>`` (order in the module docstring)."""
    if override is not None:
        return f"override:{variant_key(override)}", override
    for device_class in classes:
        if device_class.matches_profile(profile_url):
            return _class_key(device_class.name, device_class.caps), device_class.caps
    if profile is not None:
        return f"profile:{variant_key(profile)}", profile
    for device_class in classes:
        if device_class.matches_user_agent(user_agent):
            return _class_key(device_class.name, device_class.caps), device_class.caps
    return _class_key(DEFAULT_CLASS, default), default


def _class_key(name: str, caps: Capabilities) -> str:
    return f"class:{name}:{variant_key(caps)}"


def capabilities_from_table(table: Mapping[str, Any], where: str = "override") -> Capabilities:
    """Capabilities from the keys of an ``[[adapt.class]]`` table, starting from the
    default class (a per-subscriber override written through the admin API uses this)."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: expected an object")
    allowed = {"max_message_size", "max_image", "accept", "charsets", "smil", "animation"}
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}.{unknown[0]}: unknown key (known: {', '.join(sorted(allowed))})"
        )
    return _class(0, {"name": DEFAULT_CLASS, **table}).caps
