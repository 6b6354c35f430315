"""Every hot spot in float32 and bfloat16 on one device, with the real architectures (random weights), and the VOC
projection.

Each hot spot runs OUR function (the step's own code path) in ``float32`` and in ``bfloat16`` through
``tool.engine.runtime.autocast`` (the steps' ``*.precision`` keys), on the same inputs and the same (seeded)
weights; each precision after a warm-up call, median of ``--iters``. Printed per hot spot: seconds per call in
both, their ratio fp32/bf16, and the equivalence of the two: max |bf16 − fp32| / max |fp32| of the warm-up call's
output (the loss terms of a training step's first iteration, before any weight moved; the inference output
otherwise; QAPE also the share of identical answers). The hot spots (VOC sizes):

- ``qape``: BLIP ViT-B/16 VQA at 480 px, 16 VOC-size images with the 16 default questions per (image, class),
  1.5 classes per image (VOC's mean): ``BlipVQA.encode_images`` + ``answer`` (``qape.precision``);
- ``train_ritc``: one RITC step (``step.train_ritc.RitcLoss`` forward + backward + SGD) at batch 8, crop 512,
  CLIP ViT-L-14 with the ovseg mask prompts, without / with ``clip.grad_checkpointing`` (``ritc.precision``);
- ``train_cam``: one baseline CAM step at batch 16, crop 512 (``cam.precision``);
- ``make_cam``: one 500×375 image, four scales each with its flip (``tool.seg.cam_infer.multiscale_cam``,
  ``make_cam.precision``);
- ``train_irn``: one IRN step at batch 32, crop 512 (``AffinityDisplacementLoss``; ``irn.precision``);
- ``make_sem_seg``: one VOC image: IRNet's boundary map (``net.random_walk.boundary_map``, its mirror, padded to
  512² as IRN; ``irn.precision``) plus the walk on its stride-4 CAMs (2 present classes + background; the walk
  stays float32 by design); compared: the boundary map;
- ``train_deeplab``: one DeepLabV2-R101 MSC step at batch 5, crop 321 (``deeplab.precision``);
- ``eval_deeplab``: the single-scale forward of one 500×375 image (``predict_logits``,
  ``deeplab_eval.precision``).

Peak memory (``torch.cuda.max_memory_allocated``) on CUDA. The projection multiplies each per-item figure (the
faster precision, and RITC's faster checkpointing variant: the configs can choose them) by the VOC counts
(10,582 train_aug images; 15 RITC, 5 CAM, 3 IRN epochs; 30,000 DeepLab iterations; 1,449 val images) and sets it
next to the targets of docs/design.md §7. ``--tiny`` shrinks models and sizes so that ``--device cpu --tiny`` runs
in seconds (a test runs it); its figures mean nothing. ``bench/bench_precision.py`` runs the same hot spots at
CPU sizes. A second table projects COCO's per-image steps on ``--gpus`` GPUs (``project_coco``: the same
per-image figures scaled to COCO's images and classes, the images shared evenly by the ranks; docs/cluster.md).
``--targets`` measures nothing and projects from rates that meet the VOC targets exactly. Writes ``--out`` (JSON)
and prints the tables.

    python -m bench.gpu [--device cuda] [--out gpu_bench.json] [--iters 3] [--only qape,train_ritc] [--gpus 8]
    python -m bench.gpu --targets --gpus 8        # no GPU: COCO's per-image steps if the VOC targets are met
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tool.engine.runtime import autocast, cpu_has_native_bf16

VOC_TRAIN_AUG = 10582
VOC_VAL = 1449
VOC = {"cam_epochs": 5, "cam_batch": 16, "ritc_epochs": 15, "ritc_batch": 8, "irn_epochs": 3, "irn_batch": 32,
       "deeplab_iterations": 30000, "deeplab_batch": 5}
# one H100 (docs/design.md §7); minutes (peak GB for RITC)
TARGETS_MIN = {"qape": 5, "train_ritc": 25, "make_cam": 3, "make_sem_seg": 3, "train_deeplab": 45,
               "to_pseudo_masks": 60}
RITC_PEAK_GB = 40
CHAIN = ("qape", "train_cam", "train_ritc", "make_cam", "train_irn", "make_sem_seg")   # the VOC stages to pseudo masks
HOT_SPOTS = ("qape", "train_cam", "train_ritc", "make_cam", "train_irn", "make_sem_seg", "train_deeplab",
             "eval_deeplab")
PRECISIONS = {"fp32": "float32", "bf16": "bfloat16"}     # column name -> the steps' precision value


@dataclass(frozen=True)
class Sizes:
    """What the hot spots measure: VOC's sizes and the paper's models (the defaults), ``TINY`` (a CPU smoke run)
    or ``bench.bench_precision.CPU`` (the demo's sizes)."""

    tiny_models: bool = False                    # bench.real_scale.write_real_models(tiny=...)
    image: tuple[int, int] = (375, 500)          # H, W of an image (qape, make_cam, make_sem_seg, eval_deeplab)
    qape_images: int = 16
    qape_size: int = 480                         # BLIP input side
    ritc_batch: int = 8
    ritc_crop: int = 512
    cam_batch: int = 16
    cam_crop: int = 512
    cam_scales: tuple[float, ...] = (1.0, 0.5, 1.5, 2.0)
    irn_batch: int = 32
    irn_crop: int = 512                          # also the boundary map's padding (IRN pads to its training crop)
    irn_radius: int = 10                         # irn.radius_train
    walk_exp_times: int = 8                      # irn.exp_times
    dl_batch: int = 5
    dl_crop: int = 321
    dl_blocks: tuple[int, ...] = (3, 4, 23, 3)   # ResNet-101
    dl_rates: tuple[int, ...] = (6, 12, 18, 24)


TINY = Sizes(tiny_models=True, image=(48, 64), qape_images=2, qape_size=32, ritc_batch=2, ritc_crop=64, cam_batch=2,
             cam_crop=64, irn_batch=1, irn_crop=128, dl_batch=1, dl_crop=65, dl_blocks=(1, 1, 1, 1))
# (irn_crop 128: the path radius 10 needs it)

Output = torch.Tensor | tuple[torch.Tensor, list[str]]   # what the two precisions are compared on (QAPE: answers too)
Run = Callable[[], Output]                                  # one timed call


@dataclass
class Spot:
    """One measured row: ``make(precision)`` gives the call to time, on inputs and weights shared by both
    precisions."""

    name: str
    per: str                     # what one call does, for the table ("step, batch 16", "1 image")
    compared: str                # what the equivalence compares
    make: Callable[[str], Run]
    variant: str = ""            # train_ritc: "" or "grad_ckpt"
    images: int = 0              # images per call of an inference hot spot (the projection's per-image time)
    extra: dict = field(default_factory=dict)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _detach(out: Output) -> Output:
    if isinstance(out, tuple):
        return out[0].detach().float().cpu(), list(out[1])
    return out.detach().float().cpu()


def timed(fn: Run, dev: torch.device, iters: int) -> tuple[Output, float, float | None]:
    """(the warm-up call's output, median seconds of ``iters`` calls after it, peak GPU memory GB over the timed
    calls or None on CPU). The warm-up also lets oneDNN build its bf16 kernels for each shape."""
    first = _detach(fn())
    _sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        _sync(dev)
        times.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated(dev) / 1e9 if dev.type == "cuda" else None
    return first, statistics.median(times), peak


def equivalence(ref: Output, out: Output) -> dict:
    """``rel_diff``: max |out − ref| / max |ref| (0 = identical); with answers also ``same_answers`` (share)."""
    res = {}
    if isinstance(ref, tuple):
        (ref, ref_answers), (out, answers) = ref, out
        res["same_answers"] = sum(a == b for a, b in zip(ref_answers, answers)) / max(len(ref_answers), 1)
    res["rel_diff"] = ((out - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()
    return res


def compare(spot: Spot, dev: torch.device, iters: int) -> dict:
    """The JSON row of ``spot``: per precision seconds per call and peak GB, ``ratio`` fp32/bf16 and the
    equivalence of bf16's output to float32's."""
    row: dict = {"hot_spot": spot.name, "variant": spot.variant, "per": spot.per, "images": spot.images,
                 "compared": spot.compared, **spot.extra}
    outs = {}
    for name, precision in PRECISIONS.items():
        outs[name], s, peak = timed(spot.make(precision), dev, iters)
        row[name] = {"s": s, "peak_gb": peak}
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    row["ratio"] = row["fp32"]["s"] / row["bf16"]["s"]
    row.update(equivalence(outs["fp32"], outs["bf16"]))
    return row


def _seeded(build: Callable[[], torch.nn.Module], dev: torch.device) -> torch.nn.Module:
    """``build()`` from seed 0, so that both precisions of a training hot spot start from the same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build().to(dev)


def qape_spots(models: dict, sz: Sizes, dev: torch.device) -> list[Spot]:
    from net.blip_vqa import BlipVQA
    from net.qape_text import DEFAULT_QUESTIONS, expand_questions
    from voc12.dataset import CLASS_NAMES

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(*sz.image, 3), dtype=np.uint8) for _ in range(sz.qape_images)]
    items = [(i, q) for i in range(len(images)) for c in CLASS_NAMES[: 1 + i % 2]   # 1.5 classes per image
             for _, q in expand_questions(DEFAULT_QUESTIONS, c)]

    def make(precision: str) -> Run:
        vqa = BlipVQA.from_pretrained(models["qape.vqa_model"], device=dev, image_size=sz.qape_size,
                                      precision=lambda: autocast(precision, dev, "qape.precision"))

        def run() -> Output:
            embeds = torch.cat([vqa.encode_images(vqa.preprocess_batch(images[s:s + 8]))
                                for s in range(0, len(images), 8)])          # [N, P, D]
            return embeds, vqa.answer(embeds, items, batch_size=128)
        return run
    return [Spot("qape", f"{len(images)} images, {len(items)} questions", "image embeds", make, images=len(images),
                 extra={"questions": len(items)})]


def _clip_config(models: dict, grad_ckpt: bool):
    from tool.engine.config import ClipConfig
    return ClipConfig(model=models["clip.model"], pretrained=models["clip.pretrained"],
                      quick_gelu=True if models.get("clip.quick_gelu") == "true" else None,
                      mask_prompt_checkpoint=models["clip.mask_prompt_checkpoint"], grad_checkpointing=grad_ckpt)


def ritc_spots(models: dict, sz: Sizes, dev: torch.device) -> list[Spot]:
    from bench.bench_ritc_step import synthetic_ritc_inputs
    from net.resnet50_cam import CAMNet
    from step.train_ritc import RitcLoss, load_region_clip
    from tool.engine.config import Config, build
    from tool.engine.lr import sgd

    clip, encode, mask = load_region_clip(_clip_config(models, False), dev)
    g = torch.Generator().manual_seed(0)
    _, _, _, _, bank, batch = synthetic_ritc_inputs(sz.ritc_batch, 20, sz.ritc_crop, clip.embed_dim, dev, g)

    def maker(ckpt: bool) -> Callable[[str], Run]:
        def make(precision: str) -> Run:
            clip.model.set_grad_checkpointing(ckpt)
            model = _seeded(lambda: CAMNet(20, pretrained=None, bn="batch"), dev).train()
            backbone, head = model.param_groups()
            opt = sgd([{"params": backbone, "lr": 1e-6}, {"params": head, "lr": 1e-5}], momentum=1e-4,
                      weight_decay=1e-4)
            loss = RitcLoss(model, clip, encode, mask, bank,
                            build(Config, {"ritc": {"precision": precision}}, "bench.gpu"), dev)

            def run() -> torch.Tensor:
                opt.zero_grad(set_to_none=True)
                terms = loss(batch)
                terms["loss"].backward()
                opt.step()
                return torch.stack([terms[k].detach() for k in ("loss", "frc", "brc", "reg")])
            return run
        return make
    per, pairs = f"step, batch {sz.ritc_batch}", {"pairs_per_step": int(batch["label"].sum())}
    return [Spot("train_ritc", per, "loss, FRC, BRC, REG", maker(False), extra=pairs),
            Spot("train_ritc", per, "loss, FRC, BRC, REG", maker(True), variant="grad_ckpt", extra=pairs)]


def _train_step(build: Callable[[], torch.nn.Module], groups: Callable, batch_size: int, crop: int,
                dev: torch.device, terms_of: Callable) -> Callable[[str], Run]:
    """``make(precision)`` of one SGD step of a fresh seeded ``build()`` on random uint8 crops; the call returns
    ``terms_of(model, x, precision)`` (the loss first, float32) before the step moved the weights."""
    from tool.data.imutils import normalize_on_device
    from tool.engine.lr import sgd

    g = torch.Generator().manual_seed(1)
    img = torch.randint(0, 256, (batch_size, 3, crop, crop), dtype=torch.uint8, generator=g).to(dev)
    valid = torch.ones(batch_size, crop, crop, dtype=torch.uint8, device=dev)

    def make(precision: str) -> Run:
        model = _seeded(build, dev).train()
        opt = sgd(groups(model), momentum=0.9, weight_decay=1e-4)

        def run() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            terms = terms_of(model, normalize_on_device(img, valid), precision)
            terms[0].backward()
            opt.step()
            return terms.detach()
        return run
    return make


def train_cam_spots(models: dict, sz: Sizes, dev: torch.device) -> list[Spot]:
    from net.resnet50_cam import CAMNet

    label = (torch.rand(sz.cam_batch, 20, generator=torch.Generator().manual_seed(2)) < 0.1).float().to(dev)

    def groups(m):
        backbone, head = m.param_groups()
        return [{"params": backbone, "lr": 1e-6}, {"params": head, "lr": 1e-5}]

    def terms(m, x, precision):            # step/train_cam.py's loss_fn
        with autocast(precision, dev, key="cam.precision"):
            logits = m(x)                                                   # [N, K]
        return F.multilabel_soft_margin_loss(logits.float(), label)[None]
    make = _train_step(lambda: CAMNet(20, pretrained=None, bn="fixed"), groups, sz.cam_batch, sz.cam_crop, dev,
                       terms)
    return [Spot("train_cam", f"step, batch {sz.cam_batch}", "loss", make)]


def make_cam_spots(models: dict, sz: Sizes, dev: torch.device) -> list[Spot]:
    from net.resnet50_cam import CAMNet
    from tool.seg.cam_infer import multiscale_cam

    model = _seeded(lambda: CAMNet(20, pretrained=None), dev).eval()
    h, w = sz.image
    base = torch.randint(0, 256, (1, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(3)).float()
    imgs = [F.interpolate(base, size=(round(h * s), round(w * s)), mode="bilinear", align_corners=False)[0]
            .round().clamp(0, 255).to(torch.uint8) for s in sz.cam_scales]
    keys = torch.tensor([2, 14], device=dev)

    def make(precision: str) -> Run:
        return lambda: multiscale_cam(model, imgs, keys, (h, w), dev, precision)[0]     # [2, h/4, w/4]
    return [Spot("make_cam", f"1 image, {len(sz.cam_scales)} scales", "CAMs", make, images=1,
                 extra={"scales": list(sz.cam_scales)})]


def train_irn_spots(models: dict, sz: Sizes, dev: torch.device) -> list[Spot]:
    from net.path_index import PathIndex, affinity_labels
    from net.resnet50_irn import AffinityDisplacementLoss

    c = sz.irn_crop // 4
    path_index = PathIndex(sz.irn_radius, (c, c))
    small = torch.randint(0, 3, (sz.irn_batch, c, c), generator=torch.Generator().manual_seed(4))
    small[:, : c // 4] = 255                                                  # uncertain band, as IR labels have
    labels = [t.to(dev).float() for t in affinity_labels(small, path_index)]  # bg_pos, fg_pos, neg

    def terms(m, x, precision):            # step/train_irn.py's loss_fn (the losses inside run in float32)
        with autocast(precision, dev, key="irn.precision"):
            out = m(x, *labels)
        return torch.stack([out["total"], *(v for k, v in out.items() if k != "total")])
    make = _train_step(lambda: AffinityDisplacementLoss(path_index), lambda m: m.param_groups(0.1, 1e-4),
                       sz.irn_batch, sz.irn_crop, dev, terms)
    return [Spot("train_irn", f"step, batch {sz.irn_batch}", "loss terms", make)]


def make_sem_seg_spots(models: dict, sz: Sizes, dev: torch.device) -> list[Spot]:
    from net.random_walk import boundary_map, random_walk
    from net.resnet50_irn import EdgeDisplacement
    from tool.data.imutils import normalize_on_device

    model = _seeded(lambda: EdgeDisplacement(crop_size=sz.irn_crop), dev).eval()
    h, w = sz.image
    g = torch.Generator().manual_seed(5)
    x = normalize_on_device(torch.randint(0, 256, (1, 3, h, w), dtype=torch.uint8, generator=g).to(dev))
    cams = torch.rand(3, -(-h // 4), -(-w // 4), generator=g).to(dev)       # bg + 2 classes, stride 4

    def make(precision: str) -> Run:
        @torch.no_grad()
        def run() -> torch.Tensor:                                          # step/make_sem_seg.py's per image
            with autocast(precision, dev, key="irn.precision"):
                edge = boundary_map(model, x).float()                       # [h/4, w/4]
            random_walk(cams, edge, beta=10.0, exp_times=sz.walk_exp_times, radius=5)
            return edge
        return run
    return [Spot("make_sem_seg", "1 image (+ walk fp32)", "boundary map", make, images=1,
                 extra={"walk_size": list(cams.shape[1:])})]


def _deeplab_config(sz: Sizes, precision: str = "float32"):
    from tool.engine.config import Config, build
    return build(Config, {"deeplab": {"pretrained": None, "precision": precision, "blocks": list(sz.dl_blocks),
                                      "atrous_rates": list(sz.dl_rates)},
                          "deeplab_eval": {"precision": precision}}, "bench.gpu")


def train_deeplab_spots(models: dict, sz: Sizes, dev: torch.device) -> list[Spot]:
    from net.deeplab import build_model, masked_cross_entropy, optimizer_groups, resize_labels

    c = _deeplab_config(sz).deeplab
    labels = torch.randint(0, 21, (sz.dl_batch, sz.dl_crop, sz.dl_crop), generator=torch.Generator().manual_seed(6))
    labels = labels.to(dev)

    def terms(m, x, precision):            # step/train_deeplab.py's loss_fn
        with autocast(precision, dev, key="deeplab.precision"):
            outs = m(x)                    # [1.0, *msc_scales, max] logits
        ce = [masked_cross_entropy(o.float(), resize_labels(labels, tuple(o.shape[-2:]))) for o in outs]
        return torch.stack([sum(ce), *ce])
    make = _train_step(lambda: build_model(c, 21), lambda m: optimizer_groups(m.base, 2.5e-4, 5e-4, 10, 20),
                       sz.dl_batch, sz.dl_crop, dev, terms)
    return [Spot("train_deeplab", f"step, batch {sz.dl_batch}", "loss terms", make)]


def eval_deeplab_spots(models: dict, sz: Sizes, dev: torch.device) -> list[Spot]:
    from net.deeplab import build_model, normalize_input, predict_logits

    cfg = _deeplab_config(sz)
    model = _seeded(lambda: build_model(cfg.deeplab, 21), dev).eval()
    h, w = sz.image
    img = torch.randint(0, 256, (1, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(7)).to(dev)
    e = cfg.deeplab_eval

    def make(precision: str) -> Run:
        @torch.no_grad()
        def run() -> torch.Tensor:                                          # step/eval_deeplab.py's forward
            x = normalize_input(img, None, cfg.deeplab.pretrained_format)   # [1, 3, H, W]
            with autocast(precision, dev, key="deeplab_eval.precision"):
                return predict_logits(model, x, e.msc, e.flip).float()      # [1, K, h, w]
        return run
    return [Spot("eval_deeplab", "1 image", "logits", make, images=1)]


SETUPS: dict[str, Callable[[dict, Sizes, torch.device], list[Spot]]] = {
    "qape": qape_spots, "train_cam": train_cam_spots, "train_ritc": ritc_spots, "make_cam": make_cam_spots,
    "train_irn": train_irn_spots, "make_sem_seg": make_sem_seg_spots, "train_deeplab": train_deeplab_spots,
    "eval_deeplab": eval_deeplab_spots}


def measure(only: list[str], models: dict, sz: Sizes, dev: torch.device, iters: int) -> Iterator[dict]:
    """The rows of the hot spots ``only`` (names of ``HOT_SPOTS``), one at a time as measured."""
    for name in only:
        t = time.perf_counter()
        for spot in SETUPS[name](models, sz, dev):
            yield compare(spot, dev, iters)
        print(f"measured {name} in {time.perf_counter() - t:.1f} s", flush=True)
        if dev.type == "cuda":
            torch.cuda.empty_cache()


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def check_only(only: str) -> list[str]:
    names = [s.strip() for s in only.split(",") if s.strip()]
    bad = [s for s in names if s not in HOT_SPOTS]
    if bad:
        raise SystemExit(f"--only: unknown hot spot(s) {bad}; known: {', '.join(HOT_SPOTS)}")
    return names


def best_seconds(rows: list[dict], spot: str) -> float | None:
    """Seconds per call (per image for an inference hot spot) of the fastest row of ``spot`` (either precision)."""
    vals = [r[p]["s"] / (r["images"] or 1) for r in rows if r["hot_spot"] == spot for p in PRECISIONS]
    return min(vals) if vals else None


def project(rows: list[dict]) -> list[dict]:
    """VOC stage times (minutes) from the measured rows, each stage with its faster precision (and variant),
    next to the targets."""
    def best(spot: str) -> float | None:
        return best_seconds(rows, spot)

    def epochs(key: str, step_s: float) -> float:
        return VOC[f"{key}_epochs"] * (VOC_TRAIN_AUG // VOC[f"{key}_batch"]) * step_s / 60

    per_stage = {   # stage -> minutes from its seconds per call / per image
        "qape": lambda s: VOC_TRAIN_AUG * s / 60,
        "train_cam": lambda s: epochs("cam", s),
        "train_ritc": lambda s: epochs("ritc", s),
        "make_cam": lambda s: (VOC_TRAIN_AUG + 1464) * s / 60,   # train_aug + make_cam.compare_baseline's 1,464
        "train_irn": lambda s: epochs("irn", s),
        "make_sem_seg": lambda s: VOC_TRAIN_AUG * s / 60,
        "train_deeplab": lambda s: VOC["deeplab_iterations"] * s / 60,
        "eval_deeplab": lambda s: VOC_VAL * s / 60}
    out = [{"stage": stage, "minutes": minutes(s), "target_min": TARGETS_MIN.get(stage)}
           for stage, minutes in per_stage.items() if (s := best(stage)) is not None]
    minutes = {r["stage"]: r["minutes"] for r in out}
    chain = [minutes.get(s) for s in CHAIN]        # a stage not measured leaves the total unknown, not smaller
    out.append({"stage": "to_pseudo_masks", "minutes": sum(chain) if None not in chain else None,
                "target_min": TARGETS_MIN["to_pseudo_masks"],
                "note": "qape + train_cam + train_ritc + make_cam + train_irn + make_sem_seg; cam_to_ir_label's CRF "
                        "(CPU processes) and text_feats not measured here"})
    return out


# COCO's per-image steps (configs/coco14.yaml): the 82,081 train2014 images with a class (docs/coco.md)
COCO_TRAIN = 82081
COCO_CLASSES_PER_IMAGE = 3.5    # the COCO paper's mean categories per image; VOC's 1.5 is what the bench measures
VOC_CLASSES_PER_IMAGE = 1.5
COCO_PIXELS = 640 * 480         # COCO's usual size, at most 640 on the long side: an upper bound of the mean
VOC_PIXELS = 500 * 375
WALK_ROWS_VOC = 3               # the bench's walk: 2 present classes + background


def project_coco(rows: list[dict], gpus: int) -> list[dict]:
    """Minutes of COCO's per-image steps on ``gpus`` GPUs from the per-image figures measured at VOC size (the
    faster precision of each).

    Each rank makes 1/``gpus`` of the images (``dist.shard``), so a step's time divides by ``gpus``. Scaled from
    the measurement: QAPE by the classes per image (its questions; the image encoding does not grow, so an upper
    bound), CAM export by the pixels (the CAM net's four scales), the boundary map and random walk by the pixels and
    by the walk's rows (classes + background). ``make_cam`` exports the train CAMs and, with
    ``make_cam.compare_baseline``, the baseline's CAMs of ``dataset.eval_split`` (``train`` by default: twice
    82,081). ``cam_to_ir_label`` (CRF in CPU processes) is not measured here."""
    pixels = COCO_PIXELS / VOC_PIXELS
    out_rows = []
    if (qape := best_seconds(rows, "qape")) is not None:
        out_rows.append(("qape", COCO_TRAIN, COCO_CLASSES_PER_IMAGE / VOC_CLASSES_PER_IMAGE * qape))
    if (cam := best_seconds(rows, "make_cam")) is not None:
        out_rows.append(("make_cam", 2 * COCO_TRAIN, pixels * cam))
    if (walk := best_seconds(rows, "make_sem_seg")) is not None:
        out_rows.append(("make_sem_seg", COCO_TRAIN, pixels * (COCO_CLASSES_PER_IMAGE + 1) / WALK_ROWS_VOC * walk))
    out = [{"stage": s, "images": n, "seconds_per_image": t, "gpu_hours": n * t / 3600,
            "minutes": n * t / 60 / gpus} for s, n, t in out_rows]
    if len(out) == 3:
        out.append({"stage": "per-image total", "images": None, "seconds_per_image": None,
                    "gpu_hours": sum(r["gpu_hours"] for r in out), "minutes": sum(r["minutes"] for r in out)})
    return out


def rate_row(spot: str, seconds_per_image: float) -> dict:
    """A hot-spot row of one image per call taking ``seconds_per_image`` in both precisions (projections by hand)."""
    t = {"s": seconds_per_image, "peak_gb": None}
    return {"hot_spot": spot, "variant": "", "images": 1, "fp32": dict(t), "bf16": dict(t)}


def target_rates() -> list[dict]:
    """Rows that meet the VOC targets of docs/design.md §7 exactly (what ``project`` inverts)."""
    return [rate_row("qape", TARGETS_MIN["qape"] * 60 / VOC_TRAIN_AUG),
            rate_row("make_cam", TARGETS_MIN["make_cam"] * 60 / (VOC_TRAIN_AUG + 1464)),
            rate_row("make_sem_seg", TARGETS_MIN["make_sem_seg"] * 60 / VOC_TRAIN_AUG)]


def coco_table(rows: list[dict], gpus: int) -> str:
    lines = [f"{'COCO per-image step':<28}{'images':>10}{'s/image':>10}{'GPU-hours':>11}{f'min on {gpus} GPU(s)':>18}"]
    for r in rows:
        lines.append(f"{r['stage']:<28}{r['images'] or '':>10}{_fmt(r['seconds_per_image'], '.4f'):>10}"
                     f"{r['gpu_hours']:11.2f}{r['minutes']:18.1f}")
    return "\n".join(lines + ["(cam_to_ir_label's CRF runs in CPU processes: not in this table)"])


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def precision_table(rows: list[dict]) -> str:
    """One line per hot spot (and variant): seconds per call in float32 and bfloat16, their ratio, the
    equivalence of the outputs; peak GB when measured (CUDA)."""
    peaks = any(r[p]["peak_gb"] is not None for r in rows for p in PRECISIONS)
    head = (f"{'hot spot':<14}{'variant':<10}{'per call':<26}{'fp32 s':>9}{'bf16 s':>9}{'fp32/bf16':>11}"
            f"{'rel diff':>10}  {'compared':<30}")
    lines = [(head + (f"{'peak GB fp32':>13}{'bf16':>6}" if peaks else "")).rstrip()]
    for r in rows:
        compared = r["compared"] + (f"; answers same {r['same_answers']:.0%}" if "same_answers" in r else "")
        line = (f"{r['hot_spot']:<14}{r['variant']:<10}{r['per']:<26}{r['fp32']['s']:9.3f}{r['bf16']['s']:9.3f}"
                f"{r['ratio']:10.2f}×{r['rel_diff']:10.1e}  {compared:<30}")
        if peaks:
            line += f"{_fmt(r['fp32']['peak_gb'], '.1f'):>13}{_fmt(r['bf16']['peak_gb'], '.1f'):>6}"
        lines.append(line.rstrip())
    return "\n".join(lines)


def table(res: dict) -> str:
    """The printed tables: the hot spots in both precisions, then the VOC projection next to the targets."""
    lines = [f"device: {res['device']}  tiny: {res['tiny']}  torch {res['torch']}  median of {res['iters']}"
             + (f"  native bf16: {'yes' if res['native_bf16'] else 'no (emulated)'}" if 'native_bf16' in res else ""),
             "", precision_table(res["rows"]), "",
             f"{'VOC stage (projected)':<28}{'minutes':>10}{'target':>10}  verdict"]
    for r in res["projection"]:
        m, tgt = r["minutes"], r["target_min"]
        verdict = "n/a" if m is None or tgt is None else ("ok" if m <= tgt else "OVER")
        lines.append(f"{r['stage']:<28}{_fmt(m, '.1f'):>10}{_fmt(tgt, 'd') if tgt else '-':>10}  {verdict}")
    peaks = [r[p]["peak_gb"] for r in res["rows"] if r["hot_spot"] == "train_ritc" for p in PRECISIONS
             if r[p]["peak_gb"] is not None]
    if peaks:
        lines.append(f"{'train_ritc peak (best)':<28}{min(peaks):10.1f}{RITC_PEAK_GB:>10}  "
                     f"{'ok' if min(peaks) <= RITC_PEAK_GB else 'OVER'} (GB)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny models and sizes (CPU smoke run; figures meaningless)")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("gpu_bench.json"))
    ap.add_argument("--only", default=",".join(HOT_SPOTS), help=f"comma-separated subset of {','.join(HOT_SPOTS)}")
    ap.add_argument("--models", type=Path, default=None, help="reuse bench.real_scale models written here")
    ap.add_argument("--gpus", type=int, default=8, help="GPUs of the COCO per-image projection (default 8)")
    ap.add_argument("--targets", action="store_true",
                    help="measure nothing: project COCO's per-image steps from rates that meet the VOC targets")
    a = ap.parse_args(argv)
    if a.gpus < 1:
        raise SystemExit(f"--gpus {a.gpus}: must be at least 1")
    if a.targets:
        print("not measured: the VOC targets of docs/design.md §7 (QAPE 5, CAM export 3, random walk 3 minutes on "
              "one GPU) put through the COCO model")
        print(coco_table(project_coco(target_rates(), a.gpus), a.gpus))
        return 0
    from bench.real_scale import write_real_models

    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False     # fp32 means fp32; bf16 is the fast variant
    sz = TINY if a.tiny else Sizes()
    only = check_only(a.only)
    res: dict = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({cpu_name()})",
                 "tiny": a.tiny, "torch": torch.__version__, "iters": a.iters}
    if dev.type == "cpu":
        res["native_bf16"] = cpu_has_native_bf16()
    with tempfile.TemporaryDirectory() as tmp:
        models = {}
        if {"qape", "train_ritc"} & set(only):
            t = time.perf_counter()
            models = write_real_models(a.models or Path(tmp) / "models", tiny=sz.tiny_models, resnets=False)
            res["models_written_s"] = time.perf_counter() - t
        res["rows"] = list(measure(only, models, sz, dev, a.iters))
    res["projection"] = project(res["rows"])
    res["coco_projection"] = {"gpus": a.gpus, "rows": project_coco(res["rows"], a.gpus)}
    a.out.write_text(json.dumps(res, indent=1))
    print(table(res))
    if res["coco_projection"]["rows"]:
        print()
        print(coco_table(res["coco_projection"]["rows"], a.gpus))
    print(f"written {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
