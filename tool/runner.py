"""Running steps: done markers, config digests, per-image output folders, single-step entry points.

A step module exposes ``run(cfg, ctx) -> dict``, ``SECTIONS`` (the config sections its result
depends on) and ``INPUTS`` (the steps whose artefacts it reads). Its marker
``steps/<step>.done.json`` holds a digest of those sections and of the upstream markers' run ids:
an unchanged step is skipped, a changed one (or one whose input was re-made) reruns.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType

from tool import dist
from tool.config import Config, load_config, section_digest
from tool.io import DamagedFile, append_jsonl, is_temp_file, read_json, read_jsonl_repairing, write_json
from tool.lock import work_dir_lock
from tool.runtime import Context, make_context, seed_step, write_run_files
from tool.skipped import SkipList, skip_list

log = logging.getLogger(__name__)

DIGEST_FILE = ".step_digest.json"


def step_module(name: str) -> ModuleType:
    """Import ``step.<name>`` lazily (steps are only imported when they run)."""
    try:
        return importlib.import_module(f"step.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"step.{name}":
            raise ValueError(f"unknown step {name!r}") from e
        raise


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


def step_digest(name: str, cfg: Config, ctx: Context) -> str:
    """The digest a step's done marker must match: its config ``SECTIONS``, the run ids of its
    ``INPUTS`` steps, and the identity of the local files named by its ``FILES`` keys (``section.key``:
    e.g. a retrained ``cam.pretrained`` file reruns ``train_cam``)."""
    mod = step_module(name)
    upstream = {}
    for dep in getattr(mod, "INPUTS", ()):
        marker = ctx.paths.done_marker(dep)
        upstream[dep] = read_json(marker).get("run_id") if marker.is_file() else None
    files = {key: file_identity(getattr(getattr(cfg, key.split(".")[0]), key.split(".")[1]))
             for key in getattr(mod, "FILES", ())}
    extra = {"step": name, "upstream": upstream}
    if any(v is not None for v in files.values()):   # (digests of runs on hub / keyword weights unchanged)
        extra["files"] = {k: v for k, v in files.items() if v is not None}
    return section_digest(cfg, tuple(mod.SECTIONS), extra=extra)


def is_done(name: str, cfg: Config, ctx: Context) -> bool:
    marker = ctx.paths.done_marker(name)
    return marker.is_file() and read_json(marker).get("digest") == step_digest(name, cfg, ctx)


def missing_gt(name: str, cfg: Config, ctx: Context) -> str | None:
    """Why step ``name`` cannot run for want of GT masks, or None. A step that evaluates against GT declares
    ``NEEDS_GT``, the ``dataset`` key naming its split (``"eval_split"``); a split none of whose images has a
    mask (a folder dataset without ``masks/``) makes it a skip with this note, not a crash."""
    key = getattr(step_module(name), "NEEDS_GT", None)
    if key is None:
        return None
    from tool.datasets import build_dataset

    ds = build_dataset(cfg.dataset, ctx.paths.cache_dir)
    split = getattr(cfg.dataset, key)
    if any(ds.has_gt(i) for i in ds.ids(split)):
        return None
    return (f"no GT mask for any image of dataset.{key} {split!r} (e.g. {ds.gt_path(ds.ids(split)[0])}): "
            f"nothing to evaluate against, step skipped")


def run_step(name: str, cfg: Config, ctx: Context, force: bool = False) -> dict:
    """Run one step unless its marker matches; write the marker and a ``metrics.jsonl`` line.

    A step that needs GT masks the dataset does not have is skipped with a note (``missing_gt``), kept in
    ``steps/<step>.skipped.json`` for the report; no marker, so masks added later make it run."""
    dist.barrier()
    note = missing_gt(name, cfg, ctx)
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
        if done.get("digest") == digest:
            log.info("step %s: up to date (digest %s), skipped; --force reruns it", name, digest)
            return done.get("metrics", {})
        log.info("step %s: configuration or inputs changed since its last run, rerunning", name)
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
    ctx.force = force
    try:
        metrics = step_module(name).run(cfg, ctx) or {}
    except DamagedFile as e:
        if e.producer is None or not ctx.is_main:
            raise
        raise DamagedFile(f"{e} ({invalidate(e, ctx)})", e.paths, e.producer) from e
    seconds = time.time() - t0
    dist.barrier()
    if ctx.is_main:
        run_id = uuid.uuid4().hex
        write_json(marker, {"step": name, "digest": digest, "run_id": run_id,
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


def invalidate(e: DamagedFile, ctx: Context) -> str:
    """Move ``e``'s damaged files aside and delete the marker of the step that wrote them, so the next
    plain run reruns that step (which redoes exactly what is missing). Returns what was done, for the message."""
    from tool.checkpoint import move_aside

    moved = [str(move_aside(p)) for p in e.paths if p.is_file()]
    ctx.paths.done_marker(e.producer).unlink(missing_ok=True)
    log.warning("step %s will rerun: %d damaged file(s) moved aside (%s)", e.producer, len(moved),
                ", ".join(moved[:3]))
    where = f"moved aside to {moved[0]}{' and others' if len(moved) > 1 else ''}; " if moved else ""
    return f"{where}step {e.producer} will redo it: run again"


def resume_plan(items: list, path_of, is_valid) -> tuple[list, int, int]:
    """Per-image resume: (items still to make, outputs reused, damaged outputs removed to be redone).

    An output that exists but fails ``is_valid(path)`` (torn by a crash: per-image files are not
    fsynced) is deleted, logged by name, and made again.
    """
    todo, reused, redone = [], 0, 0
    for item in items:
        p = path_of(item)
        if p.is_file():
            if is_valid(p):
                reused += 1
                continue
            log.warning("%s does not load (torn by a crash?): removing it, it will be made again", p)
            p.unlink()
            redone += 1
        todo.append(item)
    return todo, reused, redone


def skips_of(name: str, cfg: Config, ctx: Context, enabled: bool | None = None) -> SkipList:
    """The run's skip list as step ``name`` uses it (on when ``dataset.skip_bad_images``, or ``enabled``)."""
    return skip_list(ctx.paths.root, cfg.dataset.skip_bad_images if enabled is None else enabled, name)


