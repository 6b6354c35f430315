"""Step 10, ``eval_sem_seg``: pseudo-mask quality on ``dataset.eval_split`` (docs/design.md §3).

Reads: ``sem_seg/<id>.png`` and the GT masks. Writes: ``eval_sem_seg.json`` (the shared metric
schema: mIoU and per-class IoU in percent, plus per-class precision and recall), computed with the
same confusion code as ``eval_cam``.
"""
from __future__ import annotations

import logging

import numpy as np
from tqdm import tqdm

from tool.data.palette import load_label_png
from tool.data.registry import build_dataset, class_names_with_bg, missing_gt, read_identity
from tool.engine.config import Config
from tool.engine.io import write_json
from tool.engine.runtime import Context
from tool.seg.metrics import confusion, describe_errors, metric_record

log = logging.getLogger(__name__)

SECTIONS = ("dataset",)
INPUTS = ("make_sem_seg",)


def data_identity(cfg: Config, ctx: Context) -> dict:
    """What of the dataset it reads, for its digest (an edit reruns it): the GT masks of ``dataset.eval_split``."""
    return read_identity(cfg.dataset, ctx.paths.cache_dir, {cfg.dataset.eval_split: ("gt",)})


def skip_reason(cfg: Config, ctx: Context) -> str | None:
    """No GT mask in the eval split (a folder dataset without masks/): the runner skips the step with this note."""
    return missing_gt(cfg.dataset, ctx.paths.cache_dir, "eval_split")


def run(cfg: Config, ctx: Context) -> dict:
    if not ctx.is_main:
        return {}
    ds = build_dataset(cfg.dataset, ctx.paths.cache_dir)
    split = cfg.dataset.eval_split
    all_ids = ds.ids(split)
    ids = ctx.skips().filter(all_ids, ds)
    classes = class_names_with_bg(ds)
    conf = np.zeros((len(classes), len(classes)), np.int64)
    for image_id in tqdm(ids, desc="eval_sem_seg", dynamic_ncols=True, mininterval=2.0):
        path = ctx.paths.sem_seg_dir / f"{image_id}.png"
        if not path.is_file():
            raise FileNotFoundError(f"no pseudo mask {path}: the eval split must be inside the make_sem_seg split "
                                    "(make_cam.split / dataset.train_split); run make_sem_seg first")
        pred, gt = load_label_png(path, producer="make_sem_seg"), ds.load_gt(image_id)
        if pred.shape != gt.shape:
            raise ValueError(f"{path}: size {pred.shape} differs from the GT {gt.shape}")
        conf += confusion(pred, gt, len(classes))
    record = metric_record(split, len(ids), classes, conf)
    write_json(ctx.paths.eval_sem_seg_json, record)
    log.info("eval_sem_seg on %s (%d images): mIoU %.2f (%s) -> %s", split, len(ids), record["miou"],
             describe_errors(record["errors"]), ctx.paths.eval_sem_seg_json)
    return {"miou": record["miou"], "num_images": len(ids), "skipped_bad": len(all_ids) - len(ids)}


if __name__ == "__main__":   # steps run through the runner, which hands them their context
    raise SystemExit("run it with: python -m step eval_sem_seg --config <yaml> [--set k=v] [--force]")
