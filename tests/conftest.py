"""pytest set-up: at most two torch threads, and a one-thread fixture, for predictable CPU tests.

(The repository root is on ``sys.path`` by ``pythonpath`` in pyproject.toml.)
"""
from __future__ import annotations

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
