"""bf16 autocast and channels_last on the CPU: every step with a precision key runs in bfloat16 on the smoke world.

Each step runs twice on the same inputs: in float32 (the reference run) and in bfloat16, on a copy of the
reference run's work dir, steps taken in reverse pipeline order so that every step reads the float32 run's
inputs. What a bf16 slip would break is asserted against float32:

- the loss terms of the first iteration of every training step (``events/<step>.jsonl``) within bf16's rounding:
  a product of bf16-rounded operands carries a relative error up to u = 2^-8 (8-bit mantissa), and a term
  summarises ~D such roundings along the net's depth; errors of independent roundings grow like sqrt(D), so a
  term may differ by 2 · sqrt(D) · u · max(|term|, 1) (D = 64: 16 u; the floor 1 for terms near 0, whose
  absolute error is set by the logits they come from, not by their own size). A float32 loss differs by ~1e-6.
- losses are float32 (the training loop refuses others), checkpoints and model files hold float32 weights;
- a bf16 run killed mid-training resumes bit-exactly; DeepLab also with channels_last.
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import run_sample
import tool.engine.train_loop
from tests.helpers import TrainingCrash, crash_training_at
from tests.test_pipeline import smoke_args
from tool.data.palette import load_label_png
from tool.engine.events import read_events
from tool.engine.io import read_json
from tool.engine.lr import sgd

pytestmark = pytest.mark.slow   # end-to-end runs (pyproject.toml: make test-fast leaves them out)

U = 2.0 ** -8                  # bf16 unit roundoff (8 bits of mantissa)
DEPTH = 64                     # roundings a term summarises, at most (a ResNet-50 has 53 convs)
TERM_TOL = 2 * math.sqrt(DEPTH) * U

# step -> its precision key, in pipeline order
STEPS = {"qape": "qape.precision", "train_cam": "cam.precision", "train_ritc": "ritc.precision",
         "make_cam": "make_cam.precision", "train_irn": "irn.precision", "make_sem_seg": "irn.precision",
         "train_deeplab": "deeplab.precision", "eval_deeplab": "deeplab_eval.precision"}
TRAINING = ("train_cam", "train_ritc", "train_irn", "train_deeplab")


@pytest.fixture(scope="module")
def runs(module_tmp):
    tmp = module_tmp
    run_sample.main(smoke_args(tmp, "--until", "eval_deeplab"))
    ref, bf16 = tmp / "work", tmp / "bf16"
    shutil.copytree(ref, bf16)
    for step in reversed(STEPS):       # each step reads the float32 run's outputs of the steps before it
        run_sample.main(smoke_args(tmp, "--steps", step, "--set", f"work_dir={bf16}", "--set",
                                   f"{STEPS[step]}=bfloat16", "--set", "deeplab.channels_last=true"))
    return tmp, ref, bf16


def first_terms(work: Path, step: str) -> dict[str, float]:
    scalars, _ = read_events(work / "events" / f"{step}.jsonl")
    assert scalars and scalars[0]["iter"] == 1
    return scalars[0]["terms"]


@pytest.mark.parametrize("step", TRAINING)
def test_first_iteration_terms_within_bf16_rounding(runs, step):
    _, ref, bf16 = runs
    f32, b16 = first_terms(ref, step), first_terms(bf16, step)
    assert f32.keys() == b16.keys()
    moved = 0
    for k in f32:
        diff = abs(b16[k] - f32[k])
        assert diff <= TERM_TOL * max(abs(f32[k]), 1.0), (step, k, f32[k], b16[k])
        moved += diff > 0
    # the smoke run is deterministic: float32 twice gives the same bits, so a difference means bf16 ran
    assert moved, f"{step}: every term equals float32's to the bit: did it run in bfloat16?"
    done = read_json(bf16 / "steps" / f"{step}.done.json")
    assert done["metrics"]["steps"] == read_json(ref / "steps" / f"{step}.done.json")["metrics"]["steps"]


def float_dtypes(state: dict) -> set:
    out = set()
    for v in state.values():
        if isinstance(v, dict):
            out |= float_dtypes(v)
        elif torch.is_tensor(v) and v.is_floating_point():
            out.add(v.dtype)
    return out


@pytest.mark.parametrize("path", ["cam_baseline/model.pth", "ritc/model.pth", "irn/model.pth", "deeplab/model.pth"])
def test_model_files_of_bf16_runs_hold_float32(runs, path):
    _, _, bf16 = runs
    state = torch.load(bf16 / path, map_location="cpu", weights_only=True)
    assert float_dtypes(state) == {torch.float32}


def test_bf16_cams_and_masks_follow_float32(runs):
    """make_cam, make_sem_seg and eval_deeplab in bf16 give the float32 maps up to bf16's rounding."""
    _, ref, bf16 = runs
    diffs = []
    for f in sorted((ref / "cam").glob("*.npz")):
        a, b = np.load(f), np.load(bf16 / "cam" / f.name)
        assert (a["keys"] == b["keys"]).all()
        diffs.append(np.abs(a["high_res"].astype(np.float32) - b["high_res"].astype(np.float32)).max())
    # max-normalised maps in [0, 1]: a ResNet-50's depth of bf16 roundings, then float16 storage (2^-11)
    assert 2 ** -11 < max(diffs) <= TERM_TOL, max(diffs)
    for tag in ("sem_seg", "deeplab_pred"):
        pairs = [(load_label_png(p), load_label_png(bf16 / tag / p.name)) for p in sorted((ref / tag).glob("*.png"))]
        assert pairs, tag
        same = sum(int((a == b).sum()) for a, b in pairs) / sum(a.size for a, _ in pairs)
        assert same > 0.9, (tag, same)    # labels flip only where two classes tie to within the rounding


