"""A whole run as a SLURM job, through submitit (docs/cluster.md).

    python -m tool.submit --config configs/voc12.yaml [--nodes 1] [--gpus-per-node 8] [--partition P] \
        [--time-min 1440] [--mem-gb M] [--cpus-per-task C] [--set k=v ...] [--steps a,b | --from x --until y] \
        [--dry-run] [--cluster slurm|local] [--wait]

Every task of the job (one per GPU, ``nodes × gpus-per-node`` ranks) plays torchrun's agent for one rank: it
exports submitit's view of the job (``TorchDistributedEnvironment``: rank from ``SLURM_PROCID``, local rank, world
size, the first node as master) as the variables torchrun sets and starts ``run_sample.py`` as its child, which
joins the process group through the same code as under torchrun (``tool.engine.dist.init``).

Preempted or timed out (SLURM sends USR2 ``signal_delay_s`` before the time limit; submitit catches it in every
task, the run ignores it), rank 0 requeues the job (``scontrol requeue``, the same job id) and exits, ending its
run (SIGTERM); the run's process is gone, so the kernel drops its work-dir lock, and the next attempt of the job
takes it (waiting while the file system still shows the earlier attempt's lock: ``tool.engine.lock``) and
resumes from the run's own checkpoints and per-image outputs. Nothing is saved at the signal: what is lost is
the work since the last checkpoint.

Job ids go to ``<work_dir>/jobs.jsonl``, submitit's files (the job's pickles, ``<job>_<task>_log.out`` / ``.err``)
to ``<work_dir>/submitit/``. ``--dry-run`` writes the sbatch script submitit would hand to ``sbatch`` to
``<work_dir>/submitit/dry-run.sbatch`` and prints it (it names the job's pickle, which only a real submission
writes). ``--cluster local`` runs the job on this machine with submitit's local executor (one node; the tests).
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tool.engine.config import STEPS, load_config
from tool.engine.io import append_jsonl, read_json, write_text
from tool.engine.paths import WorkPaths
from tool.engine.runtime import setup_logging, stop_child

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
CLUSTERS = ("slurm", "local")
SIGNAL_DELAY_S = 90      # USR2 this long before the time limit: room for rank 0 to requeue


class SubmitError(ValueError):
    """A bad resource request or a job that failed; the message names the flag or the job's log."""


@dataclass(frozen=True)
class Resources:
    """What one job asks the scheduler for."""

    nodes: int = 1
    gpus_per_node: int = 1
    tasks_per_node: int | None = None    # ranks per node; None: one per GPU (one on a CPU-only node)
    partition: str | None = None
    time_min: int = 1440
    mem_gb: float | None = None
    cpus_per_task: int | None = None
    name: str = "qa-clims"

    @property
    def ranks_per_node(self) -> int:
        return self.tasks_per_node if self.tasks_per_node is not None else max(self.gpus_per_node, 1)

    def check(self) -> None:
        for flag, v, low in (("--nodes", self.nodes, 1), ("--gpus-per-node", self.gpus_per_node, 0),
                             ("--time-min", self.time_min, 1), ("--tasks-per-node", self.tasks_per_node, 1),
                             ("--cpus-per-task", self.cpus_per_task, 1), ("--mem-gb", self.mem_gb, 0)):
            if v is not None and v < low:
                raise SubmitError(f"{flag} {v}: must be at least {low}")
        if self.gpus_per_node and self.tasks_per_node not in (None, self.gpus_per_node):
            raise SubmitError(f"--tasks-per-node {self.tasks_per_node} with --gpus-per-node {self.gpus_per_node}: the "
                              "pipeline runs one rank per GPU; leave --tasks-per-node out")


def add_resource_args(ap: argparse.ArgumentParser) -> None:
    """The scheduler flags shared by ``tool.submit`` and ``tool.ablate --launcher submitit``."""
    g = ap.add_argument_group("scheduler (submitit)")
    g.add_argument("--cluster", choices=CLUSTERS, default="slurm",
                   help="slurm (sbatch through submitit) or local (this machine, one node: submitit's local executor)")
    g.add_argument("--nodes", type=int, default=1, help="nodes per job")
    g.add_argument("--gpus-per-node", type=int, default=1, help="GPUs per node; one rank (task) per GPU")
    g.add_argument("--tasks-per-node", type=int, default=None, help="ranks per node on CPU-only nodes")
    g.add_argument("--partition", default=None, help="SLURM partition")
    g.add_argument("--time-min", type=int, default=1440, help="time limit of one attempt, minutes (default 1440)")
    g.add_argument("--mem-gb", type=float, default=None, help="memory per node, GB (default: the partition's)")
    g.add_argument("--cpus-per-task", type=int, default=None, help="CPUs per rank (data loader workers, CRF)")
    g.add_argument("--job-name", default="qa-clims", help="the job's name in squeue")


