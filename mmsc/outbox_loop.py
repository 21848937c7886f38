"""A sender for one family of outbox rows: claim with a lease, send, record.

The outbox holds WAP pushes (sent through the SMS backend) and MM7 requests
to VASPs (sent over HTTP); both are claimed, sent and recorded the same way,
and each has an :class:`OutboxLoop` of its own. The loop claims again while
earlier rows are still being sent and recorded: doing claim, send-all and
record in turn waited for several commits per batch, which capped
notifications at ~640/s once accepts went faster (bench/README.md, session
4). At most ``max_in_flight`` rows are claimed at once, so a backlog waits in
the outbox (visible, and claimable by other nodes), not in memory.

A crash between claim and record only delays a row: its lease runs out and
another turn (or node) claims it again, so rows are sent at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy.engine import Connection

from mmsc.core import Mmsc
from storage import repository as repo

log = logging.getLogger("mmsc.outbox")

Send = Callable[[Any], Coroutine[Any, Any, None]]
T = TypeVar("T")
R = TypeVar("R")


class OutboxLoop:
    def __init__(
        self,
        core: Mmsc,
        kinds: Sequence[str],
        send: Send,
        *,
        name: str,
        lease: float,
        batch: int,
        max_in_flight: int,
        poll_interval: float = 1.0,
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        """``send`` sends one claimed row and records its outcome; ``ready`` False
        leaves rows in the outbox (e.g. no SMPP bind is up: their attempts are not spent)."""
        self.core = core
        self.kinds = tuple(kinds)
        self.send = send
        self.name = name
        # How long a claimed row is this node's: another node (or this one restarted,
        # under a new node id) sends it again only after that. Longer than a send can take.
        self.lease = lease
        self.batch = batch
        self.max_in_flight = max_in_flight
        self.poll_interval = poll_interval
        self.ready = ready
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._in_flight: dict[asyncio.Task[None], int] = {}  # task -> outbox row id
        self._sending_ids: set[int] = set()

    def wake(self) -> None:
        """Rows may have been queued: look now rather than at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"outbox-{self.name}")

    async def close(self) -> None:
        """Stop claiming; rows being sent finish and their outcome is recorded."""
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def claim(self, now: float, limit: int) -> list[Any]:
        """Take up to ``limit`` due rows for this node, under a lease."""
        owner = self.core.node_id

        def unit(conn: Connection) -> tuple[list[Any], list[repo.Event]]:
            rows = repo.claim_outbox(conn, now, limit, owner, self.lease, kinds=self.kinds)
            # No event: a claim (queued -> sending) is a lease, undone by itself when this
            # node dies, not a step of the message. The outcome the sender records is.
            return rows, []

        rows: list[Any] = await self.core.write(unit)
        return rows

    async def keep_claim(self, row: Any) -> bool:
        """Called by a sender right before it sends ``row``: renew the lease when waiting
        for its turn (the peer's concurrency or rate limits) used up half of it, so that
        it cannot run out during the send and another node send the row too; False if
        another node has taken the row over already (that node sends it)."""
        now = time.time()
        if now < row.claimed_until - self.lease / 2:
            return True
        owner, until = self.core.node_id, now + self.lease

        def renew(conn: Connection) -> tuple[bool, list[repo.Event]]:
            return repo.renew_claim(conn, row.id, owner, until), []

        if await self.core.write(renew):
            return True
        log.info("%s %d: taken over by another node meanwhile", row.kind, row.id)
        return False

    async def run_batch(self, now: float) -> int:
        """Claim one batch, send it and record the outcomes; the number claimed (a test's
        step: the running loop does the same without waiting in between)."""
        rows = await self.claim(now, self.batch)
        if rows:
            await asyncio.gather(*(self.send(row) for row in rows))
        return len(rows)

    async def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            room = self.max_in_flight - len(self._in_flight)
            started = 0
            if room > 0 and self.ready():
                try:
                    started = await self._claim_and_start(time.time(), min(room, self.batch))
                except Exception:
                    log.exception("claiming %s rows failed; retrying", self.name)
            if started and len(self._in_flight) < self.max_in_flight:
                continue  # the outbox may hold more
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    async def _claim_and_start(self, now: float, limit: int) -> int:
        rows = await self.claim(now, limit)
        for row in rows:
            if row.id in self._sending_ids:
                # Its lease ran out while it waited here (a slow or rate-limited peer):
                # the task that has it sends it, not a second one.
                continue
            task = asyncio.create_task(self.send(row))
            self._in_flight[task] = row.id
            self._sending_ids.add(row.id)
            task.add_done_callback(self._done)
        return len(rows)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._sending_ids.discard(self._in_flight.pop(task))
        if not task.cancelled() and task.exception() is not None:
            log.error("sending a %s row failed", self.name, exc_info=task.exception())
        self._wake.set()  # room for more


class RecordBatcher(Generic[T, R]):
    """Outcomes that arrive while earlier ones are being committed are recorded together,
    by one call of ``record`` (a writer unit over the whole list, returning one result per
    item and the events). The writer already shares one transaction among many units;
    this also lets ``record`` use one statement for many rows, which on PostgreSQL is one
    round trip instead of one per row."""

    def __init__(
        self, core: Mmsc, record: Callable[[Connection, list[T]], tuple[list[R], list[Any]]]
    ) -> None:
        self.core = core
        self.record = record
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def add(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None:
            self._task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                items = [item for item, _future in batch]

                def unit(conn: Connection, items: list[T] = items) -> tuple[list[R], list[Any]]:
                    return self.record(conn, items)

                try:
                    results: list[R] = await self.core.write(unit)
                except Exception as exc:
                    for _item, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_item, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._task = None
