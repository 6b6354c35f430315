"""An ablation grid in one command: every combination of ``--grid`` values (× ``--seeds``) as its own run.

    python -m tool.ablate --config configs/demo.yaml --grid ritc.frc=true,false --grid ritc.omega=0.05,0.1,0.2 \
        [--seeds 0 1 2] [--root work/ablate] [--until eval_cam | --steps a,b | --from x] [--set k=v ...] \
        [--reuse work/demo] [--launcher submitit --cluster slurm --gpus-per-node 2 --partition P ...]
    python -m tool.ablate --config configs/voc12.yaml --preset table4 | table5 | fat [--seeds 0 1 2]

Each variant is ``run_sample.py`` in ``<root>/<key=value,...>``. Before a variant runs, every step whose
result it would share with a run already made is *adopted*: when another variant of the grid (or a
``--reuse`` work directory, read-only) holds a valid done marker for the step with the very digest the
runner computes for it here (``tool.engine.runner.step_digest``: the step's config sections, its local weight
files and the run ids of its inputs), the step's outputs are hard-linked (binaries, written atomically)
or copied (text; everything from ``--reuse``) into the variant, then the marker last. The runner then
skips the step as up to date: one ``qape`` / ``train_cam`` for every RITC variant, never recomputed.
Adopted markers keep their run ids, so the digests of the steps after them match across variants too.

``<root>/ablate.json`` records each finished variant (atomic, after every variant): a killed grid,
run again, skips the finished variants and resumes the interrupted one (the runner resumes its steps).
At the end ``tool.compare`` runs over the grid (``<root>/compare.html``, ``compare.md``) and a
mean ± std table over the seeds is logged and appended to ``compare.md`` (docs/tracking.md).

``--preset`` runs one of the paper's ablations instead of a ``--grid``: exactly the rows the paper reports
(``PRESETS``), each named, with the paper's figure in a ``paper RITC CAM`` column beside the measured mIoU; without
``--steps`` / ``--from`` / ``--until`` it stops at ``eval_cam`` (the figure is the CAM mIoU; docs/reproduce.md).

``--launcher submitit`` (docs/cluster.md) runs the variants as scheduler jobs instead of one after another
here: first one job makes the steps every variant shares (``shared_steps``: the same config sections, weight
files and shared inputs) in the first variant's folder; then every variant adopts them (here, files only) and
is submitted as its own job (``tool.submit``), all at once; the comparison is gathered when all have ended.
Job ids go to ``<root>/jobs.jsonl`` and ``ablate.json``, submitit's logs to ``<root>/submitit/``.
"""
from __future__ import annotations

import argparse
import itertools
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tool.compare import compare, markdown, read_run, stage_columns, stage_header
from tool.data.base import DatasetError
from tool.engine.config import STEPS, Config, ConfigError, load_config, select_steps
from tool.engine.io import append_jsonl, is_temp_file, read_json, read_jsonl_repairing, write_bytes, write_json
from tool.engine.paths import WorkPaths
from tool.engine.per_image import DIGEST_FILE
from tool.engine.runner import is_done as step_is_done
from tool.engine.runner import step_digest, step_module
from tool.engine.runtime import Context, run_child, setup_logging
from tool.submit import add_resource_args, resources_from

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent

