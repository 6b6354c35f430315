"""Every real architecture at real size, random weights, on CPU: one batch of every step at VOC sizes.

No weights can be downloaded here, but each architecture is built with random weights, saved in the
format a user's weights come in and loaded back by the step code itself (docs/design.md §6):

- CLIP ViT-L-14 with QuickGELU, saved as a plain state-dict file (a copy of OpenAI's weights as
  open_clip's cache holds them), loaded with ``clip.model: ViT-L-14``, ``clip.pretrained: <file>``,
  ``clip.quick_gelu: true``; plus an ovseg-layout mask-prompt checkpoint made from it
  (``{"model": {"clip_adapter.clip_model.*", "clip_adapter.clip_model.visual.mask_embedding"
  [3, 256, 1024]}}``) as ``clip.mask_prompt_checkpoint``;
- HF ``BlipForQuestionAnswering`` with transformers' default ``BlipConfig`` (the BLIP ViT-B/16 VQA
  architecture) and a BERT-sized WordPiece vocabulary (30,524 tokens), ``save_pretrained`` folder,
  run at 480 px (position embeddings interpolated);
- ResNet-50 and ResNet-101 state dicts in torchvision's key layout for ``cam.pretrained`` /
  ``irn.pretrained`` and ``deeplab.pretrained``.

A world of VOC-sized images (500×375 and 375×500) is generated, and every step runs as
``python -m step <name>`` in its own process with ``configs/voc12.yaml``'s settings, one optimiser
step per training step (``max_steps``/``iterations`` 1). Printed per step: wall time (process, incl.
imports and loading), the step's own time, peak resident memory of its process, output shapes, and
for training steps the parameters that receive gradients. ``--reduced`` cuts the training batches
(cam 16→2, ritc 8→2, irn 32→2, deeplab 5→1) for a 2-core machine.

    OMP_NUM_THREADS=2 python -m bench.real_scale --reduced [--work DIR] [--keep]

``write_real_models`` is shared with ``bench/gpu.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from tool.engine.config import STEPS as PIPELINE_STEPS

ROOT = Path(__file__).resolve().parents[1]
STEPS = tuple(s for s in PIPELINE_STEPS if s != "report")
FULL_BATCH = {"cam": 16, "ritc": 8, "irn": 32, "deeplab": 5}
REDUCED_BATCH = {"cam": 2, "ritc": 2, "irn": 2, "deeplab": 1}
BERT_VOCAB = 30524          # bert-base-uncased's 30,522 + BLIP's [DEC] and [ENC]


def write_real_models(out: Path, *, tiny: bool = False, seed: int = 0, resnets: bool = True) -> dict[str, str]:
    """Random-weight models in the users' formats under ``out``; returns {config key: path or value}.

    ``tiny``: the small CLIP / BLIP of ``tool.toy.tiny_models`` instead (tests, ``bench/gpu.py --tiny``);
    the ResNet files (``resnets``) are always the real torchvision architectures.
    """
    import open_clip
    import torchvision

    from net.clip_mask import MASK_EMBEDDING_KEY, OVSEG_PREFIX
    from tool.toy.tiny_models import tiny_clip_config, write_tiny_blip

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    keys: dict[str, str] = {}
    if tiny:
        arch = out / "tiny-real-scale-clip.json"
        arch.write_text(json.dumps(tiny_clip_config(image_size=64)))
        model = open_clip.CLIP(**tiny_clip_config(image_size=64), quick_gelu=True)
        keys["clip.model"] = str(arch)
    else:
        model = open_clip.create_model("ViT-L-14", force_quick_gelu=True)   # OpenAI's ViT-L/14 architecture
        keys["clip.model"] = "ViT-L-14"
    state = model.state_dict()
    torch.save(state, out / "clip_openai_layout.pt")
    grid = (int(model.visual.positional_embedding.shape[0]) - 1)
    width = int(model.visual.class_embedding.shape[-1])
    ovseg = {OVSEG_PREFIX + k: v for k, v in state.items()}
    ovseg[OVSEG_PREFIX + MASK_EMBEDDING_KEY] = 0.02 * torch.randn(3, grid, width)     # [3, 256, 1024] for ViT-L
    ovseg["backbone.stem.conv1.weight"] = torch.zeros(1)                              # a non-CLIP key, ignored
    torch.save({"model": ovseg, "iteration": 0}, out / "ovseg_mask_prompt.pth")
    del model, state, ovseg
    keys.update({"clip.pretrained": str(out / "clip_openai_layout.pt"), "clip.quick_gelu": "true",
                 "clip.mask_prompt_checkpoint": str(out / "ovseg_mask_prompt.pth")})

    if tiny:
        write_tiny_blip(out / "blip", seed=seed)
    else:
        vocab = [f"w{i:05d}" for i in range(BERT_VOCAB - 7)]          # + the 7 BERT / BLIP special tokens
        big = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12}
        write_tiny_blip(out / "blip", vocab=vocab, seed=seed, init_range=0.02,
                        vision_config={**big, "image_size": 384, "patch_size": 16},
                        text_config={**big, "max_position_embeddings": 512})
    keys["qape.vqa_model"] = str(out / "blip")
    if not resnets:
        return keys
    torch.save(torchvision.models.resnet50().state_dict(), out / "resnet50_torchvision.pth")
    torch.save(torchvision.models.resnet101().state_dict(), out / "resnet101_torchvision.pth")
    keys.update({"cam.pretrained": str(out / "resnet50_torchvision.pth"),
                 "irn.pretrained": str(out / "resnet50_torchvision.pth"),
                 "deeplab.pretrained": str(out / "resnet101_torchvision.pth")})
    return keys


def write_voc_size_world(root: Path, num_train_aug: int = 2) -> None:
    """Train images of 500×375 and one of 375×500, one val image, VOC layout (the toy generator, one image
    turned); ``train_aug`` holds ``num_train_aug`` images (the largest training batch: one step each)."""
    from PIL import Image

    from tool.toy.world import generate_toy_world

    generate_toy_world(root, seed=0, num_train=2, num_val=1, num_extra_aug=max(0, num_train_aug - 2),
                       image_size=(375, 500), max_objects=2)
    first = sorted((root / "ImageSets/Segmentation/train.txt").read_text().split())[0]
    for path in (root / "JPEGImages" / f"{first}.jpg", root / "SegmentationClass" / f"{first}.png"):
        with Image.open(path) as im:
            turned = im.transpose(Image.Transpose.ROTATE_90)
            if path.suffix == ".png":
                turned.save(path)
            else:
                turned.save(path, quality=95)


def trainable_params(cfg) -> dict[str, int]:
    """Parameters the optimiser of each training step updates (its parameter groups), models built as the steps
    build them; the frozen CLIP of RITC and IRN's frozen backbone are not in them."""
    from net.deeplab import build_model, optimizer_groups
    from net.path_index import PathIndex
    from net.resnet50_cam import CAMNet
    from net.resnet50_irn import AffinityDisplacementLoss

    def count(groups) -> int:
        params = [p for g in groups for p in (g["params"] if isinstance(g, dict) else g)]
        return sum(p.numel() for p in params if p.requires_grad)

    c = cfg.irn.train.crop_size // 4
    return {"train_cam": count(CAMNet(20, pretrained=None, bn=cfg.cam.bn).param_groups()),
            "train_ritc": count(CAMNet(20, pretrained=None, bn=cfg.ritc.bn).param_groups()),
            "train_irn": count(AffinityDisplacementLoss(PathIndex(cfg.irn.radius_train, (c, c))).param_groups(0.1, 0)),
            "train_deeplab": count(optimizer_groups(build_model(cfg.deeplab, 21).base, 1.0, 0.0))}


