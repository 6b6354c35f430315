"""Last step, ``report``: one HTML page that shows what the run did, stage by stage (docs/design.md §3 ``vis/``).

Reads (each optional; whatever exists is shown, the rest is named as missing):
``cam_baseline/eval_cam.json`` and ``eval_cam.json`` (CAM before / after RITC), ``eval_sem_seg.json``
(pseudo masks), ``eval_deeplab.json`` (DeepLab on ``dataset.val_split``), ``cam_baseline/cam/<id>.npz``
and ``cam/<id>.npz`` (``keys``, ``high_res`` [K', H, W]), ``sem_seg/<id>.png``, ``deeplab_pred/<id>.png``,
``qape/corpus.jsonl`` and the images and GT masks of the dataset.
Writes: ``report.html`` in the work directory and its pictures under ``report/``:

1. the mIoU of every stage in one table (CAM at the configured and the best threshold);
2. per-class IoU bars of every stage, and the CAM threshold sweeps;
3. a few images of ``dataset.eval_split``: image, GT, baseline CAM, RITC CAM, pseudo mask, with the
   QAPE answers asked about them — the same images before and after RITC;
4. a few images of ``dataset.val_split``: image, GT, DeepLab prediction.

Pictures are downscaled to ``report.thumb_size``; every file is written atomically, the HTML last.
Rank 0 alone.
"""
from __future__ import annotations

import html
import io
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from tool.data.imutils import read_image
from tool.data.palette import load_label_png, voc_palette
from tool.data.registry import build_dataset, class_names_with_bg
from tool.engine.config import Config
from tool.engine.events import TRAINING_STEPS, read_events
from tool.engine.io import read_json, write_bytes, write_text
from tool.engine.paths import STAGE_NAMES
from tool.engine.runtime import Context
from tool.engine.skipped import FILE_NAME as SKIPPED_FILE
from tool.engine.skipped import read_skipped
from tool.seg.charts import iou_chart, save_figure, training_chart
from tool.seg.metrics import floor_confusions, miou

if TYPE_CHECKING:   # (matplotlib.typing is new in 3.8; requirements admit 3.7)
    from matplotlib.typing import LineStyleType

log = logging.getLogger(__name__)

SECTIONS = ("dataset", "eval", "report")
INPUTS = ("qape", "eval_cam", "eval_sem_seg", "eval_deeplab")


def needs(cfg: Config) -> tuple[str, ...]:
    """The steps of ``INPUTS`` whose outputs this config reads (``--check``; the digest follows all of
    ``INPUTS``): none: it shows what exists and names what is missing."""
    return ()


# (key, what it is, how to make it) of each stage; the metric file comes from ``_stage_files``.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("cam_baseline", "Baseline CAM (ResNet-50 classifier)", "make_cam + eval_cam with make_cam.source: baseline"),
    ("cam_ritc", "QA-CLIMS CAM (after RITC)", "train_ritc, make_cam + eval_cam with make_cam.source: ritc"),
    ("sem_seg", "Pseudo masks (IRN random walk)", "cam_to_ir_label, train_irn, make_sem_seg, eval_sem_seg"),
    ("deeplab", "DeepLab segmentation model", "train_deeplab, eval_deeplab"),
)


# the step that writes each stage's metric file: its skip note (no GT masks) explains a missing file
EVAL_STEPS = {"cam_baseline": "eval_cam", "cam_ritc": "eval_cam", "sem_seg": "eval_sem_seg", "deeplab": "eval_deeplab"}

CHART_NAMES = STAGE_NAMES


def _stage_files(ctx: Context) -> dict[str, Path]:
    return ctx.paths.stage_metrics()


# ------------------------------------------------------------------------------------------------
# pictures
# ------------------------------------------------------------------------------------------------

def thumbnail(arr: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    """Downscale an [H, W(, 3)] uint8 array so its long side is at most ``size`` (never upscaled)."""
    h, w = arr.shape[:2]
    scale = size / max(h, w)
    if scale >= 1:
        return arr
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(arr).resize(new, resample))


