"""A lock per run folder, so two identical runs never do the same work at once.

:func:`run_lock` holds an exclusive ``fcntl`` lock on ``<run-dir>/.lock`` (released by the OS
when the process ends, even when it is killed) and writes the holder's pid and host into it. A
second run of the same config finds the lock taken and waits up to ``wait`` seconds for the
first to finish (then sees its result), or stops with :class:`RunInProgress` naming the holder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from nestbench.errors import UserError


class RunInProgress(UserError):
    """Another process is working in this run folder."""


@contextlib.contextmanager
def run_lock(run_dir: Path, wait: float = 0.0, poll: float = 1.0) -> Iterator[None]:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = Path(path).read_text().strip() or "another process"
                    raise RunInProgress(
                        f"{run_dir}: another nestbench run is working in this folder "
                        f"({holder}); wait for it to finish (its result will then be reused) "
                        "or use another --out"
                    ) from None
                time.sleep(poll)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock
