"""Step 5, ``make_cam``: export multi-scale, flip-summed CAMs (IRN's make_cam; docs/design.md §3 item 5, §4 item 7).

Reads: the source model (``make_cam.source``: ``ritc`` -> ``ritc/model.pth``, ``baseline`` ->
``cam_baseline/model.pth``) and the images of ``make_cam.split`` (default ``dataset.train_split``);
with ``make_cam.compare_baseline`` also the baseline model, for the images of ``dataset.eval_split``.
Writes: ``cam_baseline/cam/<id>.npz`` or ``cam/<id>.npz`` with ``keys`` int64 [K'] (0-based present
classes), ``cam`` [K', ceil(H/4), ceil(W/4)] and ``high_res`` [K', H, W], each max-normalised to [0, 1],
in float16 by default. Per-image resume; images sharded by rank.

CAM = ReLU(Wᵀ Z) of the image plus its flipped twin (flipped back), summed over the scales after
bilinear upsampling. Unlike the official code, the present classes are selected *before* the
upsampling (per-channel, so the maps are identical) — the expensive part shrinks from K to K' maps.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from net.resnet50_cam import CAMNet, map_official_cam_state
from tool.engine.checkpoint import load_model_file
from net.weights import load_state_dict_strict
from tool.engine.config import Config
from tool.data.cam_data import MultiScaleImages, first_item
from tool.data.registry import build_dataset, read_identity
from tool.data.imutils import normalize_on_device, strided_size, strided_up_size
from tool.engine.io import npz_readable, save_npz
from tool.engine.per_image import PerImage
from tool.engine.runtime import Context, autocast

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
    reads = {cfg.make_cam.split or cfg.dataset.train_split: ("labels",)}
    if cfg.make_cam.compare_baseline and cfg.make_cam.source != "baseline":
        reads.setdefault(cfg.dataset.eval_split, ("labels",))
    return read_identity(cfg.dataset, ctx.paths.cache_dir, reads)


@torch.no_grad()
def multiscale_cam(model: CAMNet, imgs: list[torch.Tensor], keys: torch.Tensor, size: tuple[int, int],
                   device: torch.device, precision: str = "float32") -> tuple[torch.Tensor, torch.Tensor]:
    """CAMs of the present classes ``keys`` [K'] from the uint8 scaled images ``imgs`` ([3, h_s, w_s] each).
    ``precision`` (``make_cam.precision``) applies to the network; the scales are summed in float32.

    Returns (strided [K', ceil(H/4), ceil(W/4)], high_res [K', H, W]), both max-normalised per class.
    """
    if len(keys) == 0:     # no present class (an unlabelled image in a custom list): empty maps, not a crash
        return torch.zeros(0, *strided_size(size, 4), device=device), torch.zeros(0, *size, device=device)

    def per_scale():
        for img in imgs:
            x = normalize_on_device(img.to(device).unsqueeze(0))           # [1, 3, h, w]
            x = torch.cat([x, x.flip(-1)], dim=0)                          # [2, 3, h, w]: image and its flip
            with autocast(precision, device, key="make_cam.precision"):
                cam = model.cams(x).float()                                # [2, K, h/16, w/16]
            yield cam[0] + cam[1].flip(-1)                                 # [K, h/16, w/16]

    return fuse_scales(per_scale(), keys, size)


def fuse_scales(cams: Iterable[torch.Tensor], keys: torch.Tensor, size: tuple[int, int]
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum over scales of the CAMs ``cams`` ([K, h_s, w_s] each) of the present classes ``keys``, upsampled to
    stride 4 and to the image ``size``; max-normalised. Only the K' present maps are upsampled (IRN upsamples
    all K, then keeps K'): the same maps for a fraction of the work (``bench/bench_make_cam.py``)."""
    s4, up16 = strided_size(size, 4), strided_up_size(size, 16)
    strided, high = None, None
    for cam in cams:
        cam = cam[keys].unsqueeze(0)                                       # [1, K', h_s, w_s] present only
        a = F.interpolate(cam, s4, mode="bilinear", align_corners=False)[0]
        b = F.interpolate(cam, up16, mode="bilinear", align_corners=False)[0, :, :size[0], :size[1]]
        strided = a if strided is None else strided + a
        high = b if high is None else high + b
    if strided is None or high is None:   # (was an AttributeError on None inside adaptive_max_pool2d)
        raise ValueError("make_cam.scales is empty: the CAMs of at least one input scale are needed (e.g. [1.0])")
    strided /= F.adaptive_max_pool2d(strided, (1, 1)) + 1e-5
    high /= F.adaptive_max_pool2d(high, (1, 1)) + 1e-5
    return strided, high


def load_cam_model(cfg: Config, ctx: Context, source: str, num_classes: int) -> CAMNet:
    """The CAM network of ``source`` with its trained weights, in eval mode on ``ctx.device``."""
    path = ctx.paths.cam_model(source)
    step = "train_cam" if source == "baseline" else "train_ritc"
    model = CAMNet(num_classes, pretrained=None)
    state = map_official_cam_state(load_model_file(path, f"make_cam.source={source} (step {step})", producer=step))
    load_state_dict_strict(model, state, source=str(path))
    return model.to(ctx.device).eval()


def export_cams(cfg: Config, ctx: Context, ds, source: str, split: str) -> dict:
    """Export the CAMs of ``source``'s model for the images of ``split`` (per-image resume, rank-sharded)."""
    c = cfg.make_cam
    skips = ctx.skips()
    ids = skips.filter(ds.ids(split), ds)
    labels = ds.labels(ids)
    images = PerImage(ctx, ctx.paths.cam_dir(source), "*.npz")
    model = load_cam_model(cfg, ctx, source, ds.num_classes)
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
    metrics = {"source": c.source, **export_cams(cfg, ctx, ds, c.source, c.split or cfg.dataset.train_split)}
    if c.compare_baseline and c.source != "baseline":
        base = export_cams(cfg, ctx, ds, "baseline", cfg.dataset.eval_split)
        metrics["baseline_made"] = base["made"]
    return metrics


if __name__ == "__main__":   # steps run through the runner, which hands them their context
    raise SystemExit("run it with: python -m step make_cam --config <yaml> [--set k=v] [--force]")
