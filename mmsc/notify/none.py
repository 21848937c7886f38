"""A backend that notifies nobody.

It is the default so that ``mmsc serve`` starts and accepts messages on a
machine with no SMS gateway (a developer laptop, a CI job, a lab where handsets
poll or are told out of band). Reporting success keeps the scheduler from
retrying forever; the debug log still shows each push that would have gone out.
"""

from __future__ import annotations

import logging

from mmsc.notify.base import PushRequest, SendResult

log = logging.getLogger("mmsc.notify.none")

DETAIL = "notify.backend is none"


class NoneBackend:
    """Accepts and drops every push."""

    name = "none"
    ready = True

    async def start(self) -> None:
        """Nothing to acquire."""

    async def send(self, push: PushRequest) -> SendResult:
        """Drop the push and report success, so the recipient is not retried."""
        log.debug(
            "dropping push %s to %s (%d segment(s)): %s",
            push.reference,
            push.destination,
            len(push.segments),
            DETAIL,
        )
        return SendResult(ok=True, permanent=False, detail=DETAIL)

    async def close(self) -> None:
        """Nothing to release."""
