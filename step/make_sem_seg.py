"""Step 9, ``make_sem_seg``: pseudo masks by a random walk of the CAMs over IRNet's boundary map (IRN's
``make_sem_seg_labels``; docs/design.md §3, §5, §7).

Reads: ``irn/model.pth``, the stride-4 CAMs (``cam`` arrays of ``make_cam.source``'s files) and the
images of the CAM split (``make_cam.split`` or ``dataset.train_split``).
Writes: ``sem_seg/<id>.png`` uint8 class indices (0 background, 1..C), VOC palette.

Per image: boundary probabilities B from the image and its mirror; the CAM rows, damped by (1 − B),
walk 2^exp_times steps of the transition built from affinities (1 − max B along a path)^β within
radius 5 — a sparse transition applied to the K rows, never the official dense HW×HW matrix
squared exp_times times; then ×4 upsampling, division by the global max, a constant background plane
``irn.sem_seg_bg_thres``, argmax through the keys. Per-image resume; images sharded by rank.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from net.random_walk import boundary_map, cams_to_edge_size, random_walk, sem_seg_from_rw
from net.resnet50_irn import EdgeDisplacement
from net.weights import load_state_dict_strict
from tool.data.cam_data import MultiScaleImages, first_item
from tool.data.cam_io import find_cam, load_cam
from tool.data.imutils import normalize_on_device
from tool.data.palette import save_label_png
from tool.data.registry import build_dataset, read_identity
from tool.engine.checkpoint import load_model_file
from tool.engine.config import Config, IrnConfig
from tool.engine.io import png_complete
from tool.engine.per_image import PerImage
from tool.engine.runtime import Context, autocast

log = logging.getLogger(__name__)

SECTIONS = ("dataset", "make_cam", "irn")
INPUTS = ("make_cam", "train_irn")


def data_identity(cfg: Config, ctx: Context) -> dict:
    """What of the dataset it reads, for its digest (an edit reruns it): the labels of the CAM split."""
    return read_identity(cfg.dataset, ctx.paths.cache_dir, {cfg.cam_split: ("labels",)})


@torch.no_grad()
def pseudo_mask(model, x: torch.Tensor, keys: np.ndarray, cams: torch.Tensor, c: IrnConfig) -> tuple[np.ndarray, float]:
    """The pseudo mask uint8 [H, W] of the normalised image x [1, 3, H, W] from its stride-4 CAMs [K', h, w] of
    the classes ``keys`` [K'], and the random walk's seconds. With ``irn.infer_scale`` s the boundary map is
    of the image ×s at stride 4, so the walked CAMs are upsampled by 4 / s back to the image."""
    with autocast(c.precision, x.device, key="irn.precision"):     # the walk below stays float32
        edge = boundary_map(model, x, c.infer_scale).float()                       # [h', w'] boundary probs
    cams = cams_to_edge_size(cams, (edge.shape[0], edge.shape[1]), c.infer_scale)  # [K', h', w']
    t1 = time.time()
    rw = random_walk(cams, edge, beta=c.beta, exp_times=c.exp_times, radius=c.radius_infer,
                     cpu_threads=c.walk_threads)                                   # [K', h', w']
    seconds = time.time() - t1
    return sem_seg_from_rw(rw, keys, (x.shape[-2], x.shape[-1]), bg_thres=c.sem_seg_bg_thres,
                           stride=4 // c.infer_scale), seconds


@torch.no_grad()
def run(cfg: Config, ctx: Context) -> dict:
    c = cfg.irn
    ds = build_dataset(cfg.dataset, ctx.paths.cache_dir)
    split = cfg.cam_split
    skips = ctx.skips()
    ids = skips.filter(ds.ids(split), ds)
    labels = ds.labels(ids)
    cam_dir = ctx.paths.cam_dir(cfg.make_cam.source)
    images = PerImage(ctx, ctx.paths.sem_seg_dir, "*.png")
    model = EdgeDisplacement(crop_size=c.train.crop_size, displacement=False)   # the walk reads the boundary map alone
    load_state_dict_strict(model, load_model_file(ctx.paths.irn_model, "make_sem_seg (step train_irn)",
                                                  producer="train_irn"),
                           source=str(ctx.paths.irn_model))
    model.to(ctx.device).eval()
    mine = images.plan(range(len(ids)), lambda i: images.out_dir / f"{ids[i]}.png", png_complete)
    log.info("make_sem_seg: %d images of %s, %d left for rank %d (%d reused, %d damaged redone), beta %g, 2^%d "
             "steps, radius %d", len(ids), split, len(mine), ctx.rank, images.reused, images.redone, c.beta,
             c.exp_times, c.radius_infer)
    data = MultiScaleImages(ds, [ids[i] for i in mine], labels[mine], (1.0,), skip_bad=skips)
    loader = DataLoader(data, batch_size=1, num_workers=cfg.num_workers, collate_fn=first_item)
    walk_s = 0.0
    for item in images.progress(loader):
        if item is None:
            images.skipped += 1
            continue
        x = normalize_on_device(item["imgs"][0].to(ctx.device).unsqueeze(0))      # [1, 3, H, W]
        keys, cams = load_cam(find_cam(cam_dir, item["name"]), "cam", producer="make_cam",
                              allow_pickle=cfg.eval.allow_pickle_cams)                # [K'], [K', h, w]
        mask, seconds = pseudo_mask(model, x, keys, torch.from_numpy(cams).to(ctx.device), c)
        walk_s += seconds
        save_label_png(images.out_dir / f"{item['name']}.png", mask)
        images.made += 1
    counts = images.finish()
    log.info("make_sem_seg: %d masks (%s images/s; random walk %.1f s on rank %d)", counts["made"],
             counts["images_per_s"], walk_s, ctx.rank)
    return {"num_images": len(ids), **counts, "walk_seconds": round(walk_s, 2)}


if __name__ == "__main__":   # steps run through the runner, which hands them their context
    raise SystemExit("run it with: python -m step make_sem_seg --config <yaml> [--set k=v] [--force]")