def test_qape_in_bf16_asks_every_pair(runs):
    _, ref, bf16 = runs
    f32 = read_json(ref / "steps" / "qape.done.json")["metrics"]
    b16 = read_json(bf16 / "steps" / "qape.done.json")["metrics"]
    assert b16["pairs_answered"] == f32["pairs_answered"] > 0 and b16["questions"] == f32["questions"]


def test_loss_in_bf16_is_refused(tmp_path):
    """The training loop stops on a loss term that is not float32, naming the term and the fix."""
    from tool.engine.config import TrainRecipe

    model = torch.nn.Linear(3, 2)
    opt = sgd([{"params": list(model.parameters()), "lr": 0.1}], momentum=0.9, weight_decay=0.0)
    data = [{"x": torch.randn(3)} for _ in range(4)]

    def loss_fn(batch):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = model(batch["x"])
        return {"loss": y.float().square().mean(), "raw": y.square().mean()}

    from tool.engine.paths import WorkPaths
    from tool.engine.runtime import Context
    ctx = Context(paths=WorkPaths(tmp_path), device=torch.device("cpu"), rank=0, world_size=1, seed=0, step="toy")
    with pytest.raises(TypeError, match=r"toy: loss term\(s\) \['raw'\] are torch.bfloat16, not float32"):
        tool.engine.train_loop.fit(ctx, TrainRecipe(batch_size=2, epochs=1), model=model, dataset=data,
                                   optimizer=opt, loss_fn=loss_fn, final_path=tmp_path / "m.pth", num_workers=0)


def test_bf16_deeplab_killed_resumes_bit_exactly(tmp_path, monkeypatch):
    """train_deeplab in bf16 with channels_last, killed after iteration 3 of 4, resumes from its float32
    checkpoint of iteration 2 and ends with the uninterrupted run's weights, bit for bit."""
    bf = ("--set", "deeplab.precision=bfloat16", "--set", "deeplab.channels_last=true",
          "--set", "deeplab.train.max_steps=4")
    upstream = smoke_args(tmp_path, "--set", "make_cam.source=baseline", "--until", "make_sem_seg",
                          "--set", "steps.train_ritc=false", "--set", "steps.qape=false",
                          "--set", "steps.text_feats=false", "--set", "steps.eval_cam=false")
    run_sample.main(upstream)
    work = tmp_path / "work"
    ref = tmp_path / "ref"
    shutil.copytree(work, ref)
    run_sample.main(smoke_args(tmp_path, "--steps", "train_deeplab", "--set", f"work_dir={ref}", *bf))

    crash_training_at(monkeypatch, 3)
    with pytest.raises(TrainingCrash):
        run_sample.main(smoke_args(tmp_path, "--steps", "train_deeplab", *bf))
    ckpt = torch.load(work / "checkpoints" / "train_deeplab.pth", map_location="cpu", weights_only=False)
    assert ckpt["step"] == 2 and float_dtypes(ckpt["model"]) == {torch.float32}
    assert float_dtypes(ckpt["optimizer"]["state"]) == {torch.float32}
    monkeypatch.setattr(tool.engine.train_loop, "_after_step", lambda step: None)
    run_sample.main(smoke_args(tmp_path, "--steps", "train_deeplab", *bf))
    a = torch.load(ref / "deeplab" / "model.pth", weights_only=True)
    b = torch.load(work / "deeplab" / "model.pth", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "resumed from" in (work / "log.txt").read_text()
