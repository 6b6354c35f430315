"""Segment new images with a trained run (docs/own-data.md):

    python -m tool.predict --config <yaml> (--images <folder|image|list.txt> ... | --split <name>) --out <folder>
                           [--model deeplab|cam] [--crf] [--flip] [--msc] [--save-probs]
                           [--labels labels.csv] [--cls-threshold 0.5] [--threshold T] [--batch-size N]

``--model deeplab`` (default): the run's ``deeplab/model.pth`` (or ``deeplab_eval.model``), whole-image
inference as ``step.eval_deeplab`` (single scale or ``--msc``, optional ``--flip``), softmax, optional dense
CRF (``deeplab_eval.crf.*``). ``--model cam``: the RITC CAM network (``make_cam.source``'s model) as
``step.make_cam`` exports CAMs (``make_cam.scales``, flip-summed, docs/design.md §4 item 7), for the
classes of ``--labels`` (the folder dataset's CSV / JSON formats) or, without it, the classes whose
classifier score sigmoid(W · GAP(Z)) reaches ``--cls-threshold``; the mask is argmax([threshold, CAM_k])
as ``eval_cam`` thresholds (``--threshold``, default ``eval.cam_threshold``).

Per image ``<name>`` (its path under a given folder, or its file stem; no extension), under ``--out``:
``<name>.png`` the VOC-paletted class indices (0 background, 1..K), ``<name>.overlay.jpg`` the image with
the classes' colours blended in, with ``--save-probs`` ``<name>.npz`` (deeplab: ``probs`` float16
[K+1, H, W]; cam: ``keys`` int64 [K'], ``cam`` float16 [K', H, W], ``scores`` float32 [K]). Every file is
written atomically, the PNG last: a rerun skips images whose outputs are there (resumable). Images of
equal size go through the network together (``--batch-size``); any size, grayscale, CMYK and paletted
images are read as RGB. CPU or GPU (``device`` of the config, or ``--device``).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader
from tqdm import tqdm

from net.deeplab import build_model, load_trained, normalize_input, predict_logits
from tool.data.base import DatasetError
from tool.data.cam_data import MultiScaleImages, first_item
from tool.data.folder import IMAGE_EXTS, parse_label_file
from tool.data.imutils import normalize_on_device
from tool.data.palette import save_label_png, voc_palette
from tool.data.registry import build_dataset
from tool.data.seg_data import SegImages
from tool.engine.config import Config, load_config
from tool.engine.io import atomic_path, png_complete, read_id_list, save_npz
from tool.engine.paths import WorkPaths
from tool.engine.runtime import autocast, memory_format, resolve_device
from tool.seg.cam_infer import load_cam_model, multiscale_cam
from tool.seg.crf import crf_inference_prob, crf_kwargs

log = logging.getLogger("qa_clims.predict")

MODELS = ("deeplab", "cam")
OVERLAY_ALPHA = 0.5        # share of the class colour in the overlay (background pixels keep the image)


def collect_images(sources: Sequence[str]) -> dict[str, Path]:
    """Output name -> image file for ``--images``: folders (searched recursively; name = path under the folder
    without extension), image files (name = stem) and ``.txt`` lists (one image per line, relative to the list's
    folder, with or without extension; name = that path without extension). Two images on one name raise, naming
    both."""
    out: dict[str, Path] = {}

    def add(name: str, path: Path, where: str) -> None:
        if name in out and out[name] != path:
            raise ValueError(f"--images: {out[name]} and {path} ({where}) would both be written as {name!r}; "
                             "give them separately or rename one")
        out[name] = path

    for src in sources:
        p = Path(src)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTS and f.is_file())
            if not files:
                raise ValueError(f"--images: folder {p} holds no image ({', '.join(IMAGE_EXTS)})")
            for f in files:
                add(f.relative_to(p).with_suffix("").as_posix(), f, str(p))
        elif p.suffix.lower() == ".txt" and p.is_file():
            for n, entry in enumerate(read_id_list(p, whole_line=True), 1):
                f = p.parent / entry                       # (an absolute entry stays itself)
                if not f.is_file() and f.suffix.lower() not in IMAGE_EXTS:     # named without its extension
                    f = next((f.with_name(f.name + e) for e in IMAGE_EXTS if f.with_name(f.name + e).is_file()), f)
                if not f.is_file():
                    raise ValueError(f"--images: {p}: entry {n} ({entry!r}): {f} does not exist")
                add(f.stem if Path(entry).is_absolute() else f.relative_to(p.parent).with_suffix("").as_posix(),
                    f, str(p))
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_EXTS:
                raise ValueError(f"--images: {p} is not an image ({', '.join(IMAGE_EXTS)}) nor a .txt list")
            add(p.stem, p, str(p))
        else:
            raise ValueError(f"--images: {p} does not exist (give a folder, image files or a .txt list)")
    if not out:
        raise ValueError("--images: no image given")
    return out


class _Files:
    """The one method of a dataset description the image loaders call, over a name -> file map."""

    def __init__(self, files: dict[str, Path]):
        self.files = files

    def image_path(self, name: str) -> Path:
        return self.files[name]


def overlay(img: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3] with the palette colour of ``pred`` [H, W] blended in where it is not background."""
    colour = voc_palette()[pred].astype(np.float32)                          # [H, W, 3]
    fg = (pred > 0)[..., None]
    return np.where(fg, (1 - OVERLAY_ALPHA) * img + OVERLAY_ALPHA * colour, img).round().astype(np.uint8)


