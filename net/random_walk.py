"""IRN's random walk of class activations over the boundary-derived affinity graph, and the pseudo label.

The walk (official ``misc/indexing.py: propagate_to_edge``): pixels of the stride-4 map closer than
``radius`` (5) are connected with affinity ``A_ij = (1 − max_{k ∈ path(i, j)} B(k))^β`` (β = 10), every
pixel to itself with 1; ``T = D⁻¹A`` with ``D`` the degree; the CAMs, damped on boundaries as
``cam · (1 − B)``, are propagated by ``T`` 2^exp_times times (exp_times = 8: 256 steps).

The official code forms the dense HW×HW matrix and squares it ``exp_times`` times (≈26 TFLOP and
>1 GB for a VOC image). It divides by column sums and multiplies row vectors from the left,
``x·T_col``; since A is symmetric that is the same operator as ``D⁻¹A`` applied to column vectors.
Here ``T`` is a sparse CSR matrix with at most 69 entries per row (the radius-5 disc) and is applied
to the K CAM columns 2^exp_times times, so time and memory are O(nnz · K · steps) and O(nnz).

Why CSR and not banded shifts: on CPU, one SpMM per step (MKL) was the fastest of the variants tried
(256 steps, K = 3, 2 idle cores — 48×64: CSR 0.035 s, 69 shifted multiply-adds per step 0.12 s, unfold
0.2 s; 94×125: 0.13 / 0.21 / 1.0 s); on CUDA it is one cuSPARSE call per step instead of 69 small kernels.
Each step is short, so on CPU cores shared with other processes thread barriers dominate: see
``random_walk(cpu_threads=...)``.
``random_walk_dense_reference`` keeps the official structure for tests and the benchmark.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from net.path_index import PathIndex, edge_to_affinity, path_coords, search_directions

log = logging.getLogger(__name__)


def _as_edge_map(edge: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Accept a boundary map [h, w] or [1, h, w] and check its size against the CAMs'."""
    if edge.dim() == 3 and edge.shape[0] == 1:
        edge = edge[0]
    if edge.dim() != 2 or tuple(edge.shape) != tuple(size):
        raise ValueError(f"boundary map of shape {tuple(edge.shape)} does not match the CAM maps {tuple(size)}: "
                         f"both must be the stride-4 feature size [h, w]")
    return edge


def _pad_edge(edge: torch.Tensor, radius: int) -> torch.Tensor:
    """Pad a boundary map [h, w] with walls (1) by ``radius`` left, right and below, as IRN does:
    every pixel then is a source whose destinations all lie in the padded map, and every pair that
    leaves the image gets affinity 0."""
    return F.pad(edge[None], (radius, radius, 0, radius), mode="constant", value=1.0)[0]


def directional_affinity(edge: torch.Tensor, radius: int = 5) -> tuple[list[tuple[int, int]], torch.Tensor]:
    """Affinity ``1 − max_{k∈path} B(k)`` of every pixel with each forward neighbour.

    edge: [h, w] boundary probabilities. Returns (directions (dy, dx) as ``search_directions``,
    aff [n_dirs, h, w]) where aff[d, y, x] is the affinity of (y, x) with (y + dy, x + dx), 0 when the
    neighbour is outside the map.
    """
    h, w = edge.shape
    padded = _pad_edge(edge, radius)  # [h + r, w + 2r]
    dirs = search_directions(radius)
    out = []
    for d in dirs:
        # the path's cells relative to the source, each a shifted [h, w] view of the padded map
        cells = torch.stack([padded[dy:dy + h, radius + dx:radius + dx + w] for dy, dx in path_coords(d)])
        out.append(1 - cells.amax(dim=0))
    return dirs, torch.stack(out)


