"""The toy world in MS COCO 2014 layout: the same drawings as the VOC layout, with COCO's instance JSON
(polygon / RLE segmentations, crowd annotations, images without annotations) and masks made from it."""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from tool.engine.io import write_bytes, write_json
from tool.toy.layout import COCO_DIRS, GENERATOR_VERSION, MARKER, PARTIAL_MARKER, begin_world, encode_jpeg, world_params
from tool.toy.render import ToyImage, render_image
from tool.toy.scenes import SCENE_DRAW
from tool.toy.vocab import CLASS_SCENES, SCENES

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------------
# the same drawings in COCO 2014 layout
# ----------------------------------------------------------------------------------------------------


def render_empty_image(index: int, *, seed: int, image_size: tuple[int, int]) -> ToyImage:
    """A scene without objects (a COCO image without annotations): a pure function of ``(seed, index)``."""
    H, W = image_size
    rng = np.random.default_rng([seed, index])
    scene_name = str(rng.choice(SCENES))
    scene = SCENE_DRAW[scene_name](H, W, rng)
    img = np.clip(scene.img + rng.normal(0, 2.5, scene.img.shape).astype(np.float32), 0, 255).astype(np.uint8)
    return ToyImage(img, np.zeros((H, W), np.uint8), "", {"scene": scene_name, "objects": [], "things": scene.things},
                    np.full((H, W), -1, np.int16))


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE of a bool/uint8 [H, W] mask: ``{"size": [H, W], "counts": [...]}``.

    Runs over the column-major (Fortran-order) pixels, alternating 0s and 1s, starting with 0s.
    """
    flat = np.asarray(mask, np.uint8).flatten(order="F")                 # [H * W] column-major
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def mask_segmentation(mask: np.ndarray) -> list[list[float]] | dict:
    """COCO segmentation of a non-empty bool [H, W] mask: polygons when they reproduce it exactly, else RLE.

    Contours are traced on the mask upsampled 2x, so their vertices lie on pixel edges, and pycocotools
    rasterises them back to exactly the mask; a mask with a hole (a ring) cannot be a polygon union and
    becomes a compressed RLE (``counts`` a string), which pycocotools reads as well.
    """
    from pycocotools import mask as mask_utils

    from coco14.make_coco_masks import ann_to_mask

    H, W = mask.shape
    up = cv2.resize(mask.astype(np.uint8), (2 * W, 2 * H), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = [((c.reshape(-1, 2) + 0.5) / 2).reshape(-1).tolist() for c in contours if len(c) >= 3]  # [2P] x, y
    if polys and np.array_equal(ann_to_mask(polys, H, W) > 0, mask):
        return polys
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    counts = rle["counts"]                     # bytes from encode (the stub also allows str)
    return {"size": [H, W], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def _coco_annotation(ann_id: int, image_id: int, category_id: int, mask: np.ndarray, crowd: bool) -> dict:
    from pycocotools import mask as mask_utils

    from coco14.make_coco_masks import ann_to_rle

    H, W = mask.shape
    seg = uncompressed_rle(mask) if crowd else mask_segmentation(mask)
    rle = ann_to_rle(seg, H, W)
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "segmentation": seg,
            "area": float(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
            "iscrowd": int(crowd)}


def write_coco_layout(root: str | os.PathLike, *, seed: int = 0, num_train: int = 80, num_val: int = 20,
                      num_extra_aug: int = 40, image_size: Sequence[int] = (128, 160),
                      classes: Sequence[str] | None = None, scene_correlation: float = 0.85, max_objects: int = 3,
                      void_width: int | None = None, num_empty: int = 1, masks: bool = True) -> dict:
    """Write the toy world in MS COCO 2014 layout under ``root`` and return its summary.

    The drawings are those of ``generate_toy_world`` with the same parameters: drawing ``i`` (VOC id
    ``toy_{i+1:06d}``) becomes COCO image id ``i + 1``, in ``train2014/`` for the train and extra
    drawings and in ``val2014/`` for the val ones (JPEG bytes identical to the VOC layout's)::

        train2014/COCO_train2014_<12-digit id>.jpg   val2014/COCO_val2014_<12-digit id>.jpg
        annotations/instances_{train,val}2014.json   all 80 COCO categories; one annotation per visible
                                                     object (COCO category id of its VOC class, ``VOC_TO_COCO``),
                                                     polygons (RLE when a polygon cannot be exact)
        mask/{train2014,val2014}/<id>.png            GT rendered from the JSON by coco14.make_coco_masks (``masks``)
        ToyMeta/<stem>.json                          as in the VOC layout; objects' ``class_name`` is the COCO
                                                     name, plus their ``category_id``
        toy_world.json                               parameters and counts, written last

    Each split also gets ``num_empty`` scenes without objects and without annotations (ids after the
    drawings'), and one crowd annotation: the last object of the split's first image with >= 2 objects
    (else its first annotation) is written ``iscrowd: 1`` with an uncompressed RLE, as COCO writes crowds.
    Idempotent like ``generate_toy_world``.
    """
    from coco14.dataset import CATEGORIES, VOC_TO_COCO

    if int(num_empty) != num_empty or num_empty < 0:
        raise ValueError(f"toy world: num_empty must be an integer >= 0, got {num_empty!r}")
    root = Path(root)
    params = {**world_params(seed, num_train, num_val, num_extra_aug, image_size, classes, scene_correlation,
                        max_objects, void_width), "layout": "coco", "num_empty": int(num_empty), "masks": bool(masks)}
    stored = begin_world(root, params, COCO_DIRS)
    if stored is not None:
        return stored

    H, W = params["image_size"]
    n_seg = params["num_train"] + params["num_val"]
    total = n_seg + params["num_extra_aug"]
    # (drawing index, release split, empty); ascending ids within each split
    plan = [(i, "val2014" if params["num_train"] <= i < n_seg else "train2014", False) for i in range(total)]
    plan += [(total + k, "train2014", True) for k in range(num_empty)]
    plan += [(total + num_empty + k, "val2014", True) for k in range(num_empty)]
    plan.sort(key=lambda p: (p[1], p[0]))
    coco_name = {cid: name for cid, name, _ in CATEGORIES}
    files: dict[str, dict[str, list]] = {b: {"images": [], "annotations": []} for b in ("train2014", "val2014")}
    first_ann: dict[str, tuple[int, np.ndarray]] = {}   # split -> (position, mask) of its first annotation
    has_crowd = dict.fromkeys(files, False)
    class_images: dict[str, int] = {coco_name[VOC_TO_COCO[c]]: 0 for c in params["classes"]}
    scenes = dict.fromkeys(SCENES, 0)
    ann_id = n_objects = correlated = 0
    for index, base, empty in plan:
        coco_id = index + 1
        stem = f"COCO_{base}_{coco_id:012d}"
        if empty:
            t = render_empty_image(index, seed=params["seed"], image_size=(H, W))
        else:
            t = render_image(stem, index, seed=params["seed"], image_size=(H, W), classes=params["classes"],
                             scene_correlation=params["scene_correlation"], max_objects=params["max_objects"],
                             void_width=params["void_width"], segmented=True)
            correlated += t.meta["scene"] in CLASS_SCENES[t.meta["objects"][0]["class"]]
        write_bytes(root / base / f"{stem}.jpg", encode_jpeg(t.image, stem), durable=False)
        files[base]["images"].append({"id": coco_id, "file_name": f"{stem}.jpg", "height": H, "width": W})
        objects = t.meta["objects"]
        crowd_at = len(objects) - 1 if len(objects) >= 2 and not has_crowd[base] else -1
        for j, obj in enumerate(objects):
            ann_id += 1
            cid = VOC_TO_COCO[obj["class"]]
            obj.update(class_name=coco_name[cid], category_id=cid)
            assert t.instances is not None
            mask = t.instances == j
            files[base]["annotations"].append(_coco_annotation(ann_id, coco_id, cid, mask, j == crowd_at))
            first_ann.setdefault(base, (len(files[base]["annotations"]) - 1, mask))
        has_crowd[base] |= crowd_at >= 0
        write_json(root / "ToyMeta" / f"{stem}.json", t.meta)
        for name in sorted({o["class_name"] for o in objects}):
            class_images[name] += 1
        scenes[t.meta["scene"]] += 1
        n_objects += len(objects)
    for base, (pos, mask) in first_ann.items():
        if not has_crowd[base]:  # no image with two objects: the split's first annotation becomes its crowd
            a = files[base]["annotations"][pos]
            files[base]["annotations"][pos] = _coco_annotation(a["id"], a["image_id"], a["category_id"], mask, True)
    categories = [{"supercategory": sup, "id": cid, "name": name} for cid, name, sup in CATEGORIES]
    for base, f in files.items():
        write_json(root / "annotations" / f"instances_{base}.json",
                   {"info": {"description": "QA-CLIMS toy world in COCO 2014 layout (tool.toy.world)",
                             "version": str(GENERATOR_VERSION), "year": 2014},
                    "licenses": [], "images": f["images"], "annotations": f["annotations"],
                    "categories": categories}, indent=None)
    if params["masks"]:
        from coco14.make_coco_masks import make_masks
        make_masks(root, progress=False)

    def annotated(base: str) -> int:
        return len({a["image_id"] for a in files[base]["annotations"]})

    summary = {
        "generator": "tool.toy.world", "params": params,
        "counts": {"train": annotated("train2014"), "val": annotated("val2014"),
                   "train_all": len(files["train2014"]["images"]), "val_all": len(files["val2014"]["images"]),
                   "images": len(plan), "objects": n_objects, "annotations": ann_id,
                   "crowd": sum(a["iscrowd"] for f in files.values() for a in f["annotations"])},
        "class_images": class_images, "scenes": scenes,
        "scene_on_first_object": correlated / total,
    }
    write_json(root / MARKER, summary)  # last: the completion marker
    (root / PARTIAL_MARKER).unlink()
    log.info("toy world (COCO layout): wrote %d images (%d train2014, %d val2014) to %s", len(plan),
             summary["counts"]["train_all"], summary["counts"]["val_all"], root)
    return summary
