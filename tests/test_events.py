"""tool.engine.events through tool.engine.train_loop.fit: one record per logged iteration with hand-worked values, one
continuous curve after a kill (torn last line included), the optional writers."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

import tool.engine.train_loop
from tests.helpers import TrainingCrash, crash_training_at
from tool.engine.config import TrainRecipe
from tool.engine.events import EventWriter, read_events
from tool.engine.lr import sgd
from tool.engine.paths import WorkPaths
from tool.engine.runtime import Context
from tool.engine.train_loop import fit

N, BATCH, SEED = 8, 2, 5


class Numbers(Dataset):
    def __len__(self):
        return N

    def __getitem__(self, i):
        return {"x": torch.tensor(float(i))}


def _train(tmp, max_steps=8, log_every=1, **kw):
    model = torch.nn.Linear(1, 1)
    optimizer = sgd([{"params": [model.weight], "lr": 0.1}, {"params": [model.bias], "lr": 1.0}], momentum=0.0,
                    weight_decay=0.0)

    def loss_fn(batch):
        x = batch["x"]
        # the loss value is the batch's mean index: known from the sampler's permutation alone
        return {"loss": x.mean() + 0 * model.weight.sum(), "half": x.mean() / 2}

    events = EventWriter(tmp / "events" / "toy.jsonl", "toy")
    ctx = Context(paths=WorkPaths(tmp), device=torch.device("cpu"), rank=0, world_size=1, seed=SEED, step="toy",
                  digest="d")
    recipe = TrainRecipe(batch_size=BATCH, epochs=2, max_steps=max_steps, checkpoint_every=3, log_every=log_every)
    return fit(ctx, recipe, model=model, dataset=Numbers(), optimizer=optimizer, loss_fn=loss_fn,
               final_path=tmp / "model.pth", num_workers=0, events=events, **kw)


def _batch_means():
    """Mean index of each batch, iteration 1..8: ResumableSampler's per-epoch permutation from (seed, epoch)."""
    out = []
    for epoch in range(2):
        order = np.random.default_rng((SEED, epoch)).permutation(N)
        out += [float(order[i:i + BATCH].mean()) for i in range(0, N, BATCH)]
    return out


def test_one_record_per_logged_iteration_by_hand(tmp_path):
    _train(tmp_path)
    scalars, marks = read_events(tmp_path / "events" / "toy.jsonl")
    means = _batch_means()
    assert [r["iter"] for r in scalars] == list(range(1, 9))
    assert [r["epoch"] for r in scalars] == [0] * 4 + [1] * 4
    for r, m in zip(scalars, means):
        assert r["terms"] == pytest.approx({"loss": m, "half": m / 2})
    # iteration i trains with poly lr of step i - 1: base · (1 - (i - 1) / 8) ** 0.9, per group
    assert scalars[4]["lr"] == pytest.approx([0.1 * 0.5 ** 0.9, 1.0 * 0.5 ** 0.9])
    assert all(r["images_per_s"] > 0 and 0 <= r["data_share"] <= 1 for r in scalars)
    assert [(m["event"], m["iter"]) for m in marks] == [("checkpoint", 3), ("checkpoint", 6)]


def test_log_every_records_the_window_mean(tmp_path):
    _train(tmp_path, log_every=3)
    scalars, _ = read_events(tmp_path / "events" / "toy.jsonl")
    means = _batch_means()
    # records at 3, 6 and the last step 8: each the mean over its window, not over the epoch
    assert [r["iter"] for r in scalars] == [3, 6, 8]
    assert [r["terms"]["loss"] for r in scalars] == pytest.approx(
        [np.mean(means[0:3]), np.mean(means[3:6]), np.mean(means[6:8])])


def test_killed_and_resumed_run_has_one_continuous_curve(tmp_path, monkeypatch):
    ref = tmp_path / "ref"
    _train(ref)
    want, _ = read_events(ref / "events" / "toy.jsonl")

    work = tmp_path / "work"
    crash_training_at(monkeypatch, 5)
    with pytest.raises(TrainingCrash):
        _train(work)
    path = work / "events" / "toy.jsonl"
    assert [r["iter"] for r in read_events(path)[0]] == [1, 2, 3, 4, 5]    # 4 and 5 are past the checkpoint
    with open(path, "ab") as f:
        f.write(b'{"iter": 6, "terms": {"lo')                         # killed in the middle of a write
    monkeypatch.setattr(tool.engine.train_loop, "_after_step", lambda step: None)
    _train(work)
    scalars, marks = read_events(path)
    assert [r["iter"] for r in scalars] == list(range(1, 9))          # no gap, no duplicate
    assert [r["terms"] for r in scalars] == [r["terms"] for r in want]       # (means of integers: exact)
    assert [r["terms"]["loss"] for r in scalars] == _batch_means()
    assert [(m["event"], m["iter"]) for m in marks] == [("checkpoint", 3), ("resume", 3), ("checkpoint", 6)]
    assert all(json.loads(line) for line in path.read_text().splitlines())   # the torn line is gone


