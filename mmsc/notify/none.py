"""A backend that notifies nobody.

It is the default so that ``mmsc serve`` starts and accepts messages on a
machine with no SMS gateway (a developer laptop, a CI job, a lab where handsets
poll or are told out of band, a deployment that only delivers to VASPs). Each
push is reported *dropped*, not sent: the scheduler records it as such
(``push-dropped`` event, ``mmsc_notifications_total{result="dropped"}``), leaves
the recipient pending (it can still fetch; it expires as usual) and plans no
further notification for it, since every one would be dropped the same way.
The debug log shows each push that would have gone out.
"""

from __future__ import annotations

import logging

from mmsc.notify.base import PushRequest, SendResult

log = logging.getLogger("mmsc.notify.none")

DETAIL = "no notification backend (notify.backend is none)"


class NoneBackend:
    """Drops every push and says so."""

    name = "none"
    ready = True

    async def start(self) -> None:
        """Nothing to acquire."""

    async def send(self, push: PushRequest) -> SendResult:
        """Drop the push: not sent, and not worth sending again."""
        log.debug(
            "dropping push %s to %s (%d segment(s)): %s",
            push.reference,
            push.destination,
            len(push.segments),
            DETAIL,
        )
        return SendResult(ok=False, permanent=True, detail=DETAIL, dropped=True)

    async def close(self) -> None:
        """Nothing to release."""
