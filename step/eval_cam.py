"""Step 6, ``eval_cam``: CAM mIoU over a full background-threshold sweep, from one pass over the files.

Reads: ``cam_baseline/cam/`` or ``cam/`` (by ``make_cam.source``; or ``eval.cam_dir``, which may hold
IRN/official ``.npy`` dicts) and the GT masks of ``dataset.eval_split``.
Writes: ``cam_baseline/eval_cam.json`` or ``eval_cam.json``: the shared metric schema at the configured
threshold, plus ``sweep`` (every threshold), ``best`` and ``configured``.

The prediction at threshold t is argmax([t, CAM_1..K']) mapped through the keys (IRN/official);
``tool.seg.metrics.ThresholdSweep`` computes every threshold's confusion in one pass, where the
official code reloads every file per threshold and stops at the first drop.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tool.data.cam_io import find_cam, load_cam
from tool.data.registry import build_dataset, class_names_with_bg, missing_gt, read_identity
from tool.engine.config import Config
from tool.engine.io import write_json
from tool.engine.runtime import Context
from tool.seg.metrics import (
    ThresholdSweep,
    describe_errors,
    floor_confusions,
    iou_from_confusion,
    metric_record,
    miou,
)

log = logging.getLogger(__name__)

SECTIONS = ("dataset", "cam", "make_cam", "eval")
INPUTS = ("make_cam",)


def needs(cfg: Config) -> tuple[str, ...]:
    """The steps of ``INPUTS`` whose outputs this config reads (``--check``; the digest follows all of
    ``INPUTS``): the CAMs of make_cam, unless ``eval.cam_dir`` names another folder."""
    return () if cfg.eval.cam_dir else INPUTS


def data_identity(cfg: Config, ctx: Context) -> dict:
    """What of the dataset it reads, for its digest (an edit reruns it): the GT masks of ``dataset.eval_split``."""
    return read_identity(cfg.dataset, ctx.paths.cache_dir, {cfg.dataset.eval_split: ("gt",)})


def skip_reason(cfg: Config, ctx: Context) -> str | None:
    """No GT mask in the eval split (a folder dataset without masks/): the runner skips the step with this note."""
    return missing_gt(cfg.dataset, ctx.paths.cache_dir, "eval_split")


def sweep_thresholds(cfg: Config) -> np.ndarray:
    """The sweep grid plus the configured threshold, sorted, float32 (the comparison precision)."""
    e = cfg.eval
    if e.sweep_step <= 0 or e.sweep_stop < e.sweep_start:
        raise ValueError(f"eval.sweep_*: need sweep_step > 0 and sweep_stop >= sweep_start, got "
                         f"{e.sweep_start}, {e.sweep_stop}, {e.sweep_step}")
    n = int(np.floor((e.sweep_stop - e.sweep_start) / e.sweep_step + 1e-6)) + 1
    grid = np.round(e.sweep_start + e.sweep_step * np.arange(n), 6)
    return np.unique(np.append(grid, e.cam_threshold).astype(np.float32))


def size_mismatch(ds, image_id: str, cam_path: Path, cam_hw: tuple[int, int], gt_hw: tuple[int, int]) -> str:
    """Why a CAM and its GT mask differ in size, blaming the one that differs from the image."""
    from PIL import Image

    with Image.open(ds.image_path(image_id)) as im:
        image_hw = (im.height, im.width)
    if cam_hw == image_hw:
        return (f"GT mask {ds.gt_path(image_id)} is {gt_hw[0]}×{gt_hw[1]} (H×W), its image {ds.image_path(image_id)} "
                f"{image_hw[0]}×{image_hw[1]}: the mask belongs to another image or was resized; replace it "
                f"(run_sample.py --check lists every such mask)")
    return (f"{cam_path}: CAM size {cam_hw} differs from its image {ds.image_path(image_id)} {image_hw} (and the GT "
            f"{gt_hw}); were the CAMs made from other images?")


def evaluate(cfg: Config, ds, cam_dir: Path, out: Path, producer: str | None = "make_cam",
             skipped: frozenset[str] = frozenset()) -> dict:
    """Sweep-evaluate the CAMs in ``cam_dir`` on ``dataset.eval_split``; write and return the record.

    ``producer``: the step that wrote ``cam_dir`` (None for ``eval.cam_dir``): a damaged file is redone by it."""
    split = cfg.dataset.eval_split
    ids = [i for i in ds.ids(split) if i not in skipped]        # unreadable images skipped by earlier steps
    thresholds = sweep_thresholds(cfg)
    classes = class_names_with_bg(ds)
    sweep = ThresholdSweep(thresholds, len(classes))
    # Floors for reading the numbers: everything background; every pixel the first present class.
    floor_bg = np.zeros((len(classes), len(classes)), np.int64)
    floor_fg = np.zeros_like(floor_bg)
    for image_id in tqdm(ids, desc="eval_cam", dynamic_ncols=True, mininterval=2.0):
        path = find_cam(cam_dir, image_id)
        keys, cams = load_cam(path, producer=producer, allow_pickle=cfg.eval.allow_pickle_cams)
        gt = ds.load_gt(image_id)
        if cams.shape[1:] != gt.shape:
            raise ValueError(size_mismatch(ds, image_id, path, tuple(cams.shape[1:]), gt.shape))
        try:
            sweep.add(cams, keys + 1, gt)
        except ValueError as e:
            raise ValueError(f"image {image_id} ({path}, GT {ds.gt_path(image_id)}): {e}") from e
        bg, fg = floor_confusions(gt, int(keys[0]) + 1 if len(keys) else 0, len(classes))
        floor_bg += bg
        floor_fg += fg
    confs = sweep.confusions()                                   # [T, C, C]
    mious = [float(np.nanmean(iou_from_confusion(c)) * 100) for c in confs]
    rows = [{"threshold": round(float(t), 4), "miou": m, "iou": [float(v) * 100 for v in iou_from_confusion(c)]}
            for t, m, c in zip(thresholds, mious, confs)]
    best = max(range(len(rows)), key=lambda i: mious[i])
    conf_i = int(np.argmin(np.abs(thresholds - np.float32(cfg.eval.cam_threshold))))
    record = metric_record(split, len(ids), classes, confs[conf_i])
    record.update({
        "cam_dir": str(cam_dir),
        "skipped_bad": len(ds.ids(split)) - len(ids),
        "sweep": rows,
        "best": {"threshold": rows[best]["threshold"], "miou": rows[best]["miou"]},
        "configured": {"threshold": rows[conf_i]["threshold"], "miou": rows[conf_i]["miou"]},
        "floors": {"all_background": miou(floor_bg), "all_first_present_class": miou(floor_fg)},
    })
    write_json(out, record)
    log.info("eval_cam %s on %s (%d images): mIoU %.2f at threshold %.2f (%s); best %.2f at %.2f -> %s", cam_dir,
             split, len(ids), record["miou"], rows[conf_i]["threshold"], describe_errors(record["errors"]),
             rows[best]["miou"], rows[best]["threshold"], out)
    return record


def run(cfg: Config, ctx: Context) -> dict:
    if not ctx.is_main:     # evaluation is cheap and runs on rank 0 alone
        return {}
    ds = build_dataset(cfg.dataset, ctx.paths.cache_dir)
    source: str = cfg.make_cam.source          # or "external" (eval.cam_dir)
    skipped = frozenset(ctx.skips().known(ds))
    if cfg.eval.cam_dir:
        rec = evaluate(cfg, ds, Path(cfg.eval.cam_dir), ctx.paths.root / "eval_cam_external.json", producer=None)
        source = "external"
    else:
        rec = evaluate(cfg, ds, ctx.paths.cam_dir(source), ctx.paths.eval_cam_json(source), skipped=skipped)
    out = {"miou": rec["miou"], "threshold": rec["configured"]["threshold"], "best_miou": rec["best"]["miou"],
           "best_threshold": rec["best"]["threshold"], "num_images": rec["num_images"], "source": source,
           "skipped_bad": rec["skipped_bad"],
           "floor_all_background": rec["floors"]["all_background"],
           "floor_all_present_class": rec["floors"]["all_first_present_class"]}
    if not cfg.eval.cam_dir and cfg.make_cam.compare_baseline and source != "baseline":
        base = evaluate(cfg, ds, ctx.paths.cam_dir("baseline"), ctx.paths.eval_cam_json("baseline"), skipped=skipped)
        out.update({"baseline_miou": base["miou"], "baseline_best_miou": base["best"]["miou"],
                    "baseline_best_threshold": base["best"]["threshold"]})
    return out


if __name__ == "__main__":   # steps run through the runner, which hands them their context
    raise SystemExit("run it with: python -m step eval_cam --config <yaml> [--set k=v] [--force]")
