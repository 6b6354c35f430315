"""Your own images and image-level labels (``dataset.name: folder``; docs/own-data.md).

The same interface as ``voc12.dataset.VOC12`` and ``coco14.dataset.COCO14`` (steps see nothing else):
``name``, ``class_names`` (as spelled in questions), ``num_classes``, ``ids(split)``, ``image_path(id)``,
``labels(ids)`` [N, K] float32, ``gt_path(id)``, ``has_gt(id)``, ``load_gt(id)``.

Layout under ``dataset.root`` (each name a config key, relative to the root)::

    images/<any/sub/path>.jpg|.jpeg|.png|.webp   dataset.images
    labels.csv | labels.json                      dataset.labels
    classes.txt                                   one class per line, in index order (or dataset.classes)
    masks/<same relative path>.png                dataset.masks: optional GT, 0 background, 1..K, 255 ignore
    splits/<split>.txt                            dataset.lists: optional split lists (or dataset.split)

An image id is its path under ``images/`` without the extension, with ``/`` between folders
(``shop/red_shoe``); outputs (CAMs, masks, predictions) mirror it. Labels, as the paper's setting needs,
are image-level: every image has at least one class.

- CSV, header ``image,labels``: one row per image, classes separated by ``;`` or ``|``;
- CSV, header ``image,<class>,<class>,...``: one 0/1 column per class;
- JSON: ``{"<image>": ["<class>", ...], ...}``.

The image is named as a path under ``images/``, with or without its extension. Splits: a list file
``<lists>/<split>.txt`` (or a ``.txt`` path) of images, ``all`` (every labelled image), or a name of
``dataset.split`` (``{train: 0.8, val: 0.2, seed: 0}``): drawn once, written to
``<work_dir>/splits/`` and read back by every later stage and run. Every error names the file, the
line and what to do.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from tool.data.base import DatasetError  # the error class every dataset description raises
from tool.data.palette import load_label_png
from tool.engine.io import read_id_list, read_json, write_json, write_text

log = logging.getLogger(__name__)

IMAGE_EXTS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp")
LABEL_SEPARATORS = re.compile(r"[;|]")
SPLIT_MARKER = "split.json"          # under the splits folder; written last
RESERVED_SPLITS = ("all",)


def read_class_file(path: Path) -> list[str]:
    """Class names of ``classes.txt``: one per line, in index order; blank lines and ``#`` comments skipped."""
    if not path.is_file():
        raise DatasetError(f"{path}: no class list; write the class names there, one per line in index order, "
                           "or set dataset.classes")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not a UTF-8 text file ({e})") from e
    return [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]


def check_classes(names: Sequence[str], source: str) -> tuple[str, ...]:
    """The class list, checked: non-empty, unique, no ``background`` (index 0 is background already)."""
    names = tuple(str(n).strip() for n in names)
    if not names:
        raise DatasetError(f"{source}: the class list is empty; name at least one class")
    seen: set[str] = set()
    for n, name in enumerate(names, 1):
        if not name:
            raise DatasetError(f"{source}: class {n} has an empty name")
        if name.lower() == "background":
            raise DatasetError(f"{source}: class {n} is 'background'; leave it out, class index 0 is the background")
        if name in seen:
            raise DatasetError(f"{source}: class {name!r} is listed twice; every class once, in index order")
        seen.add(name)
    return names


def normalise_entry(entry: str) -> str:
    """An image named in a label file or a split list as a path under images/: ``/`` between folders, no
    leading ``./`` (``.\\shop\\a.jpg`` and ``shop/a.jpg`` are one image)."""
    entry = entry.replace("\\", "/").strip()
    while entry.startswith("./"):
        entry = entry[2:]
    return entry


def _strip_ext(entry: str) -> tuple[str, str | None]:
    """(entry without its image extension, the extension or None)."""
    suffix = PurePosixPath(entry).suffix
    if suffix.lower() in IMAGE_EXTS:
        return entry[:-len(suffix)], suffix
    return entry, None


