"""The work the subinterpreter benchmark ships: a module that imports nothing.

(Each worker's interpreter imports it on its first call, while warming up.)
"""


def add_one(x: int) -> int:
    return x + 1


def count_primes(limit: int) -> int:
    """Pure Python: holds its interpreter's GIL throughout."""
    return sum(all(n % d for d in range(2, int(n**0.5) + 1)) for n in range(2, limit))


def pause(seconds: float) -> None:
    """Keeps a worker busy while its peers are warmed."""
    import time

    time.sleep(seconds)
