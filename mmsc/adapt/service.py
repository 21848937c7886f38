"""Adaptation at retrieval time: once per (message, device variant), off the event loop, cached.

The first fetch of a message by a handset of some variant (its capabilities,
hashed) runs the pipeline in a worker process and stores the result in the
payload store next to the original; every later fetch of that variant reads
it back (../shared/research/performance.md §2: adapt lazily, cache by
content and class). Concurrent fetches of one variant share one job. A job
that fails or runs past ``timeout`` serves the original instead, so a
hostile picture can cost a handset its adaptation, never the server its
loop; the failure is remembered for ``retry_after`` seconds, so that every
fetch of that message does not queue the same doomed job again (a timed-out
job keeps its worker busy until it ends). Each stored variant is recorded as
an ``adapted`` event, which is how the expiry purge finds it again.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from sqlalchemy.engine import Connection

from mmsc import metrics
from mmsc.adapt.pipeline import Target
from mmsc.adapt.worker import adapt_submission, needs_adaptation
from mmsc.core import Mmsc
from storage import repository as repo

log = logging.getLogger("mmsc.adapt")


class AdaptationService:
    def __init__(
        self,
        core: Mmsc,
        *,
        workers: int | None = None,
        timeout: float = 10.0,
        retry_after: float = 600.0,
    ) -> None:
        self.core = core
        self.workers = workers or max(1, os.cpu_count() or 1)
        self.timeout = timeout
        self.retry_after = retry_after
        self._pool: ProcessPoolExecutor | None = None
        self._inflight: dict[str, asyncio.Task[str]] = {}
        # Variants known to exist / known not to be needed (the message already fits):
        # the common retrieval then costs no extra payload-store call.
        self._known: dict[str, None] = {}
        self._fits: dict[str, None] = {}
        # Variants whose adaptation failed or timed out -> monotonic time to try again.
        self._failed: dict[str, float] = {}

    @staticmethod
    def _remember(table: dict[str, None], key: str) -> None:
        if len(table) >= 100_000:
            table.pop(next(iter(table)))
        table[key] = None

    def _failed_recently(self, key: str) -> bool:
        until = self._failed.get(key)
        if until is None:
            return False
        if until <= time.monotonic():
            del self._failed[key]
            return False
        return True

    def _remember_failure(self, key: str) -> None:
        if len(self._failed) >= 100_000:
            self._failed.pop(next(iter(self._failed)))
        self._failed[key] = time.monotonic() + self.retry_after

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the server process has threads (database writer, I/O pool)
            # that a forked child would inherit in whatever state they were.
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context)
        return self._pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.get_running_loop().run_in_executor(None, pool.shutdown)

    async def payload_key(self, row: Any, target: Target, variant: str) -> str:
        """The payload to serve ``row``'s recipient: the cached variant, a new one, or
        (when adaptation fails) the original."""
        original = str(row.m_payload_key)
        key = f"{original}.{variant}"
        if key in self._known:  # stored earlier by this process: no file-system round trip
            metrics.adaptation_cache.labels("hit").inc()
            return key
        if key in self._fits:
            metrics.adaptation_cache.labels("fits").inc()
            return original
        if await self.core.payloads.exists(key):
            self._remember(self._known, key)
            metrics.adaptation_cache.labels("hit").inc()
            return key
        if self._failed_recently(key):  # the original, without queueing the job again
            metrics.adaptation_cache.labels("failed").inc()
            return original
        pending = self._inflight.get(key)
        if pending is not None:
            metrics.adaptation_cache.labels("shared").inc()
            return await asyncio.shield(pending)
        # One task per variant; every fetch waits on it through a shield, so a handset
        # that hangs up does not cancel the job the others wait for.
        task = asyncio.get_running_loop().create_task(self._adapt(row, original, key, target))
        self._inflight[key] = task
        task.add_done_callback(lambda _task: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    async def _adapt(self, row: Any, original: str, key: str, target: Target) -> str:
        raw = await self.core.payloads.get(original)
        if not needs_adaptation(raw, target):
            self._remember(self._fits, key)
            metrics.adaptation_cache.labels("fits").inc()
            return original
        metrics.adaptation_cache.labels("miss").inc()
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            data, stats = await asyncio.wait_for(
                loop.run_in_executor(self._executor(), adapt_submission, raw, target),
                self.timeout,
            )
        except TimeoutError:
            self._remember_failure(key)
            metrics.adaptation_failures.labels("timeout").inc()
            metrics.adaptation_seconds.observe(time.perf_counter() - started)  # the slow tail
            log.warning(
                "adapting %s took over %.1f s; serving the original", row.message_id, self.timeout
            )
            return original
        except Exception as exc:  # a bug or a worker that died: never the handset's problem
            self._remember_failure(key)
            metrics.adaptation_failures.labels("error").inc()
            log.exception("adapting %s failed (%s); serving the original", row.message_id, exc)
            return original
        elapsed = time.perf_counter() - started
        metrics.adaptation_seconds.observe(elapsed)
        metrics.adaptation_bytes.labels("in").inc(stats["bytes_in"])
        metrics.adaptation_bytes.labels("out").inc(stats["bytes_out"])
        metrics.adaptation_parts.labels("converted").inc(stats["converted"])
        metrics.adaptation_parts.labels("dropped").inc(stats["dropped"])
        await self.core.payloads.put(key, data)
        self._remember(self._known, key)
        now = time.time()
        detail = key
        notes = "; ".join(stats["notes"])[:500]

        def record(conn: Connection) -> tuple[None, list[repo.Event]]:
            events = [repo.Event(row.message_id, "adapted", now, row.id, None, detail)]
            if notes:
                events.append(
                    repo.Event(row.message_id, "adaptation-notes", now, row.id, None, notes)
                )
            repo.add_events(conn, events)
            return None, events

        await self.core.write(record)
        log.info(
            "adapted %s for %s in %.0f ms: %d -> %d bytes, %d converted, %d dropped",
            row.message_id,
            key.rsplit(".", 1)[-1],
            elapsed * 1000,
            stats["bytes_in"],
            stats["bytes_out"],
            stats["converted"],
            stats["dropped"],
        )
        return key