def _short(metrics: dict) -> str:
    keep = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in metrics.items()
            if isinstance(v, (int, float, str))}
    return str(keep) if keep else ""


def prepare_output_dir(path: Path, digest: str, force: bool, pattern: str) -> Path:
    """Make a per-image output folder ready for a resumable run under config ``digest``.

    Files matching ``pattern`` that were made under another digest (or any, with ``force``) are
    stale and removed, so per-image resume never mixes outputs of two configurations. Temp files
    left by a killed run are removed too. Rank 0 does the cleaning; everyone waits.
    """
    if dist.is_main():
        path.mkdir(parents=True, exist_ok=True)
        for tmp in path.iterdir():
            if is_temp_file(tmp.name):
                tmp.unlink(missing_ok=True)
        stamp = path / DIGEST_FILE
        old = read_json(stamp).get("digest") if stamp.is_file() else None
        if force or (old is not None and old != digest) or (old is None and any(path.rglob(pattern))):
            stale = list(path.rglob(pattern))      # rglob: folder-dataset ids have sub-folders
            if stale:
                log.info("removing %d stale output(s) in %s (%s)", len(stale), path,
                         "--force" if force else "made under another configuration")
            for f in stale:
                f.unlink()
        write_json(stamp, {"digest": digest})
    dist.barrier()
    return path


def ensure_toy_world(cfg: Config) -> None:
    """Generate the toy world at ``dataset.root`` when ``toy.generate`` is set (idempotent; rank 0)."""
    t = cfg.toy
    if not t.generate:
        return
    if dist.is_main():
        from tool.toy_world import generate_toy_world
        root = Path(cfg.dataset.root)
        if t.layout == "folder":    # the VOC-layout world first (its "twin"), then exported as a folder dataset
            from tool.toy_folder import default_twin
            folder, root = root, Path(t.voc_twin) if t.voc_twin else default_twin(root)
        generate_toy_world(root, seed=t.seed, num_train=t.num_train, num_val=t.num_val,
                           num_extra_aug=t.num_extra_aug, image_size=t.image_size, classes=t.classes,
                           scene_correlation=t.scene_correlation, max_objects=t.max_objects,
                           layout="voc" if t.layout == "folder" else t.layout)
        if t.layout == "folder":
            from tool.toy_folder import export_folder_world
            export_folder_world(root, folder)
        if t.random_models_dir is not None:
            from tool.tiny_models import write_tiny_blip, write_tiny_clip
            models = Path(t.random_models_dir)
            if not (models / "blip").is_dir():
                write_tiny_blip(models / "blip", seed=t.seed)
            if not (models / "clip" / "open_clip_config.json").is_file():   # written last
                write_tiny_clip(models / "clip", seed=t.seed)
        if t.vlp_dir is not None:   # trained tiny BLIP + CLIP for the demo (cached: a no-op once trained)
            from tool.toy_vlp import ToyVlpParams, ensure_toy_vlp
            ensure_toy_vlp(root, Path(t.vlp_dir), ToyVlpParams(seed=t.seed))
        if t.backbone is not None:  # toy "ImageNet" ResNet-50 for cam.pretrained (cached)
            from tool.toy_backbone import ToyBackboneParams, ensure_toy_backbone
            ensure_toy_backbone(Path(t.backbone), ToyBackboneParams(seed=t.seed, source_size=tuple(t.image_size)))
    dist.barrier()


def step_main(name: str, argv: list[str] | None = None) -> dict:
    """``python -m step.<name> --config X [--set k=v ...] [--force]``: one step, same runner.

    With ``argv`` None (the command line) a project error prints one line and exits non-zero
    (``tool.cli``); with ``argv`` given (tests, scripts) errors propagate.
    """
    if argv is None:
        from tool.cli import run_cli
        sys.exit(run_cli(lambda a: _step_main(name, sys.argv[1:])))
    return _step_main(name, argv)


def _step_main(name: str, argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog=f"python -m step.{name}", description=f"Run the {name} step alone.")
    p.add_argument("--config", required=True, help="YAML config, e.g. configs/voc12.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--force", action="store_true", help="rerun even if the step is up to date")
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.set)
    ctx = make_context(cfg, force=args.force)
    command = [f"-m step.{name}", *argv]
    try:
        with work_dir_lock(ctx.paths.root, [sys.executable, *command]):   # one run per work_dir
            if ctx.is_main:
                clean_temp_files(ctx.paths.root)
            write_run_files(cfg, ctx, command)
            ensure_toy_world(cfg)
            return run_step(name, cfg, ctx, force=args.force)
    finally:
        dist.cleanup()
