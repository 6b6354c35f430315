"""``bench/gpu.py --device cpu --tiny`` runs in the suite (so the GPU script cannot rot): every hot spot in float32
and bfloat16 with real ratios and equivalences; its VOC projection is the measured rate times the VOC counts; and
``bench/bench_precision.py`` (``make bench``) prints the same table at CPU sizes."""
from __future__ import annotations

import json
import math

import pytest
import torch

from bench import bench_precision, gpu
from tool.engine.runtime import cpu_has_native_bf16

TERM_TOL = 2 * math.sqrt(64) * 2.0 ** -8    # bf16's rounding over a net's depth, as tests/test_precision.py


def test_cpu_tiny_run_writes_json_and_table(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert gpu.main(["--device", "cpu", "--tiny", "--iters", "1", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    rows = {(r["hot_spot"], r["variant"]): r for r in res["rows"]}
    assert {s for s, _ in rows} == set(gpu.HOT_SPOTS) and ("train_ritc", "grad_ckpt") in rows
    assert res["native_bf16"] == cpu_has_native_bf16()
    for key, r in rows.items():
        assert r["fp32"]["s"] > 0 and r["bf16"]["s"] > 0 and r["fp32"]["peak_gb"] is None
        assert r["ratio"] == pytest.approx(r["fp32"]["s"] / r["bf16"]["s"])
        # bf16 really ran (the output moved) and stayed within its rounding of float32's
        assert 0 < r["rel_diff"] <= TERM_TOL, key
    assert 0 <= rows[("qape", "")]["same_answers"] <= 1 and rows[("qape", "")]["questions"] == 48
    stages = {r["stage"]: r for r in res["projection"]}
    assert set(stages) == {*gpu.HOT_SPOTS, "to_pseudo_masks"}
    # 15 epochs · ⌊10582 / 8⌋ = 19,830 steps of the fastest RITC row and precision
    best = min(rows[("train_ritc", v)][p]["s"] for v in ("", "grad_ckpt") for p in ("fp32", "bf16"))
    assert stages["train_ritc"]["minutes"] == pytest.approx(19830 * best / 60)
    qape = rows[("qape", "")]       # 2 images a call
    assert stages["qape"]["minutes"] == pytest.approx(10582 * min(qape["fp32"]["s"], qape["bf16"]["s"]) / 2 / 60)
    chain = sum(stages[s]["minutes"] for s in gpu.CHAIN)
    assert stages["to_pseudo_masks"]["minutes"] == pytest.approx(chain)
    printed = capsys.readouterr().out
    assert "VOC stage (projected)" in printed and "fp32/bf16" in printed and "rel diff" in printed
    assert "n/a" not in printed.split("VOC stage")[0]      # every hot spot measured in both precisions


def test_fp32_against_itself_is_equivalent(tmp_path):
    """Both precisions of a hot spot see the same inputs and weights: two float32 runs give identical outputs."""
    from bench.real_scale import write_real_models

    models = write_real_models(tmp_path, tiny=True, resnets=False)
    rows = 0
    for name in gpu.HOT_SPOTS:
        for spot in gpu.SETUPS[name](models, gpu.TINY, torch.device("cpu")):
            eq = gpu.equivalence(*(gpu._detach(spot.make("float32")()) for _ in range(2)))
            assert eq["rel_diff"] == 0.0 and eq.get("same_answers", 1.0) == 1.0, (spot.name, spot.variant)
            rows += 1
    assert rows == len(gpu.HOT_SPOTS) + 1


def test_compare_by_hand(monkeypatch):
    """The ratio is fp32's seconds over bf16's; the equivalence max |bf16 − fp32| / max |fp32| of the warm-up
    output; answers compared one by one."""
    clock = [0.0]
    monkeypatch.setattr(gpu.time, "perf_counter", lambda: clock[0])
    calls = []

    def make(precision):
        def run():
            calls.append(precision)
            clock[0] += 3.0 if precision == "float32" else 1.5       # seconds a call
            first = len(calls) in (1, 4)                               # the warm-up calls
            if precision == "float32":
                return torch.tensor([1.0, -4.0]), ["a", "b"]
            return torch.tensor([1.0, -2.0] if first else [9.0, 9.0]), ["a", "c"]
        return run
    row = gpu.compare(gpu.Spot("x", "1 image", "y", make, images=1), torch.device("cpu"), iters=2)
    assert calls == ["float32"] * 3 + ["bfloat16"] * 3
    assert row["fp32"]["s"] == 3.0 and row["bf16"]["s"] == 1.5 and row["ratio"] == 2.0
    assert row["rel_diff"] == 0.5                 # |−2 − (−4)| / 4, of the warm-up outputs
    assert row["same_answers"] == 0.5


def test_projection_from_hand_rates():
    def row(spot, fp32, bf16, images=0, variant=""):
        return {"hot_spot": spot, "variant": variant, "images": images, "fp32": {"s": fp32}, "bf16": {"s": bf16}}
    rows = [row("qape", 1.6, 0.4, images=16), row("make_cam", 0.02, 0.01, images=1),
            row("make_sem_seg", 0.006, 0.009, images=1), row("train_deeplab", 0.1, 0.2),
            row("train_ritc", 2.0, 1.0), row("train_ritc", 1.5, 0.8, variant="grad_ckpt")]
    stages = {r["stage"]: r["minutes"] for r in gpu.project(rows)}
    assert stages["qape"] == pytest.approx(10582 * 0.4 / 16 / 60)             # the faster (bf16) precision
    assert stages["make_cam"] == pytest.approx((10582 + 1464) * 0.01 / 60)
    assert stages["make_sem_seg"] == pytest.approx(10582 * 0.006 / 60)        # here fp32 is faster
    assert stages["train_deeplab"] == pytest.approx(30000 * 0.1 / 60)
    assert stages["train_ritc"] == pytest.approx(15 * (10582 // 8) * 0.8 / 60)   # the fastest variant
    assert "eval_deeplab" not in stages and stages["to_pseudo_masks"] is None     # CAM, IRN not measured


def test_bench_precision_cpu_sizes(tmp_path, capsys):
    """``make bench``'s table at the CPU sizes, for two hot spots (the full run takes minutes)."""
    out = tmp_path / "p.json"
    assert bench_precision.main(["--only", "make_cam,eval_deeplab", "--iters", "1", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["native_bf16"] == cpu_has_native_bf16()
    assert [r["hot_spot"] for r in res["rows"]] == ["make_cam", "eval_deeplab"]
    assert res["rows"][0]["per"] == "1 image, 2 scales"
    for r in res["rows"]:
        assert 0 < r["rel_diff"] <= TERM_TOL and r["ratio"] == pytest.approx(r["fp32"]["s"] / r["bf16"]["s"])
    printed = capsys.readouterr().out
    assert f"native bf16 {'yes' if cpu_has_native_bf16() else 'no (emulated)'}" in printed
    assert "make_cam" in printed and "eval_deeplab" in printed


def test_coco_projection_from_hand_rates(capsys):
    """COCO's per-image steps on 8 GPUs, worked out by hand from the same rates: QAPE 82,081 images × 3.5 / 1.5
    classes / 40 images/s (bf16, the faster), make_cam twice 82,081 images × 640·480 / 500·375 pixels / 100 images/s,
    the walk 82,081 × the pixels × 4.5 / 3 rows × 6 ms; each over 8 GPUs."""
    res = [{**gpu.rate_row("qape", 0.1), "bf16": {"s": 1 / 40, "peak_gb": None}},
           gpu.rate_row("make_cam", 0.01), gpu.rate_row("make_sem_seg", 0.006)]
    rows = {r["stage"]: r for r in gpu.project_coco(res, gpus=8)}
    assert rows["qape"]["minutes"] == pytest.approx(9.97512, rel=1e-5)
    assert rows["make_cam"]["minutes"] == pytest.approx(5.60340, rel=1e-5) and rows["make_cam"]["images"] == 164162
    assert rows["make_sem_seg"]["minutes"] == pytest.approx(2.52153, rel=1e-5)
    assert rows["per-image total"]["minutes"] == pytest.approx(9.97512 + 5.60340 + 2.52153, rel=1e-5)
    assert rows["qape"]["gpu_hours"] == pytest.approx(9.97512 * 8 / 60, rel=1e-5)
    assert [r["stage"] for r in gpu.project_coco([gpu.rate_row("make_cam", 0.01)], gpus=8)] == ["make_cam"]
    # --targets: rates that meet the VOC targets exactly (QAPE 5 min for 10,582 images ...), nothing measured
    assert gpu.main(["--targets", "--gpus", "8"]) == 0
    out = capsys.readouterr().out
    assert "not measured" in out and "min on 8 GPU(s)" in out
    target = {r["stage"]: r["minutes"] for r in gpu.project(gpu.target_rates())}
    assert target["qape"] == pytest.approx(5) and target["make_cam"] == pytest.approx(3)
    assert target["make_sem_seg"] == pytest.approx(3)
