"""Training scalars: ``<work_dir>/events/<step>.jsonl``, optionally TensorBoard and W&B (docs/tracking.md).

:func:`tool.engine.train_loop.fit` feeds one :class:`EventWriter` per training step: per logged iteration it
appends one record (detectron2's ``metrics.json`` convention: one JSON object a line, keyed by ``iter``)::

    {"iter": 10, "epoch": 0, "time": 1764590000.1, "terms": {"loss": 1.2, "frc": 0.4, ...},
     "lr": [0.0035, 0.035], "images_per_s": 41.3, "data_share": 0.07, "max_mem_mib": 812.0}

``terms`` are the means of the loss terms over the iterations since the previous record, ``lr`` the lr
each param group trained the record's iteration with, ``data_share`` the fraction of that window spent waiting for the
data loader, ``max_mem_mib`` the peak CUDA memory (CUDA only). Marks ``{"iter": i, "event":
"checkpoint" | "resume"}`` show where a resumable checkpoint was saved and where a run resumed.

The file is append-only and written by rank 0. On resume (from the checkpoint of iteration ``i``) a torn
last line is cut off and the records after ``i`` (iterations that will be trained again) are dropped,
so a killed-and-resumed run leaves one continuous, non-duplicated curve; a fresh start (no checkpoint:
a changed configuration, ``--force``) empties it.
"""
from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tool.engine import dist
from tool.engine.config import TRAIN_SECTIONS
from tool.engine.io import append_jsonl, read_jsonl_repairing, write_text

if TYPE_CHECKING:   # both optional (tracking.tensorboard, tracking.wandb): imported when asked for
    from torch.utils.tensorboard import SummaryWriter
    from wandb import Run as WandbRun

log = logging.getLogger(__name__)

# The steps that train through tool.engine.train_loop.fit, in pipeline order (docs/design.md §3).
TRAINING_STEPS = tuple(TRAIN_SECTIONS)


class TrackingError(RuntimeError):
    """An optional tracking writer was asked for but cannot run; the message names the key and the fix."""


