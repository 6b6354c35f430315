"""The run's list of skipped unreadable images (``dataset.skip_bad_images: true``; docs/reliability.md).

Every step treats a skipped image the same way: the first step that fails to decode an image records
it in ``<work_dir>/skipped_images.jsonl`` (one JSON line per image: id, path, step, reason, and the
file's size and mtime); every later step leaves the recorded images out of its image lists, so no
step asks for a text, CAM or label an earlier step never made. The report lists them.

Lines are appended with ``O_APPEND`` by whichever process meets the image (DataLoader workers and
ranks included), so no gathering is needed. An entry whose image file has changed since (fixed,
replaced) no longer counts: the image is tried again. With ``skip_bad_images: false`` the list is
ignored and a bad image stops the step with its path named.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "skipped_images.jsonl"


def _identity(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def read_skipped(path: Path) -> dict[str, dict]:
    """The recorded images of a skip list file, by image id (last record wins; a torn line is ignored)."""
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_bytes().splitlines():
        try:
            rec = json.loads(line)
            out[str(rec["image"])] = rec
        except (ValueError, KeyError, TypeError):
            continue
    return out


@dataclass(frozen=True)
class SkipList:
    """What a step passes as ``skip_bad`` to the image loaders: truthy when skipping is on.

    Picklable (paths and strings only) so DataLoader workers and pools record what they skip.
    """

    path: Path            # <work_dir>/skipped_images.jsonl
    enabled: bool
    step: str

    def __bool__(self) -> bool:
        return self.enabled

    def record(self, image_id: str, image_path: str | os.PathLike, reason: str) -> None:
        """Append one image to the list (atomic for a line this short with O_APPEND)."""
        rec = {"image": image_id, "path": str(image_path), "step": self.step, "reason": reason[:500],
               "identity": _identity(Path(image_path))}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, (json.dumps(rec) + "\n").encode())
        finally:
            os.close(fd)

    def known(self, ds) -> dict[str, dict]:
        """The recorded images still bad (their file unchanged since), by id; {} when skipping is off."""
        if not self.enabled:
            return {}
        return {i: r for i, r in read_skipped(self.path).items()
                if r.get("identity") == _identity(Path(ds.image_path(i)))}

    def filter(self, ids: list[str], ds) -> list[str]:
        """``ids`` without the images an earlier step (or run) skipped; logs how many were left out."""
        bad = self.known(ds)
        if not bad:
            return list(ids)
        kept = [i for i in ids if i not in bad]
        if len(kept) < len(ids):
            log.info("%s: leaving out %d image(s) skipped as unreadable earlier (%s), e.g. %s", self.step,
                     len(ids) - len(kept), self.path, [i for i in ids if i in bad][:3])
        return kept


def skip_list(work_dir: Path, enabled: bool, step: str) -> SkipList:
    return SkipList(Path(work_dir) / FILE_NAME, bool(enabled), step)
