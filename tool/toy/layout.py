"""What both toy-world layout writers share: the parameters and their checks, the completion marker and
the folder check that never overwrites user data, JPEG encoding, and the per-image sidecars."""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from tool.engine.io import read_json, write_json
from voc12.dataset import XML_NAMES

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
MARKER = "toy_world.json"
# Written before the first image and removed after the marker: a folder holding only this file (and
# our own sub-folders) is an interrupted generation we may safely redo; anything else is user data.
PARTIAL_MARKER = ".toy_world.partial.json"
VOC_DIRS = ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets", "ToyMeta")
COCO_DIRS = ("train2014", "val2014", "annotations", "mask", "lists", "ToyMeta")
LAYOUTS = ("voc", "coco")


def world_params(seed: int, num_train: int, num_val: int, num_extra_aug: int, image_size: Sequence[int],
            classes: Sequence[str] | None, scene_correlation: float, max_objects: int,
            void_width: int | None) -> dict:
    """Validate and normalise the parameters into the JSON-able dict stored in the marker."""
    if len(image_size) != 2 or any(int(v) != v or v < 48 for v in image_size):
        raise ValueError(f"toy world: image_size must be (H, W) integers >= 48, got {tuple(image_size)}")
    for name, v in (("num_train", num_train), ("num_val", num_val), ("num_extra_aug", num_extra_aug)):
        if int(v) != v or v < 0:
            raise ValueError(f"toy world: {name} must be an integer >= 0, got {v!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"toy world: seed must be an integer >= 0, got {seed!r}")
    if num_train + num_val == 0:
        raise ValueError("toy world: num_train + num_val must be > 0")
    if not 0.0 <= scene_correlation <= 1.0:
        raise ValueError(f"toy world: scene_correlation must be in [0, 1], got {scene_correlation}")
    if int(max_objects) != max_objects or max_objects < 1:
        raise ValueError(f"toy world: max_objects must be an integer >= 1, got {max_objects!r}")
    if classes is None:
        classes = XML_NAMES
    if isinstance(classes, str) or not classes:
        raise ValueError(f"toy world: classes must be a non-empty list of XML class names, got {classes!r}")
    unknown = [c for c in classes if c not in XML_NAMES]
    if unknown:
        raise ValueError(f"toy world: unknown class {unknown[0]!r}; use the VOC XML names: {', '.join(XML_NAMES)}")
    H, W = int(image_size[0]), int(image_size[1])
    if void_width is None:
        # VOC draws a 5 px border on ~500 x 375 images: 1.3 % of the short side, about 2 px at 128 px
        void_width = max(1, round(min(H, W) / 64))
    if int(void_width) != void_width or void_width < 1:
        raise ValueError(f"toy world: void_width must be an integer >= 1, got {void_width!r}")
    return {
        "version": GENERATOR_VERSION, "seed": int(seed), "num_train": int(num_train), "num_val": int(num_val),
        "num_extra_aug": int(num_extra_aug), "image_size": [H, W],
        # XML order, so --classes cow,train and train,cow are the same world
        "classes": [c for c in XML_NAMES if c in set(classes)],
        "scene_correlation": float(scene_correlation), "max_objects": int(max_objects), "void_width": int(void_width),
    }


def check_folder(root: Path, params: dict, own_dirs: Sequence[str] = VOC_DIRS) -> dict | None:
    """The stored summary when ``root`` already holds this world; an error when it holds anything else."""
    marker = root / MARKER
    if marker.exists():
        stored = read_json(marker)
        if stored.get("params") == params:
            return stored
        diff = sorted(k for k in set(params) | set(stored.get("params", {}))
                      if stored.get("params", {}).get(k) != params.get(k))
        raise FileExistsError(
            f"{root} already holds a toy world generated with other parameters (differing: {', '.join(diff)}); "
            f"pick another folder or delete {root} to generate this one")
    if root.exists() and any(root.iterdir()):
        partial = root / PARTIAL_MARKER
        ours = partial.exists() and read_json(partial).get("params") == params
        # our own atomic-write temp files (".toy_world.*") may be left by a killed run
        foreign = [e.name for e in root.iterdir() if e.name not in own_dirs and not e.name.startswith(".toy_world.")]
        if not ours or foreign:
            raise FileExistsError(
                f"{root} is not empty and holds no toy world with these parameters ({MARKER} missing); "
                f"pick an empty or new folder, or delete it to generate the toy world there")
        log.info("toy world: %s holds an interrupted generation with the same parameters; redoing it", root)
    return None


def begin_world(root: Path, params: dict, own_dirs: Sequence[str] = VOC_DIRS) -> dict | None:
    """Start writing a world with ``params`` at ``root``: the stored summary when it is there already (nothing
    to do), else None after the partial marker is down (an interrupted generation can then be redone)."""
    stored = check_folder(root, params, own_dirs)
    if stored is not None:
        log.info("toy world: %s already generated with these parameters", root)
        return stored
    write_json(root / PARTIAL_MARKER, {"params": params})
    return None


def encode_jpeg(image: np.ndarray, image_id: str) -> bytes:
    """JPEG bytes (quality 95) of an RGB [H, W, 3] uint8 image."""
    ok, jpg = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])  # cv2 wants BGR
    if not ok:
        raise RuntimeError(f"toy world: JPEG encoding failed for {image_id}")
    return jpg.tobytes()


def read_toy_meta(root: str | os.PathLike, image_id: str) -> dict:
    """The ``ToyMeta/<id>.json`` sidecar of one image: scene, objects (class, sub-type, bbox, colour), things."""
    path = Path(root) / "ToyMeta" / f"{image_id}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no toy-world sidecar; is {root} a toy world (tool.toy.world)?")
    return read_json(path)