def test_a_fresh_start_empties_the_old_curve(tmp_path):
    _train(tmp_path)
    WorkPaths(tmp_path).checkpoint("toy").unlink()       # as the runner does once the step's marker is written
    _train(tmp_path, max_steps=4)          # a rerun from scratch (changed config, --force)
    scalars, _ = read_events(tmp_path / "events" / "toy.jsonl")
    assert [r["iter"] for r in scalars] == [1, 2, 3, 4]


def test_tensorboard_files_parse(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    w = EventWriter(tmp_path / "e.jsonl", "toy", tensorboard_dir=tmp_path / "tb")
    w.start(0, resumed=False)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    for i, v in enumerate([3.0, 1.0], start=1):
        w.batch_ready()
        w.step_done({"loss": v}, 4)
        w.record(i, 0, opt)
    w.close()
    acc = EventAccumulator(str(tmp_path / "tb")).Reload()
    assert [(e.step, e.value) for e in acc.Scalars("toy/loss")] == [(1, 3.0), (2, 1.0)]
    assert [e.value for e in acc.Scalars("toy/lr/0")] == [0.5, 0.5]


def test_missing_optional_writer_is_named(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_wandb(name, *a, **k):
        if name == "wandb":
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    w = EventWriter(tmp_path / "e.jsonl", "toy", wandb={"project": "p"})
    with pytest.raises(RuntimeError, match=r"tracking.wandb: .* needs the wandb package"):
        w.start(0, resumed=False)


def wandb_records(path) -> list:
    """The records of a W&B run file (``run-<id>.wandb``): leveldb-log framing (32 KiB blocks, 7-byte chunk headers:
    crc32, length, type 1 full / 2 first / 3 middle / 4 last) after a 7-byte ``:W&B`` header, each record a
    ``wandb_internal_pb2.Record``. Read here by hand: wandb has no public reader of its offline files."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, part, out = 7, b"", []
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        _crc, n, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if kind == 0:                      # the zero padding at a block's end
            pos += left
            continue
        part += data[pos + 7:pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(part)
            out.append(rec)
            part = b""
    return out


@pytest.mark.slow
def test_wandb_offline_run_holds_the_events(tmp_path):
    """tracking.wandb on a smoke train_cam with WANDB_MODE=offline: the offline run's history rows are the records
    of events/train_cam.jsonl, iteration by iteration, value by value."""
    import glob
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("wandb")
    from tests.test_pipeline import smoke_args

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1",
           **{f"WANDB_{k}_DIR": str(tmp_path / "wandb-home" / k.lower()) for k in ("CONFIG", "CACHE", "DATA")}}
    out = subprocess.run([sys.executable, "-m", "step", "train_cam",
                          *smoke_args(tmp_path, "--set", "tracking.wandb={project: qa-clims-test}")],
                         cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    work = tmp_path / "work"
    runs = glob.glob(str(work / "wandb" / "offline-run-*" / "run-work-train_cam.wandb"))
    assert len(runs) == 1, sorted(p.name for p in (work / "wandb").iterdir())
    rows = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            for r in wandb_records(Path(runs[0])) if r.WhichOneof("record_type") == "history"]
    scalars, _ = read_events(work / "events" / "train_cam.jsonl")
    assert [r["iter"] for r in scalars] == [1, 2, 3]              # smoke: 3 steps, log_every 1
    expected = []
    for r in scalars:
        flat = {f"train_cam/{k}": v for k, v in r["terms"].items()}
        flat.update({f"train_cam/lr/{i}": v for i, v in enumerate(r["lr"])})
        flat.update({f"train_cam/{k}": r[k] for k in ("images_per_s", "data_share")})
        expected.append({"_step": r["iter"], **flat})
    assert [{k: v for k, v in row.items() if k not in ("_runtime", "_timestamp")} for row in rows] == expected
