import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from probes.capture import PointError, capture, expand_points, pooled
from probes.datasets import load_splits
from probes.factory import FactoryError, build_model, check_kwargs
from probes.layers import trace_shapes

CONVNET = {"factory": "probes.models:MnistConvnet"}


def mlp(**kw):
    kwargs = {"depth": 8, "width": 16, "n_in": 784, "n_classes": 10, **kw}
    return build_model({"factory": "probes.models:DeepMLP", "kwargs": kwargs})


def hand_convnet(m, x):
    """The convnet's paper points written out by hand (as the model was before hooks)."""
    out = {"input": x, "conv1_preact": m.conv1_preact(x)}
    out["conv1_postact"] = F.relu(out["conv1_preact"])
    out["conv1_postpool"] = F.max_pool2d(out["conv1_postact"], 2)
    out["conv2_preact"] = m.conv2_preact(out["conv1_postpool"])
    out["conv2_postact"] = F.relu(out["conv2_preact"])
    out["conv2_postpool"] = F.max_pool2d(out["conv2_postact"], 2)
    out["fc1_preact"] = m.fc1_preact(out["conv2_postpool"].flatten(1))
    out["fc1_postact"] = F.relu(out["fc1_preact"])
    out["logits"] = m.logits(out["fc1_postact"])
    return out


def hand_mlp(m, x):
    x = x.flatten(1)
    out, h = {"input": x}, x
    for i in range(1, m.depth + 1):
        if i == m.skip_to:
            h = torch.cat([h, x], 1)
        h = F.leaky_relu(m.hidden(i).linear(h), m.hidden(i).negative_slope)
        out[f"layer{i}"] = h
    return out


@pytest.mark.parametrize("which", ["convnet", "mlp_skip"])
def test_hook_capture_equals_a_hand_written_forward_bit_for_bit(which):
    torch.manual_seed(0)
    model = (build_model(CONVNET) if which == "convnet" else mlp(skip_to=5, aux_every=2, negative_slope=0.5)).eval()
    x = torch.randn(7, 1, 28, 28)
    points = expand_points(model, model.points)
    assert points == list(model.points)  # the paper's names, in its order
    with torch.no_grad():
        got, out = capture(model, points, x)
        want = (hand_convnet if which == "convnet" else hand_mlp)(model, x)
    for p in points:
        assert torch.equal(got[p], want[p].flatten(1)), p
    assert torch.equal(out, model(x))


def test_skip_connection_concatenates_the_input():
    torch.manual_seed(0)
    model = mlp(skip_to=5, negative_slope=0.5)
    assert model.layer5.linear.in_features == 16 + 784 and model.layer6.linear.in_features == 16
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        model.layer4.linear.weight.zero_()
        model.layer4.linear.bias.zero_()
    a, b = capture(model, ["layer5"], x)[0]["layer5"], capture(model, ["layer5"], x + 1)[0]["layer5"]
    assert not torch.allclose(a, b)  # the input reaches layer 5 even when layers 1-4 carry nothing


def test_auxiliary_heads_add_their_losses():
    torch.manual_seed(0)
    model = mlp(aux_every=2)
    assert model.aux_at == [2, 4, 6]  # every 2 layers, before the last
    x, y = torch.randn(5, 1, 28, 28), torch.randint(0, 10, (5,))
    total, ce, logits = model.objective(x, y, weight_decay=0.0)
    acts, _ = capture(model, ["layer2", "layer4", "layer6"], x)
    aux = sum(F.cross_entropy(model.aux[str(i)](acts[f"layer{i}"]), y) for i in (2, 4, 6))
    torch.testing.assert_close(ce, F.cross_entropy(logits, y))
    torch.testing.assert_close(total, ce + aux)
    total.backward()
    assert model.aux["2"].weight.grad.abs().sum() > 0 and model.layer1.linear.weight.grad.abs().sum() > 0


def test_glorot_normal_initialisation():
    torch.manual_seed(0)
    w = mlp(depth=2, width=512, n_in=512).layer2.linear.weight
    assert abs(w.std().item() - (2 / (512 + 512)) ** 0.5) < 1e-3 and torch.all(mlp().layer1.linear.bias == 0)


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.relu = nn.Conv2d(3, 3, 3, padding=1), nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv(x)) + x


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 3, 3, padding=1)
        self.layer1 = nn.Sequential(Block(), Block())
        self.shared = nn.ReLU()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        h = self.layer1(self.shared(self.stem(x)))
        h = self.shared(h)  # runs twice: not probeable
        return self.fc(h.mean(dim=(2, 3)))


