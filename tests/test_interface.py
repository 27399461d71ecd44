"""pool.interface and the operations: define and undefine."""

from __future__ import annotations

import outcome
import pytest

import trio_pool

from helpers import (
    Gate,
    Log,
    recording_interface,
    wait_in_thread,
)


async def test_define_and_undefine(backend: str) -> None:
    gate = Gate()
    async with trio_pool.Pool(recording_interface(Log()), "tag", workers=1) as pool:
        double = pool.define("double", lambda x: 2 * x)
        assert await double(4) == 8
        assert await pool.interface.double(5) == 10
        assert (await pool.call("double", 6)).unwrap() == 12
        tagged = pool.define("tagged", lambda: trio_pool.current_interface().tag)
        assert await tagged() == "tag"
        await pool.resize(3)  # later workers have it too
        assert set(await pool.broadcast("double", 1)) == {outcome.Value(2)}
        # A call accepted before undefine runs what it was accepted with.
        await pool.resize(1)
        await pool.submit(gate.enter)
        await wait_in_thread(gate.entered)
        accepted = await pool.submit("double", 7)
        pool.undefine("double")
        pool.define("double", lambda x: 3 * x)
        redefined = await pool.submit("double", 7)
        pool.undefine("double")
        gate.open()
        assert (await accepted.wait()).unwrap() == 14
        assert (await redefined.wait()).unwrap() == 21
        result = await pool.call("double", 1)
        assert isinstance(result, outcome.Error)
        assert isinstance(result.error, AttributeError)
        with pytest.raises(AttributeError):
            pool.interface.double  # noqa: B018
        with pytest.raises(AttributeError):
            await double(1)


async def test_bad_definitions(backend: str) -> None:
    async with trio_pool.Pool(recording_interface(Log()), "tag", workers=1) as pool:
        with pytest.raises(ValueError, match="private"):
            pool.define("_hidden", int)
        with pytest.raises(ValueError, match="already has"):
            pool.define("echo", int)
        with pytest.raises(TypeError):
            pool.define("x", "not callable")  # type: ignore[arg-type]
        with pytest.raises(LookupError):
            pool.undefine("never")
