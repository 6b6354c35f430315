"""MS COCO 2014: the 80 classes, split lists, image-level labels from the instances JSON, GT masks.

The same interface as ``voc12.dataset.VOC12`` (steps see nothing else): ``name``, ``class_names``,
``num_classes``, ``ids(split)``, ``image_path(id)``, ``labels(ids)`` [N, 80] float32, ``gt_path(id)``,
``has_gt(id)``, ``load_gt(id)``.

Layout under ``root`` (the one CLIMS and QA-CLIMS users already have)::

    train2014/COCO_train2014_<12-digit id>.jpg      val2014/COCO_val2014_<12-digit id>.jpg
    annotations/instances_train2014.json            annotations/instances_val2014.json
    mask/train2014/<id>.png                         mask/val2014/<id>.png   (GT: python -m coco14.make_coco_masks)
    lists/<name>.txt                                named subsets (python -m coco14.make_coco_subset)

An image id is the file stem (``COCO_train2014_000000000009``), as the official code names CAM files;
the GT mask is named by the integer COCO id (``mask/train2014/9.png``), as the official loader reads it.

Splits: ``train`` / ``val`` are the images of ``instances_{train,val}2014.json`` with at least one
annotation (82,081 / 40,137 on COCO 2014; WSSS needs >= 1 class per image), ``train_all`` / ``val_all``
every image of the file (82,783 / 40,504), all sorted by COCO id (torchvision's ``CocoDetection``
order, so "the first 10,000" means what it means in the official code). Any other name is a list
file ``<root>/lists/<name>.txt`` (or a path to a ``.txt``) of stems or integer COCO ids, one per line.

Labels: every category of an image's annotations, crowd ones included (as the official code), read
from the JSON alone (never by decoding images). Each annotation file is parsed once into a compact
``<cache_dir>/coco14_<train2014|val2014>.npz`` (ids, file names, sizes, labels), rebuilt when the JSON
changes; under DDP the ranks share it (a file lock: one parses, the others wait and read).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tool.data.base import DatasetError
from tool.data.palette import load_label_png
from tool.engine.io import read_id_list, save_npz

log = logging.getLogger(__name__)

# (COCO category id, name as in the annotation JSON and in questions, supercategory), in id order.
# The ids run 1..90 with 10 gaps; class index k (1..80) is the position in this table + 1.
CATEGORIES: tuple[tuple[int, str, str], ...] = (
    (1, "person", "person"), (2, "bicycle", "vehicle"), (3, "car", "vehicle"), (4, "motorcycle", "vehicle"),
    (5, "airplane", "vehicle"), (6, "bus", "vehicle"), (7, "train", "vehicle"), (8, "truck", "vehicle"),
    (9, "boat", "vehicle"), (10, "traffic light", "outdoor"), (11, "fire hydrant", "outdoor"),
    (13, "stop sign", "outdoor"), (14, "parking meter", "outdoor"), (15, "bench", "outdoor"),
    (16, "bird", "animal"), (17, "cat", "animal"), (18, "dog", "animal"), (19, "horse", "animal"),
    (20, "sheep", "animal"), (21, "cow", "animal"), (22, "elephant", "animal"), (23, "bear", "animal"),
    (24, "zebra", "animal"), (25, "giraffe", "animal"), (27, "backpack", "accessory"), (28, "umbrella", "accessory"),
    (31, "handbag", "accessory"), (32, "tie", "accessory"), (33, "suitcase", "accessory"), (34, "frisbee", "sports"),
    (35, "skis", "sports"), (36, "snowboard", "sports"), (37, "sports ball", "sports"), (38, "kite", "sports"),
    (39, "baseball bat", "sports"), (40, "baseball glove", "sports"), (41, "skateboard", "sports"),
    (42, "surfboard", "sports"), (43, "tennis racket", "sports"), (44, "bottle", "kitchen"),
    (46, "wine glass", "kitchen"), (47, "cup", "kitchen"), (48, "fork", "kitchen"), (49, "knife", "kitchen"),
    (50, "spoon", "kitchen"), (51, "bowl", "kitchen"), (52, "banana", "food"), (53, "apple", "food"),
    (54, "sandwich", "food"), (55, "orange", "food"), (56, "broccoli", "food"), (57, "carrot", "food"),
    (58, "hot dog", "food"), (59, "pizza", "food"), (60, "donut", "food"), (61, "cake", "food"),
    (62, "chair", "furniture"), (63, "couch", "furniture"), (64, "potted plant", "furniture"), (65, "bed", "furniture"),
    (67, "dining table", "furniture"), (70, "toilet", "furniture"), (72, "tv", "electronic"),
    (73, "laptop", "electronic"), (74, "mouse", "electronic"), (75, "remote", "electronic"),
    (76, "keyboard", "electronic"), (77, "cell phone", "electronic"), (78, "microwave", "appliance"),
    (79, "oven", "appliance"), (80, "toaster", "appliance"), (81, "sink", "appliance"),
    (82, "refrigerator", "appliance"), (84, "book", "indoor"), (85, "clock", "indoor"), (86, "vase", "indoor"),
    (87, "scissors", "indoor"), (88, "teddy bear", "indoor"), (89, "hair drier", "indoor"),
    (90, "toothbrush", "indoor"),
)
CATEGORY_IDS: tuple[int, ...] = tuple(c[0] for c in CATEGORIES)
CLASS_NAMES: tuple[str, ...] = tuple(c[1] for c in CATEGORIES)
# COCO category id -> class index 1..80 (the value in GT masks; the label column is index - 1).
CATEGORY_TO_INDEX: dict[int, int] = {cid: k + 1 for k, cid in enumerate(CATEGORY_IDS)}
# The VOC classes that exist in COCO (all 20): VOC XML name -> COCO category id.
VOC_TO_COCO: dict[str, int] = {
    "aeroplane": 5, "bicycle": 2, "bird": 16, "boat": 9, "bottle": 44, "bus": 6, "car": 3, "cat": 17,
    "chair": 62, "cow": 21, "diningtable": 67, "dog": 18, "horse": 19, "motorbike": 4, "person": 1,
    "pottedplant": 64, "sheep": 20, "sofa": 63, "train": 7, "tvmonitor": 72,
}

# Annotation file and image / mask folder per COCO release split.
BASE_SPLITS: tuple[str, ...] = ("train2014", "val2014")
# split name -> (release split, keep images without annotations)
SPLITS: dict[str, tuple[str, bool]] = {
    "train": ("train2014", False), "val": ("val2014", False),
    "train_all": ("train2014", True), "val_all": ("val2014", True),
}
CACHE_VERSION = 1
_NAME_RE = re.compile(r"^COCO_(train2014|val2014)_(\d+)$")


def category_index(category_id: int, where: str = "") -> int:
    """The class index 1..80 of a COCO category id; an unknown id raises naming ``where``."""
    try:
        return CATEGORY_TO_INDEX[int(category_id)]
    except (KeyError, TypeError, ValueError):
        raise DatasetError(f"{where}: category_id {category_id!r} is not one of the 80 COCO 2014 categories "
                           f"(ids 1..90 without {sorted(set(range(1, 91)) - set(CATEGORY_IDS))})") from None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if absent) for the ``with`` block; blocks until free."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass(frozen=True)
class CocoIndex:
    """What the pipeline needs from one instances JSON, images sorted by COCO id (M images).

    ``coco_ids`` int64 [M]; ``file_names`` [M] str; ``hw`` int32 [M, 2] (height, width);
    labels in CSR form: the 0-based classes of image m are ``label_cls[label_ptr[m]:label_ptr[m + 1]]``
    (``label_ptr`` int64 [M + 1], ``label_cls`` int16, sorted, unique per image).
    """

    coco_ids: np.ndarray
    file_names: np.ndarray
    hw: np.ndarray
    label_ptr: np.ndarray
    label_cls: np.ndarray

    def __len__(self) -> int:
        return len(self.coco_ids)

    def stems(self) -> list[str]:
        return [os.path.splitext(f)[0] for f in self.file_names.tolist()]

    def num_labels(self) -> np.ndarray:
        """Classes per image: int64 [M] (0 = no annotation)."""
        return np.diff(self.label_ptr)

    def classes(self, row: int) -> np.ndarray:
        return self.label_cls[self.label_ptr[row]:self.label_ptr[row + 1]]


def index_from_instances(data: dict, source: str = "instances JSON") -> CocoIndex:
    """Build the ``CocoIndex`` of a parsed instances JSON (``images``, ``annotations``, ``categories``).

    Every annotation counts for its image's label, crowd ones included. Categories must be COCO's
    (same id, same name); an annotation of an unknown image or category raises, naming ``source``.
    """
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{source}: no '{key}' list; is it a COCO instances_*.json file?")
    names = dict(zip(CATEGORY_IDS, CLASS_NAMES))
    for cat in data["categories"]:
        cid, cname = cat.get("id"), cat.get("name")
        if names.get(cid) != cname:
            raise DatasetError(f"{source}: category id {cid!r} is named {cname!r}, COCO 2014 names it "
                               f"{names.get(cid)!r}; this is not the 80-class COCO instances file")
    images = sorted(data["images"], key=lambda im: int(im["id"]))
    row_of = {int(im["id"]): r for r, im in enumerate(images)}
    if len(row_of) != len(images):
        raise DatasetError(f"{source}: duplicate image ids")
    stems: dict[str, int] = {}
    for im in images:       # image ids are file stems: two images on one stem would share a label row
        stem = os.path.splitext(str(im["file_name"]))[0]
        if stem in stems:
            raise DatasetError(f"{source}: images {stems[stem]} and {im['id']} have the same file_name stem "
                               f"{stem!r}; every image needs its own file")
        stems[stem] = int(im["id"])
    classes: list[set[int]] = [set() for _ in images]
    for ann in data["annotations"]:
        row = row_of.get(int(ann["image_id"]))
        if row is None:
            raise DatasetError(f"{source}: annotation {ann.get('id')} refers to image {ann['image_id']}, "
                               f"which is not in 'images'")
        classes[row].add(category_index(ann["category_id"], f"{source}: annotation {ann.get('id')}") - 1)
    counts = np.array([len(c) for c in classes], np.int64)
    ptr = np.zeros(len(images) + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    cls = np.array([k for c in classes for k in sorted(c)], np.int16)
    return CocoIndex(
        coco_ids=np.array([int(im["id"]) for im in images], np.int64),
        file_names=np.array([str(im["file_name"]) for im in images], dtype=str),
        hw=np.array([[int(im["height"]), int(im["width"])] for im in images], np.int32).reshape(-1, 2),
        label_ptr=ptr, label_cls=cls)


def read_list_file(path: Path) -> list[str]:
    """The entries of a list file (``tool.engine.io.read_id_list``, shared with VOC): one per line; blank lines and
    ``#`` comments skipped; UTF-8 with or without BOM, or UTF-16."""
    try:
        return read_id_list(path)
    except ValueError as e:
        raise DatasetError(str(e)) from e


