"""The work the process and subinterpreter benchmarks ship: a module that imports nothing.

Every peer sends these functions by reference (each worker imports this
module on its first call, while warming up), so none pays for sending a
function of ``__main__`` by value, which the pool would (cloudpickle).
"""


def add_one(x: int) -> int:
    return x + 1


def echo(data: bytes) -> bytes:
    return data


def count_primes(limit: int) -> int:
    """Pure Python: holds its interpreter's GIL throughout."""
    return sum(all(n % d for d in range(2, int(n**0.5) + 1)) for n in range(2, limit))


def pause(seconds: float) -> None:
    """Keeps a worker busy while its peers are warmed."""
    import time

    time.sleep(seconds)
