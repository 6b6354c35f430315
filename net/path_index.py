"""IRN's path index: the pixel pairs within a radius, the pixels on the path between them, and the
affinity labels read from an IR label map (IRN, Ahn et al. CVPR 2019, §3.2–3.3; official
``misc/indexing.py`` and ``voc12/dataloader.py``).

Geometry (all on the stride-4 feature grid):

- A *search direction* ``(dy, dx)`` is an offset of the forward half-plane (``dy > 0``, or ``dy == 0``
  and ``dx > 0``) with ``dy² + dx² < radius²``. Each undirected pair of pixels closer than ``radius``
  is therefore counted once, as (source, source + direction).
- The *path* of a direction is every cell ``(y, x)`` of the box spanned by ``(0, 0)`` and ``(dy, dx)``
  whose distance to the segment's line is below one cell: ``(dy·x − dx·y)² / (dy² + dx²) < 1``.
  It is sorted by decreasing ``|y| + |x|`` (destination first, source last); IRN's inter-pixel
  affinity is ``a_ij = 1 − max_{k ∈ path(i, j)} B(k)`` for a boundary map ``B``.
- Directions are grouped by path length (the official layout, which lets one gather per group);
  ``search_dst`` lists them in that grouped order and every per-direction output follows it.
- Sources are the pixels whose every destination lies inside the map: rows ``[0, H − r_f)``,
  columns ``[r_f, W − r_f)`` with ``r_f = radius − 1``. Flat indices are row-major, ``y·W + x``.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger(__name__)

IGNORE = 255


def search_directions(radius: int) -> list[tuple[int, int]]:
    """The forward half-plane offsets ``(dy, dx)`` with ``dy² + dx² < radius²``, in IRN's order
    (``(0, 1) … (0, r−1)``, then row by row ``dy = 1 … r−1``, ``dx = −(r−1) … r−1``)."""
    _check_radius(radius)
    dirs = [(0, dx) for dx in range(1, radius)]
    dirs += [(dy, dx) for dy in range(1, radius) for dx in range(-radius + 1, radius)
             if dx * dx + dy * dy < radius * radius]
    return dirs


def path_coords(direction: tuple[int, int]) -> list[tuple[int, int]]:
    """Cells on the path from ``(0, 0)`` to ``direction``, destination first, source last.

    A cell of the bounding box is on the path when its squared distance to the line through the two
    ends is below 1. The sort is stable, so cells with equal ``|y| + |x|`` keep row-major order.
    """
    dy, dx = direction
    length_sq = dy * dy + dx * dx
    y0, y1 = sorted((0, dy))
    x0, x1 = sorted((0, dx))
    cells = [(y, x) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)
             if (dy * x - dx * y) ** 2 / length_sq < 1]
    cells.sort(key=lambda c: -abs(c[0]) - abs(c[1]))
    return cells


def _check_radius(radius: int) -> None:
    if not isinstance(radius, (int, np.integer)) or radius < 2:
        raise ValueError(f"path radius must be an integer >= 2 (radius 1 has no neighbours), got {radius!r}")


class PathIndex:
    """Pairs, paths and their flat indices for one feature-map size.

    Args:
        radius: pairs closer than this (Euclidean, in feature cells) are connected; IRN trains with 10
            and infers with 5.
        default_size: ``(H, W)`` of the feature map the indices are built for (crop // 4 in training).

    Attributes:
        search_paths: per path length ``L``, an int array ``[n_dirs_L, L, 2]`` of ``(dy, dx)`` cells.
        search_dst: ``[n_dirs, 2]`` the directions, in the grouped order.
        path_indices: per path length, int64 ``[n_dirs_L, L, n_src]`` flat indices of the path cells
            of every source.
        src_indices: int64 ``[n_src]``; dst_indices: int64 ``[n_dirs, n_src]``.
    """

    def __init__(self, radius: int, default_size: tuple[int, int]):
        _check_radius(radius)
        self.radius = int(radius)
        self.radius_floor = self.radius - 1
        self.size = (int(default_size[0]), int(default_size[1]))
        groups: dict[int, list[list[tuple[int, int]]]] = {}
        for d in search_directions(self.radius):
            cells = path_coords(d)
            groups.setdefault(len(cells), []).append(cells)
        self.search_paths = [np.asarray(groups[n], dtype=np.int64) for n in sorted(groups)]
        self.search_dst = np.concatenate([p[:, 0] for p in self.search_paths], axis=0)
        self.path_indices, self.src_indices, self.dst_indices = self.get_path_indices(self.size)

    @property
    def n_directions(self) -> int:
        return int(self.search_dst.shape[0])

    def cropped_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """``(rows, cols)`` of the source grid of a ``size`` map."""
        ch, cw = size[0] - self.radius_floor, size[1] - 2 * self.radius_floor
        if ch < 1 or cw < 1:
            raise ValueError(f"feature map {tuple(size)} is too small for path radius {self.radius}: "
                             f"it needs at least {self.radius} rows and {2 * self.radius - 1} columns")
        return ch, cw

    def get_path_indices(self, size: tuple[int, int]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """Flat indices for a ``size = (H, W)`` map: (path_indices per length, src [n_src], dst [n_dirs, n_src])."""
        ch, cw = self.cropped_size(size)
        rf = self.radius_floor
        full = np.arange(size[0] * size[1], dtype=np.int64).reshape(size[0], size[1])  # [H, W] flat ids

        def window(dy: int, dx: int) -> np.ndarray:
            # the flat index of (source + (dy, dx)) for every source, row-major over the source grid
            return full[dy:dy + ch, rf + dx:rf + dx + cw].reshape(-1)  # [n_src]

        path_indices = [np.stack([np.stack([window(dy, dx) for dy, dx in path]) for path in paths])
                        for paths in self.search_paths]  # each [n_dirs_L, L, n_src]
        src = window(0, 0)
        dst = np.concatenate([p[:, 0] for p in path_indices], axis=0)  # [n_dirs, n_src]
        return path_indices, src, dst

    def to_displacement(self, disp: torch.Tensor) -> torch.Tensor:
        """Pairwise displacement differences ``disp[src] − disp[dst]``.

        disp: [N, C, H, W] (C = 2 for (dy, dx)) -> [N, C, n_dirs, n_src].
        """
        h, w = disp.shape[-2:]
        ch, cw = self.cropped_size((h, w))
        rf = self.radius_floor
        src = disp[:, :, :ch, rf:rf + cw]
        dst = torch.stack([disp[:, :, dy:dy + ch, rf + dx:rf + dx + cw] for dy, dx in self.search_dst.tolist()],
                          dim=2)  # [N, C, n_dirs, ch, cw]
        pair = src.unsqueeze(2) - dst
        return pair.reshape(pair.shape[0], pair.shape[1], pair.shape[2], -1)  # [N, C, n_dirs, n_src]

    def displacement_target(self) -> torch.Tensor:
        """The offset of every direction as a displacement target: [1, 2, n_dirs, 1] float32 (dy, dx)."""
        return torch.from_numpy(self.search_dst.T.copy()).float()[None, :, :, None]  # [1, 2, n_dirs, 1]

    def path_index_tensors(self, device: torch.device | str | None = None) -> list[torch.Tensor]:
        """``path_indices`` as int64 tensors on ``device``."""
        return [torch.from_numpy(p).to(device) for p in self.path_indices]


def edge_to_affinity(edge: torch.Tensor, path_indices: list[torch.Tensor]) -> torch.Tensor:
    """IRN's inter-pixel affinity ``a_ij = 1 − max_{k ∈ path(i, j)} B(k)`` for every (source, direction).

    Args:
        edge: [N, H, W] or [N, 1, H, W] boundary probabilities B in [0, 1].
        path_indices: per path length, int64 [n_dirs_L, L, n_src] flat indices (``PathIndex`` of this size).

    Returns: [N, n_dirs, n_src] affinities in [0, 1], directions in the grouped order.
    """
    flat = edge.reshape(edge.shape[0], -1)  # [N, H*W]
    out = []
    for ind in path_indices:
        vals = flat.index_select(1, ind.reshape(-1))  # [N, n_dirs_L * L * n_src]
        vals = vals.view(flat.shape[0], *ind.shape)  # [N, n_dirs_L, L, n_src]
        out.append(1 - vals.amax(dim=2))
    return torch.cat(out, dim=1)


def affinity_labels(ir_label_small: np.ndarray | torch.Tensor, path_index: PathIndex
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """IRN's affinity labels of every (source, direction) pair of an IR label map.

    A pair is valid when both ends are labelled (< 255); valid pairs are background-positive (both 0),
    foreground-positive (the same class > 0) or negative (different labels).

    Args:
        ir_label_small: [H, W] or [N, H, W] integer IR label at feature resolution (0 bg, 1..C class,
            255 uncertain), ``(H, W) == path_index.size``.

    Returns: (bg_pos, fg_pos, neg), float32 tensors [n_dirs, n_src] (or [N, n_dirs, n_src]).
    """
    label = torch.as_tensor(np.asarray(ir_label_small) if not torch.is_tensor(ir_label_small) else ir_label_small)
    if label.is_floating_point():
        raise TypeError(f"IR label must be an integer array, got {label.dtype}")
    if tuple(label.shape[-2:]) != path_index.size:
        raise ValueError(f"IR label of size {tuple(label.shape[-2:])} does not match the path index built for "
                         f"{path_index.size}; reduce the label to the feature size (crop // 4) first")
    batched = label.dim() == 3
    flat = label.reshape(label.shape[0] if batched else 1, -1).long()  # [N, H*W]
    src = torch.from_numpy(path_index.src_indices).to(flat.device)
    dst = torch.from_numpy(path_index.dst_indices).to(flat.device)
    lab_src = flat[:, src].unsqueeze(1)  # [N, 1, n_src]
    lab_dst = flat[:, dst]  # [N, n_dirs, n_src]
    valid = (lab_src < IGNORE) & (lab_dst < IGNORE)
    equal = lab_src == lab_dst
    pos = equal & valid
    bg_pos = (pos & (lab_src == 0)).float()
    fg_pos = (pos & (lab_src > 0)).float()
    neg = (~equal & valid).float()
    if not batched:
        return bg_pos[0], fg_pos[0], neg[0]
    return bg_pos, fg_pos, neg


def reduce_label(label: np.ndarray, stride: int = 4) -> np.ndarray:
    """Nearest-neighbour reduction of a crop's label to the feature grid, as IRN's
    ``cv2.resize(label, fx=1/4, fy=1/4, INTER_NEAREST)``: keep every ``stride``-th pixel.

    label: [H, W] -> [round(H / stride), round(W / stride)] (H, W multiples of ``stride`` in IRN).
    """
    if label.shape[0] % stride or label.shape[1] % stride:
        raise ValueError(f"label of shape {label.shape} is not a multiple of stride {stride}; crop it first")
    return np.ascontiguousarray(label[::stride, ::stride])

