"""pytest set-up: at most two torch threads, and a one-thread fixture, for predictable CPU tests.

(The repository root is on ``sys.path`` by ``pythonpath`` in pyproject.toml.)
"""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest
import torch

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

# TMPDIR of the session and of every subprocess it starts: a folder removed at the end (pytest_unconfigure).
# torchrun's agents (torchelastic_*), multiprocessing (pymp-*) and W&B offline runs left ~20 folders in /tmp per
# session. Set here, before any test module copies os.environ; pytest's own folders stay in the system's temp.
os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", tempfile.gettempdir())
SCRATCH = tempfile.mkdtemp(prefix="qa-clims-tests-")
os.environ["TMPDIR"] = tempfile.tempdir = SCRATCH


def pytest_unconfigure(config):
    shutil.rmtree(SCRATCH, ignore_errors=True)


@pytest.fixture
def one_thread():
    """One torch thread for a module of small convs / matrices: on two shared, busy cores two threads
    spin-wait and are many times slower (``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def module_tmp(request, tmp_path_factory):
    """A folder for a module's shared run, removed when the module's tests all passed: the end-to-end runs
    write hundreds of MB each (ResNet-50 checkpoints), and the suite kept ~11 GB until the session ended.
    A module with a failure keeps its folder to look into (so do failed tests' ``tmp_path``:
    ``tmp_path_retention_policy`` in pyproject.toml)."""
    failed_before = request.session.testsfailed
    path = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_"))
    yield path
    if request.session.testsfailed == failed_before:
        shutil.rmtree(path, ignore_errors=True)
