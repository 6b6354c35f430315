"""pytest set-up: at most two torch threads, and a one-thread fixture, for predictable CPU tests.

(The repository root is on ``sys.path`` by ``pythonpath`` in pyproject.toml.)
"""
from __future__ import annotations

import shutil

import pytest
import torch

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


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