def save_outputs(out: Path, name: str, img: np.ndarray, pred: np.ndarray, probs: dict | None) -> None:
    """npz (when asked), overlay JPEG, then the PNG (last: its presence marks the image done)."""
    if probs is not None:
        save_npz(out / f"{name}.npz", **probs)
    with atomic_path(out / f"{name}.overlay.jpg", durable=False) as tmp:
        Image.fromarray(overlay(img, pred)).save(tmp, format="JPEG", quality=90)
    save_label_png(out / f"{name}.png", pred)


def is_done(out: Path, name: str, save_probs: bool) -> bool:
    return (png_complete(out / f"{name}.png") and (out / f"{name}.overlay.jpg").is_file()
            and (not save_probs or (out / f"{name}.npz").is_file()))


def _equal_size_batches(loader, batch_size: int, bar: tqdm) -> Iterator[list[dict]]:
    """Consecutive items of equal image size, up to ``batch_size`` at a time (the input is sorted by size);
    an image skipped as unreadable (``dataset.skip_bad_images``) is counted on ``bar`` and left out."""
    batch: list[dict] = []
    for item in loader:
        if item is None:
            bar.update(1)
            continue
        if batch and (len(batch) == batch_size or item["img"].shape != batch[0]["img"].shape):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def predict_deeplab(cfg: Config, args, paths: WorkPaths, device: torch.device, names: list[str], files: _Files,
                    num_classes: int, out: Path, bar: tqdm) -> float:
    """Predict ``names`` with the run's DeepLab; returns when the model was loaded (``time.time()``)."""
    c = cfg.deeplab
    model = build_model(c, num_classes)
    load_trained(model, args.weights or cfg.deeplab_eval.model or paths.deeplab_model,
                 "--weights" if args.weights else "deeplab_eval.model" if cfg.deeplab_eval.model else "train_deeplab")
    fmt = memory_format(c.channels_last)
    model.to(device, memory_format=fmt).eval()  # type: ignore[call-overload]  # torch's stub omits memory_format
    ready = time.time()
    crf = crf_kwargs(dataclasses.replace(cfg.deeplab_eval.crf, enabled=True), labels=False) if args.crf else None
    loader = DataLoader(SegImages(files, names, skip_bad=cfg.dataset.skip_bad_images), batch_size=1, shuffle=False,
                        num_workers=cfg.num_workers, collate_fn=first_item)
    for batch in _equal_size_batches(loader, args.batch_size, bar):
        imgs = np.stack([b["img"] for b in batch])                                       # uint8 [B, H, W, 3]
        x = normalize_input(torch.from_numpy(imgs).permute(0, 3, 1, 2).to(device), None, c.pretrained_format)
        x = x.contiguous(memory_format=fmt)
        with torch.no_grad(), autocast(cfg.deeplab_eval.precision, device, key="deeplab_eval.precision"):
            logits = predict_logits(model, x, args.msc, args.flip)                      # [B, K+1, h, w]
        probs = F.softmax(F.interpolate(logits.float(), size=imgs.shape[1:3], mode="bilinear", align_corners=False),
                          dim=1).cpu().numpy()                                           # [B, K+1, H, W]
        for item, p in zip(batch, probs):
            if crf is not None:
                p = crf_inference_prob(item["img"], p, **crf)
            pred = p.argmax(axis=0).astype(np.uint8)
            save_outputs(out, item["name"], item["img"], pred,
                         {"probs": p.astype(np.float16)} if args.save_probs else None)
            bar.update(1)
    return ready


