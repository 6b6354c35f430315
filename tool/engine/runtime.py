"""Run-time context of a step: device, rank, seeding, logging, ``meta.json``."""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from tool.engine import dist
from tool.engine.config import Config, dump_yaml
from tool.engine.io import write_json, write_text
from tool.engine.paths import WorkPaths
from tool.engine.skipped import SkipList, skip_list

log = logging.getLogger("qa_clims")
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Context:
    """What a step gets besides its config: where to write, on which device, as which rank."""

    paths: WorkPaths
    device: torch.device
    rank: int
    world_size: int
    seed: int            # the step's seed (``seed_step``), shared by all ranks; the run's seed until a step starts
    force: bool = False  # the running step was forced (``--force``): its outputs are remade, not resumed
    run_seed: int = 0    # ``cfg.seed`` (or the one drawn for ``-1``)
    skip_bad_images: bool = False   # ``dataset.skip_bad_images``
    # Set by the runner for the step it runs, so that a step never asks the runner about itself:
    step: str = ""       # the step's name
    digest: str = ""     # the digest its done marker will hold (its config sections, inputs, weight files)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def checkpoint(self) -> Path:
        """The running step's resumable training checkpoint."""
        return self.paths.checkpoint(self.step)

    def skips(self, enabled: bool | None = None) -> SkipList:
        """The run's skip list as the running step uses it (on with ``dataset.skip_bad_images``, or ``enabled``)."""
        return skip_list(self.paths.root, self.skip_bad_images if enabled is None else enabled, self.step)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; under torchrun each rank takes its LOCAL_RANK GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device: {name!r} was asked for but CUDA is not available; use 'cpu' or 'auto'")
        if name == "cuda":
            return torch.device("cuda", dist.local_rank())
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ValueError(f"device: unknown value {name!r}; use auto, cpu, cuda or cuda:N")
    return torch.device(name)


def setup_logging(log_file: Path | None) -> None:
    """Configure logging once: rank 0 at INFO to stderr and ``log.txt``; other ranks WARNING."""
    root = logging.getLogger()
    if getattr(root, "_qa_clims_configured", None) == str(log_file):
        return
    for h in list(root.handlers):
        if getattr(h, "_qa_clims", False):
            root.removeHandler(h)
            h.close()
    level = logging.INFO if dist.is_main() else logging.WARNING
    fmt = logging.Formatter(f"%(asctime)s [r{dist.rank()}] %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None and dist.is_main():
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    for h in handlers:
        h.setFormatter(fmt)
        h.setLevel(level)
        h._qa_clims = True  # type: ignore[attr-defined]
        root.addHandler(h)
    root.setLevel(level)
    root._qa_clims_configured = str(log_file)  # type: ignore[attr-defined]


def run_seed(seed: int) -> int:
    """The run's seed: ``seed``, or (``-1``) one drawn on rank 0 and shared by every rank."""
    if seed == -1:
        seed = dist.broadcast_object(random.SystemRandom().randrange(2**31 - 1))
    return seed


def _mix(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:4], "big") & 0x7FFFFFFF


def seed_step(seed: int, step: str) -> int:
    """Seed python, numpy and torch (CUDA included) for ``step`` from (seed, step name, rank); return the
    step's seed (from (seed, step) alone, the same on every rank: samplers and augmentations use it).

    Called by the runner before each step, so a step draws the same numbers however it is started:
    inside a full run, with ``--steps`` alone, or as ``python -m step <name>`` in a new process.
    """
    seed_everything(_mix(seed, step, dist.rank()))
    return _mix(seed, step)


