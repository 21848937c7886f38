"""Which variant a fetching handset gets: its capabilities, as an adaptation Target.

Order (issue #6): a per-subscriber override, the handset's UAProf (fetched in
the background and cached: a retrieval never waits for a profile server),
a device class matched on User-Agent or profile URL, and the default class.

The profile URL is whatever a subscriber's handset sends, so fetching it is guarded
(ProfileCache): http(s) on allowed ports only, every address the host resolves to must
be public (protocol.uaprof.fetchable_address) -- checked before the request and again
when the connector resolves, so a second DNS answer cannot slip in -- redirects are
followed by hand, each hop checked, and memory, concurrency and body size are bounded.
A refused URL is a dead profile: the device class is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import ipaddress
import json
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import aiohttp
from aiohttp.abc import AbstractResolver
from sqlalchemy.engine import Connection
from yarl import URL

from mmsc import config as settings
from mmsc.adapt.pipeline import PIPELINE_VERSION, Target
from mmsc.core import Mmsc
from mmsc.devices import DeviceClass, default_caps, load_classes, resolve
from protocol.uaprof import (
    Capabilities,
    UaprofError,
    fetchable_address,
    parse_profile,
    profile_url,
)
from storage import repository as repo

if TYPE_CHECKING:
    from aiohttp.abc import ResolveResult  # used in annotations only

log = logging.getLogger("mmsc.adapt.uaprof")

MAX_PROFILE_BYTES = 512 * 1024
MAX_KNOWN_DEVICES = 200_000  # address -> (User-Agent, profile URL), oldest forgotten first
# Vendors serve profiles on the standard ports; anything else is more likely a probe of
# some internal service ([adapt] uaprof_ports widens this).
DEFAULT_PORTS: Final = frozenset({80, 443})
MAX_REDIRECTS: Final = 3
# Each distinct URL a handset names is an entry: the cache forgets the least recently
# used beyond this ([adapt] uaprof_cache_entries), so distinct URLs cannot exhaust memory.
MAX_CACHED_PROFILES: Final = 10_000
MAX_CONCURRENT_FETCHES: Final = 8
# URLs waiting for one of those slots; beyond this a new URL is not fetched this time
# (the device class is used, and a later request tries again).
MAX_QUEUED_FETCHES: Final = 1_000
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})


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


class ProfileRefused(OSError):
    """A profile URL, redirect or address a fetch may not go to. An OSError so that,
    raised by the resolver inside aiohttp's connector, it fails the connection like an
    unreachable host would."""


class GuardedResolver(AbstractResolver):
    """Resolves with ``inner`` and refuses a host any of whose addresses is not
    ``fetchable_address``. The connector resolves through this, so what a fetch connects
    to is what was checked: a DNS name that answers with a public address for the
    check and a private one for the connection (rebinding) is refused at connect time.
    (aiohttp does not resolve IP literals; those cannot rebind and are checked by
    ProfileCache before each request.)"""

    def __init__(self, inner: AbstractResolver, *, allow_private: bool = False) -> None:
        self.inner = inner
        self.allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        hosts = await self.inner.resolve(host, port, family)
        for entry in hosts:
            if not fetchable_address(entry["host"], allow_private=self.allow_private):
                raise ProfileRefused(f"{host} resolves to {entry['host']}, not a public address")
        if not hosts:
            raise ProfileRefused(f"{host} resolves to no address")
        return hosts

    async def close(self) -> None:
        await self.inner.close()


class ProfileCache:
    """UAProf documents by URL: fetched once in the background, kept for ``ttl`` seconds,
    dead URLs remembered for ``negative_ttl`` so they are not hammered. With ``load`` and
    ``save`` (the database) the cache is shared by every node and survives restarts;
    memory is only the first level, an LRU of ``max_entries``.

    Fetches go only to ``ports`` (empty: any) and to public addresses unless
    ``allow_private`` (see GuardedResolver); at most ``concurrency`` run at once. A
    refused URL is a negative entry in memory only (not in the database, which a flood
    of made-up URLs would otherwise grow) and is logged once per ``negative_ttl``.
    ``resolver`` replaces the system's getaddrinfo (tests)."""

    def __init__(
        self,
        *,
        timeout: float = 3.0,
        ttl: float = 7 * 86400,
        negative_ttl: float = 3600,
        load: ProfileLoad | None = None,
        save: ProfileSave | None = None,
        allow_private: bool = False,
        ports: Iterable[int] = DEFAULT_PORTS,
        max_entries: int = MAX_CACHED_PROFILES,
        concurrency: int = MAX_CONCURRENT_FETCHES,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.timeout = timeout
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.load = load
        self.save = save
        self.allow_private = allow_private
        self.ports = frozenset(ports)
        self.max_entries = max_entries
        self.resolver = resolver
        self._entries: OrderedDict[str, tuple[float, Capabilities | None]] = OrderedDict()
        self._fetching: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(concurrency)
        self._guard: GuardedResolver | None = None
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
        if self._guard is not None:
            await self._guard.close()
            self._guard = None

    @property
    def size(self) -> int:
        """Profiles (and dead URLs) held in memory, at most ``max_entries``."""
        return len(self._entries)

    def lookup(self, url: str) -> Capabilities | None:
        """The cached profile, or None (and a fetch starts) when there is none yet."""
        entry = self._entries.get(url)
        now = time.monotonic()
        if entry is not None and entry[0] > now:
            self._entries.move_to_end(url)
            return entry[1]
        if url not in self._fetching and len(self._fetching) < MAX_QUEUED_FETCHES:
            task = asyncio.get_running_loop().create_task(self._fetch(url))
            self._fetching[url] = task
            task.add_done_callback(lambda _t: self._fetching.pop(url, None))
        return entry[1] if entry is not None else None

    def cached(self, url: str) -> Capabilities | None:
        """The cached profile without starting a fetch; safe from any thread (it only
        reads, and leaves the LRU order alone)."""
        entry = self._entries.get(url)
        return entry[1] if entry is not None else None

    async def wait(self, url: str) -> None:
        """Wait for a fetch in progress (the caller bounds how long)."""
        task = self._fetching.get(url)
        if task is not None:
            await asyncio.shield(task)

    def _remember(self, url: str, ttl: float, caps: Capabilities | None) -> None:
        self._entries[url] = (time.monotonic() + ttl, caps)
        self._entries.move_to_end(url)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def _stored(self, url: str) -> bool:
        """Whether the database had a live entry for ``url`` (now in memory too)."""
        if self.load is None:
            return False
        try:
            stored = await self.load(url)
        except Exception as exc:  # the database is a cache here, never a blocker
            log.warning("UAProf cache read for %s failed: %s", url, exc)
            return False
        if stored is None or stored[0] <= time.time():
            return False
        expires_at, value = stored
        self._remember(url, expires_at - time.time(), caps_from_json(value) if value else None)
        return True

    async def _fetch(self, url: str) -> None:
        if await self._stored(url):
            return
        caps: Capabilities | None = None
        try:
            async with self._slots:
                async with asyncio.timeout(self.timeout):  # all hops and lookups together
                    data = await self._download(url)
            caps = parse_profile(data) if data is not None else None
        except ProfileRefused as exc:
            log.info("UAProf %s refused: %s", url, exc)
            self._remember(url, self.negative_ttl, None)
            return
        except (aiohttp.ClientError, OSError, TimeoutError, UaprofError, ValueError) as exc:
            log.info("UAProf %s unusable: %s", url, exc)
        ttl = self.ttl if caps is not None else self.negative_ttl
        self._remember(url, ttl, caps)
        if self.save is not None:
            now = time.time()
            try:
                await self.save(url, caps_to_json(caps) if caps else None, now, now + ttl)
            except Exception as exc:
                log.warning("UAProf cache write for %s failed: %s", url, exc)

    def _client(self) -> tuple[aiohttp.ClientSession, GuardedResolver]:
        if self._session is None or self._guard is None:
            inner = self.resolver or aiohttp.ThreadedResolver()
            self._guard = GuardedResolver(inner, allow_private=self.allow_private)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=self._guard),
                # identity: a compressed body could inflate far beyond MAX_PROFILE_BYTES
                # before we count it; a server that compresses anyway is a dead profile.
                headers={"User-Agent": "mmsc", "Accept-Encoding": "identity"},
                auto_decompress=False,
                trust_env=False,  # no proxy from the environment: the checks are ours
            )
        return self._session, self._guard

    async def _check(self, url: URL, guard: GuardedResolver) -> None:
        """Raise ProfileRefused unless ``url`` may be fetched: the same rules for the
        handset's URL and for every redirect."""
        host = url.raw_host
        if url.scheme not in ("http", "https") or not host:
            raise ProfileRefused(f"{url.scheme or 'no'} scheme or no host")
        port = url.port
        if port is None or (self.ports and port not in self.ports):
            raise ProfileRefused(f"port {port} not allowed (uaprof_ports)")
        if _ip_literal(host):  # aiohttp connects to it as is, without the resolver
            if not fetchable_address(host, allow_private=self.allow_private):
                raise ProfileRefused(f"{host} is not a public address")
            return
        await guard.resolve(host, port, socket.AF_UNSPEC)

    async def _download(self, url: str) -> bytes | None:
        """The document at ``url`` (None: not there, or too big), following at most
        MAX_REDIRECTS redirects, each checked like the first URL."""
        session, guard = self._client()
        target = URL(url)
        for _hop in range(MAX_REDIRECTS + 1):
            await self._check(target, guard)
            try:
                async with session.get(target, allow_redirects=False) as response:
                    location = response.headers.get("Location")
                    if response.status in _REDIRECT_STATUSES and location:
                        target = target.join(URL(location))
                        continue
                    return await _body(response) if response.status == 200 else None
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, ProfileRefused):  # refused when connecting
                    raise exc.os_error from None
                raise
        raise ProfileRefused(f"more than {MAX_REDIRECTS} redirects")


