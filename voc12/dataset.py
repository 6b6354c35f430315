"""PASCAL VOC 2012 (+SBD): the 20 classes, split lists, image-level labels from XML, GT masks.

The interface shared with ``coco14.COCO14`` (steps see nothing else):

- ``name``, ``class_names`` (as spelled in questions), ``num_classes`` (without background);
- ``ids(split)`` — image ids of a split, read from the dataset itself;
- ``image_path(id)``; ``labels(ids)`` — [N, K] float32 image-level labels;
- ``gt_path(id)``, ``has_gt(id)``, ``load_gt(id)`` — uint8 masks, 0 bg, 1..K, 255 ignore.
"""
from __future__ import annotations

import difflib
import logging
import os
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np

from tool.data.base import DatasetError
from tool.data.palette import load_label_png
from tool.engine.io import read_id_list, read_json, write_json

log = logging.getLogger(__name__)

# Names as written in Annotations/*.xml, in the devkit's class order (class index = position + 1).
XML_NAMES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)
# The same classes as spelled in questions and prompts (QAPE, CLIP texts).
CLASS_NAMES: tuple[str, ...] = tuple(
    {"diningtable": "dining table", "pottedplant": "potted plant", "tvmonitor": "tv monitor"}.get(n, n)
    for n in XML_NAMES
)
_XML_INDEX = {n: i for i, n in enumerate(XML_NAMES)}
# 3: unknown object names are errors (version 2 dropped them silently: such caches are rebuilt)
CACHE_VERSION = 3