# What each step writes, relative to the work directory (files, folders, or globs): what adoption carries
# over. Run-level files (config.yaml, meta.json, log.txt, metrics.jsonl, steps/, cache/) are not a step's.
STEP_OUTPUTS: dict[str, tuple[str, ...]] = {
    "qape": ("qape/corpus.jsonl", f"qape/{DIGEST_FILE}"),
    "text_feats": ("qape/texts.json", "qape/text_feats.*.safetensors"),
    "train_cam": ("cam_baseline/model.pth", "events/train_cam.jsonl"),
    "train_ritc": ("ritc/model.pth", "events/train_ritc.jsonl"),
    "make_cam": ("cam", "cam_baseline/cam"),
    "eval_cam": ("eval_cam.json", "cam_baseline/eval_cam.json", "eval_cam_external.json"),   # the last: eval.cam_dir
    "cam_to_ir_label": ("ir_label",),
    "train_irn": ("irn/model.pth", "events/train_irn.jsonl"),
    "make_sem_seg": ("sem_seg",),
    "eval_sem_seg": ("eval_sem_seg.json",),
    "train_deeplab": ("deeplab/model.pth", "events/train_deeplab.jsonl"),
    "eval_deeplab": ("deeplab_pred*", "eval_deeplab*.json", "results", "results_*.tar.gz"),
    "report": ("report.html", "report"),
}
# appended to in place or small: always copied (a hard link would let one run write into another's file)
COPIED_SUFFIXES = (".json", ".jsonl", ".txt", ".yaml", ".html")


class AblateError(ValueError):
    """A bad grid or a root holding another grid; the message names the argument and the fix."""


@dataclass(frozen=True)
class Variant:
    name: str                          # also its folder under the root
    values: tuple[tuple[str, str], ...]  # (config key, value as given) of each --grid
    seed: int | None                   # --seeds, or None: the config's
    row: str = ""                      # a --preset's row name (the name without the seed)
    paper: float | None = None         # the paper's mIoU for this row (a --preset)

    @property
    def sets(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.values] + ([f"seed={self.seed}"] if self.seed is not None else [])


# The paper's ablations, all RITC CAM mIoU (%) on VOC 2012 train with the full method's other settings:
# per preset, its rows in the paper's order as (row name, config values, the paper's figure). Every row of a
# preset sets the same keys, so the seed table has one column per key. Table 5's check marks did not survive
# in the paper's text: its rows follow the paper's prose (docs/reproduce.md#table-5-question-groups).
_T4 = ("ritc.frc", "ritc.brc", "ritc.reg")
_T5 = ("qape.no_qape", "qape.groups")
PRESETS: dict[str, tuple[tuple[str, tuple[tuple[str, str], ...], float], ...]] = {
    "table4": tuple((row, tuple(zip(_T4, on)), paper) for row, on, paper in (
        ("frc", ("true", "false", "false"), 60.3),
        ("brc", ("false", "true", "false"), 57.7),
        ("frc+brc", ("true", "true", "false"), 67.1),
        ("frc+brc+reg", ("true", "true", "true"), 67.3))),
    # FG is always the class name; "no_qape": BG "no {class}" and no question asked; a row without a BG group
    # gets that BG text too (step/text_feats.py)
    "table5": tuple((row, tuple(zip(_T5, ("true" if row == "no_qape" else "false", f"[{groups}]"))), paper)
                    for row, groups, paper in (
        ("no_qape", "", 60.2),
        ("fine_grained", "fine_grained", 61.0),
        ("alias", "alias", 60.7),
        ("surrounding", "surrounding", 66.3),
        ("scene", "scene", 64.5),
        ("fine_grained+alias", "fine_grained,alias", 61.2),
        ("surrounding+scene", "surrounding,scene", 67.0),
        ("all", "fine_grained,alias,surrounding,scene", 67.3))),
    "fat": (("no_fat", (("ritc.fat", "false"),), 66.9), ("fat", (("ritc.fat", "true"),), 67.3)),
}


def preset_variants(name: str, seeds: Sequence[int] | None) -> list[Variant]:
    """The variants of ``PRESETS[name]``, seeds innermost; folder ``<row>`` or ``<row>,seed=<s>``."""
    if name not in PRESETS:
        raise AblateError(f"--preset {name!r}: not one of {sorted(PRESETS)}")
    return [Variant(row + (f",seed={seed}" if seed is not None else ""), values, seed, row, paper)
            for row, values, paper in PRESETS[name] for seed in _seeds(seeds)]


def _seeds(seeds: Sequence[int] | None) -> list[int | None]:
    """The --seeds to run, or [None]: one run with the config's seed."""
    return list(seeds) if seeds else [None]


