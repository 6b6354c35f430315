"""Semantic-segmentation confusion, IoU and mIoU: the one metrics module of every eval step.

Matches chainercv's ``calc_semantic_segmentation_confusion`` followed by ``np.nanmean`` of the
per-class IoU, which the IRN-family papers report: GT pixels labelled ``ignore`` (255) are left
out, rows are GT and columns predictions, and a class absent from both GT and prediction has
IoU 0/0 = NaN and is left out of the mean. mIoU is reported in percent (0–100).
"""
from __future__ import annotations

import numpy as np

IGNORE = 255


def confusion(pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore: int = IGNORE) -> np.ndarray:
    """Confusion matrix [C, C] (int64; rows GT, columns prediction) of one prediction/GT pair.

    Args:
        pred, gt: integer label maps of the same shape; pred values in [0, C).
        num_classes: C, background included.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from GT shape {gt.shape}")
    gt = gt.reshape(-1).astype(np.int64)
    pred = pred.reshape(-1).astype(np.int64)
    keep = gt != ignore
    gt, pred = gt[keep], pred[keep]
    if gt.size and (gt.max() >= num_classes or gt.min() < 0):
        raise ValueError(f"GT label {int(gt.max())} out of range for {num_classes} classes (and ignore {ignore})")
    if pred.size and (pred.max() >= num_classes or pred.min() < 0):
        raise ValueError(f"predicted label {int(pred.max())} out of range for {num_classes} classes")
    return np.bincount(gt * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_from_confusion(conf: np.ndarray) -> np.ndarray:
    """Per-class IoU [C] = TP / (GT + pred − TP); NaN where a class is absent from both."""
    tp = np.diag(conf).astype(np.float64)
    denom = conf.sum(axis=1) + conf.sum(axis=0) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return tp / denom


def precision_recall(conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class precision TP / predicted and recall TP / GT (NaN where undefined)."""
    tp = np.diag(conf).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return tp / conf.sum(axis=0), tp / conf.sum(axis=1)


def miou(conf: np.ndarray) -> float:
    """nanmean of the per-class IoU, in percent; NaN if no class was seen at all."""
    iou = iou_from_confusion(conf)
    return float(np.nanmean(iou) * 100) if np.isfinite(iou).any() else float("nan")


def error_shares(conf: np.ndarray) -> dict[str, float]:
    """Where the wrong pixels are, in percent of the GT-labelled pixels (background is class 0):
    ``fg_as_bg`` (an object called background: the map falls short of the object), ``bg_as_fg`` (background
    called an object: the map spills over it) and ``wrong_class`` (an object called another class).
    They add up to 100 − pixel accuracy. A refinement that grows maps (IRN's walk) can mend the first only."""
    total = conf.sum()
    fg_as_bg = conf[1:, 0].sum()
    bg_as_fg = conf[0, 1:].sum()
    wrong_class = conf[1:, 1:].sum() - np.trace(conf[1:, 1:])
    return {k: float(100 * v / total) if total else float("nan")
            for k, v in (("fg_as_bg", fg_as_bg), ("bg_as_fg", bg_as_fg), ("wrong_class", wrong_class))}


def describe_errors(shares: dict[str, float]) -> str:
    """One log phrase of :func:`error_shares`."""
    return (f"wrong pixels: object as background {shares['fg_as_bg']:.1f} %, background as object "
            f"{shares['bg_as_fg']:.1f} %, wrong class {shares['wrong_class']:.1f} %")


def metric_record(split: str, num_images: int, classes: list[str], conf: np.ndarray) -> dict:
    """The shared metric-file schema (docs/design.md §3): mIoU and per-class IoU in percent, and the
    error shares (:func:`error_shares`)."""
    iou = iou_from_confusion(conf) * 100
    prec, rec = precision_recall(conf)
    return {
        "split": split,
        "num_images": int(num_images),
        "classes": list(classes),
        "miou": miou(conf),
        "iou": [float(v) for v in iou],
        "precision": [float(v) * 100 for v in prec],
        "recall": [float(v) * 100 for v in rec],
        "errors": error_shares(conf),
    }


