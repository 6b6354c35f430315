"""Behaviour a one-line slip would break without any other test noticing: each test names the slip it catches."""
from __future__ import annotations

import dataclasses
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

SMOKE = str(Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml")


def test_a_complete_json_line_without_its_newline_is_cut_off_and_the_next_append_survives(tmp_path):
    """Slip caught: ``read_jsonl_repairing`` keeping a last line that parses but lacks its newline (a kill
    between the record and its newline): the next append is glued to it and both lines are lost."""
    from tool.engine.io import append_jsonl, read_jsonl_repairing

    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": "a"}\n{"step": "b"}')
    assert read_jsonl_repairing(path) == [{"step": "a"}]
    assert path.read_bytes() == b'{"step": "a"}\n'
    path.write_bytes(b'{"step": "a"}\n{"step": "b"}')
    append_jsonl(path, {"step": "c"})
    assert [json.loads(x) for x in path.read_text().splitlines()] == [{"step": "a"}, {"step": "c"}]


def test_a_skipped_image_fixed_since_is_tried_again(tmp_path):
    """Slip caught: the skip list no longer comparing the recorded size and mtime with the file's: a fixed (or
    replaced) image would stay skipped for ever. Either changing counts."""
    from tool.engine.skipped import skip_list

    img = tmp_path / "a.jpg"
    img.write_bytes(b"broken")

    class Ds:
        def image_path(self, i):
            return tmp_path / f"{i}.jpg"

    skips = skip_list(tmp_path, True, "qape")
    skips.record("a", img, "cannot decode")
    assert skips.filter(["a", "b"], Ds()) == ["b"]
    img.write_bytes(b"a fixed image")                      # another size
    assert skips.filter(["a", "b"], Ds()) == ["a", "b"]
    skips.record("a", img, "still broken")
    assert skips.filter(["a", "b"], Ds()) == ["b"]
    st = img.stat()
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))   # same size, rewritten
    assert skips.filter(["a", "b"], Ds()) == ["a", "b"]
    assert skip_list(tmp_path, False, "qape").filter(["a"], Ds()) == ["a"]     # skipping off: the list ignored


def test_ablate_copies_json_files_and_links_binaries(tmp_path):
    """Slip caught: ``tool.ablate`` hard-linking adopted ``.json`` / ``.jsonl`` files: a marker or metrics line
    rewritten in one variant would change in the owner too (and in every other variant)."""
    from tool.ablate import _carry

    src = tmp_path / "owner"
    src.mkdir()
    for name in ("texts.json", "corpus.jsonl", "model.pth"):
        (src / name).write_text(name)
    dst = tmp_path / "variant"
    for name in ("texts.json", "corpus.jsonl", "model.pth"):
        _carry(src / name, dst / name, link=True)
        assert (dst / name).read_text() == name
    assert not os.path.samefile(src / "texts.json", dst / "texts.json")
    assert not os.path.samefile(src / "corpus.jsonl", dst / "corpus.jsonl")
    assert os.path.samefile(src / "model.pth", dst / "model.pth")           # binaries: linked, no copy


def test_ablate_rechecks_the_owners_marker_against_its_current_config(tmp_path):
    """Slip caught: ``tool.ablate`` adopting an owner's step on the marker's digest alone: an owner whose config
    changed since (its outputs being remade under another config, or left stale) must not be adopted."""
    from tests.test_voc12 import make_voc
    from tool.ablate import _context, adopt_shared_steps
    from tool.engine.config import dump_yaml, load_config
    from tool.engine.io import write_json, write_text
    from tool.engine.runner import step_digest

    data = make_voc(tmp_path)
    sets = [f"dataset.root={data}", "dataset.train_split=train", "toy.generate=false"]
    owner, variant = tmp_path / "owner", tmp_path / "variant"
    ours = load_config(SMOKE, [f"work_dir={variant}", *sets])
    mine = load_config(SMOKE, [f"work_dir={owner}", *sets])
    write_json(owner / "cam_baseline" / "model.pth", {})
    write_json(owner / "steps" / "train_cam.done.json",
               {"step": "train_cam", "digest": step_digest("train_cam", mine, _context(owner)), "run_id": "r1"})
    write_text(owner / "config.yaml", dump_yaml(mine))
    assert adopt_shared_steps(ours, variant, [owner]) == ["train_cam"]           # still valid there: adopted

    (variant / "steps" / "train_cam.done.json").unlink()
    changed = load_config(SMOKE, [f"work_dir={owner}", *sets, "cam.train.lr=0.5"])
    write_text(owner / "config.yaml", dump_yaml(changed))                    # the owner's config moved on
    assert adopt_shared_steps(ours, variant, [owner]) == []
    assert not (variant / "steps" / "train_cam.done.json").exists()


