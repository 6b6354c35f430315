"""Baseline CAM vs no-QAPE RITC vs RITC, over several training seeds: does RITC help, and does QAPE?

A preset of ``tool.ablate``: for each seed it runs ``run_sample.py`` through ``eval_cam`` in
``<root>/seed<s>-ritc`` with the config's QAPE corpus and in ``<root>/seed<s>-no_qape`` with
``qape.no_qape: true`` (Table 5's baseline corpus: FG = the class name, BG = "no {class}"). The second
adopts the seed's ``train_cam`` from the first (``tool.ablate.adopt_shared_steps``: same digest, not
recomputed), and ``make_cam.compare_baseline`` gives the baseline CAM's mIoU on the same images. The
world, the toy VLP and the toy backbone stay fixed; only ``seed`` (crops, order, init of the head)
changes. Results go to ``<root>/study.json`` after every run (atomic), so an interrupted study resumes
where it stopped; the table is logged at the end (and kept in ``<root>/study.log``).

    python -m tool.ritc_study --config configs/demo.yaml --seeds 0 1 2 --root work/ritc-study [--set k=v ...]
"""
from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tool import ablate
from tool.engine.config import STEPS as ALL_STEPS
from tool.engine.io import read_json, write_json
from tool.engine.runtime import setup_logging

log = logging.getLogger(__name__)

STEPS = ",".join(ALL_STEPS[:ALL_STEPS.index("eval_cam") + 1])   # through the CAM mIoU
VARIANTS = {"ritc": ["qape.no_qape=false"], "no_qape": ["qape.no_qape=true"]}


def run_variant(config: str, work_dir: Path, seed: int, variant: str, extra: Sequence[str]) -> dict:
    """One run through eval_cam, sharing what the study's other runs already made; returns eval_cam's
    metrics (incl. the baseline's) and the wall time."""
    sets = [f"seed={seed}", "make_cam.compare_baseline=true", *VARIANTS[variant], *extra]
    log.info("seed %d, %s", seed, variant)
    t0 = time.time()
    owners = [d for d in sorted(work_dir.parent.iterdir()) if d.is_dir()] if work_dir.parent.is_dir() else []
    ablate.run_variant(config, work_dir, sets, ["--steps", STEPS], owners)
    marker = work_dir / "steps" / "eval_cam.done.json"
    metrics = read_json(marker)["metrics"]
    if "baseline_miou" not in metrics:
        raise RuntimeError(f"{marker}: no baseline_miou (make_cam.compare_baseline did not export the baseline)")
    return {**metrics, "seconds": round(time.time() - t0, 1)}


def summarize(results: dict[str, dict[str, dict]]) -> dict[str, dict[str, float]]:
    """Mean and (population) std over seeds of each column: baseline, no_qape, ritc, at the config's
    threshold and at each map's best threshold. ``results``: {seed: {variant: eval_cam metrics}}."""
    cols: dict[str, list[float]] = {}
    for by_variant in results.values():
        first = next(iter(by_variant.values()))
        cols.setdefault("baseline", []).append(first["baseline_miou"])
        cols.setdefault("baseline_best", []).append(first["baseline_best_miou"])
        for variant, m in by_variant.items():
            cols.setdefault(variant, []).append(m["miou"])
            cols.setdefault(f"{variant}_best", []).append(m["best_miou"])
    return {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v)} for k, v in cols.items()}


def format_table(results: dict[str, dict[str, dict]], summary: dict[str, dict[str, float]]) -> str:
    """The logged table: one row per seed, then mean ± std; cells 'mIoU (best-threshold mIoU)'."""
    variants = [v for v in VARIANTS if any(v in r for r in results.values())]
    head = ["seed", "baseline", *variants]
    rows = []
    for seed, by_variant in results.items():
        first = next(iter(by_variant.values()))
        row = [seed, f"{first['baseline_miou']:.1f} ({first['baseline_best_miou']:.1f})"]
        row += [f"{by_variant[v]['miou']:.1f} ({by_variant[v]['best_miou']:.1f})" if v in by_variant else "-"
                for v in variants]
        rows.append(row)
    rows.append(["mean ± std"] + [f"{summary[c]['mean']:.1f} ± {summary[c]['std']:.1f} "
                                  f"({summary[c + '_best']['mean']:.1f})" for c in ["baseline", *variants]])
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in [head, *rows])


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tool.ritc_study", description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--root", default="work/ritc-study", help="one work dir per seed under here, and study.json")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to every run")
    args = ap.parse_args(argv)
    root = Path(args.root)
    setup_logging(root / "study.log")
    out = root / "study.json"
    study = read_json(out) if out.is_file() else {}
    if study and (study.get("config") != args.config or study.get("sets") != args.set):
        raise SystemExit(f"{out} holds a study of {study.get('config')} with --set {study.get('sets')}; "
                         f"use another --root or delete it")
    study.update({"config": args.config, "sets": args.set})
    results = study.setdefault("results", {})
    which = {f"seed{seed}-{variant}": (seed, variant) for seed in args.seeds for variant in args.variants}
    grid = [ablate.Variant(name, tuple((k, v) for k, _, v in (s.partition("=") for s in VARIANTS[variant])), seed)
            for name, (seed, variant) in which.items()]

    def record(v: ablate.Variant, metrics: dict) -> None:
        seed, variant = which[v.name]
        results.setdefault(str(seed), {})[variant] = metrics
        study["summary"] = summarize(results)
        write_json(out, study)

    failed = ablate.run_grid(grid, root, lambda v: which[v.name][1] in results.get(str(which[v.name][0]), {}),
                             lambda v, owners: run_variant(args.config, root / v.name, *which[v.name], args.set),
                             record)
    study["summary"] = summarize(results)
    write_json(out, study)
    log.info("baseline vs RITC vs no-QAPE CAM mIoU (%s):\n%s\ncells: mIoU at eval.cam_threshold (mIoU at the best "
             "threshold of the sweep); toy train split", out, format_table(results, study["summary"]))
    ablate.raise_failures(failed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