def floor_confusions(gt: np.ndarray, first_class: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The two trivial predictions every mIoU is read against, for one image: every pixel background,
    and every pixel the image's first present class (label ``first_class``, 1..C−1; 0 if none).
    Returns their confusions [C, C] against ``gt``."""
    return (confusion(np.zeros_like(gt), gt, num_classes),
            confusion(np.full_like(gt, first_class), gt, num_classes))


class ThresholdSweep:
    """Confusion matrices of CAM predictions for every background threshold, from one pass.

    The prediction at threshold t is IRN's ``argmax([t, cam_1, ..., cam_K])`` mapped through the
    keys: background wherever the max CAM value m ≤ t (argmax returns the first maximum, so ties go
    to background), else the argmax class. Per image we compute m and the argmax class once, then
    ``searchsorted`` gives, for every pixel, how many thresholds lie below m; one bincount over
    (gt, class, that count) and a reverse cumulative sum yield all confusions exactly.

    Thresholds are compared in float32, as the official code compares a float32 CAM padded with the
    threshold.
    """

    def __init__(self, thresholds: np.ndarray, num_classes: int, ignore: int = IGNORE):
        t = np.asarray(thresholds, dtype=np.float32)
        if t.ndim != 1 or t.size == 0 or np.any(np.diff(t) <= 0):
            raise ValueError("thresholds must be a non-empty strictly increasing 1-D sequence")
        self.thresholds = t
        self.num_classes = num_classes
        self.ignore = ignore
        # counts[g, c, j]: pixels of GT g whose argmax class is c and whose max lies above exactly
        # the first j thresholds (j = 0 .. T).
        self._counts = np.zeros((num_classes, num_classes, t.size + 1), dtype=np.int64)
        self.num_images = 0

    def add(self, cams: np.ndarray, keys: np.ndarray, gt: np.ndarray) -> None:
        """Add one image. cams: [K', H, W] float in [0, 1]; keys: [K'] class ids (1..C−1); gt: [H, W]."""
        self.num_images += 1
        gt = gt.reshape(-1).astype(np.int64)
        keep = gt != self.ignore
        gt = gt[keep]
        if gt.size and gt.max() >= self.num_classes:
            raise ValueError(f"GT label {int(gt.max())} out of range for {self.num_classes} classes")
        if cams.shape[0] == 0:  # no class: everything is background at every threshold
            m = np.zeros(gt.size, dtype=np.float32)
            cls = np.zeros(gt.size, dtype=np.int64)
        else:
            if cams.shape[1:] != keep.shape and cams.shape[1] * cams.shape[2] != keep.size:
                raise ValueError(f"CAM size {cams.shape[1:]} does not match the GT size")
            flat = cams.reshape(cams.shape[0], -1)[:, keep].astype(np.float32, copy=False)  # [K', P]
            arg = flat.argmax(axis=0)
            m = flat[arg, np.arange(flat.shape[1])]
            cls = np.asarray(keys, dtype=np.int64)[arg]
        # j = number of thresholds strictly below m: the pixel is foreground for thresholds 0..j-1.
        j = np.searchsorted(self.thresholds, m, side="left")
        C, T1 = self.num_classes, self.thresholds.size + 1
        self._counts += np.bincount((gt * C + cls) * T1 + j, minlength=C * C * T1).reshape(C, C, T1)

    def confusions(self) -> np.ndarray:
        """[T, C, C] confusion matrix at each threshold."""
        T = self.thresholds.size
        # fg[g, c, i] = pixels predicted c (foreground) at threshold i = those with j > i.
        above = np.cumsum(self._counts[:, :, ::-1], axis=2)[:, :, ::-1]   # above[..., i] = sum_{j>=i}
        fg = above[:, :, 1:T + 1]                                          # [C, C, T]: j >= i+1
        conf = np.transpose(fg, (2, 0, 1)).copy()                          # [T, C, C]
        total = self._counts.sum(axis=(1, 2))                              # [C] pixels per GT class
        # every pixel not foreground at threshold i is background (column 0)
        conf[:, :, 0] += total[None, :] - fg.sum(axis=1).T
        return conf