@functools.lru_cache(maxsize=16)
def _csr_layout(h: int, w: int, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sparsity pattern of the radius-``radius`` disc graph on an h×w grid (self loops included).

    Returns (offsets [n_off, 2] sorted by (dy, dx), valid [h*w, n_off] bool, col [h*w, n_off] int64,
    crow [h*w + 1] int64). Sorting the offsets row-major makes the columns of each row ascending.
    """
    dirs = search_directions(radius)
    offsets = sorted({(0, 0), *dirs, *((-dy, -dx) for dy, dx in dirs)})
    off = np.asarray(offsets, dtype=np.int64)  # [n_off, 2]
    ys, xs = np.divmod(np.arange(h * w, dtype=np.int64), w)  # [h*w] each
    ty = ys[:, None] + off[None, :, 0]  # [h*w, n_off]
    tx = xs[:, None] + off[None, :, 1]
    valid = (ty >= 0) & (ty < h) & (tx >= 0) & (tx < w)
    col = ty * w + tx
    crow = np.concatenate([[0], np.cumsum(valid.sum(axis=1))]).astype(np.int64)
    return off, valid, col, crow


def transition_matrix(edge: torch.Tensor, beta: float = 10.0, radius: int = 5) -> torch.Tensor:
    """The random-walk transition ``T = D⁻¹A`` as a sparse CSR tensor [h*w, h*w] on ``edge.device``.

    edge: [h, w] (or [1, h, w]) boundary probabilities in [0, 1]. Row i holds
    ``A_ij / Σ_j A_ij`` for the pixels j within ``radius`` of i (i itself included, A_ii = 1).
    """
    if edge.dim() == 3:
        edge = edge[0]
    h, w = edge.shape
    dirs, aff = directional_affinity(edge.float(), radius)
    aff = aff.pow(beta)  # [n_dirs, h, w]
    off, valid, col, crow = _csr_layout(h, w, radius)
    index = {tuple(o): i for i, o in enumerate(off.tolist())}
    weights = edge.new_zeros((len(off), h, w), dtype=torch.float32)  # [n_off, h, w]: A[p, p + o] at p
    weights[index[(0, 0)]] = 1.0
    for d, (dy, dx) in enumerate(dirs):
        weights[index[(dy, dx)]] = aff[d]
        # the reverse pair: A[q, q − d] = A[q − d, q] = aff[d] at q − d, i.e. aff[d] shifted by +d
        if dy >= h or abs(dx) >= w:
            continue  # the map is too small for this offset: no such pair
        rev = weights[index[(-dy, -dx)]]
        rev[dy:, max(dx, 0):w + min(dx, 0)] = aff[d, :h - dy, max(-dx, 0):w - max(dx, 0)]
    weights = weights.reshape(len(off), h * w).t()  # [h*w, n_off]
    weights = weights / weights.sum(dim=1, keepdim=True)  # D⁻¹A; D ≥ 1 thanks to the self loop
    dev = edge.device
    valid_t = torch.from_numpy(valid).to(dev)
    with warnings.catch_warnings():  # CSR is "beta" in torch; SpMM with it is stable on CPU and CUDA
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        # the layout is valid by construction (sorted columns per row), so skip the invariant check
        return torch.sparse_csr_tensor(torch.from_numpy(crow).to(dev), torch.from_numpy(col).to(dev)[valid_t],
                                       weights[valid_t], size=(h * w, h * w), check_invariants=False)


@contextlib.contextmanager
def _cpu_threads(n: int | None, device: torch.device) -> Iterator[None]:
    """Temporarily set torch's intra-op CPU threads (process-wide; restored on exit)."""
    if n is None or device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def random_walk(cams: torch.Tensor, edge: torch.Tensor, beta: float = 10.0, exp_times: int = 8,
                radius: int = 5, cpu_threads: int | None = None) -> torch.Tensor:
    """Propagate CAMs over the affinity graph: ``T^(2^exp_times) · (cam · (1 − B))`` per class.

    Args:
        cams: [K, h, w] stride-4 CAMs of the present classes (the ``cam`` array of a CAM file).
        edge: [h, w] or [1, h, w] boundary probabilities from ``EdgeDisplacement``.
        cpu_threads: torch CPU threads for the 2^exp_times SpMMs (None: leave torch's setting). Each
            SpMM is short (~0.1–0.5 ms for a VOC image), so when the cores are shared with other
            processes every thread barrier can wait a scheduler slice; 1 thread is then the fastest
            and steadiest (on a busy 2-core machine 3–40× faster than 2 threads; 1.7× slower when idle).

    Returns: [K, h, w] float32, the walked CAMs (same device).
    """
    k, h, w = cams.shape
    edge = _as_edge_map(edge, (h, w)).float()
    x = cams.float() * (1 - edge)  # boundaries damp the seeds (IRN)
    if k == 0:
        return x
    trans = transition_matrix(edge, beta, radius)
    y = x.reshape(k, h * w).t().contiguous()  # [h*w, K]
    with _cpu_threads(cpu_threads, y.device):
        for _ in range(2 ** exp_times):
            y = torch.sparse.mm(trans, y)
    return y.t().reshape(k, h, w)  # [K, h, w]


@functools.lru_cache(maxsize=8)
def _path_index(radius: int, size: tuple[int, int]) -> PathIndex:
    return PathIndex(radius=radius, default_size=size)


def dense_transition_reference(edge: torch.Tensor, beta: float = 10.0, exp_times: int = 8,
                               radius: int = 5) -> torch.Tensor:
    """REFERENCE ONLY (official structure, O((hw)²) memory, O(exp_times · (hw)³) time): the column-stochastic
    dense transition ``T_col^(2^exp_times)`` [h*w, h*w] of IRN's ``propagate_to_edge``.

    Padded map → path-index affinities (gather + max) → dense symmetric matrix with unit diagonal →
    crop the padding → ``A^β`` → divide by column sums → square ``exp_times`` times.
    """
    if edge.dim() == 3:
        edge = edge[0]
    h, w = edge.shape
    hp, wp = h + radius, w + 2 * radius
    pi = _path_index(radius, (hp, wp))
    aff = edge_to_affinity(_pad_edge(edge.float(), radius)[None], pi.path_index_tensors(edge.device))[0]
    n = hp * wp
    src = torch.from_numpy(pi.src_indices).to(edge.device).repeat(pi.n_directions)  # [n_dirs * n_src]
    dst = torch.from_numpy(pi.dst_indices).to(edge.device).reshape(-1)  # [n_dirs * n_src]
    dense = torch.zeros(n, n, device=edge.device)
    dense[src, dst] = aff.reshape(-1)  # [n_dirs * n_src], direction-major like dst
    dense[dst, src] = aff.reshape(-1)
    dense.fill_diagonal_(1.0)
    dense = dense.view(hp, wp, hp, wp)[:-radius, radius:-radius, :-radius, radius:-radius]  # [h, w, h, w]
    dense = dense.reshape(h * w, h * w)  # [h*w, h*w]
    dense = dense.pow(beta)
    trans = dense / dense.sum(dim=0, keepdim=True)
    for _ in range(exp_times):
        trans = trans @ trans
    return trans


def random_walk_dense_reference(cams: torch.Tensor, edge: torch.Tensor, beta: float = 10.0, exp_times: int = 8,
                                radius: int = 5) -> torch.Tensor:
    """REFERENCE ONLY (official structure): ``(cam · (1 − B)) @ T_col^(2^exp_times)``. cams: [K, h, w] -> [K, h, w]."""
    k, h, w = cams.shape
    edge = _as_edge_map(edge, (h, w)).float()
    trans = dense_transition_reference(edge, beta, exp_times, radius)
    x = (cams.float() * (1 - edge)).reshape(k, h * w)  # [K, h*w]
    return (x @ trans).reshape(k, h, w)  # [K, h, w]


INFER_SCALES = (1, 2, 4)


def _check_scale(scale: int) -> None:
    """``irn.infer_scale`` (checked when the config loads) for library callers of the two functions below."""
    if scale not in INFER_SCALES:
        raise ValueError(f"irn.infer_scale: {scale} is not one of {INFER_SCALES}")


def boundary_map(model, x: torch.Tensor, scale: int = 1) -> torch.Tensor:
    """IRNet's boundary probabilities [h', w'] (``EdgeDisplacement``: image and mirror) of the normalised
    image x [1, 3, H, W] seen ×``scale`` (bilinear): stride 4 of the scaled image, so ``scale`` 2 gives
    the walk cells of 2 × 2 image pixels on images whose objects are too small for IRN's stride 4."""
    _check_scale(scale)
    if scale != 1:
        x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    return model(x)[0][0]


def cams_to_edge_size(cams: torch.Tensor, edge_size: tuple[int, int], scale: int) -> torch.Tensor:
    """The stride-4 CAMs [K, h, w] on the boundary map of the image seen ×``scale`` ([h', w'], stride 4 of
    the scaled image): bilinearly resized when ``scale`` > 1, unchanged (and size-checked) at 1."""
    _check_scale(scale)
    if scale == 1 or cams.shape[0] == 0:
        return cams if scale == 1 else cams.new_zeros((0, *edge_size))
    return F.interpolate(cams[None].float(), size=tuple(edge_size), mode="bilinear", align_corners=False)[0]


def sem_seg_from_rw(rw_cams: torch.Tensor, keys: Sequence[int] | np.ndarray | torch.Tensor,
                    image_size: tuple[int, int], bg_thres: float = 0.20, stride: int = 4) -> np.ndarray:
    """The pseudo label of make_sem_seg (official ``make_sem_seg_labels.py``).

    Upsample the walked CAMs ×``stride`` (4: the map's stride in the image; 4 / ``irn.infer_scale`` when
    the walk ran on a finer map) (bilinear, align_corners=False), crop to the image, divide by their
    global max, put a constant ``bg_thres`` plane in front as background, argmax (ties go to the first:
    background, then the lower key), map plane i to 0 (background) or key + 1.

    Args:
        rw_cams: [K, h, w] output of ``random_walk``.
        keys: [K] 0-based class indices of the planes.
        image_size: (H, W) of the image, at most (4h, 4w).

    Returns: uint8 [H, W] class indices (0 background, 1..C).
    """
    k, h, w = rw_cams.shape
    keys = np.asarray(keys.cpu() if torch.is_tensor(keys) else keys, dtype=np.int64).reshape(-1)  # [K]
    if keys.shape[0] != k:
        raise ValueError(f"{k} walked CAM planes but {keys.shape[0]} keys")
    height, width = int(image_size[0]), int(image_size[1])
    if height > stride * h or width > stride * w:
        raise ValueError(f"image size {(height, width)} is larger than {stride} × the CAM size {(h, w)}: "
                         f"the CAMs do not belong to this image")
    if k == 0:
        return np.zeros((height, width), dtype=np.uint8)
    up = F.interpolate(rw_cams[:, None].float(), scale_factor=stride, mode="bilinear", align_corners=False)
    up = up[:, 0, :height, :width]  # [K, H, W]
    peak = up.max()
    if peak > 0:  # an all-zero walk (no seed survived) stays zero: everything becomes background
        up = up / peak
    up = F.pad(up, (0, 0, 0, 0, 1, 0), value=bg_thres)  # [K + 1, H, W], background first
    pred = up.argmax(dim=0).cpu().numpy()
    lut = np.concatenate([[0], keys + 1])
    if lut.max() > 255:
        raise ValueError(f"class index {lut.max()} does not fit a uint8 label")
    return lut[pred].astype(np.uint8)
