"""The interface between the scheduler and whatever carries WAP Push to a handset.

The scheduler builds an m-notification-ind, cuts it into SMS with
``protocol.wap_push.notification_segments`` and hands the segments to a
backend. Backends differ only in transport (an SMPP bind we own, Kannel's
sendsms HTTP interface, or nothing at all in a lab without an SMS gateway), so
the contract is deliberately small and failure is a value, not an exception:
the scheduler must be able to tell "try again later" from "give up" for every
recipient without knowing which gateway said it (DESIGN.md §2, retry with
back-off until expiry).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from mmsc import config as settings
from mmsc.config import ConfigError
from protocol.wap_push import SmsSegment

log = logging.getLogger("mmsc.notify")

DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_MAX_CONCURRENCY = 16
DEFAULT_SENDSMS_URL = "http://127.0.0.1:13013/cgi-bin/sendsms"

# Kannel's sendsms accepts only these in ``to`` (sendsms-chars default "0123456789 +-");
# a normalised MSISDN or short code is digits with an optional leading "+".
_DESTINATION = re.compile(r"\+?[0-9]{1,20}")


@dataclass(frozen=True, slots=True)
class PushRequest:
    """One WAP Push to one handset, already framed as SMS.

    The segments are built by the caller, not the backend, so that a retry can
    resend the very same bytes (same concatenation reference, same TID): a
    handset that already holds some segments of the first attempt can then
    still reassemble the datagram.
    """

    destination: str
    segments: tuple[SmsSegment, ...]
    reference: str
    source: str | None = None

    def __post_init__(self) -> None:
        # Coerce a list into a tuple so the request stays hashable and immutable.
        if not isinstance(self.segments, tuple):
            object.__setattr__(self, "segments", tuple(self.segments))
        if not self.segments:
            raise ValueError(f"push {self.reference!r} has no SMS segments")


@dataclass(frozen=True, slots=True)
class SendResult:
    """What became of a push.

    ``permanent`` is only meaningful when ``ok`` is False: True means that
    sending the same push again will never succeed (the gateway rejected it as
    malformed, or the destination is invalid), so the scheduler should stop
    retrying this recipient; False means "try again later".

    ``dropped`` (with ``ok`` False and ``permanent`` True) says that nothing was
    even tried, on purpose: no backend is configured (``notify.backend = "none"``).
    The scheduler records that as such, neither a notification nor a refusal of
    the recipient, so that counts and recipient states stay truthful.
    """

    ok: bool
    permanent: bool = False
    detail: str = ""
    gateway_ids: tuple[str, ...] = ()
    dropped: bool = False

    @property
    def transient(self) -> bool:
        """A failure worth retrying."""
        return not self.ok and not self.permanent


@runtime_checkable
class NotificationBackend(Protocol):
    """A transport for WAP Push SMS.

    ``send`` must not raise for gateway or network trouble (refused
    connections, timeouts, HTTP errors): it returns a transient failure and
    the scheduler retries. It may raise for programming errors, such as
    sending before ``start`` or after ``close``.
    """

    name: str

    @property
    def ready(self) -> bool:
        """Whether a push could go out now. The scheduler leaves pushes queued (and
        their attempts uncounted) while it is False, e.g. while no SMPP bind is up."""
        ...

    async def start(self) -> None:
        """Acquire long-lived resources (HTTP session, SMPP bind); call once, in the loop."""
        ...

    async def send(self, push: PushRequest) -> SendResult:
        """Send every segment of ``push``, in order; report, never raise for I/O trouble."""
        ...

    async def close(self) -> None:
        """Release what ``start`` acquired; safe to call more than once."""
        ...


def valid_destination(destination: str) -> bool:
    """Whether ``destination`` looks like a normalised MSISDN or short code."""
    return _DESTINATION.fullmatch(destination) is not None


# ----------------------------------------------------------------------------- configuration


def make_backend(config: Mapping[str, Any]) -> NotificationBackend:
    """The backend the ``[notify]`` section of a loaded configuration asks for.

    ``backend = "none"`` is the default so that ``mmsc serve`` runs on a laptop
    with no SMS gateway. Every problem with the section is reported as a
    ConfigError naming the key, at startup rather than at the first push.
    """
    section = settings.table(config, "notify")
    raw_name = section.get("backend", "none")
    name = raw_name.strip().lower() if isinstance(raw_name, str) else raw_name
    if name == "none":
        from mmsc.notify.none import NoneBackend

        if "smpp" in config:
            # The backend is chosen, never guessed from what else is configured: say so
            # loudly when SMPP binds are set up but notifications are still dropped.
            log.warning(
                'notify.backend is "none": notifications are dropped although [smpp] is '
                'configured; set notify.backend = "smpp" to send them'
            )
        return NoneBackend()
    if name == "kannel":
        from mmsc.notify.kannel import KannelBackend

        url = settings.optional_text(section, "notify", "sendsms_url") or DEFAULT_SENDSMS_URL
        try:
            return KannelBackend(
                url,
                username=settings.optional_text(section, "notify", "sendsms_username"),
                password=settings.optional_text(section, "notify", "sendsms_password"),
                source=settings.optional_text(section, "notify", "sendsms_from"),
                smsc=settings.optional_text(section, "notify", "sendsms_smsc"),
                timeout_seconds=settings.number(
                    section, "notify", "timeout_seconds", DEFAULT_TIMEOUT_SECONDS, positive=True
                ),
                max_concurrency=settings.integer(
                    section, "notify", "max_concurrency", DEFAULT_MAX_CONCURRENCY, low=1
                ),
                ca_file=settings.optional_text(section, "notify", "sendsms_ca_file"),
            )
        except ValueError as exc:
            if isinstance(exc, ConfigError):
                raise
            key = "sendsms_ca_file" if "CA file" in str(exc) else "sendsms_url"
            raise ConfigError(f"notify.{key}: {exc}") from None
    if name == "smpp":
        from mmsc.notify.smpp import SmppBackend
        from mmsc.notify.smpp_config import load_settings

        return SmppBackend(load_settings(config))
    raise ConfigError(
        f'notify.backend: unknown backend {raw_name!r}; expected "smpp", "kannel" or "none"'
    )