def _shapes(step: str, work: Path) -> str:
    """The shapes of what ``step`` wrote (first files of each kind)."""
    from PIL import Image
    from safetensors.torch import load_file

    def pngs(folder: Path) -> str:
        return ", ".join(f"{p.stem}: {Image.open(p).size[::-1]}" for p in sorted(folder.glob("*.png"))[:3])

    if step == "qape":
        lines = (work / "qape/corpus.jsonl").read_text().splitlines()
        return f"{len(lines)} (image, class) records; e.g. {json.loads(lines[0])['fg'][0]}"
    if step == "text_feats":
        f = next((work / "qape").glob("text_feats.*.safetensors"))
        return f"feats {tuple(load_file(str(f))['feats'].shape)}"
    if step in ("train_cam", "train_ritc", "train_irn", "train_deeplab"):
        model = {"train_cam": "cam_baseline", "train_ritc": "ritc", "train_irn": "irn", "train_deeplab": "deeplab"}
        state = torch.load(work / model[step] / "model.pth", map_location="cpu", weights_only=True)
        state = state.get("model", state) if isinstance(state, dict) else state
        return f"model.pth: {len(state)} tensors, {sum(v.numel() for v in state.values()) / 1e6:.1f} M values"
    if step == "make_cam":
        out = []
        for f in sorted((work / "cam").glob("*.npz"))[:2]:
            with np.load(f) as z:
                out.append(f"{f.stem}: cam {z['cam'].shape} high_res {z['high_res'].shape} {z['high_res'].dtype}")
        return "; ".join(out)
    if step == "cam_to_ir_label":
        return pngs(work / "ir_label")
    if step == "make_sem_seg":
        return pngs(work / "sem_seg")
    if step == "eval_deeplab":
        return pngs(work / "deeplab_pred") + "; " + _metric(work / "eval_deeplab.json")
    if step == "eval_cam":
        return _metric(work / "eval_cam.json")
    if step == "eval_sem_seg":
        return _metric(work / "eval_sem_seg.json")
    return ""


