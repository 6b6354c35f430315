"""A toy-world stand-in for ImageNet weights: a ResNet-50 pretrained on object-centred toy crops.

Every real WSSS recipe starts the CAM classifier from an ImageNet backbone; offline there is none, and
a ResNet-50 trained from scratch on the demo's 300 multi-label images learns almost nothing in the
demo's budget (loss at the label prior, CAM mIoU at the trivial floors). So, as ImageNet does for VOC,
``make demo`` first pretrains the backbone on a *different* collection drawn by the same generator:

- one object per image, its class drawn round-robin over the 20 classes, in a scene drawn
  **independently** of the class (``scene_correlation`` 0: object-centred, like ImageNet, so the
  backbone learns what objects look like, not which background goes with them);
- its own seed (``toy.seed + 7919``) and image indices, so no pretraining image is a train or val
  image of the world;
- cropped to the object's box (square, 1.2× its long side, clipped to the image) and resized to
  ``image_size`` (64 px), single-label softmax over the 20 classes.

The saved file is a torchvision-key state dict (``conv1.weight`` … ``layer4.*``, ``fc.*``) that
``net.resnet50.load_pretrained`` reads like a downloaded ImageNet checkpoint (``cam.pretrained: <path>``).
Cached: ``<file>.json`` (written last) holds the parameters and metrics; :func:`ensure_toy_backbone`
with the same parameters does not retrain.

CLI::

    python -m tool.toy.backbone --out work/demo-vlp/resnet50_toy.pth      # train (cached); logs the held-out accuracy
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import multiprocessing
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from net.resnet50 import Bottleneck, ResNet50
from tool.data.imutils import normalize_on_device
from tool.engine.events import EventWriter
from tool.engine.io import atomic_path, read_json, write_json
from tool.engine.lr import sgd, warmup_poly_lr
from tool.engine.runtime import setup_logging
from tool.engine.train_loop import optimizer_step
from tool.toy.render import render_image
from voc12.dataset import XML_NAMES

log = logging.getLogger(__name__)

BACKBONE_VERSION = 1
SEED_OFFSET = 7919          # the pretraining collection's seed is toy.seed + this: never the world's images
INDEX_OFFSET = 1_000_000    # ... and its image indices start here


@dataclass(frozen=True)
class ToyBackboneParams:
    """The pretraining collection and schedule (all stored in the cache marker).

    The defaults reach 84 % held-out accuracy over the 20 classes (chance 5 %) in about 2.5 minutes on two
    CPU cores (300 SGD steps of 32 crops of 64 px).
    """

    seed: int = 0                 # the toy world's seed (toy.seed); the collection uses seed + SEED_OFFSET
    num_images: int = 3000        # crops rendered once, then sampled with flips
    num_heldout: int = 200        # of those, kept out of training to measure accuracy
    source_size: tuple[int, int] = (128, 160)   # H, W the objects are drawn in
    image_size: int = 64
    context: float = 1.2          # crop side / the object box's long side
    steps: int = 300
    batch_size: int = 32
    lr: float = 0.05              # 0.1 diverged early once (68 % held-out, 84 % at 0.05)
    warmup: int = 20
    momentum: float = 0.9
    weight_decay: float = 5e-5
    # The first steps run on one thread, the rest on all: beside the toy VLP (two models on one thread each) a
    # 2-core machine has one core left until the VLP is done, about this many steps in. A fixed schedule, not a
    # signal from the VLP, because the weights depend on the thread count in their last bits (oneDNN's
    # reductions): this way they are a function of the parameters alone, trained beside the VLP or not.
    single_thread_steps: int = 120


def object_crop_box(bbox: Sequence[int], height: int, width: int, context: float) -> tuple[int, int, int, int]:
    """The square box around an object box ``[x0, y0, x1, y1]`` (ends exclusive): side ``context``×
    its long side, same centre, clipped to the ``height``×``width`` image. Returns ``(x0, y0, x1, y1)``."""
    x0, y0, x1, y1 = bbox
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = context * max(x1 - x0, y1 - y0) / 2
    return (max(0, int(round(cx - half))), max(0, int(round(cy - half))),
            min(width, int(round(cx + half))), min(height, int(round(cy + half))))


def render_crops(p: ToyBackboneParams) -> tuple[np.ndarray, np.ndarray]:
    """The pretraining collection: uint8 [N, S, S, 3] RGB crops and int64 [N] class indices (XML_NAMES order).

    Image ``i`` holds one object of class ``i mod 20`` in a scene drawn independently of it.
    """
    H, W = p.source_size
    S = p.image_size
    images = np.zeros((p.num_images, S, S, 3), np.uint8)
    labels = np.zeros(p.num_images, np.int64)
    for i in range(p.num_images):
        k = i % len(XML_NAMES)
        toy = render_image(f"pretrain_{i}", INDEX_OFFSET + i, seed=p.seed + SEED_OFFSET, image_size=(H, W),
                           classes=[XML_NAMES[k]], scene_correlation=0.0, max_objects=1, void_width=0,
                           segmented=False)
        x0, y0, x1, y1 = object_crop_box(toy.meta["objects"][0]["bbox"], H, W, p.context)
        images[i] = cv2.resize(toy.image[y0:y1, x0:x1], (S, S), interpolation=cv2.INTER_AREA)
        labels[i] = k
    return images, labels


def _normalize(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, S, S, 3] -> ImageNet-normalised float [N, 3, S, S] (what CAMNet's inputs are)."""
    return normalize_on_device(torch.from_numpy(images).permute(0, 3, 1, 2))


