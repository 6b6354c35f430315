"""One GPU measurement of every hot spot, with the real architectures (random weights), and the VOC projection.

Measured (docs/real-runs.md has the table layout), each after a warm-up, median of ``--iters``:

- ``qape``: BLIP ViT-B/16 VQA at 480 px, images/s over VOC-size images with the 16 default questions per
  (image, class), 1.5 classes per image (VOC's mean), fp32 and bf16 (``qape.precision``);
- ``ritc``: one RITC step (``step.train_ritc.RitcLoss`` forward + backward + SGD) at batch 8, crop 512,
  CLIP ViT-L-14 with the ovseg mask prompts, fp32 / bf16 × without / with ``clip.grad_checkpointing``:
  time and peak memory;
- ``train_cam``: one baseline CAM step at batch 16, crop 512;
- ``make_cam``: images/s, four scales each with its flip (``step.make_cam.multiscale_cam``), 500×375;
- ``random_walk``: ms per VOC image: IRNet's boundary map of a 500×375 image (padded to 512², with its
  mirror, as IRN) plus the walk on its stride-4 CAMs (94×125, 2 present classes + background);
- ``train_irn`` (batch 32, crop 512) and ``train_deeplab`` (DeepLabV2-R101 MSC, batch 5, crop 321):
  iteration time and peak memory.

The projection multiplies each per-item figure by the VOC counts (10,582 train_aug images; 15 RITC,
5 CAM, 3 IRN epochs; 30,000 DeepLab iterations) and sets it next to the targets of docs/design.md §7.
A second table projects COCO's per-image steps on ``--gpus`` GPUs (``project_coco``: the same per-image
figures scaled to COCO's images and classes, the images shared evenly by the ranks; docs/cluster.md).
``--targets`` measures nothing and projects from rates that meet the VOC targets exactly.
``--tiny`` shrinks models and sizes so that ``--device cpu --tiny`` runs in seconds (a test runs it);
its figures mean nothing. Writes ``--out`` (JSON) and prints the table.

    python -m bench.gpu [--device cuda] [--out gpu_bench.json] [--iters 3] [--only qape,ritc] [--gpus 8]
    python -m bench.gpu --targets --gpus 8        # no GPU: COCO's per-image steps if the VOC targets are met
"""
from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

VOC_TRAIN_AUG = 10582
VOC = {"cam_epochs": 5, "cam_batch": 16, "ritc_epochs": 15, "ritc_batch": 8, "irn_epochs": 3, "irn_batch": 32,
       "deeplab_iterations": 30000, "deeplab_batch": 5}
# one H100 (docs/design.md §7); minutes (peak GB for RITC)
TARGETS_MIN = {"qape": 5, "train_ritc": 25, "make_cam": 3, "make_sem_seg": 3, "train_deeplab": 45,
               "to_pseudo_masks": 60}
RITC_PEAK_GB = 40
CHAIN = ("qape", "train_cam", "train_ritc", "make_cam", "train_irn", "make_sem_seg")   # the VOC stages to pseudo masks
HOT_SPOTS = ("qape", "ritc", "train_cam", "make_cam", "random_walk", "train_irn", "train_deeplab")
VARIANTS = ("fp32", "fp32_ckpt", "bf16", "bf16_ckpt")    # precision, _ckpt: CLIP gradient checkpointing


class Sizes:
    """The measured sizes: the paper's (real) or tiny ones for a CPU smoke run."""

    def __init__(self, tiny: bool):
        self.tiny = tiny
        self.image = (48, 64) if tiny else (375, 500)               # H, W of a VOC image
        self.qape_images, self.qape_size = (2, 32) if tiny else (16, 480)
        self.ritc_batch, self.ritc_crop = (2, 64) if tiny else (8, 512)
        self.cam_batch, self.cam_crop = (2, 64) if tiny else (16, 512)
        self.irn_batch, self.irn_crop = (1, 128) if tiny else (32, 512)      # 128: the path radius 10 needs it
        self.dl_batch, self.dl_crop = (1, 65) if tiny else (5, 321)
        self.scales = (1.0, 0.5, 1.5, 2.0)
        self.edge_pad = 64 if tiny else 512       # EdgeDisplacement pads to IRN's training crop (512)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn: Callable[[], object], dev: torch.device, iters: int) -> tuple[float, float | None]:
    """(median seconds of ``fn`` after one warm-up call, peak GPU memory GB over the timed calls or None on CPU)."""
    fn()
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
    return statistics.median(times), peak


