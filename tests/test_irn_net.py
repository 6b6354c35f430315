"""IRNet: output shapes, the training loss (value, finiteness, which parameters learn), inference with the
mirror, the mean shift, and the official-checkpoint key map on a replica of the official module tree."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from net.path_index import PathIndex, affinity_labels, path_coords
from net.resnet50 import ResNet50
from net.resnet50_irn import AffinityDisplacementLoss, EdgeDisplacement, IRNet, load_official_irn


@pytest.fixture(scope="module")
def small_path_index() -> PathIndex:
    return PathIndex(radius=3, default_size=(8, 8))  # a 32×32 crop


def test_irnet_shapes():
    torch.manual_seed(0)
    net = IRNet().eval()
    with torch.no_grad():
        edge, dp = net(torch.randn(2, 3, 32, 32))  # one input shape across the file: oneDNN sets up per shape
        assert edge.shape == (2, 1, 8, 8) and dp.shape == (2, 2, 8, 8)
        edge, dp = net(torch.randn(1, 3, 26, 19))  # odd sizes: ceil(H/4) × ceil(W/4)
        assert edge.shape == (1, 1, 7, 5) and dp.shape == (1, 2, 7, 5)


def _reference_losses(edge_logits, dp, labels, pi):
    """IRN's train_irn loss terms, with the affinities computed by slicing the edge map along each path."""
    bg, fg, neg = labels
    prob = torch.sigmoid(edge_logits)[:, 0]  # [N, h, w]
    ch, cw = pi.cropped_size(prob.shape[-2:])
    rf = pi.radius_floor
    affs, disps = [], []
    for dy, dx in pi.search_dst.tolist():
        cells = torch.stack([prob[:, cy:cy + ch, rf + cx:rf + cx + cw] for cy, cx in path_coords((dy, dx))])
        affs.append((1 - cells.amax(0)).reshape(prob.shape[0], -1))
        src = dp[:, :, :ch, rf:rf + cw]
        dst = dp[:, :, dy:dy + ch, rf + dx:rf + dx + cw]
        disps.append((src - dst).reshape(dp.shape[0], 2, -1))
    aff = torch.stack(affs, 1)  # [N, n_dirs, n_src]
    pair = torch.stack(disps, 2)  # [N, 2, n_dirs, n_src]
    target = torch.tensor(pi.search_dst.T, dtype=torch.float32)[None, :, :, None]
    pos = (bg * -torch.log(aff + 1e-5)).sum() / (bg.sum() + 1e-5) / 2 \
        + (fg * -torch.log(aff + 1e-5)).sum() / (fg.sum() + 1e-5) / 2
    negl = (neg * -torch.log(1 + 1e-5 - aff)).sum() / (neg.sum() + 1e-5)
    dfg = ((pair - target).abs() * fg[:, None]).sum() / (2 * fg.sum() + 1e-5)
    dbg = (pair.abs() * bg[:, None]).sum() / (2 * bg.sum() + 1e-5)
    bg_pos = (bg * -torch.log(aff + 1e-5)).sum() / (bg.sum() + 1e-5)
    fg_pos = (fg * -torch.log(aff + 1e-5)).sum() / (fg.sum() + 1e-5)
    return {"bg_pos_aff": bg_pos, "fg_pos_aff": fg_pos, "pos_aff": pos, "neg_aff": negl, "dp_fg": dfg,
            "dp_bg": dbg, "total": (pos + negl) / 2 + (dfg + dbg) / 2}


