"""DeepLabV1-LargeFOV on ResNet-38: the MXNet .params reader (a file written byte by byte here), the key map
from the official names (strict, full parameter list), output stride 8, the trunk's parameter count, the
lr groups, the single-scale training output, the config's ``deeplab.arch`` check, and an end-to-end
train_deeplab + eval_deeplab on the smoke toy world."""
from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

import run_sample
from net.deeplab import DeepLabV2MSC, optimizer_groups
from net.mxnet_params import load_params
from net.weights import CheckpointMismatch
from net.wr38 import PARAMS_FILE, DeepLabV1, WideResNet38, load_wr38_pretrained
from tests.test_deeplab_steps import SMOKE, args_for, world  # noqa: F401  (module fixture reused)
from tool.engine.config import ConfigError, load_config
from tool.engine.io import read_json

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


# ------------------------------------------------------------------------------------------------
# A writer of the NDArray list format, from its description (not from net.mxnet_params)
# ------------------------------------------------------------------------------------------------

FLAGS = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, np.dtype(np.float16): 2, np.dtype(np.uint8): 3,
         np.dtype(np.int32): 4}


def nd_bytes(a: np.ndarray, version: str) -> bytes:
    """One NDArray: v2 (magic 0xF993FAC9, int32 storage type 0, uint32 ndim + int64 dims), v1 (magic 0xF993FAC8,
    int64 dims) or legacy (uint32 ndim + uint32 dims, no magic); then context (cpu: 1, 0), int32 type flag, data."""
    if version in ("v2", "v3"):
        magic = 0xF993FAC9 if version == "v2" else 0xF993FACA
        head = struct.pack("<Ii", magic, 0) + struct.pack("<I", a.ndim) + struct.pack(f"<{a.ndim}q", *a.shape)
    elif version == "v1":
        head = struct.pack("<I", 0xF993FAC8) + struct.pack("<I", a.ndim) + struct.pack(f"<{a.ndim}q", *a.shape)
    else:
        head = struct.pack("<I", a.ndim) + struct.pack(f"<{a.ndim}I", *a.shape)
    data = a.astype(a.dtype.newbyteorder("<")).tobytes()                       # C order, little-endian
    return head + struct.pack("<ii", 1, 0) + struct.pack("<i", FLAGS[a.dtype]) + data


def write_params(path, named: dict[str, np.ndarray], version: str | dict = "v2") -> None:
    out = struct.pack("<QQ", 0x112, 0) + struct.pack("<Q", len(named))
    for name, a in named.items():
        out += nd_bytes(a, version if isinstance(version, str) else version[name])
    out += struct.pack("<Q", len(named))
    for name in named:
        out += struct.pack("<Q", len(name.encode())) + name.encode()
    path.write_bytes(out)


def test_reader_returns_the_arrays_written_byte_by_byte(tmp_path):
    rng = np.random.default_rng(0)
    named = {
        "arg:res2a_branch1_weight": rng.normal(size=(4, 3, 1, 1)).astype(np.float32),
        "arg:bn7_gamma": rng.normal(size=(5,)).astype(np.float64),
        "aux:bn7_moving_var": rng.random((2, 3)).astype(np.float16),
        "arg:mask": rng.integers(0, 255, (3, 2, 2)).astype(np.uint8),
        "aux:counter": np.array([[-7, 2**31 - 1]], np.int32),
        "arg:res7a_branch1_weight": rng.normal(size=(3, 2, 1, 1)).astype(np.float32),
    }
    versions = {"arg:res2a_branch1_weight": "v2", "arg:bn7_gamma": "v1", "aux:bn7_moving_var": "legacy",
                "arg:mask": "v2", "aux:counter": "legacy",
                "arg:res7a_branch1_weight": "v3"}
    path = tmp_path / "m.params"
    write_params(path, named, versions)
    got = load_params(path)
    assert list(got) == list(named)
    for k, a in named.items():
        assert got[k].dtype == a.dtype and got[k].shape == a.shape, k
        np.testing.assert_array_equal(got[k], a)


def test_reader_refuses_a_truncated_file_and_a_wrong_magic(tmp_path):
    path = tmp_path / "m.params"
    write_params(path, {"arg:w": np.ones((2, 2), np.float32)})
    data = path.read_bytes()
    (tmp_path / "cut.params").write_bytes(data[:-10])
    with pytest.raises(ValueError, match="truncated"):
        load_params(tmp_path / "cut.params")
    (tmp_path / "bad.params").write_bytes(b"\x00" * 8 + data[8:])
    with pytest.raises(ValueError, match="0x112"):
        load_params(tmp_path / "bad.params")


def test_reader_refuses_a_none_array_naming_it(tmp_path):
    # A "none" NDArray (ndim 0) ends after its shape (MXNet's NDArray::Save); it is no weight and must not come back
    # as None (torch.as_tensor(None) in map_wr38_state failed without naming the key).
    none_v2 = struct.pack("<IiI", 0xF993FAC9, 0, 0)
    names = ["arg:w", "arg:gap"]
    out = struct.pack("<QQ", 0x112, 0) + struct.pack("<Q", 2) + nd_bytes(np.ones((2, 2), np.float32), "v2") + none_v2
    out += struct.pack("<Q", 2) + b"".join(struct.pack("<Q", len(n)) + n.encode() for n in names)
    (tmp_path / "none.params").write_bytes(out)
    with pytest.raises(ValueError, match=r"1 entry without data .*\['arg:gap'\]"):
        load_params(tmp_path / "none.params")