def split_values(text: str) -> list[str]:
    """``true,false`` -> ["true", "false"]; commas inside [] or {} stay (``[1,2],[3,4]``)."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return [v for v in out if v]


def parse_grid(items: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``["ritc.frc=true,false", ...]`` -> [("ritc.frc", ["true", "false"]), ...]."""
    grid: list[tuple[str, list[str]]] = []
    for item in items:
        key, sep, text = item.partition("=")
        values = split_values(text)
        if not sep or not key.strip() or not values:
            raise AblateError(f"--grid {item!r}: expected section.key=value1,value2,...")
        if key.strip() in {k for k, _ in grid}:
            raise AblateError(f"--grid {item!r}: {key.strip()} is given twice; list all its values in one --grid")
        grid.append((key.strip(), values))
    return grid


def expand(grid: Sequence[tuple[str, Sequence[str]]], seeds: Sequence[int] | None) -> list[Variant]:
    """Every combination, the first --grid varying slowest, seeds innermost."""
    out = []
    for combo in itertools.product(*(v for _, v in grid)):
        values = tuple(zip((k for k, _ in grid), combo))
        for seed in _seeds(seeds):
            parts = [f"{k}={v}" for k, v in values] + ([f"seed={seed}"] if seed is not None else [])
            out.append(Variant(",".join(parts) or "base", values, seed))
    return out


# ------------------------------------------------------------------------------------------------
# adoption of shared steps
# ------------------------------------------------------------------------------------------------

def _context(work_dir: Path) -> Context:
    """What ``step_digest`` needs of a run: its paths (no device, process group or logging set up)."""
    return Context(paths=WorkPaths(Path(work_dir).resolve()), device=torch.device("cpu"), rank=0, world_size=1,
                   seed=0)


def _owner_config(owner: Path, cache: dict) -> Config | None:
    if owner not in cache:
        try:
            cache[owner] = load_config(owner / "config.yaml")
        except ConfigError as e:
            log.warning("ablate: %s cannot share its steps (%s)", owner, e)
            cache[owner] = None
    return cache[owner]


def _owner_digest(step: str, cfg: Config, owner: Path) -> str | None:
    """The digest the runner would compute for ``step`` in ``owner`` now (None: its data does not read)."""
    try:
        return step_digest(step, cfg, _context(owner))
    except DatasetError:
        return None


def step_files(work_dir: Path, step: str) -> list[Path]:
    """The files of ``step``'s outputs (``STEP_OUTPUTS``) that exist under ``work_dir``, folders walked."""
    out = []
    for pattern in STEP_OUTPUTS[step]:
        for p in sorted(work_dir.glob(pattern)):
            out += sorted(f for f in p.rglob("*") if f.is_file() and not is_temp_file(f.name)) if p.is_dir() else [p]
    return out


def _carry(src: Path, dst: Path, link: bool) -> None:
    """``src`` to ``dst`` atomically: a hard link (``link``, binaries) or a copy."""
    if link and src.suffix not in COPIED_SUFFIXES:
        tmp = dst.with_name(f".{dst.name}.link.tmp")
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.unlink(missing_ok=True)
            os.link(src, tmp)
            os.replace(tmp, dst)
            return
        except OSError:        # another file system, or links not allowed: copy
            tmp.unlink(missing_ok=True)
    write_bytes(dst, src.read_bytes(), durable=False)


