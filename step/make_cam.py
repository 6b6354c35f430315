"""Step 5, ``make_cam``: export multi-scale, flip-summed CAMs (IRN's make_cam; docs/design.md §3 item 5, §4 item 7).

Reads: the source model (``make_cam.source``: ``ritc`` -> ``ritc/model.pth``, ``baseline`` ->
``cam_baseline/model.pth``) and the images of ``make_cam.split`` (default ``dataset.train_split``);
with ``make_cam.compare_baseline`` also the baseline model, for the images of ``dataset.eval_split``.
Writes: ``cam_baseline/cam/<id>.npz`` or ``cam/<id>.npz`` with ``keys`` int64 [K'] (0-based present
classes), ``cam`` [K', ceil(H/4), ceil(W/4)] and ``high_res`` [K', H, W], each max-normalised to [0, 1],
in float16 by default. Per-image resume; images sharded by rank.

The CAMs (multi-scale, flip-summed, present classes only) and the model loading are ``tool.seg.cam_infer``'s,
shared with ``tool.predict``.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
from torch.utils.data import DataLoader

from tool.data.cam_data import MultiScaleImages, first_item
from tool.data.registry import build_dataset, read_identity
from tool.engine.config import Config
from tool.engine.io import npz_readable, save_npz
from tool.engine.per_image import PerImage
from tool.engine.runtime import Context
from tool.seg.cam_infer import load_cam_model, multiscale_cam

log = logging.getLogger(__name__)

SECTIONS = ("dataset", "cam", "make_cam")
INPUTS = ("train_cam", "train_ritc")


def needs(cfg: Config) -> tuple[str, ...]:
    """The steps of ``INPUTS`` whose outputs this config reads (``--check``; the digest follows all of
    ``INPUTS``): the model of ``make_cam.source`` (and the baseline's for ``compare_baseline``)."""
    c = cfg.make_cam
    if c.source == "baseline":
        return ("train_cam",)
    return ("train_cam", "train_ritc") if c.compare_baseline else ("train_ritc",)


CAM_KEYS = ("keys", "cam", "high_res")


def data_identity(cfg: Config, ctx: Context) -> dict:
    """What of the dataset it reads, for its digest (an edit reruns it): the labels of the CAM split (and of
    ``dataset.eval_split`` for the baseline's CAMs)."""
    reads = {cfg.cam_split: ("labels",)}
    if cfg.make_cam.compare_baseline and cfg.make_cam.source != "baseline":
        reads.setdefault(cfg.dataset.eval_split, ("labels",))
    return read_identity(cfg.dataset, ctx.paths.cache_dir, reads)


def export_cams(cfg: Config, ctx: Context, ds, source: str, split: str) -> dict:
    """Export the CAMs of ``source``'s model for the images of ``split`` (per-image resume, rank-sharded)."""
    c = cfg.make_cam
    skips = ctx.skips()
    ids = skips.filter(ds.ids(split), ds)
    labels = ds.labels(ids)
    images = PerImage(ctx, ctx.paths.cam_dir(source), "*.npz")
    model = load_cam_model(ctx.paths, source, ds.num_classes, ctx.device)
    # per-image resume: a CAM that no longer loads (torn) is made again
    mine = images.plan(range(len(ids)), lambda i: images.out_dir / f"{ids[i]}.npz", lambda p: npz_readable(p, CAM_KEYS))
    log.info("make_cam (%s): %d images of %s, %d left for rank %d (%d reused, %d damaged redone), scales %s -> %s",
             source, len(ids), split, len(mine), ctx.rank, images.reused, images.redone, c.scales, images.out_dir)
    data = MultiScaleImages(ds, [ids[i] for i in mine], labels[mine], c.scales, skip_bad=skips)
    loader = DataLoader(data, batch_size=1, shuffle=False, num_workers=cfg.num_workers, collate_fn=first_item)
    dtype = np.float16 if c.dtype == "float16" else np.float32
    for item in images.progress(loader):
        if item is None:
            images.skipped += 1
            continue
        keys = torch.nonzero(item["label"])[:, 0]                       # [K'] 0-based present classes
        strided, high = multiscale_cam(model, item["imgs"], keys.to(ctx.device), tuple(item["size"]), ctx.device,
                                       c.precision)
        save_npz(images.out_dir / f"{item['name']}.npz", keys=keys.numpy().astype(np.int64),
                 cam=strided.cpu().numpy().astype(dtype), high_res=high.cpu().numpy().astype(dtype))
        images.made += 1
    counts = images.finish()
    log.info("make_cam (%s): %d CAMs (%s images/s)", source, counts["made"], counts["images_per_s"])
    return {"num_images": len(ids), **counts}


def run(cfg: Config, ctx: Context) -> dict:
    c = cfg.make_cam
    ds = build_dataset(cfg.dataset, ctx.paths.cache_dir)
    metrics = {"source": c.source, **export_cams(cfg, ctx, ds, c.source, cfg.cam_split)}
    if c.compare_baseline and c.source != "baseline":
        base = export_cams(cfg, ctx, ds, "baseline", cfg.dataset.eval_split)
        metrics["baseline_made"] = base["made"]
    return metrics


if __name__ == "__main__":   # steps run through the runner, which hands them their context
    raise SystemExit("run it with: python -m step make_cam --config <yaml> [--set k=v] [--force]")
