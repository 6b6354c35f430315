"""``bench/gpu.py --device cpu --tiny`` runs in the suite (so the GPU script cannot rot), and its VOC projection
is the measured rate times the VOC counts."""
from __future__ import annotations

import json

import pytest

from bench import gpu


def test_cpu_tiny_run_writes_json_and_table(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert gpu.main(["--device", "cpu", "--tiny", "--iters", "1", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(gpu.HOT_SPOTS) <= set(res)
    assert res["qape"]["bf16"] is None and res["qape"]["fp32"]["images_per_s"] > 0      # bf16: CUDA only
    assert res["ritc"]["fp32"]["step_s"] > 0 and res["ritc"]["fp32_ckpt"]["step_s"] > 0
    stages = {r["stage"]: r for r in res["projection"]}
    assert set(stages) == {"qape", "train_cam", "train_ritc", "make_cam", "train_irn", "make_sem_seg", "train_deeplab",
                           "to_pseudo_masks"}
    # 15 epochs · ⌊10582 / 8⌋ = 19,830 steps of the best RITC variant
    best = min(res["ritc"][v]["step_s"] for v in ("fp32", "fp32_ckpt"))
    assert stages["train_ritc"]["minutes"] == pytest.approx(19830 * best / 60)
    chain = sum(stages[s]["minutes"] for s in ("qape", "train_cam", "train_ritc", "make_cam", "train_irn",
                                               "make_sem_seg"))
    assert stages["to_pseudo_masks"]["minutes"] == pytest.approx(chain)
    printed = capsys.readouterr().out
    assert "VOC stage (projected)" in printed and "train_ritc" in printed and "(CUDA only)" in printed


def test_projection_from_hand_rates():
    res = {"qape": {"fp32": {"images_per_s": 10.0}, "bf16": {"images_per_s": 40.0}},
           "make_cam": {"images_per_s": 100.0}, "random_walk": {"ms_per_image": 6.0},
           "train_deeplab": {"fp32": {"step_s": 0.1}, "bf16": None}}
    rows = {r["stage"]: r["minutes"] for r in gpu.project(res)}
    assert rows["qape"] == pytest.approx(10582 / 40 / 60)               # the faster (bf16) variant
    assert rows["make_cam"] == pytest.approx((10582 + 1464) / 100 / 60)
    assert rows["make_sem_seg"] == pytest.approx(10582 * 0.006 / 60)
    assert rows["train_deeplab"] == pytest.approx(30000 * 0.1 / 60)
    assert rows["to_pseudo_masks"] is None                              # RITC, CAM, IRN not measured


def test_coco_projection_from_hand_rates(capsys):
    """COCO's per-image steps on 8 GPUs, worked out by hand from the same rates: QAPE 82,081 images × 3.5 / 1.5
    classes / 40 images/s (bf16, the faster), make_cam twice 82,081 images × 640·480 / 500·375 pixels / 100 images/s,
    the walk 82,081 × the pixels × 4.5 / 3 rows × 6 ms; each over 8 GPUs."""
    res = {"qape": {"fp32": {"images_per_s": 10.0}, "bf16": {"images_per_s": 40.0}},
           "make_cam": {"images_per_s": 100.0}, "random_walk": {"ms_per_image": 6.0}}
    rows = {r["stage"]: r for r in gpu.project_coco(res, gpus=8)}
    assert rows["qape"]["minutes"] == pytest.approx(9.97512, rel=1e-5)
    assert rows["make_cam"]["minutes"] == pytest.approx(5.60340, rel=1e-5) and rows["make_cam"]["images"] == 164162
    assert rows["make_sem_seg"]["minutes"] == pytest.approx(2.52153, rel=1e-5)
    assert rows["per-image total"]["minutes"] == pytest.approx(9.97512 + 5.60340 + 2.52153, rel=1e-5)
    assert rows["qape"]["gpu_hours"] == pytest.approx(9.97512 * 8 / 60, rel=1e-5)
    assert [r["stage"] for r in gpu.project_coco({"make_cam": {"images_per_s": 100.0}}, gpus=8)] == ["make_cam"]
    # --targets: rates that meet the VOC targets exactly (QAPE 5 min for 10,582 images ...), nothing measured
    assert gpu.main(["--targets", "--gpus", "8"]) == 0
    out = capsys.readouterr().out
    assert "not measured" in out and "min on 8 GPU(s)" in out
    target = {r["stage"]: r["minutes"] for r in gpu.project(gpu.target_rates())}
    assert target["qape"] == pytest.approx(5) and target["make_cam"] == pytest.approx(3)
    assert target["make_sem_seg"] == pytest.approx(3)