class _Classifier(nn.Module):
    """ResNet-50 (torchvision layout, stride 32) + GAP + ``fc``: the state dict has torchvision's keys."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.backbone = ResNet50(strides=(2, 2, 2, 2), bn="batch")
        for m in self.backbone.modules():   # zero-init each block's last BN: trains from scratch faster
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone(x).mean(dim=(2, 3)))   # [N, K]

    def torchvision_state(self) -> dict[str, torch.Tensor]:
        state = {k: v.detach().clone() for k, v in self.backbone.state_dict().items()}
        state.update({f"fc.{k}": v.detach().clone() for k, v in self.fc.state_dict().items()})
        return state


@torch.no_grad()
def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch: int = 100) -> float:
    """Top-1 accuracy (%) of ``model`` (eval mode) on uint8 crops."""
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, len(images), batch):
        correct += int((model(_normalize(images[i:i + batch])).argmax(1).numpy() == labels[i:i + batch]).sum())
    model.train(was)
    return 100.0 * correct / max(1, len(images))


def train_toy_backbone(p: ToyBackboneParams, events: EventWriter | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Render the collection and train; returns (torchvision-key state dict, metrics).

    The first ``p.single_thread_steps`` steps run on one torch thread, the rest on this process's thread count.
    Metrics ``threads``: ``[step, count]`` at the start and at the switch.
    """
    if p.num_heldout >= p.num_images:
        raise ValueError(f"toy backbone: num_heldout ({p.num_heldout}) must be below num_images ({p.num_images})")
    t0 = time.time()
    images, labels = render_crops(p)
    seconds_render = time.time() - t0
    n_train = p.num_images - p.num_heldout
    torch.manual_seed(p.seed)
    model = _Classifier(len(XML_NAMES))
    optimizer = sgd([{"params": list(model.parameters()), "lr": p.lr}], momentum=p.momentum,
                    weight_decay=p.weight_decay, nesterov=True)
    rng = np.random.default_rng([p.seed, SEED_OFFSET])
    losses: list[float] = []
    events = events if events is not None else EventWriter(None, "toy_backbone")
    events.start(0, resumed=False)
    t1 = time.time()
    all_threads = torch.get_num_threads()
    threads: list[list[int]] = []   # [step, count] at the start and at the switch
    for step in range(p.steps):
        n = 1 if step < p.single_thread_steps else all_threads
        if not threads or n != threads[-1][1]:
            torch.set_num_threads(n)
            threads.append([step, n])
        lr = warmup_poly_lr(step, p.lr, p.steps, p.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        idx = rng.integers(0, n_train, p.batch_size)
        x = _normalize(images[idx])                                   # [B, 3, S, S]
        flip = torch.from_numpy(rng.random(p.batch_size) < 0.5)
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        loss = F.cross_entropy(model(x), torch.from_numpy(labels[idx]))
        losses.append(optimizer_step(optimizer, loss, "toy backbone", step))
        events.step_done({"loss": losses[-1]}, p.batch_size)
        if (step + 1) % 50 == 0 or step + 1 == p.steps:
            events.record(step + 1, 0, optimizer)
            log.info("toy backbone step %d/%d loss %.4f lr %.4f", step + 1, p.steps, float(np.mean(losses[-50:])), lr)
    metrics = {"loss": round(float(np.mean(losses[-20:])), 4),
               "heldout_accuracy": round(accuracy(model, images[n_train:], labels[n_train:]), 2),
               "chance_accuracy": round(100.0 / len(XML_NAMES), 2),
               "seconds_render": round(seconds_render, 1), "seconds_train": round(time.time() - t1, 1),
               "threads": threads}
    torch.set_num_threads(all_threads)
    return model.torchvision_state(), metrics


def _marker(out: Path) -> Path:
    return out.with_suffix(out.suffix + ".json")


def _cache_key(p: ToyBackboneParams) -> dict:
    return {"version": BACKBONE_VERSION, "params": json_params(p)}


def cached_toy_backbone(out: str | os.PathLike, params: ToyBackboneParams) -> dict | None:
    """The summary in ``out``'s marker when it was written with ``params`` (and the weights exist), else None."""
    out = Path(out)
    if not (_marker(out).is_file() and out.is_file()):
        return None
    stored = read_json(_marker(out))
    key = _cache_key(params)
    return stored if {k: stored.get(k) for k in key} == key else None


def ensure_toy_backbone(out: str | os.PathLike, params: ToyBackboneParams | None = None) -> dict:
    """Train the toy-pretrained ResNet-50 into ``out`` (a ``.pth`` file) unless cached; return its summary.

    The marker ``<out>.json`` is written after the weights; when it matches ``params`` (and the weights
    exist) nothing is trained.
    """
    p = params or ToyBackboneParams()
    out = Path(out)
    marker = _marker(out)
    key = _cache_key(p)
    stored = cached_toy_backbone(out, p)
    if stored is not None:
        log.info("toy backbone: %s is up to date (cached), not retraining", out)
        return stored
    if marker.is_file():
        log.info("toy backbone: parameters changed since %s was written, retraining", marker)
    marker.unlink(missing_ok=True)
    log.info("toy backbone: pretraining a ResNet-50 on %d object crops of the toy world (%d steps) -> %s",
             p.num_images, p.steps, out)
    t0 = time.time()
    state, metrics = train_toy_backbone(p, EventWriter(out.parent / "events" / "toy_backbone.jsonl", "toy_backbone"))
    metrics["seconds"] = round(time.time() - t0, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        torch.save(state, tmp)
    summary = {**key, "metrics": metrics}
    write_json(marker, summary)
    log.info("toy backbone: done in %.0f s, held-out accuracy %.1f %% (chance %.1f %%)", metrics["seconds"],
             metrics["heldout_accuracy"], metrics["chance_accuracy"])
    return summary


class BackgroundBackbone:
    """:func:`ensure_toy_backbone` in a spawned process, so that it trains beside the toy VLP.

    The VLP trains two models on one thread each; on a 2-core laptop its second core is idle once the BLIP is
    done. The backbone's first ``single_thread_steps`` run on one thread beside them (see
    :class:`ToyBackboneParams`), the rest on this process's thread count.
    """

    def __init__(self, out: str | os.PathLike, params: ToyBackboneParams):
        ctx = multiprocessing.get_context("spawn")   # fork after torch has started threads can deadlock
        self.out = Path(out)
        self._proc = ctx.Process(target=_background_job, name="toy-backbone", daemon=True,
                                 args=(str(out), params, torch.get_num_threads()))
        self._proc.start()
        log.info("toy backbone: training in a second process (pid %d) beside the toy VLP", self._proc.pid)

    def wait(self) -> dict:
        """Join the process; its summary (from the marker), or RuntimeError naming the file."""
        self._proc.join()
        if self._proc.exitcode != 0:
            raise RuntimeError(f"toy backbone: training {self.out} failed in its process (exit code "
                               f"{self._proc.exitcode}; its traceback is above)")
        summary = read_json(_marker(self.out))
        m = summary["metrics"]
        log.info("toy backbone: done in %.0f s beside the toy VLP (threads %s), held-out accuracy %.1f %% "
                 "(chance %.1f %%)", m["seconds"], m["threads"], m["heldout_accuracy"], m["chance_accuracy"])
        return summary

    def stop(self) -> None:
        """On the parent's failure: end the process (the marker is written last, so nothing half-done is reused)."""
        if self._proc.is_alive():
            self._proc.terminate()
        self._proc.join()


def _background_job(out: str, params: ToyBackboneParams, threads: int) -> None:
    setup_logging(None)
    torch.set_num_threads(threads)
    ensure_toy_backbone(out, params)


def json_params(p: ToyBackboneParams) -> dict:
    """``p`` as stored in the marker (tuples as lists, so a read-back compares equal)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(p).items()}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tool.toy.backbone", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="the .pth file to write (its .json marker goes next to it)")
    ap.add_argument("--seed", type=int, default=0, help="the toy world's seed (toy.seed)")
    ap.add_argument("--steps", type=int, default=ToyBackboneParams.steps)
    ap.add_argument("--num-images", type=int, default=ToyBackboneParams.num_images)
    args = ap.parse_args(argv)
    setup_logging(None)
    summary = ensure_toy_backbone(args.out, ToyBackboneParams(seed=args.seed, steps=args.steps,
                                                              num_images=args.num_images))
    m = summary["metrics"]
    log.info("held-out accuracy %.1f %% (chance %.1f %%), %.0f s", m["heldout_accuracy"], m["chance_accuracy"],
             m.get("seconds", 0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
