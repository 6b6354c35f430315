"""Benchmark: the RITC loss part (FAT + region images + FRC/BRC/REG), official loop structure vs batched.

Both versions get identical inputs: random sigmoid CAM maps P [N, K, 32, 32] (the leaf whose gradient
is compared), 512² images, multi-hot labels, per-pair FG/BG text features and a small frozen conv net
standing in for CLIP (so the bench runs on CPU in seconds). Timed: forward + backward of
α·FRC + β·BRC + γ·REG.

- official structure (``step/train_qa_clims.py`` + ``clip_loss.py`` + ``net/vqa_fg.py``): upsample
  all N·K maps, FAT in a Python loop over the N·K maps, region images in a loop over pairs, two CLIP
  passes (FG, BG), then a loop over pairs computing the FG pool and the two InfoNCE losses with the
  pair's text features taken from a host-side dict and moved to the device each time;
- ours (net/ritc.py): ``build_region_images`` (only the Q positive maps upsampled, FAT batched),
  one CLIP pass on the stacked [2Q] batch, ``TextBank.gather`` and ``ritc_losses``.

Run from the repository root:  .venv/bin/python -m bench.bench_ritc_losses [--device cuda] [--iters 5]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from net.ritc import TextBank, build_region_images, ritc_losses, total

ALPHA, BETA, GAMMA, TAU, OMEGA, SIZE = 10.0, 8.0, 0.2, 0.7, 0.1, 224


class FakeClip(nn.Module):
    """Frozen stand-in for the CLIP image tower: [B, 3, 224, 224] → [B, D]."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 16, 14, stride=14), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1),
                                 nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, dim))
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_inputs(n: int, k: int, dim: int, seed: int, device: torch.device) -> dict:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 512, 512, generator=gen)
    P = torch.sigmoid(2 * torch.randn(n, k, 32, 32, generator=gen))
    labels = torch.zeros(n, k)
    for i in range(n):  # 1–3 classes per image, as on VOC
        labels[i, torch.randperm(k, generator=gen)[: 1 + i % 3]] = 1

    def unit(m: int) -> torch.Tensor:
        return F.normalize(torch.randn(m, dim, generator=gen), dim=-1)

    class_feats = unit(k)
    names = [f"img{i:03d}" for i in range(n)]
    texts: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor | None]] = {}
    for j, (i, c) in enumerate(labels.nonzero().tolist()):
        # 1..10 BG texts; every fifth pair has none and is skipped (as when QAPE found no BG answer)
        nb = 0 if j % 5 == 4 else int(torch.randint(1, 11, (1,), generator=gen))
        texts[(names[i], c)] = (unit(6), unit(nb) if nb else None)
    pairs = list(texts)
    bank = TextBank.from_lists(class_feats, [names.index(p[0]) for p in pairs], [p[1] for p in pairs],
                               [texts[p][0] for p in pairs], [texts[p][1] for p in pairs], num_images=n,
                               device=device)
    return {"x": x.to(device), "P": P.to(device), "labels": labels.to(device), "names": names, "texts": texts,
            "class_feats": class_feats, "bank": bank, "image_ids": torch.arange(n, device=device)}


# ------------------------------------------------------------------------------ official structure

def info_nce_fg(fg_img, fg_text, bg_text, tau):
    fg_img = fg_img / fg_img.norm(dim=-1, keepdim=True)
    pos = torch.exp(fg_img @ fg_text.t() / tau).sum()
    neg = pos + torch.exp(fg_img @ bg_text.t() / tau).sum()
    return -torch.log(pos / neg)


def info_nce_bg(bg_img, fg_text, bg_text, tau):
    bg_img = bg_img / bg_img.norm(dim=-1, keepdim=True)
    pos = torch.exp(bg_img @ bg_text.t() / tau).mean()
    neg = pos + torch.exp(bg_img @ fg_text.t() / tau).sum()
    return -torch.log(pos / neg)


