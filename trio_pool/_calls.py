"""The caller's side of jobs: waiting for Outcomes, a caller leaving, from_loop routing.

Loop thread only. While a caller waits for a job it owns the job's
``_wake`` (set when the job finishes or asks the loop for something) and
``_requests`` (its pending ``from_loop()`` calls, run in the caller's task,
so inside the caller's cancel scope). A job nobody waits for has its calls
run in the pool's own task group.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import anyio
import outcome

from ._backend import Backend, wait_through_cancellation
from ._exceptions import JobCancelled
from ._job import Job, LoopCall
from ._statistics import Counters


def _gone() -> outcome.Error:
    return outcome.Error(JobCancelled("the caller of this job is gone"))


class Calls:
    def __init__(
        self,
        backend: Backend,
        counters: Counters,
        start_soon: Callable[..., object],
        *,
        abandon_on_cancel: bool,
    ) -> None:
        """``start_soon`` starts a task in the pool's own scope (its task group)."""
        self._new_event = backend.event
        self._counters = counters
        self._start_soon = start_soon
        self._abandon_on_cancel = abandon_on_cancel
        self._in_pool_scope: set[anyio.CancelScope] = set()
        self._closed = False

    async def outcome_of(self, job: Job[Any]) -> outcome.Outcome[Any]:
        """:meth:`outcomes_of` for one job: the hot path of run() and call()."""
        wake = job._wake = self._new_event()
        try:
            while job._outcome is None:
                if wake.is_set():  # woken by a from_loop() call: re-arm first
                    wake = job._wake = self._new_event()
                if job._requests:
                    await self._serve_requests(job)
                else:
                    await wake.wait()
        except BaseException as exc:
            await self._caller_left((job,), exc)
            raise
        job._wake = None
        return job._outcome

    async def outcomes_of(self, jobs: Iterable[Job[Any]]) -> list[outcome.Outcome[Any]]:
        """Wait for jobs as their caller, applying the cancellation rules.

        Meanwhile, run their ``from_loop()`` calls in this task, whichever job
        makes them: the jobs share one wake-up, set when any of them finishes
        or calls.
        """
        jobs = list(jobs)
        wake = self._new_event()
        for job in jobs:
            job._wake = wake
        try:
            while True:
                # Re-arm, then look, then wait: nothing can happen in between,
                # as the loop runs only this task until the next await.
                if wake.is_set():
                    wake = self._new_event()
                    for job in jobs:
                        job._wake = wake
                if any(job._requests for job in jobs):
                    for job in jobs:
                        await self._serve_requests(job)
                    continue
                if all(job._outcome is not None for job in jobs):
                    break
                await wake.wait()
        except BaseException as exc:
            await self._caller_left(jobs, exc)
            raise
        for job in jobs:
            job._wake = None
        return [job._outcome for job in jobs if job._outcome is not None]

    async def _caller_left(self, jobs: Iterable[Job[Any]], exc: BaseException) -> None:
        """The caller of ``jobs`` stops waiting, because of ``exc``: apply the rules.

        Queued jobs are removed; running ones are abandoned, or, when ``exc``
        is a cancellation and the pool does not abandon, waited for.
        """
        running: list[Job[Any]] = []
        for job in jobs:
            job._wake = None
            for call in job._requests or ():
                call.answer(_gone())
            job._requests = None
            if job._outcome is None and not job.cancel():
                running.append(job)
        if self._abandon_on_cancel or not isinstance(exc, anyio.get_cancelled_exc_class()):
            for job in running:
                job._abandoned = True
                self._counters.abandoned()
        else:
            for job in running:
                await wait_through_cancellation(job._get_event())

    async def _serve_requests(self, job: Job[Any]) -> None:
        calls, job._requests = job._requests or [], None
        cancelled = anyio.get_cancelled_exc_class()
        for index, call in enumerate(calls):
            result = await outcome.acapture(call.async_fn, *call.args)
            if isinstance(result, outcome.Error) and isinstance(result.error, cancelled):
                # The rest are answered as cancelled by the caller's handler.
                job._requests = calls[index:] + (job._requests or [])
                raise result.error
            call.answer(result)

    def route(self, job: Job[Any], call: LoopCall) -> None:
        """A job asks to run ``call`` on the loop (posted by its worker)."""
        if job._cancel_requested or self._closed:
            call.answer(_gone())
        elif job._wake is not None:  # its caller waits: it runs the call
            if job._requests is None:
                job._requests = []
            job._requests.append(call)
            job._wake.set()
        else:
            scope = anyio.CancelScope()  # registered now, so a stop now cancels it
            self._in_pool_scope.add(scope)
            self._start_soon(self._serve_in_pool_scope, call, scope)

    async def _serve_in_pool_scope(self, call: LoopCall, scope: anyio.CancelScope) -> None:
        result: outcome.Outcome[Any] = outcome.Error(JobCancelled("the pool is stopping"))
        with scope:
            try:
                result = await outcome.acapture(call.async_fn, *call.args)
            finally:
                self._in_pool_scope.discard(scope)
        if isinstance(result, outcome.Error) and isinstance(
            result.error, anyio.get_cancelled_exc_class()
        ):
            result = outcome.Error(JobCancelled("the pool is stopping"))
        call.answer(result)

    def cancel_pool_scope(self) -> None:
        """Cancel the calls running in the pool's own scope (it is stopping on an error)."""
        for scope in self._in_pool_scope:
            scope.cancel()

    def close(self) -> None:
        """The pool has closed: answer every later call as cancelled."""
        self._closed = True
