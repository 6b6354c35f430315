"""One run at a time per work directory (docs/reliability.md; several hosts: docs/cluster.md).

Two runs sharing a work directory overwrite each other's files: one merges and deletes the QAPE
shards the other is still appending to, both rewrite ``config.yaml``, markers race. The lock is an
exclusive ``flock`` on ``<work_dir>/.lock`` held by rank 0 for the whole run; the file also records
who holds it (pid, host, start time, command, scheduler job id) so a refused run can say whom it waits for.

The kernel drops a ``flock`` when its process dies, however it dies, so a lock file left by a killed
run is stale by construction: the next run takes it, says so, and goes on.

Several ranks, several hosts: rank 0 decides and every rank follows (a refused run stops on all of its
ranks with the same message, none goes on alone). Then one rank of every other node tries the lock itself:
on a file system that shares ``flock`` between hosts (local disk, NFSv4, Lustre mounted ``-o flock``) it is
held; where it is free there, locks are per host (Lustre ``localflock``, NFS ``local_lock=flock``) and two
runs started from different hosts would not be kept apart: rank 0 warns. A file system that refuses
``flock`` altogether stops the run with a message naming the mount option; ``QA_CLIMS_WORK_DIR_LOCK=off``
runs without the lock there, at the user's word that no second run uses the work directory.

A requeued scheduler job (SLURM, submitit) whose earlier attempt still holds the lock (its host has not
yet told the file server that the process is gone: an NFSv4 lease, a Lustre client eviction) waits for it
up to ``SAME_JOB_WAIT_S`` instead of refusing: the holder's record names the same job id.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from tool.engine import dist

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
LOCK_ENV = "QA_CLIMS_WORK_DIR_LOCK"   # "off": run without the lock (a file system that refuses flock)
SAME_JOB_WAIT_S = 300.0              # > an NFSv4 lease (90 s) and a typical Lustre eviction timeout
RELEASE_GRACE_S = 2.0                # a holder that emptied its record is unlocking: wait for it this long
# flock errors that mean "this file system does not lock", not "someone holds it"
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class WorkDirLocked(RuntimeError):
    """Another live run holds the work directory; the message names its pid, host and command."""


class LockUnsupported(RuntimeError):
    """The work directory's file system refuses ``flock``; the message names the mount option and the way out."""


class WorkDirNotShared(RuntimeError):
    """Ranks on other nodes do not see rank 0's work directory: it is on a disk of rank 0's host alone."""


def job_id() -> str | None:
    """The scheduler job this process belongs to (the same id in every attempt of a requeued job), or None."""
    return os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID") or None


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
    job = f", job {h['job']}" if h.get("job") else ""
    return f"pid {h.get('pid')} on host {h.get('host')}{job}, started {h.get('started')}" + (f": {cmd}" if cmd else "")


