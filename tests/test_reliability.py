"""Nothing lost, nothing silently wrong (docs/reliability.md): each fault as a user meets it, on the toy world."""
from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import run_sample
from tests.helpers import work_dir_held
from tests.test_pipeline import BASELINE, smoke_args
from tool.engine.io import read_json

ROOT = Path(__file__).resolve().parents[1]


# ---- 1. two runs on one work directory ------------------------------------------------------------

@pytest.mark.slow
def test_second_run_on_a_work_dir_refuses_and_nothing_is_lost(tmp_path, monkeypatch):
    """While run A is about to merge its QAPE shard, run B starts on the same work dir: B refuses, naming
    A's pid and host, and A's corpus holds every pair (before the lock, B merged and deleted A's shard
    and A wrote an empty corpus)."""
    from step import qape

    real_merge, refused = qape.merge_corpus, []

    def merge_after_second_run(*a, **k):
        try:
            run_sample.main(smoke_args(tmp_path, "--steps", "qape"))
        except Exception as e:        # noqa: BLE001 - the refusal is what we look at
            refused.append(e)
        return real_merge(*a, **k)

    monkeypatch.setattr(qape, "merge_corpus", merge_after_second_run)
    out = run_sample.main(smoke_args(tmp_path, "--steps", "qape"))
    assert len(refused) == 1
    msg = str(refused[0])
    assert "in use by another run" in msg and f"pid {os.getpid()}" in msg and platform.node() in msg
    corpus = (tmp_path / "work" / "qape" / "corpus.jsonl").read_text().splitlines()
    assert len(corpus) == out["qape"]["pairs_answered"] > 0
    assert (tmp_path / "work" / "steps" / "qape.done.json").is_file()


def test_lock_held_by_another_process_and_stale_lock(tmp_path):
    from tool.engine.lock import WorkDirLocked, work_dir_lock

    work = tmp_path / "work"
    with work_dir_held(work) as holder:
        with pytest.raises(WorkDirLocked, match=f"pid {holder.pid} on host {platform.node()}.*holder"):
            with work_dir_lock(work):
                pass
    # the holder was killed without releasing: its record is still in the file, the kernel lock is gone
    assert json.loads((work / ".lock").read_text())["pid"] == holder.pid
    with work_dir_lock(work):
        assert json.loads((work / ".lock").read_text())["pid"] == os.getpid()
    assert (work / ".lock").read_text() == ""


def test_requeued_job_waits_for_its_earlier_attempt(tmp_path, monkeypatch, caplog):
    """The lock of an earlier attempt of the same scheduler job (SLURM_JOB_ID) is waited for, not refused; a
    different job is refused at once, naming the holder's job."""
    import time

    from tool.engine.lock import WorkDirLocked, work_dir_lock

    work = tmp_path / "work"
    with work_dir_held(work, seconds=3, command="attempt 1", env={**os.environ, "SLURM_JOB_ID": "4242"}) as holder:
        monkeypatch.setenv("SLURM_JOB_ID", "77")
        with pytest.raises(WorkDirLocked, match=f"pid {holder.pid} on host .*, job 4242"):
            with work_dir_lock(work):
                pass
        monkeypatch.setenv("SLURM_JOB_ID", "4242")
        t0 = time.monotonic()
        with work_dir_lock(work, ["attempt 2"], same_job_wait_s=60):
            assert json.loads((work / ".lock").read_text())["command"] == ["attempt 2"]
            assert json.loads((work / ".lock").read_text())["job"] == "4242"
        assert 1.0 < time.monotonic() - t0 < 30        # it waited for the holder's release (3 s), not the whole 60
        assert "still locked by an earlier attempt of job 4242" in caplog.text


def test_file_system_without_flock(tmp_path, monkeypatch):
    """flock refused by the file system (ENOLCK: NFS without lockd, Lustre without -o flock): one message naming
    the mount option and the way out; QA_CLIMS_WORK_DIR_LOCK=off runs without the lock."""
    import errno
    import fcntl

    from tool.engine import lock

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(lock.LockUnsupported, match=r"refuses file locks \(flock: No locks available\); mount it "
                                                   r"with locking \(Lustre: -o flock.*QA_CLIMS_WORK_DIR_LOCK=off"):
        with lock.work_dir_lock(tmp_path / "work"):
            pass
    monkeypatch.setenv("QA_CLIMS_WORK_DIR_LOCK", "off")
    with lock.work_dir_lock(tmp_path / "work"):
        pass


