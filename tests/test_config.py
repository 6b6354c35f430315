"""Config loading: every shipped YAML loads; unknown keys and bad types fail naming the key; overrides."""
from __future__ import annotations

from pathlib import Path

import pytest

from tool.engine.config import PRECISION_KEYS, Config, ConfigError, dump_yaml, load_config, section_digest

ROOT = Path(__file__).resolve().parents[1]

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads_and_round_trips(path, tmp_path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    again = tmp_path / "resolved.yaml"
    again.write_text(dump_yaml(cfg))
    assert load_config(again) == cfg


def test_shipped_configs_exist():
    assert {p.name for p in CONFIGS} >= {"voc12.yaml", "smoke.yaml", "demo.yaml"}


def test_voc12_has_the_paper_settings():
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "voc12.yaml")
    t = cfg.cam.train
    assert (t.batch_size, t.epochs, t.lr, t.weight_decay) == (16, 5, 0.1, 1e-4)
    assert cfg.cam.train.crop_size == 512 and cfg.cam.resize_long == (320, 640)
    assert cfg.make_cam.scales == (1.0, 0.5, 1.5, 2.0)
    assert cfg.dataset.train_split == "train_aug" and cfg.dataset.eval_split == "train"


def _write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_unknown_key_names_key_and_file(tmp_path):
    p = _write(tmp_path, "cam:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"c\.yaml.*'cam\.lrr'"):
        load_config(p)


def test_unknown_top_level_key(tmp_path):
    with pytest.raises(ConfigError, match="'work_dri'"):
        load_config(_write(tmp_path, "work_dri: x\n"))


def test_bad_type_names_key(tmp_path):
    with pytest.raises(ConfigError, match=r"'cam\.train\.batch_size' expects int, got 'sixteen'"):
        load_config(_write(tmp_path, "cam:\n  batch_size: sixteen\n"))
    with pytest.raises(ConfigError, match=r"'cam\.train\.epochs' expects int"):
        load_config(_write(tmp_path, "cam:\n  epochs: 2.5\n"))
    with pytest.raises(ConfigError, match=r"'steps\.eval_cam' expects bool"):
        load_config(_write(tmp_path, "steps:\n  eval_cam: 1\n"))
    with pytest.raises(ConfigError, match=r"'cam\.resize_long' expects 2 values"):
        load_config(_write(tmp_path, "cam:\n  resize_long: [320]\n"))


def test_int_is_accepted_for_float_and_null_for_optional(tmp_path):
    cfg = load_config(_write(tmp_path, "cam:\n  lr: 1\n  pretrained: null\n"))
    assert cfg.cam.train.lr == 1.0 and isinstance(cfg.cam.train.lr, float)
    assert cfg.cam.pretrained is None


def test_exponent_without_dot_is_a_float(tmp_path):
    # YAML 1.1 (PyYAML) reads 1e-2 as the string "1e-2"; a float key takes it as 0.01, a str key keeps it
    cfg = load_config(_write(tmp_path, "cam:\n  lr: 1e-2\n"),
                      ["ritc.train.lr=3.5E-4", "deeplab.train.lr=.5", "cam.pretrained=1e-2"])
    assert cfg.cam.train.lr == 0.01 and cfg.ritc.train.lr == 3.5e-4 and cfg.deeplab.train.lr == 0.5
    assert cfg.cam.pretrained == "1e-2"
    with pytest.raises(ConfigError, match=r"'cam\.train\.lr' expects float, got '1e-2x'"):
        load_config(_write(tmp_path, "cam:\n  lr: 1e-2x\n"))


def test_overrides_are_type_checked(tmp_path):
    p = _write(tmp_path, "cam:\n  lr: 0.1\n")
    cfg = load_config(p, ["cam.train.lr=0.05", "make_cam.scales=[1.0, 0.5]", "work_dir=/tmp/x", "cam.pretrained=null"])
    assert cfg.cam.train.lr == 0.05 and cfg.make_cam.scales == (1.0, 0.5) and cfg.work_dir == "/tmp/x"
    assert cfg.cam.pretrained is None
    with pytest.raises(ConfigError, match=r"'cam\.train\.epochs' expects int"):
        load_config(p, ["cam.train.epochs=many"])
    with pytest.raises(ConfigError, match=r"'cam\.nope'"):
        load_config(p, ["cam.nope=1"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(p, ["cam.train.lr"])


def test_config_is_frozen(tmp_path):
    cfg = load_config(_write(tmp_path, "{}\n"))
    with pytest.raises(AttributeError):
        cfg.cam.train.lr = 3  # type: ignore[misc]


def test_digest_depends_only_on_named_sections(tmp_path):
    p = _write(tmp_path, "{}\n")
    a, b = load_config(p), load_config(p, ["eval.cam_threshold=0.2"])
    assert section_digest(a, ("dataset", "cam")) == section_digest(b, ("dataset", "cam"))
    assert section_digest(a, ("eval",)) != section_digest(b, ("eval",))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "cam: [unclosed\n"))


def test_coco14_has_the_paper_settings():
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "coco14.yaml")
    assert cfg.dataset.name == "coco14" and cfg.dataset.train_split == "train" and cfg.dataset.val_split == "val"
    assert (cfg.ritc.alpha, cfg.ritc.beta, cfg.ritc.gamma, cfg.ritc.train.lr) == (30.0, 24.0, 0.2, 3.5e-4)
    assert (cfg.deeplab.train.batch_size, cfg.deeplab.train.max_steps) == (10, 100000)
    voc = load_config(Path(__file__).resolve().parents[1] / "configs" / "voc12.yaml")
    assert (voc.ritc.alpha, voc.ritc.beta, voc.ritc.gamma) == (10.0, 8.0, 0.2)
    assert (voc.deeplab.train.batch_size, voc.deeplab.train.max_steps, voc.deeplab.train.crop_size) == (5, 30000, 321)


