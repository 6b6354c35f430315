"""tool.compare on hand-made work directories: the differing keys, the mIoU table and its Markdown by hand,
the pictures it references, and a clear error for a folder that is no run. (Two real smoke runs: test_ablate.)"""
from __future__ import annotations

import json

import pytest
import yaml

from tool import compare
from tool.engine.io import write_json

CLASSES = ["background", "aeroplane", "bicycle"]


def _run(path, config: dict, ritc: float | None, base: float = 20.0, events: list[float] = ()):
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    write_json(path / "cam_baseline" / "eval_cam.json", {"miou": base, "iou": [50.0, base, None], "classes": CLASSES,
                                                         "best": {"miou": base + 1, "threshold": 0.2}})
    if ritc is not None:
        write_json(path / "eval_cam.json", {"miou": ritc, "iou": [60.0, ritc, 10.0], "classes": CLASSES,
                                            "best": {"miou": ritc + 0.5, "threshold": 0.25}})
    if events:
        (path / "events").mkdir()
        (path / "events" / "train_ritc.jsonl").write_text("".join(
            json.dumps({"iter": i + 1, "epoch": 0, "terms": {"loss": v}, "lr": [0.1]}) + "\n"
            for i, v in enumerate(events)))


def test_two_runs_by_hand(tmp_path):
    base = {"work_dir": "a", "seed": 0, "ritc": {"frc": True, "omega": 0.1, "resize_long": [320, 640]}}
    _run(tmp_path / "a", base, 33.25, events=[3.0, 2.0])
    _run(tmp_path / "b", {**base, "work_dir": "b", "ritc": {**base["ritc"], "frc": False}}, 30.0, events=[4.0, 3.5])
    out = compare.compare([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    assert out["differing_keys"] == ["ritc.frc"]               # work_dir differs too, but names the run
    assert out["header"] == ["run", "ritc.frc", "baseline CAM", "baseline CAM (best thr.)", "RITC CAM",
                             "RITC CAM (best thr.)"]
    assert out["rows"] == [["a", "true", "20.0", "21.0 @ 0.20", "33.2", "33.8 @ 0.25"],
                           ["b", "false", "20.0", "21.0 @ 0.20", "30.0", "30.5 @ 0.25"]]
    md = (tmp_path / "out" / "compare.md").read_text().splitlines()
    assert md[0] == "| run | ritc.frc | baseline CAM | baseline CAM (best thr.) | RITC CAM | RITC CAM (best thr.) |"
    assert md[2] == "| a | true | 20.0 | 21.0 @ 0.20 | 33.2 | 33.8 @ 0.25 |"
    page = (tmp_path / "out" / "compare.html").read_text()
    for pic in ("iou_cam_baseline.png", "iou_cam_ritc.png", "curves_train_ritc.png"):
        assert f"compare/{pic}" in page and (tmp_path / "out" / "compare" / pic).is_file()
    assert "curves_train_cam.png" not in page                  # no run has train_cam events


def test_absent_keys_and_stages(tmp_path):
    _run(tmp_path / "a", {"work_dir": "a", "ritc": {"frc": True}}, None)
    _run(tmp_path / "b", {"work_dir": "b", "ritc": {"frc": True, "fat": False}}, 31.0)
    out = compare.compare([tmp_path / "a", tmp_path / "b"], tmp_path / "out", names=["x", "y"])
    assert out["differing_keys"] == ["ritc.fat"]
    assert out["rows"][0][:2] == ["x", "(absent)"] and out["rows"][0][-2:] == ["–", "–"]
    assert out["rows"][1][-2:] == ["31.0", "31.5 @ 0.25"]


def test_not_a_run_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(compare.CompareError, match=r"empty: no config.yaml"):
        compare.compare([tmp_path / "empty"], tmp_path / "out")
    _run(tmp_path / "a", {"work_dir": "a"}, 30.0)
    with pytest.raises(compare.CompareError, match="--names"):
        compare.compare([tmp_path / "a"], tmp_path / "out", names=["x", "y"])
