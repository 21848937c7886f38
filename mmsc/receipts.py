"""SMSC delivery receipts become events on the message, and nothing more.

A receipt says the *SMS* carrying a notification reached (or did not reach)
the handset. It does not say the handset fetched the MMS, so it never moves a
recipient's state (issue #4: receipts are never mistaken for MMS delivery);
only m-notifyresp-ind, the fetch and m-acknowledge-ind do that.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sqlalchemy.engine import Connection

from mmsc.core import Mmsc
from protocol.smpp_receipt import Receipt
from storage import repository as repo

log = logging.getLogger("mmsc.receipts")

# A receipt can overtake the commit that records the SMSC id of its submit (a fast
# SMSC answers submit_sm_resp and deliver_sm back to back), so look again a little
# later before calling it unknown.
RETRY_DELAYS = (0.2, 1.0, 5.0)


class ReceiptRecorder:
    """The receipt sink of the SMPP backend: one event row per receipt."""

    def __init__(self, core: Mmsc, retry_delays: tuple[float, ...] = RETRY_DELAYS) -> None:
        self.core = core
        self.retry_delays = retry_delays
        self.unmatched = 0

    async def __call__(self, bind: str, receipt: Receipt) -> None:
        delays = (0.0, *self.retry_delays)
        for attempt, delay in enumerate(delays):
            if delay:
                await asyncio.sleep(delay)
            # The id in the other base only once the id as written has had every chance
            # to be committed: it is a guess that can name another message.
            last = attempt == len(delays) - 1
            if await self.record(bind, receipt, converted=last):
                return
        self.unmatched += 1
        log.warning(
            "receipt from %s for unknown SMSC id %s (%s) dropped",
            bind,
            receipt.message_id,
            receipt.state,
        )

    async def record(self, bind: str, receipt: Receipt, *, converted: bool = False) -> bool:
        """Write the event; False when no push is known under the receipt's id (nor,
        with ``converted``, under the same number in the other base)."""
        now = time.time()
        candidates = receipt.id_candidates()
        guesses = receipt.converted_candidates() if converted else ()

        def unit(conn: Connection) -> tuple[bool, list[repo.Event]]:
            row: Any = repo.find_smsc_id(conn, candidates)
            if row is None and guesses:
                row = repo.find_smsc_id(conn, guesses)
            if row is None:
                return False, []
            if row.message_id is None:
                return True, []
            detail = f"SMS {receipt.message_id} via {bind}: stat:{receipt.state}"  # as written
            if receipt.error:
                detail += f" err:{receipt.error}"
            if receipt.network_error:
                detail += f" network_error:{receipt.network_error.hex()}"
            event = repo.Event(row.message_id, "push-receipt", now, row.recipient_id, None, detail)
            repo.add_events(conn, [event])
            return True, [event]

        found: bool = await self.core.write(unit)
        return found
