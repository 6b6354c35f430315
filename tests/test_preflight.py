"""``run_sample.py --check`` (tool/preflight.py) on broken configs: every problem named with its key, in one run."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import run_sample
from tool.engine.config import load_config
from tool.preflight import MEMORY_MODEL_GB, Problem, artefact_bytes, preflight, train_memory_gb
from tool.toy.tiny_models import write_tiny_blip, write_tiny_clip
from tool.toy.world import generate_toy_world

ROOT = Path(__file__).resolve().parents[1]
ALL = list(run_sample.STEPS)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("pf")
    generate_toy_world(d / "VOC2012", num_train=6, num_val=3, num_extra_aug=2, image_size=(48, 64))
    write_tiny_clip(d / "clip")
    write_tiny_blip(d / "blip")
    torch.save({"conv1.weight": torch.zeros(1)}, d / "r50.pth")
    return d


def _sets(world: Path, tmp: Path, *extra: str) -> list[str]:
    """A config whose every input exists: the smoke config pointed at the module's world."""
    return [f"work_dir={tmp / 'work'}", "toy.generate=false", f"dataset.root={world / 'VOC2012'}",
            f"clip.model={world / 'clip'}", f"qape.vqa_model={world / 'blip'}", f"cam.pretrained={world / 'r50.pth'}",
            "irn.pretrained=cam_baseline", "deeplab.pretrained=cam_baseline", "device=cpu", *extra]


def _by_key(problems: list[Problem]) -> dict[str, list[Problem]]:
    out: dict[str, list[Problem]] = {}
    for p in problems:
        out.setdefault(p.key, []).append(p)
    return out


def test_good_config_has_no_fatal_problem(world, tmp_path):
    cfg = load_config(ROOT / "configs/smoke.yaml", _sets(world, tmp_path))
    assert [p for p in preflight(cfg, ALL, inputs_of=run_sample_inputs) if p.fatal] == []
    # a folder that is not a save_pretrained one: the only fatal problem
    cfg = load_config(ROOT / "configs/smoke.yaml", _sets(world, tmp_path, f"qape.vqa_model={world / 'clip'}"))
    assert [(p.key, p.fatal) for p in preflight(cfg, ALL) if p.fatal] == [("qape.vqa_model", True)]


def run_sample_inputs(step: str) -> tuple[str, ...]:
    from tool.engine.runner import step_module
    return tuple(getattr(step_module(step), "INPUTS", ()))


def test_every_problem_named_with_its_key_in_one_run(world, tmp_path, monkeypatch):
    broken = tmp_path / "VOC2012"
    shutil.copytree(world / "VOC2012", broken)
    victim = sorted((broken / "JPEGImages").glob("*.jpg"))[-1]    # an extra-aug image: only in train_aug
    victim.unlink()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)   # a CPU-only machine, even on a GPU host
    cfg = load_config(ROOT / "configs/smoke.yaml", _sets(
        world, tmp_path, f"dataset.root={broken}", f"cam.pretrained={tmp_path / 'nope.pth'}",
        "clip.model=ViT-Q-99", "clip.pretrained=openai", "device=cuda"))
    keys = _by_key(preflight(cfg, ALL))
    assert keys["dataset.train_split"][0].fatal and victim.stem in keys["dataset.train_split"][0].message
    assert "dataset.eval_split" not in keys                        # train.txt lacks the missing image
    assert keys["cam.pretrained"][0].fatal and "nope.pth" in keys["cam.pretrained"][0].message
    assert keys["clip.model"][0].fatal and "ViT-Q-99" in keys["clip.model"][0].message
    assert keys["device"][0].fatal and "CUDA is not available" in keys["device"][0].message

    cfg = load_config(ROOT / "configs/smoke.yaml", _sets(world, tmp_path, f"dataset.root={tmp_path / 'no_root'}"))
    keys = _by_key(preflight(cfg, ALL))
    assert keys["dataset.root"][0].fatal and "no_root" in keys["dataset.root"][0].message


def test_clip_activation_ambiguity_and_a_file_that_is_no_checkpoint(world, tmp_path):
    sd = tmp_path / "openai_vitl14.pt"
    torch.save({"x": torch.zeros(1)}, sd)
    text = tmp_path / "r50.pth"
    text.write_text("not weights")
    vitl = ("clip.model=ViT-L-14", f"clip.pretrained={sd}")
    cfg = load_config(ROOT / "configs/smoke.yaml", _sets(world, tmp_path, *vitl, f"cam.pretrained={text}"))
    keys = _by_key(preflight(cfg, ["train_cam", "text_feats"]))
    assert keys["clip.quick_gelu"][0].fatal and "OpenAI" in keys["clip.quick_gelu"][0].message
    assert keys["cam.pretrained"][0].fatal and "not a torch checkpoint" in keys["cam.pretrained"][0].message
    cfg = load_config(ROOT / "configs/smoke.yaml", _sets(world, tmp_path, *vitl, "clip.quick_gelu=true"))
    assert "clip.quick_gelu" not in _by_key(preflight(cfg, ["text_feats"]))


