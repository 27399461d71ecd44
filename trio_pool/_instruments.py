"""Instruments, after :class:`trio.abc.Instrument`: hooks for metrics and tracing.

A pool calls the methods its instruments override, in the event loop's
thread. One that raises is logged and removed; the job goes on.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from ._backend import ki_protected

if TYPE_CHECKING:
    from ._job import Job, JobRecord
    from ._statistics import WorkerStatistics

logger = logging.getLogger("trio_pool")

StopReason = Literal["stopped", "renewed", "died", "killed"]


class Instrument:
    """The base class of a pool's instruments; override the methods you need.

    Give instances to ``Pool(..., instruments=[...])`` or
    :meth:`Pool.add_instrument`. Every method is called in the event loop's
    thread (for ``job_started``, ``job_finished`` and the worker events,
    outside any task: keep them quick and synchronous). A method that raises
    is logged on the ``trio_pool`` logger at ERROR, with its traceback, and
    the instrument is removed; the job and the pool are not affected. A job's
    times are on :func:`time.perf_counter`'s clock (``job.submitted_at``,
    ``job.started_at``, ``job.finished_at``).
    """

    __slots__ = ()

    def job_submitted(self, job: Job[Any]) -> None:
        """``job`` was accepted (called in the submitting task: its context variables apply)."""

    def job_started(self, job: Job[Any]) -> None:
        """A worker took ``job`` (``job.started_at`` and ``job.worker_id`` are set)."""

    def job_finished(self, job: Job[Any]) -> None:
        """``job`` has its Outcome (``job.outcome``; ``job.finished_at`` is set).

        Also for a job that never started (cancelled, shed): its
        ``started_at`` is None.
        """

    def worker_started(self, worker: WorkerStatistics) -> None:
        """A worker loaded its interface and serves."""

    def worker_stopped(self, worker: WorkerStatistics, reason: StopReason) -> None:
        """A worker that had started has ended.

        ``reason``: ``"stopped"`` (a resize, autoscaling, the pool's exit),
        ``"renewed"``, ``"died"`` (its process or actor died) or ``"killed"``
        (``kill_on_cancel``).
        """


_HOOKS = ("job_submitted", "job_started", "job_finished", "worker_started", "worker_stopped")


class Instruments:
    """A pool's instruments, by hook: each list holds those that override it. Loop thread only.

    The lists are read as flags on the hot paths (an empty list costs a look).
    """

    def __init__(self, instruments: Iterable[Instrument] = ()) -> None:
        self.job_submitted: list[Instrument] = []
        self.job_started: list[Instrument] = []
        self.job_finished: list[Instrument] = []
        self.worker_started: list[Instrument] = []
        self.worker_stopped: list[Instrument] = []
        self._all: list[Instrument] = []
        # Jobs whose start the instruments were told of: a worker posts a start,
        # which can come after the job's Outcome (delivered in an earlier batch).
        self._told: weakref.WeakSet[JobRecord] = weakref.WeakSet()
        for instrument in instruments:
            self.add(instrument)

    def add(self, instrument: Instrument) -> None:
        """Start calling ``instrument`` (nothing if it is already active)."""
        if not isinstance(instrument, Instrument):
            raise TypeError(f"an instrument is a trio_pool.Instrument, not {instrument!r}")
        if instrument in self._all:
            return
        self._all.append(instrument)
        for hook in _HOOKS:
            if getattr(type(instrument), hook) is not getattr(Instrument, hook):
                getattr(self, hook).append(instrument)

    def remove(self, instrument: Instrument) -> None:
        """Stop calling ``instrument``.

        Raises:
            KeyError: if it is not active (as ``trio.lowlevel.remove_instrument``).
        """
        if instrument not in self._all:
            raise KeyError(instrument)
        self._all.remove(instrument)
        for hook in _HOOKS:
            hooked: list[Instrument] = getattr(self, hook)
            if instrument in hooked:
                hooked.remove(instrument)

    def started(self, job: JobRecord) -> None:
        """``job_started``, posted by the job's worker; nothing if its end came first.

        (:meth:`finished` told of the start then, to the instruments of that moment.)
        """
        if job.outcome is None and job not in self._told:
            self._told.add(job)
            if self.job_started:
                self.call("job_started", job.job)

    def finished(self, job: JobRecord) -> None:
        """``job_finished``, after ``job_started`` if the job started and that is not told yet."""
        if self.job_started and job.started_at is not None and job not in self._told:
            self.call("job_started", job.job)
        if self.job_finished:
            self.call("job_finished", job.job)

    def call(self, hook: str, *args: Any) -> None:
        """Call ``hook(*args)`` on each instrument that has it; remove one that raises."""
        for instrument in list(getattr(self, hook)):
            self._call_one(instrument, hook, args)

    @ki_protected
    def _call_one(self, instrument: Instrument, hook: str, args: tuple[Any, ...]) -> None:
        try:
            getattr(instrument, hook)(*args)
        except BaseException:  # raising into the loop's machinery would break it
            logger.exception("instrument %r raised in %s; it is removed", instrument, hook)
            self.remove(instrument)