def _ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False  # a name, or a legacy form such as "127.1" that getaddrinfo reads
    return True


async def _body(response: aiohttp.ClientResponse) -> bytes | None:
    """The body, or None when it exceeds MAX_PROFILE_BYTES (read no further than that:
    the server is the handset's choice)."""
    if (response.content_length or 0) > MAX_PROFILE_BYTES:
        return None
    data = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        data += chunk
        if len(data) > MAX_PROFILE_BYTES:
            return None
    return bytes(data)


def _ports(section: Mapping[str, Any]) -> frozenset[int]:
    """[adapt] uaprof_ports: the ports a profile URL may name, empty for any; a list of
    integers, or comma-separated text from the environment."""
    value = section.get("uaprof_ports", sorted(DEFAULT_PORTS))
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise settings.ConfigError(f"adapt.uaprof_ports: expected a list of ports, got {value!r}")
    return frozenset(
        settings.integer({"uaprof_ports": item}, "adapt", "uaprof_ports", 0, low=1, high=65535)
        for item in items
        if str(item).strip()
    )


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
            # Off: profile servers on loopback or private networks (a lab) are refused.
            allow_private=settings.boolean(section, "adapt", "uaprof_allow_private", False),
            ports=_ports(section),
            max_entries=settings.integer(
                section, "adapt", "uaprof_cache_entries", MAX_CACHED_PROFILES, low=1
            ),
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
    digest = hashlib.sha1(_canonical(key, target)).hexdigest()[:12]
    return f"v-{digest}", target


def _canonical(key: str, target: Target) -> bytes:
    """The variant's identity as bytes that every process agrees on: JSON with sorted
    sets. (``repr`` of a frozenset follows the per-process string hash seed, so each
    restart or node named the same variant differently and adapted it again.)"""
    fields = {f.name: getattr(target, f.name) for f in dataclasses.fields(target)}
    material = {
        name: sorted(value) if isinstance(value, frozenset) else value
        for name, value in fields.items()
    }
    return json.dumps(
        [PIPELINE_VERSION, key, material], sort_keys=True, separators=(",", ":")
    ).encode()