def test_loss_is_finite_matches_reference_and_trains_only_the_branches(small_path_index):
    torch.manual_seed(0)
    model = AffinityDisplacementLoss(small_path_index).train()
    img = torch.randn(2, 3, 32, 32)
    rng = np.random.default_rng(0)
    ir = rng.choice([0, 3, 7, 255], size=(2, 8, 8), p=[0.4, 0.25, 0.25, 0.1]).astype(np.uint8)
    labels = affinity_labels(torch.from_numpy(ir), small_path_index)
    losses = model(img, *labels)
    assert set(losses) == {"bg_pos_aff", "fg_pos_aff", "pos_aff", "neg_aff", "dp_fg", "dp_bg", "total"}
    assert all(torch.isfinite(v) for v in losses.values())

    with torch.no_grad():
        edge, dp = IRNet.forward(model, img)
    # every named term (train_irn logs them all), not only the total that trains
    ref = _reference_losses(edge, dp, labels, small_path_index)
    for name, value in ref.items():
        torch.testing.assert_close(losses[name], value, msg=name)

    losses["total"].backward()
    for name, p in model.backbone.named_parameters():
        assert not p.requires_grad and p.grad is None, name
    edge_params, dp_params = model.trainable_parameters()
    trainable = {id(p) for p in edge_params + dp_params}
    assert trainable == {id(p) for p in model.parameters() if p.requires_grad}
    for p in edge_params + dp_params:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    groups = model.param_groups(lr=0.1, weight_decay=1e-4)
    assert [g["lr"] for g in groups] == [0.1, 1.0]
    # the loss module saves exactly IRNet's state: path indices are not persistent
    assert set(model.state_dict()) == set(IRNet().state_dict())


def _train_irn_steps(path_index, displacement: bool, steps: int = 3) -> tuple[AffinityDisplacementLoss, list[dict]]:
    """IRN's SGD (momentum, weight decay, the two lr groups) for a few steps on fixed random crops."""
    torch.manual_seed(0)
    model = AffinityDisplacementLoss(path_index, displacement=displacement).train()
    rng = np.random.default_rng(0)
    opt = torch.optim.SGD(model.param_groups(lr=0.1, weight_decay=1e-4), lr=0.1, momentum=0.9, weight_decay=1e-4)
    history = []
    for _ in range(steps):
        img = torch.from_numpy(rng.standard_normal((2, 3, 32, 32)).astype(np.float32))
        ir = rng.choice([0, 3, 7, 255], size=(2, 8, 8), p=[0.4, 0.25, 0.25, 0.1]).astype(np.uint8)
        losses = model(img, *affinity_labels(torch.from_numpy(ir), path_index))
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
        history.append({k: float(v.detach()) for k, v in losses.items()})
    return model, history


def test_without_the_displacement_branch_the_boundary_branch_trains_to_the_same_weights(small_path_index):
    """irn.displacement false: the boundary branch's weights come out bit-equal to a full IRN training (the
    branches share no trainable weight), the displacement branch stays as initialised, and the loss is
    (pos_aff + neg_aff) / 2 with the same affinity terms."""
    full, full_hist = _train_irn_steps(small_path_index, True)
    edge_only, hist = _train_irn_steps(small_path_index, False)
    torch.manual_seed(0)
    init = AffinityDisplacementLoss(small_path_index).state_dict()
    trained = edge_only.state_dict()
    for name, value in full.state_dict().items():
        if name.startswith("fc_edge"):
            assert torch.equal(trained[name], value), name
            if name.endswith(".0.weight"):
                assert not torch.equal(value, init[name]), name         # trained, not merely both at init
        elif name.startswith(("fc_dp", "mean_shift")):
            assert torch.equal(trained[name], init[name]), name        # left as initialised
            if name.startswith("fc_dp") and name.endswith("0.weight"):
                assert not torch.equal(value, init[name]), name         # which full IRN trained
    for terms, full_terms in zip(hist, full_hist):
        assert set(terms) == {"bg_pos_aff", "fg_pos_aff", "pos_aff", "neg_aff", "total"}
        for k in ("bg_pos_aff", "fg_pos_aff", "pos_aff", "neg_aff"):
            assert terms[k] == full_terms[k], k
        assert terms["total"] == pytest.approx((terms["pos_aff"] + terms["neg_aff"]) / 2, rel=1e-6)
        assert full_terms["total"] == pytest.approx(terms["total"] + (full_terms["dp_fg"] + full_terms["dp_bg"]) / 2,
                                                    rel=1e-6)
    # the displacement branch is frozen, not merely unused (DDP refuses a parameter that wants a gradient and gets none)
    edge_params, dp_params = edge_only.trainable_parameters()
    wanting_grad = {id(p) for p in edge_only.parameters() if p.requires_grad}
    assert dp_params == () and wanting_grad == {id(p) for p in edge_params}
    n_edge = len(full.param_groups(0.1, 1e-4)[0]["params"])
    assert [len(g["params"]) for g in edge_only.param_groups(0.1, 1e-4)] == [n_edge]
    with pytest.raises(ValueError, match="irn.displacement"):
        edge_only.estimate_mean_shift([torch.zeros(1, 3, 32, 32)])
    # inference: the same boundary map, no displacement field
    full_inf = EdgeDisplacement(crop_size=32).eval()
    edge_inf = EdgeDisplacement(crop_size=32, displacement=False).eval()
    full_inf.load_state_dict(full.state_dict())
    edge_inf.load_state_dict(full.state_dict())
    img = torch.randn(3, 26, 19)
    with torch.no_grad():
        (e1, d1), (e2, d2) = full_inf(img), edge_inf(img)
    assert torch.equal(e1, e2) and d1 is not None and d2 is None


