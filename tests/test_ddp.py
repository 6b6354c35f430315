"""A 2-process gloo DDP run of the smoke pipeline under torchrun, on CPU."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tool.io import read_json

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_ranks(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "run_sample.py", "--config", "configs/smoke.yaml",
           "--set", f"work_dir={tmp_path / 'work'}", "--set", f"dataset.root={tmp_path / 'toy' / 'VOC2012'}",
           "--set", "cam.batch_size=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    work = tmp_path / "work"
    assert "rank 0/2" in (work / "log.txt").read_text()
    # 12 train_aug images / (batch 2 × 2 ranks) = 3 steps, capped at max_steps 3
    assert read_json(work / "steps" / "train_cam.done.json")["metrics"]["steps"] == 3
    ids = (tmp_path / "toy" / "VOC2012" / "ImageSets" / "Segmentation" / "train_aug.txt").read_text().split()
    assert sorted(p.stem for p in (work / "cam_baseline" / "cam").glob("*.npz")) == sorted(ids)  # both shards
    ev = read_json(work / "cam_baseline" / "eval_cam.json")
    assert ev["num_images"] == 8 and 0 <= ev["miou"] <= 100