class COCO14:
    """MS COCO 2014 rooted at ``root`` (the folder holding train2014/, val2014/, annotations/, mask/).

    Args:
        root: the COCO folder.
        cache_dir: where the JSON-derived index is cached (``None``: parse once per process).
    """

    name = "coco14"
    class_names = CLASS_NAMES
    num_classes = len(CLASS_NAMES)

    @classmethod
    def from_config(cls, cfg, cache_dir: Path | None) -> COCO14:
        """From the ``dataset`` section (``tool.data.registry.build_dataset``)."""
        return cls(cfg.root, cache_dir=cache_dir if cfg.label_cache else None)

    def __init__(self, root: str | Path, cache_dir: str | Path | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"dataset.root: COCO 2014 folder {self.root} does not exist (it should hold "
                               "train2014/, val2014/, annotations/instances_{train,val}2014.json and mask/)")
        if not (self.root / "annotations").is_dir():
            raise DatasetError(f"dataset.root: {self.root} has no annotations/ folder; is it the COCO 2014 folder? "
                               "(get annotations_trainval2014.zip from cocodataset.org and unpack it there)")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._index: dict[str, CocoIndex] = {}
        self._stems: dict[str, list[str]] = {}                # release split -> stems by row
        self._where: dict[str, tuple[str, int]] = {}          # stem -> (release split, row)
        self._by_coco_id: dict[int, tuple[str, int]] = {}     # COCO id -> (release split, row)
        self._ids: dict[str, list[str]] = {}

    # ---- the annotation index ------------------------------------------------------------------

    def annotation_path(self, base: str) -> Path:
        return self.root / "annotations" / f"instances_{base}.json"

    def index(self, base: str) -> CocoIndex:
        """The index of ``instances_<base>.json``: from the cache when it matches the file, else parsed."""
        if base not in BASE_SPLITS:
            raise ValueError(f"unknown COCO release split {base!r}; expected one of {BASE_SPLITS}")
        if base in self._index:
            return self._index[base]
        path = self.annotation_path(base)
        if not path.is_file():
            raise DatasetError(f"{path} does not exist; the COCO 2014 annotations (annotations_trainval2014.zip "
                               f"from cocodataset.org) must be unpacked under {self.root / 'annotations'}")
        st = path.stat()
        stamp = json.dumps({"version": CACHE_VERSION, "path": str(path.resolve()), "size": st.st_size,
                            "mtime_ns": st.st_mtime_ns}, sort_keys=True)
        idx = self._read_cache(base, stamp)
        if idx is None and self.cache_dir is not None:
            # Ranks (and runs) sharing the cache parse the JSON once: the first takes the lock and writes
            # the cache, the others wait for it and read it.
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            with _file_lock(self._cache_path(base).with_suffix(".lock")):
                idx = self._read_cache(base, stamp)
                if idx is None:
                    idx = self._parse(path, st.st_size)
                    save_npz(self._cache_path(base), stamp=np.array(stamp), coco_ids=idx.coco_ids,
                             file_names=idx.file_names, hw=idx.hw, label_ptr=idx.label_ptr,
                             label_cls=idx.label_cls)
        elif idx is None:
            idx = self._parse(path, st.st_size)
        self._index[base] = idx
        self._stems[base] = idx.stems()
        for r, (stem, cid) in enumerate(zip(self._stems[base], idx.coco_ids.tolist())):
            self._where[stem] = (base, r)
            self._by_coco_id[cid] = (base, r)
        return idx

    def _parse(self, path: Path, size: int) -> CocoIndex:
        log.info("coco14: parsing %s (%.0f MB) once%s", path, size / 2**20,
                 f"; caching it in {self.cache_dir}" if self.cache_dir is not None else "")
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DatasetError(f"{path}: not valid JSON ({e}); download it again") from e
        return index_from_instances(data, str(path))

    def _cache_path(self, base: str) -> Path:
        assert self.cache_dir is not None
        return self.cache_dir / f"coco14_{base}.npz"

    def _read_cache(self, base: str, stamp: str) -> CocoIndex | None:
        if self.cache_dir is None or not self._cache_path(base).is_file():
            return None
        try:
            with np.load(self._cache_path(base), allow_pickle=False) as f:
                if str(f["stamp"]) != stamp:      # another file, or the JSON changed: rebuild
                    return None
                return CocoIndex(f["coco_ids"], f["file_names"], f["hw"], f["label_ptr"], f["label_cls"])
        except (OSError, KeyError, ValueError) as e:
            log.warning("coco14: ignoring unreadable cache %s (%s); rebuilding it", self._cache_path(base), e)
            return None

    def _locate(self, image_id: str) -> tuple[str, int]:
        """(release split, row) of an image id (a stem, or a COCO id as digits)."""
        hit = self._by_coco_id.get(int(image_id)) if image_id.isdigit() else self._where.get(image_id)
        if hit is not None:
            return hit
        m = _NAME_RE.match(image_id)
        bases = [m.group(1)] if m else [b for b in BASE_SPLITS if self.annotation_path(b).is_file()]
        for b in bases:
            self.index(b)
        hit = self._by_coco_id.get(int(image_id)) if image_id.isdigit() else self._where.get(image_id)
        if hit is None:
            raise DatasetError(f"image {image_id!r} is in none of "
                               f"{', '.join(str(self.annotation_path(b)) for b in bases) or 'the annotation files'}")
        return hit

    # ---- the shared interface ------------------------------------------------------------------

    def ids(self, split: str) -> list[str]:
        """Image ids (file stems) of ``split``: train | val | train_all | val_all | a list name | a .txt path."""
        if split in self._ids:
            return list(self._ids[split])
        if split in SPLITS:
            base, keep_empty = SPLITS[split]
            idx = self.index(base)
            stems = self._stems[base]
            ids = list(stems) if keep_empty else [s for s, n in zip(stems, idx.num_labels().tolist()) if n > 0]
            source = str(self.annotation_path(base))
        else:
            path = self.list_path(split)
            ids, seen = [], set()
            for entry in read_list_file(path):
                image_id = self._stem(entry, path)
                if image_id in seen:
                    raise DatasetError(f"split {split!r}: {path} lists image {image_id} twice")
                seen.add(image_id)
                ids.append(image_id)
            source = str(path)
        if not ids:
            raise DatasetError(f"split {split!r}: {source} holds no images")
        root = f"{self.root}{os.sep}"             # (string paths: 80k pathlib joins would cost seconds)
        missing = [i for i in ids if not os.path.isfile(root + self._relative_image(i))]
        if missing:
            folders = sorted({str(self.image_path(i).parent) for i in missing})
            absent = [f for f in folders if not Path(f).is_dir()]
            hint = (f"; folder {absent[0]} does not exist (unpack {Path(absent[0]).name}.zip from cocodataset.org "
                    f"there)") if absent else ""
            raise DatasetError(f"split {split!r}: {len(missing)} of {len(ids)} image(s) missing from "
                               f"{', '.join(folders)}, e.g. {missing[:3]}{hint}")
        self._ids[split] = ids
        return list(ids)

    def list_path(self, split: str) -> Path:
        """The list file of a named subset: ``<root>/lists/<split>.txt``, or ``split`` itself if it is a .txt path."""
        path = Path(split) if split.endswith(".txt") or os.sep in split else self.root / "lists" / f"{split}.txt"
        if not path.is_file():
            have = sorted(p.stem for p in (self.root / "lists").glob("*.txt"))
            raise DatasetError(f"split {split!r}: not a built-in split ({', '.join(SPLITS)}) and list {path} does not "
                               f"exist; named lists under {self.root / 'lists'}: {have}. Make one with: python -m "
                               f"coco14.make_coco_subset --root {self.root} --split train --first 10000 --name {split}")
        return path

    def _stem(self, entry: str, path: Path) -> str:
        """The stem of a list entry (a stem, or a COCO id as digits as in CLIMS' train14.txt)."""
        try:
            base, row = self._locate(entry)
        except DatasetError as e:
            hint = (f"; list entries are file stems or COCO ids, without folder or extension "
                    f"({Path(entry).stem!r}, not {entry!r})") if "/" in entry or Path(entry).suffix else ""
            raise DatasetError(f"{path}: {e}{hint}") from None
        return self._stems[base][row]

    def image_path(self, image_id: str) -> Path:
        return self.root / self._relative_image(image_id)

    def _relative_image(self, image_id: str) -> str:
        base, row = self._locate(image_id)
        return f"{base}{os.sep}{self._index[base].file_names[row]}"

    def coco_id(self, image_id: str) -> int:
        """The integer COCO image id of an image id (stem)."""
        base, row = self._locate(image_id)
        return int(self._index[base].coco_ids[row])

    def image_size(self, image_id: str) -> tuple[int, int]:
        """(H, W) from the annotation file (no decoding)."""
        base, row = self._locate(image_id)
        h, w = self._index[base].hw[row].tolist()
        return h, w

    def labels(self, ids: list[str]) -> np.ndarray:
        """[N, 80] float32 image-level labels of ``ids``: every annotated category, crowd ones included."""
        out = np.zeros((len(ids), self.num_classes), dtype=np.float32)
        for n, i in enumerate(ids):
            base, row = self._locate(i)
            cls = self._index[base].classes(row)
            if len(cls) == 0:
                raise DatasetError(f"image {i}: no annotation in {self.annotation_path(base)}, so no image-level "
                                   f"label; WSSS needs >= 1 class per image: use split 'train' / 'val' (which leave "
                                   f"such images out) or remove it from the list")
            out[n, cls] = 1.0
        return out

    def gt_path(self, image_id: str) -> Path:
        """``mask/<release split>/<COCO id>.png`` (the official loader's naming)."""
        base, row = self._locate(image_id)
        return self.root / "mask" / base / f"{int(self._index[base].coco_ids[row])}.png"

    def has_gt(self, image_id: str) -> bool:
        return self.gt_path(image_id).is_file()

    def load_gt(self, image_id: str) -> np.ndarray:
        """uint8 [H, W]: 0 background, 1..80 class (``CATEGORY_TO_INDEX``), 255 ignore (crowd, if so rendered)."""
        path = self.gt_path(image_id)
        if not path.is_file():
            raise DatasetError(f"image {image_id}: no ground-truth mask at {path}; render the masks once with: "
                               f"python -m coco14.make_coco_masks --root {self.root}")
        return load_label_png(path)