def adopt_shared_steps(cfg: Config, work_dir: Path, owners: Sequence[Path],
                       copy_from: Sequence[Path] = ()) -> list[str]:
    """Adopt, in step order, every step of ``cfg`` (run in ``work_dir``) that one of ``owners`` has done with
    the digest the runner would compute for it here; returns the adopted steps. ``copy_from``: owners whose
    files are copied, never linked (work directories of other people's runs)."""
    ctx = _context(work_dir)
    work_dir = ctx.paths.root
    configs: dict[Path, Config | None] = {}
    adopted = []
    for step in STEPS:
        try:
            digest = step_digest(step, cfg, ctx)
        except DatasetError:     # its data does not read (a split this dataset lacks): nothing to adopt
            continue
        marker = ctx.paths.done_marker(step)
        if marker.is_file() and read_json(marker).get("digest") == digest:
            continue                                       # done here already (adopted before a kill, or run)
        for owner in owners:
            owner = Path(owner).resolve()
            owner_marker = WorkPaths(owner).done_marker(step)
            if owner == work_dir or not owner_marker.is_file():
                continue
            done = read_json(owner_marker)
            owner_cfg = _owner_config(owner, configs)
            # the owner's marker must still be valid there (its config unchanged since), and match ours
            if done.get("digest") != digest or owner_cfg is None or _owner_digest(step, owner_cfg, owner) != digest:
                continue
            link = owner not in {Path(c).resolve() for c in copy_from}
            files = step_files(owner, step)
            for f in files:
                _carry(f, work_dir / f.relative_to(owner), link)
            write_json(marker, done)                       # last: a kill before it leaves the step to redo
            append_jsonl(ctx.paths.metrics_jsonl, {"step": step, "seconds": done.get("seconds"),
                                                   **done.get("metrics", {}), "run_id": done.get("run_id"),
                                                   "adopted_from": str(owner)})
            log.info("ablate: %s adopts %s from %s (%d file(s) %s)", work_dir.name, step, owner, len(files),
                     "linked / copied" if link else "copied")
            adopted.append(step)
            break
    return adopted


# ------------------------------------------------------------------------------------------------
# the grid
# ------------------------------------------------------------------------------------------------

def run_pipeline(config: str, work_dir: Path, sets: Sequence[str], step_args: Sequence[str]) -> None:
    """``run_sample.py`` for one variant, in a fresh process (a grid of long runs keeps no memory between them)."""
    cmd = [sys.executable, str(ROOT / "run_sample.py"), "--config", config, "--set", f"work_dir={work_dir}"]
    for s in sets:
        cmd += ["--set", s]
    cmd += list(step_args)
    log.info("ablate: %s", " ".join(cmd))
    if run_child(cmd) != 0:
        raise AblateError(f"{work_dir}: run_sample.py failed (its log: {WorkPaths(work_dir).log_txt}); fix it and run "
                          "tool.ablate again: finished variants are kept, this one resumes")


def adopted_steps(work_dir: Path) -> list[str]:
    """The steps of ``work_dir`` whose current result was adopted from another run: its ``metrics.jsonl`` lines
    with ``adopted_from`` whose run id is still the step's marker's (a step rerun since is its own)."""
    paths = WorkPaths(Path(work_dir))
    current = {s: read_json(paths.done_marker(s)).get("run_id") for s in STEPS if paths.done_marker(s).is_file()}
    return list(dict.fromkeys(r["step"] for r in read_jsonl_repairing(paths.metrics_jsonl)
                              if r.get("adopted_from") and current.get(r["step"]) == r.get("run_id")))


def run_variant(config: str, work_dir: Path, sets: Sequence[str], step_args: Sequence[str],
                owners: Sequence[Path], copy_from: Sequence[Path] = ()) -> dict:
    """Adopt what the owners share, run the rest; returns {"adopted": steps, "seconds"}."""
    cfg = load_config(config, [*sets, f"work_dir={work_dir}"])
    t0 = time.time()
    adopt_shared_steps(cfg, work_dir, owners, copy_from)
    run_pipeline(config, work_dir, sets, step_args)
    # (also what was adopted before a kill, when this variant resumes)
    return {"adopted": adopted_steps(work_dir), "seconds": round(time.time() - t0, 1)}


