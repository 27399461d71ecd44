"""RayHost: each worker thread drives one Ray actor holding its interface.

The pool side (:class:`InRay`) runs in the worker's thread and waits on one
``ObjectRef`` at a time, so trio and asyncio share it. The actor
(:class:`RayWorker`) carries the messages of the one far side
(:class:`._far.FarSide`), as a child process does; what crosses is pickled as
:mod:`._wire` says, inside ``bytes``, so Ray never wraps an Outcome's error
in a ``RayTaskError`` and a call that cannot travel fails alone.

The actor serves its calls one at a time (``max_concurrency=1``, always in
the same thread of the actor, which keeps the interface's thread-bound
state), and a second concurrency group, ``control``, takes ``cancel(n)``
while call ``n`` runs: the running job sees it in ``check_cancelled()``.
(``ray.cancel`` is not used: it replaces the job's own Outcome with a
``TaskCancelledError``, so a job that finishes anyway loses its result, and
cancelling a call the actor has not begun yet leaves the actor's task queue
waiting 30 s for it.)

Ray is imported only when a pool with this host opens.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import pickle
from collections.abc import Callable, Hashable
from typing import Any, final

import outcome

from .._errors import BrokenWorkerError, killed_for_cancel
from .._in_worker import JobView, WorkerInfo
from ._base import ExcInfo, HostChoice, HostDied, HostFactory, LoadInterrupted, Where
from ._far import FarSide
from ._shared import (
    CancelRelay,
    check_kill_on_cancel,
    check_max_memory,
    check_seconds,
    over_memory,
    resident_memory,
)
from ._wire import (
    decode_outcome,
    dumps,
    pack_call,
    pack_exc_info,
    pack_loader,
)

_POLL = 0.05  # seconds between looks at the job's cancel request while it runs
#: Actors started for one worker before its load fails: an actor placed on a
#: node that is going away dies with it, and Ray may not know yet.
_LOAD_ATTEMPTS = 3
_MEMORY_TIMEOUT = 10.0  # seconds an actor gets to say how much memory it holds

logger = logging.getLogger("trio_pool")

#: Actor options the pool sets itself (jobs are not idempotent: no retries).
_RESERVED = {
    "max_concurrency": "the actor runs one call at a time",
    "max_restarts": "a dead actor is replaced by the pool, never restarted",
    "max_task_retries": "jobs are not idempotent: none is run twice",
    "concurrency_groups": "the pool's actor class sets its own",
    "name": "actors are the pool's own, not named",
    "get_if_exists": "actors are the pool's own, never shared",
    "lifetime": "actors never outlive the pool",
}


@final
class RayHost(HostChoice):
    """Each worker's interface lives in a Ray actor of its own.

    ``Pool(Db, dsn, workers=16, host=trio_pool.RayHost(num_cpus=1,
    scheduling_strategy="SPREAD"))``: each worker is still a thread of the
    pool (the queue, leases, autoscaling and statistics are unchanged), and
    that thread drives one actor in which the interface is built, used and
    closed, on whichever node of the cluster Ray places it.

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
            loads in its place). Default None: no limit, and no extra call.
        actor_options: Given to the actor class's ``.options()``:
            ``num_cpus``, ``num_gpus``, ``resources``, ``memory``,
            ``scheduling_strategy``, ``runtime_env``, ... The pool sets
            ``max_concurrency=1``, ``max_restarts=0`` and
            ``max_task_retries=0`` itself.

    Raises:
        TypeError, ValueError: for a wrong argument (Ray checks the actor
            options when the pool opens).
    """

    __slots__ = ("actor_options", "cancel_grace", "grace_period", "kill_on_cancel", "max_memory")

    def __init__(
        self,
        *,
        kill_on_cancel: bool = False,
        cancel_grace: float = 0.0,
        grace_period: float = 5.0,
        max_memory: int | None = None,
        **actor_options: Any,
    ) -> None:
        #: Seconds a job whose caller is cancelled may take to stop before it is killed.
        self.cancel_grace: float = check_kill_on_cancel(kill_on_cancel, cancel_grace)
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
            f"grace_period={self.grace_period}, max_memory={self.max_memory}{options})"
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
        )


def _ray() -> Any:
    """The ray module, imported now (only pools on this host need it; it is untyped here)."""
    return importlib.import_module("ray")


@functools.cache
def _actor_class() -> Any:
    return _ray().remote(concurrency_groups={"control": 1})(RayWorker)


# --- the far side: the actor --------------------------------------------------


class RayWorker:
    """The actor: one interface, its calls in turn, and ``cancel`` beside them."""

    def __init__(self) -> None:
        self._far = FarSide()
        self.cancelled_through = 0  # the number of the last call asked to stop

    def load(self, loader: bytes, worker_id: int, name: str) -> bytes:
        reply = self._far.load(loader, worker_id, name)
        if reply[0] == "loaded":  # and where: the pool's statistics name it
            context = _ray().get_runtime_context()
            reply = (*reply, os.getpid(), context.get_actor_id(), context.get_node_id())
        return dumps(reply)

    def call(self, number: int, payload: bytes, cancelled: bool) -> bytes:
        return self._far.call(payload, _ActorView(self, number, cancelled=cancelled))

    def cancel(self, number: int) -> None:
        self.cancelled_through = max(self.cancelled_through, number)

    def memory(self) -> int | None:
        """The resident memory of the actor's process, in bytes (None if /proc cannot tell)."""
        return resident_memory(os.getpid())

    def close(self, exc_info: bytes) -> bytes:
        return dumps(self._far.close(exc_info))