def test_mxnet_params_with_trailing_bytes_are_refused(tmp_path):
    """Slip caught: the MXNet ``.params`` reader accepting bytes after the names (a concatenated or corrupt
    file read as if whole)."""
    from net.mxnet_params import load_params
    from tests.test_wr38 import write_params

    path = tmp_path / "w.params"
    write_params(path, {"arg:w": np.arange(4, dtype=np.float32).reshape(2, 2)})
    assert load_params(path)["arg:w"].tolist() == [[0, 1], [2, 3]]
    path.write_bytes(path.read_bytes() + struct.pack("<Q", 7))
    with pytest.raises(ValueError, match=f"{path}: 8 trailing bytes after the names"):
        load_params(path)


class _WallEdges(torch.nn.Module):
    """IRNet's boundary output, stubbed: stride 4 of the image it is given, a wall down the middle column."""

    def forward(self, x):
        h, w = -(-x.shape[2] // 4), -(-x.shape[3] // 4)
        edge = torch.zeros(1, h, w)
        edge[:, :, w // 2] = 1.0
        return edge, None


@pytest.mark.parametrize("scale", [1, 2])
def test_make_sem_seg_upsamples_by_4_over_the_infer_scale(scale):
    """Slip caught: ``make_sem_seg`` upsampling the walked CAMs by 4 whatever ``irn.infer_scale``: at scale 2 the
    boundary map is of the image ×2, so ×4 would stretch its top-left quarter over the whole mask. A class in
    the left half (a wall between the halves) must come out in the left half, at either scale."""
    from step.make_sem_seg import pseudo_mask
    from tool.engine.config import load_config

    c = dataclasses.replace(load_config(SMOKE, []).irn, infer_scale=scale, exp_times=2)
    cams = torch.zeros(1, 8, 12)                        # stride-4 CAM of a 32 × 48 image
    cams[0, :, :6] = 1.0                                # class 3 (key 2) on the left half
    mask, _ = pseudo_mask(_WallEdges(), torch.zeros(1, 3, 32, 48), np.array([2]), cams, c)
    assert mask.shape == (32, 48)
    assert (mask[:, :20] == 3).all() and (mask[:, 30:] == 0).all()


def test_cam_sweep_grid_keeps_its_last_threshold():
    """Slip caught: the sweep grid losing 0.60, its inclusive end (0.60 / 0.01 is 59.999... in floating point);
    before, only a slow end-to-end test saw it."""
    from step.eval_cam import sweep_thresholds
    from tool.engine.config import load_config

    grid = sweep_thresholds(load_config(SMOKE, ["eval.sweep_step=0.01"]))
    assert len(grid) == 61 and grid[0] == 0 and grid[-1] == np.float32(0.60)
    np.testing.assert_allclose(grid, np.arange(61) * 0.01, atol=1e-6)
    smoke = sweep_thresholds(load_config(SMOKE, []))                     # step 0.05, threshold 0.15 on the grid
    np.testing.assert_allclose(smoke, np.arange(13) * 0.05, atol=1e-6)
    off = sweep_thresholds(load_config(SMOKE, ["eval.cam_threshold=0.12"]))
    assert len(off) == 14 and np.float32(0.12) in off and off[-1] == np.float32(0.60)