def saved_gb(fn: Callable[..., object], *args: object, exclude: Iterable[torch.Tensor] = (), **kwargs: object) -> float:
    """GB of the distinct tensors autograd keeps for the backward of ``fn(*args, **kwargs)``, ``exclude`` (the
    parameters) not counted.

    This is what a training step holds on the GPU at its peak besides weights, gradients and optimiser state
    (device-independent: counted on the CPU); ``tool.preflight.MEMORY_MODEL_GB`` is calibrated on it.
    """
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*args, **kwargs)
    return sum(seen.values()) / 1e9


def activation_memory() -> dict[str, float]:
    """Autograd-saved GB per training image at the paper's crops, batch 1 (CLIP: per 224² region image, with
    and without gradient checkpointing). Models built in memory with random weights: nothing is written."""
    import open_clip

    from net.clip_mask import MaskPromptCLIPVisual
    from net.deeplab import build_model
    from net.path_index import PathIndex
    from net.resnet50_cam import CAMNet
    from net.resnet50_irn import AffinityDisplacementLoss, IRNet
    from tool.engine.config import load_config

    cfg = load_config(ROOT / "configs/voc12.yaml", ["deeplab.pretrained=null"])
    out: dict[str, float] = {}
    x = torch.randn(1, 3, 512, 512)
    cam = CAMNet(20, pretrained=None, bn="fixed").train()
    out["train_cam (crop 512)"] = saved_gb(cam, x, exclude=cam.parameters())
    ritc = CAMNet(20, pretrained=None, bn="batch").train()
    out["train_ritc CAM net (crop 512)"] = saved_gb(ritc, x, maps=True, exclude=ritc.parameters())
    irn = AffinityDisplacementLoss(PathIndex(10, (128, 128))).train()
    # IRN's two branches (the affinity / displacement losses on their outputs keep little more)
    out["train_irn (crop 512)"] = saved_gb(IRNet.forward, irn, x, exclude=irn.parameters())
    dl = build_model(cfg.deeplab, 21).train()
    out["train_deeplab (crop 321, MSC)"] = saved_gb(dl, torch.randn(1, 3, 321, 321), exclude=dl.parameters())
    del cam, ritc, irn, dl
    clip = open_clip.create_model("ViT-L-14", force_quick_gelu=True).eval().requires_grad_(False)
    visual = MaskPromptCLIPVisual(clip.visual)                  # the ovseg forward, zero mask prompts
    params = list(clip.parameters())
    imgs = torch.randn(1, 3, 224, 224, requires_grad=True)
    visible = torch.ones(1, 256, dtype=torch.bool)
    for ckpt in (False, True):
        clip.set_grad_checkpointing(ckpt)
        out[f"CLIP ViT-L-14 region image{' (grad checkpointing)' if ckpt else ''}"] = saved_gb(
            visual, imgs, visible, exclude=params)
    return out