def predict_cam(cfg: Config, args, paths: WorkPaths, device: torch.device, names: list[str], files: _Files,
                num_classes: int, class_index: dict[str, int], out: Path, bar: tqdm) -> float:
    """Predict ``names`` with the CAM net; returns when the model was loaded (``time.time()``)."""
    model = load_cam_model(paths, cfg.make_cam.source, num_classes, device)
    ready = time.time()
    given = read_given_labels(Path(args.labels), files, class_index) if args.labels else {}
    missing = [n for n in names if args.labels and n not in given]
    if missing:
        raise DatasetError(f"--labels {args.labels}: no labels for image(s) {missing[:3]}; add them or leave "
                           "--labels out to use the classifier's")
    threshold = cfg.eval.cam_threshold if args.threshold is None else args.threshold
    labels = np.stack([given.get(n, np.zeros(num_classes, np.float32)) for n in names])
    loader = DataLoader(MultiScaleImages(files, names, labels, cfg.make_cam.scales,
                                         skip_bad=cfg.dataset.skip_bad_images),
                        batch_size=1, shuffle=False, num_workers=cfg.num_workers, collate_fn=first_item)
    scales = cfg.make_cam.scales
    for item in loader:
        if item is None:           # unreadable, skipped (dataset.skip_bad_images): logged by the loader
            bar.update(1)
            continue
        img1 = item["imgs"][scales.index(1.0)] if 1.0 in scales else _at_scale_one(files, item["name"])  # [3, H, W]
        with torch.no_grad():
            scores = torch.sigmoid(model(normalize_on_device(img1.to(device)[None])))[0].cpu()   # [K]
        keys = (torch.nonzero(item["label"])[:, 0] if args.labels
                else torch.nonzero(scores >= args.cls_threshold)[:, 0])                   # [K'] 0-based
        size = tuple(item["size"])
        _, high = multiscale_cam(model, item["imgs"], keys.to(device), size, device,
                                 cfg.make_cam.precision)                                # [K', H, W]
        cam = high.cpu().numpy()                                                         # [K', H, W]
        full_img = img1.permute(1, 2, 0).numpy()
        if len(keys):
            scored = np.concatenate([np.full((1, *size), threshold, np.float32), cam])   # [K'+1, H, W]
            pred = np.concatenate([[0], keys.numpy() + 1])[scored.argmax(axis=0)].astype(np.uint8)
        else:
            pred = np.zeros(size, np.uint8)
        save_outputs(out, item["name"], full_img, pred,
                     {"keys": keys.numpy().astype(np.int64), "cam": cam.astype(np.float16),
                      "scores": scores.numpy().astype(np.float32)} if args.save_probs else None)
        bar.update(1)
    return ready


def _at_scale_one(files: _Files, name: str) -> torch.Tensor:
    """uint8 [3, H, W] of the image itself (when ``make_cam.scales`` lacks 1.0)."""
    from tool.data.imutils import read_image, to_chw_tensor
    return to_chw_tensor(read_image(files.image_path(name)))


