"""The handoff between the loop and the worker threads, tested without an event loop.

Worker threads here are plain threads calling ``take``/``finish`` as a
worker does; what the handoff posts to the loop is run by the test.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Coroutine
from typing import Any

import outcome
import pytest
from loopless import FakeEvent, Loop

import trio_pool
from trio_pool._backend import LoopBell
from trio_pool._handoff import Bell, Phase, Place, Slot
from trio_pool._job import JobRecord

from helpers import TIMEOUT


def serving_slot(loop: Loop, worker_id: int = 0) -> Slot:
    slot = loop.handoff.new_slot(worker_id)
    loop.handoff.loaded(slot, ok=True)
    return slot


class Taker:
    """A thread that takes one job from the handoff and reports which."""

    def __init__(self, loop: Loop, slot: Slot) -> None:
        self.job: JobRecord | None = None
        self.asleep = threading.Event()
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._take, args=(loop, slot))
        self._thread.start()

    def _take(self, loop: Loop, slot: Slot) -> None:
        self.job = loop.handoff.take(slot)
        self.done.set()

    def join(self) -> None:
        self._thread.join(TIMEOUT)
        assert not self._thread.is_alive()


def wait_idle(loop: Loop, count: int) -> None:
    """Wait until ``count`` workers sleep in take() (a handshake on the handoff's own list)."""
    for _ in range(1000):
        with loop.handoff.lock:
            if len(loop.handoff._idle) == count:
                return
        threading.Event().wait(0.005)
    raise AssertionError(f"{count} workers never went idle")


def test_a_burst_wakes_every_idle_worker_through_the_chain() -> None:
    loop = Loop()
    slots = [serving_slot(loop, i) for i in range(3)]
    takers = [Taker(loop, slot) for slot in slots]
    wait_idle(loop, 3)
    jobs = [loop.job() for _ in range(3)]
    for job in jobs:
        loop.handoff.put(job)  # the loop wakes one worker; each woken one wakes the next
    for taker in takers:
        assert taker.done.wait(TIMEOUT)
        taker.join()
    assert sorted(id(t.job) for t in takers) == sorted(id(j) for j in jobs)
    assert {job.worker_id for job in jobs} == {0, 1, 2}
    assert all(job.place is Place.RUNNING for job in jobs)


def test_outcomes_come_back_in_one_wake_up_per_batch() -> None:
    loop = Loop()
    slot = serving_slot(loop)
    for _ in range(3):
        loop.handoff.put(loop.job())
    for _ in range(3):
        assert loop.handoff.take(slot) is not None
        loop.handoff.finish(slot, outcome.Value(1))
    assert loop.run_posted() == 1  # one flush for three outcomes
    assert loop.results() == [outcome.Value(1)] * 3
    assert slot.jobs_done == 3


def test_take_hands_back_the_last_outcome_and_wakes_the_loop_before_it_sleeps() -> None:
    loop = Loop()
    slot = serving_slot(loop)
    loop.handoff.put(loop.job())
    assert loop.handoff.take(slot) is not None
    done = [outcome.Value(7)]
    asleep = threading.Thread(target=loop.handoff.take, args=(slot, done))
    asleep.start()
    wait_idle(loop, 1)  # it sleeps for want of a job...
    assert done == []  # ...holding no outcome: handed back, the worker's list emptied
    assert loop.run_posted() == 1  # and the loop was woken for it before the sleep
    assert loop.results() == [outcome.Value(7)]
    loop.handoff.stop([slot])
    asleep.join(TIMEOUT)
    assert not asleep.is_alive()


def test_a_bell_keeps_one_ring_until_the_wait_and_lets_go_of_the_lock_meanwhile() -> None:
    lock, bell = threading.Lock(), Bell()
    bell.ring()
    bell.ring()  # rings before the wait are one ring, never an error
    with lock:
        assert bell.wait(lock, timeout=TIMEOUT)  # rung already: returns at once...
        assert lock.locked()  # ...with the lock held again
        assert not bell.wait(lock, timeout=0)  # not rung since: the timeout ends it
        woken = threading.Event()

        def ring_under_the_lock() -> None:
            with lock:  # only possible while the waiter lets go of it
                bell.ring()
            woken.set()

        ringer = threading.Thread(target=ring_under_the_lock)
        ringer.start()
        assert bell.wait(lock, timeout=TIMEOUT)
        assert woken.wait(TIMEOUT)
    ringer.join(TIMEOUT)
    assert not ringer.is_alive()


def serve(loop: Loop, slot: Slot) -> None:
    """A worker's loop, as _worker.Worker runs it: each job's Outcome is its argument."""
    done: list[outcome.Outcome[Any]] = []
    while (job := loop.handoff.take(slot, done)) is not None:
        done.append(outcome.Value(job.args[0]))
    loop.handoff.closed(slot)


@pytest.mark.parametrize("seed", range(30))
def test_random_puts_and_cancels_lose_no_job_and_no_wake_up(seed: int) -> None:
    """Real worker threads against random puts (shared and direct) and cancels.

    A lost wake-up leaves a job queued while every worker sleeps, so the
    wait for all of them to end fails; each job ends once: delivered with
    its own result, or taken out by its cancel.
    """
    rng = random.Random(seed)
    loop = Loop()
    slots = [serving_slot(loop, i) for i in range(3)]
    threads = [threading.Thread(target=serve, args=(loop, slot)) for slot in slots]
    for thread in threads:
        thread.start()
    jobs: list[JobRecord] = []
    cancelled: set[int] = set()
    for i in range(300):
        choice = rng.random()
        if choice < 0.75:
            jobs.append(loop.job(int, i))
            loop.handoff.put(jobs[-1], rng.choice(slots) if choice < 0.1 else None)
        elif choice < 0.85 and jobs:
            victim = rng.choice(jobs)
            if loop.handoff.cancel(victim):
                cancelled.add(id(victim))
        elif choice < 0.95:
            loop.run_posted()
        else:
            threading.Event().wait(0.0005)  # workers run dry and go to sleep
    ended = lambda: len(loop.delivered) + len(cancelled) == len(jobs)  # noqa: E731
    for _ in range(int(TIMEOUT / 0.001)):
        loop.run_posted()
        if ended():
            break
        threading.Event().wait(0.001)
    assert ended(), "a job is left queued or unreported: a wake-up was lost"
    loop.handoff.stop(slots)
    for thread in threads:
        thread.join(TIMEOUT)
        assert not thread.is_alive()
    delivered = {id(job): result for job, result in loop.delivered}
    assert len(delivered) == len(loop.delivered)  # none twice
    for job in jobs:
        if id(job) in cancelled:
            assert id(job) not in delivered
        else:
            assert delivered[id(job)] == outcome.Value(job.args[0])
    assert all(slot.phase is Phase.STOPPED for slot in slots)


def test_cancel_removes_a_queued_job_once_and_leaves_a_taken_out_one_alone() -> None:
    loop = Loop()
    slot = serving_slot(loop)
    queued, taken_out = loop.job(), loop.job()
    loop.handoff.put(queued)
    assert loop.handoff.cancel(queued)
    assert queued.place is Place.OUT
    assert not loop.handoff.cancel(queued)  # already out: nothing to do, no error
    loop.handoff.put(taken_out, slot)
    assert loop.handoff.take_direct(slot) == [taken_out]
    assert not loop.handoff.cancel(taken_out)  # taken out to be finished: never in a queue
    assert loop.handoff.queued == 0


def test_cancelling_a_running_job_wakes_it_in_wait() -> None:
    loop = Loop()
    slot = serving_slot(loop)
    job = loop.job()
    loop.handoff.put(job)
    assert loop.handoff.take(slot) is job
    raised: list[BaseException] = []

    def waiting_job() -> None:
        try:
            loop.handoff.wait_for(slot, job, "key", None)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=waiting_job)
    thread.start()
    wait_idle(loop, 0)
    assert not loop.handoff.cancel(job)  # running: asked to stop, not removed
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert job.cancel_requested
    assert [type(e) for e in raised] == [trio_pool.JobCancelled]


