"""Step 6, ``eval_cam``: CAM mIoU over a full background-threshold sweep, from one pass over the files.

Reads: ``cam_baseline/cam/`` or ``cam/`` (by ``make_cam.source``; or ``eval.cam_dir``, which may hold
IRN/official ``.npy`` dicts) and the GT masks of ``dataset.eval_split``.
Writes: ``cam_baseline/eval_cam.json`` or ``eval_cam.json``: the shared metric schema at the configured
threshold, plus ``sweep`` (every threshold), ``best`` and ``configured``.

The prediction at threshold t is argmax([t, CAM_1..K']) mapped through the keys (IRN/official);
``tool.metrics.ThresholdSweep`` computes every threshold's confusion in one pass, where the
official code reloads every file per threshold and stops at the first drop.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tool.cam_io import find_cam, load_cam
from tool.config import Config
from tool.datasets import build_dataset, class_names_with_bg
from tool.io import write_json
from tool.metrics import ThresholdSweep, confusion, iou_from_confusion, metric_record, miou
from tool.runtime import Context

log = logging.getLogger(__name__)

SECTIONS = ("dataset", "cam", "make_cam", "eval")
INPUTS = ("make_cam",)


def sweep_thresholds(cfg: Config) -> np.ndarray:
    """The sweep grid plus the configured threshold, sorted, float32 (the comparison precision)."""
    e = cfg.eval
    if e.sweep_step <= 0 or e.sweep_stop < e.sweep_start:
        raise ValueError(f"eval.sweep_*: need sweep_step > 0 and sweep_stop >= sweep_start, got "
                         f"{e.sweep_start}, {e.sweep_stop}, {e.sweep_step}")
    n = int(np.floor((e.sweep_stop - e.sweep_start) / e.sweep_step + 1e-6)) + 1
    grid = np.round(e.sweep_start + e.sweep_step * np.arange(n), 6)
    return np.unique(np.append(grid, e.cam_threshold).astype(np.float32))


def run(cfg: Config, ctx: Context) -> dict:
    if not ctx.is_main:     # evaluation is cheap and runs on rank 0 alone
        return {}
    ds = build_dataset(cfg.dataset, ctx.paths.cache_dir)
    split = cfg.dataset.eval_split
    ids = ds.ids(split)
    cam_dir = Path(cfg.eval.cam_dir) if cfg.eval.cam_dir else ctx.paths.cam_dir(cfg.make_cam.source)
    thresholds = sweep_thresholds(cfg)
    classes = class_names_with_bg(ds)
    sweep = ThresholdSweep(thresholds, len(classes))
    # Floors for reading the numbers: everything background; every pixel the first present class.
    floor_bg = np.zeros((len(classes), len(classes)), np.int64)
    floor_fg = np.zeros_like(floor_bg)
    for image_id in tqdm(ids, desc="eval_cam", dynamic_ncols=True, mininterval=2.0):
        keys, cams = load_cam(find_cam(cam_dir, image_id))
        gt = ds.load_gt(image_id)
        if cams.shape[1:] != gt.shape:
            raise ValueError(f"{find_cam(cam_dir, image_id)}: CAM size {cams.shape[1:]} differs from the GT "
                             f"size {gt.shape}; were the CAMs made from other images?")
        sweep.add(cams, keys + 1, gt)
        floor_bg += confusion(np.zeros_like(gt), gt, len(classes))
        floor_fg += confusion(np.full_like(gt, keys[0] + 1 if len(keys) else 0), gt, len(classes))
    confs = sweep.confusions()                                   # [T, C, C]
    rows = [{"threshold": round(float(t), 4), "miou": float(np.nanmean(iou_from_confusion(c)) * 100),
             "iou": [float(v) * 100 for v in iou_from_confusion(c)]} for t, c in zip(thresholds, confs)]
    best = max(range(len(rows)), key=lambda i: rows[i]["miou"])
    conf_i = int(np.argmin(np.abs(thresholds - np.float32(cfg.eval.cam_threshold))))
    record = metric_record(split, len(ids), classes, confs[conf_i])
    record.update({
        "cam_dir": str(cam_dir),
        "sweep": rows,
        "best": {"threshold": rows[best]["threshold"], "miou": rows[best]["miou"]},
        "configured": {"threshold": rows[conf_i]["threshold"], "miou": rows[conf_i]["miou"]},
        "floors": {"all_background": miou(floor_bg), "all_first_present_class": miou(floor_fg)},
    })
    if cfg.eval.cam_dir:
        out = ctx.paths.root / "eval_cam_external.json"
    else:
        out = ctx.paths.eval_cam_json(cfg.make_cam.source)
    write_json(out, record)
    log.info("eval_cam on %s (%d images): mIoU %.2f at threshold %.2f; best %.2f at %.2f -> %s", split, len(ids),
             record["miou"], rows[conf_i]["threshold"], rows[best]["miou"], rows[best]["threshold"], out)
    return {"miou": record["miou"], "threshold": rows[conf_i]["threshold"], "best_miou": rows[best]["miou"],
            "best_threshold": rows[best]["threshold"], "num_images": len(ids), "source": cfg.make_cam.source,
            "floor_all_background": record["floors"]["all_background"],
            "floor_all_present_class": record["floors"]["all_first_present_class"]}


if __name__ == "__main__":
    from tool.runner import step_main
    step_main("eval_cam")
