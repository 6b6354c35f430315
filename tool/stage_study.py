"""Which stage after the CAM limits the pseudo masks and the segmenter? Oracles on a finished run.

On a finished run of ``--config`` (through ``make_sem_seg`` and ``eval_deeplab``) it measures, each
against the GT of ``dataset.eval_split`` (the toy ``train`` split in the demo):

- ``ir_label``: of the IR labels (``ir_label/``), the share of confident-foreground pixels with the
  right class, of confident-background pixels that are background, and of pixels left uncertain;
- ``boundary``: IRNet's boundary map (``irn/model.pth``, image + mirror as ``make_sem_seg`` runs it)
  against the GT object boundaries at the map's stride (4 / ``irn.infer_scale``; a cell is a boundary
  when it holds a class change or a void pixel): average precision, and precision / recall at 0.5 and at the walk's
  effective threshold ``1 − 0.5^(1/β)`` (the boundary value that halves an affinity ``(1 − B)^β``);
- ``pseudo``: pseudo-mask mIoU three ways, with the run's ``irn.*`` settings: no walk (the stride-4
  CAM upsampled ×4 with the ``sem_seg_bg_thres`` plane, ``make_sem_seg`` minus the walk), the walk on
  IRNet's boundaries (what ``make_sem_seg`` does), and the walk on the GT boundaries (an oracle: what a
  perfect boundary branch would give); plus the CAM's and the trivial floors;
- ``irn_gt_labels``: IRNet trained by the run's recipe on the GT masks of its IR-label split instead of the IR
  labels (every labelled pixel confident, the void border uncertain; toy extras' masks drawn again), then its
  boundary AP and walk as above: an oracle that tells what the IR labels cost from what the boundary branch can
  learn. A sub-run (``train_irn``) in ``<root>/irn_gt_labels``;
- ``deeplab``: DeepLab trained on the GT masks of ``dataset.train_split`` (toy extras' masks drawn
  again by the generator) in the run's budget (``deeplab.train.max_steps``, or what its epochs give) and in
  ``--budgets`` × it, and on the run's pseudo masks in the same budgets, each evaluated on ``dataset.val_split`` as
  ``eval_deeplab`` does. Each is a ``run_sample.py`` sub-run (``train_deeplab,eval_deeplab``) in
  ``<root>/deeplab_<labels>_x<k>`` with ``deeplab.label_dir`` pointed at those masks;
- ``recognition``: the run's DeepLab (``deeplab/model.pth``) on the split ``eval_deeplab`` evaluates, predicted as
  it predicts (``deeplab_eval.*``, CRF included), and again with each image's GT classes given: the logits of the
  classes the image does not hold removed before the softmax (an oracle). Its own score and the oracle's, with their
  error shares: the gap is what recognising the classes costs, the rest of the gap to the GT is localisation;
- ``curves``: each trained stage's score before training (iteration 0) and at ``--curve`` fractions of its
  iterations, from one training sub-run with ``train.snapshots`` (``<root>/curve_<stage>``): IRN (pseudo-mask mIoU
  on the eval split, the walk on each snapshot's boundaries, and boundary AP) and DeepLab (on the run's pseudo
  masks; mIoU on the val split). RITC's iteration 0 is the baseline CAM it starts from, reported with the run.
  A verdict such as "its budget holds it back" needs this curve first: a flat curve is not a budget problem.

``--set k=v`` applies to the run's config (e.g. ``irn.exp_times=4`` measures another walk on the same
boundary map without rerunning anything). Results go to ``<root>/study.json`` after every part
(atomic), so an interrupted study resumes; the table is logged (and kept in ``<root>/study.log``).

    python -m tool.stage_study --config configs/demo.yaml [--root work/stage-study] [--set k=v ...]
"""
from __future__ import annotations