def test_a_notify_that_comes_first_is_kept() -> None:
    loop = Loop()
    slot = serving_slot(loop)
    job = loop.job()
    loop.handoff.put(job)
    assert loop.handoff.take(slot) is job
    loop.handoff.notify(slot, "key", (1, 2))
    assert loop.handoff.wait_for(slot, job, "key", 0) == (1, 2)
    with pytest.raises(TimeoutError):
        loop.handoff.wait_for(slot, job, "key", 0)


def test_a_leased_worker_takes_only_its_own_jobs() -> None:
    loop = Loop()
    slot = serving_slot(loop)
    loop.handoff.lease(slot)
    shared, own = loop.job(), loop.job()
    loop.handoff.put(shared)
    loop.handoff.put(own, slot)
    assert loop.handoff.take(slot) is own
    loop.handoff.finish(slot, outcome.Value(None))
    loop.handoff.unlease(slot)
    assert loop.handoff.take(slot) is shared


def test_stop_with_cancel_takes_everything_out_and_tells_the_hooks_why() -> None:
    loop = Loop()
    idle, busy = serving_slot(loop, 0), serving_slot(loop, 1)
    running, queued, direct = loop.job(), loop.job(), loop.job()
    loop.handoff.put(running)
    assert loop.handoff.take(busy) is running
    loop.handoff.put(queued)
    loop.handoff.put(direct, idle)
    reason = RuntimeError("stop")
    exc_info = (RuntimeError, reason, None)
    removed = loop.handoff.stop([idle, busy], cancel=exc_info)
    assert removed == [queued, direct]
    assert all(job.place is Place.OUT for job in removed)
    assert running.cancel_requested
    assert idle.exit_info == exc_info
    assert busy.exit_info == exc_info
    assert loop.handoff.take(idle) is None  # draining, nothing left: it stops
    assert idle.phase is Phase.STOPPING
    loop.handoff.closed(idle)
    assert idle.phase is Phase.STOPPED