def test_loss_rejects_wrong_crop(small_path_index):
    model = AffinityDisplacementLoss(small_path_index)
    labels = affinity_labels(np.zeros((1, 8, 8), np.uint8), small_path_index)
    with pytest.raises(ValueError, match="path index"):
        model(torch.randn(1, 3, 40, 32), *labels)


def test_edge_displacement_uses_the_mirror():
    torch.manual_seed(1)
    model = EdgeDisplacement(crop_size=32).eval()
    img = torch.randn(3, 26, 19)
    with torch.no_grad():
        edge, dp = model(img)
        assert edge.shape == (1, 7, 5) and dp.shape == (2, 7, 5)
        assert ((edge > 0) & (edge < 1)).all()
        # by hand: both images padded to the crop, cropped to ceil(size/4), mirror flipped back
        pair = F.pad(torch.stack([img, img.flip(-1)]), [0, 32 - 19, 0, 32 - 26])
        e, d = IRNet.forward(model, pair)
        expected = torch.sigmoid(e[0, :, :7, :5] / 2 + e[1, :, :7, :5].flip(-1) / 2)
        torch.testing.assert_close(edge, expected)
        torch.testing.assert_close(dp, d[0, :, :7, :5])


def test_mean_shift_estimate_and_use():
    torch.manual_seed(2)
    net = IRNet()
    batches = [torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)]
    with torch.no_grad():
        raw = [net.eval()._branches(b)[1] for b in batches]
    expected = torch.stack([r.mean(dim=(0, 2, 3)) for r in raw]).mean(0)
    net.train()
    got = net.estimate_mean_shift(batches)
    assert net.training  # the mode is restored
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(net.estimate_mean_shift(batches), expected)  # idempotent
    torch.testing.assert_close(net.mean_shift.running_mean, expected)
    with torch.no_grad():
        net.eval()
        torch.testing.assert_close(net(batches[0])[1], raw[0] - expected.view(1, 2, 1, 1))
        net.train()
        torch.testing.assert_close(net(batches[0])[1], raw[0])  # identity while training


# ---- a replica of the official module tree (jiwoon-ahn/irn net/resnet50_irn.py), names only -----------------

class _OfficialMeanShift(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(2))

    def forward(self, x):
        return x if self.training else x - self.running_mean.view(1, 2, 1, 1)


def _gn_head(cin, cout, g, up=None):
    layers = [nn.Conv2d(cin, cout, 1, bias=False), nn.GroupNorm(g, cout)]
    if up:
        layers.append(nn.Upsample(scale_factor=up, mode="bilinear", align_corners=False))
    return nn.Sequential(*layers, nn.ReLU(inplace=True))