def test_unselected_input_steps_and_batch_against_world(world, tmp_path):
    cfg = load_config(ROOT / "configs/smoke.yaml", _sets(world, tmp_path, "ritc.train.batch_size=4"))
    inputs = {"make_cam": ("train_cam", "train_ritc"), "train_ritc": ("train_cam", "text_feats")}
    keys = _by_key(preflight(cfg, ["train_ritc", "make_cam"], inputs_of=lambda s: inputs.get(s, ()), world_size=2))
    assert {"steps.train_cam", "steps.text_feats"} <= set(keys) and "steps.train_ritc" not in keys
    # train_aug holds 6 + 2 = 8 images: 8 // (4 · 2) = 1 step; at 3 ranks none
    assert "ritc.train.batch_size" not in keys
    keys = _by_key(preflight(cfg, ["train_ritc"], world_size=3))
    assert "8 training images < batch 4 × 3 rank(s)" in keys["ritc.train.batch_size"][0].message


def test_check_flag_prints_all_and_exits_non_zero(world, tmp_path, capsys):
    argv = ["--config", str(ROOT / "configs/smoke.yaml"), "--check", "--steps", "train_cam,text_feats"]
    for s in _sets(world, tmp_path, f"cam.pretrained={tmp_path / 'nope.pth'}", "clip.model=ViT-Q-99"):
        argv += ["--set", s]
    with pytest.raises(SystemExit) as e:
        run_sample.main(argv)
    assert e.value.code == 1
    out = capsys.readouterr().out
    # text_feats reads qape's answers, and qape is neither selected nor done
    assert "FATAL cam.pretrained:" in out and "FATAL clip.model:" in out and "FATAL steps.qape:" in out
    assert "3 fatal" in out
    assert not (tmp_path / "work").exists()                  # nothing written


def test_memory_and_disk_estimates_follow_their_formulas(tmp_path):
    cfg = load_config(ROOT / "configs/voc12.yaml")
    assert MEMORY_MODEL_GB["train_ritc"] == (2.0, 0.464, 3 * 0.357)
    # batch 8, crop 512: 1.2 · (2.0 + 8 · (0.464 + 1.071)) + 0.5 = 17.636 GB
    assert train_memory_gb(cfg, "train_ritc") == pytest.approx(17.636)
    # crop 256 and CLIP checkpointing: 1.2 · (2.0 + 8 · (0.464 / 4 + 0.084)) + 0.5 = 1.2 · 3.6 + 0.5 = 4.82
    cfg2 = load_config(ROOT / "configs/voc12.yaml", ["ritc.train.crop_size=256", "clip.grad_checkpointing=true"])
    assert train_memory_gb(cfg2, "train_ritc") == pytest.approx(4.82)
    # DeepLab batch 5 in 5 micro-batches, crop 321: 1.2 · (0.53 + 1 · 1.344) + 0.5 = 2.7488
    cfg3 = load_config(ROOT / "configs/voc12.yaml", ["deeplab.accum_steps=5"])
    assert train_memory_gb(cfg3, "train_deeplab") == pytest.approx(2.7488)
    # make_cam of 10 train + 4 eval images of 1000 px: 1.5 B/px fp16 → 21,000 B; IR labels 0.1 B/px · 10
    assert artefact_bytes(cfg, ["make_cam"], 10, 4, 1000.0) == 21000
    assert artefact_bytes(cfg, ["make_cam", "cam_to_ir_label"], 10, 4, 1000.0) == 22000


