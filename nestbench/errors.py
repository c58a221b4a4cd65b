"""The one base class of errors a user can cause and fix: bad input files, configs, specs.

Every such error (``ConfigError``, ``TaskError``, ``AudioError``, ``ManifestError``,
``CheckpointError``, ``EncoderSpecError``, ``ResultError``, the importers' errors) derives from
:class:`UserError` (a ``ValueError``), and its message names the file, line or key and what was
expected. The ``nestbench`` command prints such an error as one ``Error: ...`` line and exits 1;
``--debug`` (or ``NESTBENCH_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import os
from typing import NoReturn


class UserError(ValueError):
    """An error in what the user gave nestbench (not a bug in nestbench)."""


#: What a user can cause and fix: nestbench's own errors and files that are missing or in the way.
USER_ERRORS = (
    UserError,
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)


#: Set by the command's ``--debug`` flag (for this invocation).
DEBUG = False


def debug_enabled() -> bool:
    """``--debug`` was given or ``NESTBENCH_DEBUG`` is set (to anything but 0)."""
    return DEBUG or os.environ.get("NESTBENCH_DEBUG", "") not in ("", "0")


def one_line(e: BaseException) -> str:
    """The error's message on one line (an OSError's file named when its message lacks it)."""
    text = " ".join(str(e).split()) or type(e).__name__
    filename = getattr(e, "filename", None)
    if isinstance(e, OSError) and filename and str(filename) not in text:
        text = f"{filename}: {text}"
    return text


def fail(e: BaseException) -> NoReturn:
    """In a command: exit with ``Error: <one line>`` (status 1), or re-raise under --debug."""
    import click

    if debug_enabled():
        raise e
    raise click.ClickException(one_line(e)) from e
