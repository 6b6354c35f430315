"""tool.submit: the sbatch scripts of --dry-run against the values asked for, and a real job of submitit's local
executor (two tasks, each starting run_sample.py as torchrun would) preempted mid-train_ritc, requeued, resumed."""
from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.test_ddp import free_port
from tool import submit
from tool.engine.io import read_json, read_jsonl_repairing

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "configs" / "smoke.yaml")


def sbatch_flags(text: str) -> dict[str, str]:
    return dict(ln[len("#SBATCH --"):].split("=", 1) for ln in text.splitlines() if ln.startswith("#SBATCH --"))


@pytest.mark.parametrize("nodes,gpus", [(1, 8), (2, 4)])
def test_dry_run_writes_the_sbatch_script(tmp_path, capsys, nodes, gpus):
    work = tmp_path / "work"
    assert submit.main(["--config", SMOKE, "--set", f"work_dir={work}", "--dry-run", "--nodes", str(nodes),
                        "--gpus-per-node", str(gpus), "--partition", "gpu", "--time-min", "720", "--mem-gb", "480",
                        "--cpus-per-task", "10", "--job-name", "voc"]) == 0
    script = work / "submitit" / "dry-run.sbatch"
    text = script.read_text()
    assert text in capsys.readouterr().out
    logs = work / "submitit"
    assert sbatch_flags(text) == {
        "nodes": str(nodes), "ntasks-per-node": str(gpus), "gpus-per-node": str(gpus),   # one rank per GPU
        "partition": "gpu", "time": "720", "mem": "480GB", "cpus-per-task": "10", "job-name": "voc",
        "signal": "USR2@90",                # submitit's requeue signal, 90 s before the limit
        "output": f"{logs}/%j_0_log.out", "error": f"{logs}/%j_0_log.err", "open-mode": "append",
        "wckey": "submitit"}
    lines = text.splitlines()
    assert f"export PYTHONPATH={shlex.quote(str(ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}" in lines
    run = lines[lines.index("export SUBMITIT_EXECUTOR=slurm") + 1]
    assert shlex.split(run) == ["srun", "--unbuffered", "--output", f"{logs}/%j_%t_log.out", "--error",
                                f"{logs}/%j_%t_log.err", "--kill-on-bad-exit=1", sys.executable, "-u", "-m",
                                "submitit.core._submit", str(logs)]
    assert not (work / "jobs.jsonl").exists()                          # nothing submitted


def test_bad_requests_are_named(tmp_path):
    with pytest.raises(submit.SubmitError, match="--nodes 0: must be at least 1"):
        submit.main(["--config", SMOKE, "--dry-run", "--nodes", "0"])
    with pytest.raises(submit.SubmitError, match="--cluster local runs one node; got --nodes 2"):
        submit.make_executor("local", tmp_path, submit.Resources(nodes=2))
    if not any(Path(p, "sbatch").exists() for p in os.environ.get("PATH", "").split(os.pathsep)):
        with pytest.raises(submit.SubmitError, match="no sbatch on this machine"):
            submit.make_executor("slurm", tmp_path, submit.Resources())


def smoke_sets(tmp: Path) -> list[str]:
    models = tmp / "models"
    return [f"dataset.root={tmp / 'toy' / 'VOC2012'}", f"toy.random_models_dir={models}",
            f"qape.vqa_model={models / 'blip'}", f"clip.model={models / 'clip'}", "cam.train.batch_size=2",
            "ritc.train.batch_size=2"]


@pytest.mark.slow
def test_local_job_is_preempted_requeued_and_resumes(tmp_path, monkeypatch):
    """Two ranks from submitit's environment; USR2 (SLURM's preemption / time-limit signal) to rank 0 after
    train_ritc's first checkpoint: the job requeues itself, the next attempt takes the dead attempt's lock,
    skips the finished steps and resumes train_ritc from its checkpoint."""
    monkeypatch.setenv("MASTER_PORT", str(free_port()))      # TorchDistributedEnvironment's port for the job
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    work = tmp_path / "work"
    sets = [*smoke_sets(tmp_path), "ritc.train.epochs=2", "ritc.train.max_steps=6"]     # 2 × 12 / (2 × 2) = 6 steps
    argv = submit.run_argv(SMOKE, work, sets, ["--until", "train_ritc"])
    job = submit.submit_run(argv, work, submit.Resources(gpus_per_node=0, tasks_per_node=2, time_min=30), "local")
    try:
        ckpt, deadline = work / "checkpoints" / "train_ritc.pth", time.monotonic() + 600
        while not ckpt.is_file():
            assert job.state == "RUNNING" and time.monotonic() < deadline, job_output(job)
            time.sleep(0.05)
        holder = json.loads((work / ".lock").read_text())                # rank 0's run_sample.py
        assert holder["job"] == str(job.job_id)                        # the lock names the job
        task = int(Path(f"/proc/{holder['pid']}/stat").read_text().rsplit(")", 1)[1].split()[1])
        os.kill(task, signal.SIGUSR2)            # to rank 0's task (its parent), as SLURM signals the job's tasks
        metrics = submit.wait_job(job)
    finally:
        job.cancel()
    out = job_output(job)
    assert "this job is preempted" in out and f"Requeued job {job.job_id}" in out, out[-3000:]
    assert metrics["train_ritc"]["steps"] == 6
    log = (work / "log.txt").read_text()
    assert log.count("rank 0/2") == 2                                  # two attempts, two ranks each
    second = log[log.rindex("rank 0/2"):]
    assert "step train_cam: up to date" in second and "step qape: up to date" in second
    resumed = [ln for ln in second.splitlines() if "train_ritc: resumed from" in ln]
    assert len(resumed) == 1 and any(f"at step {k}/6" in resumed[0] for k in range(1, 6)), resumed
    assert read_json(work / "steps" / "train_ritc.done.json")["metrics"]["steps"] == 6
    assert (work / ".lock").read_text() == ""
    assert [r["job_id"] for r in read_jsonl_repairing(work / "jobs.jsonl")] == [str(job.job_id)]


def job_output(job) -> str:
    paths = [Path(job.task(t).paths.stdout) for t in range(job.num_tasks)]
    paths += [p.with_suffix(".err") for p in paths]
    return "\n".join(p.read_text() for p in paths if p.is_file())
