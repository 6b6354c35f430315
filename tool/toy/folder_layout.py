"""The toy world as a folder dataset (``dataset.name: folder``, ``toy.layout: folder``; docs/own-data.md).

Exports a VOC-layout toy world (``tool.toy.world.generate_toy_world``, its "VOC twin") to the layout a
user's own data has (``tool.data.folder``)::

    images/<id>.jpg        the twin's JPEGImages/<id>.jpg, byte for byte
    labels.csv             image,labels: the XML names of each image's classes, ';'-separated
    classes.txt            the 20 VOC XML names in index order (dataset.question_names spells three of them
                           as VOC's questions do: configs/folder_demo.yaml)
    masks/<id>.png         the twin's SegmentationClass/<id>.png (train and val images; extra ones have none)
    splits/{train,val,train_aug}.txt   the twin's ImageSets/Segmentation lists
    toy_folder.json        the twin's parameters and counts, written last: the completion marker

so a run on it sees the same images, labels, masks and splits as one on the twin.

    python -m tool.toy.folder_layout --voc-root work/demo-data/VOC2012 --out work/demo-data/folder
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from tool.engine.io import read_json, write_bytes, write_json, write_text
from tool.toy.layout import MARKER as TWIN_MARKER
from voc12.dataset import VOC12, XML_NAMES

log = logging.getLogger(__name__)

MARKER = "toy_folder.json"
SPLITS = ("train", "val", "train_aug")


def default_twin(root: str | os.PathLike) -> Path:
    """Where ``toy.layout: folder`` generates the VOC twin when ``toy.voc_twin`` is null: ``<root>/../VOC2012``
    (next to the folder; the demo's twin is then the VOC demo's world itself)."""
    return Path(root).resolve().parent / "VOC2012"


def export_folder_world(voc_root: str | os.PathLike, out: str | os.PathLike) -> dict:
    """Write the VOC-layout toy world at ``voc_root`` as a folder dataset under ``out``; return its summary.

    Idempotent: when ``out/toy_folder.json`` records the same twin nothing is written; a non-empty ``out``
    that holds no export (or one of another world) raises FileExistsError, so nothing of a user's is lost.
    """
    voc_root, out = Path(voc_root), Path(out)
    if not (voc_root / TWIN_MARKER).is_file():
        raise FileNotFoundError(f"{voc_root / TWIN_MARKER} does not exist: generate the VOC-layout toy world first "
                                "(python -m tool.toy.world --out DIR, or toy.generate: true)")
    twin = read_json(voc_root / TWIN_MARKER)
    key = {"params": twin["params"]}
    marker = out / MARKER
    if marker.is_file():
        stored = read_json(marker)
        if {k: stored.get(k) for k in key} == key:
            log.info("toy folder: %s already exported from %s", out, voc_root)
            return stored
        raise FileExistsError(f"{out} holds an export of another toy world ({marker}); pick another folder or "
                              f"delete {out}")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty and holds no toy-world export ({MARKER} missing); pick an empty "
                              "or new folder")
    voc = VOC12(voc_root)
    lists = {s: voc.ids(s) for s in SPLITS}
    ids = sorted(set().union(*lists.values()))
    labels = voc.labels(ids)
    rows = ["image,labels"]
    for image_id, row in zip(ids, labels):
        write_bytes(out / "images" / f"{image_id}.jpg", voc.image_path(image_id).read_bytes(), durable=False)
        rows.append(f"{image_id},{';'.join(XML_NAMES[k] for k in row.nonzero()[0])}")
        if voc.has_gt(image_id):
            with open(voc.gt_path(image_id), "rb") as f:
                write_bytes(out / "masks" / f"{image_id}.png", f.read(), durable=False)
    write_text(out / "labels.csv", "\n".join(rows) + "\n")
    write_text(out / "classes.txt", "".join(f"{n}\n" for n in XML_NAMES))
    for s, v in lists.items():
        write_text(out / "splits" / f"{s}.txt", "".join(f"{i}\n" for i in v))
    summary = {**key, "counts": {"images": len(ids), "masks": sum(voc.has_gt(i) for i in ids),
                                 **{s: len(v) for s, v in lists.items()}}}
    write_json(marker, summary)          # last: the completion marker
    log.info("toy folder: exported %d images (%d with masks) from %s to %s", len(ids), summary["counts"]["masks"],
             voc_root, out)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tool.toy.folder_layout", description=__doc__.splitlines()[0])
    ap.add_argument("--voc-root", required=True, help="a VOC-layout toy world (python -m tool.toy.world --out DIR)")
    ap.add_argument("--out", required=True, help="the folder dataset to write (new or empty)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    summary = export_folder_world(args.voc_root, args.out)
    sys.stdout.write(f"folder dataset at {args.out}: {summary['counts']}\n")
    return 0


if __name__ == "__main__":
    from tool.engine.cli import run_cli
    sys.exit(run_cli(main))
