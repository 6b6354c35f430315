"""Atomic file writes: every artefact is written to a temp file in its folder, then ``os.replace``d.

A killed run therefore never leaves a half-written file behind: either the old file (or none) is
there, or the complete new one. ``durable`` writes (markers, checkpoints, models: the default) also
``fsync`` the file before the rename and the folder after it, so a power cut cannot leave a
renamed-but-empty file either; per-image outputs skip the fsync (thousands of them) and are checked
on resume instead (``npz_readable``, ``png_complete``). A failed write names its file.
"""
from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class DamagedFile(RuntimeError):
    """A file that exists but does not load (torn by a crash or a full disk, or edited).

    ``paths``: the damaged file(s); ``producer``: the step that writes them, when known: the runner
    then moves the files aside and invalidates that step's marker, so the next run redoes them.
    """

    def __init__(self, message: str, paths: list[Path] | tuple[Path, ...] = (), producer: str | None = None):
        super().__init__(message)
        self.paths, self.producer = [Path(p) for p in paths], producer


class UnsafeFile(RuntimeError):
    """A file would need unrestricted pickle (code execution) to load; the message names it and any opt-in."""


TEMP_MARK = ".tmp"


def is_temp_file(name: str) -> bool:
    """Whether ``name`` is one of ``atomic_path``'s temp files (``.<stem>.<random>.tmp<suffix>``)."""
    return name.startswith(".") and TEMP_MARK in name


def _umask() -> int:
    mask = os.umask(0o022)    # the only way to read it is to set it
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):     # not every file system lets a folder be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _named(e: OSError, path: Path) -> OSError:
    hint = "; is the disk full?" if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) else ""
    return OSError(e.errno, f"{path}: cannot write ({e.strerror or e}){hint}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    The temp name keeps the final suffix so libraries that dispatch on extension (PIL, cv2,
    ``np.savez``) write the right format. On error the temp file is removed and ``path`` untouched;
    an ``OSError`` (a full disk: "File too large", "No space left") is re-raised naming ``path``.
    ``durable``: fsync the file before the rename and the folder after it.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f"{TEMP_MARK}{path.suffix}", dir=path.parent)
        try:
            os.fchmod(fd, 0o666 & ~_umask())    # mkstemp makes 0600; artefacts get the user's usual mode
        finally:
            os.close(fd)
    except OSError as e:
        raise _named(e, path) from e
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
            # again after the writer: some (safetensors) delete and recreate the file, as 0600
            os.chmod(tmp_path, 0o666 & ~_umask())
            if durable:
                fd = os.open(tmp_path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            os.replace(tmp_path, path)
        except OSError as e:
            raise _named(e, path) from e
        if durable:
            _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; on success it replaces ``path`` (a model folder written by a
    library's ``save_pretrained``), its folders and files given the umask's usual modes (``mkdtemp`` makes
    0700, some writers 0600). On error the temp folder is removed and ``path`` untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        mask = _umask()
        for folder, _, files in os.walk(tmp):
            os.chmod(folder, 0o777 & ~mask)
            for f in files:
                os.chmod(os.path.join(folder, f), 0o666 & ~mask)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str, durable: bool = True) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"), durable=durable)


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2, durable: bool = True) -> None:
    """Write ``obj`` as JSON atomically (NaN is written as ``null`` so every reader can parse it)."""
    write_text(path, json.dumps(_nan_to_none(obj), indent=indent, allow_nan=False) + "\n", durable=durable)


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, naming the file in the error when it cannot be parsed."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e}); delete it to have it rebuilt") from e


def save_npz(path: str | os.PathLike, durable: bool = False, **arrays: np.ndarray) -> None:
    """``np.savez`` (uncompressed) to ``path`` atomically (not fsynced by default: per-image files)."""
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **arrays)   # no object arrays: the readers refuse pickles
    write_bytes(path, buf.getvalue(), durable=durable)


def npz_readable(path: str | os.PathLike, keys: tuple[str, ...] = ()) -> bool:
    """Whether ``path`` opens as an ``.npz`` holding ``keys`` whose arrays load (a torn file does not)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return all(f[k] is not None for k in keys)
    except Exception:     # noqa: BLE001 - any failure to load is "damaged"; the caller redoes the file
        return False


_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def png_complete(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a PNG that ends with its IEND chunk: a cheap check for a torn file (no decoding)."""
    try:
        with open(path, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                return False
            f.seek(-12, os.SEEK_END)
            return f.read(12) == _PNG_END
    except OSError:
        return False


def read_id_list(path: str | os.PathLike, whole_line: bool = False) -> list[str]:
    """The entries of an image-list file (VOC ``ImageSets``, COCO ``lists/``): one image id per line.

    UTF-8 (with or without BOM) or UTF-16 (with BOM); blank lines and ``#`` comments are skipped. A file
    that does not decode, or a line of several words (``2007_000032 -1``: an ``ImageSets/Main`` class list,
    whose first word would take the negatives too), raises ``ValueError`` naming the file and the line.
    ``whole_line``: the entry is the whole stripped line (file paths that may hold spaces). Duplicates are
    the caller's to judge.
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            text = raw.decode("utf-16")
        else:
            text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 or UTF-16 text file ({e})") from e
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if len(words) > 1 and not whole_line:
            main = len(words) == 2 and words[1] in ("-1", "0", "1")
            hint = (" (an ImageSets/Main class list: image id and -1 / 0 / 1; a split list names only the images "
                    "of the split, as ImageSets/Segmentation/*.txt)") if main else ""
            raise ValueError(f"{path}:{n}: {line!r} holds {len(words)} words, a split list one image id per "
                             f"line{hint}")
        out.append(line)
    return out


def read_jsonl_repairing(path: str | os.PathLike) -> list[dict]:
    """Records of a JSON-lines file; a torn last line (a run killed mid-write) is cut off the file."""
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    records, good = [], 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
        good += len(line)
    if good < len(data):
        log.warning("%s: dropping a torn tail of %d bytes left by an interrupted run", path, len(data) - good)
        with open(path, "r+b") as f:
            f.truncate(good)
    return records


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line and flush it to disk (used for logs such as ``metrics.jsonl``); a torn last
    line left by a killed append is cut off first, so the new record is never glued to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.stat().st_size:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            torn = f.read(1) != b"\n"
        if torn:
            read_jsonl_repairing(path)
    line = json.dumps(_nan_to_none(record), allow_nan=False) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, np.generic):
        return _nan_to_none(obj.item())
    return obj
