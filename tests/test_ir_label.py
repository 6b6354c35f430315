"""IR labels (cam_to_ir_label) and the dense-CRF wrappers, on hand-made CAMs and images."""
from __future__ import annotations

import numpy as np
import pytest

from tool.seg.crf import crf_inference_label, crf_inference_prob
from tool.seg.ir_label import combine_confident, make_ir_label


def _img(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_combination_rules_by_hand():
    fg = np.array([[5, 0, 0, 5], [15, 0, 5, 0]])
    bg = np.array([[5, 5, 0, 0], [15, 15, 15, 0]])
    # fg class -> fg (even where bg says 0 or another class); fg 0 & bg class -> 255; both 0 -> 0
    expected = np.array([[5, 255, 0, 5], [15, 255, 5, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(combine_confident(fg, bg), expected)


def test_make_ir_label_without_crf_by_hand():
    keys = np.array([4, 14])  # planes -> labels 5 and 15
    cams = np.array([
        [[0.9, 0.2, 0.05], [0.4, 0.1, 0.35]],  # class 4
        [[0.1, 0.05, 0.02], [0.6, 0.1, 0.35]],  # class 14
    ], dtype=np.float32)
    # (0,0) strong class 4 in both maps -> 5
    # (0,1) 0.2: below fg 0.30 (fg says bg) but above bg 0.10 (bg says class) -> uncertain 255
    # (0,2) below both thresholds -> 0
    # (1,0) class 14 wins -> 15
    # (1,1) both exactly 0.10 = bg threshold: ties go to the background plane -> 0
    # (1,2) equal classes above 0.30: the first key wins -> 5
    out = make_ir_label(_img(2, 3), keys, cams, fg_thres=0.30, bg_thres=0.10, crf=None)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[5, 255, 0], [15, 0, 5]])


def test_make_ir_label_accepts_fp16_cams():
    keys = np.array([0])
    cams = np.array([[[0.5, 0.2, 0.05]]], dtype=np.float16)
    np.testing.assert_array_equal(make_ir_label(_img(1, 3), keys, cams), [[1, 255, 0]])


def test_make_ir_label_no_classes_is_background():
    out = make_ir_label(_img(4, 5), np.zeros(0, np.int64), np.zeros((0, 4, 5), np.float32), crf={})
    assert (out == 0).all() and out.shape == (4, 5)


def _two_regions() -> tuple[np.ndarray, np.ndarray]:
    """A red left half and a blue right half; class 2's CAM covers the left half with a 3×3 hole and
    weakly (0.2: above bg_thres, below fg_thres) spills three columns past the colour boundary."""
    h, w = 24, 32
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (200, 40, 40)
    img[:, w // 2:] = (30, 30, 160)
    cam = np.zeros((1, h, w), np.float32)
    cam[0, :, : w // 2] = 0.9
    cam[0, 10:13, 5:8] = 0.0
    cam[0, :, w // 2: w // 2 + 3] = 0.2
    return img, cam


def test_crf_closes_the_hole_and_the_spill_that_thresholding_leaves():
    img, cam = _two_regions()
    expected = np.zeros((24, 32), np.uint8)
    expected[:, :16] = 3                       # the red half is class 2 (label 3) ...
    # thresholds alone leave the hole background (0) and the weak strip uncertain (255)
    plain = expected.copy()
    plain[10:13, 5:8] = 0
    plain[:, 16:19] = 255
    np.testing.assert_array_equal(make_ir_label(img, np.array([2]), cam, crf=None), plain)
    # ... the CRF (same colour as its surroundings) fills the 9-pixel hole and pulls the weak strip
    # across the colour edge back to confident background: exactly the two halves
    for crf in ({}, {"t": 10, "gt_prob": 0.7}):   # {} = IRN's defaults; it must still run the CRF
        out = make_ir_label(img, np.array([2]), cam, crf=crf)
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out, expected)


def test_ir_crf_section_wires_each_key_to_its_crf_argument():
    import dataclasses
    import inspect

    from tool.engine.config import IrnConfig
    from tool.seg.crf import crf_kwargs

    # the config's defaults are the CRF's own (IRN's cam_to_ir_label values) ...
    params = inspect.signature(crf_inference_label).parameters
    irn_defaults = {k: params[k].default for k in params if k not in ("img", "labels", "n_labels")}
    assert crf_kwargs(IrnConfig().crf, labels=True) == irn_defaults
    # ... and every key reaches its own argument (distinct values, so a crossed wire shows)
    keys = {"t": "iterations", **{k: k for k in irn_defaults if k != "t"}}
    c = dataclasses.replace(IrnConfig().crf, **{keys[k]: i + 1 for i, k in enumerate(sorted(keys))})
    assert crf_kwargs(c, labels=True) == {k: i + 1 for i, k in enumerate(sorted(keys))}
    assert crf_kwargs(dataclasses.replace(c, enabled=False), labels=True) is None


def test_crf_label_smooths_an_outlier_and_checks_dtype():
    img = np.full((16, 16, 3), 128, np.uint8)
    labels = np.zeros((16, 16), np.int64)
    labels[:, 8:] = 1
    img[:, 8:] = 20
    labels[4, 3] = 1  # an isolated wrong label inside the flat left region
    out = crf_inference_label(img, labels, n_labels=2)
    assert out[4, 3] == 0 and (out[:, :8] == 0).all() and (out[:, 8:] == 1).all()
    with pytest.raises(TypeError, match="uint8"):
        crf_inference_label(img.astype(np.float32), labels, n_labels=2)


def test_crf_prob_shapes_and_dtype_check():
    img = _img(10, 12)
    probs = np.random.default_rng(1).dirichlet(np.ones(3), size=(10, 12)).transpose(2, 0, 1).astype(np.float32)
    q = crf_inference_prob(img, probs)
    assert q.shape == (3, 10, 12) and q.dtype == np.float32
    np.testing.assert_allclose(q.sum(axis=0), 1.0, rtol=1e-4)
    with pytest.raises(TypeError, match="uint8"):
        crf_inference_prob(img.astype(np.float64), probs)
    with pytest.raises(ValueError, match="size"):
        crf_inference_prob(_img(10, 13), probs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="keys"):
        make_ir_label(_img(2, 2), np.array([1, 2]), np.zeros((1, 2, 2), np.float32))
    with pytest.raises(ValueError, match="size"):
        make_ir_label(_img(3, 2), np.array([1]), np.zeros((1, 2, 2), np.float32))
    with pytest.raises(KeyError, match="bilateral_foo"):
        make_ir_label(_img(2, 2), np.array([1]), np.zeros((1, 2, 2), np.float32), crf={"bilateral_foo": 1})
