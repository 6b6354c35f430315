"""Step 12, ``eval_deeplab``: DeepLab predictions, dense CRF and mIoU on the validation split (docs/design.md §3, §5).

Reads: ``deeplab/model.pth`` (or ``deeplab_eval.model``: ours or a deeplab-pytorch DeepLabV2) and the
images (and GT masks) of ``deeplab_eval.split`` (default ``dataset.val_split``).
Writes: ``deeplab_pred/<id>.png`` (VOC-paletted class indices; ``deeplab_pred_<split>/`` for another
split) and ``eval_deeplab.json`` (``eval_deeplab_<split>.json``): the shared metric schema. A split
without GT (VOC ``test``) gets no metrics but the evaluation-server tree
``results/VOC2012/Segmentation/<comp>_<split>_cls/<id>.png`` and its archive
``results_<comp>_<split>.tar.gz``.

Inference on the whole image, single scale or MSC (max over 1.0 / 0.75 / 0.5), optionally with the
mirror image; logits upsampled bilinearly to the image size, softmax. The dense CRF (deeplab-pytorch's
settings) runs in a worker pool on the raw uint8 image. deeplab-pytorch's ``main.py`` feeds the CRF
the mean-subtracted image cast to uint8, which wraps negative values; we do not. Per-image resume:
existing PNGs are reused and counted. The confusion matrix is accumulated image by image.
"""
from __future__ import annotations

import logging
import multiprocessing
from collections import deque

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from net.deeplab import build_model, load_trained
from tool.data.cam_data import first_item
from tool.data.palette import load_label_png, save_label_png
from tool.data.registry import build_dataset, class_names_with_bg, read_identity
from tool.data.seg_data import SegImages
from tool.engine import dist
from tool.engine.config import Config
from tool.engine.io import png_complete, write_json
from tool.engine.per_image import PerImage
from tool.engine.runtime import Context, memory_format
from tool.seg.crf import crf_kwargs
from tool.seg.deeplab_infer import argmax_labels, crf_labels, image_logits
from tool.seg.metrics import confusion, describe_errors, metric_record
from voc12.voc_submission import archive_submission, image_size, write_submission

log = logging.getLogger(__name__)

SECTIONS = ("dataset", "deeplab", "deeplab_eval")
INPUTS = ("train_deeplab",)
# local weights whose change reruns the step (their size and mtime are part of its digest)
FILES = ("deeplab_eval.model",)


def needs(cfg: Config) -> tuple[str, ...]:
    """The steps of ``INPUTS`` whose outputs this config reads (``--check``; the digest follows all of
    ``INPUTS``): train_deeplab's model, unless ``deeplab_eval.model`` names another file."""
    return () if cfg.deeplab_eval.model else INPUTS


def data_identity(cfg: Config, ctx: Context) -> dict:
    """What of the dataset it reads, for its digest (an edit reruns it): the GT masks of the evaluated split."""
    return read_identity(cfg.dataset, ctx.paths.cache_dir, {cfg.deeplab_eval.split or cfg.dataset.val_split: ("gt",)})


def finish_image(job: dict) -> np.ndarray | None:
    """Turn one image's network output into its prediction PNG; runs in the CRF worker pool.

    ``job``: ``out`` (PNG path), ``gt`` (GT PNG path or None), ``num_classes``, and either ``pred``
    (uint8 [H, W], no CRF) or ``probs`` (float32 [K, H, W]) with ``img`` (the decoded uint8 RGB
    image [H, W, 3]) and ``crf`` (its parameters). Returns the confusion [K, K] against the GT, or None.
    """
    pred = job.get("pred")
    if pred is None:
        pred = crf_labels(job["img"], job["probs"], job["crf"])
    save_label_png(job["out"], pred)
    if job["gt"] is None:
        return None
    return named_confusion(pred, job["gt"], job["num_classes"], job["out"])


def named_confusion(pred: np.ndarray, gt_path, num_classes: int, pred_path) -> np.ndarray:
    """``confusion`` against the GT PNG at ``gt_path``; a size mismatch or a GT value that is neither a class
    nor 255 raises naming both files (the image)."""
    try:
        return confusion(pred, load_label_png(gt_path), num_classes)
    except ValueError as e:
        raise ValueError(f"{pred_path} vs its GT {gt_path}: {e}") from e


def split_has_gt(ds, split: str, ids: list[str]) -> bool:
    """True when every image of ``split`` has a GT mask, False when none has; a mix is an error."""
    have = [ds.has_gt(i) for i in ids]
    if all(have):
        return True
    if not any(have):
        return False
    missing = [i for i, h in zip(ids, have) if not h]
    raise FileNotFoundError(f"deeplab_eval.split {split!r}: {len(missing)} of {len(ids)} images have no GT mask, "
                            f"e.g. {missing[:3]}; evaluate a split with GT for all images (or for none, as VOC test)")


