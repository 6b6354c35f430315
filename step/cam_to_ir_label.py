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
from pathlib import Path

from tool.data.cam_io import find_cam, load_cam
from tool.data.imutils import BadImageError, read_image
from tool.data.palette import save_label_png
from tool.data.registry import build_dataset, read_identity
from tool.engine.config import Config
from tool.engine.io import png_complete
from tool.engine.per_image import PerImage
from tool.engine.runtime import Context
from tool.seg.crf import crf_kwargs
from tool.seg.ir_label import make_ir_label

log = logging.getLogger(__name__)

SECTIONS = ("dataset", "make_cam", "irn")
INPUTS = ("make_cam",)


def data_identity(cfg: Config, ctx: Context) -> dict:
    """What of the dataset it reads, for its digest (an edit reruns it): the list of the CAM split."""
    return read_identity(cfg.dataset, ctx.paths.cache_dir, {cfg.cam_split: ("ids",)})


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
    split = cfg.cam_split
    skips = ctx.skips()
    ids = skips.filter(ds.ids(split), ds)
    cam_dir = ctx.paths.cam_dir(cfg.make_cam.source)
    images = PerImage(ctx, ctx.paths.ir_label_dir, "*.png")
    crf = crf_kwargs(c.crf, labels=True)
    skip_bad = skips.enabled
    todo = images.plan(ids, lambda i: images.out_dir / f"{i}.png", png_complete)
    jobs = [(i, str(ds.image_path(i)), str(find_cam(cam_dir, i)), str(images.out_dir / f"{i}.png"), c.conf_fg_thres,
             c.conf_bg_thres, crf, skip_bad, cfg.eval.allow_pickle_cams) for i in todo]
    log.info("cam_to_ir_label: %d images of %s, %d left for rank %d (%d reused, %d damaged redone), CRF %s, "
             "%d worker(s)", len(ids), split, len(jobs), ctx.rank, images.reused, images.redone, "on" if crf else "off",
             c.workers)
    if c.workers > 0 and len(jobs) > 1:
        with mp.get_context("spawn").Pool(c.workers) as pool:
            for image_id, err in images.progress(pool.imap_unordered(_work, jobs, chunksize=4), total=len(jobs)):
                images.skipped += _note(skips, ds, image_id, err)
    else:
        for job in images.progress(jobs):
            images.skipped += _note(skips, ds, *_work(job))
    images.made = len(jobs) - images.skipped
    return {"num_images": len(ids), **images.finish()}


if __name__ == "__main__":   # steps run through the runner, which hands them their context
    raise SystemExit("run it with: python -m step cam_to_ir_label --config <yaml> [--set k=v] [--force]")