# ------------------------------------------------------------------------------------------------
# Official names of the A1 model, listed by hand per unit (PSA's resnet38d.py layout)
# ------------------------------------------------------------------------------------------------

def official_units() -> list[tuple[str, str, bool, bool]]:
    """(MXNet unit, PSA block, bottleneck, has branch1) for res2a .. res7a."""
    units = [("2a", "b2", False, True), ("2b1", "b2_1", False, False), ("2b2", "b2_2", False, False),
             ("3a", "b3", False, True), ("3b1", "b3_1", False, False), ("3b2", "b3_2", False, False),
             ("4a", "b4", False, True)]
    units += [(f"4b{i}", f"b4_{i}", False, False) for i in range(1, 6)]
    units += [("5a", "b5", False, True), ("5b1", "b5_1", False, False), ("5b2", "b5_2", False, False),
              ("6a", "b6", True, True), ("7a", "b7", True, True)]
    return units


def official_names() -> dict[str, str]:
    """{MXNet name: PSA torch name}, from the naming of PSA's convert_mxnet_to_torch."""
    bn = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_var": "running_var"}
    out = {"arg:conv1a_weight": "conv1a.weight"}
    for unit, block, bot, branch1 in official_units():
        branches = ["branch2a", "branch2b1"] + (["branch2b2"] if bot else [])
        for b in branches:
            for mx, pt in bn.items():
                out[f"{'aux' if 'moving' in mx else 'arg'}:bn{unit}_{b}_{mx}"] = f"{block}.bn_{b}.{pt}"
            out[f"arg:res{unit}_{b}_weight"] = f"{block}.conv_{b}.weight"
        if branch1:
            out[f"arg:res{unit}_branch1_weight"] = f"{block}.conv_branch1.weight"
    for mx, pt in bn.items():
        out[f"{'aux' if 'moving' in mx else 'arg'}:bn7_{mx}"] = f"bn7.{pt}"
    return out


