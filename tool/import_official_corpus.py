"""Convert the authors' released VQA corpora into our ``qape/corpus.jsonl`` (docs/design.md §3 interop).

The official QA-CLIMS release ships ``voc_vqa_fg_blip.npy`` and ``voc_vqa_bg_blip.npy``, each a
NumPy-pickled dict (``third_party/BLIP/get_blip_vqa_results.py``, ``transfer_vqa.py``)::

    {image_name: {class_name: {"vqa": [(question, answer), ...], "answers": [lemmatised answer, ...]}}}

with ``image_name`` like ``"2007_000032"`` and ``class_name`` spelled as in the questions
("dining table"). We write one JSON line per (image, class)::

    {"image": "2007_000032", "class": "dining table", "fg": [[q, a], ...], "bg": [[q, a], ...]}

taking the *raw* answers of ``"vqa"`` (our text step lemmatises them itself), sorted by
(image, class index), atomically. Class indices (0-based, the order of ``class_names``), the
Annotations-XML spelling ("diningtable") and integer image ids (2007000032, the CLIMS label-file
spelling) are accepted too.

Usage (from the repository root)::

    python -m tool.import_official_corpus --fg voc_vqa_fg_blip.npy --bg voc_vqa_bg_blip.npy \\
        --out work/voc12/qape/corpus.jsonl

Security: the files are Python pickles and loading them (``allow_pickle=True``) can execute code
embedded in them. Only load files you trust, e.g. downloaded from the authors' release link.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from net.qape_text import DEFAULT_QUESTIONS, expand_questions
from tool.engine.io import write_text
from voc12.dataset import CLASS_NAMES, XML_NAMES

log = logging.getLogger(__name__)


def load_official_vqa(path: str | os.PathLike) -> dict:
    """Load one official ``*_vqa_*_blip.npy`` file (a pickled dict). Trusted files only (pickle)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (the authors' voc_vqa_fg_blip.npy / voc_vqa_bg_blip.npy)")
    arr = np.load(path, allow_pickle=True)
    obj = arr.item() if isinstance(arr, np.ndarray) and arr.dtype == object and arr.shape == () else arr
    if not isinstance(obj, dict):
        raise TypeError(
            f"{path}: expected a pickled dict image -> class -> {{'vqa', 'answers'}}, got {type(obj).__name__}"
        )
    return obj


def _image_name(key: Any, path: Path) -> str:
    if isinstance(key, (int, np.integer)):
        s = str(int(key))  # CLIMS label files spell 2007_000032 as the integer 2007000032
        if len(s) != 10:
            raise ValueError(f"{path}: integer image id {key} is not of the form YYYYNNNNNN")
        return f"{s[:4]}_{s[4:]}"
    if isinstance(key, str):
        return key
    raise ValueError(f"{path}: image key {key!r} is neither a name nor an integer id")


def _class_index(label: Any, class_names: Sequence[str], path: Path, image: str) -> int:
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        if 0 <= int(label) < len(class_names):
            return int(label)
    elif isinstance(label, str):
        if label in class_names:
            return class_names.index(label)
        if class_names == CLASS_NAMES and label in XML_NAMES:
            return XML_NAMES.index(label)
    raise ValueError(
        f"{path}: image {image}: unknown class {label!r} (expected one of {list(class_names)} or its index)"
    )


def _pairs(entry: Any, path: Path, image: str, label: Any) -> list[list[str]]:
    if not isinstance(entry, Mapping) or "vqa" not in entry:
        raise ValueError(f"{path}: image {image}, class {label!r}: expected a dict with a 'vqa' list")
    pairs = []
    for qa in entry["vqa"]:
        if len(qa) != 2:
            raise ValueError(f"{path}: image {image}, class {label!r}: VQA item {qa!r} is not (question, answer)")
        pairs.append([str(qa[0]), str(qa[1])])
    return pairs


def _by_pair(data: dict, path: Path, class_names: Sequence[str]) -> dict[tuple[str, int], list[list[str]]]:
    out: dict[tuple[str, int], list[list[str]]] = {}
    for key, per_class in data.items():
        image = _image_name(key, path)
        if not isinstance(per_class, Mapping):
            raise TypeError(f"{path}: image {image}: expected a dict class -> answers, got {type(per_class).__name__}")
        for label, entry in per_class.items():
            k = (image, _class_index(label, class_names, path, image))
            if k in out:
                raise ValueError(f"{path}: image {image}, class {class_names[k[1]]!r} appears twice")
            out[k] = _pairs(entry, path, image, label)
    return out


def convert_official_corpus(
    fg: dict, bg: dict, *, class_names: Sequence[str] = CLASS_NAMES, fg_path: str = "fg", bg_path: str = "bg"
) -> list[dict]:
    """Official FG / BG dicts -> our corpus records, sorted by (image, class index).

    Every (image, class) must be in both dicts; a pair missing from one is an error naming it.
    """
    fg_pairs = _by_pair(fg, Path(fg_path), class_names)
    bg_pairs = _by_pair(bg, Path(bg_path), class_names)
    only_fg = sorted(set(fg_pairs) - set(bg_pairs))
    only_bg = sorted(set(bg_pairs) - set(fg_pairs))
    if only_fg or only_bg:
        (image, c), where, other = (only_fg[0], fg_path, bg_path) if only_fg else (only_bg[0], bg_path, fg_path)
        raise ValueError(
            f"image {image}, class {class_names[c]!r} is in {where} but not in {other} "
            f"({len(only_fg)} pairs only in FG, {len(only_bg)} only in BG): pass the FG and BG files of one release"
        )
    records = []
    unknown = 0
    for image, c in sorted(fg_pairs):
        name = class_names[c]
        known = {q for _, q in expand_questions(DEFAULT_QUESTIONS, name)}
        unknown += sum(q not in known for q, _ in fg_pairs[image, c] + bg_pairs[image, c])
        records.append({"image": image, "class": name, "fg": fg_pairs[image, c], "bg": bg_pairs[image, c]})
    if unknown:
        log.warning("%d imported questions are not among the default templates (net.qape_text.DEFAULT_QUESTIONS)",
                    unknown)
    return records


def import_official_corpus(
    fg_path: str | os.PathLike,
    bg_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    class_names: Sequence[str] = CLASS_NAMES,
) -> int:
    """Read the two official files, write ``out_path`` (JSON lines, atomically); return the record count.

    Loads pickles: only pass trusted files.
    """
    records = convert_official_corpus(
        load_official_vqa(fg_path), load_official_vqa(bg_path),
        class_names=class_names, fg_path=str(fg_path), bg_path=str(bg_path),
    )
    write_text(out_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    log.info("wrote %d (image, class) records to %s", len(records), out_path)
    return len(records)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m tool.import_official_corpus --fg F --bg B --out corpus.jsonl``."""
    parser = argparse.ArgumentParser(
        description="Convert the authors' voc_vqa_{fg,bg}_blip.npy into qape/corpus.jsonl. "
        "The .npy files are pickles: only convert files you trust."
    )
    parser.add_argument("--fg", required=True, help="official FG file, e.g. voc_vqa_fg_blip.npy")
    parser.add_argument("--bg", required=True, help="official BG file, e.g. voc_vqa_bg_blip.npy")
    parser.add_argument("--out", required=True, help="output corpus, e.g. <work_dir>/qape/corpus.jsonl")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import_official_corpus(args.fg, args.bg, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