def resources_from(args: argparse.Namespace) -> Resources:
    res = Resources(nodes=args.nodes, gpus_per_node=args.gpus_per_node, tasks_per_node=args.tasks_per_node,
                    partition=args.partition, time_min=args.time_min, mem_gb=args.mem_gb,
                    cpus_per_task=args.cpus_per_task, name=args.job_name)
    res.check()
    return res


def _setup_lines() -> list[str]:
    """Shell lines run before the tasks: the job's Python must import this repository (``tool.submit``)."""
    return [f"export PYTHONPATH={shlex.quote(str(ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}"]


def slurm_parameters(res: Resources) -> dict:
    """submitit's SLURM parameters (sbatch's names) for ``res``."""
    # --kill-on-bad-exit: one rank failing ends the job's other ranks at once (they would wait in a collective
    # until its timeout); also the other ranks of an attempt whose rank 0 requeued the job and left
    params = {"job_name": res.name, "nodes": res.nodes, "ntasks_per_node": res.ranks_per_node,
              "time": res.time_min, "signal_delay_s": SIGNAL_DELAY_S, "setup": _setup_lines(),
              "srun_args": ["--kill-on-bad-exit=1"]}
    if res.gpus_per_node:
        params["gpus_per_node"] = res.gpus_per_node
    if res.partition:
        params["partition"] = res.partition
    if res.cpus_per_task:
        params["cpus_per_task"] = res.cpus_per_task
    if res.mem_gb is not None:
        from submitit.slurm.slurm import _convert_mem
        params["mem"] = _convert_mem(res.mem_gb)
    return params


def sbatch_script(res: Resources, folder: Path) -> str:
    """The sbatch script submitit writes for a job of ``res`` with its files in ``folder``."""
    from submitit.slurm.slurm import _make_sbatch_string
    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return _make_sbatch_string(command=command, folder=folder, **slurm_parameters(res))


def make_executor(cluster: str, folder: Path, res: Resources):
    """submitit's executor for ``cluster`` with ``res`` set (``slurm`` needs ``srun`` on this machine)."""
    import shutil

    import submitit

    if cluster == "slurm":
        if shutil.which("sbatch") is None:
            raise SubmitError("--cluster slurm: no sbatch on this machine (SLURM is not installed here); submit from "
                              "a login node, or --dry-run to see the script, or --cluster local to run it here")
        slurm = submitit.SlurmExecutor(folder)
        slurm.update_parameters(**slurm_parameters(res))
        return slurm
    if res.nodes != 1:
        raise SubmitError(f"--cluster local runs one node; got --nodes {res.nodes}")
    local = submitit.LocalExecutor(folder)
    local.update_parameters(tasks_per_node=res.ranks_per_node, timeout_min=res.time_min, setup=_setup_lines(),
                            gpus_per_node=res.gpus_per_node if _cuda_count() else 0)
    return local


def _cuda_count() -> int:
    import torch
    return torch.cuda.device_count()


# ------------------------------------------------------------------------------------------------
# inside the job
# ------------------------------------------------------------------------------------------------

def export_rank_env() -> None:
    """Every task of a submitit job: the variables torchrun would have set (RANK, WORLD_SIZE, LOCAL_RANK,
    LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), from submitit's job environment; nothing for one task."""
    import submitit

    env = submitit.JobEnvironment()
    if env.num_tasks > 1:
        # every GPU stays visible: the rank picks cuda:LOCAL_RANK, as under torchrun
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)


