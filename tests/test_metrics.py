"""Metrics against a brute-force reference of chainercv's confusion + nanmean IoU; the one-pass sweep."""
from __future__ import annotations

import numpy as np
import pytest

from tool.seg.metrics import (
    ThresholdSweep,
    confusion,
    error_shares,
    iou_from_confusion,
    metric_record,
    miou,
    precision_recall,
)


def chainercv_reference(preds, gts):
    """chainercv.evaluations.calc_semantic_segmentation_confusion + IoU, re-typed from its algorithm:
    GT -1 ignored (VOC's 255 becomes -1 there), a matrix that grows to the largest label seen."""
    n = 0
    conf = np.zeros((0, 0), np.int64)
    for p, g in zip(preds, gts):
        p, g = p.ravel(), g.ravel().astype(np.int64)
        g = np.where(g == 255, -1, g)
        m = max(p.max(), g.max())
        if m >= n:
            big = np.zeros((m + 1, m + 1), np.int64)
            big[:n, :n] = conf
            conf, n = big, m + 1
        for a, b in zip(g, p):
            if a >= 0:
                conf[a, b] += 1
    tp = np.diag(conf)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (conf.sum(0) + conf.sum(1) - tp)
    return conf, iou


def test_hand_worked_example():
    gt = np.array([[0, 0, 1], [1, 255, 2]])
    pred = np.array([[0, 1, 1], [1, 2, 0]])
    conf = confusion(pred, gt, 4)
    # rows GT, cols pred; the 255 pixel is dropped
    expect = np.zeros((4, 4), int)
    expect[0, 0] = 1
    expect[0, 1] = 1
    expect[1, 1] = 2
    expect[2, 0] = 1
    assert (conf == expect).all()
    iou = iou_from_confusion(conf)
    # class 0: tp 1 / (gt 2 + pred 2 - 1) = 1/3; class 1: 2 / (2 + 3 - 2) = 2/3; class 2: 0 / (1 + 0) = 0
    assert iou[:3] == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert np.isnan(iou[3])                      # absent from both: left out of the mean
    assert miou(conf) == pytest.approx(100 * (1 / 3 + 2 / 3 + 0) / 3)
    prec, rec = precision_recall(conf)
    assert prec[1] == pytest.approx(2 / 3) and rec[1] == pytest.approx(1.0)
    # 5 labelled pixels: GT 0 called 1 (background as an object), GT 2 called 0 (an object as background)
    assert error_shares(conf) == pytest.approx({"fg_as_bg": 20.0, "bg_as_fg": 20.0, "wrong_class": 0.0})


def test_error_shares_count_each_kind_of_wrong_pixel():
    gt = np.array([[0, 0, 0, 0, 1, 1, 1, 2, 2, 255, 255]])
    pred = np.array([[0, 1, 2, 1, 1, 0, 2, 2, 0, 0, 1]])
    # labelled: 9; bg as fg: (0->1) twice, (0->2) = 3; fg as bg: (1->0), (2->0) = 2; wrong class: (1->2) = 1
    shares = error_shares(confusion(pred, gt, 3))
    assert shares == pytest.approx({"fg_as_bg": 200 / 9, "bg_as_fg": 300 / 9, "wrong_class": 100 / 9})
    accuracy = 3 / 9 * 100                       # (0->0), (1->1), (2->2)
    assert sum(shares.values()) == pytest.approx(100 - accuracy)
    assert metric_record("train", 1, ["bg", "a", "b"], confusion(pred, gt, 3))["errors"] == shares


def test_matches_chainercv_on_random_maps():
    rng = np.random.default_rng(3)
    preds, gts = [], []
    for _ in range(5):
        g = rng.integers(0, 6, (9, 11))
        g[rng.random(g.shape) < 0.15] = 255
        preds.append(rng.integers(0, 6, (9, 11)))
        gts.append(g)
    ref_conf, ref_iou = chainercv_reference(preds, gts)
    ours = sum(confusion(p, g, 8) for p, g in zip(preds, gts))
    n = ref_conf.shape[0]
    assert (ours[:n, :n] == ref_conf).all() and ours[n:].sum() == 0
    assert miou(ours) == pytest.approx(np.nanmean(ref_iou) * 100)


def test_out_of_range_label_is_an_error():
    with pytest.raises(ValueError, match="out of range"):
        confusion(np.array([[5]]), np.array([[0]]), 3)


def test_sweep_equals_per_threshold_argmax():
    rng = np.random.default_rng(0)
    thresholds = np.round(np.arange(0.0, 0.61, 0.05), 2)
    sweep = ThresholdSweep(thresholds, 6)
    ref = np.zeros((len(thresholds), 6, 6), np.int64)
    for _ in range(6):
        k = rng.integers(0, 3)
        keys = np.sort(rng.choice(np.arange(1, 6), k, replace=False))
        cams = rng.random((k, 8, 10)).astype(np.float32)
        if k:
            cams[0, 0, :4] = np.float32(0.15)      # ties with a threshold go to background
        gt = rng.integers(0, 6, (8, 10))
        gt[rng.random(gt.shape) < 0.1] = 255
        sweep.add(cams, keys, gt)
        for i, t in enumerate(sweep.thresholds):
            padded = np.concatenate([np.full((1, 8, 10), t, np.float32), cams])
            pred = np.concatenate([[0], keys]).astype(int)[padded.argmax(0)]
            ref[i] += confusion(pred, gt, 6)
    assert (sweep.confusions() == ref).all()
    assert sweep.num_images == 6
