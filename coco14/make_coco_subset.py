"""Make a named COCO image subset (a list file) deterministically, so every stage uses the same images.

    python -m coco14.make_coco_subset --root data/COCO --split train --first 10000 --name train_first10k
    python -m coco14.make_coco_subset --root data/COCO --split val --random 1000 --seed 0 --name val_rand1k

Writes ``<root>/lists/<name>.txt`` (or ``--out PATH``): one image stem per line, after a ``#`` comment
line saying how it was made; ``dataset.*_split: <name>`` (or the path) then selects it.

``--first N`` takes the first N images of the split in COCO-id order. The official code's first 10,000
train images also counted those without annotations, which have no label and so no CAM here;
``--split train --first 10000`` takes the first 10,000 that have one. ``--random N --seed S`` draws N
without replacement with ``numpy.random.default_rng(S)`` and keeps them in split order. The same
arguments give the same file, byte for byte.
"""
from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from coco14.dataset import COCO14, read_list_file
from tool.data.base import DatasetError
from tool.engine.io import write_text

log = logging.getLogger(__name__)


def select_subset(ids: Sequence[str], *, first: int | None = None, random: int | None = None,
                  seed: int = 0) -> list[str]:
    """The first ``first`` ids, or ``random`` ids drawn with ``default_rng(seed)``, in the order of ``ids``."""
    if (first is None) == (random is None):
        raise ValueError("give exactly one of --first N and --random N")
    n = first if first is not None else random
    assert n is not None
    if n < 1 or n > len(ids):
        raise ValueError(f"subset size {n} must be in [1, {len(ids)}] (the split has {len(ids)} images)")
    if first is not None:
        return list(ids[:n])
    picked = np.sort(np.random.default_rng(seed).choice(len(ids), size=n, replace=False))
    return [ids[i] for i in picked.tolist()]


def write_subset(path: str | Path, ids: Sequence[str], how: str, force: bool = False) -> bool:
    """Write the list file; False when an identical one is already there. Another list there needs ``force``."""
    path = Path(path)
    text = f"# {how}\n" + "".join(f"{i}\n" for i in ids)
    if path.is_file():
        if path.read_text() == text:
            return False
        if not force and read_list_file(path) != list(ids):
            raise FileExistsError(f"{path} already holds another list; pass --force to replace it or pick "
                                  "another --name")
    write_text(path, text)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """CLI; returns the exit status (2 on a user error, with the message logged)."""
    ap = argparse.ArgumentParser(prog="python -m coco14.make_coco_subset", description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="the COCO 2014 folder")
    ap.add_argument("--split", required=True, help="the split to draw from: train | val | train_all | val_all | a list")
    how = ap.add_mutually_exclusive_group(required=True)
    how.add_argument("--first", type=int, help="the first N images in COCO-id order")
    how.add_argument("--random", type=int, help="N images drawn at random (see --seed)")
    ap.add_argument("--seed", type=int, default=0)
    dest = ap.add_mutually_exclusive_group(required=True)
    dest.add_argument("--name", help="write <root>/lists/<name>.txt")
    dest.add_argument("--out", help="write this path")
    ap.add_argument("--cache-dir", default=None, help="reuse / write the parsed-annotation cache here")
    ap.add_argument("--force", action="store_true", help="replace a different list of the same name")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.name is not None and ("/" in args.name or args.name.endswith(".txt")):
            raise ValueError(f"--name {args.name!r}: a bare name (use --out for a path)")
        ds = COCO14(args.root, cache_dir=args.cache_dir)
        ids = select_subset(ds.ids(args.split), first=args.first, random=args.random, seed=args.seed)
        sel = f"--first {args.first}" if args.first is not None else f"--random {args.random} --seed {args.seed}"
        path = Path(args.out) if args.out else Path(args.root) / "lists" / f"{args.name}.txt"
        wrote = write_subset(path, ids, f"python -m coco14.make_coco_subset --split {args.split} {sel}", args.force)
    except (DatasetError, FileExistsError, ValueError) as e:
        log.error("%s", e)
        return 2
    log.info("make_coco_subset: %s %d images of %s -> %s", "wrote" if wrote else "unchanged:", len(ids),
             args.split, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