class _ActorView:
    """The job's view in the actor."""

    def __init__(self, actor: RayWorker, number: int, *, cancelled: bool) -> None:
        self._actor = actor
        self._number = number
        self._cancelled = cancelled

    def cancel_requested(self) -> bool:
        return self._cancelled or self._actor.cancelled_through >= self._number

    def wait_for(self, key: Hashable, timeout: float | None) -> tuple[Any, ...]:
        raise RuntimeError(
            "trio_pool.wait() does not work on a RayHost: the actor cannot block on the "
            "pool's process; pass what the job needs as arguments, or use threads or processes"
        )

    def call_loop(
        self, async_fn: Callable[..., Any], args: tuple[Any, ...]
    ) -> outcome.Outcome[Any]:
        raise RuntimeError(
            "trio_pool.from_loop() does not work on a RayHost: the actor has no way back "
            "to the pool's event loop; return what the loop should do, or use threads or processes"
        )


# --- the pool side: in the worker's thread ---------------------------------------


class InRay:
    """Drives one actor from the worker's thread."""

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
    ) -> None:
        self._ray = _ray()
        self._max_memory = max_memory
        self._loader = loader
        self._args = args
        self._actor_class = actor_class
        self._relay = CancelRelay(kill_on_cancel, cancel_grace)
        self._grace_period = grace_period
        self._actor: Any = None
        self._calls = 0
        self._loading = False
        self._interrupted = False  # written by any thread: only a load heeds it
        self._operations: frozenset[str] = frozenset()
        self._name = "trio_pool worker"
        self._where = Where("actor")

    @property
    def operations(self) -> frozenset[str]:
        return self._operations

    def where(self) -> Where:
        return self._where

    def load(self, worker: WorkerInfo) -> None:
        self._name = worker.name
        loader = pack_loader(self._loader, self._args, "a Ray actor")
        self._loading = True  # interrupt() from now on stops it (the pool: before it began)
        try:
            reply = self._start_actor(loader, worker)
        finally:
            self._loading = False
        if reply[0] == "failed":
            self._end(graceful=False)
            raise reply[1]
        self._operations, pid, actor_id, node_id = reply[1:]
        self._where = Where("actor", pid, actor_id, node_id)

    def _start_actor(self, loader: bytes, worker: WorkerInfo) -> tuple[Any, ...]:
        for attempt in range(1, _LOAD_ATTEMPTS + 1):
            self._actor = self._actor_class.remote()
            try:
                ref = self._actor.load.remote(loader, worker.id, worker.name)
                reply: tuple[Any, ...] = pickle.loads(self._get(ref, None))
            except HostDied as died:  # not the loader's error: the actor or its node
                if attempt == _LOAD_ATTEMPTS:
                    raise died.error from None
                logger.warning("%s, before its interface loaded; starting another", died.error)
            else:
                return reply
        raise AssertionError("unreachable")

    def execute(
        self,
        fn: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        with_interface: bool,
        job: JobView,
    ) -> outcome.Outcome[Any]:
        payload = pack_call(fn, args, kwargs, with_interface, "a Ray actor")
        if isinstance(payload, outcome.Error):
            return payload
        self._calls += 1
        ref = self._actor.call.remote(self._calls, payload, self._relay.start(job))
        return decode_outcome(self._get(ref, job), "a Ray actor")

    def interrupt(self) -> None:
        """Stop a load (an actor may wait long for room on the cluster): kill its actor.

        A running job's cancel request the worker thread relays itself.
        """
        self._interrupted = True

    def kill(self) -> bool:
        actor = self._actor
        if actor is not None:
            with contextlib.suppress(Exception):  # gone meanwhile
                self._ray.kill(actor, no_restart=True)
        return True

    def renewal_due(self) -> str | None:
        """Over ``max_memory`` after a job: the actor says what it holds (one more call)."""
        if self._max_memory is None or self._actor is None:
            return None
        try:
            used = self._ray.get(self._actor.memory.remote(), timeout=_MEMORY_TIMEOUT)
        except Exception:  # it died, or is slow to say: the next job finds out
            return None
        reason = over_memory(used, self._max_memory)
        return None if reason is None else reason.replace("its process", "its actor")

    def close(self, exc_info: ExcInfo) -> BaseException | None:
        """Run the hook in the actor, give it ``grace_period`` seconds, then end the actor."""
        if self._actor is None:
            return None
        ref = self._actor.close.remote(pack_exc_info(exc_info))
        ready, _ = self._ray.wait([ref], timeout=self._grace_period)
        error: BaseException | None
        if ready:
            try:
                error = pickle.loads(self._get(ref, None))[1]
            except HostDied as died:
                error = died.error
        else:
            error = BrokenWorkerError(
                f"worker {self._name}: its exit hook did not finish within grace_period="
                f"{self._grace_period} s; its actor was killed"
            )
        self._end(graceful=ready)
        return error

    def _get(self, ref: Any, job: JobView | None) -> bytes:
        """The pickled reply ``ref`` brings; meanwhile relay ``job``'s cancel request.

        Raises:
            HostDied: the actor died, its node was lost, or it was killed for
                ``kill_on_cancel``.
        """
        ray = self._ray
        try:
            while True:
                try:
                    reply: bytes = ray.get(ref, timeout=_POLL)
                except ray.exceptions.GetTimeoutError:
                    pass
                else:
                    return reply
                if self._loading and self._interrupted:
                    self._end(graceful=False)
                    raise LoadInterrupted
                step = None if job is None else self._relay.step()
                if step == "ask":
                    cancel = self._actor.cancel.options(concurrency_group="control")
                    cancel.remote(self._calls)
                elif step == "kill":
                    # Even if the reply is on its way: the worker must not go
                    # on with a killed actor.
                    self._end(graceful=False)
                    raise HostDied(killed_for_cancel(self._name, "actor"))
        except ray.exceptions.RayError as exc:
            actor = self._where
            where = "" if actor.actor_id is None else f" {actor.actor_id} on node {actor.node_id}"
            error = BrokenWorkerError(
                f"worker {self._name}'s Ray actor{where} is gone: "
                f"{type(exc).__name__}: {_first_line(exc)}"
            )
            self._end(graceful=False)
            raise HostDied(error) from exc

    def _end(self, *, graceful: bool) -> None:
        """The actor is done with, or has to go: make sure it is gone."""
        actor, self._actor = self._actor, None
        if actor is None:
            return
        if graceful:  # it exits on its own once its hook has run
            self._ray.wait([actor.__ray_terminate__.remote()], timeout=self._grace_period)
        self._ray.kill(actor, no_restart=True)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else ""
