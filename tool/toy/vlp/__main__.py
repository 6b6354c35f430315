"""``python -m tool.toy.vlp``: train the toy VLP (cached) and optionally measure it."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from collections.abc import Sequence

import torch

import tool.toy.vlp
from tool.engine.io import write_json
from tool.toy.vlp.cache import ensure_toy_vlp
from tool.toy.vlp.evaluate import clip_zero_shot, run_toy_vqa
from tool.toy.vlp.params import ToyVlpParams

log = logging.getLogger("tool.toy.vlp")


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: train the toy VLP (cached) and optionally measure it; prints nothing, logs the results."""
    ap = argparse.ArgumentParser(prog="python -m tool.toy.vlp", description=tool.toy.vlp.__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="the toy world (VOC layout), e.g. work/demo-data/VOC2012")
    ap.add_argument("--out", required=True, help="folder for blip/, clip/ and toy_vlp.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads while training (default 1)")
    ap.add_argument("--set", action="append", default=[], metavar="PARAM=VALUE",
                    help="override a ToyVlpParams field, e.g. --set blip_steps=800")
    ap.add_argument("--eval-vqa", action="store_true", help="measure the BLIP's QAPE answers on --split")
    ap.add_argument("--eval-clip", action="store_true", help="measure the CLIP's zero-shot accuracy on --split")
    ap.add_argument("--split", default="val")
    ap.add_argument("--json", help="also write the measurements to this JSON file")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fields = {f.name: f for f in dataclasses.fields(ToyVlpParams)}
    overrides: dict = {"seed": args.seed, "threads": args.threads}
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in fields:
            ap.error(f"--set {item!r}: unknown parameter {key!r} (known: {', '.join(fields)})")
        overrides[key] = None if value == "null" else type(getattr(ToyVlpParams(), key) or 0)(value)
    summary = ensure_toy_vlp(args.root, args.out, ToyVlpParams(**overrides))
    results: dict = {"train": summary.get("metrics", {})}
    torch.set_num_threads(max(1, args.threads))
    if args.eval_vqa:
        t0 = time.time()
        results["vqa"] = run_toy_vqa(args.out, args.root, args.split)[1]
        log.info("toy VQA on %s: %s (%.0f s)", args.split, results["vqa"], time.time() - t0)
    if args.eval_clip:
        results["clip"] = clip_zero_shot(args.out, args.root, args.split)
        log.info("toy CLIP zero-shot on %s: %s", args.split, results["clip"])
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