import argparse
import functools
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from net.deeplab import build_model, load_trained
from net.random_walk import boundary_map, cams_to_edge_size, random_walk, sem_seg_from_rw
from net.resnet50_irn import EdgeDisplacement
from net.weights import load_state_dict_strict
from tool.data.cam_io import find_cam, load_cam
from tool.data.imutils import normalize_on_device, read_image, to_chw_tensor
from tool.data.palette import load_label_png, save_label_png
from tool.data.registry import build_dataset, class_names_with_bg
from tool.engine.checkpoint import load_model_file
from tool.engine.config import Config, TrainRecipe, load_config
from tool.engine.io import read_json, write_json
from tool.engine.paths import WorkPaths
from tool.engine.runtime import run_child, setup_logging
from tool.engine.train_loop import snapshot_path
from tool.seg.crf import crf_kwargs
from tool.seg.deeplab_infer import image_logits, only_classes, predict_labels
from tool.seg.metrics import confusion, describe_errors, error_shares, miou

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("ir_label", "boundary_pseudo", "irn_gt_labels", "deeplab", "recognition", "curves")
IGNORE = 255
_BINS = 1000  # boundary-probability histogram bins (AP and P/R are read off it)


# ---- IR labels ---------------------------------------------------------------------------------------------

def ir_label_counts(ir: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """[6] int64 pixel counts of one image (GT void left out): confident fg, of them the right class,
    confident bg, of them GT background, uncertain, all."""
    keep = gt != IGNORE
    ir, gt = ir[keep].astype(np.int64), gt[keep].astype(np.int64)
    fg = (ir != 0) & (ir != IGNORE)
    bg = ir == 0
    return np.array([fg.sum(), (fg & (ir == gt)).sum(), bg.sum(), (bg & (gt == 0)).sum(), (ir == IGNORE).sum(),
                     ir.size], dtype=np.int64)


def ir_label_summary(counts: np.ndarray) -> dict:
    """Shares in percent from summed ``ir_label_counts``."""
    fg, fg_ok, bg, bg_ok, unc, total = (int(v) for v in counts)

    def pct(a: int, b: int) -> float:
        return 100.0 * a / b if b else float("nan")
    return {"fg_correct": pct(fg_ok, fg), "bg_correct": pct(bg_ok, bg), "uncertain": pct(unc, total),
            "confident_fg": pct(fg, total), "confident_bg": pct(bg, total)}


# ---- boundaries ----------------------------------------------------------------------------------------------

def gt_boundary(gt: np.ndarray, size: tuple[int, int], stride: int = 4) -> np.ndarray:
    """Binary GT boundary map [h, w] at ``stride``: a cell is 1 when its stride×stride pixels hold a void
    pixel or a class change to the right / below (the map IRNet's boundary branch should predict)."""
    change = gt == IGNORE
    change[:, :-1] |= gt[:, :-1] != gt[:, 1:]
    change[:-1, :] |= gt[:-1, :] != gt[1:, :]
    h, w = size
    padded = np.zeros((h * stride, w * stride), bool)
    padded[:gt.shape[0], :gt.shape[1]] = change
    return np.any(padded.reshape(h, stride, w, stride), axis=(1, 3)).astype(np.float32)


def boundary_stats(hist_pos: np.ndarray, hist_neg: np.ndarray, thresholds: Sequence[float]) -> dict:
    """AP and precision / recall (percent) of a boundary map from histograms over [0, 1] of its values at
    GT boundary cells (``hist_pos``) and elsewhere (``hist_neg``); a cell is predicted a boundary when
    its value is ≥ the threshold (at bin resolution)."""
    n = hist_pos.size
    tp = np.cumsum(hist_pos[::-1])[::-1].astype(np.float64)  # [n]: cells with value in bin ≥ i
    fp = np.cumsum(hist_neg[::-1])[::-1].astype(np.float64)
    pos = float(hist_pos.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(tp + fp > 0, tp / (tp + fp), 1.0)
    rec = tp / pos if pos else np.zeros(n)
    # AP: precision summed over the recall steps, from the highest threshold down
    r = np.concatenate([[0.0], rec[::-1]])  # [n + 1] recall rising as the threshold falls
    p = prec[::-1]
    ap = float(np.sum((r[1:] - r[:-1]) * p)) * 100
    out: dict[str, float | dict[str, float]] = {"ap": ap,
                                                "positive_share": 100 * pos / max(1.0, pos + float(hist_neg.sum()))}
    for t in thresholds:
        i = min(n - 1, int(np.floor(t * n)))
        out[f"at_{t:.3f}"] = {"precision": float(prec[i]) * 100, "recall": float(rec[i]) * 100}
    return out


def walk_threshold(beta: float) -> float:
    """The boundary value B at which the affinity ``(1 − B)^β`` falls to one half."""
    return float(1 - 0.5 ** (1 / beta))


# ---- pseudo masks ---------------------------------------------------------------------------------------------

def measure_boundary_pseudo(cfg: Config, paths: WorkPaths, device: torch.device, irn_model: Path | None = None
                            ) -> dict:
    """One pass over the eval split: IRNet boundaries vs GT boundaries, and pseudo masks three ways.
    ``irn_model``: another IRNet state dict than the run's (a snapshot of the learning curve)."""
    c = cfg.irn
    ds = build_dataset(cfg.dataset, paths.cache_dir)
    ids = ds.ids(cfg.dataset.eval_split)
    n_cls = len(class_names_with_bg(ds))
    cam_dir = paths.cam_dir(cfg.make_cam.source)
    model = EdgeDisplacement(crop_size=c.train.crop_size, displacement=False)   # the walk reads the boundary map alone
    irn_model = irn_model or paths.irn_model
    load_state_dict_strict(model, load_model_file(irn_model, "stage_study (step train_irn)"), source=str(irn_model))
    model.to(device).eval()
    ways = ("no_walk", "irn_walk", "gt_boundary_walk")
    conf = {w: np.zeros((n_cls, n_cls), np.int64) for w in ways}
    hist_pos, hist_neg = np.zeros(_BINS, np.int64), np.zeros(_BINS, np.int64)
    walk = functools.partial(random_walk, beta=c.beta, exp_times=c.exp_times, radius=c.radius_infer,
                             cpu_threads=c.walk_threads)
    seg = functools.partial(sem_seg_from_rw, bg_thres=c.sem_seg_bg_thres, stride=4 // c.infer_scale)
    t0 = time.time()
    with torch.no_grad():
        for image_id in ids:
            img = read_image(ds.image_path(image_id))
            gt = ds.load_gt(image_id)
            x = normalize_on_device(to_chw_tensor(img).to(device)[None])       # [1, 3, H, W]
            edge = boundary_map(model, x, c.infer_scale)                         # [h', w']
            edge_size = (edge.shape[0], edge.shape[1])
            keys, cams = load_cam(find_cam(cam_dir, image_id), "cam")            # [K], [K, h, w]
            cams_t = cams_to_edge_size(torch.from_numpy(cams).to(device), edge_size, c.infer_scale)
            b_gt = gt_boundary(gt, edge_size, stride=4 // c.infer_scale)
            e = edge.cpu().numpy()
            bins = np.minimum((e * _BINS).astype(np.int64), _BINS - 1)
            hist_pos += np.bincount(bins[b_gt > 0], minlength=_BINS)
            hist_neg += np.bincount(bins[b_gt == 0], minlength=_BINS)
            preds = {
                "no_walk": seg(cams_t, keys, gt.shape),
                "irn_walk": seg(walk(cams_t, edge), keys, gt.shape),
                "gt_boundary_walk": seg(walk(cams_t, torch.from_numpy(b_gt).to(device)), keys, gt.shape),
            }
            for w in ways:
                conf[w] += confusion(preds[w], gt, n_cls)
    t_walk = walk_threshold(c.beta)
    out = {
        "num_images": len(ids), "split": cfg.dataset.eval_split, "seconds": round(time.time() - t0, 1),
        "walk": {"beta": c.beta, "exp_times": c.exp_times, "radius": c.radius_infer,
                 "bg_thres": c.sem_seg_bg_thres, "infer_scale": c.infer_scale},
        "boundary": {**boundary_stats(hist_pos, hist_neg, (0.5, t_walk)), "walk_threshold": t_walk},
        "pseudo": {w: miou(conf[w]) for w in ways},
        "pseudo_bg_iou": {w: float(np.diag(conf[w])[0] / (conf[w][0].sum() + conf[w][:, 0].sum()
                                                          - conf[w][0, 0]) * 100) for w in ways},
    }
    return out


def measure_ir_label(cfg: Config, paths: WorkPaths) -> dict:
    ds = build_dataset(cfg.dataset, paths.cache_dir)
    ids = ds.ids(cfg.dataset.eval_split)
    counts = np.zeros(6, np.int64)
    for image_id in ids:
        path = paths.ir_label_dir / f"{image_id}.png"
        if not path.is_file():
            raise FileNotFoundError(f"no IR label {path}: run cam_to_ir_label on a split holding "
                                    f"dataset.eval_split first")
        counts += ir_label_counts(load_label_png(path), ds.load_gt(image_id))
    return {"num_images": len(ids), **ir_label_summary(counts)}


# ---- DeepLab on GT vs pseudo masks -------------------------------------------------------------------------

def gt_label_dir(cfg: Config, paths: WorkPaths, out: Path, split: str | None = None) -> Path:
    """A folder of GT masks for every image of ``split`` (``dataset.train_split`` when None): the dataset's own,
    and for toy-world images without one (the SBD-like extras) the generator's mask drawn again from the world's
    parameters. Fails naming the first image with neither."""
    from tool.toy.render import render_image  # the demo's generator (only when masks are missing)
    ds = build_dataset(cfg.dataset, paths.cache_dir)
    ids = ds.ids(split or cfg.dataset.train_split)
    world = Path(cfg.dataset.root) / "toy_world.json"
    params = read_json(world)["params"] if world.is_file() else None
    for image_id in ids:
        dst = out / f"{image_id}.png"
        if dst.is_file():
            continue
        if ds.has_gt(image_id):
            save_label_png(dst, ds.load_gt(image_id))
            continue
        if params is None or not image_id.startswith("toy_"):
            raise FileNotFoundError(f"image {image_id}: no GT mask ({ds.gt_path(image_id)}) to train a GT oracle "
                                    f"on; use a split whose images all have masks")
        index = int(image_id.split("_")[1]) - 1
        t = render_image(image_id, index, seed=params["seed"], image_size=tuple(params["image_size"]),
                         classes=params["classes"], scene_correlation=params["scene_correlation"],
                         max_objects=params["max_objects"], void_width=params["void_width"], segmented=False)
        save_label_png(dst, t.label)
    return out


def run_deeplab(config: str, sets: Sequence[str], work_dir: Path, run_paths: WorkPaths, label_dir: Path,
                iterations: int) -> dict:
    """``train_deeplab,eval_deeplab`` in ``work_dir`` on ``label_dir``'s masks; returns eval's metrics."""
    baseline = work_dir / "cam_baseline" / "model.pth"  # deeplab.pretrained: cam_baseline reads it here
    if run_paths.cam_baseline_model.is_file() and not baseline.is_file():
        baseline.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(run_paths.cam_baseline_model, baseline)
    # iterations alone set the budget (epochs, if the recipe has them, would cap it)
    every = [*sets, f"work_dir={work_dir}", f"deeplab.label_dir={label_dir}", f"deeplab.train.max_steps={iterations}",
             "deeplab.train.epochs=null", "steps.report=false"]
    t0 = time.time()
    _sub_run(config, every, "train_deeplab,eval_deeplab")
    metrics = read_json(work_dir / "steps" / "eval_deeplab.done.json")["metrics"]
    return {"miou": metrics["miou"], "iterations": iterations, "seconds": round(time.time() - t0, 1)}


# ---- DeepLab given each image's classes (recognition oracle) ----------------------------------------------------

def measure_recognition(cfg: Config, paths: WorkPaths, device: torch.device) -> dict:
    """The run's DeepLab on ``eval_deeplab``'s split, as that step predicts (its own figure, reproduced), and with
    each image's GT classes given (``only_classes`` before the softmax and CRF): mIoU and error shares of both."""
    e = cfg.deeplab_eval
    ds = build_dataset(cfg.dataset, paths.cache_dir)
    split = e.split or cfg.dataset.val_split
    ids = ds.ids(split)
    n_cls = len(class_names_with_bg(ds))
    model = build_model(cfg.deeplab, n_cls)
    load_trained(model, e.model or paths.deeplab_model, "deeplab_eval.model" if e.model else "train_deeplab")
    model.to(device).eval()
    crf = crf_kwargs(e.crf, labels=False)
    ways = ("own", "classes_given")
    conf = {w: np.zeros((n_cls, n_cls), np.int64) for w in ways}
    t0 = time.time()
    for image_id in ids:
        img = read_image(ds.image_path(image_id))
        gt = ds.load_gt(image_id)
        logits = image_logits(model, img, cfg, device)                          # [K, H, W]
        present = [c for c in np.unique(gt) if 0 < c < n_cls]
        for w, lg in (("own", logits), ("classes_given", only_classes(logits, present))):
            conf[w] += confusion(predict_labels(img, lg, crf), gt, n_cls)
    return {"split": split, "num_images": len(ids), "seconds": round(time.time() - t0, 1),
            **{w: {"miou": miou(conf[w]), "errors": error_shares(conf[w])} for w in ways}}


# ---- learning curves: each trained stage's score before training (iteration 0) and at a few iterations ----------

def curve_points(fractions: Sequence[float], max_step: int) -> list[int]:
    """Iterations at ``fractions`` of ``max_step`` (0 = before training), rounded, distinct, ascending."""
    return sorted({round(f * max_step) for f in fractions})


def _sub_run(config: str, sets: Sequence[str], steps: str) -> None:
    cmd = [sys.executable, str(ROOT / "run_sample.py"), "--config", config, "--steps", steps]
    for s in sets:
        cmd += ["--set", s]
    log.info("%s", " ".join(cmd))
    if (code := run_child(cmd)) != 0:
        raise subprocess.CalledProcessError(code, cmd)


def _seed_work_dir(work_dir: Path, run_paths: WorkPaths, *parts: str, **linked: Path) -> None:
    """Link the run's artefacts a sub-run reads (``cam_baseline/model.pth``, ``ir_label``) into its work dir, and
    ``linked`` folders under the given names (``ir_label=<GT masks>``) instead of the run's."""
    for part, src in [*((p, run_paths.root / p) for p in parts), *linked.items()]:
        dst = work_dir / part
        if src.exists() and not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(src.resolve(), target_is_directory=src.is_dir())


def deeplab_curve(config: str, sets: Sequence[str], work_dir: Path, run_paths: WorkPaths, points: list[int]) -> dict:
    """DeepLab on the run's pseudo masks, trained once by the run's recipe with snapshots at ``points``
    (``deeplab.train.snapshots``), each snapshot evaluated on the val split as ``eval_deeplab`` does."""
    _seed_work_dir(work_dir, run_paths, "cam_baseline/model.pth")
    every = [*sets, f"work_dir={work_dir}", f"deeplab.label_dir={run_paths.sem_seg_dir}", "steps.report=false",
             f"deeplab.train.snapshots=[{', '.join(map(str, points))}]"]
    t0 = time.time()
    _sub_run(config, every, "train_deeplab")
    out = {}
    for k in points:
        snap = snapshot_path(WorkPaths(work_dir).deeplab_model, k)
        _sub_run(config, [*every, f"deeplab_eval.model={snap}"], "eval_deeplab")
        out[str(k)] = read_json(work_dir / "steps" / "eval_deeplab.done.json")["metrics"]["miou"]
    return {"miou": out, "seconds": round(time.time() - t0, 1)}


def irn_curve(config: str, sets: Sequence[str], cfg: Config, work_dir: Path, run_paths: WorkPaths,
              points: list[int], device: torch.device) -> dict:
    """IRNet trained once by the run's recipe on the run's IR labels with snapshots at ``points``; for each, the
    pseudo masks of the eval split (the walk on that IRNet's boundaries) and its boundary AP."""
    _seed_work_dir(work_dir, run_paths, "cam_baseline/model.pth", "ir_label")
    every = [*sets, f"work_dir={work_dir}", "steps.report=false",
             f"irn.train.snapshots=[{', '.join(map(str, points))}]"]
    t0 = time.time()
    _sub_run(config, every, "train_irn")
    out, ap = {}, {}
    for k in points:
        r = measure_boundary_pseudo(cfg, run_paths, device, snapshot_path(WorkPaths(work_dir).irn_model, k))
        out[str(k)], ap[str(k)] = r["pseudo"]["irn_walk"], r["boundary"]["ap"]
    return {"miou": out, "boundary_ap": ap, "seconds": round(time.time() - t0, 1)}


def irn_on_gt_labels(config: str, sets: Sequence[str], cfg: Config, work_dir: Path, run_paths: WorkPaths,
                     gt_dir: Path, device: torch.device) -> dict:
    """Oracle: IRNet trained by the run's recipe with ``gt_dir``'s GT masks as its IR labels (no pixel of an object
    called background or another class; the void border uncertain), its boundaries measured and walked on the
    eval split as ``measure_boundary_pseudo`` does. Beside the run's IRNet it separates what the IR labels cost
    from what the boundary branch can learn on its frozen features."""
    _seed_work_dir(work_dir, run_paths, "cam_baseline/model.pth", ir_label=gt_dir)
    t0 = time.time()
    _sub_run(config, [*sets, f"work_dir={work_dir}", "steps.report=false"], "train_irn")
    r = measure_boundary_pseudo(cfg, run_paths, device, WorkPaths(work_dir).irn_model)
    return {"boundary_ap": r["boundary"]["ap"], "irn_walk": r["pseudo"]["irn_walk"],
            "seconds": round(time.time() - t0, 1)}


def recipe_steps(r: TrainRecipe, n: int) -> int:
    """The optimiser steps of recipe ``r`` over ``n`` images on one rank: its epochs, capped by ``max_steps``."""
    steps = (n // r.batch_size) * (r.epochs if r.epochs is not None else 1 << 30)
    return min(steps, r.max_steps) if r.max_steps is not None else steps


def irn_steps(cfg: Config, paths: WorkPaths) -> int:
    """train_irn's optimiser steps on one rank (its recipe over ``make_cam.split``)."""
    n = len(build_dataset(cfg.dataset, paths.cache_dir).ids(cfg.cam_split))
    return recipe_steps(cfg.irn.train, n)


def deeplab_steps(cfg: Config, paths: WorkPaths) -> int:
    """train_deeplab's optimiser steps on one rank (its recipe over ``dataset.train_split``): ``max_steps``, or
    what its epochs give when that is null (the budgets and the curve used ``max_steps`` alone: None * k)."""
    n = len(build_dataset(cfg.dataset, paths.cache_dir).ids(cfg.dataset.train_split))
    return recipe_steps(cfg.deeplab.train, n)


# ---- the table -------------------------------------------------------------------------------------------------

def format_report(study: dict) -> str:
    """The logged summary: one line per measured figure, floors beside the mIoUs."""
    lines = []
    run = study.get("run", {})
    floors = run.get("floors", {})
    fl = (f"(floors: all background {floors.get('all_background', float('nan')):.1f}, first present class "
          f"{floors.get('all_first_present_class', float('nan')):.1f})") if floors else ""
    if "baseline_cam" in run:
        lines.append(f"CAM mIoU on {run.get('split')}: baseline {run['baseline_cam']:.1f}, RITC {run['ritc_cam']:.1f} "
                     f"{fl}")
    if "ir_label" in study:
        r = study["ir_label"]
        lines.append(f"IR labels: confident fg {r['confident_fg']:.1f} % of pixels ({r['fg_correct']:.1f} % right "
                     f"class), confident bg {r['confident_bg']:.1f} % ({r['bg_correct']:.1f} % background), "
                     f"uncertain {r['uncertain']:.1f} %")
    if "boundary_pseudo" in study:
        r = study["boundary_pseudo"]
        b = r["boundary"]
        t = f"at_{b['walk_threshold']:.3f}"
        stride = 4 // r["walk"].get("infer_scale", 1)
        lines.append(f"IRNet boundary vs GT (stride {stride}, {b['positive_share']:.1f} % of cells): AP {b['ap']:.1f}; "
                     f"at 0.5 P {b['at_0.500']['precision']:.1f} R {b['at_0.500']['recall']:.1f}; at the walk's "
                     f"{b['walk_threshold']:.3f} P {b[t]['precision']:.1f} R {b[t]['recall']:.1f}")
        w = r["walk"]
        p, bg = r["pseudo"], r["pseudo_bg_iou"]
        lines.append(f"pseudo masks (beta {w['beta']:g}, 2^{w['exp_times']} steps, radius {w['radius']}, bg "
                     f"{w['bg_thres']:g}): no walk {p['no_walk']:.1f} (bg IoU {bg['no_walk']:.1f}), IRN walk "
                     f"{p['irn_walk']:.1f} ({bg['irn_walk']:.1f}), GT-boundary walk {p['gt_boundary_walk']:.1f} "
                     f"({bg['gt_boundary_walk']:.1f}) {fl}")
    if "irn_gt_labels" in study:
        r = study["irn_gt_labels"]
        run_irn = study.get("boundary_pseudo", {})
        mine = (f" (on the IR labels: AP {run_irn['boundary']['ap']:.1f}, IRN walk {run_irn['pseudo']['irn_walk']:.1f})"
                if run_irn else "")
        lines.append(f"IRNet trained on the GT masks as IR labels (oracle): boundary AP {r['boundary_ap']:.1f}, "
                     f"IRN walk {r['irn_walk']:.1f}{mine}")
    if "deeplab" in study:
        cells = [f"{k}: {v['miou']:.1f} ({v['iterations']} it)" for k, v in sorted(study["deeplab"].items())]
        lines.append(f"DeepLab mIoU on {run.get('val_split')}: " + ", ".join(cells))
    if "recognition" in study:
        r = study["recognition"]
        own, given = r["own"], r["classes_given"]
        lines.append(f"DeepLab on {r['split']}: {own['miou']:.1f} ({describe_errors(own['errors'])}); given each "
                     f"image's classes (oracle) {given['miou']:.1f} ({describe_errors(given['errors'])})")
    if "baseline_cam" in run:
        lines.append(f"RITC at iteration 0 (its start, the baseline CAM): {run['baseline_cam']:.1f}")
    for stage, what in (("irn", f"pseudo masks on {run.get('split')}"),
                        ("deeplab", f"DeepLab on {run.get('val_split')}")):
        curve = study.get("curves", {}).get(stage)
        if curve:
            cells = [f"it {k}: {v:.1f}" for k, v in sorted(curve["miou"].items(), key=lambda kv: int(kv[0]))]
            lines.append(f"learning curve, {what}: " + ", ".join(cells))
    return "\n".join(lines)


def run_figures(cfg: Config, paths: WorkPaths) -> dict:
    """The finished run's own figures (CAM, pseudo masks, DeepLab) and the floors, from its JSON files."""
    out: dict = {"split": cfg.dataset.eval_split, "val_split": cfg.dataset.val_split}
    src = paths.eval_cam_json(cfg.make_cam.source)
    if src.is_file():
        rec = read_json(src)
        out.update({"ritc_cam": rec["miou"], "floors": rec.get("floors", {})})
    base = paths.eval_cam_json("baseline")
    if base.is_file():
        out["baseline_cam"] = read_json(base)["miou"]
    if paths.eval_sem_seg_json.is_file():
        out["pseudo"] = read_json(paths.eval_sem_seg_json)["miou"]
    if paths.eval_deeplab_json().is_file():
        out["deeplab"] = read_json(paths.eval_deeplab_json())["miou"]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tool.stage_study", description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--root", default="work/stage-study", help="study.json and the DeepLab sub-runs go here")
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    ap.add_argument("--budgets", type=int, nargs="+", default=[1, 5],
                    help="DeepLab runs at these multiples of its steps (deeplab.train.max_steps, or its epochs')")
    ap.add_argument("--deeplab-labels", nargs="+", default=["gt", "pseudo"], choices=["gt", "pseudo"])
    ap.add_argument("--curve", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0], metavar="FRACTION",
                    help="learning curves (part curves): score at these fractions of a stage's iterations; 0 = "
                         "before training (the iteration-0 oracle)")
    ap.add_argument("--curve-stages", nargs="+", default=["irn", "deeplab"], choices=["irn", "deeplab"])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the run's config")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    if any(not 0 <= f <= 1 for f in args.curve):   # a snapshot past the last iteration is never written
        ap.error(f"--curve {' '.join(map(str, args.curve))}: fractions of a stage's iterations lie in 0..1")
    root = Path(args.root)
    setup_logging(root / "study.log")
    cfg = load_config(args.config, args.set)
    paths = WorkPaths(Path(cfg.work_dir).resolve())
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    out = root / "study.json"
    study = read_json(out) if out.is_file() else {}
    if study and (study.get("config") != args.config or study.get("sets") != args.set):
        raise SystemExit(f"{out} holds a study of {study.get('config')} with --set {study.get('sets')}; "
                         f"use another --root or delete it")
    study.update({"config": args.config, "sets": args.set, "run": run_figures(cfg, paths)})
    for part in args.parts:
        if part == "ir_label" and part not in study:
            study[part] = measure_ir_label(cfg, paths)
        elif part == "boundary_pseudo" and part not in study:
            study[part] = measure_boundary_pseudo(cfg, paths, device)
        elif part == "irn_gt_labels" and part not in study:
            split = cfg.cam_split   # train_irn's IR-label split
            gt_dir = root / ("gt_masks" if split == cfg.dataset.train_split else f"gt_masks_{split}")
            study[part] = irn_on_gt_labels(args.config, args.set, cfg, (root / "irn_gt_labels").resolve(), paths,
                                           gt_label_dir(cfg, paths, gt_dir, split), device)
        elif part == "deeplab":
            runs = study.setdefault("deeplab", {})
            for labels in args.deeplab_labels:
                label_dir = (gt_label_dir(cfg, paths, root / "gt_masks") if labels == "gt"
                             else paths.sem_seg_dir)
                for k in args.budgets:
                    name = f"{labels}_x{k}"
                    if name in runs:
                        continue
                    runs[name] = run_deeplab(args.config, args.set, (root / f"deeplab_{name}").resolve(), paths,
                                             label_dir.resolve(), k * deeplab_steps(cfg, paths))
                    write_json(out, study)
        elif part == "recognition" and part not in study:
            study[part] = measure_recognition(cfg, paths, device)
        elif part == "curves":
            curves = study.setdefault("curves", {})
            for stage in args.curve_stages:
                if stage in curves:
                    continue
                sub = (root / f"curve_{stage}").resolve()
                if stage == "deeplab":
                    points = curve_points(args.curve, deeplab_steps(cfg, paths))
                    curves[stage] = deeplab_curve(args.config, args.set, sub, paths, points)
                else:
                    points = curve_points(args.curve, irn_steps(cfg, paths))
                    curves[stage] = irn_curve(args.config, args.set, cfg, sub, paths, points, device)
                write_json(out, study)
        write_json(out, study)
    log.info("stage study of %s (%s):\n%s", cfg.work_dir, out, format_report(study))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
