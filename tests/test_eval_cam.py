"""eval_cam's evaluate() against mIoUs worked out by hand on two 4×4 images (classes bg, cat, dog)."""
from __future__ import annotations

import numpy as np
import pytest

from step.eval_cam import evaluate
from tool.engine.config import load_config
from tool.engine.io import read_json, save_npz

# GT: 0 background, 1 cat, 2 dog, 255 ignore
GT = {
    "a": np.array([[1, 1, 0, 0],
                   [1, 1, 0, 0],
                   [0, 0, 2, 2],
                   [0, 0, 2, 255]], np.uint8),   # cat 4 px, dog 3 px, background 8 px
    "b": np.array([[2, 2, 2, 2],
                   [2, 2, 2, 2],
                   [0, 0, 0, 0],
                   [0, 0, 0, 0]], np.uint8),     # dog 8 px, background 8 px
}


class TwoImages:
    class_names = ["cat", "dog"]

    def ids(self, split: str) -> list[str]:
        return ["a", "b"]

    def load_gt(self, image_id: str) -> np.ndarray:
        return GT[image_id]


def write_cams(cam_dir, planes_of: dict[str, dict[int, np.ndarray]]) -> None:
    """One CAM file per image: ``planes_of[id]`` maps each 0-based key to its [4, 4] map."""
    cam_dir.mkdir()
    for image_id, planes in planes_of.items():
        keys = np.array(sorted(planes), np.int64)
        high = np.stack([planes[k] for k in keys]).astype(np.float16)
        save_npz(cam_dir / f"{image_id}.npz", keys=keys, cam=high[:, ::4, ::4], high_res=high)


def mask(image_id: str, label: int) -> np.ndarray:
    return (GT[image_id] == label).astype(np.float32)


@pytest.fixture
def cfg(tmp_path):
    return load_config("configs/smoke.yaml", [f"work_dir={tmp_path / 'w'}"])


def test_cams_equal_to_the_gt_masks_score_100(cfg, tmp_path):
    # class k's CAM (key k) is exactly the GT mask of label k + 1: every threshold in [0, 1) is perfect
    write_cams(tmp_path / "cam", {"a": {0: mask("a", 1), 1: mask("a", 2)}, "b": {1: mask("b", 2)}})
    rec = evaluate(cfg, TwoImages(), tmp_path / "cam", tmp_path / "eval.json")
    assert rec["classes"] == ["background", "cat", "dog"]
    assert rec["miou"] == pytest.approx(100.0) and rec["iou"] == pytest.approx([100.0] * 3)
    assert all(row["miou"] == pytest.approx(100.0) for row in rec["sweep"])
    assert read_json(tmp_path / "eval.json")["miou"] == pytest.approx(100.0)
    # floors: all background -> bg IoU 16 / (16 + 4 + 11); first present class (cat in a, dog in b)
    # -> bg 0, cat 4 / (4 + 15 - 4), dog 8 / (11 + 16 - 8)
    assert rec["floors"]["all_background"] == pytest.approx(100 * (16 / 31) / 3)
    assert rec["floors"]["all_first_present_class"] == pytest.approx(100 * (0 + 4 / 15 + 8 / 19) / 3)


def test_cams_with_cat_and_dog_swapped_in_one_image(cfg, tmp_path):
    # image a: key 0 (cat) holds the dog mask and key 1 (dog) the cat mask; image b is right.
    # Confusion (rows GT): bg 16 -> bg; cat 4 -> dog; dog 3 -> cat (a) and 8 -> dog (b).
    # IoU: bg 16/16, cat 0 / (4 + 3), dog 8 / (11 + 12 - 8)
    write_cams(tmp_path / "cam", {"a": {0: mask("a", 2), 1: mask("a", 1)}, "b": {1: mask("b", 2)}})
    rec = evaluate(cfg, TwoImages(), tmp_path / "cam", tmp_path / "eval.json")
    assert rec["iou"] == pytest.approx([100.0, 0.0, 100 * 8 / 15])
    assert rec["miou"] == pytest.approx(100 * (1 + 0 + 8 / 15) / 3)
    assert rec["best"]["miou"] == pytest.approx(rec["miou"])


@pytest.mark.parametrize("threshold", [0.35, 0.33])   # on the sweep grid, and off it
def test_the_record_is_scored_at_the_configured_threshold(tmp_path, threshold):
    # a weak cat (0.28) and a dog CAM of 0.25 on b's background. Only threshold 0.25 is perfect: below
    # it b's background turns dog, at it the tie goes to the background, and from 0.3 on the cat is lost
    # to the background: IoU bg 16 / (16 + 4), cat 0, dog 11 / 11 -> mIoU 60 at the configured one
    cfg = load_config("configs/smoke.yaml", [f"work_dir={tmp_path / 'w'}", f"eval.cam_threshold={threshold}"])
    write_cams(tmp_path / "cam", {"a": {0: 0.28 * mask("a", 1), 1: mask("a", 2)},
                                  "b": {1: mask("b", 2) + 0.25 * mask("b", 0)}})
    rec = evaluate(cfg, TwoImages(), tmp_path / "cam", tmp_path / "eval.json")
    assert rec["configured"] == {"threshold": threshold, "miou": pytest.approx(60.0)}
    assert rec["miou"] == pytest.approx(60.0) and rec["iou"] == pytest.approx([80.0, 0.0, 100.0])
    assert rec["best"] == {"threshold": 0.25, "miou": pytest.approx(100.0)}
    by_t = {row["threshold"]: row["miou"] for row in rec["sweep"]}
    assert by_t[0.2] < 100 and by_t[0.3] < 100