def seed_everything(seed: int) -> int:
    """Seed python, numpy and torch with ``seed`` exactly; return it."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed


def make_context(cfg: Config, force: bool = False) -> Context:
    """Device, process group, logging (to stderr; ``log.txt`` once the run holds the work-dir lock:
    ``tool.engine.runner.run_session``) and seeding for a run of ``cfg``."""
    device = resolve_device(cfg.device)
    dist.init(device)
    paths = WorkPaths(Path(cfg.work_dir).resolve())
    setup_logging(None)     # a run refused by the lock must not write into the log of the run that holds it
    seed = run_seed(cfg.seed)
    return Context(paths=paths, device=device, rank=dist.rank(), world_size=dist.world_size(), seed=seed,
                   force=force, run_seed=seed, skip_bad_images=cfg.dataset.skip_bad_images)


def autocast(precision: str, device: torch.device, key: str = "precision") -> contextlib.AbstractContextManager:
    """The one precision helper: bf16 autocast on ``device``'s type (CUDA or CPU) when ``precision`` (config
    ``key``) is ``bfloat16``; a no-op for ``float32``. The config checked the value when it loaded
    (``tool.engine.config.Precision``).

    Autocast runs convs, linears and matmuls in bf16 and keeps parameters, reductions and the ops autocast lists
    as float32 in float32, so weights, optimiser state and checkpoints stay float32. Losses must still be
    computed in float32 (``.float()`` on the logits); ``tool.engine.train_loop`` refuses a loss that is not."""
    if precision != "bfloat16":
        return contextlib.nullcontext()
    if device.type == "cpu":
        _note_cpu_bf16(key)
    return torch.autocast(device.type, dtype=torch.bfloat16)


_NOTED: set[str] = set()


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 in hardware (AVX512-BF16 / AMX); elsewhere oneDNN emulates it."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _note_cpu_bf16(key: str) -> None:
    """One log line per key and process when bf16 runs on a CPU without native bf16 (it works, slowly)."""
    if key not in _NOTED and not cpu_has_native_bf16():
        _NOTED.add(key)
        log.info("%s: bfloat16 on a CPU without native bf16 instructions works but is emulated and slower than "
                 "float32; set %s: float32 for speed", key, key)


def memory_format(channels_last: bool) -> torch.memory_format:
    """``torch.channels_last`` or ``torch.contiguous_format``: for ``model.to(memory_format=...)`` and inputs'
    ``.contiguous(memory_format=...)`` alike, on any device."""
    return torch.channels_last if channels_last else torch.contiguous_format


def write_run_files(cfg: Config, ctx: Context, argv: list[str]) -> None:
    """``config.yaml`` (resolved config) and ``meta.json`` (git SHA, versions, command line)."""
    if not ctx.is_main:
        return
    write_text(ctx.paths.config_yaml, dump_yaml(cfg))
    write_json(ctx.paths.meta_json, {
        "git_sha": git_sha(),
        "command": [sys.executable, *argv],
        "cwd": os.getcwd(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "world_size": ctx.world_size,
        "device": str(ctx.device),
        "seed": ctx.run_seed,
        "versions": versions(),
    })


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], check=False, cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=10)
        sha = out.stdout.strip()
        if out.returncode != 0 or not sha:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], check=False, cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("torch", "torchvision", "numpy", "transformers", "open_clip_torch", "opencv-python-headless"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "absent"
    out["cuda"] = torch.version.cuda or "none"
    return out


def run_child(cmd: Sequence[str]) -> int:
    """Run ``cmd`` (a sub-run of ``tool.stage_study`` or ``tool.ablate``) and return its exit code. Stopped while it
    waits (Ctrl-C, or SIGTERM from ``kill``, a scheduler, a timeout), it stops the child first: SIGTERM reaches only
    the parent, and a child left running would go on writing into a run that nobody waits for."""
    proc = subprocess.Popen(list(cmd))
    main = threading.current_thread() is threading.main_thread()   # signal handlers: the main thread only
    previous = signal.getsignal(signal.SIGTERM) if main else None
    if main:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return proc.wait()
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        stop_child(proc, grace=30)


def stop_child(proc: subprocess.Popen, grace: float) -> None:
    """End ``proc`` if it still runs: SIGTERM (a run stops cleanly, resumable), SIGKILL after ``grace`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)   # unwinds through run_child's finally, like Ctrl-C does
