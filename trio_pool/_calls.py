"""The caller's side of jobs: waiting for Outcomes, a caller leaving, from_loop routing.

Loop thread only. While a caller waits for a job it owns the job's
``_wake`` (set when the job finishes or asks the loop for something) and
``_requests`` (its pending ``from_loop()`` calls, run in the caller's task,
so inside the caller's cancel scope). A job nobody waits for has its calls
run in the pool's own task group. Either way a call runs in a copy of the
job's context variables, as ``trio.from_thread.run`` runs its function.
"""

from __future__ import annotations

import contextvars
import inspect
import math
from collections.abc import Awaitable, Callable, Generator, Iterable
from typing import Any, TypeVar

import anyio
import outcome

from ._backend import Backend, ki_protected, wait_through_cancellation
from ._exceptions import JobCancelled
from ._job import JobRecord, LoopCall, is_cancellation
from ._statistics import Counters

T = TypeVar("T")


def _gone() -> outcome.Error:
    return outcome.Error(JobCancelled("the caller of this job is gone"))


def _cancelled() -> outcome.Error:
    """A call in the pool's scope, cancelled with that scope."""
    return outcome.Error(JobCancelled("the job was cancelled"))


class _PoolScopeCall:
    """A from_loop() call of a job nobody waits for, run in the pool's scope."""

    __slots__ = ("call", "cancelled", "job", "scope")

    def __init__(self, job: JobRecord, call: LoopCall) -> None:
        self.job = job
        self.call = call
        self.scope: anyio.CancelScope | None = None  # made in its task, not in a callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()


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
        self._new_waker = backend.waker
        self._counters = counters
        self._start_soon = start_soon
        self._abandon_on_cancel = abandon_on_cancel
        self._in_pool_scope: set[_PoolScopeCall] = set()
        # Calls for the pool's scope wait here for serve_pool_scope(): they
        # arrive in loop callbacks, outside any task, where anyio cannot run.
        self._new_calls: list[_PoolScopeCall] = []
        self._new_calls_posted = backend.event()
        self._dispatching = True  # until serve_pool_scope() ends
        self._closed = False

    async def outcome_of(self, job: JobRecord) -> outcome.Outcome[Any]:
        """:meth:`outcomes_of` for one job: the hot path of run() and call().

        A cancellation that reaches the waiting caller cancels the job at
        once where the loop tells (trio): a queued job is removed, a running
        one sees it in ``check_cancelled()`` from that moment, as a thread of
        ``trio.to_thread`` does. The rules of :meth:`_caller_left` follow.
        """
        cancel = job.cancel
        wake = job.wake = self._new_waker(cancel)
        try:
            while job.outcome is None:
                if job.requests:  # the wake-up was a from_loop() call: re-arm, then serve
                    wake = job.wake = self._new_waker(cancel)
                    await self._serve_requests(job)
                elif wake.is_set():
                    wake = job.wake = self._new_waker(cancel)
                else:
                    await wake.wait()
        except BaseException as exc:
            if not await self._caller_left((job,), exc):
                raise
        job.wake = None
        assert job.outcome is not None
        return job.outcome

    async def outcomes_of(self, jobs: Iterable[JobRecord]) -> list[outcome.Outcome[Any]]:
        """Wait for jobs as their caller, applying the cancellation rules.

        Meanwhile, run their ``from_loop()`` calls in this task, whichever job
        makes them: the jobs share one wake-up, set when any of them finishes
        or calls.
        """
        jobs = list(jobs)

        def cancel() -> None:
            for job in jobs:
                job.cancel()

        wake = self._new_waker(cancel)
        for job in jobs:
            job.wake = wake
        try:
            while True:
                # Re-arm, then look, then wait: nothing can happen in between,
                # as the loop runs only this task until the next await.
                if wake.is_set():
                    wake = self._new_waker(cancel)
                    for job in jobs:
                        job.wake = wake
                if any(job.requests for job in jobs):
                    for job in jobs:
                        await self._serve_requests(job)
                    continue
                if all(job.outcome is not None for job in jobs):
                    break
                await wake.wait()
        except BaseException as exc:
            if not await self._caller_left(jobs, exc):
                raise
        for job in jobs:
            job.wake = None
        return [job.outcome for job in jobs if job.outcome is not None]

    @ki_protected
    async def _caller_left(self, jobs: Iterable[JobRecord], exc: BaseException) -> bool:
        """The caller of ``jobs`` stops waiting, because of ``exc``: apply the rules.

        Queued jobs are removed; running ones are abandoned, or, when ``exc``
        is a cancellation and the pool does not abandon, waited for. Returns
        True if the caller gets the results after all: its cancellation came
        from a cancel scope, which delivers it again at its next checkpoint,
        and a job it waited for ended otherwise than by JobCancelled (as
        ``trio.to_thread.run_sync`` does, no finished work is thrown away).
        """
        jobs = list(jobs)
        running: list[JobRecord] = []
        for job in jobs:
            job.wake = None
            for call in job.requests or ():
                call.answer(_gone())
            job.requests = None
            if job.outcome is None and not job.cancel():
                running.append(job)
        if self._abandon_on_cancel or not isinstance(exc, anyio.get_cancelled_exc_class()):
            for job in running:
                job.abandoned = True
                self._counters.abandoned()
            return False
        for job in running:
            await wait_through_cancellation(job.finished())
        # A job may also have finished just as the cancellation came.
        return _redelivered() and any(
            job.outcome is not None and not is_cancellation(job.outcome) for job in jobs
        )

    async def _serve_requests(self, job: JobRecord) -> None:
        calls, job.requests = job.requests or [], None
        cancelled = anyio.get_cancelled_exc_class()
        for index, call in enumerate(calls):
            result = await _run_call(call)
            if isinstance(result, outcome.Error) and isinstance(result.error, cancelled):
                # The rest are answered as cancelled by the caller's handler.
                job.requests = calls[index:] + (job.requests or [])
                raise result.error
            call.answer(result)

    def route(self, job: JobRecord, call: LoopCall) -> None:
        """A job asks to run ``call`` on the loop (posted by its worker, outside any task)."""
        if job.cancel_requested or self._closed:
            call.answer(_gone())
        elif job.wake is not None:  # its caller waits: it runs the call
            if job.requests is None:
                job.requests = []
            job.requests.append(call)
            job.wake.set()
        elif not self._dispatching:
            call.answer(_cancelled())
        else:
            entry = _PoolScopeCall(job, call)  # registered now, so a stop now cancels it
            self._in_pool_scope.add(entry)
            self._new_calls.append(entry)
            self._new_calls_posted.set()

    async def serve_pool_scope(self) -> None:
        """The pool's task that starts a task per call for its own scope, until it closes.

        The pool's scope can be cancelled before the pool closes (a deadline
        around the ``async with`` block): from then on, calls are answered at
        once as cancelled, as the tasks would be.
        """
        try:
            while not self._closed:
                await self._new_calls_posted.wait()
                self._new_calls_posted = self._new_event()
                calls, self._new_calls = self._new_calls, []
                for entry in calls:
                    self._start_soon(self._serve_in_pool_scope, entry)
        finally:
            self._dispatching = False
            for entry in self._new_calls:
                self._in_pool_scope.discard(entry)
                entry.call.answer(_cancelled())
            self._new_calls = []

    async def _serve_in_pool_scope(self, entry: _PoolScopeCall) -> None:
        result: outcome.Outcome[Any] = _cancelled()
        with anyio.CancelScope() as entry.scope:
            if entry.cancelled:
                entry.scope.cancel()
            try:
                result = await _run_call(entry.call)
            finally:
                self._in_pool_scope.discard(entry)
        if isinstance(result, outcome.Error) and isinstance(
            result.error, anyio.get_cancelled_exc_class()
        ):
            result = _cancelled()
        entry.call.answer(result)

    def cancel_job_calls(self, job: JobRecord) -> None:
        """``job.cancel()`` on a running job: cancel its calls in the pool's scope."""
        for entry in list(self._in_pool_scope):
            if entry.job is job:
                entry.cancel()

    def cancel_pool_scope(self) -> None:
        """Cancel the calls running in the pool's own scope (it is stopping on an error)."""
        for entry in self._in_pool_scope:
            entry.cancel()

    def close(self) -> None:
        """The pool has closed: answer every later call as cancelled."""
        self._closed = True
        self._new_calls_posted.set()


