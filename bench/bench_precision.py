"""Benchmark: every hot spot in float32 and in bfloat16 (CPU autocast) on this CPU, on the same inputs.

The hot spots and the code timed are ``bench/gpu.py``'s (the steps' own functions: BLIP ``encode_images`` +
``answer``, the train_cam step, the RITC step, ``multiscale_cam``, the train_irn step, make_sem_seg's boundary map
with the float32 walk, the train_deeplab step, the eval_deeplab forward), at the demo's sizes with real depths and
random weights: images 128×160; crops 128, batch 4 (CAM, RITC, IRN with radius 5); make_cam's two demo scales with
flips; DeepLabV2 on ResNet-50 (the demo's) at crop 96, batch 4, MSC; QAPE on 4 images (1.5 classes, 16 questions
each) with the BLIP of ``bench.bench_qape`` at 480 px; RITC with the tiny 224-px ViT CLIP of
``bench.bench_ritc_step``. bf16 goes through ``tool.engine.runtime.autocast`` as the steps' ``*.precision:
bfloat16``. Each precision: one warm-up call (oneDNN builds its bf16 kernels per shape on first use), then the
median of ``--iters``. Printed per hot spot: seconds per call in each, the ratio fp32/bf16 (> 1: bf16 faster) and
the equivalence max |bf16 − fp32| / max |fp32| of the warm-up call's output (a training step's loss terms before
any weight moved; CAMs, boundary map, logits, BLIP image embeddings and the share of identical answers).
Without native bf16 instructions (AVX512-BF16 / AMX; printed) oneDNN emulates bf16 and the ratio drops below 1.

    python -m bench.bench_precision [--iters 3] [--only make_cam,train_deeplab] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from bench.bench_qape import write_bench_blip
from bench.gpu import HOT_SPOTS, Sizes, check_only, cpu_name, measure, precision_table
from tool.engine.runtime import cpu_has_native_bf16
from tool.toy.tiny_models import write_tiny_clip

CPU = Sizes(image=(128, 160), qape_images=4, qape_size=480, ritc_batch=4, ritc_crop=128, cam_batch=4, cam_crop=128,
            cam_scales=(1.0, 0.5), irn_batch=4, irn_crop=128, irn_radius=5, walk_exp_times=4, dl_batch=4,
            dl_crop=96, dl_blocks=(3, 4, 6, 3), dl_rates=(2, 4, 6, 8))


def write_models(out: Path, sz: Sizes) -> dict:
    """The BLIP and CLIP of the CPU run (the ``models`` of ``bench.gpu``'s hot spots)."""
    return {"qape.vqa_model": str(write_bench_blip(out / "blip", sz.qape_size)),
            "clip.model": str(write_tiny_clip(out / "clip", image_size=224, embed_dim=64)),
            "clip.pretrained": None, "clip.mask_prompt_checkpoint": None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--only", default=",".join(HOT_SPOTS), help=f"comma-separated subset of {','.join(HOT_SPOTS)}")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    a = ap.parse_args(argv)
    only = check_only(a.only)
    dev = torch.device("cpu")
    native = cpu_has_native_bf16()
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = list(measure(only, write_models(Path(tmp), CPU), CPU, dev, a.iters))
    head = (f"float32 vs bfloat16 autocast on {cpu_name()}: native bf16 {'yes' if native else 'no (emulated)'}, "
            f"{torch.get_num_threads()} threads, torch {torch.__version__}, median of {a.iters} after a warm-up, "
            f"{time.perf_counter() - t:.0f} s in all")
    print(head, precision_table(rows), sep="\n")
    if a.json:
        a.json.write_text(json.dumps({"cpu": cpu_name(), "native_bf16": native, "threads": torch.get_num_threads(),
                                      "torch": torch.__version__, "iters": a.iters, "rows": rows}, indent=1))
        print(f"written {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