def test_a_stop_request_waits_for_the_workers_own_jobs() -> None:
    loop = Loop()
    slot = serving_slot(loop)
    direct = loop.job()
    loop.handoff.put(direct, slot)
    loop.handoff.stop_worker(slot)
    assert not slot.serving
    assert loop.handoff.take(slot) is direct
    loop.handoff.finish(slot, outcome.Value(None))
    assert loop.handoff.take(slot) is None
    assert slot.phase is Phase.STOPPING


def test_a_worker_phase_moves_only_forward() -> None:
    loop = Loop()
    slot = loop.handoff.new_slot(0)
    assert slot.phase is Phase.LOADING
    loop.handoff.loaded(slot, ok=False)
    assert slot.phase is Phase.STOPPED
    with pytest.raises(AssertionError, match="cannot go from"):
        loop.handoff.loaded(slot, ok=True)


def loop_slot(loop: Loop, worker_id: int) -> Slot:
    """A loaded slot of a loop-driven worker, whose takes the test drives by hand."""
    slot = loop.handoff.new_slot(worker_id, LoopBell(FakeEvent))
    loop.handoff.loaded(slot, ok=True)
    return slot


def step(take: Coroutine[Any, Any, JobRecord | None]) -> list[JobRecord | None]:
    """Drive a take on the loop until it waits ([]) or returns ([its job])."""
    try:
        take.send(None)
    except StopIteration as returned:
        return [returned.value]
    return []


def test_a_worker_with_calls_out_is_called_after_idle_ones_and_first_once_it_has_none() -> None:
    loop = Loop()
    handoff = loop.handoff
    busy, free = loop_slot(loop, 0), loop_slot(loop, 1)
    handoff.put(first := loop.job())
    assert step(handoff.take_on_loop(busy, [])) == [first]
    free_waits = handoff.take_on_loop(free, [])
    assert step(free_waits) == []
    busy_waits = handoff.take_on_loop(busy, [])  # its second call waits, idle last
    assert step(busy_waits) == []
    handoff.put(second := loop.job())
    assert step(free_waits) == [second]  # the free worker is called all the same
    handoff.finish_on_loop(free, second, outcome.Value(2))
    free_waits = handoff.take_on_loop(free, [])
    assert step(free_waits) == []
    handoff.finish_on_loop(busy, first, outcome.Value(1))  # now it runs nothing...
    handoff.put(third := loop.job())
    assert step(busy_waits) == [third]  # ...and is called as the last idle one
    assert [result for _, result in loop.delivered] == [outcome.Value(2), outcome.Value(1)]
    free_waits.close()