def parse_label_file(path: Path, classes: Sequence[str]) -> list[tuple[int, str, list[str]]]:
    """(line, image entry, class names) of every record of a CSV or JSON label file, in file order.

    CSV ``image,labels`` (names split on ``;`` or ``|``) or ``image,<class>,...`` (0/1 per class);
    JSON ``{"image": [class, ...]}``. Format errors raise naming the file and the line.
    """
    if not path.is_file():
        raise DatasetError(f"dataset.labels: label file {path} does not exist; write labels.csv (image,labels) "
                           "or labels.json there, or point dataset.labels at yours")
    if path.suffix.lower() == ".json":
        return _parse_json(path)
    if path.suffix.lower() != ".csv":
        raise DatasetError(f"dataset.labels: {path} is neither .csv nor .json")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not a UTF-8 text file ({e})") from e
    rows = list(csv.reader(text.splitlines()))
    header = [h.strip() for h in rows[0]] if rows else []
    if not header or header[0].lower() != "image" or len(header) < 2:
        raise DatasetError(f"{path}:1: the header must be 'image,labels' (classes separated by ';' or '|') or "
                           f"'image,<class>,<class>,...' (0/1 columns), got {','.join(header)!r}")
    one_hot = not (len(header) == 2 and header[1].lower() == "labels")
    if one_hot:
        unknown = [h for h in header[1:] if h not in classes]
        if unknown:
            raise DatasetError(f"{path}:1: column {unknown[0]!r} is not a class ({', '.join(classes)}); the header "
                               "must be 'image,labels' or 'image' followed by class names")
        if len(set(header[1:])) < len(header) - 1:
            raise DatasetError(f"{path}:1: a class column appears twice")
    out = []
    for line, row in enumerate(rows[1:], 2):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise DatasetError(f"{path}:{line}: {len(row)} fields, the header has {len(header)}")
        image = row[0].strip()
        if one_hot:
            names = []
            for name, v in zip(header[1:], row[1:]):
                if v.strip() not in ("0", "1"):
                    raise DatasetError(f"{path}:{line}: column {name!r} must be 0 or 1, got {v.strip()!r}")
                if v.strip() == "1":
                    names.append(name)
        else:
            names = [n.strip() for n in LABEL_SEPARATORS.split(row[1]) if n.strip()]
        out.append((line, image, names))
    return out


def _parse_json(path: Path) -> list[tuple[int, str, list[str]]]:
    def pairs(items):
        seen = {}
        for k, v in items:
            if k in seen:
                raise DatasetError(f"{path}:{_json_line(text, k)}: image {k!r} is listed twice; one entry per image")
            seen[k] = v
        return seen

    try:
        text = path.read_text(encoding="utf-8-sig")
        data = json.loads(text, object_pairs_hook=pairs)
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not a UTF-8 text file ({e})") from e
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
    if not isinstance(data, dict):
        raise DatasetError(f'{path}:1: expected an object {{"<image>": ["<class>", ...], ...}}')
    out = []
    for image, names in data.items():
        line = _json_line(text, image)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DatasetError(f"{path}:{line}: the classes of {image!r} must be a list of class names")
        out.append((line, image.strip(), [n.strip() for n in names if n.strip()]))
    return out


def _json_line(text: str, key: str) -> int:
    """The 1-based line of ``"key":`` in a JSON text (of its first occurrence)."""
    pos = text.find(json.dumps(key))
    return text.count("\n", 0, pos) + 1 if pos >= 0 else 1


