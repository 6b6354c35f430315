"""Distributed runs on CPU with gloo: the whole smoke pipeline under torchrun on one node (2 ranks) and on two
"nodes" (two torchrun agents on loopback, one killed mid-step, then both restarted), the work-dir lock seen from
another node, and RITC DDP weights."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.helpers import work_dir_held
from tool.engine.io import read_json

pytestmark = pytest.mark.slow   # end-to-end runs (pyproject.toml: make test-fast leaves them out)

ROOT = Path(__file__).resolve().parents[1]
# the smoke config at batch sizes that give both ranks a batch (12 train_aug images)
SMALL_BATCHES = ["--set", "cam.train.batch_size=2", "--set", "ritc.train.batch_size=2",
                 "--set", "irn.train.batch_size=2", "--set", "deeplab.train.batch_size=1"]
MODELS = ("cam_baseline/model.pth", "ritc/model.pth", "irn/model.pth", "deeplab/model.pth")
PER_IMAGE = ("make_cam", "cam_to_ir_label", "make_sem_seg")     # one output file per train_aug image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smoke_args(work: Path, world: Path) -> list[str]:
    """configs/smoke.yaml writing to ``work``, its toy world and random models under ``world``."""
    models = world / "models"
    return ["--config", "configs/smoke.yaml", "--set", f"work_dir={work}",
            "--set", f"dataset.root={world / 'toy' / 'VOC2012'}", "--set", f"toy.random_models_dir={models}",
            "--set", f"qape.vqa_model={models / 'blip'}", "--set", f"clip.model={models / 'clip'}", *SMALL_BATCHES]


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def two_ranks(module_tmp) -> Path:
    """The smoke pipeline under ``torchrun --nproc_per_node 2`` (one node): the reference of the two-node run."""
    tmp = module_tmp
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "run_sample.py", *smoke_args(tmp / "work", tmp)]
    out = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return tmp


def test_torchrun_two_ranks(two_ranks):
    tmp_path = two_ranks
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


# ---- two nodes on loopback ----------------------------------------------------------------------------------

def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (from /proc): torchrun starts its workers in sessions of their own."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def run_two_nodes(args: list[str], logs: Path, script: str = "run_sample.py", env: dict | None = None,
                  timeout: float = 600) -> list[tuple[int, str]]:
    """Two torchrun agents on this machine, ``--nnodes 2 --nproc-per-node 1`` with c10d rendezvous on a free
    loopback port; (exit status, output) of each. Whatever is left of them after ``timeout`` is killed."""
    port = free_port()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", f"test{port}",
           script, *args]
    logs.mkdir(parents=True, exist_ok=True)
    files = [open(logs / f"node{n}.{port}.log", "w") for n in range(2)]   # noqa: SIM115 - closed below
    agents = [subprocess.Popen(cmd, cwd=ROOT, env=env or ENV, stdout=f, stderr=subprocess.STDOUT,
                               start_new_session=True) for f in files]
    deadline = time.monotonic() + timeout
    try:
        codes = []
        for a in agents:
            try:
                codes.append(a.wait(timeout=max(1.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                codes.append(None)
    finally:
        for a in agents:
            for pid in [*_descendants(a.pid), a.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            a.wait()
        for f in files:
            f.close()
    outputs = [(logs / f"node{n}.{port}.log").read_text() for n in range(2)]
    assert None not in codes, f"a node did not end within {timeout} s:\n" + "\n".join(o[-2000:] for o in outputs)
    return list(zip(codes, outputs))


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_two_nodes_on_loopback(two_ranks, tmp_path):
    """torchrun --nnodes 2 on loopback: a second run is refused on both nodes while the lock is held; a node dies
    mid-train_cam, both restart and finish; every image is made once across the nodes, the trained weights are
    bit-identical to the one-node two-rank run, and the lock is seen held from the other node."""
    from tool.engine.lock import LOCK_NAME

    work, ref = tmp_path / "work", two_ranks / "work"
    args = smoke_args(work, two_ranks)            # the reference's toy world and random models (read only)
    ids = sorted((two_ranks / "toy" / "VOC2012" / "ImageSets" / "Segmentation" / "train_aug.txt").read_text().split())

    # 1. the work dir is held by another run: both nodes stop at once with its one-line error (none goes on alone)
    with work_dir_held(work, seconds=300) as holder:
        refused = run_two_nodes(args, tmp_path / "logs", timeout=300)
    for code, out in refused:
        assert code != 0 and f"is in use by another run (pid {holder.pid}" in out, out[-2000:]
    assert not (work / "steps").exists()

    # 2. the node of rank 1 dies (agent and worker, SIGKILL) right after train_cam's optimiser step 3
    crashed = run_two_nodes(args, tmp_path / "logs", script="tests/node_crash.py",
                            env={**ENV, "QA_TEST_NODE_CRASH": "train_cam:3:1"}, timeout=600)
    assert all(code != 0 for code, _ in crashed)
    assert (work / "steps" / "text_feats.done.json").is_file()
    assert not (work / "steps" / "train_cam.done.json").exists()
    assert (work / "checkpoints" / "train_cam.pth").is_file()         # step 2's (or the finished one)
    before = (work / "log.txt").read_text()

    # 3. both restarted: the run finishes
    restarted = run_two_nodes(args, tmp_path / "logs", timeout=600)
    for code, out in restarted:
        assert code == 0, out[-3000:]
    log = (work / "log.txt").read_text()[len(before):]
    assert "rank 0/2" in log
    # (the lock's lines come before the run's log file is set up: they are on rank 0's stderr)
    assert sum("lock held by rank 0 on" in out and "seen held from 1 other node(s)" in out for _, out in restarted) == 1
    resumed = [ln for ln in log.splitlines() if "train_cam: resumed from" in ln]
    assert len(resumed) == 1 and ("at step 2/3" in resumed[0] or "at step 3/3" in resumed[0]), resumed
    assert "step qape: up to date" in log and "step train_ritc: start" in log

    # every step ran, and each per-image step made each image once across the nodes: the counts add up to the
    # number of images and every image's file is there (an image made twice would leave another one missing)
    assert sorted(p.name for p in (work / "steps").glob("*.done.json")) == \
        sorted(p.name for p in (ref / "steps").glob("*.done.json"))
    for step, folder, ext in zip(PER_IMAGE, ("cam", "ir_label", "sem_seg"), ("npz", "png", "png")):
        m = read_json(work / "steps" / f"{step}.done.json")["metrics"]
        assert (m["made"], m["reused"], m["redone"]) == (len(ids), 0, 0), (step, m)
        assert sorted(p.stem for p in (work / folder).glob(f"*.{ext}")) == ids, step
    corpus = sorted((work / "qape" / "corpus.jsonl").read_text().splitlines())
    assert corpus == sorted((ref / "qape" / "corpus.jsonl").read_text().splitlines())
    assert read_json(work / "steps" / "eval_deeplab.done.json")["metrics"]["predicted"] == 4

    # training on two nodes (one killed and resumed) is the one-node two-rank training, bit for bit
    for rel in MODELS:
        a, b = _state(work / rel), _state(ref / rel)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), rel
    for f in ("eval_cam.json", "eval_sem_seg.json"):
        assert read_json(work / f)["miou"] == read_json(ref / f)["miou"]
    assert (work / LOCK_NAME).read_text() == ""                      # released cleanly at the end


# ---- the lock seen from ranks that play two nodes ----------------------------------------------------------

def _lock_ranks(rank: int, world: int, port: int, tmp: str, out: str) -> None:
    """Two ranks, both local rank 0 (two nodes), take the work-dir lock in four situations."""
    import logging

    from tool.engine import lock

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK="0")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())          # type: ignore[method-assign]
    logging.getLogger("tool.engine.lock").addHandler(handler)
    logging.getLogger("tool.engine.lock").setLevel(logging.INFO)
    seen: dict[str, str] = {}

    def attempt(name: str, root: str) -> None:
        try:
            with lock.work_dir_lock(root, ["test"]):
                seen[name] = "held"
        except (lock.WorkDirLocked, lock.WorkDirNotShared) as e:
            seen[name] = f"{type(e).__name__}: {e}"

    shared = Path(tmp) / "shared"
    attempt("shared", str(shared))
    # a work dir on each node's own disk: rank 1 does not find rank 0's lock file
    attempt("not_shared", str(Path(tmp) / f"own{rank}"))
    # flock not shared between the hosts: rank 1 gets a lock rank 0 holds
    real = lock._try_flock
    if rank == 1:
        lock._try_flock = lambda fd, root: True
    attempt("incoherent", str(shared))
    lock._try_flock = real
    # another run holds it: rank 0 finds it taken and rank 1 (which does not try) stops with the same message
    with work_dir_held(shared) if rank == 0 else contextlib.nullcontext():
        dist.barrier()
        attempt("held_elsewhere", str(shared))
    seen["log"] = "\n".join(records)
    torch.save(seen, f"{out}.{rank}")
    dist.destroy_process_group()


def test_lock_seen_from_another_node(tmp_path):
    out = tmp_path / "seen"
    mp.spawn(_lock_ranks, args=(2, free_port(), str(tmp_path), str(out)), nprocs=2, join=True)
    r0, r1 = (torch.load(f"{out}.{r}", weights_only=True) for r in (0, 1))
    assert r0["shared"] == r1["shared"] == "held"
    assert "seen held from 1 other node(s)" in r0["log"]
    for r in (r0, r1):      # every rank stops with the same message
        assert r["not_shared"].startswith("WorkDirNotShared: work_dir") and "not shared between the nodes: 1 of 1" \
            in r["not_shared"]
        assert r["held_elsewhere"].startswith("WorkDirLocked:") and "in use by another run" in r["held_elsewhere"]
    assert r0["held_elsewhere"] == r1["held_elsewhere"]
    assert r0["incoherent"] == "held" and "not seen from 1 of 1 other node(s)" in r0["log"]


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
    in bf16 autocast (float32 losses and gradients)."""
    from tool.toy.tiny_models import write_tiny_clip
    clip_dir = write_tiny_clip(tmp_path / "clip", seed=0, image_size=64)
    res = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / f"{precision}.pth"
        mp.spawn(_ritc_rank, args=(2, free_port(), str(clip_dir), str(out), precision), nprocs=2, join=True)
        res[precision] = torch.load(out, weights_only=True)
        assert res[precision]["moved"] > 0 and res[precision]["max_diff"] == 0.0, precision
    # bf16 ran (the weights differ from float32's; trainable BN's batch statistics amplify the difference, so it
    # is not bounded by one update) and both stayed in sync across the ranks
    assert (res["bfloat16"]["flat"] - res["float32"]["flat"]).abs().max() > 0


def test_two_ranks_train_irn_without_the_displacement_branch(two_ranks, tmp_path):
    """irn.displacement false under DDP: the displacement branch's parameters take no gradient, and DDP (which
    refuses a parameter that wants a gradient and gets none) trains the boundary branch alone on both ranks."""
    import shutil

    work = tmp_path / "work"
    shutil.copytree(two_ranks / "work", work)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "run_sample.py", *smoke_args(work, two_ranks),
           "--set", "irn.displacement=false", "--steps", "train_irn"]
    out = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = read_json(work / "steps" / "train_irn.done.json")["metrics"]
    assert metrics["steps"] >= 2 and "dp_fg" not in metrics and "mean_shift" not in metrics
