"""PathIndex geometry and affinity labels, checked against values worked out by hand on tiny grids."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from net.path_index import PathIndex, affinity_labels, edge_to_affinity, path_coords, reduce_label, search_directions


def test_search_directions_radius2():
    # forward half-plane, |d| < 2: right, then the row below from left to right
    assert search_directions(2) == [(0, 1), (1, -1), (1, 0), (1, 1)]


@pytest.mark.parametrize("radius", [2, 3, 5, 10])
def test_direction_count_is_half_the_open_disc(radius):
    disc = sum(1 for y in range(-radius, radius + 1) for x in range(-radius, radius + 1)
               if y * y + x * x < radius * radius)
    assert len(search_directions(radius)) == (disc - 1) // 2
    assert len(search_directions(5)) == 34


def test_path_coords_by_hand():
    assert path_coords((0, 1)) == [(0, 1), (0, 0)]
    assert path_coords((1, 0)) == [(1, 0), (0, 0)]
    # diagonal: both corner cells are within distance 1/sqrt(2) of the line, so the path has 4 cells
    assert path_coords((1, -1)) == [(1, -1), (0, -1), (1, 0), (0, 0)]
    assert path_coords((1, 1)) == [(1, 1), (0, 1), (1, 0), (0, 0)]
    # (2, 0): the straight column
    assert path_coords((2, 0)) == [(2, 0), (1, 0), (0, 0)]
    # (1, 2): cells with |1*x - 2*y|^2 / 5 < 1 -> |x - 2y| <= 2 within the box y 0..1, x 0..2
    assert sorted(path_coords((1, 2))) == sorted([(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)])
    assert path_coords((1, 2))[0] == (1, 2) and path_coords((1, 2))[-1] == (0, 0)


def test_4x4_radius2_indices_by_hand():
    pi = PathIndex(radius=2, default_size=(4, 4))
    # grouped by path length: length 2 = (0,1), (1,0); length 4 = (1,-1), (1,1)
    assert pi.search_dst.tolist() == [[0, 1], [1, 0], [1, -1], [1, 1]]
    # flat ids:  0  1  2  3 /  4  5  6  7 /  8  9 10 11 / 12 13 14 15
    # sources: rows 0..2, columns 1..2 (every forward neighbour must exist)
    assert pi.src_indices.tolist() == [1, 2, 5, 6, 9, 10]
    assert pi.dst_indices.tolist() == [
        [2, 3, 6, 7, 10, 11],    # right
        [5, 6, 9, 10, 13, 14],   # down
        [4, 5, 8, 9, 12, 13],    # down-left
        [6, 7, 10, 11, 14, 15],  # down-right
    ]
    assert [p.shape for p in pi.path_indices] == [(2, 2, 6), (2, 4, 6)]
    # down-left path of source 1: cells (1,-1)->4, (0,-1)->0, (1,0)->5, (0,0)->1
    assert pi.path_indices[1][0, :, 0].tolist() == [4, 0, 5, 1]


def test_edge_to_affinity_by_hand():
    pi = PathIndex(radius=2, default_size=(4, 4))
    edge = torch.zeros(1, 4, 4)
    edge[0, 0, 0] = 0.8  # touches only the down-left path of source 1
    edge[0, 2, 2] = 0.5  # pixel 10
    aff = edge_to_affinity(edge, pi.path_index_tensors())
    assert aff.shape == (1, 4, 6)
    expected = torch.ones(4, 6)
    # pairs whose path contains pixel 10 (0.5): right 9->10, 10->11; down 6->10, 10->14;
    # down-left of 6 (cells 9, 5, 10, 6) and of 10; down-right of 5 (10, 6, 9, 5), 6, 9 and 10
    src = pi.src_indices.tolist()
    for d, s in [(0, 9), (0, 10), (1, 6), (1, 10), (2, 6), (2, 10), (3, 5), (3, 6), (3, 9), (3, 10)]:
        expected[d, src.index(s)] = 0.5
    expected[2, src.index(1)] = 0.2  # down-left of 1: path 4, 0, 5, 1 contains pixel 0
    torch.testing.assert_close(aff[0], expected)


def test_to_displacement_of_coordinate_field():
    pi = PathIndex(radius=3, default_size=(6, 7))
    yy, xx = torch.meshgrid(torch.arange(6.), torch.arange(7.), indexing="ij")
    disp = torch.stack([yy, xx])[None]  # [1, 2, 6, 7]: each pixel's own coordinates
    pair = pi.to_displacement(disp)
    ch, cw = pi.cropped_size((6, 7))
    assert pair.shape == (1, 2, pi.n_directions, ch * cw)
    # src - dst = -(dy, dx) for every source
    expected = -torch.from_numpy(pi.search_dst.T.copy()).float()[:, :, None].expand(2, pi.n_directions, ch * cw)
    torch.testing.assert_close(pair[0], expected)
    assert pi.displacement_target().shape == (1, 2, pi.n_directions, 1)


def test_affinity_labels_by_hand():
    pi = PathIndex(radius=2, default_size=(4, 4))
    label = np.array([[0, 0, 3, 3],
                      [0, 0, 3, 255],
                      [5, 0, 0, 0],
                      [5, 5, 255, 0]], dtype=np.uint8)
    bg, fg, neg = affinity_labels(label, pi)
    assert bg.shape == fg.shape == neg.shape == (4, 6) and bg.dtype == torch.float32
    flat = label.reshape(-1)
    src = pi.src_indices.tolist()

    def cell(d, s):
        return bg[d, src.index(s)].item(), fg[d, src.index(s)].item(), neg[d, src.index(s)].item()

    assert cell(0, 1) == (0, 0, 1)  # 0 -> 3: negative
    assert cell(0, 2) == (0, 1, 0)  # 3 -> 3: foreground positive
    assert cell(0, 5) == (0, 0, 1)  # 0 -> 3: negative
    assert cell(0, 9) == (1, 0, 0)  # 0 -> 0: background positive
    assert cell(0, 6) == (0, 0, 0)  # 3 -> 255: invalid
    assert cell(1, 2) == (0, 1, 0)  # down 3 -> 3
    assert cell(1, 5) == (1, 0, 0)  # down 0 -> 0
    assert cell(1, 9) == (0, 0, 1)  # down 0 -> 5
    assert cell(2, 5) == (0, 0, 1)  # down-left 0 -> pixel 8 = 5
    assert cell(3, 9) == (0, 0, 0)  # down-right 0 -> pixel 14 = 255: invalid
    # every valid pair is exactly one of the three
    both_valid = (flat[pi.src_indices][None] < 255) & (flat[pi.dst_indices] < 255)
    np.testing.assert_array_equal((bg + fg + neg).numpy(), both_valid.astype(np.float32))


def test_affinity_labels_batched_matches_single():
    pi = PathIndex(radius=3, default_size=(8, 9))
    rng = np.random.default_rng(0)
    labels = rng.choice([0, 1, 7, 255], size=(3, 8, 9)).astype(np.uint8)
    batched = affinity_labels(torch.from_numpy(labels), pi)
    for i in range(3):
        for b, s in zip(batched, affinity_labels(labels[i], pi)):
            torch.testing.assert_close(b[i], s)


def test_affinity_labels_rejects_wrong_size():
    pi = PathIndex(radius=2, default_size=(4, 4))
    with pytest.raises(ValueError, match="does not match"):
        affinity_labels(np.zeros((5, 4), np.uint8), pi)


def test_reduce_label_keeps_every_fourth_pixel():
    label = np.arange(64, dtype=np.int64).reshape(8, 8)
    np.testing.assert_array_equal(reduce_label(label), [[0, 4], [32, 36]])


def test_bad_radius_and_too_small_map():
    with pytest.raises(ValueError, match="radius"):
        PathIndex(radius=1, default_size=(4, 4))
    with pytest.raises(ValueError, match="too small"):
        PathIndex(radius=5, default_size=(8, 8))