def labels_from_xml(path: Path) -> np.ndarray:
    """[20] float32 multi-hot label from one VOC annotation: every ``<object><name>`` of a class.

    Only object names count (person-layout ``<part><name>head</name>`` and the like are ignored). An object
    name that is not one of the 20 classes (a typo: ``dgo``, ``Car``) raises naming the file and the name:
    dropping it would silently train on a wrong label.
    """
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise DatasetError(f"{path}: cannot read the annotation ({e})") from e
    label = np.zeros(len(XML_NAMES), dtype=np.float32)
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in _XML_INDEX:
            close = difflib.get_close_matches(name.lower(), XML_NAMES, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise DatasetError(f"{path}: object name {name!r} is not a VOC class{hint}; fix it in the file "
                               f"(the classes: {', '.join(XML_NAMES)})")
        label[_XML_INDEX[name]] = 1.0
    return label


def entry_hint(entries: list[str]) -> str:
    """A hint for list entries written as file names (``2007_000032.jpg``, ``JPEGImages/2007_000032``)."""
    bad = next((e for e in entries if "/" in e or Path(e).suffix.lower() in (".jpg", ".jpeg", ".png")), None)
    if bad is None:
        return ""
    return (f"; a split list names images by id, without folder or extension ({Path(bad).stem!r}, not "
            f"{bad!r})")


def _stamp(path: str | Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


class VOC12:
    """PASCAL VOC 2012 rooted at ``root`` (the folder holding JPEGImages/, Annotations/ ...).

    Args:
        root: the VOC2012 folder.
        cache_dir: where the XML-derived labels are cached (``None``: no cache).
    """

    name = "voc12"
    class_names = CLASS_NAMES
    num_classes = len(CLASS_NAMES)

    @classmethod
    def from_config(cls, cfg, cache_dir: Path | None) -> VOC12:
        """From the ``dataset`` section (``tool.data.registry.build_dataset``)."""
        return cls(cfg.root, cache_dir=cache_dir if cfg.label_cache else None)

    def __init__(self, root: str | Path, cache_dir: str | Path | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"dataset.root: VOC 2012 folder {self.root} does not exist "
                               "(it should hold JPEGImages/, Annotations/, SegmentationClass/, ImageSets/)")
        for sub in ("JPEGImages", "Annotations", "ImageSets/Segmentation"):
            if not (self.root / sub).is_dir():
                raise DatasetError(f"dataset.root: {self.root} has no {sub}/ folder; is it the VOC2012 folder?")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None

    def ids(self, split: str) -> list[str]:
        path = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not path.is_file():
            have = sorted(p.stem for p in path.parent.glob("*.txt"))
            hint = " (build it with: python -m voc12.make_train_aug --voc-root ROOT --sbd-root SBD)" \
                if split == "train_aug" else ""
            raise DatasetError(f"split {split!r}: list {path} does not exist; available: {have}{hint}")
        try:
            ids = read_id_list(path)          # BOM, UTF-16 and '#' comments handled (shared with COCO)
        except ValueError as e:
            raise DatasetError(f"split {split!r}: {e}") from e
        if not ids:
            raise DatasetError(f"split {split!r}: list {path} is empty")
        dup = [i for i, n in Counter(ids).items() if n > 1]
        if dup:
            raise DatasetError(f"split {split!r}: {path} lists image(s) {dup[:3]} more than once")
        jpegs = f"{self.root / 'JPEGImages'}{os.sep}"      # (string paths: 10k pathlib joins cost a second)
        missing = [i for i in ids if not os.path.isfile(f"{jpegs}{i}.jpg")]
        if missing:
            raise DatasetError(f"split {split!r}: {len(missing)} listed image(s) of {path} missing from "
                               f"{self.root / 'JPEGImages'}, e.g. {missing[:3]}{entry_hint(missing)}")
        return ids

    def image_path(self, image_id: str) -> Path:
        return self.root / "JPEGImages" / f"{image_id}.jpg"

    def labels(self, ids: list[str]) -> np.ndarray:
        """[N, 20] float32 labels of ``ids`` from Annotations XML, computed once and cached.

        The cache remembers each XML's size and mtime: an edited annotation is read again (a deleted one
        keeps its cached labels)."""
        cache, stamps = self._read_cache()
        todo = []
        xmls = f"{self.root / 'Annotations'}{os.sep}"
        for i in ids:
            stamp = _stamp(f"{xmls}{i}.xml")                         # None: XML gone, the cache is all there is
            if i not in cache or (stamp is not None and stamps.get(i) != stamp):
                todo.append(i)
                stamps[i] = stamp
        errors = []
        for i in todo:
            try:
                cache[i] = labels_from_xml(self.root / "Annotations" / f"{i}.xml").nonzero()[0].tolist()
            except DatasetError as e:          # every bad annotation is named at once, not one per run
                errors.append(str(e))
                cache.pop(i, None)
                stamps.pop(i, None)
        if todo and self.cache_dir is not None:
            write_json(self._cache_path(), {"version": CACHE_VERSION, "root": str(self.root.resolve()),
                                            "labels": cache, "stamps": stamps}, indent=None)
        if errors:
            more = f" (and {len(errors) - 1} more: {'; '.join(errors[1:3])}{' ...' if len(errors) > 3 else ''})" \
                if len(errors) > 1 else ""
            raise DatasetError(errors[0] + more)
        out = np.zeros((len(ids), self.num_classes), dtype=np.float32)
        for n, i in enumerate(ids):
            if not cache[i]:
                raise DatasetError(f"image {i}: {self.root / 'Annotations' / (i + '.xml')} names none of the "
                                   f"20 VOC classes; remove it from the split list")
            out[n, cache[i]] = 1.0
        return out

    def _cache_path(self) -> Path:
        assert self.cache_dir is not None
        return self.cache_dir / "voc12_labels.json"

    def _read_cache(self) -> tuple[dict[str, list[int]], dict[str, list[int] | None]]:
        """(labels, XML stamps) by id; empty for no cache, another root or an old cache without stamps."""
        if self.cache_dir is None or not self._cache_path().is_file():
            return {}, {}
        data = read_json(self._cache_path())
        if data.get("root") != str(self.root.resolve()) or data.get("version") != CACHE_VERSION:   # rebuild
            return {}, {}
        return {k: list(v) for k, v in data["labels"].items()}, dict(data["stamps"])

    def gt_path(self, image_id: str) -> Path:
        """SegmentationClass/<id>.png, else SegmentationClassAug/<id>.png (SBD-converted)."""
        p = self.root / "SegmentationClass" / f"{image_id}.png"
        if p.is_file():
            return p
        aug = self.root / "SegmentationClassAug" / f"{image_id}.png"
        return aug if aug.is_file() else p

    def has_gt(self, image_id: str) -> bool:
        return self.gt_path(image_id).is_file()

    def load_gt(self, image_id: str) -> np.ndarray:
        path = self.gt_path(image_id)
        if not path.is_file():
            raise DatasetError(f"image {image_id}: no ground-truth mask at {path} (nor in SegmentationClassAug/)")
        return load_label_png(path)