class EventWriter:
    """Scalars of one training step ``name``; ``path`` None (or a rank other than 0) records nothing.

    Call order (``fit``): :meth:`start` once after the checkpoint is loaded; per iteration
    :meth:`batch_ready` when the batch arrives and :meth:`step_done` after the optimiser step; at log
    intervals :meth:`record`; :meth:`checkpoint` after each resumable checkpoint; :meth:`close` at the end.
    """

    def __init__(self, path: Path | None, name: str, tensorboard_dir: Path | None = None,
                 wandb: Mapping[str, str] | None = None, wandb_dir: Path | None = None):
        self.name = name
        # None on ranks other than 0 too: only rank 0 writes
        self.path = Path(path) if path is not None and dist.is_main() else None
        self._tb_dir, self._wandb, self._wandb_dir = tensorboard_dir, dict(wandb or {}), wandb_dir
        self._tb: SummaryWriter | None = None
        self._run: WandbRun | None = None
        self._sums: dict[str, float] = defaultdict(float)
        self._count = self._images = 0
        self._wait = 0.0
        self._window_start = self._last_end = time.perf_counter()

    @classmethod
    def for_step(cls, cfg, ctx, name: str) -> EventWriter:
        """Training step ``name``'s writer: the events file plus what ``cfg.tracking`` asks for."""
        t = cfg.tracking
        return cls(ctx.paths.events_jsonl(name), name,
                   tensorboard_dir=ctx.paths.tb_dir / name if t.tensorboard else None,
                   wandb=t.wandb or None, wandb_dir=ctx.paths.root)

    @property
    def active(self) -> bool:
        """Whether this writer records (a path given, and rank 0)."""
        return self.path is not None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, step: int, resumed: bool) -> None:
        """Begin (or continue, ``resumed`` from the checkpoint of iteration ``step``) the curves."""
        if self.path is None:
            return
        records = read_jsonl_repairing(self.path)            # cuts a torn last line off the file
        kept = [r for r in records if int(r.get("iter", 0)) <= step] if resumed else []
        if len(kept) < len(records):
            log.info("%s: %d record(s) after iteration %d dropped (%s)", self.path, len(records) - len(kept), step,
                     "they are trained again" if resumed else "a fresh start")
            write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        if resumed:
            append_jsonl(self.path, {"iter": step, "event": "resume", "time": round(time.time(), 3)})
        self._open_optional(step, resumed)
        self._window_start = self._last_end = time.perf_counter()

    def _open_optional(self, step: int, resumed: bool) -> None:
        if self._tb_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise TrackingError("tracking.tensorboard: true needs the tensorboard package (pip install "
                                    "tensorboard), or set tracking.tensorboard: false") from e
            # purge_step: TensorBoard hides the events of a killed run after the resume point
            self._tb = SummaryWriter(str(self._tb_dir), purge_step=step + 1 if resumed else None)
        if self._wandb:
            try:
                import wandb
            except ImportError as e:
                raise TrackingError(f"tracking.wandb: {self._wandb} needs the wandb package (pip install wandb), "
                                    "or set tracking.wandb: {}") from e
            run_id = f"{self._wandb_dir.name}-{self.name}" if self._wandb_dir is not None else self.name
            # tracking.wandb's strings as wandb.init keywords, as written (wandb checks e.g. mode's value)
            keywords: dict[str, Any] = dict(self._wandb)
            self._run = wandb.init(**keywords, id=run_id, name=run_id, resume="allow",
                                   dir=str(self._wandb_dir) if self._wandb_dir is not None else None)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._run is not None:
            self._run.finish()
            self._run = None

    # -- per iteration ---------------------------------------------------------------------------

    def batch_ready(self) -> None:
        """The loader handed over a batch: the time since the last step is data wait."""
        self._wait += time.perf_counter() - self._last_end

    def step_done(self, terms: Mapping[str, float], images: int) -> None:
        """One optimiser step with these loss-term values over ``images`` images (all ranks)."""
        for k, v in terms.items():
            self._sums[k] += float(v)
        self._count += 1
        self._images += images
        self._last_end = time.perf_counter()

    def record(self, step: int, epoch: int, optimizer: torch.optim.Optimizer) -> dict | None:
        """Write the record of iteration ``step`` (means since the previous record) and start a new window."""
        if self.path is None or self._count == 0:
            return None
        now = time.perf_counter()
        span = max(now - self._window_start, 1e-9)
        rec = {"iter": step, "epoch": epoch, "time": round(time.time(), 3),
               "terms": {k: v / self._count for k, v in self._sums.items()},
               "lr": [float(g["lr"]) for g in optimizer.param_groups],
               "images_per_s": round(self._images / span, 3), "data_share": round(min(self._wait / span, 1.0), 4)}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rec["max_mem_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        append_jsonl(self.path, rec)
        self._to_optional(rec)
        self._sums.clear()
        self._count = self._images = 0
        self._wait = 0.0
        self._window_start = now
        return rec

    def checkpoint(self, step: int) -> None:
        """Mark the resumable checkpoint saved at iteration ``step``."""
        if self.path is not None:
            append_jsonl(self.path, {"iter": step, "event": "checkpoint", "time": round(time.time(), 3)})

    def _to_optional(self, rec: dict) -> None:
        flat = {f"{self.name}/{k}": v for k, v in rec["terms"].items()}
        flat.update({f"{self.name}/lr/{i}": v for i, v in enumerate(rec["lr"])})
        flat.update({f"{self.name}/{k}": rec[k] for k in ("images_per_s", "data_share", "max_mem_mib") if k in rec})
        if self._tb is not None:
            for k, v in flat.items():
                self._tb.add_scalar(k, v, rec["iter"])
            self._tb.flush()
        if self._run is not None:
            self._run.log(flat, step=rec["iter"])


def read_events(path: Path) -> tuple[list[dict], list[dict]]:
    """(scalar records, marks) of an events file, each in file order; ``[]`` when it is absent.

    Read-only: a torn last line (a run being killed, or still writing) is skipped, not cut off.
    """
    scalars: list[dict] = []
    marks: list[dict] = []
    if not Path(path).is_file():
        return scalars, marks
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            break
        (marks if "event" in r else scalars).append(r)
    return scalars, marks
