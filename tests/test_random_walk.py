"""Random walk: hand-worked tiny graphs, the sparse transition against a brute-force one, the sparse walk
against the dense official-structure reference, and the pseudo-label read-out."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from net.random_walk import random_walk, random_walk_dense_reference, sem_seg_from_rw, transition_matrix


def _edge_map(h: int, w: int, seed: int) -> torch.Tensor:
    """A boundary map like IRN's: mostly ~0, with a few sharp walls and noise."""
    g = torch.Generator().manual_seed(seed)
    edge = torch.rand(h, w, generator=g) ** 4
    edge[:, w // 3] = 0.9 + 0.1 * torch.rand(h, generator=g)
    edge[h // 2, : w // 2] = 0.95
    return edge


def test_2x2_complete_graph_averages():
    # radius 2: all 4 pixels are within distance sqrt(2) < 2 of each other and no boundary, so T = 1/4
    cams = torch.tensor([[[1.0, 2.0], [3.0, 6.0]]])
    edge = torch.zeros(2, 2)
    for exp_times in (0, 2):
        out = random_walk(cams, edge, beta=10, exp_times=exp_times, radius=2)
        torch.testing.assert_close(out, torch.full((1, 2, 2), 3.0))


def test_1x4_strip_with_a_wall():
    # pixel 2 is a boundary: pairs 1-2 and 2-3 have affinity 1 - 1 = 0, pixels 0-1 affinity 1;
    # distance-2 pairs are outside radius 2. T rows: [.5 .5 0 0], [.5 .5 0 0], [0 0 1 0], [0 0 0 1];
    # the seed at pixel 2 is damped to 0 by (1 - edge).
    cams = torch.tensor([[[2.0, 4.0, 5.0, 7.0]], [[1.0, 0.0, 1.0, 0.0]]])  # [2, 1, 4]
    edge = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    out = random_walk(cams, edge, beta=3, exp_times=3, radius=2)
    expected = torch.tensor([[[3.0, 3.0, 0.0, 7.0]], [[0.5, 0.5, 0.0, 0.0]]])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(random_walk_dense_reference(cams, edge, beta=3, exp_times=3, radius=2), expected)


def _brute_force_transition(edge: torch.Tensor, beta: float, radius: int) -> torch.Tensor:
    """D^-1 A built pair by pair from the geometric definition: the path between p and q is every cell of
    their bounding box closer than 1 to the line through them."""
    h, w = edge.shape
    n = h * w
    a = torch.zeros(n, n, dtype=torch.float64)
    for py in range(h):
        for px in range(w):
            for qy in range(h):
                for qx in range(w):
                    dy, dx = qy - py, qx - px
                    if dy * dy + dx * dx >= radius * radius:
                        continue
                    if dy == 0 and dx == 0:
                        a[py * w + px, qy * w + qx] = 1.0
                        continue
                    worst = 0.0
                    for cy in range(min(py, qy), max(py, qy) + 1):
                        for cx in range(min(px, qx), max(px, qx) + 1):
                            cross = dy * (cx - px) - dx * (cy - py)
                            if cross * cross / (dy * dy + dx * dx) < 1:
                                worst = max(worst, float(edge[cy, cx]))
                    a[py * w + px, qy * w + qx] = (1 - worst) ** beta
    return a / a.sum(dim=1, keepdim=True)


@pytest.mark.parametrize("h,w,radius", [(5, 6, 3), (4, 3, 2), (2, 7, 3)])
def test_sparse_transition_equals_brute_force(h, w, radius):
    edge = _edge_map(h, w, seed=h * w)
    ours = transition_matrix(edge, beta=2.0, radius=radius).to_dense().double()
    torch.testing.assert_close(ours, _brute_force_transition(edge, 2.0, radius), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("exp_times", [3, 5, 8])
def test_sparse_walk_equals_dense_reference(seed, exp_times):
    h, w = 12, 15
    edge = _edge_map(h, w, seed)
    cams = torch.rand(3, h, w, generator=torch.Generator().manual_seed(100 + seed))
    ours = random_walk(cams, edge, beta=10, exp_times=exp_times, radius=5)
    ref = random_walk_dense_reference(cams, edge, beta=10, exp_times=exp_times, radius=5)
    rel = ((ours - ref).abs().max() / ref.abs().max()).item()
    agree = (ours.argmax(0) == ref.argmax(0)).float().mean().item()
    assert rel <= 1e-3
    assert agree >= 0.999


def test_walk_accepts_1hw_edge_and_checks_size():
    cams = torch.rand(2, 6, 7)
    edge = _edge_map(6, 7, 3)
    torch.testing.assert_close(random_walk(cams, edge[None], exp_times=2), random_walk(cams, edge, exp_times=2))
    with pytest.raises(ValueError, match="does not match"):
        random_walk(cams, torch.zeros(6, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_walk_on_cuda_matches_cpu():
    cams = torch.rand(3, 30, 41)
    edge = _edge_map(30, 41, 5)
    cpu = random_walk(cams, edge)
    gpu = random_walk(cams.cuda(), edge.cuda()).cpu()
    assert ((gpu - cpu).abs().max() / cpu.abs().max()).item() <= 1e-4


def _sem_seg_reference(rw, keys, size, bg_thres):
    """The official sequence of make_sem_seg_labels.py, literally."""
    up = F.interpolate(rw[:, None], scale_factor=4, mode="bilinear", align_corners=False)[..., 0, :size[0], :size[1]]
    up = up / torch.max(up)
    up_bg = F.pad(up, (0, 0, 0, 0, 1, 0), value=bg_thres)
    pred = torch.argmax(up_bg, dim=0).numpy()
    return np.pad(np.asarray(keys) + 1, (1, 0), mode="constant")[pred].astype(np.uint8)


def test_sem_seg_from_rw_by_hand():
    # one plane, peak at the top-left feature cell: the top-left image pixel is the class (key 6 -> 7);
    # the bottom-right one interpolates only zero cells -> background
    rw = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    out = sem_seg_from_rw(rw, [6], (7, 5))
    assert out.shape == (7, 5) and out.dtype == np.uint8
    assert out[0, 0] == 7 and out[6, 4] == 0
    # two constant planes with equal values: the first key wins the tie
    rw2 = torch.full((2, 3, 3), 0.4)
    assert (sem_seg_from_rw(rw2, [3, 1], (12, 12)) == 4).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_sem_seg_from_rw_matches_official_sequence(seed):
    g = torch.Generator().manual_seed(seed)
    rw = torch.rand(3, 9, 11, generator=g) ** 3
    keys = [0, 11, 19]
    out = sem_seg_from_rw(rw, keys, (33, 42), bg_thres=0.2)
    np.testing.assert_array_equal(out, _sem_seg_reference(rw, keys, (33, 42), 0.2))
    assert set(np.unique(out)) <= {0, 1, 12, 20}


def test_sem_seg_from_rw_edge_cases():
    assert (sem_seg_from_rw(torch.zeros(0, 4, 4), [], (13, 16)) == 0).all()
    assert (sem_seg_from_rw(torch.zeros(1, 4, 4), [5], (13, 16)) == 0).all()  # nothing survived the walk
    with pytest.raises(ValueError, match="larger"):
        sem_seg_from_rw(torch.rand(1, 4, 4), [5], (17, 16))
    with pytest.raises(ValueError, match="keys"):
        sem_seg_from_rw(torch.rand(2, 4, 4), [5], (16, 16))


def test_cpu_threads_knob_restores_the_setting():
    cams = torch.rand(2, 9, 11)
    edge = _edge_map(9, 11, 4)
    before = torch.get_num_threads()
    out = random_walk(cams, edge, exp_times=3, cpu_threads=1)
    assert torch.get_num_threads() == before
    torch.testing.assert_close(out, random_walk(cams, edge, exp_times=3), rtol=1e-5, atol=1e-7)


def test_infer_scale_two_walks_a_finer_map():
    """irn.infer_scale 2: IRNet sees the image ×2 (its map is stride 2 of the original), the stride-4 CAMs
    are resized onto that map, and the pseudo label is upsampled ×2 instead of ×4."""
    from net.random_walk import boundary_map, cams_to_edge_size
    seen = []

    def stub(x):                                           # records the input, returns a [1, h, w] map
        seen.append(tuple(x.shape))
        return torch.zeros(1, (x.shape[-2] - 1) // 4 + 1, (x.shape[-1] - 1) // 4 + 1), None
    edge = boundary_map(stub, torch.zeros(1, 3, 12, 16), 2)
    assert seen == [(1, 3, 24, 32)] and tuple(edge.shape) == (6, 8)
    assert tuple(boundary_map(stub, torch.zeros(1, 3, 12, 16), 1).shape) == (3, 4)
    cams = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])       # [1, 2, 2]: right half on
    fine = cams_to_edge_size(cams, (4, 4), 2)
    # bilinear (align_corners=False) ×2 of [0, 1]: 0, 0.25, 0.75, 1 along each row
    torch.testing.assert_close(fine[0, 0], torch.tensor([0.0, 0.25, 0.75, 1.0]))
    assert cams_to_edge_size(cams, (2, 2), 1) is cams
    # stride 2: a 2×2 walked map covers a 4×4 image; the right column's class wins on the right half
    label = sem_seg_from_rw(cams, np.array([6]), (4, 4), bg_thres=0.5, stride=2)
    np.testing.assert_array_equal(label, [[0, 0, 7, 7]] * 4)
    with pytest.raises(ValueError, match="larger than 2"):
        sem_seg_from_rw(cams, np.array([6]), (5, 4), stride=2)
    with pytest.raises(ValueError, match="infer_scale"):
        cams_to_edge_size(cams, (6, 6), 3)
