"""The one helper of the per-image steps (qape, make_cam, cam_to_ir_label, make_sem_seg, eval_deeplab).

It owns what they have in common: the output folder kept under the step's digest, this rank's share
of the images, resuming (done outputs reused, torn ones redone), the progress bar, the counts of made
and skipped images summed over ranks, and the images/s figure of the step's metrics.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import torch
from tqdm import tqdm

from tool.engine import dist
from tool.engine.io import is_temp_file, read_json, write_json
from tool.engine.runtime import Context

log = logging.getLogger(__name__)

DIGEST_FILE = ".step_digest.json"
T = TypeVar("T")


def prepare_output_dir(path: Path, digest: str, force: bool, pattern: str) -> Path:
    """Make a per-image output folder ready for a resumable run under config ``digest``.

    Files matching ``pattern`` that were made under another digest (or any, with ``force``) are
    stale and removed, so per-image resume never mixes outputs of two configurations. Temp files
    left by a killed run are removed too. Rank 0 does the cleaning; everyone waits.
    """
    if dist.is_main():
        path.mkdir(parents=True, exist_ok=True)
        for tmp in path.iterdir():
            if is_temp_file(tmp.name):
                tmp.unlink(missing_ok=True)
        stamp = path / DIGEST_FILE
        old = read_json(stamp).get("digest") if stamp.is_file() else None
        if force or (old is not None and old != digest) or (old is None and any(path.rglob(pattern))):
            stale = list(path.rglob(pattern))      # rglob: folder-dataset ids have sub-folders
            if stale:
                log.info("removing %d stale output(s) in %s (%s)", len(stale), path,
                         "--force" if force else "made under another configuration")
            for f in stale:
                f.unlink()
        write_json(stamp, {"digest": digest})
    dist.barrier()
    return path


def resume_plan(items: Iterable[T], path_of: Callable[[T], Path], is_valid: Callable[[Path], bool]
                ) -> tuple[list[T], int, int]:
    """Per-image resume: (items still to make, outputs reused, damaged outputs removed to be redone).

    An output that exists but fails ``is_valid(path)`` (torn by a crash: per-image files are not
    fsynced) is deleted, logged by name, and made again.
    """
    todo, reused, redone = [], 0, 0
    for item in items:
        p = path_of(item)
        if p.is_file():
            if is_valid(p):
                reused += 1
                continue
            log.warning("%s does not load (torn by a crash?): removing it, it will be made again", p)
            p.unlink()
            redone += 1
        todo.append(item)
    return todo, reused, redone


class PerImage:
    """One per-image step's bookkeeping on this rank.

    ``out_dir`` is prepared under ``ctx.digest`` (``pattern``: the step's output files). ``plan`` takes
    this rank's share of the items and leaves in ``todo`` those still to make; the step iterates
    ``progress(...)``, counts ``made`` / ``skipped`` (unreadable images) and returns ``finish()``'s metrics.
    """

    def __init__(self, ctx: Context, out_dir: Path, pattern: str):
        self.ctx = ctx
        self.out_dir = prepare_output_dir(out_dir, ctx.digest, ctx.force, pattern)
        self.todo: list = []
        self.reused = self.redone = self.made = self.skipped = 0
        self._t0 = time.time()

    def plan(self, items: Sequence[T], path_of: Callable[[T], Path] | None = None,
             is_valid: Callable[[Path], bool] | None = None) -> list[T]:
        """This rank's share of ``items`` still to make: with ``path_of`` / ``is_valid``, those whose output
        is absent or torn (a torn one is removed); without, all of them (the step resumes by its own record)."""
        mine = dist.shard(items)
        if path_of is None:
            self.todo = list(mine)
        else:
            self.todo, self.reused, self.redone = resume_plan(mine, path_of, is_valid or (lambda p: True))
        self._t0 = time.time()
        return self.todo

    def progress(self, iterable: Iterable[T], total: int | None = None) -> Iterator[T]:
        """``iterable`` with a progress bar on rank 0 (the step's name as its title)."""
        return iter(tqdm(iterable, total=total, desc=self.ctx.step, disable=not self.ctx.is_main,
                         dynamic_ncols=True, mininterval=2.0))

    def finish(self, extra: torch.Tensor | None = None, rate_of: str = "images") -> dict:
        """Sum the counts (and ``extra``, e.g. a confusion matrix, in place) over the ranks; log skipped images.

        Returns ``{made, reused, redone, skipped_bad, <rate_of>_per_s}`` of the whole run (every rank)."""
        seconds = time.time() - self._t0
        counts = torch.tensor([self.made, self.skipped, self.reused, self.redone], dtype=torch.float64)
        if extra is not None:   # one all-reduce for both: [len(extra) + 4]
            flat = torch.cat([extra.reshape(-1).to(torch.float64), counts])
            dist.all_reduce_sum(flat)
            extra.copy_(flat[:-4].reshape(extra.shape).to(extra.dtype))
            counts = flat[-4:]
        else:
            dist.all_reduce_sum(counts)
        made, skipped, reused, redone = (int(v) for v in counts)
        if skipped:
            log.warning("%s: %d unreadable image(s) skipped", self.ctx.step, skipped)
        return {"made": made, "reused": reused, "redone": redone, "skipped_bad": skipped,
                f"{rate_of}_per_s": round(made / seconds, 3) if made and seconds > 0 else None}