def _autocast(dev: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    return torch.autocast("cuda", dtype=torch.bfloat16) if bf16 and dev.type == "cuda" else contextlib.nullcontext()


def bench_qape(models: dict, sz: Sizes, dev: torch.device, iters: int) -> dict:
    from net.blip_vqa import BlipVQA
    from net.qape_text import DEFAULT_QUESTIONS, expand_questions
    from voc12.dataset import CLASS_NAMES

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(*sz.image, 3), dtype=np.uint8) for _ in range(sz.qape_images)]
    items = [(i, q) for i in range(len(images)) for c in CLASS_NAMES[: 1 + i % 2]   # 1.5 classes per image
             for _, q in expand_questions(DEFAULT_QUESTIONS, c)]
    out = {}
    for prec in ("fp32", "bf16"):
        if prec == "bf16" and dev.type != "cuda":
            out[prec] = None
            continue
        vqa = BlipVQA.from_pretrained(models["qape.vqa_model"], device=dev, dtype=prec, image_size=sz.qape_size)

        def run(vqa=vqa):
            embeds = torch.cat([vqa.encode_images(vqa.preprocess_batch(images[s:s + 8]))
                                for s in range(0, len(images), 8)])          # [N, P, D]
            return vqa.answer(embeds, items, batch_size=128)
        t, peak = timed(run, dev, iters)
        out[prec] = {"images_per_s": len(images) / t, "peak_gb": peak, "questions": len(items)}
        del vqa
    return out


def _clip_config(models: dict, grad_ckpt: bool):
    from tool.engine.config import ClipConfig
    return ClipConfig(model=models["clip.model"], pretrained=models["clip.pretrained"], quick_gelu=True,
                      mask_prompt_checkpoint=models["clip.mask_prompt_checkpoint"], grad_checkpointing=grad_ckpt)


def bench_ritc(models: dict, sz: Sizes, dev: torch.device, iters: int) -> dict:
    from bench.bench_ritc_step import synthetic_ritc_inputs
    from net.resnet50_cam import CAMNet
    from step.train_ritc import RitcLoss, load_region_clip
    from tool.engine.config import Config, build
    from tool.engine.lr import sgd

    out = {}
    clip, encode, mask = load_region_clip(_clip_config(models, False), dev)
    g = torch.Generator().manual_seed(0)
    _, _, _, _, bank, batch = synthetic_ritc_inputs(sz.ritc_batch, 20, sz.ritc_crop, clip.embed_dim, dev, g)
    model = CAMNet(20, pretrained=None, bn="batch").to(dev).train()
    backbone, head = model.param_groups()
    opt = sgd([{"params": backbone, "lr": 1e-6}, {"params": head, "lr": 1e-5}], momentum=1e-4, weight_decay=1e-4)
    for prec in ("fp32", "bf16"):
        for ckpt in (False, True):
            name = f"{prec}{'_ckpt' if ckpt else ''}"
            if prec == "bf16" and dev.type != "cuda":
                out[name] = None
                continue
            clip.model.set_grad_checkpointing(ckpt)
            cfg = build(Config, {"ritc": {"precision": "bfloat16" if prec == "bf16" else "float32"}}, "bench.gpu")
            loss = RitcLoss(model, clip, encode, mask, bank, cfg, dev)

            def step(loss=loss):
                opt.zero_grad(set_to_none=True)
                terms = loss(batch)
                terms["loss"].backward()
                opt.step()
            t, peak = timed(step, dev, iters)
            out[name] = {"step_s": t, "peak_gb": peak}
    out["pairs_per_step"] = int(batch["label"].sum())
    return out


def _cam_step(model, opt, batch_size: int, crop: int, dev: torch.device, loss_of: Callable) -> Callable[[], None]:
    from tool.data.imutils import normalize_on_device

    img = torch.randint(0, 256, (batch_size, 3, crop, crop), dtype=torch.uint8, device=dev)
    valid = torch.ones(batch_size, crop, crop, dtype=torch.uint8, device=dev)

    def step():
        opt.zero_grad(set_to_none=True)
        loss_of(model, normalize_on_device(img, valid)).backward()
        opt.step()
    return step