def _ignore_usr2() -> None:
    """In the run's process, before it starts: submitit's signal is for the task (requeue), not for the run."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


class PipelineRun:
    """The job's callable: ``run_sample.py argv`` as this task's child, its rank set up as torchrun would.

    ``checkpoint`` (called by submitit on rank 0 when the job is preempted or times out) resubmits the same run:
    the pipeline resumes from its own files, so there is no other state to carry. A task that leaves before its
    run has ended (requeued, cancelled) ends the run first (SIGTERM, then SIGKILL after a minute)."""

    def __init__(self, argv: Sequence[str], work_dir: Path):
        self.argv, self.work_dir = list(argv), Path(work_dir)

    def __call__(self) -> dict:
        export_rank_env()
        run = subprocess.Popen([sys.executable, str(ROOT / "run_sample.py"), *self.argv], preexec_fn=_ignore_usr2)
        try:
            code = run.wait()
        finally:
            stop_child(run, grace=60)
        if code != 0:
            rank = os.environ.get("RANK", "0")
            raise SubmitError(f"run_sample.py ended with status {code} on rank {rank}; its log: "
                              f"{WorkPaths(self.work_dir).log_txt}")
        return step_metrics(self.work_dir)

    def checkpoint(self):
        import submitit

        log.warning("job interrupted (preempted or out of time): requeued; the next attempt resumes from the run's "
                    "checkpoints")
        return submitit.helpers.DelayedSubmission(self)


def step_metrics(work_dir: Path) -> dict[str, dict]:
    """{step: metrics} of the steps done in ``work_dir`` (their markers), in pipeline order."""
    paths = WorkPaths(work_dir)
    return {s: read_json(paths.done_marker(s)).get("metrics", {}) for s in STEPS if paths.done_marker(s).is_file()}


# ------------------------------------------------------------------------------------------------
# submitting
# ------------------------------------------------------------------------------------------------

def run_argv(config: str | os.PathLike, work_dir: Path, sets: Sequence[str], step_args: Sequence[str]) -> list[str]:
    """``run_sample.py``'s arguments for a job: absolute config and work_dir (the job may start elsewhere)."""
    argv = ["--config", str(Path(config).resolve()), "--set", f"work_dir={work_dir}"]
    for s in sets:
        argv += ["--set", s]
    return argv + list(step_args)


def submit_run(argv: Sequence[str], work_dir: Path, res: Resources, cluster: str, folder: Path | None = None,
               record: Path | None = None):
    """Submit ``run_sample.py argv`` as one job; its id goes to ``record`` (default ``<work_dir>/jobs.jsonl``).
    Returns submitit's job."""
    folder = folder or work_dir / "submitit"
    job = make_executor(cluster, folder, res).submit(PipelineRun(argv, work_dir))
    append_jsonl(record or work_dir / "jobs.jsonl", {
        "job_id": str(job.job_id), "cluster": cluster, "submitted": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "work_dir": str(work_dir), "argv": list(argv), "logs": str(folder), **asdict(res)})
    log.info("submitted job %s (%s, %d node(s) × %d rank(s)): %s; logs %s", job.job_id, cluster, res.nodes,
             res.ranks_per_node, work_dir, job_log(job))
    return job


def job_log(job) -> Path:
    """Rank 0's stdout of ``job`` (its stderr is next to it, ``.err``)."""
    return Path(job.task(0).paths.stdout)


def wait_job(job) -> dict:
    """The job's result ({step: metrics} of the steps done), or ``SubmitError`` naming its log when it failed."""
    try:
        return job.results()[0]       # rank 0's (every rank returns the same metrics)
    except Exception as e:   # noqa: BLE001 - submitit raises its own types (failed, interrupted, not found)
        first = str(e).strip().splitlines()
        raise SubmitError(f"job {job.job_id} failed ({type(e).__name__}: {first[-1] if first else ''}); its log: "
                          f"{job_log(job)} and .err next to it") from e


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tool.submit", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="YAML config of the run")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    ap.add_argument("--steps", help="run_sample.py --steps")
    ap.add_argument("--from", dest="start", help="run_sample.py --from")
    ap.add_argument("--until", help="run_sample.py --until")
    ap.add_argument("--dry-run", action="store_true", help="write and print the sbatch script, submit nothing")
    ap.add_argument("--wait", action="store_true", help="wait for the job and print its steps' metrics")
    add_resource_args(ap)
    args = ap.parse_args(argv)
    res = resources_from(args)
    cfg = load_config(args.config, args.set)            # a bad config stops here, not in the queue
    work_dir = Path(cfg.work_dir).resolve()
    setup_logging(None)
    if args.dry_run:
        script = sbatch_script(res, work_dir / "submitit")
        write_text(work_dir / "submitit" / "dry-run.sbatch", script)
        sys.stdout.write(script + f"\n# written to {work_dir / 'submitit' / 'dry-run.sbatch'}; nothing submitted\n")
        return 0
    step_args = [a for flag, val in (("--steps", args.steps), ("--from", args.start), ("--until", args.until))
                 if val for a in (flag, val)]
    job = submit_run(run_argv(args.config, work_dir, args.set, step_args), work_dir, res, args.cluster)
    sys.stdout.write(f"job {job.job_id} submitted; logs: {job_log(job)}\n")
    if args.wait:
        metrics = wait_job(job)
        sys.stdout.write("".join(f"{step}: {m}\n" for step, m in metrics.items()))
    return 0


if __name__ == "__main__":
    from tool.engine.cli import run_cli
    sys.exit(run_cli(main))