def synthetic_official(backbone: WideResNet38) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Random arrays under every official name (shapes of ``backbone``), plus the ImageNet classifier."""
    names = official_names()
    own = backbone.state_dict()
    rng = np.random.default_rng(1)
    arrays = {mx: rng.normal(size=tuple(own[pt].shape)).astype(np.float32) for mx, pt in names.items()}
    c = own["bn7.weight"].shape[0]
    arrays["arg:linear1000_weight"] = rng.normal(size=(1000, c)).astype(np.float32)
    arrays["arg:linear1000_bias"] = np.zeros(1000, np.float32)
    return arrays, names


def test_official_params_load_strictly_into_every_parameter(tmp_path):
    backbone = WideResNet38(bn="batch", width_div=16)
    arrays, names = synthetic_official(backbone)
    assert len(names) == 191                      # 228 state entries less the 37 BN counters
    path = tmp_path / PARAMS_FILE
    write_params(path, arrays)
    load_wr38_pretrained(backbone, str(path))
    own = backbone.state_dict()
    for mx, pt in names.items():
        np.testing.assert_array_equal(own[pt].numpy(), arrays[mx], err_msg=f"{mx} -> {pt}")

    # PSA/SEAM's converted torch layout goes through the same map
    other = WideResNet38(bn="batch", width_div=16)
    torch.save({pt: torch.from_numpy(arrays[mx]) for mx, pt in names.items()}, tmp_path / "res38.pth")
    load_wr38_pretrained(other, str(tmp_path / "res38.pth"))
    for k, v in other.state_dict().items():
        assert torch.equal(v, own[k]), k


def test_a_missing_official_key_is_named_with_the_file(tmp_path):
    backbone = WideResNet38(width_div=16)
    arrays, _ = synthetic_official(backbone)
    del arrays["aux:bn5b2_branch2b1_moving_var"]
    arrays["arg:fc8_weight"] = np.zeros((2, 2), np.float32)
    path = tmp_path / PARAMS_FILE
    write_params(path, arrays)
    with pytest.raises(CheckpointMismatch) as e:
        load_wr38_pretrained(backbone, str(path))
    msg = str(e.value)
    assert "b5_2.bn_branch2b1.running_var" in msg and "arg:fc8_weight" in msg
    assert str(path) in msg and "1 missing" in msg and "1 unexpected" in msg


def test_an_absent_weights_file_names_the_key_and_the_download(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_wr38_pretrained(WideResNet38(width_div=16), str(tmp_path / "nope.params"))
    assert "deeplab.pretrained" in str(e.value) and PARAMS_FILE in str(e.value)
    with pytest.raises(ValueError, match=PARAMS_FILE):
        load_wr38_pretrained(WideResNet38(width_div=16), "imagenet")


# ------------------------------------------------------------------------------------------------
# Geometry, size, training behaviour
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(65, 81), (33, 47), (64, 80)])
def test_output_stride_8_on_odd_sizes(size):
    net = DeepLabV1(21, width_div=16).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, *size))
    assert out.shape == (1, 21, -(-size[0] // 8), -(-size[1] // 8))
    feats = net.backbone(torch.randn(2, 3, *size))
    assert feats.shape[1] == 4096 // 16 and (feats >= 0).all()     # the final BN-ReLU


def test_trunk_parameter_count_is_the_a1_model(monkeypatch):
    """The trunk of ResNet-38 A1 as PSA's resnet38d.py builds it (and ilsvrc-cls_rna-a1_cls1000_ep-0001.params
    holds, besides its 1000-class linear layer of 4096·1000 + 1000 = 4,097,000): 105,070,912 parameters,
    counted here by hand from the layer list."""
    def basic(cin, cmid, cout, proj):
        return 2 * cin + 9 * cin * cmid + 2 * cmid + 9 * cmid * cout + (cin * cout if proj else 0)

    def bot(cin, cout):
        return 2 * cin + cin * cout // 4 + 2 * cout // 4 + 9 * cout // 4 * cout // 2 + 2 * cout // 2 \
            + cout // 2 * cout + cin * cout

    total = 27 * 64 + 2 * 4096
    total += basic(64, 128, 128, True) + 2 * basic(128, 128, 128, False)
    total += basic(128, 256, 256, True) + 2 * basic(256, 256, 256, False)
    total += basic(256, 512, 512, True) + 5 * basic(512, 512, 512, False)
    total += basic(512, 512, 1024, True) + 2 * basic(1024, 512, 1024, False)
    total += bot(1024, 2048) + bot(2048, 4096)
    assert total == 105_070_912
    # shapes only: skip initialising 400 MB of weights (the count does not depend on the values)
    monkeypatch.setattr(torch.nn.Conv2d, "reset_parameters", lambda self: None)
    monkeypatch.setattr(torch.nn.init, "kaiming_normal_", lambda w, **kw: w)
    net = WideResNet38(bn="fixed")
    assert sum(p.numel() for p in net.parameters()) == total


def test_lr_groups_train_bn_and_single_scale_output():
    model = DeepLabV2MSC(DeepLabV1(21, bn="batch", bn_momentum=3e-4, width_div=16), (0.75, 0.5), train_msc=False)
    base = model.base
    g = {x["name"]: x for x in optimizer_groups(base, 8e-4, 5e-4)}
    assert {id(p) for p in g["aspp_weight"]["params"]} == {id(c.weight) for c in (base.head.fc6, base.head.fc7,
                                                                                   base.head.fc8)}
    assert g["aspp_weight"]["lr"] == pytest.approx(8e-3) and g["aspp_bias"]["lr"] == pytest.approx(1.6e-2)
    assert g["aspp_bias"]["weight_decay"] == 0.0 and g["bn"]["weight_decay"] == 0.0
    n_bn = sum(1 for m in base.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert n_bn == 37 and len(g["bn"]["params"]) == 2 * n_bn
    assert base.backbone.bn7.momentum == pytest.approx(3e-4)
    everything = {id(p) for p in base.parameters()}
    assert set().union(*({id(p) for p in x["params"]} for x in g.values())) == everything
    x = torch.randn(1, 3, 48, 48)
    assert len(model.train()(x)) == 1                      # trained at one scale
    assert len(model.eval()(x)) == 4                       # 1.0, 0.75, 0.5, max at inference


def test_config_checks_the_arch(tmp_path):
    assert load_config(SMOKE).deeplab.arch == "v2_resnet101"
    with pytest.raises(ConfigError, match="deeplab.arch.*v2_resnet101, v1_wr38"):
        load_config(SMOKE, ["deeplab.arch=v1_resnet38"])


def test_train_and_eval_v1_wr38_on_the_toy_world(world):  # noqa: F811
    work = world[0] / "wr38"
    metrics = run_sample.main(args_for(world, work, "--set", "deeplab.arch=v1_wr38", "--set", "deeplab.width_div=16",
                                       "--set", "deeplab.bn=batch", "--set", "deeplab.bn_momentum=3.0e-4"))
    tr = metrics["train_deeplab"]
    assert tr["steps"] == 3 and np.isfinite(tr["loss"]) and tr["loss"] == pytest.approx(tr["ce_1.0"])
    assert "ce_max" not in tr
    state = torch.load(work / "deeplab" / "model.pth", weights_only=True)
    assert state["base.head.fc8.weight"].shape == (21, 64, 1, 1)
    assert state["base.backbone.b7.conv_branch2b2.weight"].shape == (256, 128, 1, 1)
    ev = read_json(work / "eval_deeplab.json")
    assert ev["num_images"] == 4 and ev["msc"] and ev["flip"] and ev["crf"] and 0 <= ev["miou"] <= 100
    assert metrics["eval_deeplab"]["miou"] == pytest.approx(ev["miou"])
