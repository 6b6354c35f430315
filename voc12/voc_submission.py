"""PASCAL VOC 2012 evaluation-server submissions (segmentation, test set).

The server expects a tar archive holding ``results/VOC2012/Segmentation/<comp>_<split>_cls/<id>.png``:
one VOC-paletted PNG per image, the image's size, class indices 0..20 (no 255). ``comp5`` is for
methods trained on VOC data only, ``comp6`` for those using outside data (ImageNet or COCO
pre-training counts as outside data).

    python -m voc12.voc_submission --pred-dir work/voc12/deeplab_pred_test --voc-root data/VOCdevkit/VOC2012 \
        --split test --out work/voc12/results
"""
from __future__ import annotations

import argparse
import logging
import tarfile
from pathlib import Path

from PIL import Image

from tool.data.palette import load_label_png, save_label_png
from tool.engine.io import atomic_path

log = logging.getLogger(__name__)

COMPS = ("comp5", "comp6")
NUM_VOC_CLASSES = 21      # background + 20


def submission_dir(results_root: str | Path, comp: str = "comp6", split: str = "test") -> Path:
    """``<results_root>/VOC2012/Segmentation/<comp>_<split>_cls`` (``results_root`` is the ``results`` folder)."""
    if comp not in COMPS:
        raise ValueError(f"deeplab_eval.voc_comp: unknown competition {comp!r}; expected one of {COMPS}")
    return Path(results_root) / "VOC2012" / "Segmentation" / f"{comp}_{split}_cls"


def write_submission(pred_dir: str | Path, ids: list[str], results_root: str | Path, *, comp: str = "comp6",
                     split: str = "test", image_sizes: dict[str, tuple[int, int]] | None = None) -> Path:
    """Write every prediction of ``ids`` from ``pred_dir/<id>.png`` into the server tree; return its folder.

    Each PNG is re-read and re-written VOC-paletted (uint8 indices), so predictions from anywhere
    come out in the server's format. ``image_sizes`` ({id: (H, W)}), when given, is checked.
    """
    out = submission_dir(results_root, comp, split)
    pred_dir = Path(pred_dir)
    missing = [i for i in ids if not (pred_dir / f"{i}.png").is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} prediction(s) missing from {pred_dir}, e.g. {missing[:3]}")
    for image_id in ids:
        pred = load_label_png(pred_dir / f"{image_id}.png")
        if pred.max(initial=0) >= NUM_VOC_CLASSES:
            raise ValueError(f"{pred_dir / (image_id + '.png')}: label {int(pred.max())} is not a VOC class index "
                             f"(0..{NUM_VOC_CLASSES - 1}); the server accepts no ignore label")
        if image_sizes is not None and pred.shape != tuple(image_sizes[image_id]):
            raise ValueError(f"{pred_dir / (image_id + '.png')}: size {pred.shape} differs from the image size "
                             f"{tuple(image_sizes[image_id])}")
        save_label_png(out / f"{image_id}.png", pred)
    log.info("VOC submission: %d PNGs in %s", len(ids), out)
    return out


def archive_submission(sub_dir: str | Path, archive: str | Path) -> Path:
    """Pack one submission folder (``.../VOC2012/Segmentation/<comp>_<split>_cls``) as ``archive`` (.tar.gz)
    with the member names the server expects (``results/VOC2012/Segmentation/<comp>_<split>_cls/<id>.png``)."""
    sub_dir, archive = Path(sub_dir), Path(archive)
    with atomic_path(archive) as tmp, tarfile.open(tmp, "w:gz") as tar:
        tar.add(sub_dir, arcname="/".join(("results", *sub_dir.parts[-3:])))
    return archive


def image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image file without decoding its pixels."""
    with Image.open(path) as img:
        return img.size[1], img.size[0]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Build the VOC 2012 segmentation submission tree from prediction PNGs.")
    p.add_argument("--pred-dir", required=True, help="folder of <id>.png predictions")
    p.add_argument("--voc-root", required=True, help="VOC2012 folder (for the split list and image sizes)")
    p.add_argument("--split", default="test")
    p.add_argument("--comp", default="comp6", choices=COMPS)
    p.add_argument("--out", required=True, help="the results folder to create")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    root = Path(args.voc_root)
    lst = root / "ImageSets" / "Segmentation" / f"{args.split}.txt"
    ids = [line.split()[0] for line in lst.read_text().splitlines() if line.strip()]
    sizes = {i: image_size(root / "JPEGImages" / f"{i}.jpg") for i in ids}
    write_submission(args.pred_dir, ids, args.out, comp=args.comp, split=args.split, image_sizes=sizes)
    sub = submission_dir(args.out, args.comp, args.split)
    archive_submission(sub, Path(args.out).parent / f"results_{args.comp}_{args.split}.tar.gz")


if __name__ == "__main__":
    main()

