"""CAM export: the official structure (upsample all K maps, then select the present classes; fp32
pickled .npy) against ours (select first, then upsample; fp16 .npz), on the same network outputs.

    python -m bench.bench_make_cam [--images 20] [--size 375 500] [--classes 20] [--present 2]

The network forward is the same in both and left out: the inputs are random ReLU'd CAM maps of
the sizes a VOC image produces at scales (1.0, 0.5, 1.5, 2.0). Prints the upsampling time of each,
the ratio, the bytes per image written, and checks the maps are identical.
"""
from __future__ import annotations

import argparse
import io
import time

import numpy as np
import torch
import torch.nn.functional as F

from tool.data.imutils import strided_size, strided_up_size
from tool.seg.cam_infer import fuse_scales

SCALES = (1.0, 0.5, 1.5, 2.0)


def official(outputs: list[torch.Tensor], label: torch.Tensor, size: tuple[int, int]):
    """IRN/QA-CLIMS make_cam: every class upsampled, then the present ones kept."""
    s4, up16 = strided_size(size, 4), strided_up_size(size, 16)
    strided = torch.sum(torch.stack([F.interpolate(o.unsqueeze(0), s4, mode="bilinear", align_corners=False)[0]
                                     for o in outputs]), 0)
    high = [F.interpolate(o.unsqueeze(1), up16, mode="bilinear", align_corners=False) for o in outputs]
    high = torch.sum(torch.stack(high, 0), 0)[:, 0, :size[0], :size[1]]
    keys = torch.nonzero(label)[:, 0]
    strided = strided[keys]
    strided /= F.adaptive_max_pool2d(strided, (1, 1)) + 1e-5
    high = high[keys]
    high /= F.adaptive_max_pool2d(high, (1, 1)) + 1e-5
    return keys, strided, high


def ours(outputs: list[torch.Tensor], label: torch.Tensor, size: tuple[int, int]):
    """``tool.seg.cam_infer.fuse_scales``, make_cam's own upsampling (the present classes first)."""
    keys = torch.nonzero(label)[:, 0]
    strided, high = fuse_scales(outputs, keys, size)
    return keys, strided, high


def nbytes_official(keys, strided, high) -> int:
    buf = io.BytesIO()
    np.save(buf, {"keys": keys.numpy(), "cam": strided, "high_res": high.numpy()}, allow_pickle=True)
    return buf.tell()


def nbytes_ours(keys, strided, high) -> int:
    buf = io.BytesIO()
    np.savez(buf, keys=keys.numpy(), cam=strided.numpy().astype(np.float16), high_res=high.numpy().astype(np.float16))
    return buf.tell()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--size", type=int, nargs=2, default=(375, 500))
    p.add_argument("--classes", type=int, default=20)
    p.add_argument("--present", type=int, default=2, help="present classes per image (VOC averages ~1.5)")
    a = p.parse_args(argv)
    torch.manual_seed(0)
    size = tuple(a.size)
    cases = []
    for _ in range(a.images):
        outs = [torch.relu(torch.randn(a.classes, *strided_size((round(size[0] * s), round(size[1] * s)), 16)))
                for s in SCALES]
        label = torch.zeros(a.classes)
        label[torch.randperm(a.classes)[: a.present]] = 1
        cases.append((outs, label))
    # warm-up
    official(*cases[0], size)
    ours(*cases[0], size)
    t0 = time.perf_counter()
    ref = [official(o, lab, size) for o, lab in cases]
    t_off = time.perf_counter() - t0
    t0 = time.perf_counter()
    new = [ours(o, lab, size) for o, lab in cases]
    t_ours = time.perf_counter() - t0
    same = all(torch.equal(r[1], n[1]) and torch.equal(r[2], n[2]) for r, n in zip(ref, new))
    b_off = np.mean([nbytes_official(*r) for r in ref])
    b_ours = np.mean([nbytes_ours(*n) for n in new])
    res = {"official_s": t_off, "ours_s": t_ours, "ratio": t_off / t_ours, "identical": same,
           "bytes_official": b_off, "bytes_ours": b_ours, "bytes_ratio": b_ours / b_off}
    print(f"make_cam upsampling, {a.images} images {size[0]}x{size[1]}, K={a.classes}, {a.present} present, "
          f"scales {SCALES}, torch threads {torch.get_num_threads()}")
    print(f"  official (all K, then select): {t_off * 1000 / a.images:8.2f} ms/image")
    print(f"  ours (select, then upsample) : {t_ours * 1000 / a.images:8.2f} ms/image")
    print(f"  speed-up: {res['ratio']:.1f}x   maps identical: {same}")
    print(f"  bytes/image: official fp32 .npy {b_off / 1e6:.2f} MB, ours fp16 .npz {b_ours / 1e6:.2f} MB "
          f"({res['bytes_ratio']:.2f}x)")
    return res


if __name__ == "__main__":
    main()