def official_losses(P, x, labels, names, texts, class_feats, clip) -> tuple[torch.Tensor, ...]:
    n, k = P.shape[:2]
    dev = P.device
    fg_indices = torch.nonzero(labels.reshape(-1) == 1, as_tuple=False).squeeze(1)
    cam_224 = F.interpolate(P, (SIZE, SIZE), mode="bilinear", align_corners=True).reshape(n * k, 1, SIZE, SIZE)
    masks = []
    for i in range(cam_224.shape[0]):  # MaskAdapter_DynamicThreshold
        th = torch.max(cam_224[i]) * OMEGA
        masks.append(torch.where(cam_224[i] >= th, torch.ones_like(cam_224[0]), torch.zeros_like(cam_224[0])))
    cam_224_mask = torch.stack(masks)
    img_224 = F.interpolate(x, (SIZE, SIZE), mode="bilinear", align_corners=True)
    temp_idx = torch.nonzero(labels == 1, as_tuple=False)
    fg, bg, fg_mask, bg_mask = [], [], [], []
    for j in range(temp_idx.shape[0]):
        fg.append(cam_224[fg_indices[j]] * img_224[temp_idx[j, 0]])
        bg.append((1 - cam_224[fg_indices[j]]) * img_224[temp_idx[j, 0]])
        fg_mask.append(cam_224_mask[fg_indices[j]])
        bg_mask.append(1 - cam_224_mask[fg_indices[j]])
    fg_feats = clip(torch.stack(fg) * torch.stack(fg_mask))
    bg_feats = clip(torch.stack(bg) * torch.stack(bg_mask))
    frc = torch.tensor(0.0, device=dev)
    brc = torch.tensor(0.0, device=dev)
    qa_w = torch.full((1, 6), 1 / 6)
    for j, (i, c) in enumerate(temp_idx.tolist()):
        fg_ans, bg_ans = texts[(names[i], c)]
        if bg_ans is None:
            continue
        # FG_VQA.forward: label weight 0.5, answer weights 1/6, features copied to the device per pair
        t_fg = 0.5 * class_feats[c:c + 1].to(dev) + 0.5 * torch.sum(qa_w.to(dev) @ fg_ans.to(dev), dim=0)
        t_bg = bg_ans.to(dev)
        frc = frc + info_nce_fg(fg_feats[j], t_fg, t_bg, TAU)
        brc = brc + info_nce_bg(bg_feats[j], t_fg, t_bg, TAU)
    return frc, brc, torch.mean(P)


def ours_losses(P, x, labels, image_ids, bank, clip) -> tuple[torch.Tensor, ...]:
    region = build_region_images(x, P, labels, size=SIZE, omega=OMEGA)
    v_if, v_ib = region.split(clip(region.images))
    texts = bank.gather(image_ids, region.pair_image, region.pair_class)
    out = ritc_losses(P, v_if, v_ib, texts, tau=TAU)
    return out["frc"], out["brc"], out["reg"]


def run_once(fn, P: torch.Tensor, *args) -> tuple[float, tuple[torch.Tensor, ...], torch.Tensor]:
    leaf = P.detach().clone().requires_grad_(True)
    if leaf.is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    frc, brc, reg = fn(leaf, *args)
    loss = total({"frc": frc, "brc": brc, "reg": reg}, ALPHA, BETA, GAMMA)
    loss.backward()
    if leaf.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0, (frc.detach(), brc.detach(), reg.detach(), loss.detach()), leaf.grad


def _time_clip(clip: nn.Module, images: torch.Tensor) -> float:
    if images.is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    clip(images).sum().backward()
    if images.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--dim", type=int, default=768, help="embedding size (ViT-L-14: 768)")
    ap.add_argument("--iters", type=int, default=5)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    data = make_inputs(args.batch, args.classes, args.dim, seed=0, device=device)
    torch.manual_seed(0)
    clip = FakeClip(args.dim).to(device).eval()
    official_args = (data["x"], data["labels"], data["names"], data["texts"], data["class_feats"], clip)
    ours_args = (data["x"], data["labels"], data["image_ids"], data["bank"], clip)

    run_once(official_losses, data["P"], *official_args)  # warm-up
    run_once(ours_losses, data["P"], *ours_args)
    t_off, t_ours = [], []
    for _ in range(args.iters):
        t, off_vals, off_grad = run_once(official_losses, data["P"], *official_args)
        t_off.append(t)
        t, our_vals, our_grad = run_once(ours_losses, data["P"], *ours_args)
        t_ours.append(t)

    q = int(data["labels"].sum())
    images = torch.randn(2 * q, 3, SIZE, SIZE, device=device, requires_grad=True)
    t_clip = statistics.median(_time_clip(clip, images) for _ in range(args.iters))
    skipped = sum(1 for v in data["texts"].values() if v[1] is None)
    print(f"RITC loss part, device={device}, N={args.batch}, K={args.classes}, pairs={q} ({skipped} without BG), "
          f"D={args.dim}, fake CLIP conv net, forward+backward, median of {args.iters}")
    off_med, our_med = statistics.median(t_off), statistics.median(t_ours)
    print(f"  official structure: {1e3 * off_med:8.1f} ms")
    print(f"  ours (batched):     {1e3 * our_med:8.1f} ms")
    print(f"  ratio:              {off_med / our_med:8.2f}x")
    print(f"  fake CLIP fwd+bwd alone on the {2 * q} region images: {1e3 * t_clip:.1f} ms; ours outside it "
          f"{1e3 * (our_med - t_clip):.1f} ms, official outside it {1e3 * (off_med - t_clip):.1f} ms")

    ok = True
    for name, a, b in zip(("frc", "brc", "reg", "total"), off_vals, our_vals):
        rel = (a - b).abs().item() / max(a.abs().item(), 1e-12)
        ok &= rel <= 1e-6
        print(f"  {name:5s} official {a.item():.7f}  ours {b.item():.7f}  rel diff {rel:.2e}")
    grad_rel = (off_grad - our_grad).abs().max().item() / off_grad.abs().max().item()
    ok &= grad_rel <= 1e-5
    print(f"  dL/dP max abs diff / max |grad|: {grad_rel:.2e} (limit 1e-5)")
    print("  equivalence:", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