def run_grid(variants: Sequence[Variant], root: Path, is_done: Callable[[Variant], bool],
             run: Callable[[Variant, list[Path]], dict], record: Callable[[Variant, dict], None],
             reuse: Sequence[Path] = ()) -> list[str]:
    """The loop every grid shares (ablate, ``tool.ritc_study``): skip the finished variants, run the others
    in order with every other variant's folder (and ``reuse``) as owners of shareable steps, ``record`` each.

    A variant that fails (e.g. a combination its step refuses) does not stop the grid: the others still run
    and are compared. Returns the failures' one-line messages; the caller raises them after its summary."""
    dirs = [root / v.name for v in variants]
    failed = []
    for v in variants:
        if is_done(v):
            log.info("ablate: %s: done (%s)", v.name, root)
            continue
        owners = [*(d for d in dirs if d.is_dir() and d != root / v.name), *reuse]
        try:
            record(v, run(v, owners))
        except AblateError as e:
            log.error("ablate: %s failed, going on with the others: %s", v.name, e)
            failed.append(f"{v.name}: {e}")
    return failed


def shared_steps(cfgs: Sequence[Config], chosen: Sequence[Sequence[str]]) -> list[str]:
    """The steps every variant runs (``chosen``: each variant's selection) with one result: the digest the runner
    would give them before anything ran (config sections, local weight files) is the same in every variant, and
    their inputs that any variant selects are shared too. In pipeline order."""
    # no markers (upstream run ids unknown alike everywhere) and no data read: the dataset section is in the digest
    blank = _context(Path(os.devnull) / "none")
    shared: list[str] = []
    for step in STEPS:
        if not all(step in c for c in chosen):
            continue
        # an input that some variants make and others do not may differ; one made by none is read alike by all
        inputs = [d for d in getattr(step_module(step), "INPUTS", ()) if any(d in c for c in chosen)]
        if all(d in shared for d in inputs) and len({step_digest(step, cfg, blank, data=False) for cfg in cfgs}) == 1:
            shared.append(step)
    return shared


def submit_grid(variants: Sequence[Variant], root: Path, config: str, sets: Sequence[str], selection: dict,
                reuse: Sequence[Path], res, cluster: str, is_done: Callable[[Variant], bool],
                record: Callable[[Variant, dict], None]) -> list[str]:
    """``--launcher submitit``: one job for the shared steps (in the first unfinished variant's folder), then every
    unfinished variant as its own job at once, each after adopting the shared steps; ``record`` each as it ends.
    Returns the failures' one-line messages, as :func:`run_grid`."""
    from submitit.helpers import as_completed

    from tool.submit import SubmitError, run_argv, submit_run, wait_job

    todo = [v for v in variants if not is_done(v)]
    if not todo:
        return []
    dirs = [root / v.name for v in variants]
    folder, jobs_file = root / "submitit", root / "jobs.jsonl"
    step_args = [a for flag, val in selection.items() if val for a in (flag, val)]
    cfgs = {v.name: load_config(config, [*sets, *v.sets, f"work_dir={root / v.name}"]) for v in todo}
    chosen = [select_steps({n: getattr(c.steps, n) for n in STEPS if hasattr(c.steps, n)},
                           selection["--steps"], selection["--from"], selection["--until"]) for c in cfgs.values()]
    shared = shared_steps(list(cfgs.values()), chosen) if len(todo) > 1 else []
    first = todo[0]

    def owners(v: Variant) -> list[Path]:
        return [*(d for d in dirs if d.is_dir() and d != root / v.name), *reuse]

    if shared:
        adopt_shared_steps(cfgs[first.name], root / first.name, owners(first), reuse)
        ctx = _context(root / first.name)
        if not all(step_is_done(s, cfgs[first.name], ctx) for s in shared):
            log.info("ablate: the steps every variant shares (%s) first, as one job in %s", ", ".join(shared),
                     root / first.name)
            job = submit_run(run_argv(config, root / first.name, [*sets, *first.sets], ["--steps", ",".join(shared)]),
                             root / first.name, res, cluster, folder, jobs_file)
            try:
                wait_job(job)
            except SubmitError as e:
                raise AblateError(f"the shared steps ({', '.join(shared)}) failed, so no variant was submitted: {e}; "
                                  "fix it and run tool.ablate again") from e
    jobs, started = {}, {}
    for v in todo:
        adopt_shared_steps(cfgs[v.name], root / v.name, owners(v), reuse)
        jobs[v.name] = submit_run(run_argv(config, root / v.name, [*sets, *v.sets], step_args), root / v.name, res,
                                  cluster, folder, jobs_file)
        started[v.name] = time.time()
    by_job = {str(j.job_id): name for name, j in jobs.items()}
    failed = []
    for job in as_completed(list(jobs.values()), poll_frequency=2):
        v = next(x for x in todo if x.name == by_job[str(job.job_id)])
        try:
            wait_job(job)
        except SubmitError as e:
            log.error("ablate: %s failed, the others go on: %s", v.name, e)
            failed.append(f"{v.name}: {e}")
            continue
        record(v, {"adopted": adopted_steps(root / v.name), "seconds": round(time.time() - started[v.name], 1),
                   "job_id": str(job.job_id)})
    return failed


