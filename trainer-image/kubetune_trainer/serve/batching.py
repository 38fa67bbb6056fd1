"""Dynamic batching: requests that wait while the model is busy are served together by one `generate`.

One worker thread owns the model. It takes the oldest waiting request and every other waiting request
that can share its batch (same adapter and sampling settings; a seeded request runs alone, so that its
seed gives the same answer whatever else is waiting), up to `max_batch_size`, and runs them. A request
that finds `max_waiting` others waiting is refused (QueueFull: the server answers 429 with Retry-After).

Each request is a `Ticket`: the event loop reads its events (text pieces, then the Completion, or an
error) from an asyncio queue the worker fills; `cancel()` (a client that disconnected) takes a waiting
request out of the queue, or makes the running one's row end at its next token.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass, field

from kubetune_trainer.serve.adapters import AdapterError, EngineBroken
from kubetune_trainer.serve.engine import Completion, Engine, GenerationRequest, SamplingParams
from kubetune_trainer.serve.metrics import ServeMetrics

log = logging.getLogger(__name__)


class QueueFull(RuntimeError):
    """Too many requests are waiting; try again later."""


class GenerationFailed(RuntimeError):
    """The batch this request was in failed (the message says why)."""


@dataclass(eq=False)
class Ticket:
    request: GenerationRequest
    events: asyncio.Queue[str | Completion | BaseException]
    key: Hashable
    put: Callable[[str | Completion | BaseException], None]
    running: bool = False
    finished: bool = False
    enqueued: float = field(default_factory=time.perf_counter)

    async def __aiter__(self) -> AsyncIterator[str | Completion]:
        """Text pieces, then the Completion; raises GenerationFailed."""
        while True:
            event = await self.events.get()
            if isinstance(event, BaseException):
                raise event
            yield event
            if isinstance(event, Completion):
                return

    async def result(self) -> Completion:
        async for event in self:
            if isinstance(event, Completion):
                return event
        raise GenerationFailed("generation ended without a result")


def _batch_key(params: SamplingParams, adapter: str | None, ticket_id: int) -> Hashable:
    sampling = (params.temperature, params.top_p) if params.temperature > 0 else (0.0,)
    return (adapter, sampling, params.ignore_eos, ticket_id if params.seed is not None else None)


class Scheduler:
    def __init__(
        self, engine: Engine, metrics: ServeMetrics, *, max_batch_size: int, max_waiting: int, batch_wait_s: float
    ) -> None:
        self.engine, self.metrics = engine, metrics
        self.max_batch_size, self.max_waiting, self.batch_wait_s = max(1, max_batch_size), max_waiting, batch_wait_s
        self._waiting: list[Ticket] = []
        self._cv = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._work, name="kubetune-batcher", daemon=True)
        self._thread.start()

    # --- event loop side ---
    def submit(self, prompt_ids: list[int], params: SamplingParams, adapter: str | None, *, stream: bool) -> Ticket:
        """Queue a request (call on the event loop); raises QueueFull. Only a `stream` hears its text pieces:
        waking the event loop for every token of every row would cost the generating thread the GIL each time."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[str | Completion | BaseException] = asyncio.Queue()

        def put(event: str | Completion | BaseException) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        request = GenerationRequest(prompt_ids, params, adapter, on_text=put if stream else lambda _: None)
        ticket = Ticket(request, events, _batch_key(params, adapter, id(events)), put)

        def done(completion: Completion) -> None:
            self._finished(ticket)
            put(completion)

        request.on_done = done
        with self._cv:
            if len(self._waiting) >= self.max_waiting:
                raise QueueFull(f"{len(self._waiting)} requests are already waiting; try again later")
            self._waiting.append(ticket)
            self.metrics.waiting.inc()
            self.metrics.in_flight.inc()
            self._cv.notify()
        return ticket

    def cancel(self, ticket: Ticket) -> None:
        """The client went away: drop the request if it waits, end its row at the next token if it runs."""
        ticket.request.cancelled.set()
        with self._cv:
            if ticket in self._waiting:
                self._waiting.remove(ticket)
                self.metrics.waiting.dec()
                self.metrics.in_flight.dec()
                ticket.finished = True

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify()

    # --- worker side ---
    def _finished(self, ticket: Ticket) -> None:
        with self._cv:
            if ticket.finished:
                return
            ticket.finished = True
        self.metrics.running.dec()
        self.metrics.in_flight.dec()

    def _take(self) -> list[Ticket] | None:
        with self._cv:
            while not self._waiting and not self._stopped:
                self._cv.wait()
            if self._stopped:
                return None
            deadline = time.monotonic() + self.batch_wait_s
            while len(self._waiting) < self.max_batch_size and (left := deadline - time.monotonic()) > 0:
                self._cv.wait(left)  # an idle engine gathers what arrives in the next few milliseconds
            if not self._waiting:
                return []
            key = self._waiting[0].key
            batch = [t for t in self._waiting if t.key == key][: self.max_batch_size]
            for t in batch:
                self._waiting.remove(t)
                t.running = True
            self.metrics.waiting.dec(len(batch))
            self.metrics.running.inc(len(batch))
            return batch

    def _work(self) -> None:
        while (batch := self._take()) is not None:
            if not batch:
                continue
            self.metrics.batch_size.observe(len(batch))
            try:
                self.engine.run_batch([t.request for t in batch])
            except (AdapterError, EngineBroken) as e:  # its adapter was unloaded while it waited (404); or broken
                error: Exception = e
            except Exception as e:
                log.exception("generation failed for a batch of %d", len(batch))
                error = GenerationFailed(str(e))
            else:
                continue
            for t in batch:  # every request of the batch hears it; the server goes on
                if not t.finished:
                    self._finished(t)
                    t.put(error)