def test_gpu_memory_against_the_estimate(world, tmp_path, monkeypatch):
    """A (pretended) GPU with 4 GB free: RITC at batch 8 / crop 512 is over its estimate, batch 1 / crop 128 not."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: (4e9, 80e9))
    cfg = load_config(ROOT / "configs/smoke.yaml", _sets(world, tmp_path, "device=cuda", "ritc.train.batch_size=8",
                                                         "ritc.train.crop_size=512"))
    need = train_memory_gb(cfg, "train_ritc")
    assert need > 4
    keys = _by_key(preflight(cfg, ["train_ritc"]))
    assert keys["ritc.train.batch_size"][0].fatal and f"about {need:.1f} GB" in keys["ritc.train.batch_size"][0].message
    assert "4.0 of 80.0 GB free" in keys["ritc.train.batch_size"][0].message
    cfg = load_config(ROOT / "configs/smoke.yaml", _sets(world, tmp_path, "device=cuda:0", "ritc.train.batch_size=1",
                                                         "ritc.train.crop_size=128", "clip.grad_checkpointing=true"))
    assert train_memory_gb(cfg, "train_ritc") < 4
    assert "ritc.train.batch_size" not in _by_key(preflight(cfg, ["train_ritc"]))
    cfg = load_config(ROOT / "configs/smoke.yaml", _sets(world, tmp_path, "device=cuda:3"))
    assert "1 GPU(s)" in _by_key(preflight(cfg, ["train_cam"]))["device"][0].message


def test_paper_assets_unset_or_changed_are_notes(world, tmp_path, capsys):
    """`--check` on configs/voc12.yaml names the ovseg mask-prompt checkpoint (unset there) as a note; every other
    paper asset a config changes is named too, never fatal; a toy-world config gets none."""
    from tool.preflight import paper_asset_notes

    voc = ROOT / "configs/voc12.yaml"
    notes = paper_asset_notes(load_config(voc), ALL)
    assert [(p.key, p.fatal) for p in notes] == [("clip.mask_prompt_checkpoint", False)]
    assert "ovseg_swinbase_vitL14_ft_mpt.pth" in notes[0].message and "docs/reproduce.md#assets" in notes[0].message
    ckpt = tmp_path / "ovseg.pth"
    ckpt.write_bytes(b"")
    changed = load_config(voc, [f"clip.mask_prompt_checkpoint={ckpt}", "clip.mask_prompt_depth=2",
                                "clip.pretrained=laion2b_s32b_b82k", "qape.vqa_model=Salesforce/blip-vqa-base",
                                "irn.pretrained=cam_baseline", "deeplab.pretrained=cam_baseline",
                                "dataset.train_split=train", "dataset.eval_split=val"])
    assert [p.key for p in paper_asset_notes(changed, ALL)] == [
        "clip.mask_prompt_depth", "clip.pretrained", "qape.vqa_model", "irn.pretrained", "deeplab.pretrained",
        "dataset.train_split", "dataset.eval_split"]
    # only the selected steps' assets; values it cannot judge (a model folder, a file) are left alone
    assert paper_asset_notes(changed, ["eval_cam"])[0].key == "dataset.eval_split"
    assert paper_asset_notes(load_config(voc, ["clip.model=ViT-B-16", f"qape.vqa_model={world / 'blip'}",
                                               f"clip.mask_prompt_checkpoint={ckpt}"]), ALL)[0].key == "clip.model"
    assert paper_asset_notes(load_config(voc, [f"clip.model={world / 'clip'}", f"qape.vqa_model={world / 'blip'}",
                                               f"clip.mask_prompt_checkpoint={ckpt}"]), ALL) == []
    wr38 = load_config(ROOT / "configs/voc12_wr38.yaml", ["deeplab.pretrained=null"])
    assert [p.key for p in paper_asset_notes(wr38, ["train_deeplab"])] == ["deeplab.pretrained"]
    assert paper_asset_notes(load_config(ROOT / "configs/smoke.yaml"), ALL) == []
    # through run_sample.py --check: the note is printed (the absent VOC data is what is fatal here)
    with pytest.raises(SystemExit):
        run_sample.main(["--config", str(voc), "--check", "--steps", "train_ritc", "--set", "device=cpu",
                         "--set", f"dataset.root={tmp_path / 'no_voc'}", "--set", f"work_dir={tmp_path / 'w'}"])
    out = capsys.readouterr().out
    assert "note  clip.mask_prompt_checkpoint: unset: the paper's RITC uses the ovseg mask-prompt CLIP" in out


def test_inputs_follow_the_config(world, tmp_path):
    """``make_cam.source: baseline`` reads no RITC model, ``deeplab_eval.model: <path>`` no train_deeplab,
    ``deeplab.label_dir`` no pseudo masks: configs that run are not refused for steps they do not need."""
    from tool.engine.runner import step_needs

    model = tmp_path / "deeplab.pth"
    torch.save({"x": torch.zeros(1)}, model)
    cfg = load_config(ROOT / "configs/smoke.yaml", _sets(world, tmp_path, "make_cam.source=baseline",
                                                         f"deeplab_eval.model={model}"))
    keys = _by_key(preflight(cfg, ["train_cam", "make_cam", "eval_cam", "eval_deeplab"],
                             inputs_of=lambda s: step_needs(s, cfg)))
    assert not [k for k in keys if k.startswith("steps.")], keys
    keys = _by_key(preflight(cfg, ["make_cam"], inputs_of=lambda s: step_needs(s, cfg)))
    assert list(k for k in keys if k.startswith("steps.")) == ["steps.train_cam"]
    ritc = load_config(ROOT / "configs/smoke.yaml", _sets(world, tmp_path, "make_cam.compare_baseline=false"))
    assert step_needs("make_cam", ritc) == ("train_ritc",) and step_needs("eval_deeplab", ritc) == ("train_deeplab",)
    assert step_needs("train_deeplab", ritc) == ("make_sem_seg", "train_cam")      # pretrained: cam_baseline
    own = load_config(ROOT / "configs/smoke.yaml", _sets(world, tmp_path, "deeplab.label_dir=/x",
                                                         "deeplab.pretrained=null", "irn.pretrained=null"))
    assert step_needs("train_deeplab", own) == () and step_needs("train_irn", own) == ("cam_to_ir_label",)
    assert step_needs("report", own) == () and step_needs("qape", own) == ()


def test_gt_masks_of_evaluated_splits_are_checked(world, tmp_path):
    """Every GT mask of an evaluated split: all there or none, class indices (not an RGB colour mask), its
    image's size, values in range; a split where some images lack a mask is fatal, one with none a note."""
    from PIL import Image

    from tool.data.palette import save_label_png

    voc = tmp_path / "VOC2012"
    shutil.copytree(world / "VOC2012", voc)
    ids = (voc / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    seg = voc / "SegmentationClass"
    Image.new("RGB", (64, 48), (128, 0, 0)).save(seg / f"{ids[0]}.png")             # a colour mask
    save_label_png(seg / f"{ids[1]}.png", np.zeros((24, 32), np.uint8))             # half size
    save_label_png(seg / f"{ids[2]}.png", np.full((48, 64), 30, np.uint8))          # class 30 of 20
    cfg = load_config(ROOT / "configs/smoke.yaml", _sets(world, tmp_path, f"dataset.root={voc}"))
    found = [p for p in preflight(cfg, ["eval_cam"], decode_sample=10) if p.key == "dataset.eval_split"]
    text = "\n".join(p.line() for p in found)
    assert all(p.fatal for p in found) and len(found) == 3, text
    assert "1 of 6 GT masks are not class-index masks" in text and f"{ids[0]}.png is mode RGB" in text
    assert f"{ids[1]}.png is 32×24, its image {voc / 'JPEGImages' / ids[1]}.jpg 64×48" in text
    assert f"{ids[2]}.png holds [30]" in text and "outside 0..20 and 255" in text

    (seg / f"{ids[0]}.png").unlink()                                                 # some masks missing
    found = [p for p in preflight(cfg, ["eval_cam"]) if p.key == "dataset.eval_split" and "no GT mask" in p.message]
    assert len(found) == 1 and found[0].fatal and "1 of 6 images have no GT mask" in found[0].message
    for i in ids:                                                                    # no mask at all: a note
        (seg / f"{i}.png").unlink(missing_ok=True)
    found = [p for p in preflight(cfg, ["eval_cam"]) if p.key == "dataset.eval_split"]
    assert [p.fatal for p in found] == [False] and "evaluation is skipped" in found[0].message


def test_eval_cam_blames_a_gt_mask_of_the_wrong_size(world, tmp_path):
    from step.eval_cam import evaluate
    from tool.data.palette import save_label_png
    from tool.engine.io import save_npz
    from voc12.dataset import VOC12

    voc = tmp_path / "VOC2012"
    shutil.copytree(world / "VOC2012", voc)
    ids = (voc / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    cams = tmp_path / "cams"
    for i in ids:
        save_npz(cams / f"{i}.npz", keys=np.zeros(1, np.int64), cam=np.zeros((1, 12, 16), np.float16),
                 high_res=np.zeros((1, 48, 64), np.float16))
    save_label_png(voc / "SegmentationClass" / f"{ids[3]}.png", np.zeros((24, 32), np.uint8))
    cfg = load_config(ROOT / "configs/smoke.yaml", _sets(world, tmp_path, f"dataset.root={voc}"))
    with pytest.raises(ValueError, match=rf"GT mask .*{ids[3]}.png is 24×32 \(H×W\), its image .*{ids[3]}.jpg 48×64: "
                                         "the mask belongs to another image"):
        evaluate(cfg, VOC12(voc), cams, tmp_path / "out.json")
