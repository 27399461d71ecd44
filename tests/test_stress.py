"""Seeded random programs against the pool, with its invariants checked after each.

Each program is a pool (fixed or autoscaling, with loaders and exit hooks that
sometimes fail) and a few tasks that drive a random mix of everything at once:
run/call/call_method/interface calls and submits under tiny deadlines,
``job.cancel()``, native asyncio ``Task.cancel()`` (on asyncio), ``map`` with
early breaks and errors, resizing, broadcasts, leases (with and without a
``reset``), notify/wait, ``from_loop``, shedding with ``max_wait``, and exits
by an error or a cancellation with jobs still queued. Also what found the bugs
of the last round from outside: a normal close (``aclose()``) from a task
while the others go on (leases and their resets racing it), every public
method called from a foreign thread or a second event loop (it must refuse
with RuntimeError and change nothing), native ``asyncio.timeout()`` around
resizes and the close, and slow consumers of ``map`` with the default chunk
size (the read-ahead must stay bounded in items).
Once the pool's block has exited, :func:`check` compares what the callers saw
with what the worker threads did.

The seed fixes the program; the threads' timing still differs from run to run.

- ``TRIO_POOL_STRESS=<programs>`` runs that many programs per backend (default
  100: a few seconds in all);
- ``TRIO_POOL_STRESS_SEED=<seed>`` runs only that seed (a failure names it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import random
import re
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterator
from types import TracebackType
from typing import Any, Literal

import anyio
import outcome
import pytest
import sniffio
import trio

import trio_pool

from helpers import TIMEOUT, leaves, wait_in_thread

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

PROGRAMS = int(os.environ.get("TRIO_POOL_STRESS", "100"))
ONLY_SEED = os.environ.get("TRIO_POOL_STRESS_SEED")
HANG_LIMIT = 20  # seconds for one program; a working one takes a small fraction of that


def seeds() -> list[int]:
    return [int(ONLY_SEED)] if ONLY_SEED else list(range(PROGRAMS))


class TaskError(Exception):
    """A task's own error: the pool's block exits by it."""


class JobError(Exception):
    """A job's own error; its argument is the job's tag."""


class LoaderError(Exception):
    """A loader's error; its argument is the worker id."""


class HookError(Exception):
    """An exit hook's error; its argument is the worker id."""


# --- the program generator -----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sleep:
    """A job step: block, without looking at cancellation."""

    seconds: float


@dataclasses.dataclass(frozen=True)
class Spin:
    """A job step: short sleeps with ``check_cancelled()`` between them."""

    rounds: int


@dataclasses.dataclass(frozen=True)
class FromLoop:
    """A job step: ``from_loop()`` of a coroutine that sleeps ``delay`` (0: a checkpoint)."""

    delay: float


@dataclasses.dataclass(frozen=True)
class Raise:
    """A job step: raise ``JobError(tag)``."""


@dataclasses.dataclass(frozen=True)
class AwaitNotify:
    """A job step: ``trio_pool.wait()`` for the notify the test sends."""


Step = Sleep | Spin | FromLoop | Raise | AwaitNotify
How = Literal["run", "call", "call_method", "interface"]


@dataclasses.dataclass(frozen=True)
class Call:
    """Call a job and wait for it (on the pool, or on a lease's worker)."""

    token: int
    steps: tuple[Step, ...]
    how: How
    deadline: float


@dataclasses.dataclass(frozen=True)
class Submit:
    """Submit a job, then cancel it, wait for it, or leave it to the pool's exit."""

    token: int
    steps: tuple[Step, ...]
    nowait: bool
    deadline: float  # of the submit()
    then: Literal["cancel", "cancel_later", "cancel_running", "wait", "leave"]
    checkpoints: int  # before "cancel_later"
    wait_deadline: float


@dataclasses.dataclass(frozen=True)
class Burst:
    """Fill the queue with jobs (submit_nowait until it is full) and leave them."""

    tokens: tuple[int, ...]
    steps: tuple[Step, ...]


@dataclasses.dataclass(frozen=True)
class NativeCancel:
    """asyncio only: a call in a task of its own, cancelled by ``Task.cancel()``."""

    token: int
    steps: tuple[Step, ...]
    when: Literal["at_once", "checkpoints", "running", "wait_for"]
    checkpoints: int
    timeout: float  # of asyncio.wait_for


@dataclasses.dataclass(frozen=True)
class Map:
    items: int
    ordered: bool
    outcomes: bool
    chunksize: int | None
    stop_after: int | None  # break after this many results
    deadline: float
    slow: bool = False  # a consumer slower than the workers, over many quick items


@dataclasses.dataclass(frozen=True)
class Close:
    """A normal close, ``aclose()``, from a task while the others go on."""

    deadline: float
    native: bool  # on asyncio, under asyncio.timeout() instead of a cancel scope


Foreigner = Literal["thread", "trio", "asyncio"]


@dataclasses.dataclass(frozen=True)
class Foreign:
    """A public method called from another thread, or from a second loop there."""

    method: str
    where: Foreigner


@dataclasses.dataclass(frozen=True)
class Broadcast:
    token: int
    steps: tuple[Step, ...]
    deadline: float


@dataclasses.dataclass(frozen=True)
class Lease:
    calls: tuple[Call, ...]
    deadline: float
    token: int  # of the lease itself: what its first call marks its worker with
    reset: bool  # lease(reset=...): the mark is cleared however the lease ends


@dataclasses.dataclass(frozen=True)
class Resize:
    which: Literal["resize", "add_workers", "stop_workers", "ensure"]
    count: int
    at_most: int
    deadline: float
    native: bool = False  # on asyncio, under asyncio.timeout() instead of a cancel scope


@dataclasses.dataclass(frozen=True)
class Notify:
    """Submit a job that waits for a notify; notify it once it runs (or cancel it)."""

    token: int
    cancel_instead: bool


@dataclasses.dataclass(frozen=True)
class Stats:
    pass


@dataclasses.dataclass(frozen=True)
class RaiseTaskError:
    pass


Op = (
    Call
    | Submit
    | Burst
    | NativeCancel
    | Map
    | Broadcast
    | Lease
    | Resize
    | Notify
    | Stats
    | RaiseTaskError
    | Close
    | Foreign
)
#: What a Foreign op calls: (name, whether it is awaited, so from a second loop).
FOREIGN_METHODS = {
    "run": True,
    "submit": True,
    "broadcast": True,
    "resize": True,
    "ensure": True,
    "lease": True,
    "aclose": True,
    "job.wait": True,
    "submit_nowait": False,
    "map": False,
    "define": False,
    "undefine": False,
    "notify": False,
    "job.cancel": False,
    "job.add_done_callback": False,
}
MAP_ERROR_ITEM = 13  # map_item() raises JobError for this item


