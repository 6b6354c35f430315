"""Distributed runs on CPU with gloo: the whole smoke pipeline under torchrun, and RITC DDP weights."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import pytest
import torch.multiprocessing as mp

from tool.engine.io import read_json

pytestmark = pytest.mark.slow   # end-to-end runs (pyproject.toml: make test-fast leaves them out)

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_ranks(tmp_path):
    models = tmp_path / "models"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "run_sample.py", "--config", "configs/smoke.yaml",
           "--set", f"work_dir={tmp_path / 'work'}", "--set", f"dataset.root={tmp_path / 'toy' / 'VOC2012'}",
           "--set", f"toy.random_models_dir={models}", "--set", f"qape.vqa_model={models / 'blip'}",
           "--set", f"clip.model={models / 'clip'}", "--set", "cam.train.batch_size=2",
           "--set", "ritc.train.batch_size=2",
           "--set", "irn.train.batch_size=2", "--set", "deeplab.train.batch_size=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    work = tmp_path / "work"
    assert "rank 0/2" in (work / "log.txt").read_text()
    # 12 train_aug images / (batch 2 × 2 ranks) = 3 steps, capped at max_steps 3
    assert read_json(work / "steps" / "train_cam.done.json")["metrics"]["steps"] == 3
    seg = tmp_path / "toy" / "VOC2012" / "ImageSets" / "Segmentation"
    ids = sorted(seg.joinpath("train_aug.txt").read_text().split())
    # per-image steps: both ranks' shards are there, merged where the step merges
    assert sorted(p.stem for p in (work / "cam").glob("*.npz")) == ids
    assert sorted(p.stem for p in (work / "sem_seg").glob("*.png")) == ids
    corpus = (work / "qape" / "corpus.jsonl").read_text().splitlines()
    assert len(corpus) == read_json(work / "steps" / "text_feats.done.json")["metrics"]["pairs"]
    assert not list((work / "qape").glob("corpus.rank*.jsonl"))
    assert read_json(work / "eval_cam.json")["num_images"] == 8
    assert 0 <= read_json(work / "eval_sem_seg.json")["miou"] <= 100


def _ritc_rank(rank: int, world: int, port: int, clip_dir: str, out: str, precision: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    from net.clip import load_clip
    from net.resnet50_cam import CAMNet
    from step.train_ritc import RitcLoss
    from tests.test_ritc_training import make_bank, make_batch
    from tool.engine.config import Config, build

    clip = load_clip(clip_dir, None)
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(CAMNet(20, bn="batch").train())
    start = torch.cat([p.detach().flatten() for p in model.module.parameters()])
    bank, labels = make_bank(clip)
    loss_fn = RitcLoss(model, clip, lambda im, m: clip.model.encode_image(im), False, bank,
                       build(Config, {"ritc": {"precision": precision}}, "test"), torch.device("cpu"))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(2):
        # each rank sees a different batch: only gradient averaging keeps the weights equal
        terms = loss_fn(make_batch(labels, size=64, seed=10 * rank + step))
        assert {v.dtype for v in terms.values()} == {torch.float32}
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
    flat = torch.cat([p.detach().flatten() for p in model.module.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    if rank == 0:
        torch.save({"max_diff": (gathered[0] - gathered[1]).abs().max().item(),
                    "moved": (flat - start).abs().max().item(), "flat": flat}, out)
    dist.destroy_process_group()


def test_ritc_ddp_ranks_hold_identical_weights(tmp_path):
    """Two gloo ranks, each on its own batches, end with identical weights (gradients averaged), in float32 and
    in bf16 autocast (float32 losses and gradients); the bf16 weights follow the float32 ones within bf16's
    rounding of the two steps' updates."""
    from tool.toy.tiny_models import write_tiny_clip
    clip_dir = write_tiny_clip(tmp_path / "clip", seed=0, image_size=64)
    res = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / f"{precision}.pth"
        mp.spawn(_ritc_rank, args=(2, free_port(), str(clip_dir), str(out), precision), nprocs=2, join=True)
        res[precision] = torch.load(out, weights_only=True)
        assert res[precision]["moved"] > 0 and res[precision]["max_diff"] == 0.0, precision
    f32, b16 = res["float32"]["flat"], res["bfloat16"]["flat"]
    step = res["float32"]["moved"]
    assert 0 < (b16 - f32).abs().max() <= 16 * 2 ** -8 * step
