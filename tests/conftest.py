"""pytest set-up: the repository root on sys.path, single-threaded torch for predictable CPU tests."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
