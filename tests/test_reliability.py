"""Nothing lost, nothing silently wrong (docs/reliability.md): each fault as a user meets it, on the toy world."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import run_sample
from tests.test_pipeline import smoke_args

ROOT = Path(__file__).resolve().parents[1]


# ---- 1. two runs on one work directory ------------------------------------------------------------

def test_second_run_on_a_work_dir_refuses_and_nothing_is_lost(tmp_path, monkeypatch):
    """While run A is about to merge its QAPE shard, run B starts on the same work dir: B refuses, naming
    A's pid and host, and A's corpus holds every pair (before the lock, B merged and deleted A's shard
    and A wrote an empty corpus)."""
    from step import qape

    real_merge, refused = qape.merge_corpus, []

    def merge_after_second_run(*a, **k):
        try:
            run_sample.main(smoke_args(tmp_path, "--steps", "qape"))
        except Exception as e:        # noqa: BLE001 - the refusal is what we look at
            refused.append(e)
        return real_merge(*a, **k)

    monkeypatch.setattr(qape, "merge_corpus", merge_after_second_run)
    out = run_sample.main(smoke_args(tmp_path, "--steps", "qape"))
    assert len(refused) == 1
    msg = str(refused[0])
    assert "in use by another run" in msg and f"pid {os.getpid()}" in msg and platform.node() in msg
    corpus = (tmp_path / "work" / "qape" / "corpus.jsonl").read_text().splitlines()
    assert len(corpus) == out["qape"]["pairs_answered"] > 0
    assert (tmp_path / "work" / "steps" / "qape.done.json").is_file()


def test_lock_held_by_another_process_and_stale_lock(tmp_path):
    from tool.lock import WorkDirLocked, work_dir_lock

    work = tmp_path / "work"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from tool.lock import work_dir_lock\n"
         f"with work_dir_lock({str(work)!r}, ['holder']):\n    print('ready', flush=True); time.sleep(60)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(WorkDirLocked, match=f"pid {holder.pid} on host {platform.node()}.*holder"):
            with work_dir_lock(work):
                pass
    finally:
        holder.kill()
        holder.wait()
    # the holder was killed without releasing: its record is still in the file, the kernel lock is gone
    assert json.loads((work / ".lock").read_text())["pid"] == holder.pid
    with work_dir_lock(work):
        assert json.loads((work / ".lock").read_text())["pid"] == os.getpid()
    assert (work / ".lock").read_text() == ""


def test_empty_corpus_is_refused_by_text_feats(tmp_path):
    run_sample.main(smoke_args(tmp_path, "--steps", "qape"))
    corpus = tmp_path / "work" / "qape" / "corpus.jsonl"
    corpus.write_text("")
    with pytest.raises(ValueError, match="corpus.jsonl: holds no"):
        run_sample.main(smoke_args(tmp_path, "--steps", "text_feats"))


# ---- 2. a step restarted alone draws the same numbers ---------------------------------------------

def test_step_rerun_alone_gives_the_weights_of_the_full_run(tmp_path):
    """train_cam after qape and text_feats in one process (a full run) and train_cam alone in a fresh work
    dir (``--steps train_cam``, as after a restart) end with the same weights: each step seeds itself
    from (seed, step, rank), not from what ran before it in the process."""
    full = run_sample.main(smoke_args(tmp_path, "--steps", "qape,text_feats,train_cam"))
    alone = run_sample.main(smoke_args(tmp_path, "--steps", "train_cam", "--set", f"work_dir={tmp_path / 'alone'}"))
    a = torch.load(tmp_path / "work" / "cam_baseline" / "model.pth", weights_only=True)
    b = torch.load(tmp_path / "alone" / "cam_baseline" / "model.pth", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert full["train_cam"]["loss"] == alone["train_cam"]["loss"]
    # and another seed really changes them (the test would pass vacuously if nothing were random)
    run_sample.main(smoke_args(tmp_path, "--steps", "train_cam", "--set", f"work_dir={tmp_path / 'seed1'}",
                               "--set", "seed=1"))
    c = torch.load(tmp_path / "seed1" / "cam_baseline" / "model.pth", weights_only=True)
    assert not torch.equal(a["classifier.weight"], c["classifier.weight"])


def test_step_seed_depends_on_seed_step_and_rank(monkeypatch):
    from tool import dist
    from tool.runtime import seed_step

    s = seed_step(0, "train_cam")
    x = torch.rand(3)
    assert seed_step(0, "train_cam") == s and torch.equal(torch.rand(3), x)
    assert seed_step(0, "train_irn") != s and seed_step(1, "train_cam") != s
    monkeypatch.setattr(dist, "rank", lambda: 1)
    assert seed_step(0, "train_cam") == s and not torch.equal(torch.rand(3), x)   # ranks draw apart, share s