def _try_flock(fd: int, root: Path) -> bool:
    """Take the lock without waiting: True when taken, False when another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno in _UNSUPPORTED:
            raise LockUnsupported(
                f"work_dir {root}: its file system refuses file locks (flock: {e.strerror}); mount it with locking "
                f"(Lustre: -o flock; NFS: without nolock, lockd running) or put work_dir on a disk that locks; or set "
                f"{LOCK_ENV}=off and never start a second run on this work_dir (docs/cluster.md)") from None
        raise


def _acquire(root: Path, command: list[str] | None, same_job_wait_s: float) -> int:
    """Rank 0: the locked file descriptor of ``root/.lock`` with this run's record in it."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline: float | None = None
        empty_since: float | None = None
        while not _try_flock(fd, root):
            holder, mine = _holder(fd), job_id()
            if deadline is None and mine is not None and holder.get("job") == mine and same_job_wait_s > 0:
                # an earlier attempt of this very job: the scheduler has ended it, its lock is on its way out
                deadline = time.monotonic() + same_job_wait_s
                log.warning("work_dir %s: still locked by an earlier attempt of job %s (%s); waiting up to %.0f s "
                            "for the file system to release it", root, mine, _describe(holder), same_job_wait_s)
            releasing = False
            if not holder:             # an empty record: a run emptied it and is letting go this moment
                empty_since = empty_since or time.monotonic()
                releasing = time.monotonic() - empty_since < RELEASE_GRACE_S
            if (deadline is not None and time.monotonic() < deadline) or releasing:
                time.sleep(0.2)
                continue
            raise WorkDirLocked(
                f"work_dir {root} is in use by another run ({_describe(holder)}); wait for it to end or "
                f"give this run another work_dir (--set work_dir=...)")
        stale = _holder(fd)
        if stale:
            log.warning("work_dir %s: taking over the lock of a run that ended without releasing it (%s)", root,
                        _describe(stale))
        me = {"pid": os.getpid(), "host": platform.node(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "command": command if command is not None else [sys.executable, *sys.argv], "job": job_id()}
        data = json.dumps(me).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _seen_from_other_nodes(path: Path) -> None:
    """One rank per other node (local rank 0) tries the lock rank 0 holds; rank 0 logs what they saw. Every rank
    stops when one of them does not find the lock file at all: the work directory is not shared between the nodes."""
    probe = dist.local_rank() == 0 and not dist.is_main()
    free = missing = False
    if probe:
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            missing = True
        else:
            try:
                free = _try_flock(fd, path.parent)
                if free:               # not shared with rank 0's host: let go at once
                    fcntl.flock(fd, fcntl.LOCK_UN)
            except LockUnsupported:
                free = True            # no lock here at all: just as unshared
            finally:
                os.close(fd)
    seen = dist.all_reduce_sum(torch.tensor([probe, free, missing], dtype=torch.float64))   # [probes, free, missing]
    probes, free_on, missing_on = (int(v) for v in seen)
    if missing_on:
        raise WorkDirNotShared(
            f"work_dir {path.parent} is not shared between the nodes: {missing_on} of {probes} other node(s) do not "
            f"see the {LOCK_NAME} that rank 0 ({platform.node() if dist.is_main() else 'another host'}) made there; "
            "put work_dir (and the data and models) on a file system every node mounts (docs/cluster.md)")
    if not dist.is_main() or probes == 0:
        return
    if free_on:
        log.warning("work_dir %s: the lock rank 0 holds is not seen from %d of %d other node(s): this file system "
                    "does not share flock between hosts, so nothing stops a second run started elsewhere on this "
                    "work_dir (docs/cluster.md)", path.parent, free_on, probes)
    else:
        log.info("work_dir %s: lock held by rank 0 on %s, seen held from %d other node(s)", path.parent,
                 platform.node(), probes)


@contextlib.contextmanager
def work_dir_lock(root: str | os.PathLike, command: list[str] | None = None,
                  same_job_wait_s: float = SAME_JOB_WAIT_S) -> Iterator[None]:
    """Hold the work-directory lock of ``root`` for the ``with`` block (taken by rank 0, for every rank).

    Raises ``WorkDirLocked`` at once (no waiting) on every rank when another run holds it, except while an
    earlier attempt of the same scheduler job lets go (up to ``same_job_wait_s``); ``LockUnsupported`` where
    the file system has no ``flock``.
    """
    root = Path(root)
    if os.environ.get(LOCK_ENV, "").lower() == "off":
        if dist.is_main():
            log.warning("work_dir %s: %s=off: no lock keeps a second run off this work_dir", root, LOCK_ENV)
        yield
        return
    fd, refused = None, None
    if dist.is_main():
        try:
            fd = _acquire(root, command, same_job_wait_s)
        except (WorkDirLocked, LockUnsupported) as e:
            refused = (type(e).__name__, str(e))
    refused = dist.broadcast_object(refused)      # every rank stops, or none
    if refused is not None:
        kind, message = refused
        raise (WorkDirLocked if kind == "WorkDirLocked" else LockUnsupported)(message)
    try:
        if dist.is_dist():
            _seen_from_other_nodes(root / LOCK_NAME)
        yield
    finally:
        if fd is not None:
            os.ftruncate(fd, 0)      # an empty file: released cleanly
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
