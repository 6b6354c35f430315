"""Helpers several test modules share: a training run crashed at a given step, a work dir held by another process."""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class TrainingCrash(Exception):
    """What :func:`crash_training_at` raises: a training step crashing mid-run."""


def crash_training_at(monkeypatch, step: int, error: type[BaseException] = TrainingCrash) -> None:
    """Make ``tool.engine.train_loop.fit`` raise ``error`` right after optimiser step ``step`` (as a crash or
    Ctrl-C there would); ``monkeypatch.setattr(train_loop, "_after_step", lambda step: None)`` resumes cleanly."""
    from tool.engine import train_loop

    def crash(s: int) -> None:
        if s == step:
            raise error

    monkeypatch.setattr(train_loop, "_after_step", crash)


@contextmanager
def work_dir_held(work: Path, seconds: float = 60, command: str = "holder",
                  env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """Another process holding ``work``'s run lock (its command ``[command]``) for ``seconds`` at most, with the
    environment ``env`` (None: this one's); inside, the lock is held; killed on exit."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from tool.engine.lock import work_dir_lock\n"
         f"with work_dir_lock({str(work)!r}, [{command!r}]):\n    print('ready', flush=True); time.sleep({seconds})"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "ready"
        yield holder
    finally:
        holder.kill()
        holder.wait()
