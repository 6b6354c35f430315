"""The dataset factory: the one place that maps ``dataset.name`` to its description class.

The table names each class by module path and is imported only when asked for, so the data layer
does not import the dataset packages that sit above it (``voc12/``, ``coco14/`` use this layer).
"""
from __future__ import annotations

import hashlib
import importlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from tool.data.base import ImageLevelDataset
from tool.engine.config import DatasetConfig

DATASETS = {"voc12": "voc12.dataset:VOC12", "coco14": "coco14.dataset:COCO14",
            "folder": "tool.data.folder:FolderDataset"}


def dataset_class(name: str) -> type[ImageLevelDataset]:
    """The class of ``dataset.name`` (checked when the config loaded: its choices are this table's keys)."""
    module, cls = DATASETS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_dataset(cfg: DatasetConfig, cache_dir: str | Path | None) -> ImageLevelDataset:
    """The dataset description named by ``dataset.name``, made by its ``from_config``.

    ``cache_dir`` is ``<work_dir>/cache`` (``tool.engine.paths.WorkPaths``); a folder dataset keeps the splits
    it draws in ``<work_dir>/splits`` next to it."""
    return dataset_class(cfg.name).from_config(cfg, Path(cache_dir) if cache_dir is not None else None)


def missing_gt(cfg: DatasetConfig, cache_dir: str | Path | None, key: str) -> str | None:
    """Why an evaluation of split ``dataset.<key>`` cannot run, or None: none of its images has a GT mask
    (a folder dataset without ``masks/``). The evaluation steps return it as their ``skip_reason``."""
    ds = build_dataset(cfg, cache_dir)
    split = getattr(cfg, key)
    ids = ds.ids(split)
    if any(ds.has_gt(i) for i in ids):
        return None
    return (f"no GT mask for any image of dataset.{key} {split!r} (e.g. {ds.gt_path(ids[0])}): "
            f"nothing to evaluate against, step skipped")


def read_identity(cfg: DatasetConfig, cache_dir: str | Path | None,
                  reads: Mapping[str, Iterable[str]]) -> dict[str, dict[str, str]]:
    """What a step's digest keeps of the data it reads (``tool.engine.runner.step_digest``), by split.

    ``reads``: split -> parts, of ``ids`` (the split's list: which images, in which order), ``labels`` (the
    image-level labels of those images as the dataset reads them: an edited VOC XML, COCO JSON or
    ``labels.csv`` that changes a label changes it, one that changes a box does not), ``gt`` (the size and
    mtime of each GT mask, or its absence). Cheap through the interface alone: ids and labels come from the
    datasets' caches, GT masks are stat-ed, no image is read. Returns {split: {part: sha256 prefix}}."""
    ds = build_dataset(cfg, cache_dir)
    out: dict[str, dict[str, str]] = {}
    for split, parts in sorted(reads.items()):
        unknown = set(parts) - {"ids", "labels", "gt"}
        if unknown:
            raise ValueError(f"read_identity: unknown part(s) {sorted(unknown)}; expected ids, labels, gt")
        ids = ds.ids(split)
        h = {p: hashlib.sha256("\n".join(ids).encode()) for p in sorted(set(parts) | {"ids"})}
        if "labels" in h:
            h["labels"].update("\n".join(ds.class_names).encode())     # a renamed class changes QAPE's questions
            h["labels"].update(np.ascontiguousarray(ds.labels(ids), dtype=np.uint8).tobytes())
        if "gt" in h:
            for i in ids:
                h["gt"].update(repr(_stamp(ds.gt_path(i))).encode())
        out[split] = {p: v.hexdigest()[:16] for p, v in h.items()}
    return out


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def class_names_with_bg(ds: ImageLevelDataset) -> list[str]:
    return ["background", *ds.class_names]
