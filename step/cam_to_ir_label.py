"""Step 7, ``cam_to_ir_label``: IR labels from the CAMs (IRN's ``cam_to_ir_label``; docs/design.md §3, §5).

Reads: ``cam/<id>.npz`` (``make_cam.source``'s CAMs, ``high_res``) and the images of ``make_cam.split``
(default ``dataset.train_split``).
Writes: ``ir_label/<id>.png`` uint8: 0 confident background, 1..C confident class, 255 uncertain.

Confident foreground: argmax of the CAMs with a background plane at ``irn.conf_fg_thres`` (0.30);
confident background: the same at ``irn.conf_bg_thres`` (0.10); each refined by a dense CRF on the
image (``irn.crf_*``) and combined (foreground where the first says a class, background where both
say background, uncertain elsewhere). A pool of ``irn.workers`` processes; per-image resume;
images sharded by rank.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import time
from pathlib import Path

import torch
from tqdm import tqdm

from tool import dist
from tool.cam_io import find_cam, load_cam
from tool.config import Config, IrnConfig
from tool.datasets import build_dataset
from tool.imutils import BadImageError, read_image
from tool.ir_label import make_ir_label
from tool.io import png_complete
from tool.palette import save_label_png
from tool.runner import prepare_output_dir, resume_plan, skips_of, step_digest
from tool.runtime import Context

log = logging.getLogger(__name__)

SECTIONS = ("dataset", "make_cam", "irn")
INPUTS = ("make_cam",)


def crf_settings(c: IrnConfig) -> dict | None:
    """The CRF keyword arguments of ``tool.crf.crf_inference_label`` from the config, or None (CRF off)."""
    if not c.crf:
        return None
    return {"t": c.crf_t, "gt_prob": c.crf_gt_prob, "gaussian_sxy": c.crf_gaussian_sxy,
            "gaussian_compat": c.crf_gaussian_compat, "bilateral_sxy": c.crf_bilateral_sxy,
            "bilateral_srgb": c.crf_bilateral_srgb, "bilateral_compat": c.crf_bilateral_compat}


def _work(job: tuple) -> tuple[str, str | None]:
    """One image: (image path, CAM path, output path, thresholds, CRF) -> (image id, error or None)."""
    image_id, image_path, cam_path, out_path, fg, bg, crf, skip_bad, allow_pickle = job
    try:
        img = read_image(image_path)
    except BadImageError as e:
        if skip_bad:
            return image_id, str(e)
        raise
    keys, high = load_cam(Path(cam_path), "high_res", producer="make_cam", allow_pickle=allow_pickle)
    save_label_png(out_path, make_ir_label(img, keys, high, fg_thres=fg, bg_thres=bg, crf=crf))
    return image_id, None


def _note(skips, ds, image_id: str, err: str | None) -> int:
    """Record a skipped image in the run's skip list; 1 if it was skipped."""
    if err is None:
        return 0
    log.warning("skipping unreadable image %s (dataset.skip_bad_images: true): %s", image_id, err)
    skips.record(image_id, ds.image_path(image_id), err)
    return 1


def run(cfg: Config, ctx: Context) -> dict:
    c = cfg.irn
    ds = build_dataset(cfg.dataset, ctx.paths.cache_dir)
    split = cfg.make_cam.split or cfg.dataset.train_split
    skips = skips_of("cam_to_ir_label", cfg, ctx)
    ids = skips.filter(ds.ids(split), ds)
    cam_dir = ctx.paths.cam_dir(cfg.make_cam.source)
    out_dir = prepare_output_dir(ctx.paths.ir_label_dir, step_digest("cam_to_ir_label", cfg, ctx), ctx.force, "*.png")
    crf = crf_settings(c)
    skip_bad = skips.enabled
    todo, reused, redone = resume_plan(dist.shard(ids), lambda i: out_dir / f"{i}.png", png_complete)
    jobs = [(i, str(ds.image_path(i)), str(find_cam(cam_dir, i)), str(out_dir / f"{i}.png"), c.conf_fg_thres,
             c.conf_bg_thres, crf, skip_bad, cfg.eval.allow_pickle_cams) for i in todo]
    log.info("cam_to_ir_label: %d images of %s, %d left for rank %d (%d reused, %d damaged redone), CRF %s, "
             "%d worker(s)", len(ids), split, len(jobs), ctx.rank, reused, redone, "on" if crf else "off", c.workers)
    t0, skipped = time.time(), 0
    bar = tqdm(total=len(jobs), desc="cam_to_ir_label", disable=not ctx.is_main, dynamic_ncols=True, mininterval=2.0)
    if c.workers > 0 and len(jobs) > 1:
        with mp.get_context("spawn").Pool(c.workers) as pool:
            for image_id, err in pool.imap_unordered(_work, jobs, chunksize=4):
                skipped += _note(skips, ds, image_id, err)
                bar.update(1)
    else:
        for job in jobs:
            skipped += _note(skips, ds, *_work(job))
            bar.update(1)
    bar.close()
    seconds = time.time() - t0
    counts = torch.tensor([len(jobs) - skipped, skipped, reused, redone], dtype=torch.float64)
    dist.all_reduce_sum(counts)
    made, skipped, reused, redone = (int(v) for v in counts)
    if skipped:
        log.warning("cam_to_ir_label: %d unreadable image(s) skipped", skipped)
    return {"num_images": len(ids), "made": made, "reused": reused, "redone": redone, "skipped_bad": skipped,
            "images_per_s": round(made / seconds, 3) if made and seconds > 0 else None}


if __name__ == "__main__":
    from tool.runner import step_main
    step_main("cam_to_ir_label")
