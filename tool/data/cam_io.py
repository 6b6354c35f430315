"""Reading exported CAMs: ours (``.npz``) and the IRN / official QA-CLIMS ``.npy`` dicts."""
from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np

from tool.engine.io import DamagedFile, UnsafeFile

log = logging.getLogger(__name__)
_WARNED: set[Path] = set()


def find_cam(cam_dir: Path, image_id: str) -> Path:
    """The CAM file of ``image_id`` in ``cam_dir``: ``<id>.npz`` (ours) or ``<id>.npy`` (IRN/official)."""
    for ext in (".npz", ".npy"):
        p = cam_dir / f"{image_id}{ext}"
        if p.is_file():
            return p
    raise FileNotFoundError(f"no CAM for image {image_id} in {cam_dir} (.npz or .npy); run make_cam first "
                            "or point eval.cam_dir at the folder holding them")


def load_cam(path: Path, key: str = "high_res", producer: str | None = None,
             allow_pickle: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(keys int64 [K'] 0-based, maps float32 [K', h, w]) from a CAM file; ``key`` is ``high_res`` or ``cam``.

    A file that does not load raises ``DamagedFile`` naming it (and ``producer``, the step that made it).

    ``.npy`` files are IRN-style pickled dicts ``{"keys", "cam", "high_res"}``: unpickling them can run
    any code the file names, so they are refused unless ``allow_pickle`` (config
    ``eval.allow_pickle_cams``) is set, which logs a warning once per folder.
    """
    if path.suffix != ".npz" and not allow_pickle:
        raise UnsafeFile(f"{path}: an IRN-style .npy CAM is a Python pickle, and loading it can run code; "
                         "convert the folder to .npz, or set eval.allow_pickle_cams: true if you trust its source")
    if path.suffix != ".npz" and path.parent not in _WARNED:
        _WARNED.add(path.parent)
        log.warning("eval.allow_pickle_cams: unpickling the .npy CAMs of %s (this can run code: trust its source)",
                    path.parent)
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                return f["keys"].astype(np.int64), f[key].astype(np.float32)
        d = np.load(path, allow_pickle=True).item()
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        redo = f"; step {producer} will redo it on the next run" if producer else ""
        raise DamagedFile(f"{path}: cannot read the CAM file ({type(e).__name__}: {e}){redo}", [path], producer) from e
    if not isinstance(d, dict) or "keys" not in d or key not in d:
        raise ValueError(f"{path}: not an IRN-style CAM dict with 'keys' and {key!r}")
    maps = d[key]
    if hasattr(maps, "numpy"):  # IRN stores the strided cam as a torch tensor
        maps = maps.numpy()
    keys = d["keys"].numpy() if hasattr(d["keys"], "numpy") else np.asarray(d["keys"])
    return keys.astype(np.int64), np.asarray(maps, dtype=np.float32)
