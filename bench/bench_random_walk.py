"""Random walk of make_sem_seg: the official structure (dense HW×HW transition squared ``exp_times`` times)
against ours (sparse CSR transition of the radius-5 disc applied 2^exp_times times to the K CAM columns).

    python -m bench.bench_random_walk [--sizes 48x64 94x125] [--classes 3] [--exp-times 8] [--device cpu]
                                      [--dense-budget 180] [--full-dense] [--threads N] [--walk-threads N]

Inputs per size: a random boundary map (mostly ~0 with a few walls, like IRN's) and K random CAMs.
Times are the best of ``--repeats`` runs for ours and one run for the dense reference. When the dense
reference is projected to exceed ``--dense-budget`` seconds (build + exp_times × one measured squaring),
it is not run in full: its time is that projection, and the equivalence check uses the same dense
transition applied 2^exp_times times by dense products (no squaring); ``--full-dense`` runs it anyway.

Peak memory: on CPU the rise of the resident-set high-water mark (VmHWM, reset through
/proc/self/clear_refs) over one run in a fresh (spawned) process, so freed blocks of earlier runs cannot
hide it; the dense figure is build + one squaring, the same peak as the full reference. On CUDA,
``torch.cuda.max_memory_allocated`` over the timed run.
Equivalence: argmax agreement of the walked maps, max |ours − dense| / max |dense|, and agreement of
the pseudo labels (``sem_seg_from_rw`` at 4h × 4w).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from pathlib import Path
from typing import Self

import torch

from net.random_walk import dense_transition_reference, random_walk, sem_seg_from_rw, transition_matrix

_STATUS = Path("/proc/self/status")


def _rss_kb(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak memory (bytes) used inside the ``with`` block: VmHWM on CPU, CUDA allocator stats on CUDA."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak: int | None = None

    def __enter__(self) -> Self:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
                self.base = _rss_kb("VmRSS")
            except OSError:
                self.base = None
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self.base
        elif self.base is not None:
            hwm = _rss_kb("VmHWM")
            self.peak = None if hwm is None else (hwm - self.base) * 1024


def _memory_child(kind: str, h: int, w: int, a: argparse.Namespace, queue) -> None:
    """In a fresh process: the VmHWM rise of one run of ``kind`` ("ours", or "dense" = build + one squaring,
    whose peak equals the full reference's: the squaring loop never holds more than T and T·T)."""
    torch.set_num_threads(a.threads or torch.get_num_threads())
    cams, edge = _inputs(h, w, a.classes, torch.device("cpu"))
    with torch.no_grad(), PeakMemory(torch.device("cpu")) as mem:
        if kind == "ours":
            random_walk(cams, edge, beta=a.beta, exp_times=a.exp_times, radius=a.radius, cpu_threads=a.walk_threads)
        else:
            trans = dense_transition_reference(edge, beta=a.beta, exp_times=0, radius=a.radius)
            trans = trans @ trans
    queue.put(mem.peak)


def _cpu_peak(kind: str, h: int, w: int, a: argparse.Namespace) -> int | None:
    ctx = mp.get_context("spawn")  # a fresh heap: freed blocks of earlier runs would hide the rise
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_child, args=(kind, h, w, a, queue))
    proc.start()
    peak = queue.get()
    proc.join()
    return peak


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _inputs(h: int, w: int, k: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    edge = torch.rand(h, w, generator=g) ** 4
    edge[:, w // 3] = 0.9 + 0.1 * torch.rand(h, generator=g)
    edge[h // 2, : w // 2] = 0.95
    cams = torch.rand(k, h, w, generator=g)
    return cams.to(device), edge.to(device)


def _fmt_mb(b: int | None) -> str:
    return "n/a" if b is None else f"{b / 2 ** 20:8.1f} MB"


def bench_size(h: int, w: int, a: argparse.Namespace, device: torch.device) -> dict:
    cams, edge = _inputs(h, w, a.classes, device)
    kw = {"beta": a.beta, "radius": a.radius}

    random_walk(cams, edge, exp_times=1, cpu_threads=a.walk_threads, **kw)  # warm-up (kernels, CSR layout cache)
    times = []
    for _ in range(a.repeats):
        with PeakMemory(device) as mem_ours:
            _sync(device)
            t0 = time.perf_counter()
            ours = random_walk(cams, edge, exp_times=a.exp_times, cpu_threads=a.walk_threads, **kw)
            _sync(device)
            times.append(time.perf_counter() - t0)
    t_ours = min(times)
    nnz = transition_matrix(edge, a.beta, a.radius).values().numel()

    x = (cams * (1 - edge)).reshape(a.classes, h * w)  # [K, h*w], the official seeds
    with PeakMemory(device) as mem_dense:
        _sync(device)
        t0 = time.perf_counter()
        trans0 = dense_transition_reference(edge, exp_times=0, **kw)  # build + column normalisation
        _sync(device)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        sq = trans0 @ trans0
        _sync(device)
        t_square = time.perf_counter() - t0
    projected = t_build + a.exp_times * t_square
    if a.full_dense or projected <= a.dense_budget:
        del sq
        with PeakMemory(device) as mem_dense:
            _sync(device)
            t0 = time.perf_counter()
            trans = dense_transition_reference(edge, exp_times=a.exp_times, **kw)
            dense = (x @ trans).reshape(a.classes, h, w)
            _sync(device)
            t_dense = time.perf_counter() - t0
        how = "measured"
        del trans
    else:
        del sq
        t_dense = projected
        how = f"projected: build {t_build:.1f} s + {a.exp_times} x one squaring {t_square:.1f} s"
        # the same dense matrix, applied 2^exp_times times to the seeds by products instead of squarings
        y = x
        for _ in range(2 ** a.exp_times):
            y = y @ trans0
        dense = y.reshape(a.classes, h, w)
    del trans0

    mem_dense_peak, mem_ours_peak = mem_dense.peak, mem_ours.peak
    if device.type == "cpu":
        mem_ours_peak, mem_dense_peak = _cpu_peak("ours", h, w, a), _cpu_peak("dense", h, w, a)

    rel = ((ours - dense).abs().max() / dense.abs().max()).item()
    agree = (ours.argmax(0) == dense.argmax(0)).float().mean().item()
    keys = list(range(a.classes))
    lab_agree = (sem_seg_from_rw(ours, keys, (4 * h, 4 * w)) == sem_seg_from_rw(dense, keys, (4 * h, 4 * w))).mean()
    res = {"size": (h, w), "dense_s": t_dense, "dense_how": how, "ours_s": t_ours, "ratio": t_dense / t_ours,
           "mem_dense": mem_dense_peak, "mem_ours": mem_ours_peak, "nnz": nnz, "argmax_agreement": agree,
           "label_agreement": float(lab_agree), "max_rel_diff": rel}
    print(f"{h}x{w} (HW = {h * w}, nnz = {nnz}, {nnz / (h * w):.1f}/row)")
    print(f"  dense official structure: {t_dense:9.3f} s   ({how})   peak {_fmt_mb(mem_dense_peak)}")
    print(f"  ours (sparse CSR)       : {t_ours:9.3f} s   (best of {a.repeats})   peak {_fmt_mb(mem_ours_peak)}")
    print(f"  speed-up {res['ratio']:.0f}x   argmax agreement {agree * 100:.3f}%   pseudo-label agreement "
          f"{lab_agree * 100:.3f}%   max rel diff {rel:.2e}")
    return res


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", nargs="+", default=["48x64", "94x125"], help="feature sizes HxW")
    p.add_argument("--classes", type=int, default=3)
    p.add_argument("--exp-times", type=int, default=8)
    p.add_argument("--radius", type=int, default=5)
    p.add_argument("--beta", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--walk-threads", type=int, default=None,
                   help="random_walk(cpu_threads=...) for ours only (default: the process setting)")
    p.add_argument("--dense-budget", type=float, default=180.0, help="seconds; above it the dense time is projected")
    p.add_argument("--full-dense", action="store_true", help="always run the dense reference in full")
    a = p.parse_args(argv)
    device = torch.device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"random walk: K={a.classes}, exp_times={a.exp_times} ({2 ** a.exp_times} steps), radius {a.radius}, "
          f"beta {a.beta}, device {device}, torch threads {torch.get_num_threads()}, "
          f"walk threads {a.walk_threads or torch.get_num_threads()}")
    print("peak memory: " + ("CUDA max_memory_allocated over the run" if device.type == "cuda" else
                             "rise of VmHWM (resident high-water mark) over one run in a fresh process"))
    out = []
    with torch.no_grad():
        for s in a.sizes:
            h, w = (int(v) for v in s.lower().split("x"))
            out.append(bench_size(h, w, a, device))
    return out


if __name__ == "__main__":
    main()