def read_given_labels(path: Path, files: _Files, class_index: dict[str, int]) -> dict[str, np.ndarray]:
    """``--labels``: image name -> [K] float32 multi-hot, from a CSV / JSON in the folder dataset's formats;
    an image is named as its output name, with or without extension."""
    out = {}
    for line, entry, names in parse_label_file(path, tuple(class_index)):
        bad = [n for n in names if n not in class_index]
        if bad:
            raise DatasetError(f"{path}:{line}: class {bad[0]!r} is not one of the run's classes "
                               f"({', '.join(class_index)})")
        name = Path(entry.replace("\\", "/")).with_suffix("").as_posix() \
            if Path(entry).suffix.lower() in IMAGE_EXTS else entry
        label = np.zeros(len(class_index), np.float32)
        label[[class_index[n] for n in names]] = 1.0
        out[name] = label
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m tool.predict", description="Segment new images with a trained run.")
    p.add_argument("--config", required=True, help="the run's YAML config (its work_dir holds the trained models)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--images", nargs="+", help="image folder(s), image file(s) or .txt list(s)")
    which.add_argument("--split", help="the images of this split of the config's dataset (names: the image ids)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--model", default="deeplab", choices=MODELS)
    p.add_argument("--weights", help="deeplab: this model file instead of the run's")
    p.add_argument("--crf", action="store_true", help="deeplab: refine with the dense CRF (deeplab_eval.crf.*)")
    p.add_argument("--flip", action="store_true", help="deeplab: average with the mirrored image")
    p.add_argument("--msc", action="store_true", help="deeplab: fuse deeplab.msc_scales by max, as in training")
    p.add_argument("--labels", help="cam: the images' classes (CSV / JSON as the folder dataset's labels)")
    p.add_argument("--cls-threshold", type=float, default=0.5, help="cam without --labels: classifier score cut")
    p.add_argument("--threshold", type=float, default=None, help="cam: background threshold (eval.cam_threshold)")
    p.add_argument("--save-probs", action="store_true", help="also write <name>.npz (class probabilities / CAMs)")
    p.add_argument("--batch-size", type=int, default=4, help="deeplab: images of equal size per forward pass")
    p.add_argument("--device", help="cpu | cuda | cuda:N (default: the config's device)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    args = p.parse_args(argv)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.model == "cam" and (args.crf or args.flip or args.msc or args.weights):
        raise ValueError("--crf, --flip, --msc and --weights are for --model deeplab; the CAM net uses make_cam.scales")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config, args.set)
    paths = WorkPaths(Path(cfg.work_dir).resolve())
    device = resolve_device(args.device or cfg.device)
    ds = build_dataset(cfg.dataset, paths.cache_dir)        # the run's classes (names and count)
    files = collect_images(args.images) if args.images else {i: ds.image_path(i) for i in ds.ids(args.split)}
    out = Path(args.out)
    # equal sizes next to each other so they batch (the header gives the size; nothing is decoded)
    sizes, bad = {}, []
    for name, f in files.items():
        try:
            with Image.open(f) as im:
                sizes[name] = im.size
        except OSError as e:
            if not cfg.dataset.skip_bad_images:
                raise ValueError(f"{f}: cannot read the image ({e}); replace or remove it, or skip such images "
                                 "with --set dataset.skip_bad_images=true") from e
            log.warning("skipping unreadable image %s (dataset.skip_bad_images: true): %s", f, e)
            bad.append(name)
    files = {n: f for n, f in files.items() if n not in set(bad)}
    done = [n for n in files if is_done(out, n, args.save_probs)]
    todo = sorted((n for n in files if n not in set(done)), key=lambda n: (sizes[n], n))
    log.info("predict (%s) on %s: %d image(s), %d already done, %d to do -> %s", args.model, device, len(files),
             len(done), len(todo), out)
    t0 = ready = time.time()
    with tqdm(total=len(todo), desc=f"predict {args.model}", dynamic_ncols=True, mininterval=2.0) as bar:
        if todo and args.model == "deeplab":
            ready = predict_deeplab(cfg, args, paths, device, todo, _Files(files), ds.num_classes + 1, out, bar)
        elif todo:
            index = {n: k for k, n in enumerate(getattr(ds, "label_names", ds.class_names))}
            ready = predict_cam(cfg, args, paths, device, todo, _Files(files), ds.num_classes, index, out, bar)
    end = time.time()
    seconds = end - t0
    rate = len(todo) / (end - ready) if todo and end > ready else None     # images/s once the model is loaded
    unreadable = len(bad) + sum(1 for n in todo if not is_done(out, n, args.save_probs))   # skipped as they decoded
    summary = {"model": args.model, "images": len(files) + len(bad), "predicted": len(todo) - (unreadable - len(bad)),
               "skipped_done": len(done), "skipped_bad": unreadable,
               "seconds": round(seconds, 2), "images_per_s": round(rate, 3) if rate else None, "out": str(out)}
    sys.stdout.write(f"predict: {summary['predicted']} image(s) in {seconds:.1f} s (model load included)"
                     f"{f', {rate:.2f} images/s' if rate else ''}, {len(done)} already done"
                     f"{f', {unreadable} unreadable skipped' if unreadable else ''} -> {out}\n")
    return summary


if __name__ == "__main__":
    from tool.engine.cli import run_cli
    sys.exit(run_cli(main))
