"""A generated "toy world" in exact PASCAL VOC 2012 (or MS COCO 2014) layout, for running the pipeline offline.

No real dataset can be downloaded on CI machines, so every step is tested on images drawn here with
numpy + OpenCV. The folder written under ``root`` looks like ``VOCdevkit/VOC2012``::

    JPEGImages/<id>.jpg              RGB, JPEG quality 95, ids toy_000001, toy_000002, ...
    Annotations/<id>.xml             VOC XML: one <object> per object (XML class name, pose, truncated,
                                     difficult=0, 1-based bndbox); some persons carry a <part> (head)
    SegmentationClass/<id>.png       VOC-paletted PNG: 0 background, 1..20 class, 255 void border
                                     (train and val images only; "extra" images are SBD-like: no PNG)
    ImageSets/Segmentation/{train,val,train_aug}.txt
    ToyMeta/<id>.json                what was drawn: {"scene", "objects": [{"class" (XML name), "class_name"
                                     (question spelling), "subtype", "bbox", "color"}], "things"}; objects in
                                     drawing order (later ones occlude earlier ones), bbox = [x0, y0, x1, y1]
                                     of the visible pixels, 0-based with exclusive ends (XML = x0 + 1, ..., x1)
    toy_world.json                   parameters and counts, written last: the completion marker

The statistics matter more than the looks: every class has its own shape, colour and texture and 2-3
visibly different sub-types, and lives mostly on one scene (a train on rails, a boat on water, an
aeroplane in the sky, a cow on grass, a sofa in a room ...). With probability ``scene_correlation`` an
image's scene is its first object's scene, so a plain CAM classifier can use the scene as a shortcut
(activating rails for "train", water for "boat") -- the failure QA-CLIMS's background questions fix.
The ``ToyMeta`` sidecars hold the answers a toy VQA model is trained on (sub-types and aliases answer
"what kind of X", scene and things answer the background questions).

``write_coco_layout`` (``--layout coco``) writes the same drawings in MS COCO 2014 layout instead:
``train2014/``, ``val2014/`` JPEGs, ``annotations/instances_{train,val}2014.json`` (polygon / RLE
segmentations with the COCO category ids of the VOC classes, a crowd annotation and images without
annotations in each split) and ``mask/`` rendered from that JSON by ``coco14.make_coco_masks``.

Everything is a pure function of the seed and the parameters: image ``i`` draws from its own
``numpy.random.Generator`` seeded with ``(seed, i)``, so two runs write byte-identical files.
"""
from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence

from tool.toy.coco_layout import write_coco_layout
from tool.toy.layout import LAYOUTS
from tool.toy.voc_layout import write_voc_layout

log = logging.getLogger(__name__)

def generate_toy_world(root: str | os.PathLike, *, seed: int = 0, num_train: int = 80, num_val: int = 20,
                       num_extra_aug: int = 40, image_size: Sequence[int] = (128, 160),
                       classes: Sequence[str] | None = None, scene_correlation: float = 0.85,
                       max_objects: int = 3, void_width: int | None = None, layout: str = "voc") -> dict:
    """Write a toy world in VOC 2012 layout under ``root`` and return its summary (see module docstring).

    ``layout="coco"`` writes the same drawings in COCO 2014 layout instead (``write_coco_layout``).

    Ids are ``toy_000001``...: first the ``num_train`` train images, then ``num_val`` val images, then
    ``num_extra_aug`` extra (SBD-like: XML + JPEG, no SegmentationClass PNG) images; ``train_aug.txt`` is
    train + extra. ``classes`` restricts the world to some XML names (class indices stay the VOC ones).
    ``void_width`` is the width in pixels of the 255 border around each object (default min(H, W) / 64).

    Idempotent: when ``root/toy_world.json`` holds the same parameters nothing is written and the stored
    summary is returned; other parameters, or a non-empty folder that is not ours, raise FileExistsError.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"toy world: layout must be one of {LAYOUTS}, got {layout!r}")
    writer = write_coco_layout if layout == "coco" else write_voc_layout
    return writer(root, seed=seed, num_train=num_train, num_val=num_val, num_extra_aug=num_extra_aug,
                  image_size=image_size, classes=classes, scene_correlation=scene_correlation,
                  max_objects=max_objects, void_width=void_width)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m tool.toy.world --out DIR --seed 0 --num-train N --num-val N --num-extra-aug N --size H W
    [--layout voc|coco] [--num-empty N]``."""
    ap = argparse.ArgumentParser(prog="python -m tool.toy.world", description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="the VOC2012-like (or COCO-like, --layout coco) folder to write")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-train", type=int, default=80)
    ap.add_argument("--num-val", type=int, default=20)
    ap.add_argument("--num-extra-aug", type=int, default=40)
    ap.add_argument("--size", type=int, nargs=2, default=(128, 160), metavar=("H", "W"))
    ap.add_argument("--classes", default=None, help="comma-separated XML class names (default: all 20)")
    ap.add_argument("--scene-correlation", type=float, default=0.85)
    ap.add_argument("--max-objects", type=int, default=3)
    ap.add_argument("--void-width", type=int, default=None)
    ap.add_argument("--layout", default="voc", choices=LAYOUTS, help="VOC 2012 (default) or MS COCO 2014 layout")
    ap.add_argument("--num-empty", type=int, default=1,
                    help="COCO layout: images without annotations per split (default 1)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    common = {"seed": args.seed, "num_train": args.num_train, "num_val": args.num_val,
              "num_extra_aug": args.num_extra_aug, "image_size": tuple(args.size), "classes": classes,
              "scene_correlation": args.scene_correlation, "max_objects": args.max_objects,
              "void_width": args.void_width}
    try:
        if args.layout == "coco":
            summary = write_coco_layout(args.out, num_empty=args.num_empty, **common)
        else:
            summary = generate_toy_world(args.out, **common)
    except (FileExistsError, ValueError) as e:  # a user error: the message says what to do
        log.error("%s", e)
        return 2
    log.info("toy world counts: %s", summary["counts"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
