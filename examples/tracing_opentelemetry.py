"""OpenTelemetry spans for a pool's jobs, from an Instrument: one span per job, a child
of the caller's span, with the worker that ran it and its outcome.

Needs opentelemetry-sdk (``python -m pip install '.[opentelemetry]'`` in a checkout).
A service exports the spans (OTLP, say); this example keeps them in memory and
prints what they say.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from typing import Any

import outcome
import trio
from opentelemetry import context, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

import trio_pool

# A job's times are on perf_counter()'s clock; spans want nanoseconds since the epoch.
_EPOCH_OFFSET = time.time_ns() - time.perf_counter_ns()


def _ns(perf_counter_seconds: float) -> int:
    return round(perf_counter_seconds * 1e9) + _EPOCH_OFFSET


class JobSpans(trio_pool.Instrument):
    """A span per job, from its submission to its end, under the span of whoever submitted it."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer
        self.parents: weakref.WeakKeyDictionary[trio_pool.Job[Any], context.Context] = (
            weakref.WeakKeyDictionary()
        )

    def job_submitted(self, job: trio_pool.Job[Any]) -> None:
        # Called in the submitting task: the current context holds the caller's span.
        self.parents[job] = context.get_current()

    def job_finished(self, job: trio_pool.Job[Any]) -> None:
        span = self.tracer.start_span(
            "trio_pool job", context=self.parents.pop(job, None), start_time=_ns(job.submitted_at)
        )
        if job.worker_id is not None:
            span.set_attribute("trio_pool.worker_id", job.worker_id)
        if job.started_at is not None:
            span.set_attribute("trio_pool.queued_seconds", job.started_at - job.submitted_at)
        result = job.outcome
        if isinstance(result, outcome.Error):
            span.set_attribute("trio_pool.outcome", type(result.error).__name__)
            span.set_status(Status(StatusCode.ERROR, str(result.error)))
        else:
            span.set_attribute("trio_pool.outcome", "value")
        assert job.finished_at is not None
        span.end(end_time=_ns(job.finished_at))


def parse(text: str) -> int:
    return int(text)


async def main() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("trio_pool example")
    async with trio_pool.Pool(workers=1, instruments=[JobSpans(tracer)]) as pool:
        with tracer.start_as_current_span("handle request") as request:
            for text in ("1", "22", "x"):
                with contextlib.suppress(ValueError):
                    await pool.run(parse, text)
    jobs = [span for span in exporter.get_finished_spans() if span.name == "trio_pool job"]
    request_id = request.get_span_context().span_id
    print(f"{len(jobs)} job spans")
    print("each a child of the request's span:", all(s.parent.span_id == request_id for s in jobs))
    print("workers:", [s.attributes["trio_pool.worker_id"] for s in jobs])
    print("outcomes:", [s.attributes["trio_pool.outcome"] for s in jobs])


if __name__ == "__main__":
    trio.run(main)
