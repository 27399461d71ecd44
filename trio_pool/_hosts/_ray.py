"""RayHost: each worker is a task of the event loop driving one Ray actor.

The pool's side (:class:`InRay`) runs in the loop: the worker's task submits
each call to its actor and awaits the reply there, woken by the reply's
``concurrent.futures.Future`` (Ray's completion callback posts to the loop),
with no thread of its own; trio and asyncio share it. The actor
(:class:`._actor.RayWorker`) carries the messages of the one far side.

The actor serves its calls one at a time, in the order they were sent; the
worker may have several out at once (``calls_in_flight``), so the actor
starts the next as soon as one ends. A second concurrency group,
``control``, takes ``cancel(n)`` while call ``n`` runs or waits: the running
job sees it in ``check_cancelled()``, a waiting one never starts.
(``ray.cancel`` is not used: it replaces the job's own Outcome with a
``TaskCancelledError``, so a job that finishes anyway loses its result, and
cancelling a call the actor has not begun yet leaves the actor's task queue
waiting 30 s for it.)

Ray is imported only when a pool with this host opens.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import importlib
import itertools
import logging
import pickle
from collections.abc import Callable
from typing import Any, final

import anyio
import outcome

from .._backend import Backend, Event, current_backend
from .._errors import BrokenWorkerError, killed_for_cancel
from .._in_worker import WorkerInfo
from ._actor import RayWorker, ray_call
from ._base import (
    ExcInfo,
    HostChoice,
    HostDied,
    HostFactory,
    LoadInterrupted,
    LoopHost,
    LoopJobView,
    Where,
)
from ._shared import CancelRelay, check_kill_on_cancel, check_max_memory, check_seconds, over_memory
from ._wire import decode_outcome, pack_call, pack_exc_info, pack_loader

#: Actors started for one worker before its load fails: an actor placed on a
#: node that is going away dies with it, and Ray may not know yet.
_LOAD_ATTEMPTS = 3

logger = logging.getLogger("trio_pool")

#: Actor options the pool sets itself (jobs are not idempotent: no retries).
_RESERVED = {
    "max_concurrency": "the actor runs one call at a time (see calls_in_flight)",
    "max_restarts": "a dead actor is replaced by the pool, never restarted",
    "max_task_retries": "jobs are not idempotent: none is run twice",
    "allow_out_of_order_execution": "an actor runs its calls in the order sent",
    "concurrency_groups": "the pool's actor class sets its own",
    "name": "actors are the pool's own, not named",
    "get_if_exists": "actors are the pool's own, never shared",
    "lifetime": "actors never outlive the pool",
}


@final
class RayHost(HostChoice):
    """Each worker's interface lives in a Ray actor of its own.

    ``Pool(Db, dsn, workers=16, host=trio_pool.RayHost(num_cpus=1,
    scheduling_strategy="SPREAD"))``: each worker is a task of the pool's
    event loop (the queue, leases, autoscaling and statistics are unchanged)
    that drives one actor in which the interface is built, used and closed,
    on whichever node of the cluster Ray places it.

    Ray must be installed (``python -m pip install '.[ray]'`` in a checkout
    of trio_pool, or Ray 2.60 or newer by itself) and initialised
    by the program (``ray.init(...)``) before the pool opens. The loader,
    job functions, arguments and results travel pickled (cloudpickle for
    functions); ``trio_pool`` must be importable on every node.

    Args:
        kill_on_cancel: Kill the actor of a running job whose caller is
            cancelled (``ray.kill``): its Outcome is :class:`JobCancelled`,
            its ``__exit__`` does not run, and the pool replaces the worker.
            By default a running job is asked to stop, as on threads.
        grace_period: Seconds an actor gets at the pool's exit to run its
            exit hook before it is killed; at an exit by an error, a
            cancellation or Ctrl-C, also the seconds a running job gets to
            notice ``check_cancelled()`` before its actor is killed.
        max_memory: Bytes of resident memory an actor's process may hold
            after a job (the actor reads its own, from ``/proc``): above
            that, the worker is renewed (its hook runs, and a new actor
            loads in its place). Default None: no limit.
        calls_in_flight: Calls each worker may have sent to its actor at
            once (default 1). The actor runs them one at a time, in turn:
            with 2 or more, the next is there as soon as one ends, which
            hides the round trip to the actor (more calls per second from
            many tasks), at a price: when an actor dies, every call it holds
            fails with :class:`BrokenWorkerError`, not only the one that
            killed it; a call waits behind those sent before it even if
            another worker comes free; and with ``max_memory``, a renewal
            comes after the calls already sent. A call whose caller is
            cancelled before the actor begins it never runs (its Outcome is
            :class:`JobCancelled`). Not with ``kill_on_cancel`` (a kill
            would end the calls behind); a pool with
            ``max_jobs_per_worker`` sends one at a time, so that the count
            is exact.
        actor_options: Given to the actor class's ``.options()``:
            ``num_cpus``, ``num_gpus``, ``resources``, ``memory``,
            ``scheduling_strategy``, ``runtime_env``, ... The pool sets
            ``max_concurrency=1``, ``max_restarts=0`` and
            ``max_task_retries=0`` itself.

    Raises:
        TypeError, ValueError: for a wrong argument (Ray checks the actor
            options when the pool opens).
    """

    __slots__ = (
        "actor_options",
        "calls_in_flight",
        "cancel_grace",
        "grace_period",
        "kill_on_cancel",
        "max_memory",
    )

    def __init__(
        self,
        *,
        kill_on_cancel: bool = False,
        cancel_grace: float = 0.0,
        grace_period: float = 5.0,
        max_memory: int | None = None,
        calls_in_flight: int = 1,
        **actor_options: Any,
    ) -> None:
        #: Seconds a job whose caller is cancelled may take to stop before it is killed.
        self.cancel_grace: float = check_kill_on_cancel(kill_on_cancel, cancel_grace)
        #: Calls each worker may have sent to its actor at once.
        self.calls_in_flight: int = _check_calls_in_flight(calls_in_flight, kill_on_cancel)
        for option, why in _RESERVED.items():
            if option in actor_options:
                raise ValueError(f"RayHost does not take {option}=: {why}")
        #: Whether a running job whose caller is cancelled is killed.
        self.kill_on_cancel: bool = kill_on_cancel
        #: Seconds an actor gets at exit to run its hook before it is killed.
        self.grace_period: float = check_seconds("grace_period", grace_period)
        #: The most resident memory, in bytes, an actor may hold after a job, or None.
        self.max_memory: int | None = check_max_memory(max_memory, here=False)
        #: What each actor is created with (``.options(**actor_options)``).
        self.actor_options: dict[str, Any] = dict(actor_options)

    def __repr__(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in self.actor_options.items())
        return (
            f"trio_pool.RayHost(kill_on_cancel={self.kill_on_cancel}, "
            f"cancel_grace={self.cancel_grace}, "
            f"grace_period={self.grace_period}, max_memory={self.max_memory}, "
            f"calls_in_flight={self.calls_in_flight}{options})"
        )

    def kill_grace(self) -> float | None:
        return self.grace_period

    def worker_hosts(self, loader: object, args: tuple[Any, ...]) -> HostFactory:
        try:
            ray = _ray()
        except ImportError as exc:
            raise RuntimeError(
                "RayHost needs Ray: python -m pip install '.[ray]' in a checkout of trio_pool "
                "(or pip install 'ray>=2.60')"
            ) from exc
        if not ray.is_initialized():
            raise RuntimeError(
                "RayHost needs a running Ray: call ray.init(...) before the pool opens "
                "(Ray wants the main thread for it, and the program's own settings)"
            )
        actor_class = _actor_class().options(
            max_concurrency=1, max_restarts=0, max_task_retries=0, **self.actor_options
        )
        return functools.partial(
            InRay,
            loader,
            args,
            actor_class=actor_class,
            kill_on_cancel=self.kill_on_cancel,
            cancel_grace=self.cancel_grace,
            grace_period=self.grace_period,
            max_memory=self.max_memory,
            calls_in_flight=self.calls_in_flight,
        )


def _check_calls_in_flight(calls_in_flight: object, kill_on_cancel: bool) -> int:
    if isinstance(calls_in_flight, bool) or not isinstance(calls_in_flight, int):
        raise TypeError(f"calls_in_flight must be an int, not {calls_in_flight!r}")
    if calls_in_flight < 1:
        raise ValueError(f"calls_in_flight must be at least 1, not {calls_in_flight}")
    if kill_on_cancel and calls_in_flight > 1:
        raise ValueError(
            "calls_in_flight must be 1 with kill_on_cancel=True: killing the actor of a "
            "cancelled job would end the calls queued behind it"
        )
    return calls_in_flight


def _ray() -> Any:
    """The ray module, imported now (only pools on this host need it; it is untyped here)."""
    return importlib.import_module("ray")


@functools.cache
def _actor_class() -> Any:
    return _ray().remote(concurrency_groups={"control": 1})(RayWorker)


class _Waiter:
    """A wait for one reply of the actor: what its task awaits, and what rings it."""

    __slots__ = ("wake",)

    def __init__(self) -> None:
        self.wake: Event | None = None

    def ring(self) -> None:
        if self.wake is not None:
            self.wake.set()


class _Call(_Waiter):
    """One job's call out to the actor: its number there, and its cancel relay."""

    __slots__ = ("number", "relay")

    def __init__(self, number: int, relay: CancelRelay) -> None:
        super().__init__()
        self.number = number
        self.relay = relay


