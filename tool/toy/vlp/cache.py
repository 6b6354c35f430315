"""The cached entry point: train the toy CLIP and BLIP on a toy world unless ``<out>/toy_vlp.json`` says they are.

The cache key is ``VLP_VERSION``, the parameters and the world's parameters, not the code: a change to any
module of ``tool.toy.vlp`` that changes what is trained must bump ``VLP_VERSION`` (a change that leaves the
trained bytes alone, a refactoring, keeps it).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

import torch

from tool.engine.io import read_json, write_json
from tool.toy.vlp.blip import train_toy_blip
from tool.toy.vlp.clip import train_toy_clip
from tool.toy.vlp.params import ToyVlpParams
from tool.toy.vlp.records import load_records, read_split

log = logging.getLogger(__name__)

VLP_VERSION = 1
MARKER = "toy_vlp.json"


def _world_params(root: Path) -> dict:
    marker = root / "toy_world.json"
    if not marker.is_file():
        raise FileNotFoundError(f"{marker} does not exist: generate the toy world first (tool.toy.world, or "
                                "toy.generate: true)")
    params = read_json(marker).get("params", {})
    if params.get("layout", "voc") != "voc":
        raise ValueError(f"{root}: toy.vlp_dir needs a VOC-layout toy world (toy.layout: voc), got "
                         f"layout {params.get('layout')!r}")
    return params


def ensure_toy_vlp(root: str | os.PathLike, out_dir: str | os.PathLike, params: ToyVlpParams | None = None,
                   *, parallel: bool = True) -> dict:
    """Train the toy BLIP (``<out>/blip``) and CLIP (``<out>/clip``) on the world at ``root`` unless cached.

    The marker ``<out>/toy_vlp.json`` (written last) holds the version, ``params`` and the world's
    parameters; when it matches, nothing is trained and its summary is returned. Otherwise both
    models are trained on the world's ``train_aug`` images (minus any ``val`` id) and written.
    ``parallel``: train the BLIP in a second process while this one trains the CLIP (each with
    ``params.threads`` threads; the results are the same as one after the other).
    """
    p = params or ToyVlpParams()
    root, out_dir = Path(root), Path(out_dir)
    key = {"version": VLP_VERSION, "params": dataclasses.asdict(p), "world": _world_params(root)}
    marker = out_dir / MARKER
    if marker.is_file():
        stored = read_json(marker)
        if {k: stored.get(k) for k in key} == key:
            log.info("toy VLP: %s is up to date (cached), not retraining", out_dir)
            return stored
        log.info("toy VLP: parameters or world changed since %s was written, retraining", marker)
        marker.unlink()
    val = set(read_split(root, "val"))
    ids = [i for i in read_split(root, "train_aug") if i not in val]
    if p.max_images is not None:
        ids = ids[:p.max_images]
    if not ids:
        raise ValueError(f"toy VLP: no training images in {root}/ImageSets/Segmentation/train_aug.txt")
    log.info("toy VLP: training a tiny CLIP and a tiny BLIP VQA model on %d toy images -> %s (%s)", len(ids), out_dir,
             "in two processes" if parallel else "one after the other")
    t0 = time.time()
    if parallel:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: a fresh interpreter (fork after torch has started threads can deadlock)
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            blip = pool.submit(_train_blip_job, str(root), ids, str(out_dir / "blip"), dataclasses.asdict(p))
            clip_metrics = _with_threads(p.threads, train_toy_clip, load_records(root, ids), out_dir / "clip", p)
            metrics = {**clip_metrics, **blip.result()}
    else:
        records = load_records(root, ids)
        metrics = {**_with_threads(p.threads, train_toy_clip, records, out_dir / "clip", p),
                   **_with_threads(p.threads, train_toy_blip, records, out_dir / "blip", p)}
    metrics["seconds"] = round(time.time() - t0, 1)
    summary = {**key, "num_images": len(ids), "metrics": metrics}
    write_json(marker, summary)
    log.info("toy VLP: done in %.0f s (CLIP %.0f s, BLIP %.0f s)", metrics["seconds"], metrics["clip_seconds"],
             metrics["blip_seconds"])
    return summary


def _with_threads(threads: int, fn, *args):
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(old)


def _train_blip_job(root: str, ids: list[str], out_dir: str, params: dict) -> dict:
    """BLIP training in a worker process (``ensure_toy_vlp(parallel=True)``)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    p = ToyVlpParams(**params)
    return _with_threads(p.threads, train_toy_blip, load_records(root, ids), Path(out_dir), p)

