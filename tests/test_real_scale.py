"""bench/real_scale.py helpers: the saved-activation count the preflight's memory estimate is calibrated on,
and the VOC-size world (one landscape 500×375 and one portrait 375×500 training image)."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from bench.real_scale import saved_gb, write_voc_size_world


def test_saved_bytes_of_a_linear_and_relu_are_counted_by_hand():
    lin = torch.nn.Linear(16, 32)
    x = torch.randn(8, 16)
    # y = relu(x Wᵀ + b): autograd keeps x for dL/dW (8·16 floats) and relu's output (8·32 floats); W, b excluded
    gb = saved_gb(lambda t: torch.relu(lin(t)), x, exclude=lin.parameters())
    assert gb == pytest.approx((8 * 16 + 8 * 32) * 4 / 1e9)
    # with x requiring grad autograd also keeps W (for dL/dx): a parameter, not counted
    x.requires_grad_(True)
    gb_x = saved_gb(lambda t: torch.relu(lin(t)), x, exclude=lin.parameters())
    assert gb_x == pytest.approx(gb)
    assert saved_gb(lambda t: torch.relu(lin(t)), x) > gb            # unless parameters are counted


def test_voc_size_world_has_both_orientations(tmp_path):
    write_voc_size_world(tmp_path / "VOC2012", num_train_aug=3)
    root = tmp_path / "VOC2012"
    train = (root / "ImageSets/Segmentation/train.txt").read_text().split()
    aug = (root / "ImageSets/Segmentation/train_aug.txt").read_text().split()
    assert len(train) == 2 and len(aug) == 3
    sizes = sorted(Image.open(root / "JPEGImages" / f"{i}.jpg").size for i in train)   # (W, H)
    assert sizes == [(375, 500), (500, 375)]
    for i in train:     # the GT mask turned with its image
        image = Image.open(root / "JPEGImages" / f"{i}.jpg")
        assert Image.open(root / "SegmentationClass" / f"{i}.png").size == image.size
