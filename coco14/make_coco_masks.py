"""Render the COCO 2014 ground-truth semantic masks from the instances JSON with pycocotools, once.

    python -m coco14.make_coco_masks --root data/COCO [--splits train2014 val2014] [--crowd background|ignore]
                                   [--only LIST] [--workers N] [--force] [--out DIR]

Writes ``<root>/mask/<train2014|val2014>/<COCO id>.png`` (greyscale uint8, the naming and the values the
official CLIMS / QA-CLIMS loaders read with ``imageio``): 0 background, 1..80 the class index of
``coco14.CATEGORY_TO_INDEX``. One PNG per image of the annotation file, an image without annotations
gets an all-background mask.

Default (``--crowd background``): the masks the WSSS papers evaluated on (CLIMS's ``annToMask``
rendering): the non-crowd annotations of an image are painted in annotation-id order, a later one
overwriting an earlier one where they overlap; crowd regions stay background; no ignore label.
``--crowd ignore`` marks the crowd pixels that no non-crowd instance covers 255 (ignored by the
metrics) instead. Image-level labels (``coco14``) include crowd categories while these masks do not.

Resumable: images whose PNG exists are skipped; every PNG is written atomically. The folder remembers
its crowd mode (``.make_coco_masks.json``); rendering another mode into it needs ``--force``.
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from tqdm import tqdm

if TYPE_CHECKING:
    from pycocotools import _EncodedRLE  # a compressed RLE {"size": [h, w], "counts": str | bytes} (stub-only)

from coco14.dataset import BASE_SPLITS, category_index, read_list_file
from tool.data.base import DatasetError
from tool.engine.io import atomic_path, read_json, write_json

log = logging.getLogger(__name__)

CROWD_MODES = ("background", "ignore")
IGNORE = 255
STAMP = ".make_coco_masks.json"


def ann_to_rle(segmentation: list | dict, h: int, w: int) -> _EncodedRLE:
    """A COCO segmentation (polygons, uncompressed or compressed RLE) as one compressed RLE (``COCO.annToRLE``)."""
    if isinstance(segmentation, list):       # polygons: one object may have several parts, merged
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, h, w))
    if isinstance(segmentation.get("counts"), list):   # uncompressed RLE (crowd annotations)
        # the stub's _EncodedRLE has str | bytes counts only; frPyObjects also takes a list of run lengths
        return mask_utils.frPyObjects(segmentation, h, w)  # type: ignore[call-overload]
    return cast("_EncodedRLE", segmentation)   # already compressed, as read from the JSON


def ann_to_mask(segmentation: list | dict, h: int, w: int) -> np.ndarray:
    """The binary mask of one annotation: uint8 [h, w] in {0, 1} (``COCO.annToMask``)."""
    rle = ann_to_rle(segmentation, h, w)
    with warnings.catch_warnings():
        # pycocotools' Cython mask object predates numpy 2's __array__(copy=...) protocol: harmless, once per call
        warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept a copy keyword",
                                category=DeprecationWarning)
        return mask_utils.decode(rle)


def render_semantic_mask(anns: Iterable[dict], h: int, w: int, crowd: str = "background") -> np.ndarray:
    """The semantic mask of one image from its annotations: uint8 [h, w].

    Non-crowd annotations are painted in annotation-id order with their class index 1..80 (later
    ones overwrite earlier ones), the rest is 0. ``crowd="ignore"`` then sets the crowd pixels still
    at 0 to 255; ``"background"`` leaves them 0 (the papers' masks).
    """
    if crowd not in CROWD_MODES:
        raise ValueError(f"crowd: {crowd!r} is not one of {CROWD_MODES}")
    out = np.zeros((h, w), np.uint8)
    crowd_px = np.zeros((h, w), bool)
    for ann in sorted(anns, key=lambda a: int(a["id"])):
        m = ann_to_mask(ann["segmentation"], h, w) > 0
        if ann.get("iscrowd", 0):
            crowd_px |= m
        else:
            out[m] = category_index(ann["category_id"], f"annotation {ann['id']}")
    if crowd == "ignore":
        out[crowd_px & (out == 0)] = IGNORE
    return out


def save_gray_png(path: str | os.PathLike, label: np.ndarray) -> None:
    """Write a uint8 [H, W] label map as a greyscale (L) PNG, atomically.

    Greyscale rather than VOC-paletted: the official COCO loaders read masks with ``imageio``, which
    turns a paletted PNG into RGB; ``tool.data.palette.load_label_png`` reads both.
    """
    if label.dtype != np.uint8 or label.ndim != 2:
        raise ValueError(f"{path}: label must be a uint8 [H, W] array, got {label.dtype} {label.shape}")
    with atomic_path(path, durable=False) as tmp:     # one of thousands: checked on resume instead
        Image.fromarray(label, mode="L").save(tmp, format="PNG")


def _render_task(task: tuple[str, int, int, list[dict], str]) -> str:
    path, h, w, anns, crowd = task
    save_gray_png(path, render_semantic_mask(anns, h, w, crowd))
    return path


def _prepare_folder(out: Path, crowd: str, force: bool, source: Path) -> None:
    """Check (or clear, with ``force``) a mask folder before rendering ``crowd`` masks into it."""
    out.mkdir(parents=True, exist_ok=True)
    for tmp in out.glob(".*.tmp*"):       # left by a killed run
        tmp.unlink(missing_ok=True)
    stamp = out / STAMP
    old = read_json(stamp).get("crowd") if stamp.is_file() else None
    pngs = list(out.glob("*.png"))
    stale = (old is not None and old != crowd) or (old is None and pngs)
    if stale and not force:
        made = f"made with --crowd {old}" if old else "not made by this tool (no stamp)"
        raise FileExistsError(f"{out} holds {len(pngs)} mask(s) {made}; pass --force to re-render them with "
                              f"--crowd {crowd}, or --out another folder")
    if force and pngs:
        log.info("make_coco_masks: --force: removing %d mask(s) in %s", len(pngs), out)
        for p in pngs:
            p.unlink()
    write_json(stamp, {"crowd": crowd, "annotations": str(source)})


def make_masks(root: str | os.PathLike, *, splits: Sequence[str] = BASE_SPLITS, crowd: str = "background",
               only: Sequence[str] | None = None, workers: int = 0, force: bool = False,
               out_dir: str | os.PathLike | None = None, progress: bool = True) -> dict[str, dict[str, int]]:
    """Render the masks of ``splits`` (release splits) under ``out_dir`` (default ``<root>/mask``).

    ``only``: image stems or integer COCO ids to restrict to (e.g. an evaluation subset). ``workers``
    > 0 renders in that many processes. Returns ``{split: {"images", "rendered", "skipped"}}``.
    """
    if crowd not in CROWD_MODES:
        raise ValueError(f"--crowd: {crowd!r} is not one of {CROWD_MODES}")
    root = Path(root)
    out_root = Path(out_dir) if out_dir is not None else root / "mask"
    # a COCO id may be written zero-padded (CLIMS' lists): compare ids as plain integers
    wanted = {str(int(e)) if e.isdigit() else e for e in only} if only is not None else None
    found: set[str] = set()
    summary = {}
    for base in splits:
        if base not in BASE_SPLITS:
            raise ValueError(f"--splits: unknown split {base!r}; expected {BASE_SPLITS}")
        path = root / "annotations" / f"instances_{base}.json"
        if not path.is_file():
            raise DatasetError(f"{path} does not exist; unpack annotations_trainval2014.zip under "
                               f"{root / 'annotations'}")
        log.info("make_coco_masks: reading %s", path)
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        anns_of: dict[int, list[dict]] = {}
        for ann in data.get("annotations", []):
            anns_of.setdefault(int(ann["image_id"]), []).append(ann)
        images = sorted(data.get("images", []), key=lambda im: int(im["id"]))
        if wanted is not None:
            keep = [im for im in images
                    if os.path.splitext(im["file_name"])[0] in wanted or str(int(im["id"])) in wanted]
            found |= {os.path.splitext(im["file_name"])[0] for im in keep} | {str(int(im["id"])) for im in keep}
            images = keep
        out = out_root / base
        _prepare_folder(out, crowd, force, path)
        todo = [(str(out / f"{int(im['id'])}.png"), int(im["height"]), int(im["width"]),
                 anns_of.get(int(im["id"]), []), crowd) for im in images
                if not (out / f"{int(im['id'])}.png").is_file()]
        del data
        log.info("make_coco_masks: %s: %d image(s), %d to render -> %s", base, len(images), len(todo), out)
        bar = tqdm(total=len(todo), desc=f"masks {base}", disable=not progress or not todo, dynamic_ncols=True,
                   mininterval=2.0)
        if workers > 0 and len(todo) > 1:
            with multiprocessing.get_context().Pool(workers) as pool:
                for _ in pool.imap_unordered(_render_task, todo, chunksize=32):
                    bar.update()
        else:
            for t in todo:
                _render_task(t)
                bar.update()
        bar.close()
        summary[base] = {"images": len(images), "rendered": len(todo), "skipped": len(images) - len(todo)}
    if wanted is not None:
        missing = sorted(wanted - found)
        if missing:
            raise DatasetError(f"--only: {len(missing)} image(s) are in none of the annotation files of "
                               f"{list(splits)}, "
                               f"e.g. {missing[:3]}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """CLI; returns the exit status (2 on a user error, with the message logged)."""
    ap = argparse.ArgumentParser(prog="python -m coco14.make_coco_masks", description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="the COCO 2014 folder (annotations/ inside)")
    ap.add_argument("--splits", nargs="+", default=list(BASE_SPLITS), choices=BASE_SPLITS)
    ap.add_argument("--crowd", default="background", choices=CROWD_MODES,
                    help="crowd regions: background (the papers' masks, default) or ignore (255)")
    ap.add_argument("--only", default=None, help="a list file of image stems or COCO ids to render (default: all)")
    ap.add_argument("--workers", type=int, default=0, help="render in this many processes (default: in-process)")
    ap.add_argument("--force", action="store_true", help="re-render masks already there (other mode, foreign files)")
    ap.add_argument("--out", default=None, help="mask folder (default: <root>/mask)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        only = read_list_file(Path(args.only)) if args.only else None
        summary = make_masks(args.root, splits=args.splits, crowd=args.crowd, only=only, workers=args.workers,
                             force=args.force, out_dir=args.out)
    except (DatasetError, FileExistsError, FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        return 2
    log.info("make_coco_masks: %s", summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