class _OfficialIRN(nn.Module):
    def __init__(self, path_index):
        super().__init__()
        self.resnet50 = ResNet50(strides=(2, 2, 2, 1), bn="fixed")
        r = self.resnet50
        self.stage1 = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool)
        self.stage2 = nn.Sequential(r.layer1)
        self.stage3 = nn.Sequential(r.layer2)
        self.stage4 = nn.Sequential(r.layer3)
        self.stage5 = nn.Sequential(r.layer4)
        self.mean_shift = _OfficialMeanShift()
        self.fc_edge1, self.fc_edge2 = _gn_head(64, 32, 4), _gn_head(256, 32, 4)
        self.fc_edge3, self.fc_edge4 = _gn_head(512, 32, 4, 2), _gn_head(1024, 32, 4, 4)
        self.fc_edge5, self.fc_edge6 = _gn_head(2048, 32, 4, 4), nn.Conv2d(160, 1, 1, bias=True)
        self.fc_dp1, self.fc_dp2, self.fc_dp3 = _gn_head(64, 64, 8), _gn_head(256, 128, 16), _gn_head(512, 256, 16)
        self.fc_dp4, self.fc_dp5 = _gn_head(1024, 256, 16, 2), _gn_head(2048, 256, 16, 2)
        self.fc_dp6 = _gn_head(768, 256, 16, 2)
        self.fc_dp7 = nn.Sequential(nn.Conv2d(448, 256, 1, bias=False), nn.GroupNorm(16, 256), nn.ReLU(inplace=True),
                                    nn.Conv2d(256, 2, 1, bias=False), self.mean_shift)
        self.backbone = nn.ModuleList([self.stage1, self.stage2, self.stage3, self.stage4, self.stage5])
        self.edge_layers = nn.ModuleList([self.fc_edge1, self.fc_edge2, self.fc_edge3, self.fc_edge4, self.fc_edge5,
                                          self.fc_edge6])
        self.dp_layers = nn.ModuleList([self.fc_dp1, self.fc_dp2, self.fc_dp3, self.fc_dp4, self.fc_dp5, self.fc_dp6,
                                        self.fc_dp7])
        for i, pi in enumerate(path_index.path_indices):  # AffinityDisplacementLoss's saved buffers
            self.register_buffer(f"path_indices{i}", torch.from_numpy(pi))
        self.register_buffer("disp_target", path_index.displacement_target())

    def forward(self, x):
        x1 = self.stage1(x)
        x2 = self.stage2(x1)
        x3 = self.stage3(x2)
        x4 = self.stage4(x3)
        x5 = self.stage5(x4)
        e2 = self.fc_edge2(x2)
        s = e2.shape[-2:]
        edge = self.fc_edge6(torch.cat([self.fc_edge1(x1), e2, self.fc_edge3(x3)[..., :s[0], :s[1]],
                                        self.fc_edge4(x4)[..., :s[0], :s[1]], self.fc_edge5(x5)[..., :s[0], :s[1]]], 1))
        dp3 = self.fc_dp3(x3)
        s3 = dp3.shape[-2:]
        up3 = self.fc_dp6(torch.cat([dp3, self.fc_dp4(x4)[..., :s3[0], :s3[1]], self.fc_dp5(x5)[..., :s3[0], :s3[1]]],
                                    1))[..., :s[0], :s[1]]
        return edge, self.fc_dp7(torch.cat([self.fc_dp1(x1), self.fc_dp2(x2), up3], 1))


@pytest.fixture(scope="module")
def official_state():
    torch.manual_seed(3)
    official = _OfficialIRN(PathIndex(radius=10, default_size=(24, 24)))  # res50_irn.pth: radius 10
    with torch.no_grad():  # every tensor distinct, so a swapped key changes the output
        for name, t in list(official.named_parameters()) + list(official.named_buffers()):
            if name.endswith("running_var"):
                t.uniform_(0.5, 1.5)
            elif t.is_floating_point() and not name.startswith(("path_indices", "disp_target")):
                t.normal_(0, 0.05)
    return official.eval(), official.state_dict()