def _metric(path: Path) -> str:
    d = json.loads(path.read_text())
    miou = d.get("miou", d.get("best_miou"))
    return f"mIoU {miou:.1f} (random weights)" if isinstance(miou, (int, float)) else f"mIoU {miou}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reduced", action="store_true", help="small training batches (cam 2, ritc 2, irn 2, deeplab 1)")
    ap.add_argument("--work", type=Path, default=None, help="folder for the models and the run (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the folder")
    ap.add_argument("--steps", default=",".join(STEPS))
    ap.add_argument("--tiny", action="store_true", help="tiny CLIP and BLIP (a quick check of this script)")
    ap.add_argument("--saved", action="store_true", help="only measure the autograd-saved activations per "
                    "training image (what tool.preflight's memory estimate is calibrated on)")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from net.clip import quick_gelu_for
    from tool.engine.config import load_config

    t0 = time.perf_counter()
    batch = REDUCED_BATCH if a.reduced else FULL_BATCH
    if a.saved:
        for name, gb in activation_memory().items():
            print(f"saved for backward, one image: {name:<48}{gb:8.3f} GB", flush=True)
        return 0
    base = a.work or Path(tempfile.mkdtemp(prefix="real_scale."))
    keys = write_real_models(base / "models", tiny=a.tiny)
    write_voc_size_world(base / "data/VOC2012", max(batch.values()))
    print(f"models and VOC-size world written to {base} in {time.perf_counter() - t0:.0f} s")
    try:    # the bug of the issue: ViT-L-14 + a local file of OpenAI's weights used to get GELU silently
        quick_gelu_for("ViT-L-14", keys["clip.pretrained"], None)   # (the rule only: nothing is built)
        print("clip: ViT-L-14 + a state-dict file WITHOUT clip.quick_gelu was accepted (GELU): BUG")
    except ValueError as e:
        print(f"clip: without clip.quick_gelu the file is refused: {e}")

    sets = [f"work_dir={base / 'work'}", "device=cpu", "num_workers=0", f"dataset.root={base / 'data/VOC2012'}",
            "dataset.label_cache=false", "qape.image_batch=2", *(f"{k}={v}" for k, v in keys.items()),
            f"cam.train.batch_size={batch['cam']}", "cam.train.max_steps=1", f"ritc.train.batch_size={batch['ritc']}",
            "ritc.train.max_steps=1", f"irn.train.batch_size={batch['irn']}", "irn.train.max_steps=1", "irn.workers=0",
            f"deeplab.train.batch_size={batch['deeplab']}", "deeplab.train.max_steps=1", "deeplab_eval.crf_workers=0"]
    cfg = load_config(ROOT / "configs/voc12.yaml", sets)
    params = trainable_params(cfg)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    print(f"torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}, batches {batch}, images 500x375 + 375x500")
    print(f"{'step':<16}{'wall s':>8}{'step s':>8}{'peak RSS GB':>13}  {'trainable':>11}  outputs")
    rows, failed = [], []
    for step in a.steps.split(","):
        args = ["--config", str(ROOT / "configs/voc12.yaml")]
        for s in sets:
            args += ["--set", s]
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _CHILD, "step", step, *args], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        err = proc.stderr
        wall = time.perf_counter() - t
        hwm = re.findall(r"^REAL_SCALE_VMHWM (\d+)$", err, re.M)
        rss = int(hwm[-1]) * 1024 / 1e9 if hwm else float("nan")    # kB -> GB
        ok = proc.returncode == 0
        own = _step_seconds(base / "work", step)
        last = [ln for ln in err.strip().splitlines() if ln.strip() and not ln.startswith("REAL_SCALE_VMHWM")]
        shapes = _shapes(step, base / "work") if ok else "FAILED: " + (last[-1][:300] if last else "?")
        n = params.get(step)
        print(f"{step:<16}{wall:8.1f}{own:8.1f}{rss:13.2f}  {(f'{n / 1e6:.3f} M' if n else '-'):>11}  {shapes}",
              flush=True)
        rows.append({"step": step, "wall_s": round(wall, 1), "step_s": own, "peak_rss_gb": round(rss, 2),
                     "trainable": n, "outputs": shapes, "ok": ok})
        if not ok:
            failed.append(step)
            break
    log = (base / "work/log.txt").read_text() if (base / "work/log.txt").is_file() else ""
    for line in sorted(set(re.findall(r"loaded CLIP .*quick_gelu=\w+\)", log))):
        print(f"clip as the steps loaded it: {line}")
    print(f"total {time.perf_counter() - t0:.0f} s; {'FAILED: ' + ', '.join(failed) if failed else 'every step ran'}")
    (base / "real_scale.json").write_text(json.dumps(rows, indent=1))
    if not a.keep and a.work is None:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if failed else 0


# The child runs ``python -m step <name> ARGS`` and reports its peak resident memory at exit. VmHWM belongs to
# the process's own memory map, which exec starts afresh: ru_maxrss of a child would include the memory of this
# (large) parent at fork time.
_CHILD = """
import atexit, runpy, sys
def _hwm():
    with open('/proc/self/status') as f:
        kb = [line.split()[1] for line in f if line.startswith('VmHWM')]
    sys.stderr.write('\\nREAL_SCALE_VMHWM ' + kb[0] + '\\n')
atexit.register(_hwm)
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)
"""


def _step_seconds(work: Path, step: str) -> float:
    metrics = work / "metrics.jsonl"
    if not metrics.is_file():
        return float("nan")
    rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
    mine = [r for r in rows if r.get("step") == step]
    return float(mine[-1]["seconds"]) if mine else float("nan")


if __name__ == "__main__":
    raise SystemExit(main())