def test_globs_expand_in_model_order_and_a_pattern_matching_nothing_names_the_nearest():
    model = Tiny()
    assert expand_points(model, ["fc", "layer1.*", "input"]) == ["input", "layer1.0", "layer1.1", "fc"]
    assert expand_points(model, ["layer1.?.conv", "output"]) == ["layer1.0.conv", "layer1.1.conv", "output"]
    assert expand_points(model, ["**.relu"]) == ["layer1.0.relu", "layer1.1.relu"]
    with pytest.raises(
        PointError, match=r"point 'layer1.2' matches no module of Tiny; nearest module paths: \['layer1.1', 'layer1.0'"
    ):
        expand_points(model, ["layer1.2"])
    with pytest.raises(PointError, match="'shared': its module ran 2 times"):
        capture(model, ["shared"], torch.zeros(1, 1, 5, 5))


def test_pooling_shapes():
    t = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    assert pooled(t, "none").shape == (2, 60)
    assert torch.equal(pooled(t, "mean"), t.mean(dim=(2, 3))) and torch.equal(pooled(t, "max"), t.amax(dim=(2, 3)))
    tokens = torch.randn(2, 7, 4)  # (batch, tokens, features): over the tokens
    assert torch.equal(pooled(tokens, "mean"), tokens.mean(dim=1))
    assert pooled(torch.randn(2, 9), "max").shape == (2, 9)  # nothing to pool


@pytest.mark.parametrize(
    ("spec", "in_shape", "pools"),
    [
        (CONVNET, (1, 28, 28), {}),
        ({**CONVNET, "kwargs": {"conv1_filters": 4, "conv2_filters": 6, "fc_units": 9, "n_classes": 3}}, (1, 28, 28),
         {"conv*": "mean"}),
        ({"factory": "probes.models:DeepMLP", "kwargs": {"depth": 5, "width": 7, "aux_every": 2, "skip_to": 3}},
         (1, 28, 28), {}),
        ({"factory": "probes.models:DeepMLP", "kwargs": {"depth": 3, "width": 4, "n_in": 16, "n_classes": 2}}, (16,), {}),
    ],
)  # fmt: skip
def test_recorded_widths_equal_a_real_forward(spec, in_shape, pools):
    """Widths traced on the meta device (what the workflow records) against a forward on real data."""
    records = trace_shapes(spec, in_shape, "all", pools)
    model = build_model(spec).eval()
    with torch.no_grad():
        got, out = capture(model, list(model.points), torch.randn(2, *in_shape), pools)
    assert [r["point"] for r in records if r["probed"]] == list(model.points)
    assert {r["point"]: r["width"] for r in records if r["probed"]} == {p: a.shape[1] for p, a in got.items()}
    assert next(r["shape"] for r in records if r["point"] == "output") == list(out.shape[1:])


def test_a_factory_that_cannot_be_imported_or_called_says_what_was_tried(tmp_path, monkeypatch):
    with pytest.raises(FactoryError, match="importing 'nosuch.models' failed: ModuleNotFoundError"):
        build_model({"factory": "nosuch.models:Net"})
    with pytest.raises(FactoryError, match=r"module 'probes.models' has no 'ConvNet'; it has \[.*'DeepMLP'"):
        build_model({"factory": "probes.models:ConvNet"})
    with pytest.raises(FactoryError, match=r"does not take them .*; it takes \['conv1_filters'"):
        check_kwargs("probes.models:MnistConvnet", {"depth": 3})
    (tmp_path / "net.py").write_text("import torch\ndef build(width=3):\n    return torch.nn.Linear(4, width)\n")
    monkeypatch.chdir(tmp_path)
    assert build_model({"factory": "net.py:build", "kwargs": {"width": 5}}).out_features == 5
    assert build_model({"factory": "net:build"}).out_features == 3  # the working directory is importable
    (tmp_path / "broken.py").write_text("raise RuntimeError('no GPU here')\n")
    with pytest.raises(FactoryError, match="importing 'broken.py' failed: RuntimeError: no GPU here"):
        build_model({"factory": "broken.py:build"})


def test_gaussian_separable_data():
    ds = {"name": "gaussian_separable", "dim": 128, "n_train": 2000, "n_val": 500, "n_test": 500, "split_seed": 1}
    a, b, other = load_splits(ds, ".", 0), load_splits(ds, ".", 0), load_splits(ds, ".", 1)
    np.testing.assert_array_equal(a["train"][0], b["train"][0])
    assert not np.array_equal(a["train"][1], other["train"][1])
    x, y = a["train"]
    assert x.shape == (2000, 128) and set(np.unique(y)) == {0, 1} and 0.4 < y.mean() < 0.6
    # one hyperplane through the origin separates every split of a repeat
    from sklearn.svm import LinearSVC

    xs = np.vstack([a[s][0] for s in a])
    ys = np.concatenate([a[s][1] for s in a])
    assert LinearSVC(C=1e4, fit_intercept=False, max_iter=100000).fit(xs, ys).score(xs, ys) > 0.995