def raise_failures(failed: Sequence[str]) -> None:
    """After a grid's summary: one error naming every failed variant (finished ones are kept; a rerun resumes)."""
    if failed:
        raise AblateError(f"{len(failed)} variant(s) failed, the others are compared: " + "; ".join(failed))


def seed_table(variants: Sequence[Variant], runs: dict[str, dict]) -> tuple[list, list]:
    """(header, rows): the variants grouped over seeds; per stage mean ± std (population) of the mIoU at the
    configured threshold and of the best-threshold mIoU (CAM stages), with the number of seeds. A preset's
    rows lead with their name and put the paper's figure beside the measured ones."""
    groups: dict[tuple, list[Variant]] = {}
    for v in variants:
        groups.setdefault(v.values, []).append(v)
    columns = stage_columns([r["stages"] for r in runs.values()])
    keys = [k for k, _ in variants[0].values] if variants else []
    preset = any(v.paper is not None for v in variants)
    head = [*(["row"] if preset else []), *keys, "seeds", *(["paper RITC CAM"] if preset else []),
            *stage_header(columns)]
    rows = []
    for values, members in groups.items():
        done = [runs[m.name] for m in members if m.name in runs]
        row = ([members[0].row] if preset else []) + [v for _, v in values] + [str(len(done))]
        if preset:
            row.append("–" if members[0].paper is None else f"{members[0].paper:.1f}")
        for s, best in columns:
            got = [r["stages"][s] for r in done if s in r["stages"]]
            row.append(_mean_std([m["miou"] for m in got]))
            if best:
                row.append(_mean_std([m["best"]["miou"] for m in got if "best" in m]))
        rows.append(row)
    return head, rows