def test_a_worker_called_as_its_host_dies_takes_nothing_and_keeps_no_wake_up() -> None:
    loop = Loop()
    handoff = loop.handoff
    dying, other = loop_slot(loop, 0), loop_slot(loop, 1)
    handoff.put(first := loop.job())
    assert step(handoff.take_on_loop(dying, [])) == [first]
    dying_waits = handoff.take_on_loop(dying, [])
    assert step(dying_waits) == []
    handoff.put(second := loop.job())  # its waiting lane is called and rung...
    handoff.leave(dying)  # ...but its other call met its host's death first
    assert step(dying_waits) == [None]  # the rung lane runs on: it takes no job
    assert dying.phase is Phase.STOPPING
    assert step(handoff.take_on_loop(other, [])) == [second]
    handoff.finish_on_loop(other, second, outcome.Value(2))
    other_waits = handoff.take_on_loop(other, [])
    assert step(other_waits) == []
    handoff.put(third := loop.job())  # no wake-up is thought on its way: this one is rung
    assert step(other_waits) == [third]


def test_a_worker_waiting_as_its_host_dies_is_no_longer_idle() -> None:
    loop = Loop()
    handoff = loop.handoff
    dying, other = loop_slot(loop, 0), loop_slot(loop, 1)
    other_waits = handoff.take_on_loop(other, [])
    assert step(other_waits) == []
    handoff.put(first := loop.job())
    assert step(other_waits) == [first]
    dying_waits = handoff.take_on_loop(dying, [])
    assert step(dying_waits) == []  # idle last: the next job would go to it...
    handoff.leave(dying)  # ...but its host died
    dying_waits.close()  # and the take, not rung, is cancelled
    other_waits = handoff.take_on_loop(other, [])
    assert step(other_waits) == []
    handoff.put(second := loop.job())
    assert step(other_waits) == [second]


def test_an_error_exit_reaches_the_hook_of_a_worker_still_ending_its_calls() -> None:
    loop = Loop()
    handoff = loop.handoff
    slot = loop_slot(loop, 0)
    handoff.put(first := loop.job())
    assert step(handoff.take_on_loop(slot, [])) == [first]
    handoff.stop([slot])  # the pool closes: the worker takes no more...
    assert step(handoff.take_on_loop(slot, [])) == [None]
    assert slot.phase is Phase.STOPPING
    assert slot.running == [first]  # ...and ends the call it has out
    error = ValueError("boom")
    handoff.stop([slot], cancel=(ValueError, error, None))  # then an error exit
    assert first.cancel_requested
    handoff.finish_on_loop(slot, first, outcome.Value(1))
    assert handoff.closing(slot) == (ValueError, error, None)  # what its hook is told
    handoff.stop([slot], cancel=(KeyboardInterrupt, KeyboardInterrupt(), None))
    assert slot.exit_info == (ValueError, error, None)  # once told, it stays
    handoff.closed(slot)


class Lanes:
    """A loop-driven worker with calls in flight, its lanes driven by hand as _worker runs them.

    One lane at a time waits for a job (the worker's turn lock); the others
    hold a job each until the test finishes it.
    """

    def __init__(self, loop: Loop, worker_id: int, depth: int) -> None:
        self.handoff = loop.handoff
        self.slot = loop_slot(loop, worker_id)
        self.depth = depth
        self.held: list[JobRecord] = []
        self.waiting: Coroutine[Any, Any, JobRecord | None] | None = None
        self.out_of_jobs = False  # a take returned None: it stops once its calls end
        self.dead = False

    @property
    def alive(self) -> bool:
        return not (self.dead or self.slot.phase is Phase.STOPPED)

    def take(self) -> None:
        """A free lane begins a take, or the waiting one goes on (it may be rung by now)."""
        if self.waiting is None:
            if self.dead or self.out_of_jobs or len(self.held) == self.depth:
                return
            self.waiting = self.handoff.take_on_loop(self.slot, [])
        got = step(self.waiting)
        if got:
            self.waiting = None
            [job] = got
            if job is None:
                self.out_of_jobs = True
            else:
                self.held.append(job)
        self._close_if_done()

    def finish(self, rng: random.Random) -> None:
        if self.held:
            job = self.held.pop(rng.randrange(len(self.held)))
            self.handoff.finish_on_loop(self.slot, job, outcome.Value(job.args[0]))
            self._close_if_done()

    def die(self) -> list[JobRecord]:
        """Its host dies: the take under way is cancelled, and every call it holds fails.

        Returns the jobs left for it alone, which the pool takes out (and
        finishes, or puts in the queue again).
        """
        self.dead = True
        self.handoff.leave(self.slot)
        if self.waiting is not None:  # a lane rung already runs on; else it is cancelled
            got = step(self.waiting)
            if not got:
                self.waiting.close()
            elif got[0] is not None:  # a job of its own, taken as its host died: it fails
                self.held.append(got[0])
            self.waiting = None
        for job in self.held:
            self.handoff.finish(self.slot, outcome.Error(trio_pool.BrokenWorkerError()), job)
        self.held.clear()
        self.handoff.closed(self.slot)
        return self.handoff.take_direct(self.slot)

    def _close_if_done(self) -> None:
        if self.out_of_jobs and not self.held and self.slot.phase is Phase.STOPPING:
            self.handoff.closed(self.slot)


