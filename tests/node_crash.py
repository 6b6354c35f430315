"""``run_sample.py`` for tests/test_ddp.py's two-node run, whose one node dies mid-step.

torchrun starts this script instead of ``run_sample.py``. With ``QA_TEST_NODE_CRASH=<step>:<iteration>:<rank>``
the worker of that rank, right after that optimiser step of that training step, kills its torchrun agent and
then itself with SIGKILL: the node is gone at once, as when a machine dies (no cleanup, no exit handler).
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import run_sample  # noqa: E402
from tool.engine import train_loop  # noqa: E402
from tool.engine.cli import run_cli  # noqa: E402


def crash_after(step: str, iteration: int, rank: int):
    def after_step(i: int) -> None:
        training = sys._getframe(1).f_locals.get("t")       # fit's Training: its name is the step's
        if i == iteration and getattr(training, "name", None) == step and int(os.environ["RANK"]) == rank:
            os.kill(os.getppid(), signal.SIGKILL)            # the agent: no restart, no goodbye to the other node
            os.kill(os.getpid(), signal.SIGKILL)
    return after_step


if __name__ == "__main__":
    if os.environ.get("QA_TEST_NODE_CRASH"):
        name, it, rank = os.environ["QA_TEST_NODE_CRASH"].split(":")
        train_loop._after_step = crash_after(name, int(it), int(rank))
    sys.exit(run_cli(run_sample.main))