def test_empty_corpus_is_refused_by_text_feats(tmp_path):
    run_sample.main(smoke_args(tmp_path, "--steps", "qape"))
    corpus = tmp_path / "work" / "qape" / "corpus.jsonl"
    corpus.write_text("")
    with pytest.raises(ValueError, match="corpus.jsonl: holds no"):
        run_sample.main(smoke_args(tmp_path, "--steps", "text_feats"))


# ---- 2. a step restarted alone draws the same numbers ---------------------------------------------

@pytest.mark.slow
def test_step_rerun_alone_gives_the_weights_of_the_full_run(tmp_path):
    """train_cam after qape and text_feats in one process (a full run) and train_cam alone in a fresh work
    dir (``--steps train_cam``, as after a restart) end with the same weights: each step seeds itself
    from (seed, step, rank), not from what ran before it in the process."""
    full = run_sample.main(smoke_args(tmp_path, "--steps", "qape,text_feats,train_cam"))
    alone = run_sample.main(smoke_args(tmp_path, "--steps", "train_cam", "--set", f"work_dir={tmp_path / 'alone'}"))
    a = torch.load(tmp_path / "work" / "cam_baseline" / "model.pth", weights_only=True)
    b = torch.load(tmp_path / "alone" / "cam_baseline" / "model.pth", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert full["train_cam"]["loss"] == alone["train_cam"]["loss"]
    # and another seed really changes them (the test would pass vacuously if nothing were random)
    run_sample.main(smoke_args(tmp_path, "--steps", "train_cam", "--set", f"work_dir={tmp_path / 'seed1'}",
                               "--set", "seed=1"))
    c = torch.load(tmp_path / "seed1" / "cam_baseline" / "model.pth", weights_only=True)
    assert not torch.equal(a["classifier.weight"], c["classifier.weight"])


def test_step_seed_depends_on_seed_step_and_rank(monkeypatch):
    from tool.engine import dist
    from tool.engine.runtime import seed_step

    s = seed_step(0, "train_cam")
    x = torch.rand(3)
    assert seed_step(0, "train_cam") == s and torch.equal(torch.rand(3), x)
    assert seed_step(0, "train_irn") != s and seed_step(1, "train_cam") != s
    monkeypatch.setattr(dist, "rank", lambda: 1)
    assert seed_step(0, "train_cam") == s and not torch.equal(torch.rand(3), x)   # ranks draw apart, share s


# ---- 3. torn files ----------------------------------------------------------------------------------

def _tear(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_torn_checkpoint_is_moved_aside_and_training_starts_over(tmp_path, caplog):
    from tool.engine.checkpoint import load_checkpoint, save_checkpoint

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = tmp_path / "checkpoints" / "train_cam.pth"
    save_checkpoint(ck, model=model, optimizer=opt, step=5, epoch=0, digest="d")
    _tear(ck)
    assert load_checkpoint(ck, model=model, optimizer=opt, digest="d") is None
    assert not ck.exists() and (tmp_path / "checkpoints" / "train_cam.pth.damaged").is_file()
    assert f"{ck} cannot be read" in caplog.text and "training starts over" in caplog.text


@pytest.mark.slow
def test_torn_cam_model_and_ir_label_are_named_and_redone(tmp_path, monkeypatch):
    """Torn per-image outputs and a torn model, as a user meets them: the reading step fails naming the
    file and the step that will redo it; the next plain run redoes exactly that. A crash in train_irn's
    mean-shift pass resumes from the finished checkpoint without retraining."""
    from net.resnet50_irn import AffinityDisplacementLoss
    from tool.engine import train_loop
    from tool.engine.io import DamagedFile

    work = tmp_path / "work"
    run_sample.main(smoke_args(tmp_path, "--steps", "train_cam,make_cam", *BASELINE))
    cams = sorted((work / "cam_baseline" / "cam").glob("*.npz"))
    eval_ids = (tmp_path / "toy" / "VOC2012" / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    victim = work / "cam_baseline" / "cam" / f"{eval_ids[0]}.npz"
    _tear(victim)
    with pytest.raises(DamagedFile, match=f"{victim}: cannot read the CAM file.*step make_cam will redo it"):
        run_sample.main(smoke_args(tmp_path, "--steps", "make_cam,eval_cam", *BASELINE))
    other = next(c for c in cams if c != victim)
    _tear(other)                             # torn while no step looked: per-image resume catches it
    out = run_sample.main(smoke_args(tmp_path, "--steps", "make_cam,eval_cam", *BASELINE))
    assert (out["make_cam"]["made"], out["make_cam"]["reused"], out["make_cam"]["redone"]) == (2, len(cams) - 2, 1)
    assert out["eval_cam"]["num_images"] == len(eval_ids)

    run_sample.main(smoke_args(tmp_path, "--steps", "cam_to_ir_label", *BASELINE))
    label = work / "ir_label" / f"{eval_ids[1]}.png"
    _tear(label)
    with pytest.raises(DamagedFile, match=f"IR label.*torn.*{label}.*step cam_to_ir_label will redo it"):
        run_sample.main(smoke_args(tmp_path, "--steps", "cam_to_ir_label,train_irn", *BASELINE))

    class Crash(Exception):
        pass

    real_shift, steps = AffinityDisplacementLoss.estimate_mean_shift, []

    def crash_in_mean_shift(self, batches):
        raise Crash

    monkeypatch.setattr(AffinityDisplacementLoss, "estimate_mean_shift", crash_in_mean_shift)
    monkeypatch.setattr(train_loop, "_after_step", steps.append)
    with pytest.raises(Crash):
        run_sample.main(smoke_args(tmp_path, "--steps", "cam_to_ir_label,train_irn", *BASELINE))
    assert read_json(work / "steps" / "cam_to_ir_label.done.json")["metrics"]["made"] == 1
    assert steps == [1, 2] and (work / "checkpoints" / "train_irn.pth").is_file()
    monkeypatch.setattr(AffinityDisplacementLoss, "estimate_mean_shift", real_shift)
    out = run_sample.main(smoke_args(tmp_path, "--steps", "train_irn", *BASELINE))
    assert steps == [1, 2], "the resumed run retrained"
    assert out["train_irn"]["steps"] == 2 and len(out["train_irn"]["mean_shift"]) == 2
    assert "resumed from" in (work / "log.txt").read_text()
    assert not (work / "checkpoints" / "train_irn.pth").exists()      # gone once the marker is written

    model = work / "cam_baseline" / "model.pth"
    _tear(model)
    with pytest.raises(DamagedFile, match=f"{model} cannot be read.*step train_cam will retrain it"):
        run_sample.main(smoke_args(tmp_path, "--steps", "make_cam", "--force", *BASELINE))
    assert (work / "cam_baseline" / "model.pth.damaged").is_file()
    out = run_sample.main(smoke_args(tmp_path, "--steps", "train_cam", *BASELINE))   # marker gone: retrains
    assert out["train_cam"]["steps"] == 3 and torch.load(model, weights_only=True)


def test_full_disk_names_the_file(tmp_path):
    """A write that hits the file-size limit (as a full disk would) says which file it was writing."""
    target = tmp_path / "checkpoints" / "train_cam.pth"
    code = ("import resource, signal\nfrom tool.engine.io import write_bytes\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\nresource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
            f"write_bytes({str(target)!r}, b'x' * 100000)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode != 0
    assert f"{target}: cannot write (File too large); is the disk full?" in r.stderr
    assert not target.exists() and not list(target.parent.iterdir())     # no temp file left either


# ---- 7. one line for the project's own errors ------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run_sample.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_cli_prints_one_line_for_a_config_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("work_dir: w\ncam:\n  epoch: 3\n")
    r = _cli("--config", str(bad))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: unknown key 'cam.epoch' (known keys in cam: ")


def test_cli_prints_one_line_and_the_log_for_a_dataset_error(tmp_path):
    r = _cli("--config", "configs/smoke.yaml", "--steps", "train_cam", "--set", f"work_dir={tmp_path / 'w'}",
             "--set", "toy.generate=false", "--set", f"dataset.root={tmp_path / 'nowhere'}")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert lines[-2] == f"error: dataset.root: VOC 2012 folder {tmp_path / 'nowhere'} does not exist (it should " \
        "hold JPEGImages/, Annotations/, SegmentationClass/, ImageSets/)"
    assert lines[-1] == f"(traceback in {tmp_path / 'w' / 'log.txt'})"
    assert "Traceback" in (tmp_path / "w" / "log.txt").read_text()


def test_unexpected_errors_keep_their_traceback():
    from tool.engine.cli import run_cli, user_message

    def bug(argv):
        return [][1]

    with pytest.raises(IndexError):
        run_cli(bug, [])
    from tool.engine.config import ConfigError, load_config
    with pytest.raises(ConfigError) as e:
        load_config(str(ROOT / "no_such.yaml"), [])
    assert user_message(e.value) == str(e.value)
    # an error of ours re-raised from a DataLoader worker is judged by its original traceback
    src = ROOT / "tool" / "data" / "imutils.py"
    line = 1 + next(n for n, t in enumerate(src.read_text().splitlines()) if t.strip().startswith("raise BadImage"))
    text = (f'Caught BadImageError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n'
            f'  File "{src}", line {line}, in read_image\n    raise BadImageError(...)\n'
            'tool.data.imutils.BadImageError: x.jpg: cannot decode image (broken)\n')
    assert user_message(RuntimeError(text)) == "x.jpg: cannot decode image (broken)"
    assert user_message(RuntimeError(text.replace(f"line {line}", f"line {line - 1}"))) is None   # not a raise


# ---- 8. pickles from strangers ---------------------------------------------------------------------

class _Payload:
    """Unpickling this runs ``touch <path>``: what a malicious .npy or checkpoint could do."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_pickle_payload_in_a_npy_cam_is_refused(tmp_path):
    ran = tmp_path / "payload_ran"
    cams = tmp_path / "their_cams"
    cams.mkdir()
    run_sample.main(smoke_args(tmp_path, "--steps", "report"))        # makes the toy world (no training)
    ids = (tmp_path / "toy" / "VOC2012" / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    for i in ids:
        np.save(cams / f"{i}.npy", {"keys": np.array([0]), "high_res": np.zeros((1, 2, 2)), "x": _Payload(ran)},
                allow_pickle=True)
    from tool.engine.io import UnsafeFile
    with pytest.raises(UnsafeFile, match=rf"{cams / ids[0]}.npy: an IRN-style .npy CAM is a Python pickle.*"
                                         "eval.allow_pickle_cams: true"):
        run_sample.main(smoke_args(tmp_path, "--steps", "eval_cam", "--set", f"eval.cam_dir={cams}"))
    assert not ran.exists()


def test_pickle_payload_in_a_checkpoint_is_refused(tmp_path):
    from tool.engine.checkpoint import load_checkpoint
    from tool.engine.io import UnsafeFile

    ran = tmp_path / "payload_ran"
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = tmp_path / "train_cam.pth"
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 1, "epoch": 0, "digest": "d",
                "rng": {"python": _Payload(ran)}}, ck)
    with pytest.raises(UnsafeFile, match=f"{ck}: refusing to load this checkpoint.*GLOBAL posix.system"):
        load_checkpoint(ck, model=model, optimizer=opt, digest="d")
    assert not ran.exists() and ck.is_file()
    from tool.engine.checkpoint import load_model_file  # a "model" file with a payload: refused the same way
    torch.save({"weight": torch.zeros(1), "x": _Payload(ran)}, tmp_path / "model.pth")
    with pytest.raises(UnsafeFile, match="ritc.init: .*model.pth is not a plain state dict.*posix.system"):
        load_model_file(tmp_path / "model.pth", "ritc.init")
    assert not ran.exists()


# ---- 5. a skipped bad image, carried through every step ----------------------------------------------

@pytest.mark.slow
def test_skipped_bad_image_is_left_out_by_every_step_and_reported(tmp_path):
    """With dataset.skip_bad_images: true, an unreadable training image that is also in the eval split is
    skipped by qape (the first step to read it), recorded once in skipped_images.jsonl, left out by every
    later step (train_ritc no longer misses its texts, eval_cam and cam_to_ir_label no longer miss its CAM)
    and listed in the report."""

    every_but_deeplab = ",".join(s for s in run_sample.STEPS if "deeplab" not in s)   # (val split: not the victim's)
    args = smoke_args(tmp_path, "--steps", every_but_deeplab, "--set", "dataset.skip_bad_images=true")
    run_sample.main(smoke_args(tmp_path, "--steps", "report"))          # the toy world, untouched
    root = tmp_path / "toy" / "VOC2012"
    victim = (root / "ImageSets" / "Segmentation" / "train.txt").read_text().split()[0]
    (root / "JPEGImages" / f"{victim}.jpg").write_bytes(b"not a jpeg at all")
    out = run_sample.main(args)
    work = tmp_path / "work"
    recs = [json.loads(x) for x in (work / "skipped_images.jsonl").read_text().splitlines()]
    assert [(r["image"], r["step"]) for r in recs] == [(victim, "qape")]
    assert out["qape"]["skipped_bad"] == 1
    for step in ("make_cam", "cam_to_ir_label", "make_sem_seg"):
        assert out[step]["skipped_bad"] == 0 and out[step]["made"] == 11, step     # 12 train_aug images, 1 left out
    for f in (f"cam/{victim}.npz", f"cam_baseline/cam/{victim}.npz", f"ir_label/{victim}.png",
              f"sem_seg/{victim}.png"):
        assert not (work / f).exists(), f
    assert out["eval_cam"]["num_images"] == 7 and out["eval_cam"]["skipped_bad"] == 1
    assert read_json(work / "eval_sem_seg.json")["num_images"] == 7
    assert out["train_ritc"]["num_images"] == 11 and out["train_irn"]["num_images"] == 11
    assert out["report"]["skipped_images"] == [victim]
    page = (work / "report.html").read_text()
    assert "Skipped unreadable images (1)" in page and victim in page


# ---- 4. temp files, modes, metrics.jsonl -----------------------------------------------------------

def test_temp_files_modes_and_metrics_lines_survive_kills(tmp_path, monkeypatch):
    import tool.engine.runner

    work = tmp_path / "work"
    run_sample.main(smoke_args(tmp_path, "--steps", "report"))
    # what SIGKILLed writers leave: atomic_path temp files in checkpoints/, a model folder, steps/
    leaks = [work / "checkpoints" / ".train_cam.k3j2.tmp.pth", work / "cam_baseline" / ".model.x9.tmp.pth",
             work / "steps" / ".train_cam.done.a1.tmp.json"]
    for p in leaks:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half")
    # a kill mid-append of metrics.jsonl, then one between the marker and its metrics line
    metrics = work / "metrics.jsonl"
    metrics.write_bytes(metrics.read_bytes() + b'{"step": "torn", "secon')
    real_append = tool.engine.runner.append_jsonl

    def killed(path, record):
        raise KeyboardInterrupt

    monkeypatch.setattr(tool.engine.runner, "append_jsonl", killed)
    with pytest.raises(KeyboardInterrupt):
        run_sample.main(smoke_args(tmp_path, "--steps", "report", "--force"))
    monkeypatch.setattr(tool.engine.runner, "append_jsonl", real_append)
    marker = read_json(work / "steps" / "report.done.json")
    assert not any(p.exists() for p in leaks)
    run_sample.main(smoke_args(tmp_path, "--steps", "report"))            # up to date: skipped
    lines = [json.loads(x) for x in metrics.read_text().splitlines()]     # every line parses: torn tail cut
    assert [x["step"] for x in lines] == ["report", "report"]
    assert lines[1]["run_id"] == marker["run_id"] and lines[1]["recovered"] is True
    old = os.umask(0o022)
    try:
        run_sample.main(smoke_args(tmp_path, "--steps", "report", "--force"))
    finally:
        os.umask(old)
    for f in (work / "steps" / "report.done.json", work / "report.html", work / "config.yaml"):
        assert f.stat().st_mode & 0o777 == 0o644, f


def test_files_of_writers_that_recreate_them_and_model_folders_follow_the_umask(tmp_path):
    """safetensors deletes and recreates the file it writes (0600 whatever the umask); HF ``save_pretrained``
    does too, in a ``mkdtemp`` folder (0700): colleagues sharing a work dir could not read them."""
    from safetensors.torch import save_file

    from tool.engine.io import atomic_path
    from tool.toy.tiny_models import write_tiny_blip, write_tiny_clip

    old = os.umask(0o002)
    try:
        with atomic_path(tmp_path / "qape" / "text_feats.x.safetensors") as tmp:
            save_file({"feats": torch.zeros(2, 3)}, str(tmp))
        write_tiny_clip(tmp_path / "models" / "clip")
        write_tiny_blip(tmp_path / "models" / "blip")
    finally:
        os.umask(old)
    assert (tmp_path / "qape" / "text_feats.x.safetensors").stat().st_mode & 0o777 == 0o664
    files = [p for p in (tmp_path / "models").rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"model.safetensors", "open_clip_model.safetensors", "config.json"}
    assert {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777) for p in files
            if p.stat().st_mode & 0o777 != 0o664} == {}
    assert all(d.stat().st_mode & 0o777 == 0o775 for d in (tmp_path / "models").rglob("*") if d.is_dir())


# ---- 6. data edge cases that misread silently --------------------------------------------------------

def test_voc_label_cache_follows_edited_xml(tmp_path):
    from tests.test_voc12 import XML, make_voc
    from voc12.dataset import VOC12, XML_NAMES

    root = make_voc(tmp_path)
    cache = tmp_path / "cache"
    assert VOC12(root, cache).labels(["a"])[0, XML_NAMES.index("person")] == 1
    xml = root / "Annotations" / "a.xml"
    xml.write_text(XML.replace("person", "horse").format(id="a"))
    os.utime(xml, ns=(xml.stat().st_atime_ns, xml.stat().st_mtime_ns + 10**9))
    lab = VOC12(root, cache).labels(["a"])[0]
    assert lab[XML_NAMES.index("horse")] == 1 and lab[XML_NAMES.index("person")] == 0


@pytest.mark.parametrize("encoding,text", [("utf-8-sig", "a\nb\n"), ("utf-16", "a\r\nb\r\n"),
                                            ("utf-8", "# my subset\na  # first\n\nb\n")])
def test_voc_split_lists_bom_utf16_and_comments(tmp_path, encoding, text):
    from tests.test_voc12 import make_voc
    from voc12.dataset import VOC12

    root = make_voc(tmp_path)
    (root / "ImageSets/Segmentation/train.txt").write_bytes(text.encode(encoding))
    assert VOC12(root).ids("train") == ["a", "b"]


def test_voc_split_list_duplicates_and_bad_encoding_name_the_file(tmp_path):
    from tests.test_voc12 import make_voc
    from voc12.dataset import VOC12, DatasetError

    root = make_voc(tmp_path)
    lst = root / "ImageSets/Segmentation/train.txt"
    lst.write_text("a\nb\na\n")
    with pytest.raises(DatasetError, match=rf"{lst} lists image\(s\) \['a'\] more than once"):
        VOC12(root).ids("train")
    lst.write_bytes(b"a\n\xff\xfe\xfa\n")
    with pytest.raises(DatasetError, match=f"{lst}: not a UTF-8 or UTF-16 text file"):
        VOC12(root).ids("train")


def test_coco_repeated_file_names_are_refused(tmp_path):
    from coco14.dataset import COCO14, DatasetError
    from tests.test_coco14 import TRAIN_ANNS, image, instances, write_coco

    twin = dict(image(30), file_name=image(10)["file_name"])
    root = write_coco(tmp_path / "COCO", instances(TRAIN_ANNS, [twin, image(10), image(20)]))
    with pytest.raises(DatasetError, match="images 10 and 30 have the same file_name stem 'COCO_train2014_0+10'"):
        COCO14(root).ids("train")


def test_make_cam_of_an_image_without_classes_is_empty_and_evaluates_as_background():
    from net.resnet50_cam import CAMNet
    from tool.seg.cam_infer import multiscale_cam
    from tool.seg.metrics import ThresholdSweep

    torch.manual_seed(0)
    model = CAMNet(20, pretrained=None).eval()
    img = torch.randint(0, 255, (3, 33, 41), dtype=torch.uint8)
    strided, high = multiscale_cam(model, [img], torch.zeros(0, dtype=torch.long), (33, 41), torch.device("cpu"))
    assert strided.shape == (0, 9, 11) and high.shape == (0, 33, 41)
    sweep = ThresholdSweep(np.array([0.1, 0.2], np.float32), 21)
    sweep.add(high.numpy(), np.zeros(0, np.int64), np.ones((33, 41), np.uint8))
    assert sweep.confusions()[0][1, 0] == 33 * 41          # every pixel predicted background


def test_eval_deeplab_names_the_image_on_size_or_range_errors(tmp_path):
    from step.eval_deeplab import named_confusion
    from tool.data.palette import save_label_png

    gt = tmp_path / "gt.png"
    save_label_png(gt, np.full((4, 5), 30, np.uint8))
    with pytest.raises(ValueError, match=f"pred.png vs its GT {gt}: GT label 30 out of range"):
        named_confusion(np.zeros((4, 5), np.uint8), gt, 21, tmp_path / "pred.png")
    with pytest.raises(ValueError, match=f"pred.png vs its GT {gt}: prediction shape"):
        named_confusion(np.zeros((5, 4), np.uint8), gt, 21, tmp_path / "pred.png")


def test_exif_orientation_is_ignored_and_said_once(tmp_path, caplog):
    from PIL import Image

    import tool.data.imutils as imutils

    caplog.set_level("INFO")
    imutils._EXIF_NOTED.clear()
    exif = Image.Exif()
    exif[0x0112] = 6                                   # "rotate 90 CW to display"
    for n in range(2):
        Image.new("RGB", (6, 4), (n, 0, 0)).save(tmp_path / f"{n}.jpg", exif=exif.tobytes())
    a = imutils.read_image(tmp_path / "0.jpg")
    imutils.read_image(tmp_path / "1.jpg")
    assert a.shape == (4, 6, 3)                        # stored pixels, not turned upright
    assert caplog.text.count("EXIF orientation 6: ignored") == 1


def test_pickle_payload_or_torn_file_as_pretrained_weights_is_one_named_line(tmp_path):
    """Every ``*.pretrained`` weight path (and ``deeplab_eval.model``, the mask-prompt checkpoint) is read by the
    one safe reader: a payload is refused without running, a torn file named, each in one line."""
    from net.clip_mask import _read_checkpoint
    from net.deeplab import DeepLabV2, DeepLabV2MSC, load_trained
    from net.deeplab import load_pretrained as deeplab_pretrained
    from net.resnet50 import ResNet50, load_pretrained
    from net.weights import UnreadableWeights
    from net.wr38 import load_wr38_pretrained
    from tool.engine.cli import user_message

    ran = tmp_path / "payload_ran"
    evil = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "x": _Payload(ran)}, evil)
    torn = tmp_path / "torn.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, torn)
    _tear(torn)
    loaders = {"cam.pretrained": lambda p: load_pretrained(ResNet50(), p, "cam.pretrained"),
               "deeplab.pretrained": lambda p: deeplab_pretrained(DeepLabV2(3, blocks=(1, 1, 1, 1)), p, "torchvision"),
               "deeplab_eval.model": lambda p: load_trained(DeepLabV2MSC(DeepLabV2(3, blocks=(1, 1, 1, 1))), p,
                                                            "deeplab_eval.model"),
               "deeplab.pretrained (wr38)": lambda p: load_wr38_pretrained(None, str(p)),
               "clip.mask_prompt_checkpoint": lambda p: _read_checkpoint(p)}
    for what, load in loaders.items():
        key = what.split()[0]
        for path, why in ((evil, "is not a plain state dict: loading it would run code it names"),
                          (torn, "cannot be read as torch weights")):
            with pytest.raises(UnreadableWeights) as e:
                load(path)
            msg = user_message(e.value)
            assert msg is not None and msg.startswith(f"{key}: {path} {why}") and "\n" not in str(e.value), (what, msg)
    assert not ran.exists()


def test_damaged_clip_config_json_is_named(tmp_path):
    from net.clip import load_clip
    from tool.engine.cli import user_message
    from tool.toy.tiny_models import write_tiny_clip

    folder = write_tiny_clip(tmp_path / "clip")
    (folder / "open_clip_config.json").write_text('{"model_cfg": {"embed_dim": 32,')
    with pytest.raises(ValueError) as e:
        load_clip(str(folder), config_key="clip")
    assert user_message(e.value).startswith(f"clip.model: {folder / 'open_clip_config.json'} is not valid JSON")
    arch = tmp_path / "my-vit.json"
    arch.write_text("{")
    with pytest.raises(ValueError, match=f"clip.model: {arch} is not valid JSON"):
        load_clip(str(arch), "x.pt", config_key="clip")


def test_a_run_refused_by_the_lock_writes_nothing_into_the_holders_log(tmp_path):
    from tool.engine.cli import run_cli

    work = tmp_path / "work"
    work.mkdir()
    (work / "log.txt").write_text("the holder's log\n")
    with work_dir_held(work):
        assert run_cli(run_sample.main, smoke_args(tmp_path, "--steps", "train_cam")) == 2
    assert (work / "log.txt").read_text() == "the holder's log\n"


@pytest.mark.slow
def test_sigterm_is_logged_leaves_no_torn_checkpoint_and_resumes(tmp_path, monkeypatch, capsys):
    """SIGTERM (a scheduler ending the job) in the middle of writing train_cam's step-2 checkpoint: one line and
    status 143, a log line, no temp file, the step-1 checkpoint intact, no marker; the next run resumes from
    step 1 (default handling ended the process without a word). The handler is gone after the run."""
    import signal
    import time

    from tool.engine import checkpoint
    from tool.engine.cli import run_cli
    from tool.engine.io import atomic_path

    real, n = checkpoint.write_bytes, [0]

    def dying(path, data, durable=True):
        n[0] += str(path).endswith("checkpoints/train_cam.pth")
        if n[0] == 2:
            with atomic_path(path) as tmp:
                tmp.write_bytes(data[: len(data) // 2])
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(30)                      # the handler raises before this ends
        return real(path, data, durable)

    monkeypatch.setattr(checkpoint, "write_bytes", dying)
    args = smoke_args(tmp_path, "--steps", "train_cam", "--set", "cam.train.max_steps=4", "--set", "cam.train.epochs=2",
                      "--set", "cam.train.checkpoint_every=1")
    assert run_cli(run_sample.main, args) == 143
    err = capsys.readouterr().err
    assert "\nstopped: SIGTERM; run the same command again to resume\n" in err and "Traceback" not in err
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    work = tmp_path / "work"
    assert "received SIGTERM" in (work / "log.txt").read_text()
    assert not [p for p in work.rglob("*") if p.name.startswith(".") and ".tmp" in p.name]
    assert torch.load(work / "checkpoints" / "train_cam.pth", weights_only=False)["step"] == 1
    assert not (work / "steps" / "train_cam.done.json").exists()
    monkeypatch.setattr(checkpoint, "write_bytes", real)
    out = run_sample.main(args)
    assert out["train_cam"]["steps"] == 4 and "resumed from" in (work / "log.txt").read_text()


def test_predict_unreadable_images_stop_or_are_skipped_as_the_error_says(tmp_path, capsys):
    """An empty file (no header) and a truncated JPEG (a header, no pixels) stop predict naming the file and
    how to skip; with ``dataset.skip_bad_images: true``, which the messages suggest, they are skipped and
    counted and the others predicted (predict ignored the key). ``--crf``'s help names the CRF keys as they are
    spelled now (``deeplab_eval.crf.*``)."""
    from PIL import Image

    from net.deeplab import build_model
    from tests.test_voc12 import make_voc
    from tool.data.imutils import BadImageError
    from tool.engine.config import load_config
    from tool.predict import main as predict

    sets = [f"work_dir={tmp_path / 'work'}", f"dataset.root={make_voc(tmp_path)}", "dataset.train_split=train",
            "toy.generate=false"]
    cfg = load_config(ROOT / "configs" / "smoke.yaml", sets)
    torch.save(build_model(cfg.deeplab, 21).state_dict(), tmp_path / "deeplab.pth")     # random weights will do
    new = tmp_path / "new"
    new.mkdir()
    Image.new("RGB", (20, 16), (90, 120, 30)).save(new / "good.jpg")
    (new / "empty.jpg").write_bytes(b"")
    noise = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)   # a long JPEG body
    Image.fromarray(noise).save(tmp_path / "whole.jpg", quality=95)
    data = (tmp_path / "whole.jpg").read_bytes()
    (new / "cut.jpg").write_bytes(data[: len(data) // 2])                            # the header is whole
    cmd = ["--config", str(ROOT / "configs" / "smoke.yaml"), *(a for s in sets for a in ("--set", s)),
           "--weights", str(tmp_path / "deeplab.pth"), "--images", str(new), "--out", str(tmp_path / "out")]
    with pytest.raises(ValueError, match=rf"{new / 'empty.jpg'}: cannot read the image .*--set "
                                         "dataset.skip_bad_images=true"):
        predict(cmd)
    (new / "empty.jpg").unlink()
    with pytest.raises(BadImageError, match=r"cut.jpg.*dataset.skip_bad_images: true"):
        predict(cmd)
    (new / "empty.jpg").write_bytes(b"")
    summary = predict([*cmd, "--set", "dataset.skip_bad_images=true"])
    assert summary["predicted"] == 1 and summary["skipped_bad"] == 2 and summary["images"] == 3
    assert (tmp_path / "out" / "good.png").is_file() and not (tmp_path / "out" / "cut.png").exists()
    assert "2 unreadable skipped" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        predict(["--help"])
    helptext = capsys.readouterr().out
    assert "deeplab_eval.crf.*" in helptext and "crf_" not in helptext


# ---- a sub-run outlives no one ----------------------------------------------------------------------

def test_killed_study_or_grid_stops_its_sub_run(tmp_path):
    """``run_child`` (the sub-runs of ``tool.stage_study`` and ``tool.ablate``): a parent stopped by SIGTERM stops
    its child before it exits (before, ``kill`` on a study left its ``run_sample.py`` running); a child's own exit
    code comes back as it is."""
    from tool.engine.runtime import run_child

    assert run_child([sys.executable, "-c", "import sys; sys.exit(3)"]) == 3
    pid_file = tmp_path / "child.pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    parent = subprocess.Popen([sys.executable, "-c", "import sys; from tool.engine.runtime import run_child; "
                               f"sys.exit(run_child([sys.executable, '-c', {child!r}]))"], cwd=ROOT)
    try:
        for _ in range(300):
            if pid_file.is_file() and pid_file.read_text():
                break
            time.sleep(0.1)
        child_pid = int(pid_file.read_text())
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=60) == 128 + signal.SIGTERM
        with pytest.raises(ProcessLookupError):   # stopped and reaped by the parent, not left running
            os.kill(child_pid, 0)
    finally:
        parent.kill()
        if pid_file.is_file() and pid_file.read_text():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