@dataclasses.dataclass(frozen=True)
class Program:
    seed: int
    backend: str
    options: dict[str, Any]  # for Pool()
    load_fail: frozenset[int]  # worker ids whose loader raises LoaderError
    hook_fail: frozenset[int]  # worker ids whose exit hook raises HookError
    load_seconds: float
    deadline: float  # of the whole block: an exit by cancellation
    tasks: tuple[tuple[Op, ...], ...]

    @property
    def abandon(self) -> bool:
        return bool(self.options.get("abandon_on_cancel"))

    def where(self) -> str:
        return (
            f"seed {self.seed} on {self.backend} (rerun it with TRIO_POOL_STRESS_SEED="
            f"{self.seed} pytest tests/test_stress.py -k {self.backend!r})"
        )


class Generator:
    """Draws one program from a seed."""

    def __init__(self, seed: int, backend: str) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.backend = backend
        self.next_token = 0

    def token(self) -> int:
        self.next_token += 1
        return self.next_token

    def deadline(self) -> float:
        """Usually none; else tiny, so that it strikes anywhere in a call."""
        if self.rng.random() < 0.55:
            return math.inf
        return self.rng.choice([0, 0.0002, 0.0005, 0.001, 0.003, 0.01])

    def steps(self) -> tuple[Step, ...]:
        rng = self.rng
        steps: list[Step] = []
        for _ in range(rng.randint(0, 3)):
            kind = rng.random()
            if kind < 0.35:
                steps.append(Sleep(rng.choice([0, 0.0005, 0.002])))
            elif kind < 0.6:
                steps.append(Spin(rng.randint(1, 6)))
            elif kind < 0.85:
                steps.append(FromLoop(rng.choice([0, 0, 0.001])))
            else:
                steps.append(Raise())
        return tuple(steps)

    def call(self, how: tuple[How, ...] = ("run", "call", "call_method", "interface")) -> Call:
        return Call(self.token(), self.steps(), self.rng.choice(how), self.deadline())

    def op(self) -> Op:
        rng = self.rng
        kinds: dict[str, float] = {
            "call": 5,
            "submit": 4,
            "burst": 0.4,
            "map": 1.2,
            "broadcast": 1,
            "lease": 1.2,
            "resize": 1,
            "notify": 0.7,
            "stats": 0.5,
            "foreign": 0.4,
            "close": 0.08,
        }
        native = self.backend == "anyio-asyncio"
        if native:
            kinds["native"] = 1.5
        kind = rng.choices(list(kinds), list(kinds.values()))[0]
        if kind == "call":
            return self.call()
        if kind == "submit":
            return Submit(
                self.token(),
                self.steps(),
                nowait=rng.random() < 0.3,
                deadline=self.deadline(),
                then=rng.choice(
                    ["cancel", "cancel_later", "cancel_running", "wait", "wait", "leave"]
                ),
                checkpoints=rng.randint(0, 5),
                wait_deadline=self.deadline(),
            )
        if kind == "burst":
            tokens = tuple(self.token() for _ in range(rng.randint(1, 10)))
            return Burst(tokens, (Sleep(rng.choice([0, 0.001, 0.003])),))
        if kind == "native":
            return NativeCancel(
                self.token(),
                self.steps(),
                when=rng.choice(["at_once", "checkpoints", "running", "running", "wait_for"]),
                checkpoints=rng.randint(0, 6),
                timeout=rng.choice([0.0002, 0.001, 0.003]),
            )
        if kind == "map":
            if rng.random() < 0.15:  # many quick items, a slow consumer, the adaptive size
                return Map(
                    3000, rng.random() < 0.6, False, None, rng.randint(5, 60), math.inf, True
                )
            return Map(
                items=rng.randint(0, 30),
                ordered=rng.random() < 0.6,
                outcomes=rng.random() < 0.4,
                chunksize=rng.choice([None, 1, 1, 2, 5]),  # None: adaptive
                stop_after=rng.choice([None, None, 0, 1, 3, 10]),
                deadline=self.deadline(),
            )
        if kind == "broadcast":
            return Broadcast(self.token(), self.steps(), self.deadline())
        if kind == "lease":
            calls = tuple(
                self.call(("run", "call", "call_method")) for _ in range(rng.randint(1, 4))
            )
            return Lease(calls, self.deadline(), self.token(), reset=rng.random() < 0.6)
        if kind == "resize":
            return Resize(
                rng.choice(["resize", "add_workers", "stop_workers", "ensure"]),
                count=rng.randint(1, 3),
                at_most=rng.randint(2, 4),
                deadline=self.deadline(),
                native=native and rng.random() < 0.5,
            )
        if kind == "notify":
            return Notify(self.token(), cancel_instead=rng.random() < 0.2)
        if kind == "foreign":
            return Foreign(
                rng.choice(list(FOREIGN_METHODS)), rng.choice(["thread", "trio", "asyncio"])
            )
        if kind == "close":
            return Close(self.deadline(), native=native and rng.random() < 0.5)
        return Stats()

    def program(self) -> Program:
        rng = self.rng
        options: dict[str, Any] = {}
        if rng.random() < 0.35:
            low = rng.choice([0, 0, 1, 2])
            options.update(
                min_workers=low,
                max_workers=rng.randint(max(1, low), 4),
                idle_timeout=rng.choice([0.002, 0.01, 0.05]),
            )
            initial = low
        else:
            initial = rng.randint(1, 4)
            options["workers"] = initial
        queue_size = rng.choice([None, 1, 2, 4, 8])
        if queue_size is not None:
            options["queue_size"] = queue_size
        options["abandon_on_cancel"] = rng.random() < 0.25
        if rng.random() < 0.25:  # shed load: waits for room or a lease end in WouldBlock
            options["max_wait"] = rng.choice([0, 0.0005, 0.002])
        if rng.random() < 0.25:  # renewal: workers stop and are replaced as they serve
            options["max_jobs_per_worker"] = rng.choice([1, 2, 5])
        if rng.random() < 0.5:  # an instrument that checks what it is told (see Watcher)
            options["instruments"] = "watcher"
        # A loader of the first workers fails now and then (the block raises
        # on entry); later ones more often (while resizing or autoscaling).
        load_fail = {i for i in range(initial) if rng.random() < 0.02}
        load_fail |= {i for i in range(initial, 30) if rng.random() < 0.1}
        hook_fail = {i for i in range(30) if rng.random() < 0.08}
        tasks = [[self.op() for _ in range(rng.randint(3, 12))] for _ in range(rng.randint(2, 8))]
        ending = rng.random()
        if ending < 0.2:  # an exit by a task's error, sometimes with jobs still queued
            ops = rng.choice(tasks)
            at = rng.randint(len(ops) // 2, len(ops))
            queued = [Burst((self.token(), self.token()), (Sleep(0.003),))] if ending < 0.15 else []
            ops[at:at] = [*queued, RaiseTaskError()]
        deadline = 0.02 if 0.2 <= ending < 0.26 else math.inf  # an exit by cancellation
        return Program(
            self.seed,
            self.backend,
            options,
            frozenset(load_fail),
            frozenset(hook_fail),
            load_seconds=rng.choice([0, 0, 0.001, 0.005]),
            deadline=deadline,
            tasks=tuple(tuple(ops) for ops in tasks),
        )


def generate(seed: int, backend: str) -> Program:
    return Generator(seed, backend).program()


# --- what the worker threads did --------------------------------------------------

Tag = Hashable  # a job's token, or (token, worker id) for a broadcast's jobs
End = Literal["returned", "raised", "jobcancelled"]


class Record:
    """What loaders, hooks and jobs did, written from the worker threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[Tag, int] = {}
        self.ends: dict[Tag, End] = {}
        self.loads: dict[int, int] = {}  # worker id -> its thread
        self.load_failed: set[int] = set()
        self.exits: dict[int, list[tuple[int, tuple[Any, ...]]]] = {}  # (thread, exc_info)
        self.hook_errors = 0
        self.on_start: dict[Tag, Callable[[], object]] = {}  # handshakes the loop waits for
        # Leases with a reset mark their worker's interface "dirty" with the lease's
        # token; the reset clears it. Jobs note a mark they find; hooks, the mark left.
        self.dirty_seen: dict[Tag, int] = {}
        self.resets: dict[int, int] = {}  # lease token -> resets that cleared its mark
        self.exit_dirty: dict[int, int | None] = {}  # worker id -> the mark its hook found

    def started(self, tag: Tag) -> None:
        with self.lock:
            self.runs[tag] = self.runs.get(tag, 0) + 1
            on_start = self.on_start.pop(tag, None)
        if on_start is not None:
            on_start()

    def ended(self, tag: Tag, end: End) -> None:
        with self.lock:
            self.ends[tag] = end


async def loop_task_id(delay: float) -> int:
    if delay:
        await anyio.sleep(delay)
    else:
        await anyio.lowlevel.checkpoint()
    return anyio.get_current_task().id


def job_body(
    record: Record, token: int, steps: tuple[Step, ...], per_worker: bool = False
) -> tuple[Tag, int, tuple[Any, ...]]:
    """A job: returns (its tag, its worker, what its from_loop and wait steps got)."""
    worker = trio_pool.current_worker().id
    tag: Tag = (token, worker) if per_worker else token
    record.started(tag)
    dirty = getattr(trio_pool.current_interface(), "dirty", None)
    if dirty is not None:
        with record.lock:
            record.dirty_seen[tag] = dirty
    end: End = "raised"
    extras: list[Any] = []
    try:
        for step in steps:
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
            elif isinstance(step, Spin):
                for _ in range(step.rounds):
                    trio_pool.check_cancelled()
                    time.sleep(0.0005)
            elif isinstance(step, FromLoop):
                extras.append(("loop", trio_pool.from_loop(loop_task_id, step.delay)))
            elif isinstance(step, AwaitNotify):
                extras.append(("notified", trio_pool.wait(("notify", token), timeout=TIMEOUT)))
            else:
                raise JobError(tag)
        end = "returned"
        return (tag, worker, tuple(extras))
    except trio_pool.JobCancelled:
        end = "jobcancelled"
        raise
    finally:
        record.ended(tag, end)


def map_item(x: int) -> int:
    time.sleep(0.0002 * (x % 3))
    if x == MAP_ERROR_ITEM:
        raise JobError(x)
    return 2 * x


def make_interface(program: Program, record: Record) -> type:
    class Iface:
        def __init__(self, tag: str) -> None:
            worker = trio_pool.current_worker().id
            if program.load_seconds:
                time.sleep(program.load_seconds)
            if worker in program.load_fail:
                with record.lock:
                    record.load_failed.add(worker)
                raise LoaderError(worker)
            with record.lock:
                record.loads[worker] = threading.get_ident()
            self.worker = worker
            self.dirty: int | None = None

        def mark(self, lease: int) -> None:
            self.dirty = lease

        def reset(self) -> None:
            if self.dirty is not None:
                with record.lock:
                    record.resets[self.dirty] = record.resets.get(self.dirty, 0) + 1
            self.dirty = None

        def work(self, token: int, steps: tuple[Step, ...]) -> tuple[Tag, int, tuple[Any, ...]]:
            return job_body(record, token, steps)

        def __exit__(self, *exc_info: Any) -> None:
            with record.lock:
                record.exits.setdefault(self.worker, []).append((threading.get_ident(), exc_info))
                record.exit_dirty[self.worker] = self.dirty
                record.hook_errors += self.worker in program.hook_fail
            if self.worker in program.hook_fail:
                raise HookError(self.worker)

    return Iface


# --- what the callers saw ------------------------------------------------------------


@dataclasses.dataclass
class Seen:
    """What the caller of one job got: an Outcome, or None if it raised its cancellation."""

    result: outcome.Outcome[Any] | None
    caller: int  # its task's id, where its job's from_loop() calls run
    native: bool = False  # cancelled by asyncio's Task.cancel(), not by a cancel scope
    worker: int | None = None  # the leased worker it called


@dataclasses.dataclass
class Tracked:
    """A submitted job, with what its done-callbacks and wait() got."""

    token: int
    job: trio_pool.Job[Any]
    callbacks: list[tuple[outcome.Outcome[Any], bool]] = dataclasses.field(default_factory=list)
    waited: list[outcome.Outcome[Any]] = dataclasses.field(default_factory=list)
    removed: bool = False  # job.cancel() returned True
    notified: bool = False


@dataclasses.dataclass
class Broadcasted:
    token: int
    caller: int
    result: list[outcome.Outcome[Any]] | None  # None: it raised its cancellation


def surfaced(error: LoaderError | HookError) -> Iterator[tuple[str, int]]:
    """The loader and hook errors an error raised to us stands for: itself, and the
    loader errors noted on it (the pool raises one loader error, the others as notes)."""
    yield type(error).__name__, error.args[0]
    for note in getattr(error, "__notes__", ()):
        match = re.fullmatch(r"the loader of worker \S+-worker-(\d+) failed too(: .*)?", note)
        assert match is not None, note
        yield "LoaderError", int(match.group(1))


def loop_poster() -> Callable[[Callable[[], object]], object]:
    """Runs a callback on this event loop, from any thread (for handshakes from jobs)."""
    if sniffio.current_async_library() == "trio":
        return trio.lowlevel.current_trio_token().run_sync_soon
    return asyncio.get_running_loop().call_soon_threadsafe


# --- the interpreter ---------------------------------------------------------------


class Runner:
    """Runs one program; collects what its callers saw and any problem seen on the way."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.record = Record()
        self.iface: Any = make_interface(program, self.record)
        options = dict(program.options)
        self.watcher = Watcher() if options.pop("instruments", None) else None
        self.pool = trio_pool.Pool(
            self.iface,
            "tag",
            name=f"stress{program.seed}",
            instruments=[self.watcher] if self.watcher else (),
            **options,
        )
        self.seen: dict[int, Seen] = {}
        self.tracked: list[Tracked] = []
        self.broadcasts: list[Broadcasted] = []
        self.surfaced: list[tuple[str, int]] = []  # loader and hook errors raised to us
        self.lease_calls: dict[int, set[int]] = {}  # lease token -> its calls' tokens
        self.task_errors = 0
        self.exit_error: BaseException | None = None
        self.problems: list[str] = []
        self.loop_thread = threading.get_ident()
        self.closing = False  # a Close op has begun: later ops may find the pool closed
        self.close_interrupted = False  # and a cancellation reached it: hooks may say so

    async def run(self, guard: anyio.CancelScope) -> None:
        self.post = loop_poster()
        try:
            with anyio.move_on_after(self.program.deadline):
                try:
                    async with self.pool:
                        async with anyio.create_task_group() as tasks:
                            for ops in self.program.tasks:
                                tasks.start_soon(self.task, ops)
                except BaseException as exc:
                    self.exit_error = exc
                    raise
        except BaseException:
            if guard.cancel_called:
                raise  # it hung: fail_after says so
        for leaf in leaves(self.exit_error) if self.exit_error else ():
            if isinstance(leaf, (LoaderError, HookError)):
                self.surfaced.extend(surfaced(leaf))
        await self.after_exit()

    async def after_exit(self) -> None:
        """Every submitting call raises PoolClosedError once the block has exited."""
        with pytest.raises(trio_pool.PoolClosedError):
            await self.pool.run(int)
        with pytest.raises(trio_pool.PoolClosedError):
            await self.pool.submit(int)
        with pytest.raises(trio_pool.PoolClosedError):
            self.pool.submit_nowait(int)

    async def task(self, ops: tuple[Op, ...]) -> None:
        try:
            for op in ops:
                await self.step(op)
        except trio_pool.PoolClosedError:
            if not self.closing:
                self.problems.append("an op raised PoolClosedError, though nobody closed")

    async def step(self, op: Op) -> None:
        if isinstance(op, Call):
            with anyio.move_on_after(op.deadline):
                await self.call(op, self.invoke(op))
        elif isinstance(op, Submit):
            await self.submit(op)
        elif isinstance(op, Burst):
            await self.burst(op)
        elif isinstance(op, NativeCancel):
            await self.native_cancel(op)
        elif isinstance(op, Map):
            await self.map(op)
        elif isinstance(op, Broadcast):
            await self.broadcast(op)
        elif isinstance(op, Lease):
            await self.lease(op)
        elif isinstance(op, Resize):
            await self.resize(op)
        elif isinstance(op, Notify):
            await self.notify(op)
        elif isinstance(op, Stats):
            self.check_statistics_shape()
            await anyio.lowlevel.checkpoint()
        elif isinstance(op, Close):
            await self.close(op)
        elif isinstance(op, Foreign):
            await self.foreign(op)
        else:
            self.task_errors += 1
            raise TaskError

    def invoke(self, op: Call, on: Any = None) -> Callable[[], Awaitable[Any]] | None:
        """The call ``op`` makes, on the pool or on a lease; None if it cannot be made."""
        target = self.pool if on is None else on
        args = (op.token, op.steps)
        if op.how == "run":
            return lambda: target.run(job_body, self.record, *args)
        if op.how == "call":

            async def call() -> Any:
                return (await target.call("work", *args)).unwrap()

            return call
        if op.how == "call_method":
            return lambda: target.call_method(self.iface.work, *args)
        try:
            method = target.interface.work
        except AttributeError:
            return None  # no worker has loaded yet: the operations are not known
        return lambda: method(*args)

    async def call(
        self, op: Call, invoke: Callable[[], Awaitable[Any]] | None, worker: int | None = None
    ) -> None:
        """Make a call and note what it gives: a value, an error, or a cancellation."""
        if invoke is None:
            return
        caller = anyio.get_current_task().id
        try:
            value = await invoke()
        except anyio.get_cancelled_exc_class():
            self.seen[op.token] = Seen(None, caller, worker=worker)
            raise
        except (Exception, trio_pool.JobCancelled) as exc:
            self.seen[op.token] = Seen(outcome.Error(exc), caller, worker=worker)
        else:
            self.seen[op.token] = Seen(outcome.Value(value), caller, worker=worker)

    def track(self, token: int, job: trio_pool.Job[Any]) -> Tracked:
        tracked = Tracked(token, job)

        def done(result: outcome.Outcome[Any]) -> None:
            in_loop = threading.get_ident() == self.loop_thread
            tracked.callbacks.append((result, in_loop))

        job.add_done_callback(done)
        self.tracked.append(tracked)
        return tracked

    def started_event(self, token: int, job: trio_pool.Job[Any] | None = None) -> anyio.Event:
        """An event set once the job ``token`` starts (or, given, ``job`` ends)."""
        event = anyio.Event()
        post = self.post
        with self.record.lock:
            if token not in self.record.runs:
                self.record.on_start[token] = lambda: post(event.set)
            else:
                event.set()
        if job is not None:
            job.add_done_callback(lambda _: event.set())
        return event

    async def submit(self, op: Submit) -> None:
        job: trio_pool.Job[Any] | None = None
        try:
            if op.nowait:
                job = self.pool.submit_nowait(job_body, self.record, op.token, op.steps)
            else:
                with anyio.move_on_after(op.deadline):
                    job = await self.pool.submit(job_body, self.record, op.token, op.steps)
        except (trio.WouldBlock, anyio.WouldBlock):
            return
        if job is None:
            return  # cancelled while it waited for room: nothing was submitted
        tracked = self.track(op.token, job)
        if op.then == "cancel":
            tracked.removed = job.cancel()
        elif op.then == "cancel_later":
            for _ in range(op.checkpoints):
                await anyio.lowlevel.checkpoint()
            tracked.removed = job.cancel()
        elif op.then == "cancel_running":
            await self.started_event(op.token, job).wait()
            tracked.removed = job.cancel()
        elif op.then == "wait":
            with anyio.move_on_after(op.wait_deadline):
                tracked.waited.append(await job.wait())

    async def burst(self, op: Burst) -> None:
        for token in op.tokens:
            try:
                job = self.pool.submit_nowait(job_body, self.record, token, op.steps)
            except (trio.WouldBlock, anyio.WouldBlock):
                break
            self.track(token, job)
        await anyio.lowlevel.checkpoint()

    async def native_cancel(self, op: NativeCancel) -> None:
        """asyncio's own cancellation, once or by wait_for(), of a call in a plain task."""
        task = asyncio.get_running_loop().create_task(self.native_call(op))
        started = self.started_event(op.token)
        task.add_done_callback(lambda _: started.set())
        try:
            if op.when == "at_once":
                task.cancel()
            elif op.when == "checkpoints":
                for _ in range(op.checkpoints):
                    await anyio.lowlevel.checkpoint()
                task.cancel()
            elif op.when == "running":
                await started.wait()
                task.cancel()
        except BaseException:
            task.cancel()  # we are leaving: so is it
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await asyncio.wait({task})

    async def native_call(self, op: NativeCancel) -> None:
        caller = anyio.get_current_task().id

        async def call() -> Any:
            nonlocal caller
            caller = anyio.get_current_task().id  # wait_for() may run it in a task of its own
            return await self.pool.run(job_body, self.record, op.token, op.steps)

        try:
            if op.when == "wait_for":
                value = await asyncio.wait_for(call(), op.timeout)
            else:
                value = await call()
        except (asyncio.CancelledError, asyncio.TimeoutError):
            self.seen[op.token] = Seen(None, caller, native=True)
        except (Exception, trio_pool.JobCancelled) as exc:
            self.seen[op.token] = Seen(outcome.Error(exc), caller, native=True)
        else:
            self.seen[op.token] = Seen(outcome.Value(value), caller, native=True)

    async def map(self, op: Map) -> None:
        if op.slow:
            await self.slow_map(op)
            return
        items = list(range(op.items))
        got: list[Any] = []
        with anyio.move_on_after(op.deadline):
            try:
                async with self.pool.map(
                    map_item,
                    items,
                    ordered=op.ordered,
                    chunksize=op.chunksize,
                    outcomes=op.outcomes,
                ) as results:
                    async for result in results:
                        got.append(result)
                        if op.stop_after is not None and len(got) > op.stop_after:
                            break
            except JobError as exc:
                if op.outcomes or exc.args != (MAP_ERROR_ITEM,) or MAP_ERROR_ITEM not in items:
                    self.problems.append(f"map raised {exc!r} (outcomes={op.outcomes})")
            except LoaderError:
                pass  # autoscaling could start no worker for its chunks
            except trio_pool.JobCancelled:
                if not self.closing:  # an interrupted close cancels the queued chunks
                    self.problems.append("a map's chunk was cancelled, though nobody closed")
        self.check_map(op, got)

    async def slow_map(self, op: Map) -> None:
        """A consumer slower than the workers holds the reading back, whatever the chunk size."""
        read = 0

        def items() -> Iterator[int]:
            nonlocal read
            for i in range(op.items):
                read += 1
                yield i

        used = 0
        try:
            async with self.pool.map(abs, items(), ordered=op.ordered) as results:
                async for _ in results:
                    used += 1
                    await anyio.sleep(0.0005)
                    if op.stop_after is not None and used >= op.stop_after:
                        break
        except LoaderError:
            return  # autoscaling could start no worker for its chunks
        except trio_pool.JobCancelled:
            if not self.closing:  # an interrupted close cancels the queued chunks
                self.problems.append("a slow map's chunk was cancelled, though nobody closed")
            return
        size = queue_size(self.program)
        bound = used + size * 64 + 2 * min(4096, size * 8)  # the window, and two chunks
        if read > bound:
            self.problems.append(f"map read {read} items to yield {used} (at most {bound})")

    def check_map(self, op: Map, got: list[Any]) -> None:
        def value(result: Any) -> Any:
            if not op.outcomes:
                return result
            if isinstance(result, outcome.Value):
                return result.value
            if isinstance(result.error, JobError):
                return "error"
            if isinstance(result.error, (trio_pool.JobCancelled, LoaderError)):
                return "gone"
            return repr(result.error)

        values = [value(result) for result in got]
        expected = ["error" if x == MAP_ERROR_ITEM else 2 * x for x in range(op.items)]
        if op.ordered:
            if any(v not in (e, "gone") for v, e in zip(values, expected, strict=False)):
                self.problems.append(f"ordered map yielded {values}, not a prefix of {expected}")
        else:
            plain = [v for v in values if v not in ("error", "gone")]
            errors = values.count("error")
            if len(set(plain)) != len(plain) or not set(plain) <= set(expected) or errors > 1:
                self.problems.append(f"unordered map yielded {values} for {op.items} items")
        if len(values) > op.items:
            self.problems.append(f"map yielded {len(values)} results for {op.items} items")

    async def broadcast(self, op: Broadcast) -> None:
        caller = anyio.get_current_task().id
        with anyio.move_on_after(op.deadline):
            try:
                results = await self.pool.broadcast(job_body, self.record, op.token, op.steps, True)
            except anyio.get_cancelled_exc_class():
                self.broadcasts.append(Broadcasted(op.token, caller, None))
                raise
            self.broadcasts.append(Broadcasted(op.token, caller, results))

    async def lease(self, op: Lease) -> None:
        self.lease_calls[op.token] = {call.token for call in op.calls}
        with anyio.move_on_after(op.deadline):
            try:
                async with self.pool.lease(reset=self.iface.reset if op.reset else None) as worker:
                    if op.reset:
                        with contextlib.suppress(Exception, trio_pool.JobCancelled):
                            await worker.call_method(self.iface.mark, op.token)
                    for call in op.calls:
                        await self.call(call, self.invoke(call, on=worker), worker=worker.id)
            except (LoaderError, trio.WouldBlock):
                pass  # autoscaling could start no worker for it; or max_wait shed it

    async def resize(self, op: Resize) -> None:
        pool = self.pool
        async with deadline(op.deadline, native=op.native):
            try:
                if op.which == "resize":
                    await pool.resize(op.count)
                elif op.which == "add_workers":
                    await pool.add_workers(op.count)
                elif op.which == "stop_workers":
                    await pool.stop_workers(op.count)
                else:
                    await pool.ensure(at_least=min(op.count, op.at_most), at_most=op.at_most)
            except (ValueError, LoaderError, HookError, BaseExceptionGroup) as exc:
                allowed = (ValueError, LoaderError, HookError, anyio.get_cancelled_exc_class())
                for leaf in leaves(exc):
                    if isinstance(leaf, (LoaderError, HookError)):
                        self.surfaced.extend(surfaced(leaf))
                    elif not isinstance(leaf, allowed):
                        self.problems.append(f"{op.which}() raised {leaf!r}")
                # A cancellation in the group is delivered again at the next checkpoint.

    async def notify(self, op: Notify) -> None:
        try:
            job = await self.pool.submit(job_body, self.record, op.token, (AwaitNotify(),))
        except trio.WouldBlock:
            return  # max_wait shed it: nothing was submitted
        tracked = self.track(op.token, job)
        with pytest.raises(LookupError):
            self.pool.notify(10**6, ("notify", op.token), op.token)
        await self.started_event(op.token, job).wait()
        if not job.done:
            assert job.worker_id is not None
            try:
                if op.cancel_instead:
                    raise LookupError
                self.pool.notify(job.worker_id, ("notify", op.token), op.token)
                tracked.notified = True
            except LookupError:  # its worker is stopping, and takes no notify: stop the job
                tracked.removed = job.cancel()
        tracked.waited.append(await job.wait())

    async def close(self, op: Close) -> None:
        """A normal close while the other tasks go on; they then find the pool closed."""
        self.closing = True
        interrupted = True
        try:
            async with deadline(op.deadline, native=op.native):
                await self.pool.aclose()
                interrupted = False
        except (LoaderError, HookError, BaseExceptionGroup) as exc:
            for leaf in leaves(exc):
                if isinstance(leaf, (LoaderError, HookError)):
                    self.surfaced.extend(surfaced(leaf))
                elif not isinstance(leaf, anyio.get_cancelled_exc_class()):
                    self.problems.append(f"aclose() raised {leaf!r}")
        # Cancelled while it finished the jobs, the close told the hooks why.
        self.close_interrupted |= interrupted

    async def foreign(self, op: Foreign) -> None:
        """From another thread (or a second loop there) a method refuses and changes nothing."""
        pool = self.pool
        job = self.tracked[-1].job if self.tracked else None
        if op.method.startswith("job.") and job is None:
            return

        async def lease() -> None:
            async with pool.lease():
                pass  # pragma: no cover (refused)

        calls: dict[str, Callable[[], Any]] = {
            "run": lambda: pool.run(int, "1"),
            "submit": lambda: pool.submit(int, "1"),
            "broadcast": lambda: pool.broadcast(int, "1"),
            "resize": lambda: pool.resize(1),
            "ensure": lambda: pool.ensure(at_least=1),
            "lease": lease,
            "aclose": pool.aclose,
            "job.wait": lambda: job.wait(),  # type: ignore[union-attr]
            "submit_nowait": lambda: pool.submit_nowait(int, "1"),
            "map": lambda: pool.map(int, [1]),
            "define": lambda: pool.define("foreign", int),
            "undefine": lambda: pool.undefine("foreign"),
            "notify": lambda: pool.notify(0, "foreign"),
            "job.cancel": lambda: job.cancel(),  # type: ignore[union-attr]
            "job.add_done_callback": lambda: job.add_done_callback(print),  # type: ignore[union-attr]
        }
        awaited = FOREIGN_METHODS[op.method]

        async def in_a_loop() -> None:
            result = calls[op.method]()
            if awaited:
                await result

        def there() -> BaseException | None:
            try:
                if op.where == "asyncio":
                    asyncio.run(in_a_loop())
                elif op.where == "trio" or awaited:
                    trio.run(in_a_loop)
                else:
                    calls[op.method]()
            except (RuntimeError, trio_pool.PoolClosedError) as exc:
                return exc
            return None

        refusal = await anyio.to_thread.run_sync(there)
        closed = isinstance(refusal, trio_pool.PoolClosedError)
        if refusal is None and not (self.closing and op.method == "aclose"):
            self.problems.append(f"{op.method}() from {op.where} was not refused")
        elif (closed and not self.closing) or (
            refusal is not None and not closed and "belongs to the event loop" not in str(refusal)
        ):
            self.problems.append(f"{op.method}() from {op.where} raised {refusal!r}")

    def check_statistics_shape(self) -> None:
        s = self.pool.statistics()
        ids = [w.id for w in s.worker_states]
        if (
            s.workers != len(ids)
            or ids != sorted(set(ids))
            or s.busy + s.idle > s.workers
            or s.completed + s.failed + s.cancelled > s.submitted
            or s.workers_stopped > s.workers_started
        ):
            self.problems.append(f"statistics() do not add up while running: {s}")


# --- the invariants -----------------------------------------------------------------


def outcome_problem(tag: Tag, result: outcome.Outcome[Any], record: Record) -> str | None:
    """Whether ``result`` can be the Outcome of job ``tag``, given what its thread did."""
    end = record.ends.get(tag)
    ran = tag in record.runs
    if isinstance(result, outcome.Value):
        value = result.value
        if not (isinstance(value, tuple) and value and value[0] == tag):
            return f"job {tag} got the value {value!r}, not its own"
        if end != "returned":
            return f"job {tag} got its value, but its run ended by {end}"
        return None
    error = result.error
    if isinstance(error, JobError):
        if error.args != (tag,) or end != "raised":
            return f"job {tag} got {error!r}, its run ended by {end}"
    elif isinstance(error, TimeoutError):  # its wait() for a notify
        if end != "raised":
            return f"job {tag} got {error!r}, its run ended by {end}"
    elif isinstance(error, trio_pool.JobCancelled):
        if end not in (None, "jobcancelled"):
            return f"job {tag} got JobCancelled, though its run ended by {end}"
    elif isinstance(error, (LoaderError, trio_pool.PoolClosedError, trio.WouldBlock)):
        if ran:
            return f"job {tag} got {error!r}, though it ran"
    else:
        return f"job {tag} got an unexpected error: " + "".join(
            traceback.format_exception(type(error), error, error.__traceback__)
        )
    return None


def broadcast_tag(token: int, result: outcome.Outcome[Any]) -> Tag:
    """The tag of the job of broadcast ``token`` that ``result`` says it came from."""
    said: Any = None
    if isinstance(result, outcome.Value):
        said = result.value[0] if isinstance(result.value, tuple) else None
    elif isinstance(result.error, JobError):
        said = result.error.args[0]
    if isinstance(said, tuple) and len(said) == 2 and said[0] == token:
        return said
    return (token, None)


def loop_calls_problem(tag: Tag, value: Any, caller: int) -> str | None:
    """A waited-for job's from_loop() calls ran in its caller's task."""
    tasks = {extra[1] for extra in value[2] if extra[0] == "loop"}
    if tasks - {caller}:
        return f"job {tag}'s from_loop() ran in task {tasks}, not in its caller's {caller}"
    return None


def check_callers(runner: Runner, *, results_survive_cancellation: bool) -> Iterator[str]:
    """One run per job, and one Outcome, its own, to its own caller."""
    record = runner.record
    yield from (f"job {tag} ran {n} times" for tag, n in record.runs.items() if n > 1)
    owned = {t.token for t in runner.tracked} | set(runner.seen)
    owned |= {b.token for b in runner.broadcasts}
    for tag in record.runs:
        if (tag[0] if isinstance(tag, tuple) else tag) not in owned:
            yield f"job {tag} ran, but its submitting call returned no job"
    strict = results_survive_cancellation and not runner.program.abandon
    for token, seen in runner.seen.items():
        if seen.result is None:
            # The old rule: a caller cancelled while its job runs raises its
            # cancellation after the job; the new rule: it gets the job's result
            # unless the job never ran, ended by JobCancelled, or was abandoned
            # (abandon_on_cancel). A native Task.cancel() makes it raise in both.
            end = record.ends.get(token)
            if strict and not seen.native and end not in (None, "jobcancelled"):
                yield f"the caller of job {token} raised its cancellation; the job {end}"
            continue
        problem = outcome_problem(token, seen.result, record)
        if problem is None and isinstance(seen.result, outcome.Value):
            value = seen.result.value
            problem = loop_calls_problem(token, value, seen.caller)
            if seen.worker is not None and value[1] != seen.worker:
                problem = f"job {token} ran on worker {value[1]}, not on its lease's {seen.worker}"
        if problem is not None:
            yield problem


def check_broadcasts(runner: Runner) -> Iterator[str]:
    """Each Outcome is its own job's; in worker order; from_loop() in the broadcaster's task."""
    for b in runner.broadcasts:
        for result in b.result or ():
            tag = broadcast_tag(b.token, result)
            yield outcome_problem(tag, result, runner.record) or ""
            if isinstance(result, outcome.Value):
                yield loop_calls_problem(tag, result.value, b.caller) or ""
        workers = [r.value[1] for r in b.result or () if isinstance(r, outcome.Value)]
        if workers != sorted(set(workers)):
            yield f"broadcast {b.token}'s results are not in worker order: {workers}"


def check_submitted(runner: Runner) -> Iterator[str]:
    """Submitted jobs are done, with one Outcome: job.outcome, wait()'s and each callback's."""
    for t in runner.tracked:
        result = t.job.outcome
        if result is None:
            yield f"job {t.token} is not done after the pool's exit"
            continue
        yield outcome_problem(t.token, result, runner.record) or ""
        if len(t.callbacks) != 1:
            yield f"job {t.token}'s done-callback ran {len(t.callbacks)} times"
        if any(r is not result or not in_loop for r, in_loop in t.callbacks):
            yield f"job {t.token}'s done-callback got another Outcome, or ran outside the loop"
        if any(r is not result for r in t.waited):
            yield f"job {t.token}: wait() returned another object than job.outcome"
        if t.removed and (t.token in runner.record.runs or not is_job_cancelled(result)):
            yield f"job {t.token}: cancel() said it was removed, yet it ran or got {result}"
        if t.notified and not is_job_cancelled(result):
            notified = (("notified", (t.token,)),)
            if not isinstance(result, outcome.Value) or result.value[2] != notified:
                yield f"job {t.token} was notified, but its wait() ended with {result}"


def check_hooks(runner: Runner) -> Iterator[str]:
    """One exit hook per loaded interface, in its own thread; none for a failed loader."""
    record = runner.record
    for worker, thread in record.loads.items():
        exits = record.exits.get(worker, [])
        if len(exits) != 1:
            yield f"worker {worker}'s exit hook ran {len(exits)} times"
        elif exits[0][0] != thread:
            yield f"worker {worker}'s exit hook ran in another thread than its loader"
    for worker in record.exits.keys() - record.loads.keys():
        yield f"worker {worker}'s exit hook ran, but its interface never loaded"
    for worker, exits in record.exits.items():
        for _, (exc_type, exc, tb) in exits:
            if exc is None and (exc_type, tb) != (None, None):
                yield f"worker {worker}'s hook got {exc_type, exc, tb}"
            elif exc is not None and (
                exc_type is not type(exc) or not isinstance(tb, TracebackType)
            ):
                yield f"worker {worker}'s hook got a mismatched {exc_type, exc, tb}"
            if exc is not None and runner.exit_error is None and not runner.close_interrupted:
                yield f"worker {worker}'s hook got {exc!r}, though the block exited normally"


def check_errors(runner: Runner) -> Iterator[str]:
    """Loader and hook errors are raised once, by the call that started or stopped the
    worker or at the block's exit; the block raises nothing else than what it should."""
    surfaced = runner.surfaced
    failed = [("LoaderError", w) for w in runner.record.load_failed]
    failed += [("HookError", w) for w in runner.program.hook_fail & runner.record.exits.keys()]
    for error in failed:
        if surfaced.count(error) != 1:
            yield f"{error[0]}({error[1]}) was raised {surfaced.count(error)} times"
    allowed = (TaskError, LoaderError, HookError, anyio.get_cancelled_exc_class())
    exit_leaves = list(leaves(runner.exit_error)) if runner.exit_error else []
    for leaf in exit_leaves:
        if not isinstance(leaf, allowed):
            yield "the block raised " + "".join(
                traceback.format_exception(type(leaf), leaf, leaf.__traceback__)
            )
    if runner.task_errors and not any(isinstance(leaf, TaskError) for leaf in exit_leaves):
        yield f"a task raised TaskError, but the block raised {runner.exit_error!r}"


class Watcher(trio_pool.Instrument):
    """Checks what a pool tells its instruments; the problems found, in ``problems``."""

    def __init__(self) -> None:
        self.loop_thread = threading.get_ident()
        self.problems: list[str] = []
        # By id; the jobs are kept, so that no id is reused by another job.
        self.jobs: list[trio_pool.Job[Any]] = []
        self.submitted: set[int] = set()
        self.started: set[int] = set()
        self.finished: set[int] = set()
        self.workers: dict[int, str] = {}  # worker id -> "started", or its stop reason
        self.renewed = 0

    def _in_loop(self, hook: str) -> None:
        if threading.get_ident() != self.loop_thread:
            self.problems.append(f"instrument: {hook} was called outside the loop's thread")

    def job_submitted(self, job: trio_pool.Job[Any]) -> None:
        self._in_loop("job_submitted")
        self.jobs.append(job)
        if id(job) in self.submitted or job.submitted_at is None:
            self.problems.append(f"instrument: job_submitted twice, or with no time: {job!r}")
        self.submitted.add(id(job))

    def job_started(self, job: trio_pool.Job[Any]) -> None:
        self._in_loop("job_started")
        self.jobs.append(job)
        if id(job) in self.started or id(job) in self.finished or job.started_at is None:
            self.problems.append(f"instrument: job_started twice, late or with no time: {job!r}")
        self.started.add(id(job))

    def job_finished(self, job: trio_pool.Job[Any]) -> None:
        self._in_loop("job_finished")
        self.jobs.append(job)
        if id(job) in self.finished or job.outcome is None or job.finished_at is None:
            self.problems.append(f"instrument: job_finished twice, or unfinished: {job!r}")
        if (job.started_at is None) == (id(job) in self.started):
            self.problems.append(f"instrument: job_started disagrees with started_at: {job!r}")
        self.finished.add(id(job))

    def worker_started(self, worker: trio_pool.WorkerStatistics) -> None:
        self._in_loop("worker_started")
        if worker.id in self.workers:
            self.problems.append(f"instrument: worker {worker.id} started twice")
        self.workers[worker.id] = "started"

    def worker_stopped(self, worker: trio_pool.WorkerStatistics, reason: str) -> None:
        self._in_loop("worker_stopped")
        if self.workers.get(worker.id) != "started" or reason not in ("stopped", "renewed"):
            self.problems.append(f"instrument: worker {worker.id} stopped as {reason!r}")
        self.workers[worker.id] = reason
        self.renewed += reason == "renewed"

    def check(self, pool: trio_pool.Pool[Any]) -> Iterator[str]:
        """After the exit: every job told finished once, every worker stopped."""
        yield from self.problems
        if self.submitted - self.finished:
            yield f"instrument: {len(self.submitted - self.finished)} jobs never finished"
        if "started" in self.workers.values():
            yield "instrument: a worker that started was never told stopped"
        if self.renewed != pool.statistics().workers_renewed:
            yield f"instrument: {self.renewed} renewals told, {pool.statistics()}"


def check_leftovers(runner: Runner) -> Iterator[str]:
    """statistics() add up after the exit, and no worker thread is left."""
    s = runner.pool.statistics()
    if s.submitted != s.completed + s.failed + s.cancelled:
        yield f"statistics: submitted != completed + failed + cancelled: {s}"
    if (s.workers, s.queued, s.busy, s.workers_started) != (0, 0, 0, s.workers_stopped):
        yield f"statistics: workers or jobs left after the exit: {s}"
    if s.hook_errors != runner.record.hook_errors:
        yield f"statistics count {s.hook_errors} hook errors, {runner.record.hook_errors} raised"
    prefix = f"{runner.pool.name}-worker-"
    left = [t.name for t in threading.enumerate() if t.name.startswith(prefix)]
    if left:
        yield f"threads left running: {left}"


def check(runner: Runner, *, results_survive_cancellation: bool) -> list[str]:
    """Every invariant, once the pool's block has exited: the problems found."""
    problems = [
        *runner.problems,
        *check_callers(runner, results_survive_cancellation=results_survive_cancellation),
        *check_broadcasts(runner),
        *check_submitted(runner),
        *check_hooks(runner),
        *check_resets(runner),
        *check_errors(runner),
        *check_leftovers(runner),
        *(runner.watcher.check(runner.pool) if runner.watcher else ()),
    ]
    return [p for p in problems if p]


def check_resets(runner: Runner) -> Iterator[str]:
    """No job but a lease's own (and broadcasts) finds the lease's mark; each reset runs once."""
    record = runner.record
    for tag, lease in record.dirty_seen.items():
        token = tag[0] if isinstance(tag, tuple) else tag
        if not isinstance(tag, tuple) and token not in runner.lease_calls.get(lease, ()):
            yield f"job {tag} ran on a worker still marked by lease {lease}: its reset had not run"
    for lease, n in record.resets.items():
        if n != 1:
            yield f"lease {lease}'s mark was reset {n} times"
    # A normal stop (its hook told no exception): every lease has ended, its reset has
    # run. A stop by an error or a cancellation (of the block, or of aclose() while it
    # finished the jobs) runs the hook instead of a reset still queued.
    for worker, lease in record.exit_dirty.items():
        normal = all(exc_info == (None, None, None) for _, exc_info in record.exits[worker])
        if lease is not None and normal:
            yield f"worker {worker}'s hook found lease {lease}'s mark: its reset never ran"


def queue_size(program: Program) -> int:
    """The pool's queue_size: given, or its default."""
    options = program.options
    if "queue_size" in options:
        return int(options["queue_size"])
    if "max_workers" in options:
        return 4 * int(options["max_workers"])
    return max(64, 4 * int(options["workers"]))


@contextlib.asynccontextmanager
async def deadline(seconds: float, *, native: bool) -> AsyncIterator[None]:
    """``anyio.move_on_after(seconds)``, or, ``native``, ``asyncio.timeout()`` (3.11+)."""
    if native and sys.version_info >= (3, 11):
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(None if seconds == math.inf else seconds):
                yield
    else:
        with anyio.move_on_after(seconds):
            yield


def is_job_cancelled(result: outcome.Outcome[Any]) -> bool:
    return isinstance(result, outcome.Error) and isinstance(result.error, trio_pool.JobCancelled)


# --- the test --------------------------------------------------------------------------


async def cancelled_caller_gets_result() -> bool:
    """Which cancellation rule the pool follows (SPEC's cancellation paragraph).

    True if a caller cancelled by a cancel scope while its job runs gets the
    job's result (the new rule), False if it raises its cancellation (the old).
    """
    entered, release = threading.Event(), threading.Event()
    got: list[str] = []

    def job() -> str:
        entered.set()
        assert release.wait(TIMEOUT)
        return "value"

    with anyio.fail_after(HANG_LIMIT):
        async with trio_pool.Pool(workers=1, name="stress-probe") as pool:

            async def caller() -> None:
                got.append(await pool.run(job))

            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(caller)
                    await wait_in_thread(entered)
                    scope.cancel()
                    release.set()
    return got == ["value"]


@contextlib.contextmanager
def said_if_stuck(program: Program) -> Iterator[None]:
    """Name the seed if the program outlives its fail_after: a thread that never ends
    keeps the pool's exit waiting (then pytest-timeout ends the test)."""
    timer = threading.Timer(
        HANG_LIMIT + 10,
        lambda: print(f"\n{program.where()}: stuck, a thread never ends", file=sys.__stderr__),
    )
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@pytest.mark.timeout(60 + len(seeds()))  # a last resort: see said_if_stuck()
async def test_random_programs(backend: str) -> None:
    """Seeded random programs: after each, every invariant holds (see :func:`check`)."""
    new_rule = await cancelled_caller_gets_result()
    for seed in seeds():
        program = generate(seed, backend)
        runner = Runner(program)
        try:
            with said_if_stuck(program), anyio.fail_after(HANG_LIMIT) as guard:
                await runner.run(guard)
        except TimeoutError:
            pytest.fail(f"{program.where()}: it hung; {runner.pool.statistics()}")
        except (Exception, BaseExceptionGroup) as exc:
            pytest.fail(
                f"{program.where()}: it crashed: " + "".join(traceback.format_exception(exc))
            )
        problems = check(runner, results_survive_cancellation=new_rule)
        assert not problems, f"{program.where()}:\n" + "\n".join(problems)
