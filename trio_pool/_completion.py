"""The one path by which a pool's jobs get their Outcomes, in the loop's thread.

Every Outcome (a worker's, a cancellation's, a shed job's, a dead worker's
leftovers') goes through :meth:`Completion.complete_all`: it is counted,
the job is finished (its waiter, its event and its done-callbacks), and the
instruments hear of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import outcome

from ._backend import ki_protected
from ._instruments import Instruments
from ._job import JobRecord
from ._statistics import Counters


class Completion:
    def __init__(self, counters: Counters, instruments: Instruments) -> None:
        self._counters = counters
        self._instruments = instruments

    def complete(self, job: JobRecord, result: outcome.Outcome[Any]) -> None:
        self.complete_all(((job, result),))

    @ki_protected
    def complete_all(self, batch: Iterable[tuple[JobRecord, outcome.Outcome[Any]]]) -> None:
        instruments = self._instruments
        count = self._counters.count
        for job, result in batch:
            count(job, result)
            job.finish(result)
            if instruments.job_finished or instruments.job_started:
                instruments.finished(job)
            job.forget_handle()
