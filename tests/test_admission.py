"""Room in the queue, tested without an event loop: waiters are driven by hand."""

from __future__ import annotations

import anyio
import pytest
import trio
from loopless import FakeEvent, Loop, pending

from trio_pool._admission import Admission
from trio_pool._handoff import Handoff


class Interrupted(BaseException):
    """Thrown into a waiter, as a cancellation would be."""


def full_queue(size: int = 1, handoff: type[Handoff] = Handoff) -> tuple[Loop, Admission]:
    loop = Loop(handoff)
    admission = Admission(size, loop.handoff, FakeEvent)
    loop.on_deliver = admission.release
    for _ in range(size):
        admission.acquire_nowait()
        loop.handoff.put(loop.job())
    return loop, admission


def test_a_full_queue_refuses_with_would_block() -> None:
    _, admission = full_queue()
    with pytest.raises(trio.WouldBlock):
        admission.acquire_nowait()
    with pytest.raises(anyio.WouldBlock):
        admission.acquire_nowait()


def test_a_worker_that_takes_a_job_wakes_the_loop_for_a_waiter() -> None:
    loop, admission = full_queue()
    waiter = admission.acquire()
    assert pending(waiter)
    slot = loop.handoff.new_slot(0)
    loop.handoff.loaded(slot, ok=True)
    assert loop.handoff.take(slot) is not None  # room now, and the loop is told
    assert loop.run_posted() == 1
    assert not pending(waiter)
    assert admission.waiting == 0


def test_room_made_just_before_the_waiter_asks_to_be_told_is_seen() -> None:
    # The race: a worker takes the job after the waiter found no room, but
    # before the handoff's flag asks workers to wake the loop; the worker
    # sees no flag and posts nothing. The waiter must look again.
    class WorkerTakesFirst(Handoff):
        def want_room(self, wanted: bool) -> None:
            if wanted and self.queued:
                slot = self.new_slot(0)
                self.loaded(slot, ok=True)
                assert self.take(slot) is not None
            super().want_room(wanted)

    loop, admission = full_queue(handoff=WorkerTakesFirst)
    waiter = admission.acquire()
    assert not pending(waiter)  # let in at once
    assert loop.posted == []  # the worker did not wake the loop: nobody would have


def test_waiters_get_in_first_come_first_served_and_newcomers_wait() -> None:
    loop, admission = full_queue()
    first, second = admission.acquire(), admission.acquire()
    assert pending(first)
    assert pending(second)
    assert loop.handoff.take_queued()  # room for one
    admission.release()
    assert not pending(first)
    assert pending(second)
    with pytest.raises(trio.WouldBlock):  # the room is promised to the first waiter...
        admission.acquire_nowait()
    loop.handoff.put(loop.job())  # ...which puts its job in
    assert pending(second)


def test_a_waiter_interrupted_once_let_in_passes_its_place_on() -> None:
    loop, admission = full_queue()
    first, second = admission.acquire(), admission.acquire()
    assert pending(first)
    assert pending(second)
    loop.handoff.take_queued()
    admission.release()  # the first is let in, but has not run yet
    with pytest.raises(Interrupted):
        first.throw(Interrupted())
    assert not pending(second)


def test_a_waiter_interrupted_before_its_turn_leaves_the_line() -> None:
    loop, admission = full_queue()
    first = admission.acquire()
    assert pending(first)
    with pytest.raises(Interrupted):
        first.throw(Interrupted())
    assert admission.waiting == 0
    assert not loop.handoff._room_wanted  # nobody waits: workers need not wake the loop


def test_close_lets_every_waiter_in() -> None:
    _, admission = full_queue()
    waiters = [admission.acquire() for _ in range(3)]
    assert all(pending(w) for w in waiters)
    admission.close()
    assert not any(pending(w) for w in waiters)