def _mean_std(v: Sequence[float]) -> str:
    return f"{np.mean(v):.1f} ± {np.std(v):.1f}" if v else "–"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tool.ablate", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="YAML config every variant starts from")
    ap.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...", help="a grid axis (repeatable)")
    ap.add_argument("--preset", choices=sorted(PRESETS),
                    help="one of the paper's ablations instead of --grid: its rows, the paper's figure beside each "
                         "(default --until eval_cam)")
    ap.add_argument("--seeds", type=int, nargs="+", help="run every combination with each of these seeds")
    ap.add_argument("--root", default="work/ablate", help="one work directory per variant under here, ablate.json")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="applied to every variant")
    ap.add_argument("--steps", help="run_sample.py --steps for every variant")
    ap.add_argument("--from", dest="start", help="run_sample.py --from")
    ap.add_argument("--until", help="run_sample.py --until (e.g. eval_cam: ablate RITC to the CAM mIoU)")
    ap.add_argument("--reuse", nargs="+", default=[], metavar="WORK_DIR",
                    help="finished runs whose matching steps are copied in (read-only), e.g. work/demo")
    ap.add_argument("--launcher", choices=("local", "submitit"), default="local",
                    help="local: the variants one after another on this machine; submitit: each variant a job "
                         "(after one job for the shared steps), with the scheduler flags below (docs/cluster.md)")
    add_resource_args(ap)
    args = ap.parse_args(argv)
    res = resources_from(args) if args.launcher == "submitit" else None
    grid = parse_grid(args.grid)
    if args.preset and grid:
        raise AblateError(f"--preset {args.preset} and --grid together: a preset is a whole grid; give one of them")
    if not grid and not args.seeds and not args.preset:
        raise AblateError("tool.ablate: give at least one --grid KEY=V1,V2 (or --seeds, or a --preset)")
    if args.preset and not (args.steps or args.start or args.until):
        args.until = "eval_cam"          # the paper's ablation figures are CAM mIoUs
    root = Path(args.root)
    setup_logging(root / "ablate.log")
    variants = preset_variants(args.preset, args.seeds) if args.preset else expand(grid, args.seeds)
    for v in variants:       # every key and value checked before anything runs
        load_config(args.config, [*args.set, *v.sets])
    step_args = [a for flag, val in (("--steps", args.steps), ("--from", args.start), ("--until", args.until))
                 if val for a in (flag, val)]
    state_path = root / "ablate.json"
    state = read_json(state_path) if state_path.is_file() else {}
    want = {"config": args.config, "grid": [[k, v] for k, v in grid], "preset": args.preset, "sets": args.set,
            "step_args": step_args}
    if state and any(state.get(k) != v for k, v in want.items()):
        raise AblateError(f"{state_path} holds another grid (config {state.get('config')}, grid {state.get('grid')}, "
                          f"preset {state.get('preset')}, --set {state.get('sets')}, steps {state.get('step_args')}); "
                          "use another --root or delete it")
    state.update(want)
    done = state.setdefault("variants", {})
    reuse = [Path(r) for r in args.reuse]
    for r in reuse:
        if not (r / "config.yaml").is_file():
            raise AblateError(f"--reuse {r}: no config.yaml there; give the work directory of a finished run")

    def record(v: Variant, result: dict) -> None:
        done[v.name] = {"sets": v.sets, "dir": str(root / v.name), **result}
        write_json(state_path, state)

    if args.launcher == "submitit":
        selection = {"--steps": args.steps, "--from": args.start, "--until": args.until}
        failed = submit_grid(variants, root, args.config, args.set, selection, reuse, res, args.cluster,
                             lambda v: v.name in done, record)
    else:
        failed = run_grid(variants, root, lambda v: v.name in done,
                          lambda v, owners: run_variant(args.config, root / v.name, [*args.set, *v.sets], step_args,
                                                        owners, copy_from=reuse),
                          record, reuse=reuse)
    write_json(state_path, state)
    variants = [v for v in variants if v.name in done]
    names = [v.name for v in variants]
    runs = {n: read_run(root / n) for n in names}
    head, rows = seed_table(variants, runs)
    title = f"Mean ± std over seeds ({args.seeds or 'the config seed'})"
    if args.preset:
        title += (f"; the paper's {args.preset} beside them (its figures: RITC CAM mIoU on VOC 2012 train, "
                  "docs/reproduce.md)")
    seeds_md = f"{title}:\n\n{markdown(head, rows)}"
    summary = compare([root / n for n in names], root, names, extra_md=seeds_md)
    shared = {n: done[n].get("adopted", []) for n in names}
    log.info("ablate: %d variant(s) in %s; steps adopted (not recomputed): %s\n%s\n%s", len(names), root, shared,
             markdown(summary["header"], summary["rows"]), seeds_md)
    sys.stdout.write(markdown(summary["header"], summary["rows"]) + "\n" + seeds_md)
    raise_failures(failed)
    return 0


if __name__ == "__main__":
    from tool.engine.cli import run_cli
    sys.exit(run_cli(main))
