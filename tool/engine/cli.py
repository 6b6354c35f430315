"""Command-line error reporting: the project's own errors print one line, unexpected ones their traceback.

A project error is one this repository raised on purpose, with a message written for the user: a
``raise`` statement in the repository's code is where it came from (config, dataset, missing
weights, a bad image, a damaged file, a locked work directory ...). Errors re-raised from worker
processes (DataLoader workers, CRF pools) carry their origin as traceback text and are judged by it.
Anything else is a bug or a failure underneath (torch, CUDA, the OS) and keeps its full traceback.
The one-line form still writes the traceback to the run's ``log.txt`` and names that file.
"""
from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)', re.M)
_LAST_LINE = re.compile(r"^(?:[\w.]+\.)?(?P<type>\w+(?:Error|Exception|File|Locked|Mismatch|Loss)): (?P<msg>.*)$")


class Terminated(BaseException):
    """The process got SIGTERM (what schedulers send before killing a job): raised where the main thread is,
    so atomic writes drop their temp files and the run stops as after a kill (``runner.run_session``). A
    ``BaseException``, like ``KeyboardInterrupt``: no ``except Exception`` swallows it."""


TERMINATED_STATUS = 128 + 15       # the shell's status of a process ended by SIGTERM


def _ours(filename: str) -> bool:
    p = Path(filename).resolve()
    return p.is_relative_to(REPO_ROOT) and ".venv" not in p.relative_to(REPO_ROOT).parts


def _is_raise(filename: str, lineno: int) -> bool:
    import linecache
    return linecache.getline(filename, lineno).strip().startswith("raise ")


def _remote_text(e: BaseException) -> str | None:
    """The original traceback of an error re-raised from another process, as text, or None."""
    cause = e.__cause__
    if cause is not None and type(cause).__name__ == "RemoteTraceback":     # multiprocessing.pool
        return str(cause)
    text = str(e)
    if "Original Traceback (most recent call last)" in text:                 # torch DataLoader workers
        return text
    return None


def user_message(e: BaseException) -> str | None:
    """The one-line message of a project error, or None for an unexpected error (to show with its traceback)."""
    if not isinstance(e, Exception):
        return None
    remote = _remote_text(e)
    if remote is not None:
        frames = list(_FRAME.finditer(remote))
        if not frames or not _ours(frames[-1]["file"]) or not _is_raise(frames[-1]["file"], int(frames[-1]["line"])):
            return None
        lines = [ln for ln in remote.strip().splitlines() if ln.strip()]
        m = _LAST_LINE.match(lines[-1].strip()) if lines else None
        return m["msg"] if m else lines[-1].strip()
    tb = traceback.extract_tb(e.__traceback__)
    if not tb or not _ours(tb[-1].filename) or not _is_raise(tb[-1].filename, tb[-1].lineno or 0):
        return None
    return " ".join(str(e).split("\n")).strip() or type(e).__name__


def _log_file() -> Path | None:
    for h in logging.getLogger().handlers:
        if getattr(h, "_qa_clims", False) and isinstance(h, logging.FileHandler):
            return Path(h.baseFilename)
    return None


def run_cli(main: Callable[[list[str] | None], Any], argv: list[str] | None = None) -> int:
    """Run ``main(argv)`` as a command: 0 on success; a project error prints one line (and the log file that
    holds its traceback) to stderr and returns 2; SIGTERM (``Terminated``) one line and 143; any other error
    propagates with its traceback."""
    try:
        main(argv)
        return 0
    except Terminated as e:
        sys.stderr.write(f"stopped: {e}\n")
        return TERMINATED_STATUS
    except Exception as e:
        msg = user_message(e)
        if msg is None:
            raise
        log_file = _log_file()
        if log_file is not None:     # the traceback goes to the log file only
            for h in logging.getLogger().handlers:
                if getattr(h, "_qa_clims", False) and isinstance(h, logging.FileHandler):
                    h.handle(logging.LogRecord("qa_clims", logging.ERROR, __file__, 0, "error: %s", (msg,),
                                               (type(e), e, e.__traceback__)))
        sys.stderr.write(f"error: {msg}\n")
        if log_file is not None:
            sys.stderr.write(f"(traceback in {log_file})\n")
        return 2