def bench_train_cam(models: dict, sz: Sizes, dev: torch.device, iters: int) -> dict:
    from net.resnet50_cam import CAMNet
    from tool.engine.lr import sgd

    model = CAMNet(20, pretrained=None, bn="fixed").to(dev).train()
    backbone, head = model.param_groups()
    opt = sgd([{"params": backbone, "lr": 1e-6}, {"params": head, "lr": 1e-5}], momentum=1e-4, weight_decay=1e-4)
    label = (torch.rand(sz.cam_batch, 20, device=dev) < 0.1).float()
    t, peak = timed(_cam_step(model, opt, sz.cam_batch, sz.cam_crop, dev,
                              lambda m, x: F.multilabel_soft_margin_loss(m(x), label)), dev, iters)
    return {"step_s": t, "peak_gb": peak, "batch": sz.cam_batch}


def bench_make_cam(models: dict, sz: Sizes, dev: torch.device, iters: int) -> dict:
    from net.resnet50_cam import CAMNet
    from step.make_cam import multiscale_cam

    model = CAMNet(20, pretrained=None).to(dev).eval()
    h, w = sz.image
    base = torch.randint(0, 256, (1, 3, h, w), dtype=torch.uint8).float()
    imgs = [F.interpolate(base, size=(round(h * s), round(w * s)), mode="bilinear", align_corners=False)[0]
            .round().clamp(0, 255).to(torch.uint8) for s in sz.scales]
    keys = torch.tensor([2, 14], device=dev)
    t, peak = timed(lambda: multiscale_cam(model, imgs, keys, (h, w), dev), dev, iters)
    return {"images_per_s": 1.0 / t, "peak_gb": peak, "scales": list(sz.scales)}