def label_rgb(label: np.ndarray) -> np.ndarray:
    """uint8 [H, W] class indices (255 ignore) -> VOC palette colours [H, W, 3] uint8."""
    return voc_palette()[label]


def cam_overlay(image: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """The CAM heat map (max over the present classes, jet colours) blended half-and-half with the image.

    image: uint8 [H, W, 3]; maps: [K', h, w] in [0, 1] (``high_res``; resized to H x W when needed).
    """
    import matplotlib

    H, W = image.shape[:2]
    heat = np.clip(maps.astype(np.float32).max(0), 0, 1) if len(maps) else np.zeros(maps.shape[1:], np.float32)
    if heat.shape != (H, W):
        heat = np.asarray(Image.fromarray(heat, mode="F").resize((W, H), Image.Resampling.BILINEAR))
    colour = matplotlib.colormaps["jet"](heat)[..., :3] * 255                     # [H, W, 3]
    return (0.5 * image + 0.5 * colour).round().astype(np.uint8)


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def split_floors(ds, ids: Sequence[str]) -> dict[str, float]:
    """mIoU of the two trivial predictions on ``ids`` (those with GT): all background, and every pixel
    the image's first present class (``tool.seg.metrics.floor_confusions``)."""
    n = ds.num_classes + 1
    bg, fg = np.zeros((n, n), np.int64), np.zeros((n, n), np.int64)
    ids = [i for i in ids if ds.has_gt(i)]
    if not ids:
        return {}
    for image_id, row in zip(ids, ds.labels(ids)):
        present = np.flatnonzero(row)
        b, f = floor_confusions(ds.load_gt(image_id), int(present[0]) + 1 if present.size else 0, n)
        bg += b
        fg += f
    return {"all_background": miou(bg), "all_first_present_class": miou(fg)}


def stage_chart(stages: Sequence[tuple[str, float, str]], floors: dict[str, dict[str, float]], path: Path) -> None:
    """One bar per stage in pipeline order (label, mIoU, split), with each split's two floors drawn as
    lines across the bars measured on it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.4), dpi=80)
    x = np.arange(len(stages))
    bars = ax.bar(x, [m for _, m, _ in stages], 0.6, color="#4a7fb5")
    for b, (_, m, _) in zip(bars, stages):
        ax.text(b.get_x() + b.get_width() / 2, m + 1, f"{m:.1f}", ha="center", fontsize=9)
    styles: dict[str, tuple[str, LineStyleType, str]] = {     # colour, line style, what
        "all_background": ("#a33", "--", "all background"),
        "all_first_present_class": ("#555", ":", "all first present class")}
    drawn = set()
    for i, (_, _, split) in enumerate(stages):
        for key, v in floors.get(split, {}).items():
            color, ls, what = styles[key]
            label = f"floor: {what}" if key not in drawn else "_nolegend_"   # (matplotlib: no legend entry)
            drawn.add(key)
            ax.hlines(v, i - 0.4, i + 0.4, colors=color, linestyles=ls, label=label)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{name}\n({split})" for name, _, split in stages], fontsize=8)
    ax.set_ylabel("mIoU (%)")
    ax.set_ylim(0, 100)
    if drawn:                                   # floors need GT: none without masks
        ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)


def sweep_chart(curves: Sequence[tuple[str, dict]], path: Path) -> None:
    """mIoU against the CAM background threshold for each CAM stage (``eval_cam.json`` ``sweep``)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.2), dpi=80)
    for label, metrics in curves:
        t = [r["threshold"] for r in metrics["sweep"]]
        m = [r["miou"] for r in metrics["sweep"]]
        ax.plot(t, m, label=label)
        ax.axvline(metrics["configured"]["threshold"], color="grey", lw=0.6, ls=":")
    ax.set_xlabel("background threshold")
    ax.set_ylabel("mIoU (%)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


# ------------------------------------------------------------------------------------------------
# choosing images, reading artefacts
# ------------------------------------------------------------------------------------------------

def pick_images(candidates: Sequence[str], available: dict[str, int], n: int, wanted: Sequence[str] = ()) -> list[str]:
    """``wanted`` ids (those among ``candidates``) or else ``n`` ids spread evenly over the candidates
    that have the most artefacts (``available[id]`` = how many), in candidate order."""
    if wanted:
        known = set(candidates)
        return [i for i in wanted if i in known][:max(n, len(wanted))]
    if not candidates or n <= 0:
        return []
    best = max(available.get(i, 0) for i in candidates)
    pool = [i for i in candidates if available.get(i, 0) == best]
    if len(pool) <= n:
        return pool
    return [pool[int(k)] for k in np.linspace(0, len(pool) - 1, n).round().astype(int)]


def read_metrics(path: Path) -> tuple[dict | None, str]:
    """(metrics, note): the metric file, or None with why not (missing / unreadable)."""
    if not path.is_file():
        return None, "missing"
    try:
        m = read_json(path)
    except (ValueError, OSError) as e:
        return None, f"unreadable ({e})"
    if not isinstance(m, dict) or "miou" not in m:
        return None, "no 'miou' in the file"
    if m["miou"] is None:      # a split without GT: predictions only
        return None, str(m.get("note", "no mIoU (no GT)"))
    return m, ""


def read_answers(corpus: Path, ids: Sequence[str]) -> dict[str, list[dict]]:
    """QAPE records of ``ids`` from ``corpus.jsonl``: id -> [{"class", "fg", "bg"}, ...]."""
    out: dict[str, list[dict]] = {}
    if not corpus.is_file():
        return out
    want = set(ids)
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                break    # a torn last line: what came before is still good
            if rec.get("image") in want:
                out.setdefault(rec["image"], []).append(rec)
    return out


def load_cam_maps(path: Path) -> np.ndarray | None:
    """``high_res`` [K', H, W] float32 of a CAM file (ours .npz or IRN .npy), None when absent."""
    from tool.data.cam_io import load_cam

    for ext in (".npz", ".npy"):
        p = path.with_suffix(ext)
        if p.is_file():
            return load_cam(p)[1]
    return None


def _unique_answers(pairs: Sequence[Sequence[str]]) -> list[str]:
    return list(dict.fromkeys(a.strip() for _, a in pairs if a.strip()))


# ------------------------------------------------------------------------------------------------
# the step
# ------------------------------------------------------------------------------------------------

def run(cfg: Config, ctx: Context) -> dict:
    if not ctx.is_main:
        return {}
    r = cfg.report
    if r.num_images < 0 or r.thumb_size < 16:
        raise ValueError(f"report.num_images must be >= 0 and report.thumb_size >= 16, got {r.num_images}, "
                         f"{r.thumb_size}")
    root = ctx.paths.root
    out_dir = ctx.paths.report_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(name: str, arr: np.ndarray) -> str:
        path = out_dir / name
        write_bytes(path, png_bytes(arr))
        written.append(path)
        return f"{out_dir.name}/{name}"

    # 1. metrics of every stage
    files = _stage_files(ctx)
    metrics: dict[str, dict] = {}
    rows, missing = [], []
    for key, what, how in STAGES:
        m, note = read_metrics(files[key])
        skip = ctx.paths.skip_note(EVAL_STEPS[key])
        if m is None and skip.is_file():
            note = f"skipped: {read_json(skip).get('note')}"
        rel = files[key].relative_to(root)
        if m is None:
            note = html.escape(str(note), quote=False)      # notes quote paths and file contents
            missing.append(f"{what}: <code>{rel}</code> {note} (made by {how})")
            rows.append(f"<tr class='missing'><td>{what}</td><td><code>{rel}</code></td><td colspan='4'>{note}"
                        "</td></tr>")
            continue
        metrics[key] = m
        extra = ""
        if "best" in m and "configured" in m:
            extra = (f"threshold {m['configured']['threshold']:.2f}; best {m['best']['miou']:.1f} "
                     f"at {m['best']['threshold']:.2f}")
        rows.append(f"<tr><td>{what}</td><td><code>{rel}</code></td><td>{html.escape(str(m.get('split', '')))}</td>"
                    f"<td>{m.get('num_images', '')}</td><td><b>{m['miou']:.1f}</b></td><td>{extra}</td></tr>")

    # 2. charts
    charts = []
    labelled = [(what, metrics[k]) for k, what, _ in STAGES if k in metrics]
    ds = build_dataset(cfg.dataset, ctx.paths.cache_dir)
    chain = [(CHART_NAMES[k], metrics[k]["miou"], str(metrics[k].get("split", ""))) for k, _, _ in STAGES
             if k in metrics and metrics[k].get("miou") is not None]
    floors = {split: split_floors(ds, _safe_ids(ds, split)) for split in {s for _, _, s in chain}}
    if chain:
        stage_chart(chain, floors, out_dir / "stages.png")
        written.append(out_dir / "stages.png")
        charts.append(f"<img src='{out_dir.name}/stages.png' alt='mIoU of every stage'>")
    if labelled:
        iou_chart(labelled, out_dir / "iou_per_class.png")
        written.append(out_dir / "iou_per_class.png")
        charts.append(f"<img src='{out_dir.name}/iou_per_class.png' alt='per-class IoU'>")
    curves = [(w, metrics[k]) for k, w in (("cam_baseline", "baseline CAM"), ("cam_ritc", "RITC CAM"))
              if k in metrics and metrics[k].get("sweep") and metrics[k].get("configured")]
    if curves:
        sweep_chart(curves, out_dir / "cam_sweep.png")
        written.append(out_dir / "cam_sweep.png")
        charts.append(f"<img src='{out_dir.name}/cam_sweep.png' alt='CAM threshold sweep'>")

    # training curves: one panel per training step that left events (docs/tracking.md)
    curves_html = []
    for step in TRAINING_STEPS:
        scalars, marks = read_events(ctx.paths.events_jsonl(step))
        if scalars:
            training_chart(step, [(step, scalars, marks)], out_dir / f"curves_{step}.png")
            written.append(out_dir / f"curves_{step}.png")
            curves_html.append(f"<img src='{out_dir.name}/curves_{step}.png' alt='training curves of {step}'>")

    # 3. images of the eval split: CAM before / after RITC, pseudo mask, QAPE answers
    names = class_names_with_bg(ds)
    base_dir, ritc_dir, seg_dir = ctx.paths.cam_dir("baseline"), ctx.paths.cam_dir("ritc"), ctx.paths.sem_seg_dir
    eval_ids = _safe_ids(ds, cfg.dataset.eval_split)
    have = {i: sum(((base_dir / f"{i}.npz").is_file(), (ritc_dir / f"{i}.npz").is_file(),
                    (seg_dir / f"{i}.png").is_file())) for i in eval_ids}
    shown = pick_images(eval_ids, have, r.num_images, r.images)
    answers = read_answers(ctx.paths.corpus_jsonl, shown)
    head = ("<tr><th>image</th><th>ground truth</th><th>baseline CAM</th><th>QA-CLIMS CAM (RITC)</th>"
            "<th>pseudo mask</th></tr>")
    image_rows = []
    for n, image_id in enumerate(shown):
        image = read_image(ds.image_path(image_id))
        cells = [_img(save(f"eval_{n}_image.png", thumbnail(image, r.thumb_size)), image_id)]
        gt = ds.load_gt(image_id) if ds.has_gt(image_id) else None
        cells.append(_img(save(f"eval_{n}_gt.png", thumbnail(label_rgb(gt), r.thumb_size, True)), "GT")
                     if gt is not None else "<td class='missing'>no GT</td>")
        for tag, cam_dir in (("base", base_dir), ("ritc", ritc_dir)):
            maps = load_cam_maps(cam_dir / f"{image_id}.npz")
            cells.append(_img(save(f"eval_{n}_cam_{tag}.png", thumbnail(cam_overlay(image, maps), r.thumb_size)),
                              f"{tag} CAM") if maps is not None else "<td class='missing'>no CAM</td>")
        seg = seg_dir / f"{image_id}.png"
        cells.append(_img(save(f"eval_{n}_sem_seg.png", thumbnail(label_rgb(load_label_png(seg)), r.thumb_size, True)),
                          "pseudo mask") if seg.is_file() else "<td class='missing'>no pseudo mask</td>")
        present = sorted({int(v) for v in np.unique(gt) if 0 < v < len(names)}) if gt is not None else []
        caption = f"<code>{html.escape(image_id)}</code>" + (
            ": " + ", ".join(html.escape(names[k]) for k in present) if present else "")
        image_rows.append(f"<tr><td colspan='5' class='cap'>{caption}</td></tr><tr>{''.join(cells)}</tr>")
        for rec in answers.get(image_id, []):
            fg, bg = _unique_answers(rec.get("fg", [])), _unique_answers(rec.get("bg", []))
            image_rows.append(
                f"<tr><td colspan='5' class='qa'>QAPE about <b>{html.escape(str(rec.get('class')))}</b> — "
                f"foreground: {html.escape(', '.join(fg)) or '–'}; background: {html.escape(', '.join(bg)) or '–'}"
                "</td></tr>")

    # 4. DeepLab on the val split
    pred_dir = ctx.paths.deeplab_pred_dir()
    val_ids = _safe_ids(ds, cfg.dataset.val_split)
    with_pred = [i for i in val_ids if (pred_dir / f"{i}.png").is_file()]
    dl_rows = []
    for n, image_id in enumerate(pick_images(with_pred, dict.fromkeys(with_pred, 1), r.num_images)):
        image = read_image(ds.image_path(image_id))
        cells = [_img(save(f"val_{n}_image.png", thumbnail(image, r.thumb_size)), image_id)]
        cells.append(_img(save(f"val_{n}_gt.png", thumbnail(label_rgb(ds.load_gt(image_id)), r.thumb_size, True)),
                          "GT") if ds.has_gt(image_id) else "<td class='missing'>no GT</td>")
        pred = load_label_png(pred_dir / f"{image_id}.png")
        cells.append(_img(save(f"val_{n}_pred.png", thumbnail(label_rgb(pred), r.thumb_size, True)), "DeepLab"))
        dl_rows.append(f"<tr><td colspan='3' class='cap'><code>{html.escape(image_id)}</code></td></tr>"
                       f"<tr>{''.join(cells)}</tr>")

    skipped = read_skipped(ctx.paths.root / SKIPPED_FILE)
    page = _page(cfg, ctx, rows, missing, charts, head, image_rows, dl_rows, skipped, curves_html)
    write_text(ctx.paths.report_html, page)
    keep = set(written)
    for old in out_dir.glob("*.png"):     # pictures of an earlier report that this one no longer shows
        if old not in keep:
            old.unlink()
    log.info("report: %s (%d stage(s) with metrics, %d missing; %d picture(s))", ctx.paths.report_html,
             len(metrics), len(missing), len(written))
    return {"report": str(ctx.paths.report_html), "stages": {k: round(v["miou"], 2) for k, v in metrics.items()},
            "floors": {split: {k: round(v, 2) for k, v in f.items()} for split, f in floors.items()},
            "missing": [k for k, _, _ in STAGES if k not in metrics], "images": len(shown) + len(dl_rows),
            "curves": [s for s in TRAINING_STEPS if (out_dir / f"curves_{s}.png") in keep],
            "skipped_images": sorted(skipped)}


def _safe_ids(ds, split: str) -> list[str]:
    try:
        return ds.ids(split)
    except (OSError, RuntimeError, ValueError) as e:
        log.warning("report: no images of split %r (%s)", split, e)
        return []


def _img(src: str, alt: str) -> str:
    return f"<td><img src='{html.escape(src)}' alt='{html.escape(alt)}'></td>"


def _page(cfg: Config, ctx: Context, rows: list[str], missing: list[str], charts: list[str], head: str,
          image_rows: list[str], dl_rows: list[str], skipped: dict[str, dict] | None = None,
          curves: Sequence[str] = ()) -> str:
    d = cfg.dataset
    skip_part = ""
    if skipped:
        items = "".join(f"<tr><td><code>{html.escape(i)}</code></td><td>{html.escape(str(r.get('step')))}</td>"
                        f"<td>{html.escape(str(r.get('reason')))}</td></tr>" for i, r in sorted(skipped.items()))
        skip_part = (f"<h2>Skipped unreadable images ({len(skipped)})</h2><p class='missing'>Left out of every step "
                     f"(<code>dataset.skip_bad_images: true</code>; list in <code>{SKIPPED_FILE}</code>).</p>"
                     f"<table><tr><th>image</th><th>found by</th><th>reason</th></tr>{items}</table>")
    miss = ("<p class='missing'>Not in this run: " + "; ".join(missing) + ".</p>") if missing else ""
    eval_part = (f"<table>{head}{''.join(image_rows)}</table>" if image_rows
                 else "<p class='missing'>No images of this split (no CAMs, pseudo masks or GT found).</p>")
    dl_part = (f"<table><tr><th>image</th><th>ground truth</th><th>DeepLab</th></tr>{''.join(dl_rows)}</table>"
               if dl_rows else "<p class='missing'>No DeepLab predictions (<code>deeplab_pred/</code>).</p>")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>QA-CLIMS run report: {html.escape(str(ctx.paths.root))}</title>
<style>
body {{ font-family: sans-serif; max-width: 1200px; margin: 1.5em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }}
td img {{ width: {cfg.report.thumb_size}px; image-rendering: pixelated; }}
.missing {{ color: #a33; }} .cap {{ background: #f4f4f4; }} .qa {{ font-size: 0.9em; color: #333; }}
</style></head><body>
<h1>QA-CLIMS run report</h1>
<p>Work directory <code>{html.escape(str(ctx.paths.root))}</code>; dataset <code>{html.escape(d.name)}</code> at
<code>{html.escape(d.root)}</code>; written {time.strftime("%Y-%m-%d %H:%M")}. CAMs and pseudo masks are measured on
<code>{html.escape(d.eval_split)}</code>, DeepLab on <code>{html.escape(d.val_split)}</code>; mIoU in percent.</p>
<h2>mIoU of every stage</h2>
<table><tr><th>stage</th><th>file</th><th>split</th><th>images</th><th>mIoU</th><th>note</th></tr>
{''.join(rows)}</table>
{miss}
{skip_part}
<h2>Every stage, and per-class IoU</h2>
{''.join(charts) or "<p class='missing'>No metric files yet.</p>"}
<h2>Training curves</h2>
<p>Loss terms of every logged iteration (<code>events/&lt;step&gt;.jsonl</code>), lr dashed on the right axis,
checkpoints dotted, resumes red dashed.</p>
{''.join(curves) or "<p class='missing'>No training events (<code>events/</code>).</p>"}
<h2>CAMs before and after RITC, pseudo masks ({html.escape(d.eval_split)})</h2>
<p>The CAM pictures show the strongest class activation per pixel (blue low, red high) over the image. A plain
classifier also lights up the background its classes usually stand on (rails under a train, water under a
boat); RITC's region-text contrast (QAPE's background answers as negatives) should pull the activation back
onto the object. Under each image: QAPE's raw answers, per class.</p>
{eval_part}
<h2>DeepLab trained on the pseudo masks ({html.escape(d.val_split)})</h2>
{dl_part}
</body></html>
"""


if __name__ == "__main__":   # steps run through the runner, which hands them their context
    raise SystemExit("run it with: python -m step report --config <yaml> [--set k=v] [--force]")
