"""Build VOC's ``train_aug`` list: (SBD train ∪ SBD val ∪ VOC train) − VOC val (10,582 images).

    python -m voc12.make_train_aug --voc-root data/VOCdevkit/VOC2012 --sbd-root data/benchmark_RELEASE

SBD lists are read from ``<sbd-root>/dataset/{train,val}.txt``; ids without a JPEG in the VOC
folder are dropped (with a count). The list goes to ``ImageSets/Segmentation/train_aug.txt`` of the
VOC folder unless ``--out`` says otherwise. Image-level labels of these images come from VOC's
Annotations XML, so SBD's masks are not needed; convert them to ``SegmentationClassAug/`` only if
you want to evaluate on train_aug.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tool.engine.io import write_text

log = logging.getLogger(__name__)


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"list {path} does not exist")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def build_train_aug(voc_root: Path, sbd_root: Path) -> tuple[list[str], int]:
    """(sorted train_aug ids, number of SBD/VOC ids dropped for lack of a VOC JPEG)."""
    seg = voc_root / "ImageSets" / "Segmentation"
    voc_train, voc_val = _read_list(seg / "train.txt"), set(_read_list(seg / "val.txt"))
    sbd = _read_list(sbd_root / "dataset" / "train.txt") + _read_list(sbd_root / "dataset" / "val.txt")
    ids = (set(sbd) | set(voc_train)) - voc_val
    have = {i for i in ids if (voc_root / "JPEGImages" / f"{i}.jpg").is_file()}
    return sorted(have), len(ids) - len(have)


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--voc-root", required=True, type=Path, help="the VOC2012 folder")
    p.add_argument("--sbd-root", required=True, type=Path, help="SBD's benchmark_RELEASE folder")
    p.add_argument("--out", type=Path, help="output list (default: VOC ImageSets/Segmentation/train_aug.txt)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    ids, dropped = build_train_aug(args.voc_root, args.sbd_root)
    out = args.out or args.voc_root / "ImageSets" / "Segmentation" / "train_aug.txt"
    write_text(out, "".join(f"{i}\n" for i in ids))
    log.info("wrote %d ids to %s (%d without a VOC JPEG dropped)", len(ids), out, dropped)
    return out


if __name__ == "__main__":
    main()
