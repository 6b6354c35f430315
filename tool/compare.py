"""Several runs side by side: one HTML report and a Markdown table for papers (docs/tracking.md).

For each work directory it reads the resolved ``config.yaml``, the stage metric files
(``WorkPaths.stage_metrics``: CAM before / after RITC, pseudo masks, DeepLab) and ``events/<step>.jsonl``,
and writes under ``--out``:

- ``compare.md``: one row per run: the config keys that differ between the runs, then every stage's
  mIoU (CAM at the configured threshold and at the best one of the sweep);
- ``compare.html``: the same table, per-class IoU bars of each stage grouped by run, and the loss curves
  of each training step overlaid (pictures under ``compare/``); ``compare.json``: the numbers.

``work_dir`` is left out of the differing keys (every run has its own).

    python -m tool.compare work/demo work/demo-frc-off [--names full no-frc] [--out work/compare]
"""
from __future__ import annotations

import argparse
import html
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from tool.engine.events import TRAINING_STEPS, read_events
from tool.engine.io import read_json, write_json, write_text
from tool.engine.paths import STAGE_NAMES, WorkPaths
from tool.seg.charts import iou_chart, training_chart

log = logging.getLogger(__name__)

IGNORED_KEYS = ("work_dir",)


class CompareError(ValueError):
    """A run directory that cannot be compared; the message names it."""


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """``{"ritc": {"frc": True}}`` -> ``{"ritc.frc": True}`` (lists stay values)."""
    out: dict[str, object] = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def read_run(path: Path) -> dict:
    """What one work directory holds for the comparison: flat config, stage metrics, training events."""
    paths = WorkPaths(Path(path))
    if not paths.config_yaml.is_file():
        raise CompareError(f"{path}: no config.yaml; is it a work directory of run_sample.py?")
    try:
        config = yaml.safe_load(paths.config_yaml.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise CompareError(f"{paths.config_yaml}: not valid YAML ({e})") from e
    stages = {}
    for key, file in paths.stage_metrics().items():
        if file.is_file():
            m = read_json(file)
            if isinstance(m, dict) and m.get("miou") is not None:
                stages[key] = m
    events = {s: read_events(paths.events_jsonl(s)) for s in TRAINING_STEPS}
    return {"dir": str(path), "config": flatten(config), "stages": stages,
            "events": {s: e for s, e in events.items() if e[0]}}


def differing_keys(configs: Sequence[dict]) -> list[str]:
    """The keys (in first-seen order) whose value is not the same in every config; a key absent from one differs."""
    keys = list(dict.fromkeys(k for c in configs for k in c))
    missing = object()
    return [k for k in keys if k not in IGNORED_KEYS and len({repr(c.get(k, missing)) for c in configs}) > 1]


def _cell(m: dict | None, best: bool) -> str:
    if m is None:
        return "–"
    if best:
        b = m.get("best")
        return f"{b['miou']:.1f} @ {b['threshold']:.2f}" if b else "–"
    return f"{m['miou']:.1f}"


def stage_columns(stage_sets: Sequence[dict]) -> list[tuple[str, bool]]:
    """(stage, whether it gets a best-threshold column) of every stage some run measured, in pipeline order;
    ``stage_sets``: each run's {stage: metrics}."""
    return [(s, any("best" in st.get(s, {}) for st in stage_sets)) for s in STAGE_NAMES
            if any(s in st for st in stage_sets)]


def stage_header(columns: Sequence[tuple[str, bool]]) -> list[str]:
    return [h for s, best in columns for h in (STAGE_NAMES[s], f"{STAGE_NAMES[s]} (best thr.)")[:1 + best]]


def table(names: Sequence[str], runs: Sequence[dict], keys: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per run: its name, the differing keys' values, every stage's mIoU (CAM
    stages also at the best threshold of their sweep)."""
    columns = stage_columns([r["stages"] for r in runs])
    head = ["run", *keys, *stage_header(columns)]
    rows = []
    for name, r in zip(names, runs):
        row = [name, *(_value(r["config"].get(k, "(absent)")) for k in keys)]
        for s, best in columns:
            row += [_cell(r["stages"].get(s), best=False)] + ([_cell(r["stages"].get(s), best=True)] if best else [])
        rows.append(row)
    return head, rows


def _value(v: object) -> str:
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip() if not isinstance(v, str) \
        else v


def markdown(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def compare(run_dirs: Sequence[str | Path], out: str | Path, names: Sequence[str] | None = None,
            extra_md: str = "") -> dict:
    """Write ``compare.html``, ``compare.md``, ``compare.json`` and ``compare/*.png`` under ``out``; returns
    {"names", "differing_keys", "header", "rows"}. ``extra_md`` is appended to the Markdown (ablate's seed table)."""
    if len(run_dirs) < 1:
        raise CompareError("tool.compare: give at least one run directory")
    names = list(names) if names else [Path(d).name for d in run_dirs]
    if len(names) != len(run_dirs) or len(set(names)) != len(names):
        raise CompareError(f"--names: {names} must be {len(run_dirs)} distinct names, one per run directory")
    runs = [read_run(Path(d)) for d in run_dirs]
    keys = differing_keys([r["config"] for r in runs])
    head, rows = table(names, runs, keys)
    out = Path(out)
    pics = out / "compare"
    pics.mkdir(parents=True, exist_ok=True)
    charts = []
    for s in STAGE_NAMES:
        have = [(n, r["stages"][s]) for n, r in zip(names, runs) if s in r["stages"] and r["stages"][s].get("iou")]
        if have:
            iou_chart(have, pics / f"iou_{s}.png")
            charts.append((f"per-class IoU: {STAGE_NAMES[s]}", f"{pics.name}/iou_{s}.png"))
    for s in TRAINING_STEPS:
        curves: list[tuple[str, list[dict], list[dict]]] = [   # (run, scalar records, marks)
            (n, *r["events"][s]) for n, r in zip(names, runs) if s in r["events"]]
        if curves:
            training_chart(f"{s}: loss", curves, pics / f"curves_{s}.png")
            charts.append((f"training loss: {s}", f"{pics.name}/curves_{s}.png"))
    md = markdown(head, rows)
    write_text(out / "compare.md", md + (f"\n{extra_md}" if extra_md else ""))
    summary = {"names": names, "dirs": [str(d) for d in run_dirs], "differing_keys": keys, "header": head,
               "rows": rows}
    write_json(out / "compare.json", summary)
    write_text(out / "compare.html", _page(names, run_dirs, head, rows, keys, charts, extra_md))
    log.info("compare: %s (%d runs; keys that differ: %s)", out / "compare.html", len(runs), ", ".join(keys) or "none")
    return summary


def _page(names, run_dirs, head, rows, keys, charts, extra_md) -> str:
    e = html.escape
    runs = "".join(f"<tr><td>{e(n)}</td><td><code>{e(str(d))}</code></td></tr>" for n, d in zip(names, run_dirs))
    th = "".join(f"<th>{e(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    pics = "".join(f"<figure><img src='{e(src)}' alt='{e(cap)}'><figcaption>{e(cap)}</figcaption></figure>"
                   for cap, src in charts)
    extra = f"<pre>{e(extra_md)}</pre>" if extra_md else ""
    differ = ", ".join(f"<code>{e(k)}</code>" for k in keys) or "none (the runs share every config key)"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>QA-CLIMS: {len(names)} runs compared</title>
<style>
body {{ font-family: sans-serif; max-width: 1200px; margin: 1.5em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; }}
figure {{ display: inline-block; margin: 0.5em; }}
</style></head><body>
<h1>{len(names)} runs compared</h1>
<table><tr><th>run</th><th>work directory</th></tr>{runs}</table>
<p>Config keys that differ: {differ}.</p>
<h2>mIoU of every stage (%)</h2>
<table><tr>{th}</tr>{trs}</table>
{extra}
<h2>Per-class IoU and training curves</h2>
{pics or "<p>No per-class metrics or training events.</p>"}
</body></html>
"""


def main(argv: Sequence[str] | None = None) -> int:
    from tool.engine.runtime import setup_logging

    ap = argparse.ArgumentParser(prog="python -m tool.compare", description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="work directories of run_sample.py")
    ap.add_argument("--names", nargs="+", help="one short name per run (default: the folder names)")
    ap.add_argument("--out", default="work/compare", help="folder of compare.html / compare.md (default work/compare)")
    args = ap.parse_args(argv)
    setup_logging(None)
    summary = compare(args.runs, args.out, args.names)
    sys.stdout.write(markdown(summary["header"], summary["rows"]))
    return 0


if __name__ == "__main__":
    from tool.engine.cli import run_cli
    sys.exit(run_cli(main))