class FolderDataset:
    """A folder of images with image-level labels (``dataset.name: folder``; module docstring).

    Args:
        cfg: the ``dataset`` section (``root``, ``images``, ``labels``, ``classes``, ``question_names``,
            ``masks``, ``lists``, ``split``).
        split_dir: where ``dataset.split`` splits are written once (``<work_dir>/splits``); None: drawn in
            memory, not kept.
    """

    name = "folder"

    @classmethod
    def from_config(cls, cfg, cache_dir: Path | None) -> FolderDataset:
        """From the ``dataset`` section: drawn splits go to ``<work_dir>/splits`` (next to ``cache_dir``)."""
        return cls(cfg, split_dir=cache_dir.parent / "splits" if cache_dir is not None else None)

    def __init__(self, cfg, split_dir: str | os.PathLike | None = None):
        self.root = Path(cfg.root)
        if not self.root.is_dir():
            raise DatasetError(f"dataset.root: folder {self.root} does not exist (it should hold "
                               f"{cfg.images}/, {cfg.labels} and classes.txt)", key="dataset.root")
        self.image_dir = self.root / cfg.images
        if not self.image_dir.is_dir():
            raise DatasetError(f"dataset.images: image folder {self.image_dir} does not exist", key="dataset.images")
        self.mask_dir = self.root / cfg.masks
        self.list_dir = self.root / cfg.lists
        self.label_file = self.root / cfg.labels
        try:
            if cfg.classes:
                self.label_names = check_classes(cfg.classes, "dataset.classes")
            else:
                self.label_names = check_classes(read_class_file(self.root / "classes.txt"),
                                                 str(self.root / "classes.txt"))
        except DatasetError as e:
            e.key = "dataset.classes"
            raise
        unknown = [k for k in cfg.question_names if k not in self.label_names]
        if unknown:
            raise DatasetError(f"dataset.question_names: {unknown[0]!r} is not a class ({', '.join(self.label_names)})",
                               key="dataset.question_names")
        # the classes as spelled in questions and prompts (QAPE, CLIP texts), like VOC's "tv monitor"
        self.class_names = tuple(cfg.question_names.get(n, n) for n in self.label_names)
        self.num_classes = len(self.label_names)
        self.split_fractions = dict(cfg.split)
        self.split_dir = Path(split_dir) if split_dir is not None else None
        self._files: dict[str, str] = {}           # id -> path under images/ (with its extension)
        self._labels: dict[str, list[int]] = {}    # id -> 0-based classes
        try:
            self._read_labels()
        except DatasetError as e:                  # (--check files it under the key that names the file)
            e.key = "dataset.labels"
            raise
        self._splits: dict[str, list[str]] | None = None

    # ---- labels ----------------------------------------------------------------------------------

    def _read_labels(self) -> None:
        index = {n: k for k, n in enumerate(self.label_names)}
        where: dict[str, int] = {}
        for line, entry, names in parse_label_file(self.label_file, self.label_names):
            at = f"{self.label_file}:{line}"
            image_id, file = self._resolve(entry, at)
            if image_id in where:
                raise DatasetError(f"{at}: image {entry!r} is already listed on line {where[image_id]}; one line "
                                   "per image (merge its classes into one line)")
            where[image_id] = line
            if not names:
                raise DatasetError(f"{at}: image {entry!r} has no class; every image needs at least one "
                                   "(image-level labels): add its classes or remove the line")
            bad = [n for n in names if n not in index]
            if bad:
                raise DatasetError(f"{at}: class {bad[0]!r} of image {entry!r} is not in the class list "
                                   f"({', '.join(self.label_names)}); fix the name or add the class to the list")
            self._files[image_id] = file
            self._labels[image_id] = sorted({index[n] for n in names})
        if not self._labels:
            raise DatasetError(f"{self.label_file}: no labelled image")

    def _resolve(self, entry: str, at: str) -> tuple[str, str]:
        """(id, file under images/) of a label-file entry, with or without its extension; raises naming ``at``."""
        entry = normalise_entry(entry)
        if not entry:
            raise DatasetError(f"{at}: empty image name")
        parts = PurePosixPath(entry).parts
        if entry.startswith("/") or ".." in parts:
            raise DatasetError(f"{at}: image {entry!r} must be a path inside {self.image_dir} (no '..', not absolute)")
        stem, ext = _strip_ext(entry)
        if ext is not None:
            if not (self.image_dir / entry).is_file():
                raise DatasetError(f"{at}: image {entry!r} does not exist ({self.image_dir / entry}); fix the name "
                                   "or remove the line")
            return stem, entry
        found = [stem + e for e in (*IMAGE_EXTS, *(x.upper() for x in IMAGE_EXTS))
                 if (self.image_dir / (stem + e)).is_file()]
        if not found:
            raise DatasetError(f"{at}: image {entry!r} does not exist in {self.image_dir} "
                               f"(as {', '.join(IMAGE_EXTS)}); fix the name or remove the line")
        if len(found) > 1:
            raise DatasetError(f"{at}: image {entry!r} is ambiguous ({', '.join(found)}); name it with its extension")
        return stem, found[0]

    def labels(self, ids: list[str]) -> np.ndarray:
        """[N, K] float32 multi-hot image-level labels of ``ids``."""
        out = np.zeros((len(ids), self.num_classes), dtype=np.float32)
        for n, i in enumerate(ids):
            if i not in self._labels:
                raise DatasetError(f"image {i!r} has no labels in {self.label_file}")
            out[n, self._labels[i]] = 1.0
        return out

    # ---- splits ----------------------------------------------------------------------------------

    def ids(self, split: str) -> list[str]:
        """Image ids of ``split``: a list file, ``all``, or a ``dataset.split`` name (drawn once, kept)."""
        if split == "all":
            return list(self._labels)
        path = Path(split) if split.endswith(".txt") else self.list_dir / f"{split}.txt"
        if path.is_file():
            return self._read_list(path)
        if split in self.split_fractions and split != "seed":
            return list(self._drawn_splits()[split])
        have = sorted(p.stem for p in self.list_dir.glob("*.txt")) if self.list_dir.is_dir() else []
        drawn = [k for k in self.split_fractions if k != "seed"]
        raise DatasetError(f"split {split!r}: no list {path}, and it is not one of dataset.split ({drawn}) nor 'all'; "
                           f"lists in {self.list_dir}: {have}")

    def _read_list(self, path: Path) -> list[str]:
        try:
            entries = read_id_list(path, whole_line=True)    # (a file name may hold spaces)
        except ValueError as e:
            raise DatasetError(str(e)) from e
        out: list[str] = []
        seen: dict[str, int] = {}              # image id -> its entry number
        for n, entry in enumerate(entries, 1):
            image_id = _strip_ext(normalise_entry(entry))[0]
            if image_id not in self._labels:
                raise DatasetError(f"{path}: entry {n} ({entry!r}) has no labels in {self.label_file}; add it there "
                                   "or remove it from the list")
            if image_id in seen:
                raise DatasetError(f"{path}: image {entry!r} is listed twice (entries {seen[image_id]} and {n})")
            seen[image_id] = n
            out.append(image_id)
        if not out:
            raise DatasetError(f"{path}: the list is empty")
        return out

    def _drawn_splits(self) -> dict[str, list[str]]:
        """The ``dataset.split`` splits: read from ``split_dir`` when made before, else drawn and written there."""
        if self._splits is not None:
            return self._splits
        fractions = {k: float(v) for k, v in self.split_fractions.items() if k != "seed"}
        seed = int(self.split_fractions.get("seed", 0))
        params = {"fractions": fractions, "seed": seed, "labels": str(self.label_file.resolve())}
        split_dir = self.split_dir
        marker = split_dir / SPLIT_MARKER if split_dir is not None else None
        if split_dir is not None and marker is not None and marker.is_file():
            stored = read_json(marker)
            if stored.get("params") != params:
                raise DatasetError(f"dataset.split: {marker} was made with {stored.get('params')}, the config says "
                                   f"{params}; the run's outputs refer to those splits: use another work_dir, or "
                                   f"delete {self.split_dir} to draw new ones")
            self._splits = {k: self._read_list(split_dir / f"{k}.txt") for k in fractions}
            new = set(self._labels) - {i for v in self._splits.values() for i in v}
            if new:
                log.warning("dataset.split: %d labelled image(s) are in none of the splits kept in %s (added since "
                            "they were drawn), e.g. %s; they are not used", len(new), self.split_dir, sorted(new)[:3])
            return self._splits
        self._splits = draw_splits(list(self._labels), fractions, seed)
        if split_dir is not None and marker is not None:
            for k, v in self._splits.items():
                write_text(split_dir / f"{k}.txt", "".join(f"{i}\n" for i in v))
            write_json(marker, {"params": params, "counts": {k: len(v) for k, v in self._splits.items()}})  # last
            log.info("dataset.split: drew %s from %d images (seed %d) -> %s", {k: len(v) for k, v in
                     self._splits.items()}, len(self._labels), seed, self.split_dir)
        return self._splits

    # ---- images and GT ---------------------------------------------------------------------------

    def image_path(self, image_id: str) -> Path:
        file = self._files.get(image_id)
        if file is None:
            raise DatasetError(f"image {image_id!r} has no labels in {self.label_file}")
        return self.image_dir / file

    def gt_path(self, image_id: str) -> Path:
        return self.mask_dir / f"{image_id}.png"

    def has_gt(self, image_id: str) -> bool:
        return self.gt_path(image_id).is_file()

    def load_gt(self, image_id: str) -> np.ndarray:
        """uint8 [H, W]: 0 background, 1..K class, 255 ignore."""
        path = self.gt_path(image_id)
        if not path.is_file():
            raise DatasetError(f"image {image_id}: no ground-truth mask at {path} (masks are optional; steps that "
                               "need them are skipped when a split has none)")
        return load_label_png(path)


