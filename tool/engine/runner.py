"""Running steps: done markers, config digests, the work-dir session around a run.

A step module exposes ``run(cfg, ctx) -> dict``, ``SECTIONS`` (the config sections its result
depends on), ``INPUTS`` (the steps whose artefacts it reads) and, if it reads the dataset,
``data_identity(cfg, ctx)`` (what of the dataset it reads: split lists, labels, GT masks). Its marker
``steps/<step>.done.json`` holds a digest of those sections, of the upstream markers' run ids and of that
data: an unchanged step is skipped, a changed one (or one whose input or data was re-made) reruns. The
runner hands the step its digest, name and force flag in the context (``ctx.digest``, ``ctx.step``,
``ctx.force``), so steps never import the runner. Steps are imported by name, when they run.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Iterator, Sequence

from tool.engine import dist
from tool.engine.cli import Terminated
from tool.engine.config import Config, section_digest
from tool.engine.io import DamagedFile, append_jsonl, is_temp_file, read_json, read_jsonl_repairing, write_json
from tool.engine.lock import work_dir_lock
from tool.engine.runtime import Context, seed_step, setup_logging, write_run_files

log = logging.getLogger(__name__)

def step_module(name: str) -> ModuleType:
    """Import ``step.<name>`` lazily (steps are only imported when they run)."""
    try:
        return importlib.import_module(f"step.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"step.{name}":
            raise ValueError(f"unknown step {name!r}") from e
        raise


def step_needs(name: str, cfg: Config) -> tuple[str, ...]:
    """The steps whose outputs ``name`` reads under ``cfg``: its ``needs(cfg)`` (``make_cam.source: baseline``
    reads no RITC model), else its ``INPUTS``. What ``--check`` requires to be selected or done."""
    mod = step_module(name)
    hook = getattr(mod, "needs", None)
    return tuple(hook(cfg)) if hook is not None else tuple(getattr(mod, "INPUTS", ()))


def file_identity(path: str | os.PathLike | None) -> list | None:
    """What a done marker remembers of a local weights file or folder: size and mtime of the file, or of
    each file directly in the folder. ``None`` for values that are not local paths (``imagenet``, hub ids)."""
    if path is None:
        return None
    p = Path(path)
    if p.is_file():
        st = p.stat()
        return [st.st_size, st.st_mtime_ns]
    if p.is_dir():
        return sorted([c.name, c.stat().st_size, c.stat().st_mtime_ns] for c in p.iterdir() if c.is_file())
    return None


def step_digest(name: str, cfg: Config, ctx: Context, data: bool = True) -> str:
    """The digest a step's done marker must match: its config ``SECTIONS``, the run ids of its
    ``INPUTS`` steps, the identity of the local files named by its ``FILES`` keys (``section.key``:
    e.g. a retrained ``cam.pretrained`` file reruns ``train_cam``) and of the data it reads
    (``data_identity``: an edited label file, split list or GT mask reruns the steps that read it).
    ``data=False``: the digest without the data, as markers of code before it was added hold it."""
    mod = step_module(name)
    upstream = {}
    for dep in getattr(mod, "INPUTS", ()):
        marker = ctx.paths.done_marker(dep)
        upstream[dep] = read_json(marker).get("run_id") if marker.is_file() else None
    files = {key: file_identity(getattr(getattr(cfg, key.split(".")[0]), key.split(".")[1]))
             for key in getattr(mod, "FILES", ())}
    extra: dict = {"step": name, "upstream": upstream}
    if any(v is not None for v in files.values()):   # (digests of runs on hub / keyword weights unchanged)
        extra["files"] = {k: v for k, v in files.items() if v is not None}
    hook = getattr(mod, "data_identity", None)
    if data and hook is not None:
        extra["data"] = hook(cfg, ctx)
    return section_digest(cfg, tuple(mod.SECTIONS), extra=extra)


def marker_matches(done: dict, name: str, cfg: Config, ctx: Context, digest: str) -> bool:
    """Whether the done marker ``done`` stands for the step as ``digest`` describes it now.

    A marker written before the data entered the digests (no ``data`` field) matches on the digest without
    it: an upgrade does not rerun finished steps; it takes the data as then read (``run_step`` rewrites it)."""
    if done.get("digest") == digest:
        return True
    return "data" not in done and done.get("digest") == step_digest(name, cfg, ctx, data=False)


def is_done(name: str, cfg: Config, ctx: Context) -> bool:
    marker = ctx.paths.done_marker(name)
    return marker.is_file() and marker_matches(read_json(marker), name, cfg, ctx, step_digest(name, cfg, ctx))


def run_step(name: str, cfg: Config, ctx: Context, force: bool = False) -> dict:
    """Run one step unless its marker matches; write the marker and a ``metrics.jsonl`` line.

    A step whose ``skip_reason(cfg, ctx)`` gives a reason (an evaluation on a dataset without GT masks) is
    skipped with that note, kept in ``steps/<step>.skipped.json`` for the report; no marker, so masks added
    later make it run."""
    dist.barrier()
    hook = getattr(step_module(name), "skip_reason", None)
    note = hook(cfg, ctx) if hook is not None else None
    skip_file = ctx.paths.skip_note(name)
    if note is not None:
        log.warning("step %s: %s", name, note)
        if ctx.is_main:
            write_json(skip_file, {"step": name, "note": note})
        return {"skipped": note}
    if ctx.is_main:
        skip_file.unlink(missing_ok=True)
    digest = step_digest(name, cfg, ctx)
    marker = ctx.paths.done_marker(name)
    if ctx.is_main and marker.is_file():
        recover_metrics_line(read_json(marker), ctx)
    if not force and marker.is_file():
        done = read_json(marker)
        if marker_matches(done, name, cfg, ctx, digest):
            if done.get("digest") != digest and ctx.is_main:   # an older marker: it now holds the data too
                write_json(marker, {**done, "digest": digest, "data": True})
                log.info("step %s: marker of an earlier version, taken with the data as it is now", name)
            log.info("step %s: up to date (digest %s), skipped; --force reruns it", name, digest)
            return done.get("metrics", {})
        log.info("step %s: configuration, inputs or data changed since its last run, rerunning", name)
    dist.barrier()
    if ctx.is_main and marker.is_file():
        # A rerun invalidates the old marker first: should it crash after deleting outputs, the next
        # plain run must not skip the step on the strength of the old marker.
        marker.unlink()
    if ctx.is_main and force:   # --force retrains: a kept final checkpoint must not short-cut it
        ctx.paths.checkpoint(name).unlink(missing_ok=True)
    dist.barrier()
    ctx.seed = seed_step(ctx.run_seed, name)     # the same numbers however the step was started
    log.info("step %s: start (seed %d)", name, ctx.seed)
    t0 = time.time()
    ctx.step, ctx.digest, ctx.force = name, digest, force   # what the step needs to know of its own run
    try:
        metrics = step_module(name).run(cfg, ctx) or {}
    except DamagedFile as e:
        if e.producer is None or not ctx.is_main:
            raise
        raise DamagedFile(f"{e} ({invalidate(e.paths, e.producer, ctx)})", e.paths, e.producer) from e
    seconds = time.time() - t0
    dist.barrier()
    if ctx.is_main:
        run_id = uuid.uuid4().hex
        write_json(marker, {"step": name, "digest": digest, "data": True, "run_id": run_id,
                            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(seconds, 2),
                            "metrics": metrics})
        append_jsonl(ctx.paths.metrics_jsonl, {"step": name, "seconds": round(seconds, 2), **metrics, "run_id": run_id})
        # The resumable state goes only once the marker is down: a crash after training (train_irn's
        # mean-shift pass, writing the marker) resumes from the finished checkpoint, not from step 0.
        ctx.paths.checkpoint(name).unlink(missing_ok=True)
    dist.barrier()
    log.info("step %s: done in %.1f s %s", name, seconds, _short(metrics))
    return metrics


def recover_metrics_line(done: dict, ctx: Context) -> None:
    """Append the ``metrics.jsonl`` line of a finished step (its done marker) if a kill between writing the
    marker and the line lost it."""
    run_id = done.get("run_id")
    if not run_id:
        return
    for r in read_jsonl_repairing(ctx.paths.metrics_jsonl):
        if r.get("run_id") == run_id or ("run_id" not in r and r.get("step") == done.get("step")
                                         and r.get("seconds") == done.get("seconds")):   # (a line of older code)
            return
    log.info("metrics.jsonl: restoring the line of step %s (run %s) from its marker", done.get("step"), run_id)
    append_jsonl(ctx.paths.metrics_jsonl, {"step": done.get("step"), "seconds": done.get("seconds"),
                                           **done.get("metrics", {}), "run_id": run_id, "recovered": True})


def clean_temp_files(root: Path) -> int:
    """Remove the temp files killed runs left anywhere under ``root`` (call it holding the work-dir lock:
    no other run is writing). Returns how many."""
    n = 0
    for folder, _, files in os.walk(root):
        for f in files:
            if is_temp_file(f):
                Path(folder, f).unlink(missing_ok=True)
                n += 1
    if n:
        log.info("removed %d temp file(s) left by an interrupted run under %s", n, root)
    return n


def invalidate(paths: Sequence[Path], producer: str, ctx: Context) -> str:
    """Move the damaged files ``paths`` aside and delete the marker of ``producer``, the step that wrote them, so
    the next plain run reruns that step (which redoes exactly what is missing). Returns what was done, for the
    message."""
    from tool.engine.checkpoint import move_aside

    moved = [str(move_aside(p)) for p in paths if p.is_file()]
    ctx.paths.done_marker(producer).unlink(missing_ok=True)
    log.warning("step %s will rerun: %d damaged file(s) moved aside (%s)", producer, len(moved),
                ", ".join(moved[:3]))
    where = f"moved aside to {moved[0]}{' and others' if len(moved) > 1 else ''}; " if moved else ""
    return f"{where}step {producer} will redo it: run again"


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """While the block runs, SIGTERM is logged and raised as ``Terminated`` in the main thread: the step stops
    where it is, atomic writes remove their temp files, the last checkpoint stays, no marker is written, and
    the next run resumes as after a kill. (Default handling would end the process without a word.)"""
    if threading.current_thread() is not threading.main_thread():   # signals reach the main thread only
        yield
        return

    me = os.getpid()

    def handler(signum, frame):
        if os.getpid() != me:        # a forked DataLoader worker inherited it: end as by default, silently
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        log.warning("received SIGTERM (a scheduler ending the job?): stopping; the next run resumes from the last "
                    "checkpoint and the outputs already written")
        raise Terminated("SIGTERM; run the same command again to resume")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def run_session(cfg: Config, ctx: Context, command: list[str]) -> Iterator[None]:
    """Around one run of steps: hold the work-dir lock (one run per work_dir), remove what killed runs left,
    write ``config.yaml`` and ``meta.json``, stop cleanly on SIGTERM; tear the process group down at the end."""
    try:
        with stop_on_sigterm(), work_dir_lock(ctx.paths.root, [sys.executable, *command]):
            setup_logging(ctx.paths.log_txt)         # ours now: a refused run never reaches this line
            log.info("work_dir %s, device %s, rank %d/%d, seed %d (each step seeds from it, its name and the "
                     "rank)", ctx.paths.root, ctx.device, ctx.rank, ctx.world_size, ctx.run_seed)
            if ctx.is_main:
                clean_temp_files(ctx.paths.root)    # anywhere in the work dir
            write_run_files(cfg, ctx, command)
            yield
    finally:
        dist.cleanup()


def _short(metrics: dict) -> str:
    keep = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in metrics.items()
            if isinstance(v, (int, float, str))}
    return str(keep) if keep else ""
