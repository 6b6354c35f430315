"""The toy world in PASCAL VOC 2012 layout: JPEGImages/, Annotations/ (XML), SegmentationClass/ (paletted
PNG), ImageSets/Segmentation/{train,val,train_aug}.txt and the ToyMeta/ sidecars."""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from tool.data.palette import save_label_png
from tool.engine.io import write_bytes, write_json, write_text
from tool.toy.layout import MARKER, PARTIAL_MARKER, begin_world, encode_jpeg, world_params
from tool.toy.render import render_image
from tool.toy.vocab import CLASS_SCENES, SCENES

log = logging.getLogger(__name__)

def write_voc_layout(root: str | os.PathLike, *, seed: int = 0, num_train: int = 80, num_val: int = 20,
                     num_extra_aug: int = 40, image_size: Sequence[int] = (128, 160),
                     classes: Sequence[str] | None = None, scene_correlation: float = 0.85,
                     max_objects: int = 3, void_width: int | None = None) -> dict:
    """Write the toy world in VOC 2012 layout under ``root`` (``generate_toy_world`` with ``layout="voc"``)."""
    root = Path(root)
    params = world_params(seed, num_train, num_val, num_extra_aug, image_size, classes, scene_correlation, max_objects,
                     void_width)
    stored = begin_world(root, params)
    if stored is not None:
        return stored

    H, W = params["image_size"]
    n_seg = params["num_train"] + params["num_val"]
    total = n_seg + params["num_extra_aug"]
    ids = [f"toy_{i:06d}" for i in range(1, total + 1)]
    train, val, extra = ids[:params["num_train"]], ids[params["num_train"]:n_seg], ids[n_seg:]
    class_images = dict.fromkeys(params["classes"], 0)
    scenes = dict.fromkeys(SCENES, 0)
    n_objects = correlated = 0
    for i, image_id in enumerate(ids):
        t = render_image(image_id, i, seed=params["seed"], image_size=(H, W), classes=params["classes"],
                         scene_correlation=params["scene_correlation"], max_objects=params["max_objects"],
                         void_width=params["void_width"], segmented=i < n_seg)
        write_bytes(root / "JPEGImages" / f"{image_id}.jpg", encode_jpeg(t.image, image_id), durable=False)
        write_text(root / "Annotations" / f"{image_id}.xml", t.xml)
        if i < n_seg:
            save_label_png(root / "SegmentationClass" / f"{image_id}.png", t.label)
        write_json(root / "ToyMeta" / f"{image_id}.json", t.meta)
        for c in sorted({o["class"] for o in t.meta["objects"]}):
            class_images[c] += 1
        scenes[t.meta["scene"]] += 1
        n_objects += len(t.meta["objects"])
        correlated += t.meta["scene"] in CLASS_SCENES[t.meta["objects"][0]["class"]]

    seg_dir = root / "ImageSets" / "Segmentation"
    write_text(seg_dir / "train.txt", "".join(f"{i}\n" for i in train))
    write_text(seg_dir / "val.txt", "".join(f"{i}\n" for i in val))
    write_text(seg_dir / "train_aug.txt", "".join(f"{i}\n" for i in sorted(train + extra)))
    summary = {
        "generator": "tool.toy.world", "params": params,
        "counts": {"train": len(train), "val": len(val), "extra_aug": len(extra), "train_aug": len(train) + len(extra),
                   "images": total, "objects": n_objects},
        "class_images": class_images, "scenes": scenes,
        # share of images whose scene is a home scene of their first object (>= scene_correlation)
        "scene_on_first_object": correlated / total,
    }
    write_json(root / MARKER, summary)  # last: the completion marker
    (root / PARTIAL_MARKER).unlink()
    log.info("toy world: wrote %d images (%d train, %d val, %d extra) to %s", total, len(train), len(val),
             len(extra), root)
    return summary
