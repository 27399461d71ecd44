"""Preloaded by the forkserver of ProcessHost's children, and imported nowhere else.

Importing it makes the process ignore SIGINT. The forkserver imports its
preload modules before it saves its own signal handlers, which every child
it forks restores: so a child ignores Ctrl-C (the pool's process handles
it) from its first instruction, not only once :func:`child_main` runs. A
Ctrl-C to the whole process group no longer kills a child still starting.
"""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