class InRay(LoopHost):
    """Drives one actor from the worker's task (or tasks: calls in flight), on the event loop."""

    def __init__(
        self,
        loader: object,
        args: tuple[Any, ...],
        *,
        actor_class: Any,
        kill_on_cancel: bool,
        grace_period: float,
        cancel_grace: float = 0.0,
        max_memory: int | None = None,
        calls_in_flight: int = 1,
    ) -> None:
        self._ray = _ray()
        self._max_memory = max_memory
        self._loader = loader
        self._args = args
        self._actor_class = actor_class
        self._kill_on_cancel = kill_on_cancel
        self._cancel_grace = cancel_grace
        self._grace_period = grace_period
        self._calls_in_flight = calls_in_flight
        self._backend: Backend | None = None  # the loop's, once the load begins
        self._actor: Any = None
        self._calls = 0
        self._memory: int | None = None  # the actor's, after its last call (with max_memory)
        self._interrupted = False  # once set, a load stops (the pool is stopping)
        self._loading: anyio.CancelScope | None = None
        self._out: dict[int, _Call] = {}  # the calls sent, by number: interrupt() relays theirs
        self._killed_for_cancel = False
        self._operations: frozenset[str] = frozenset()
        self._name = "trio_pool worker"
        self._where = Where("actor")

    @property
    def operations(self) -> frozenset[str]:
        return self._operations

    @property
    def calls_in_flight(self) -> int:
        return self._calls_in_flight

    def where(self) -> Where:
        return self._where

    async def load(self, worker: WorkerInfo) -> None:
        self._name = worker.name
        self._backend = current_backend()
        loader = pack_loader(self._loader, self._args, "a Ray actor")
        reply: tuple[Any, ...] | None = None
        try:
            with anyio.CancelScope() as self._loading:  # interrupt() cancels it
                if self._interrupted:  # (the pool was stopping before this load began)
                    self._loading.cancel()
                reply = await self._start_actor(loader, worker)
        except BaseException:  # (asyncio's own cancellation, say): leave no actor behind
            self.kill()
            raise
        finally:
            self._loading = None
        if reply is None:
            await self._end(graceful=False)
            raise LoadInterrupted
        if reply[0] == "failed":
            await self._end(graceful=False)
            raise reply[1]
        self._operations, pid, actor_id, node_id = reply[1:]
        self._where = Where("actor", pid, actor_id, node_id)

    async def _start_actor(self, loader: bytes, worker: WorkerInfo) -> tuple[Any, ...]:
        """The load's reply, from the first actor that lives to give it."""
        for attempt in itertools.count(1):
            self._actor = self._actor_class.remote()
            try:
                ref = self._actor.load.remote(loader, worker.id, worker.name)
                reply: tuple[Any, ...] = pickle.loads(await self._reply(ref, _Waiter()))
            except HostDied as died:  # not the loader's error: the actor or its node
                if attempt == _LOAD_ATTEMPTS:
                    raise died.error from None
                logger.warning("%s, before its interface loaded; starting another", died.error)
            else:
                return reply
        raise AssertionError("unreachable")

    async def execute(
        self,
        fn: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        with_interface: bool,
        job: LoopJobView,
    ) -> outcome.Outcome[Any]:
        payload = pack_call(fn, args, kwargs, with_interface, "a Ray actor")
        if isinstance(payload, outcome.Error):
            return payload
        self._calls += 1
        call = _Call(self._calls, CancelRelay(self._kill_on_cancel, self._cancel_grace))
        cancelled = call.relay.start(job)
        measure = self._max_memory is not None
        method = self._actor.call_and_measure if measure else self._actor.call
        ref = method.remote(ray_call(call.number, payload, cancelled))
        self._out[call.number] = call
        try:
            self._relay_now(call)  # (killed at once, if it went cancelled with kill_on_cancel)
            reply = await self._reply(ref, call)
        finally:
            del self._out[call.number]
        if measure:
            reply, self._memory = reply
        return decode_outcome(reply, "a Ray actor")

    def interrupt(self) -> None:
        """Stop a load (an actor may wait long for room), or relay the jobs' cancel requests now."""
        self._interrupted = True
        if self._loading is not None:
            self._loading.cancel()
        for call in list(self._out.values()):
            self._relay_now(call)

    def kill(self) -> bool:
        actor = self._actor
        if actor is not None:
            with contextlib.suppress(Exception):  # gone meanwhile
                self._ray.kill(actor, no_restart=True)
        return True

    def renewal_due(self) -> str | None:
        """Over ``max_memory`` after a job (the actor said what it holds with its reply)."""
        reason = over_memory(self._memory, self._max_memory)
        return None if reason is None else reason.replace("its process", "its actor")

    async def close(self, exc_info: ExcInfo) -> BaseException | None:
        """Run the hook in the actor, give it ``grace_period`` seconds, then end the actor."""
        if self._actor is None:
            return None
        ref = self._actor.close.remote(pack_exc_info(exc_info))
        error: BaseException | None = None
        with anyio.move_on_after(self._grace_period) as waiting:
            try:
                error = pickle.loads(await self._reply(ref, _Waiter()))[1]
            except HostDied as died:
                error = died.error
        if waiting.cancelled_caught:
            error = BrokenWorkerError(
                f"worker {self._name}: its exit hook did not finish within grace_period="
                f"{self._grace_period} s; its actor was killed"
            )
        await self._end(graceful=not waiting.cancelled_caught)
        return error

    async def _reply(self, ref: Any, waiter: _Waiter) -> Any:
        """What ``ref`` brings; meanwhile, if it is a job's call, its cancel request is relayed.

        Raises:
            HostDied: the actor died, its node was lost, or it was killed for
                ``kill_on_cancel`` (even if the reply had come: the worker
                must not go on with a killed actor).
        """
        future = await self._done(ref, waiter)
        if self._killed_for_cancel:
            await self._end(graceful=False)
            raise HostDied(killed_for_cancel(self._name, "actor"))
        try:
            return future.result()
        except self._ray.exceptions.RayError as exc:
            actor = self._where
            where = "" if actor.actor_id is None else f" {actor.actor_id} on node {actor.node_id}"
            error = BrokenWorkerError(
                f"worker {self._name}'s Ray actor{where} is gone: "
                f"{type(exc).__name__}: {_first_line(exc)}"
            )
            await self._end(graceful=False)
            raise HostDied(error) from exc

    async def _done(self, ref: Any, waiter: _Waiter) -> concurrent.futures.Future[Any]:
        """``ref``'s future once it is done, or once its actor is killed for ``kill_on_cancel``."""
        backend = self._backend
        assert backend is not None
        future: concurrent.futures.Future[Any] = ref.future()
        future.add_done_callback(lambda _: backend.post(waiter.ring))
        while not (future.done() or self._killed_for_cancel):
            waiter.wake = wake = backend.event()
            if isinstance(waiter, _Call) and (left := waiter.relay.seconds_left()) is not None:
                with anyio.move_on_after(left):  # a kill is due (cancel_grace): until then
                    await wake.wait()
                self._relay_now(waiter)
            else:
                await wake.wait()
        waiter.wake = None
        return future

    def _relay_now(self, call: _Call) -> None:
        """Pass ``call``'s cancel request on: ask the actor, or kill it (loop thread)."""
        if self._actor is None:  # (it has ended: the call fails with it)
            return
        step = call.relay.step()
        if step == "ask":
            self._actor.cancel.options(concurrency_group="control").remote(call.number)
            if call.relay.counts_down:  # the task waits until the kill is due, from now
                call.ring()
        elif step == "kill":
            self._killed_for_cancel = True
            self.kill()
            for out in self._out.values():
                out.ring()

    async def _end(self, *, graceful: bool) -> None:
        """The actor is done with, or has to go: make sure it is gone."""
        actor = self._actor
        if actor is None:
            return
        try:
            if graceful:  # it exits on its own once its hook has run (kill() still reaches it)
                with anyio.move_on_after(self._grace_period):
                    await self._done(actor.__ray_terminate__.remote(), _Waiter())
        finally:  # (even if asyncio's own cancellation ends the wait)
            self._actor = None
            self._ray.kill(actor, no_restart=True)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else ""
