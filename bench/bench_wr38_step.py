"""One DeepLabV1-WR38 training iteration (forward + backward + SGD step) on CPU: wall time and peak memory.

Run: OMP_NUM_THREADS=1 python -m bench.bench_wr38_step --crop 512 --batch 1 --iters 1
Wall and CPU seconds are reported: on a shared machine the CPU time is the figure. The published
widths, trainable BN, a 21-class LargeFOV head, one cross-entropy; peak memory is the process's
maximum resident set size (``resource.getrusage``), which includes the ~0.4 GB of float32 weights and the
SGD momentum buffers.
"""
from __future__ import annotations

import argparse
import resource
import time

import torch

from net.deeplab import DeepLabV2MSC, masked_cross_entropy, optimizer_groups
from net.wr38 import DeepLabV1
from tool.engine.lr import sgd


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--crop", type=int, default=512)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=1)
    p.add_argument("--width-div", type=int, default=1)
    a = p.parse_args(argv)
    torch.manual_seed(0)
    model = DeepLabV2MSC(DeepLabV1(21, bn="batch", bn_momentum=3e-4, width_div=a.width_div), (0.75, 0.5),
                         train_msc=False).train()
    opt = sgd(optimizer_groups(model.base, 8e-4, 5e-4), momentum=0.9, weight_decay=5e-4)
    x = torch.randn(a.batch, 3, a.crop, a.crop)
    h = -(-a.crop // 8)
    labels = torch.randint(0, 21, (a.batch, h, h))
    times, cpu = [], []
    for _ in range(a.iters):
        t, c = time.perf_counter(), time.process_time()
        loss = masked_cross_entropy(model(x)[0], labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)       # CPU seconds: the figure on a shared machine
    out = {"crop": a.crop, "batch": a.batch, "threads": torch.get_num_threads(),
           "params": sum(q.numel() for q in model.parameters()), "seconds_per_iter": [round(s, 2) for s in times],
           "cpu_seconds_per_iter": [round(s, 2) for s in cpu],
           "max_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}
    print(out)  # noqa: T201 - a benchmark's report
    return out


if __name__ == "__main__":
    main()
