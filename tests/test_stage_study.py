"""tool.stage_study: the oracle measurements, with hand-worked values."""
from __future__ import annotations

import numpy as np
import pytest

from tool.stage_study import (
    boundary_stats,
    gt_boundary,
    gt_label_dir,
    ir_label_counts,
    ir_label_summary,
    main,
    walk_threshold,
)


def test_gt_boundary_marks_cells_holding_a_class_change_or_void():
    gt = np.zeros((8, 8), np.uint8)
    gt[:4, :4] = 3            # a square in the top-left cell: its right and lower edge lie inside that cell
    gt[6, 6] = 255            # one void pixel in the bottom-right cell
    np.testing.assert_array_equal(gt_boundary(gt, (2, 2)), [[1, 0], [0, 1]])
    gt2 = np.zeros((8, 8), np.uint8)
    gt2[:, 5:] = 1            # a vertical edge between columns 4 and 5: the change is at column 4 (right cell)
    np.testing.assert_array_equal(gt_boundary(gt2, (2, 2)), [[0, 1], [0, 1]])
    # an image smaller than 4 × the map (ceil division) is padded: the map covers it
    assert gt_boundary(np.zeros((7, 5), np.uint8), (2, 2)).sum() == 0


def test_boundary_stats_hand_worked():
    # 4 bins; boundary cells have values in bins 1 and 3, other cells 2 × bin 0 and 1 × bin 2.
    pos, neg = np.array([0, 1, 0, 1]), np.array([2, 0, 1, 0])
    s = boundary_stats(pos, neg, (0.5,))
    # ranked from the top: bin 3 (P 1, R .5), bin 2 (P .5, R .5), bin 1 (P 2/3, R 1), bin 0 (P .4, R 1)
    assert s["ap"] == pytest.approx(100 * (0.5 * 1 + 0.5 * 2 / 3))
    assert s["at_0.500"] == pytest.approx({"precision": 50.0, "recall": 50.0})
    assert s["positive_share"] == pytest.approx(100 * 2 / 5)   # 2 of the 5 cells


def test_walk_threshold_halves_the_affinity():
    t = walk_threshold(10.0)
    assert t == pytest.approx(0.066967, abs=1e-6)
    assert (1 - t) ** 10 == pytest.approx(0.5)


def test_ir_label_shares():
    gt = np.array([[0, 0, 1, 1], [0, 255, 1, 2]], np.uint8)
    ir = np.array([[0, 1, 1, 255], [255, 0, 2, 2]], np.uint8)
    counts = ir_label_counts(ir, gt)
    # GT void (1 pixel) left out: 7 pixels; fg: (0,1)->1 vs 0 wrong, (0,2) right, (1,2)->2 vs 1 wrong, (1,3) right
    np.testing.assert_array_equal(counts, [4, 2, 1, 1, 2, 7])
    s = ir_label_summary(counts)
    assert s["fg_correct"] == pytest.approx(50.0) and s["bg_correct"] == pytest.approx(100.0)
    assert s["uncertain"] == pytest.approx(200 / 7) and s["confident_fg"] == pytest.approx(400 / 7)