def run(cfg: Config, ctx: Context) -> dict:
    c, e = cfg.deeplab, cfg.deeplab_eval
    ds = build_dataset(cfg.dataset, ctx.paths.cache_dir)
    split = e.split or cfg.dataset.val_split
    tag = "" if split == cfg.dataset.val_split else f"_{split}"
    skips = ctx.skips()
    ids = skips.filter(ds.ids(split), ds)
    has_gt = split_has_gt(ds, split, ids)
    submission = e.submission or (not has_gt and ds.name == "voc12")
    if e.submission and ds.name != "voc12":
        raise ValueError(f"deeplab_eval.submission: the evaluation-server layout is VOC's; dataset.name is {ds.name!r}")
    num_classes = ds.num_classes + 1
    images = PerImage(ctx, ctx.paths.deeplab_pred_dir(tag), "*.png")
    out_dir = images.out_dir

    model_path = e.model or ctx.paths.deeplab_model
    model = build_model(cfg.deeplab, num_classes)
    load_trained(model, model_path, "deeplab_eval.model" if e.model else "train_deeplab")
    fmt = memory_format(c.channels_last)
    model.to(ctx.device, memory_format=fmt).eval()  # type: ignore[call-overload]  # torch's stub omits memory_format

    todo = images.plan(ids, lambda i: out_dir / f"{i}.png", png_complete)   # torn PNGs redone
    conf = np.zeros((num_classes, num_classes), np.int64)
    if has_gt:    # predictions kept from an interrupted run count without being recomputed
        for i in sorted(set(dist.shard(ids)) - set(todo)):
            conf += named_confusion(load_label_png(out_dir / f"{i}.png"), ds.gt_path(i), num_classes,
                                    out_dir / f"{i}.png")
    log.info("eval_deeplab: %d images of %s (%d left for rank %d), %s%s, CRF %s -> %s", len(ids), split, len(todo),
             ctx.rank, "MSC" if e.msc else "single scale", " + flip" if e.flip else "",
             f"on ({e.crf_workers} workers)" if e.crf.enabled else "off", out_dir)
    loader = DataLoader(SegImages(ds, todo, skip_bad=skips), batch_size=1, shuffle=False,
                        num_workers=cfg.num_workers, collate_fn=first_item)
    crf = crf_kwargs(e.crf, labels=False)
    # spawn: the workers only run numpy/pydensecrf; never fork a process that may hold CUDA or OpenMP state
    pool = multiprocessing.get_context("spawn").Pool(e.crf_workers) if crf and e.crf_workers > 0 else None
    pending: deque = deque()
    try:
        for item in images.progress(loader):
            if item is None:
                images.skipped += 1
                continue
            img = item["img"]                                                     # uint8 [H, W, 3]
            logits = image_logits(model, img, cfg, ctx.device, fmt)[None]          # [1, K, H, W]
            job = {"out": str(out_dir / f"{item['name']}.png"), "num_classes": num_classes,
                   "gt": str(ds.gt_path(item["name"])) if has_gt else None}
            if crf:
                job.update(img=img, crf=crf, probs=F.softmax(logits, dim=1)[0].cpu().numpy())
            else:
                job["pred"] = argmax_labels(logits[0])
            if pool is None:
                conf += _or_zero(finish_image(job))
            else:
                pending.append(pool.apply_async(finish_image, (job,)))
                while len(pending) > 2 * e.crf_workers:      # bound the probability maps in flight
                    conf += _or_zero(pending.popleft().get())
            images.made += 1
        while pending:
            conf += _or_zero(pending.popleft().get())
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    totals = torch.from_numpy(conf)                  # [K, K] int64, summed over the ranks in place
    counts = images.finish(extra=totals)
    conf, skipped_all = totals.numpy(), counts["skipped_bad"]
    if not ctx.is_main:
        return {}

    classes = class_names_with_bg(ds)
    if has_gt:
        record = metric_record(split, len(ids) - skipped_all, classes, conf)
    else:
        record = {"split": split, "num_images": len(ids) - skipped_all, "classes": classes, "miou": None, "iou": None,
                  "note": f"split {split!r} has no GT: predictions only"}
    record.update({"model": str(model_path), "msc": e.msc, "flip": e.flip, "crf": e.crf.enabled,
                   "pred_dir": str(out_dir),
                   "skipped_bad": skipped_all})
    out = {"split": split, "num_images": record["num_images"], "predicted": counts["made"],
           "reused": counts["reused"], "redone": counts["redone"], "skipped_bad": skipped_all,
           "images_per_s": counts["images_per_s"]}
    if has_gt:
        out["miou"] = record["miou"]
    if submission:
        sizes = {i: image_size(ds.image_path(i)) for i in ids}
        sub = write_submission(out_dir, ids, ctx.paths.voc_results_dir, comp=e.voc_comp, split=split,
                               image_sizes=sizes)
        archive = archive_submission(sub, ctx.paths.root / f"results_{e.voc_comp}_{split}.tar.gz")
        record.update({"submission_dir": str(sub), "submission_archive": str(archive)})
        out["submission"] = str(archive)
    write_json(ctx.paths.eval_deeplab_json(tag), record)
    if has_gt:
        log.info("eval_deeplab on %s (%d images): mIoU %.2f (%s) -> %s", split, record["num_images"], record["miou"],
                 describe_errors(record["errors"]), ctx.paths.eval_deeplab_json(tag))
    return out


def _or_zero(conf: np.ndarray | None) -> np.ndarray | int:
    return 0 if conf is None else conf


if __name__ == "__main__":   # steps run through the runner, which hands them their context
    raise SystemExit("run it with: python -m step eval_deeplab --config <yaml> [--set k=v] [--force]")

