"""One run at a time per work directory (docs/reliability.md, "Two runs on one work directory").

Two runs sharing a work directory overwrite each other's files: one merges and deletes the QAPE
shards the other is still appending to, both rewrite ``config.yaml``, markers race. The lock is an
exclusive ``flock`` on ``<work_dir>/.lock`` held by rank 0 for the whole run; the file also records
who holds it (pid, host, start time, command) so a refused run can say whom it waits for.

The kernel drops a ``flock`` when its process dies, however it dies, so a lock file left by a killed
run is stale by construction: the next run takes it, says so, and goes on.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tool.engine import dist

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class WorkDirLocked(RuntimeError):
    """Another live run holds the work directory; the message names its pid, host and command."""


def _holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 1 << 16)
        return json.loads(raw) if raw.strip() else {}
    except (OSError, ValueError):
        return {}


def _describe(h: dict) -> str:
    if not h:
        return "a run that did not record itself"
    cmd = " ".join(h.get("command", []))
    return f"pid {h.get('pid')} on host {h.get('host')}, started {h.get('started')}" + (f": {cmd}" if cmd else "")


@contextlib.contextmanager
def work_dir_lock(root: str | os.PathLike, command: list[str] | None = None) -> Iterator[None]:
    """Hold the work-directory lock of ``root`` for the ``with`` block (rank 0; other ranks pass through).

    Raises ``WorkDirLocked`` at once (no waiting) when another run holds it.
    """
    if not dist.is_main():
        yield
        return
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkDirLocked(
                f"work_dir {root} is in use by another run ({_describe(_holder(fd))}); wait for it to end or "
                f"give this run another work_dir (--set work_dir=...)") from None
        stale = _holder(fd)
        if stale:
            log.warning("work_dir %s: taking over the lock of a run that ended without releasing it (%s)", root,
                        _describe(stale))
        me = {"pid": os.getpid(), "host": platform.node(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "command": command if command is not None else [sys.executable, *sys.argv]}
        data = json.dumps(me).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)      # an empty file: released cleanly
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
