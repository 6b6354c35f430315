"""Benchmark: one whole RITC training step, official loop structure vs ours (docs/design.md §7, RITC row).

Same inputs for both: a ResNet-50 CAM net (trainable BN, as RITC trains it), a small real open_clip
ViT written by ``tool.toy.tiny_models`` (224 px, patch 16: a stand-in for ViT-L-14 that runs on CPU),
random images/labels and per-pair texts. Timed: CAM forward → sigmoid maps → FAT → region images →
CLIP → FRC + BRC + REG → backward (optimizer step excluded, identical in both).

- official structure: ``bench.bench_ritc_losses.official_losses`` (loops over the N·K maps and over
  pairs, FG and BG in two CLIP passes, text features copied host→device per pair);
- ours: ``step.train_ritc.RitcLoss`` (batched over pairs, one CLIP pass, on-device text bank).

Also reported: the "core" time — CAM-net forward/backward plus one CLIP forward/backward on the
2Q region images with a trivial loss — and the share of our step spent outside it.

    python -m bench.bench_ritc_step [--batch 4] [--crop 256] [--iters 3]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.bench_ritc_losses import ALPHA, BETA, GAMMA, official_losses
from net.clip import load_clip
from net.resnet50_cam import CAMNet
from net.ritc import TextBank, build_region_images, total
from step.train_ritc import RitcLoss
from tool.data.imutils import normalize_on_device
from tool.engine.config import Config, build
from tool.toy.tiny_models import write_tiny_clip


def synthetic_ritc_inputs(n: int, k: int, crop: int, d: int, dev: torch.device, g: torch.Generator):
    """Random RITC inputs: labels [n, k] (1–3 classes per image), class features [k, d], per-pair FG / BG texts
    (6 FG, 1–10 BG, every fifth pair without BG), their on-device TextBank and a uint8 batch of ``crop``² images.

    Returns (labels, class_feats, names, texts {(name, class): (fg, bg)}, bank, batch).
    """
    labels = torch.zeros(n, k)
    for i in range(n):
        labels[i, torch.randperm(k, generator=g)[: 1 + i % 3]] = 1
    unit = lambda m: F.normalize(torch.randn(m, d, generator=g), dim=-1)  # noqa: E731
    class_feats = unit(k)
    names = [f"img{i}" for i in range(n)]
    texts = {}
    for j, (i, c) in enumerate(labels.nonzero().tolist()):
        texts[(names[i], c)] = (unit(6), unit(1 + j % 10) if j % 5 != 4 else None)
    pairs = list(texts)
    bank = TextBank.from_lists(class_feats, [names.index(p[0]) for p in pairs], [p[1] for p in pairs],
                               [texts[p][0] for p in pairs], [texts[p][1] for p in pairs], num_images=n, device=dev)
    batch = {"img": torch.randint(0, 256, (n, 3, crop, crop), dtype=torch.uint8, generator=g),
             "valid": torch.ones(n, crop, crop, dtype=torch.uint8), "label": labels, "index": torch.arange(n)}
    return labels, class_feats, names, texts, bank, batch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    dev = torch.device(a.device)
    g = torch.Generator().manual_seed(0)
    n, k = a.batch, 20
    with tempfile.TemporaryDirectory() as tmp:
        clip = load_clip(str(write_tiny_clip(Path(tmp) / "clip", image_size=224, embed_dim=64)), None, device=dev)
    labels, class_feats, names, texts, bank, batch = synthetic_ritc_inputs(n, k, a.crop, clip.embed_dim, dev, g)
    torch.manual_seed(0)
    model = CAMNet(k, bn="batch").to(dev).train()
    cfg = build(Config, {"ritc": {}}, "bench")
    ours = RitcLoss(model, clip, lambda im, m: clip.model.encode_image(im), False, bank, cfg, dev)

    def official_step():
        x = normalize_on_device(batch["img"].to(dev), batch["valid"].to(dev))
        P = model(x, maps=True)
        frc, brc, reg = official_losses(P, x, labels.to(dev), names, texts, class_feats, clip.model.encode_image)
        loss = total({"frc": frc, "brc": brc, "reg": reg}, ALPHA, BETA, GAMMA)
        loss.backward()
        return loss.detach()

    def our_step():
        out = ours(batch)
        out["loss"].backward()
        return out["loss"].detach()

    def core_step():
        x = normalize_on_device(batch["img"].to(dev), batch["valid"].to(dev))
        P = model(x, maps=True)
        region = build_region_images(x.detach(), P.detach(), labels, size=clip.image_size)
        imgs = region.images.requires_grad_(True)
        (P.mean() + clip.model.encode_image(imgs).sum()).backward()

    def timed(fn):
        model.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        return time.perf_counter() - t0, out, grads

    for fn in (official_step, our_step, core_step):   # warm-up
        timed(fn)
    t_off, t_ours, t_core = [], [], []
    for _ in range(a.iters):
        t, loss_off, g_off = timed(official_step)
        t_off.append(t)
        t, loss_ours, g_ours = timed(our_step)
        t_ours.append(t)
        t_core.append(timed(core_step)[0])
    off, our, core = (statistics.median(v) for v in (t_off, t_ours, t_core))
    rel = abs(loss_off.item() - loss_ours.item()) / abs(loss_off.item())
    grad = max((x - y).abs().max().item() / max(x.abs().max().item(), 1e-12) for x, y in zip(g_off, g_ours))
    q = int(labels.sum())
    print(f"RITC whole step, device {dev}, N={n}, crop {a.crop}, K={k}, pairs={q}, tiny ViT CLIP 224/16, "
          f"torch threads {torch.get_num_threads()}, median of {a.iters}")
    print(f"  official structure: {off * 1e3:8.1f} ms")
    print(f"  ours:               {our * 1e3:8.1f} ms   ratio {off / our:.2f}x")
    print(f"  core (CAM fwd/bwd + one CLIP fwd/bwd): {core * 1e3:.1f} ms; ours outside it "
          f"{max(our - core, 0) * 1e3:.1f} ms = {100 * max(our - core, 0) / our:.1f}% of the step")
    ok = rel <= 1e-6 and grad <= 1e-5
    print(f"  loss rel diff {rel:.2e} (limit 1e-6), CAM-net grad max rel diff {grad:.2e} (limit 1e-5): "
          f"{'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