def test_gt_label_dir_redraws_the_toy_masks_it_lacks(tmp_path):
    from tool.data.palette import load_label_png
    from tool.engine.config import load_config
    from tool.engine.paths import WorkPaths
    from tool.toy.world import generate_toy_world
    root = tmp_path / "toy" / "VOC2012"
    generate_toy_world(root, seed=3, num_train=3, num_val=1, num_extra_aug=2, image_size=(48, 64))
    seg = root / "SegmentationClass"
    train = (root / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    kept = {i: load_label_png(seg / f"{i}.png") for i in train}
    first = sorted(kept)[0]
    (seg / f"{first}.png").unlink()     # now drawn again like an SBD-like extra
    cfg = load_config("configs/smoke.yaml", [f"dataset.root={root}", f"work_dir={tmp_path / 'work'}",
                                             "dataset.train_split=train_aug"])
    out = gt_label_dir(cfg, WorkPaths(tmp_path / "work"), tmp_path / "gt")
    made = sorted(p.stem for p in out.glob("*.png"))
    assert len(made) == 5   # 3 train + 2 extras
    np.testing.assert_array_equal(load_label_png(out / f"{first}.png"), kept[first])
    for image_id, label in kept.items():
        np.testing.assert_array_equal(load_label_png(out / f"{image_id}.png"), label)


def test_deeplab_steps_follow_the_recipe_when_max_steps_is_null(tmp_path):
    # The budgets and the curve took deeplab.train.max_steps alone: an epochs recipe (max_steps null) gave None.
    from tool.engine.config import load_config
    from tool.engine.paths import WorkPaths
    from tool.stage_study import curve_points, deeplab_steps
    from tool.toy.world import generate_toy_world
    root = tmp_path / "toy" / "VOC2012"
    generate_toy_world(root, seed=3, num_train=3, num_val=1, num_extra_aug=2, image_size=(48, 64))
    paths = WorkPaths(tmp_path / "work")

    def cfg(*sets):
        return load_config("configs/smoke.yaml", [f"dataset.root={root}", f"work_dir={tmp_path / 'work'}",
                                                  "dataset.train_split=train_aug", "deeplab.train.batch_size=2", *sets])
    epochs = cfg("deeplab.train.epochs=3", "deeplab.train.max_steps=null")
    assert deeplab_steps(epochs, paths) == 6                                   # 5 images // 2 × 3 epochs
    assert curve_points([0, 0.5, 1], deeplab_steps(epochs, paths)) == [0, 3, 6]
    assert deeplab_steps(cfg("deeplab.train.epochs=3", "deeplab.train.max_steps=4"), paths) == 4
    assert deeplab_steps(cfg("deeplab.train.epochs=null", "deeplab.train.max_steps=7"), paths) == 7


def test_curve_fractions_past_the_last_iteration_are_refused_before_anything_runs(tmp_path, capsys):
    # 2 = twice the stage's iterations: its snapshot would never be written, and the study failed only after
    # training and measuring every earlier snapshot
    with pytest.raises(SystemExit) as e:
        main(["--config", str(tmp_path / "absent.yaml"), "--parts", "curves", "--curve", "0", "0.5", "2",
              "--root", str(tmp_path / "study")])
    assert e.value.code == 2
    assert "--curve 0.0 0.5 2.0: fractions of a stage's iterations lie in 0..1" in capsys.readouterr().err
    assert not (tmp_path / "study").exists()


def test_only_classes_leaves_the_argmax_to_the_images_own_classes():
    """The recognition oracle's logits: classes outside the image's (and never the background) drop to probability
    0; the kept ones keep their softmax ratios, so each pixel goes to its best present class."""
    import torch

    from tool.seg.deeplab_infer import only_classes

    logits = torch.tensor([[[0.0, 2.0, 0.0]],     # background
                           [[1.0, 0.0, 0.0]],     # class 1: present
                           [[5.0, 0.0, 3.0]],     # class 2: absent, the argmax of pixels 0 and 2
                           [[2.0, 1.0, 0.5]]])    # class 3: present          [K=4, H=1, W=3]
    kept = only_classes(logits, [3, 1])
    assert kept.argmax(0).tolist() == [[3, 0, 3]]
    probs = kept.softmax(0)
    assert probs[2].abs().max() == 0
    e = np.exp([0.0, 1.0, 2.0])                   # pixel 0 over background, class 1, class 3
    np.testing.assert_allclose(probs[[0, 1, 3], 0, 0].numpy(), e / e.sum(), rtol=1e-6)
    alone = only_classes(logits, [])                 # no class given: background everywhere, its logits unchanged
    assert torch.equal(alone[0], logits[0]) and alone.argmax(0).tolist() == [[0, 0, 0]]