def _redelivered() -> bool:
    """Whether the task's cancellation comes from a cancel scope (delivered again).

    A native asyncio ``Task.cancel()`` (``asyncio.timeout`` included) is
    delivered once only: the caller must raise it.
    """
    return anyio.current_effective_deadline() == -math.inf


async def _run_call(call: LoopCall) -> outcome.Outcome[Any]:
    """``await call.async_fn(*call.args)``, in the job's context, as an Outcome."""
    try:
        awaitable = call.context.run(call.async_fn, *call.args)
        if not inspect.isawaitable(awaitable):
            raise TypeError(
                f"from_loop() expected an async function, but {call.async_fn!r} returned "
                f"{awaitable!r}: it appears to be synchronous"
            )
        return outcome.Value(await _InContext(call.context, awaitable))
    except BaseException as exc:
        return outcome.Error(exc)


class _InContext(Awaitable[T]):
    """Steps an awaitable inside ``context``, while the awaiting task stays the same."""

    def __init__(self, context: contextvars.Context, awaitable: Awaitable[T]) -> None:
        self._context = context
        self._iterator = awaitable.__await__()

    def __await__(self) -> Generator[Any, Any, T]:
        run, iterator = self._context.run, self._iterator
        send: Any = None
        thrown: BaseException | None = None
        while True:
            try:
                if thrown is None:
                    yielded = run(iterator.send, send)
                else:
                    error, thrown = thrown, None
                    yielded = run(iterator.throw, error)
            except StopIteration as done:
                result: T = done.value
                return result
            try:
                send = yield yielded
            except BaseException as exc:  # thrown into the task (a cancellation): pass it in
                thrown = exc