# ---- inheritance, renamed keys, allowed values, the generated reference ---------------------------

def _file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_base_merges_sections_key_by_key_and_replaces_other_values(tmp_path):
    _file(tmp_path / "a.yaml", "seed: 3\ncam:\n  lr: 0.5\n  epochs: 7\n"
           "qape:\n  aliases: {dog: [puppy]}\n  image_size: 64\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    _file(sub / "b.yaml", "base: ../a.yaml\ncam:\n  epochs: 2\nqape:\n  aliases: {cat: [kitty]}\n")
    _file(sub / "c.yaml", "base: b.yaml\nseed: 9\n")
    cfg = load_config(sub / "c.yaml")
    assert (cfg.seed, cfg.cam.train.lr, cfg.cam.train.epochs, cfg.qape.image_size) == (9, 0.5, 2, 64)
    assert dict(cfg.qape.aliases) == {"cat": ("kitty",)}          # a mapping value is replaced whole
    assert cfg.cam.train.batch_size == Config().cam.train.batch_size           # untouched keys keep the defaults


def test_base_errors_name_the_file(tmp_path):
    _file(tmp_path / "a.yaml", "base: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"a\.yaml: key 'base': .*missing\.yaml does not exist"):
        load_config(tmp_path / "a.yaml")
    _file(tmp_path / "x.yaml", "base: y.yaml\n")
    _file(tmp_path / "y.yaml", "base: x.yaml\n")
    with pytest.raises(ConfigError, match="inherits from itself"):
        load_config(tmp_path / "x.yaml")
    _file(tmp_path / "n.yaml", "base: 3\n")
    with pytest.raises(ConfigError, match="key 'base' must be the file name"):
        load_config(tmp_path / "n.yaml")


def test_shipped_configs_inherit_the_paper_settings():
    voc, coco = load_config(ROOT / "configs/voc12.yaml"), load_config(ROOT / "configs/coco14.yaml")
    assert (coco.ritc.alpha, coco.ritc.beta) == (30.0, 24.0)
    assert (coco.deeplab.train.max_steps, coco.deeplab.train.batch_size) == (100000, 10)
    assert (coco.qape.image_batch, coco.irn.workers, coco.ritc.gamma) == (16, 8, 0.2)     # from voc12.yaml
    assert (voc.deeplab_eval.crf.bilateral_sxy, voc.irn.crf.bilateral_sxy) == (67.0, 50.0)
    demo = load_config(ROOT / "configs/demo.yaml")
    assert (demo.irn.exp_times, demo.irn.radius_train, demo.deeplab.atrous_rates) == (4, 5, (2, 4, 6, 8))


def test_renamed_keys_load_with_a_warning_naming_the_new_key(tmp_path, caplog):
    old = _file(tmp_path / "old.yaml", "irn:\n  crf: false\n  crf_t: 4\n  crf_bilateral_srgb: 7.0\n"
                 "deeplab_eval:\n  crf_gaussian_w: 2.0\n  crf_bilateral_xy: 50.0\n")
    with caplog.at_level("WARNING"):
        cfg = load_config(old)
    assert (cfg.irn.crf.enabled, cfg.irn.crf.iterations, cfg.irn.crf.bilateral_srgb) == (False, 4, 7.0)
    assert (cfg.deeplab_eval.crf.gaussian_compat, cfg.deeplab_eval.crf.bilateral_sxy) == (2.0, 50.0)
    assert cfg.deeplab_eval.crf.bilateral_srgb == 3.0          # the section's own default stays
    assert "key 'irn.crf_t' is now 'irn.crf.iterations'" in caplog.text
    assert "key 'deeplab_eval.crf_gaussian_w' is now 'deeplab_eval.crf.gaussian_compat'" in caplog.text
    both = _file(tmp_path / "both.yaml", "irn:\n  crf_t: 4\n  crf:\n    iterations: 5\n")
    with pytest.raises(ConfigError, match="both 'irn.crf_t' and its new name 'irn.crf.iterations'"):
        load_config(both)


def test_training_keys_moved_into_the_recipe_section(tmp_path, caplog):
    old = _file(tmp_path / "old.yaml", "cam:\n  batch_size: 4\n  momentum: 0.9\ndeeplab:\n  iterations: 77\n")
    with caplog.at_level("WARNING"):
        cfg = load_config(old, ["ritc.epochs=2"])
    assert (cfg.cam.train.batch_size, cfg.cam.train.momentum, cfg.cam.train.epochs) == (4, 0.9, 5)
    assert (cfg.deeplab.train.max_steps, cfg.deeplab.train.epochs, cfg.deeplab.train.crop_size) == (77, None, 321)
    assert (cfg.ritc.train.epochs, cfg.ritc.train.batch_size) == (2, 8)      # the section's own defaults stay
    assert "key 'deeplab.iterations' is now 'deeplab.train.max_steps'" in caplog.text
    assert "key 'ritc.epochs' is now 'ritc.train.epochs'" in caplog.text


def test_old_switch_override_keeps_the_section(tmp_path):
    path = _file(tmp_path / "c.yaml", "irn:\n  crf:\n    iterations: 3\n")
    cfg = load_config(path, ["irn.crf=false", "irn.crf_gt_prob=0.9"])
    assert (cfg.irn.crf.enabled, cfg.irn.crf.iterations, cfg.irn.crf.gt_prob) == (False, 3, 0.9)


# Every allowed-value key: the loader is the one place it is checked (steps and tools trust the config).
@pytest.mark.parametrize("key, value, choices", [
    ("make_cam.dtype", "float64", "float16, float32"),
    ("deeplab.arch", "v3", "v2_resnet101, v1_wr38"),
    *((key, "fp16", "float32, bfloat16") for key in PRECISION_KEYS),     # no longer re-checked by autocast
    ("cam.bn", "sync", "fixed, batch"),
    ("ritc.bn", "sync", "fixed, batch"),                                  # these four: once train_ritc's too
    ("ritc.variant", "papr", "official, paper"),
    ("ritc.reduction", "avg", "sum, mean"),
    ("clip.normalization", "rgb", "imagenet, clip"),                      # once to_clip_pixels' too
    ("dataset.name", "pascal", "voc12, coco14, folder"),                  # once the dataset registry's too
    ("deeplab.bn", "sync", "fixed, batch"),
    ("deeplab.pretrained_format", "mxnet", "torchvision, caffe"),
    ("make_cam.source", "irn", "ritc, baseline"),
    ("irn.infer_scale", "3", "1, 2, 4"),                                  # once checked only in make_sem_seg
])
def test_allowed_values_are_checked_when_the_config_loads(tmp_path, key, value, choices):
    path = _file(tmp_path / "c.yaml", "seed: 0\n")
    shown = repr(value) if not value.isdigit() else value
    with pytest.raises(ConfigError, match=rf"^{path}: key '{key}' must be one of {choices}, got {shown}$"):
        load_config(path, [f"{key}={value}"])


@pytest.mark.parametrize("key, bad, good", [("irn.infer_scale", "true", 1), ("deeplab.output_stride", "8.0", 8)])
def test_an_allowed_value_must_have_the_choice_type(tmp_path, key, bad, good):
    """YAML's ``true`` equals 1 and 8.0 equals 8 in Python; neither is the choice 1 or 8."""
    path = _file(tmp_path / "c.yaml", "seed: 0\n")
    with pytest.raises(ConfigError, match=rf"key '{key}' must be one of"):
        load_config(path, [f"{key}={bad}"])
    section, name = key.split(".")
    assert getattr(getattr(load_config(path, [f"{key}={good}"]), section), name) == good


def test_dataset_names_are_the_registry_s():
    """``dataset.name``'s allowed values (checked at load) are the registry's table, which trusts them."""
    import typing

    from tool.data.registry import DATASETS
    from tool.engine.config import DatasetConfig

    assert typing.get_args(typing.get_type_hints(DatasetConfig)["name"]) == tuple(DATASETS)


def test_configuration_reference_is_generated_from_the_dataclasses():
    from tool.engine.config_doc import DOC, reference_markdown
    text = reference_markdown()
    assert DOC.read_text(encoding="utf-8") == text, "run: python -m tool.engine.config_doc --write"
    # the default and the comment come from the field
    assert "| `irn.exp_times` | int | `8` | the walk runs 2 ^ exp_times steps |" in text
    assert "| `deeplab_eval.crf.bilateral_sxy` | float | `67.0` | appearance kernel: spatial std (px) |" in text
    assert "| `make_cam.dtype` | `float16` \\| `float32` | `float16` |" in text