@pytest.mark.parametrize("seed", range(40))
def test_random_workers_with_calls_in_flight_lose_no_job_and_no_wake_up(seed: int) -> None:
    """Loop-driven workers with one to three calls in flight: random puts, cancels, renewals,
    and deaths (each dead or renewed worker replaced by a new one, as the pool does).

    After each burst the workers take whatever they are rung for: a job left
    queued while a worker waits un-rung is a lost wake-up. Each job ends
    once: with its own value, taken out (by its cancel, or as its worker
    died with it in its own queue), or failed with its worker's death.
    """
    rng = random.Random(seed)
    loop = Loop()
    workers = [Lanes(loop, i, rng.randint(1, 3)) for i in range(rng.randint(1, 3))]

    def replace() -> None:
        workers.append(Lanes(loop, len(workers), rng.randint(1, 3)))

    jobs: list[JobRecord] = []
    cancelled: set[int] = set()

    def settle() -> None:
        for _ in range(100):
            for worker in workers:
                worker.take()
            loop.run_posted()
        waiting = [w for w in workers if w.waiting is not None]
        assert not (waiting and loop.handoff.queued), "a job waits while a worker sleeps"
        assert not any(w.slot.stop_requested for w in waiting), "it sleeps on, asked to stop"

    busy = rng.uniform(0.1, 0.4)  # how often a job comes (rarely: workers wait more often)
    for i in range(400):
        choice = rng.random()
        alive = [w for w in workers if w.alive]
        if choice < busy:
            jobs.append(loop.job(int, i))
            serving = [w for w in alive if w.slot.serving]  # (as leases and broadcasts choose)
            direct = choice < busy / 10 and serving
            loop.handoff.put(jobs[-1], rng.choice(serving).slot if direct else None)
        elif choice < 0.5 and jobs:
            victim = rng.choice(jobs)
            if loop.handoff.cancel(victim):
                cancelled.add(id(victim))
        elif choice < 0.75:
            rng.choice(workers).take()
        elif choice < 0.95:
            rng.choice(workers).finish(rng)
        elif choice < 0.97 and alive:
            cancelled.update(id(job) for job in rng.choice(alive).die())
            replace()
        elif choice < 0.98 and alive:
            if loop.handoff.renew(rng.choice(alive).slot):  # as a lane's job ends
                replace()
        else:
            loop.run_posted()
        if i % 20 == 19:
            settle()
    settle()
    loop.handoff.stop([w.slot for w in workers if w.alive])  # they finish the queue first
    for _ in range(len(jobs) + 1):
        for worker in workers:
            while worker.held:
                worker.finish(rng)
        settle()
    delivered = {id(job): result for job, result in loop.delivered}
    assert len(delivered) == len(loop.delivered)  # none twice
    for job in jobs:
        if id(job) in cancelled:
            assert id(job) not in delivered
        elif isinstance(delivered[id(job)], outcome.Error):
            assert isinstance(delivered[id(job)].error, trio_pool.BrokenWorkerError)
        else:
            assert delivered[id(job)] == outcome.Value(job.args[0])
    assert all(w.slot.phase is Phase.STOPPED and not w.slot.running for w in workers)