def test_official_state_dict_has_the_aliases(official_state):
    _, state = official_state
    for key in ["resnet50.conv1.weight", "stage1.0.weight", "backbone.0.1.running_var",
                "stage3.0.0.downsample.0.weight", "backbone.2.0.0.downsample.0.weight",
                "edge_layers.5.bias", "dp_layers.6.3.weight", "fc_dp7.4.running_mean", "dp_layers.6.4.running_mean",
                "mean_shift.running_mean", "path_indices0", "disp_target"]:
        assert key in state, key


def test_load_official_irn_strict_and_same_outputs(official_state):
    official, state = official_state
    ours = IRNet()
    ours.load_state_dict(load_official_irn(state), strict=True)
    ours.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        e_off, d_off = official(x)
        e_ours, d_ours = ours(x)
    torch.testing.assert_close(e_ours, e_off)
    torch.testing.assert_close(d_ours, d_off)
    assert torch.equal(ours.mean_shift.running_mean, official.mean_shift.running_mean)
    # a DataParallel save (module. prefix) maps the same way
    prefixed = {"module." + k: v for k, v in state.items()}
    assert set(load_official_irn(prefixed)) == set(ours.state_dict())


def test_load_official_irn_rejects_unknown_and_inconsistent_keys(official_state):
    _, state = official_state
    with pytest.raises(KeyError, match="fc_cls.weight"):
        load_official_irn({**state, "fc_cls.weight": torch.zeros(1)})
    bad = dict(state)
    bad["edge_layers.0.0.weight"] = bad["edge_layers.0.0.weight"] + 1  # an alias that disagrees
    with pytest.raises(ValueError, match="same shared"):
        load_official_irn(bad)


def test_trained_stages_train_the_first_backbone_stages_with_the_boundary_branch(small_path_index):
    """irn.trained_stages 2: the stem and layer1 train with the boundary branch, in its lr group, and layer2..4 stay
    as loaded; 0 (IRN) leaves the whole backbone as loaded. The BatchNorm statistics never move (FixedBatchNorm)."""
    def train(stages: int) -> tuple[dict, dict, AffinityDisplacementLoss]:
        torch.manual_seed(0)
        model = AffinityDisplacementLoss(small_path_index, displacement=False, trained_stages=stages).train()
        init = {k: v.clone() for k, v in model.state_dict().items()}
        opt = torch.optim.SGD(model.param_groups(lr=0.1, weight_decay=1e-4), lr=0.1, momentum=0.9)
        rng = np.random.default_rng(0)
        for _ in range(2):
            img = torch.from_numpy(rng.standard_normal((2, 3, 32, 32)).astype(np.float32))
            ir = rng.choice([0, 3, 7, 255], size=(2, 8, 8), p=[0.4, 0.25, 0.25, 0.1]).astype(np.uint8)
            loss = model(img, *affinity_labels(torch.from_numpy(ir), small_path_index))["total"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        return init, model.state_dict(), model

    init, trained, model = train(2)
    moved = {k for k in trained if k.startswith("backbone.") and not torch.equal(trained[k], init[k])}
    weights = {"backbone.conv1.weight", "backbone.bn1.weight", "backbone.bn1.bias"}
    assert weights <= moved
    assert any(k.startswith("backbone.layer1.") for k in moved)
    assert all(k.startswith(("backbone.conv1.", "backbone.bn1.", "backbone.layer1.")) for k in moved)
    assert not any("running_" in k for k in moved)
    # the stages train in the boundary branch's group: one group (no displacement branch), every trained parameter
    group = {id(p) for p in model.param_groups(0.1, 1e-4)[0]["params"]}
    assert group == {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for p in model.backbone.layer1.parameters()} <= group
    assert not {id(p) for p in model.backbone.layer2.parameters()} & group

    init, trained, _ = train(0)
    assert all(torch.equal(trained[k], init[k]) for k in trained if k.startswith("backbone."))
    with pytest.raises(ValueError, match="irn.trained_stages: 4"):
        AffinityDisplacementLoss(small_path_index, trained_stages=4)