def bench_random_walk(models: dict, sz: Sizes, dev: torch.device, iters: int) -> dict:
    from net.resnet50_irn import EdgeDisplacement
    from tool.data.imutils import normalize_on_device
    from net.random_walk import boundary_map, random_walk

    model = EdgeDisplacement(crop_size=sz.edge_pad).to(dev).eval()
    h, w = sz.image
    x = normalize_on_device(torch.randint(0, 256, (1, 3, h, w), dtype=torch.uint8, device=dev))
    cams = torch.rand(3, -(-h // 4), -(-w // 4), device=dev)                 # bg + 2 classes, stride 4

    @torch.no_grad()
    def one():
        edge = boundary_map(model, x)                                        # [h/4, w/4]
        return random_walk(cams, edge, beta=10.0, exp_times=8, radius=5)
    t, peak = timed(one, dev, iters)
    return {"ms_per_image": 1e3 * t, "peak_gb": peak, "walk_size": list(cams.shape[1:])}


def bench_train_irn(models: dict, sz: Sizes, dev: torch.device, iters: int) -> dict:
    from net.path_index import PathIndex, affinity_labels
    from net.resnet50_irn import AffinityDisplacementLoss
    from tool.engine.lr import sgd

    c = sz.irn_crop // 4
    path_index = PathIndex(10, (c, c))
    model = AffinityDisplacementLoss(path_index).to(dev).train()
    opt = sgd(model.param_groups(0.1, 1e-4), momentum=1e-4, weight_decay=1e-4)
    small = torch.randint(0, 3, (sz.irn_batch, c, c))
    small[:, : c // 4] = 255                                                  # uncertain band, as IR labels have
    labels = [t.to(dev) for t in affinity_labels(small, path_index)]          # bg_pos, fg_pos, neg
    t, peak = timed(_cam_step(model, opt, sz.irn_batch, sz.irn_crop, dev,
                              lambda m, x: m(x, *labels)["total"]), dev, iters)
    return {"step_s": t, "peak_gb": peak, "batch": sz.irn_batch}


def bench_train_deeplab(models: dict, sz: Sizes, dev: torch.device, iters: int) -> dict:
    """fp32 and bf16 (``deeplab.precision``, CUDA only) iterations of DeepLabV2-R101 MSC."""
    return {"fp32": _deeplab_step(sz, dev, iters, "float32"),
            "bf16": _deeplab_step(sz, dev, iters, "bfloat16") if dev.type == "cuda" else None}


def _deeplab_step(sz: Sizes, dev: torch.device, iters: int, precision: str) -> dict:
    from net.deeplab import masked_cross_entropy, optimizer_groups, resize_labels
    from net.deeplab import build_model
    from tool.engine.config import Config, build
    from tool.engine.lr import sgd

    cfg = build(Config, {"deeplab": {"pretrained": None, "precision": precision,
                                     **({"blocks": [1, 1, 1, 1]} if sz.tiny else {})}}, "bench.gpu")
    model = build_model(cfg.deeplab, 21).to(dev).train()
    opt = sgd(optimizer_groups(model.base, 2.5e-4, 5e-4, 10, 20), momentum=0.9, weight_decay=5e-4)
    labels = torch.randint(0, 21, (sz.dl_batch, sz.dl_crop, sz.dl_crop), device=dev)

    def loss_of(m, x):
        with _autocast(dev, precision == "bfloat16"):
            outs = m(x)
        return sum(masked_cross_entropy(o.float(), resize_labels(labels, tuple(o.shape[-2:]))) for o in outs)
    t, peak = timed(_cam_step(model, opt, sz.dl_batch, sz.dl_crop, dev, loss_of), dev, iters)
    return {"step_s": t, "peak_gb": peak, "batch": sz.dl_batch}


def project(res: dict) -> list[dict]:
    """VOC stage times (minutes) from the measured per-item rates, next to the targets."""
    def best(d: dict | None, field: str, lower: bool) -> float | None:
        """The best variant's figure (the configs can choose it)."""
        vals = [d[k][field] for k in VARIANTS if (d or {}).get(k)]
        return (min(vals) if lower else max(vals)) if vals else None

    rows = []
    qape = best(res.get("qape"), "images_per_s", lower=False)
    if "qape" in res:
        rows.append(("qape", VOC_TRAIN_AUG / qape / 60 if qape else None))
    def epochs(stage: str, key: str, step_s: float | None) -> None:
        steps = VOC[f"{key}_epochs"] * (VOC_TRAIN_AUG // VOC[f"{key}_batch"])
        rows.append((stage, steps * step_s / 60 if step_s else None))

    if "train_cam" in res:
        epochs("train_cam", "cam", res["train_cam"]["step_s"])
    if "ritc" in res:
        epochs("train_ritc", "ritc", best(res["ritc"], "step_s", lower=True))
    if "make_cam" in res:   # train_aug plus the 1,464 baseline CAMs of make_cam.compare_baseline
        rows.append(("make_cam", (VOC_TRAIN_AUG + 1464) / res["make_cam"]["images_per_s"] / 60))
    if "train_irn" in res:
        epochs("train_irn", "irn", res["train_irn"]["step_s"])
    if "random_walk" in res:
        rows.append(("make_sem_seg", VOC_TRAIN_AUG * res["random_walk"]["ms_per_image"] / 1e3 / 60))
    dl = best(res.get("train_deeplab"), "step_s", lower=True)
    if dl:
        rows.append(("train_deeplab", VOC["deeplab_iterations"] * dl / 60))
    out = [{"stage": s, "minutes": m, "target_min": TARGETS_MIN.get(s)} for s, m in rows]
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


def project_coco(res: dict, gpus: int) -> list[dict]:
    """Minutes of COCO's per-image steps on ``gpus`` GPUs from the per-image figures measured at VOC size.

    Each rank makes 1/``gpus`` of the images (``dist.shard``), so a step's time divides by ``gpus``. Scaled from
    the measurement: QAPE by the classes per image (its questions; the image encoding does not grow, so an upper
    bound), CAM export by the pixels (the CAM net's four scales), the random walk by the pixels and by the walk's
    rows (classes + background). ``make_cam`` exports the train CAMs and, with ``make_cam.compare_baseline``, the
    baseline's CAMs of ``dataset.eval_split`` (``train`` by default: twice 82,081). ``cam_to_ir_label`` (CRF in CPU
    processes) is not measured here."""
    def best(d: dict | None, field: str) -> float | None:
        vals = [d[k][field] for k in VARIANTS if (d or {}).get(k)]
        return max(vals) if vals else None

    pixels = COCO_PIXELS / VOC_PIXELS
    rows = []
    qape = best(res.get("qape"), "images_per_s")
    if qape:
        per_image = COCO_CLASSES_PER_IMAGE / VOC_CLASSES_PER_IMAGE / qape
        rows.append(("qape", COCO_TRAIN, per_image))
    if res.get("make_cam"):
        rows.append(("make_cam", 2 * COCO_TRAIN, pixels / res["make_cam"]["images_per_s"]))
    if res.get("random_walk"):
        walk_rows = (COCO_CLASSES_PER_IMAGE + 1) / WALK_ROWS_VOC
        rows.append(("make_sem_seg", COCO_TRAIN, pixels * walk_rows * res["random_walk"]["ms_per_image"] / 1e3))
    out = [{"stage": s, "images": n, "seconds_per_image": t, "gpu_hours": n * t / 3600,
            "minutes": n * t / 60 / gpus} for s, n, t in rows]
    if len(out) == 3:
        out.append({"stage": "per-image total", "images": None, "seconds_per_image": None,
                    "gpu_hours": sum(r["gpu_hours"] for r in out), "minutes": sum(r["minutes"] for r in out)})
    return out


def target_rates() -> dict:
    """Per-item figures that meet the VOC targets of docs/design.md §7 exactly (what ``project`` inverts)."""
    return {"qape": {"fp32": {"images_per_s": VOC_TRAIN_AUG / (TARGETS_MIN["qape"] * 60)}},
            "make_cam": {"images_per_s": (VOC_TRAIN_AUG + 1464) / (TARGETS_MIN["make_cam"] * 60)},
            "random_walk": {"ms_per_image": TARGETS_MIN["make_sem_seg"] * 60 * 1e3 / VOC_TRAIN_AUG}}


def coco_table(rows: list[dict], gpus: int) -> str:
    lines = [f"{'COCO per-image step':<28}{'images':>10}{'s/image':>10}{'GPU-hours':>11}{f'min on {gpus} GPU(s)':>18}"]
    for r in rows:
        lines.append(f"{r['stage']:<28}{r['images'] or '':>10}{_fmt(r['seconds_per_image'], '.4f'):>10}"
                     f"{r['gpu_hours']:11.2f}{r['minutes']:18.1f}")
    return "\n".join(lines + ["(cam_to_ir_label's CRF runs in CPU processes: not in this table)"])


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def table(res: dict) -> str:
    """The printed table: measured hot spots, then the VOC projection next to the targets."""
    lines = [f"device: {res['device']}  tiny: {res['tiny']}  torch {res['torch']}", "",
             f"{'hot spot':<28}{'variant':<12}{'value':>12}  {'unit':<12}{'peak GB':>9}"]
    units = {"images_per_s": "images/s", "step_s": "s/step", "ms_per_image": "ms/image"}
    for spot in HOT_SPOTS:
        d = res.get(spot)
        if d is None:
            continue
        variants = {k: d[k] for k in VARIANTS if k in d} or {"": d}
        for name, v in variants.items():
            if v is None:
                lines.append(f"{spot:<28}{name:<12}{'n/a':>12}  {'(CUDA only)':<12}{'':>9}")
                continue
            field = next(f for f in units if f in v)
            lines.append(f"{spot:<28}{name:<12}{v[field]:12.3f}  {units[field]:<12}{_fmt(v.get('peak_gb')):>9}")
    lines += ["", f"{'VOC stage (projected)':<28}{'minutes':>10}{'target':>10}  verdict"]
    for r in res["projection"]:
        m, tgt = r["minutes"], r["target_min"]
        verdict = "n/a" if m is None or tgt is None else ("ok" if m <= tgt else "OVER")
        lines.append(f"{r['stage']:<28}{_fmt(m, '.1f'):>10}{_fmt(tgt, 'd') if tgt else '-':>10}  {verdict}")
    ritc = res.get("ritc") or {}
    peaks = [v["peak_gb"] for v in ritc.values() if isinstance(v, dict) and v.get("peak_gb") is not None]
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
    sz = Sizes(a.tiny)
    only = [s.strip() for s in a.only.split(",") if s.strip()]
    bad = [s for s in only if s not in HOT_SPOTS]
    if bad:
        raise SystemExit(f"--only: unknown hot spot(s) {bad}; known: {', '.join(HOT_SPOTS)}")
    res: dict = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({platform.processor()})",
                 "tiny": a.tiny, "torch": torch.__version__, "iters": a.iters}
    with tempfile.TemporaryDirectory() as tmp:
        models = {}
        if {"qape", "ritc"} & set(only):
            t = time.perf_counter()
            models = write_real_models(a.models or Path(tmp) / "models", tiny=a.tiny, resnets=False)
            res["models_written_s"] = time.perf_counter() - t
        runs = {"qape": bench_qape, "ritc": bench_ritc, "train_cam": bench_train_cam, "make_cam": bench_make_cam,
                "random_walk": bench_random_walk, "train_irn": bench_train_irn, "train_deeplab": bench_train_deeplab}
        for spot in only:
            t = time.perf_counter()
            res[spot] = runs[spot](models, sz, dev, a.iters)
            print(f"measured {spot} in {time.perf_counter() - t:.1f} s", flush=True)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    res["projection"] = project(res)
    res["coco_projection"] = {"gpus": a.gpus, "rows": project_coco(res, a.gpus)}
    a.out.write_text(json.dumps(res, indent=1))
    print(table(res))
    if res["coco_projection"]["rows"]:
        print()
        print(coco_table(res["coco_projection"]["rows"], a.gpus))
    print(f"written {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
