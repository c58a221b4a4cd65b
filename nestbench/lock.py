"""A lock per run folder, so two identical runs never do the same work at once.

:func:`run_lock` holds an exclusive ``fcntl`` lock on ``<run-dir>/.lock`` (released by the OS
when the process ends, even when it is killed) and writes the holder's pid and host into it. A
second run of the same config finds the lock taken and waits up to ``wait`` seconds for the
first to finish (then sees its result), or stops with :class:`RunInProgress` naming the holder.
:func:`file_lock` waits for its turn without a limit (the feature cache's fills); :func:`is_locked`
tells whether a process holds a folder's lock now (``nestbench sweep status``: running or not).
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

#: how long a run retries a taken lock before it waits ``wait`` or gives up: long enough for
#: :func:`is_locked`'s momentary probe to let go
GRACE_SECONDS = 0.5


class RunInProgress(UserError):
    """Another process is working in this run folder."""


@contextlib.contextmanager
def run_lock(run_dir: Path, wait: float = 0.0, poll: float = 1.0) -> Iterator[None]:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        start = time.monotonic()
        deadline = start + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                if now - start < GRACE_SECONDS:  # a status probe holds it for a moment
                    time.sleep(0.02)
                    continue
                if now >= deadline:
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


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``fcntl`` lock on ``path``, waiting as long as another process holds it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def is_locked(run_dir: Path) -> bool:
    """Whether a live process holds ``<run_dir>/.lock`` (:func:`run_lock`): a shared lock is
    tried and let go at once (a run starting at that moment retries, see :func:`run_lock`)."""
    path = Path(run_dir) / ".lock"
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
