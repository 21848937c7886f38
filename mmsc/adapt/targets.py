"""Which variant a fetching handset gets: its capabilities, as an adaptation Target.

Order (issue #6): a per-subscriber override, the handset's UAProf (fetched in
the background and cached: a retrieval never waits for a profile server),
a device class matched on User-Agent or profile URL, and the default class.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeAlias

import aiohttp
from sqlalchemy.engine import Connection

from mmsc import config as settings
from mmsc.adapt.pipeline import Target
from mmsc.core import Mmsc
from mmsc.devices import DeviceClass, default_caps, load_classes, resolve
from protocol.uaprof import Capabilities, UaprofError, parse_profile, profile_url
from storage import repository as repo

log = logging.getLogger("mmsc.adapt.uaprof")

MAX_PROFILE_BYTES = 512 * 1024
MAX_KNOWN_DEVICES = 200_000  # address -> (User-Agent, profile URL), oldest forgotten first


def target_of(caps: Capabilities, *, generate_smil: bool = False, smil: bool = True) -> Target:
    accept = set(caps.accept) | {"text/plain"}
    return Target(
        max_message_size=caps.max_message_size,
        max_width=caps.max_image[0],
        max_height=caps.max_image[1],
        accept=frozenset(accept),
        charsets=frozenset(caps.charsets),
        smil=caps.smil and smil,
        generate_smil=generate_smil,
        animation=caps.animation,
    )


def caps_to_json(caps: Capabilities) -> dict[str, Any]:
    return {
        "max_message_size": caps.max_message_size,
        "max_image": list(caps.max_image),
        "accept": sorted(caps.accept),
        "charsets": sorted(caps.charsets),
        "mms_version": caps.mms_version,
        "screen": list(caps.screen) if caps.screen else None,
        "smil": caps.smil,
        "animation": caps.animation,
        "vendor": caps.vendor,
        "model": caps.model,
    }


def caps_from_json(value: Mapping[str, Any]) -> Capabilities:
    screen = value.get("screen")
    return Capabilities(
        max_message_size=int(value["max_message_size"]),
        max_image=(int(value["max_image"][0]), int(value["max_image"][1])),
        accept=frozenset(value["accept"]),
        charsets=frozenset(value["charsets"]),
        mms_version=value.get("mms_version"),
        screen=(int(screen[0]), int(screen[1])) if screen else None,
        smil=bool(value["smil"]),
        animation=bool(value["animation"]),
        vendor=value.get("vendor"),
        model=value.get("model"),
    )


StoredProfile: TypeAlias = "tuple[float, dict[str, Any] | None] | None"
ProfileLoad: TypeAlias = Callable[[str], Coroutine[Any, Any, StoredProfile]]
ProfileSave: TypeAlias = Callable[
    [str, "dict[str, Any] | None", float, float], Coroutine[Any, Any, None]
]


class ProfileCache:
    """UAProf documents by URL: fetched once in the background, kept for ``ttl`` seconds,
    dead URLs remembered for ``negative_ttl`` so they are not hammered. With ``load`` and
    ``save`` (the database) the cache is shared by every node and survives restarts;
    memory is only the first level."""

    def __init__(
        self,
        *,
        timeout: float = 3.0,
        ttl: float = 7 * 86400,
        negative_ttl: float = 3600,
        load: ProfileLoad | None = None,
        save: ProfileSave | None = None,
    ) -> None:
        self.timeout = timeout
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.load = load
        self.save = save
        self._entries: dict[str, tuple[float, Capabilities | None]] = {}
        self._fetching: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        for task in list(self._fetching.values()):
            task.cancel()
        for task in list(self._fetching.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    def lookup(self, url: str) -> Capabilities | None:
        """The cached profile, or None (and a fetch starts) when there is none yet."""
        entry = self._entries.get(url)
        now = time.monotonic()
        if entry is not None and entry[0] > now:
            return entry[1]
        if url not in self._fetching:
            task = asyncio.get_running_loop().create_task(self._fetch(url))
            self._fetching[url] = task
            task.add_done_callback(lambda _t: self._fetching.pop(url, None))
        return entry[1] if entry is not None else None

    def cached(self, url: str) -> Capabilities | None:
        """The cached profile without starting a fetch; safe from any thread."""
        entry = self._entries.get(url)
        return entry[1] if entry is not None else None

    async def wait(self, url: str) -> None:
        """Wait for a fetch in progress (the caller bounds how long)."""
        task = self._fetching.get(url)
        if task is not None:
            await asyncio.shield(task)

    async def _fetch(self, url: str) -> None:
        if self.load is not None:
            try:
                stored = await self.load(url)
            except Exception as exc:  # the database is a cache here, never a blocker
                log.warning("UAProf cache read for %s failed: %s", url, exc)
                stored = None
            if stored is not None and stored[0] > time.time():
                expires_at, value = stored
                known = caps_from_json(value) if value else None
                self._entries[url] = (time.monotonic() + expires_at - time.time(), known)
                return
        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"User-Agent": "mmsc"})
        caps: Capabilities | None = None
        try:
            async with self._session.get(
                url, timeout=aiohttp.ClientTimeout(total=self.timeout), allow_redirects=True
            ) as response:
                if response.status == 200:
                    data = await response.content.read(MAX_PROFILE_BYTES + 1)
                    if len(data) <= MAX_PROFILE_BYTES:
                        caps = parse_profile(data)
        except (aiohttp.ClientError, OSError, TimeoutError, UaprofError, ValueError) as exc:
            log.info("UAProf %s unusable: %s", url, exc)
        ttl = self.ttl if caps is not None else self.negative_ttl
        self._entries[url] = (time.monotonic() + ttl, caps)
        if self.save is not None:
            now = time.time()
            try:
                await self.save(url, caps_to_json(caps) if caps else None, now, now + ttl)
            except Exception as exc:
                log.warning("UAProf cache write for %s failed: %s", url, exc)


class TargetResolver:
    def __init__(self, config: Mapping[str, Any]) -> None:
        section = settings.table(config, "adapt")
        self.enabled = settings.boolean(section, "adapt", "enabled", True)
        self.use_uaprof = settings.boolean(section, "adapt", "uaprof", True)
        self.generate_smil = settings.boolean(section, "adapt", "generate_smil", False)
        # How long a retrieval may wait for a profile fetch already under way (bounded:
        # a dead profile server costs at most this, then the device class is used).
        self.uaprof_wait = settings.number(section, "adapt", "uaprof_wait", 1.0)
        self.classes: list[DeviceClass] = load_classes(config)
        self._devices: dict[str, tuple[str | None, str | None]] = {}
        self.profiles = ProfileCache(
            timeout=settings.number(section, "adapt", "uaprof_timeout", 3.0, positive=True),
            ttl=settings.number(section, "adapt", "uaprof_ttl", 7 * 86400),
            negative_ttl=settings.number(section, "adapt", "uaprof_negative_ttl", 3600),
        )

    def attach(self, core: Mmsc) -> None:
        """Keep profiles in the database too (shared by nodes, kept across restarts), and
        let the core ask what a recipient's handset takes when it writes a notification.
        Separate from __init__ so that configuration errors surface before the core starts."""

        async def load(url: str) -> tuple[float, dict[str, Any] | None] | None:
            row = await core.read(repo.get_uaprof, url)
            return None if row is None else (float(row.expires_at), row.capabilities)

        async def save(
            url: str, value: dict[str, Any] | None, fetched_at: float, expires_at: float
        ) -> None:
            def unit(conn: Connection) -> tuple[None, list[repo.Event]]:
                repo.put_uaprof(conn, url, value, fetched_at, expires_at)
                return None, []

            await core.write(unit)

        self.profiles.load, self.profiles.save = load, save
        if self.enabled:
            core.announce_limit = self.size_limit

    async def close(self) -> None:
        await self.profiles.close()

    def prefetch(self, headers: Mapping[str, str], address: str | None = None) -> None:
        """Start fetching the handset's profile (any MM1 request carries the header), so
        that it is cached by the time the handset fetches a message; and remember which
        handset ``address`` uses, for the size its notifications announce."""
        if not self.enabled:
            return
        url = profile_url(headers) if self.use_uaprof else None
        if url:
            self.profiles.lookup(url)
        if address is not None:
            if len(self._devices) >= MAX_KNOWN_DEVICES:
                self._devices.pop(next(iter(self._devices)))
            self._devices[address] = (headers.get("User-Agent"), url)

    def size_limit(
        self,
        address: str,
        stored: Callable[[], tuple[str | None, str | None]] | None = None,
    ) -> int | None:
        """The most a known handset takes (None: unknown), for X-Mms-Message-Size in its
        notification: a handset that sees a size over its limit may not even try to fetch
        (../shared/research/performance.md §3.5). Runs in the database writer's thread:
        reads caches only, starts nothing."""
        if not self.enabled:
            return None
        known = self._devices.get(address)
        if known is None and stored is not None:
            known = stored()  # what an earlier request (to any node) told the database
            if known == (None, None):
                return None
        if known is None:
            return None
        user_agent, url = known
        profile = self.profiles.cached(url) if url else None
        _key, caps = resolve(
            override=None,
            profile=profile,
            user_agent=user_agent,
            classes=self.classes,
            default=default_caps(self.classes),
            profile_url=url,
        )
        return caps.max_message_size

    async def resolve(
        self, headers: Mapping[str, str], override: Capabilities | None = None
    ) -> tuple[str, Target]:
        """(variant name, target) for a handset that sent ``headers``."""
        url = profile_url(headers) if self.use_uaprof else None
        profile = self.profiles.lookup(url) if url else None
        if url and profile is None and self.uaprof_wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.profiles.wait(url)), self.uaprof_wait)
            profile = self.profiles.lookup(url)
        key, caps = resolve(
            override=override,
            profile=profile,
            user_agent=headers.get("User-Agent"),
            classes=self.classes,
            default=default_caps(self.classes),
            profile_url=url,
        )
        return _variant(key, caps, self.generate_smil)


@functools.lru_cache(maxsize=1024)  # a handful of classes and profiles, fetched over and over
def _variant(key: str, caps: Capabilities, generate_smil: bool) -> tuple[str, Target]:
    target = target_of(caps, generate_smil=generate_smil)
    digest = hashlib.sha1(f"{key}|{target!r}".encode()).hexdigest()[:12]
    return f"v-{digest}", target