def draw_splits(ids: Sequence[str], fractions: Mapping[str, float], seed: int) -> dict[str, list[str]]:
    """Split ``ids`` at random into named parts of the given fractions (summing to 1), each kept in sorted order.

    The ids are sorted first, so the draw depends on the set of images, not on the label file's order;
    part k takes the permuted ids from round(N · F_{k-1}) to round(N · F_k), F the cumulative fractions."""
    if not fractions:
        raise DatasetError("dataset.split: name at least one split, e.g. {train: 0.8, val: 0.2, seed: 0}")
    bad = [k for k, v in fractions.items() if not 0 < v <= 1 or k in RESERVED_SPLITS]
    if bad:
        raise DatasetError(f"dataset.split: {bad[0]!r} must be a fraction in (0, 1] and not 'all', "
                           f"got {fractions[bad[0]]}")
    if abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise DatasetError(f"dataset.split: the fractions {dict(fractions)} sum to {sum(fractions.values()):g}, not 1")
    order = sorted(ids)
    perm = np.random.default_rng(seed).permutation(len(order))
    bounds = np.round(np.cumsum([0.0, *fractions.values()]) * len(order)).astype(int)
    out = {}
    for (k, _), a, b in zip(fractions.items(), bounds[:-1], bounds[1:]):
        if b <= a:
            raise DatasetError(f"dataset.split: {k!r} gets no image of {len(order)}; use a larger fraction")
        out[k] = sorted(order[j] for j in perm[a:b])
    return out
