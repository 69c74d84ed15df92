import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from probes.data import load_splits
from probes.models import MODELS, build_model
from probes.shapes import MODEL_ARGS, point_widths


def mlp(**kw):
    return build_model({"name": "deep_mlp", "depth": 8, "width": 16, "n_in": 784, "n_classes": 10, **kw})


def test_deep_mlp_points_and_shapes():
    model = mlp()
    out = model.forward_points(torch.randn(3, 1, 28, 28))
    assert model.points == ("input", *(f"layer{i}" for i in range(1, 9)))
    assert out["input"].shape == (3, 784) and all(out[f"layer{i}"].shape == (3, 16) for i in range(1, 9))
    assert out["logits"].shape == (3, 10) and out["aux_logits"] == []
    widths = point_widths({"name": "deep_mlp", "depth": 32, "width": 128, "n_in": 128, "n_classes": 2}, (128,))
    assert len(widths) == 33 and set(widths.values()) == {128}


def test_skip_connection_concatenates_the_input():
    torch.manual_seed(0)
    model = mlp(skip_to=5, negative_slope=0.5)
    assert model.layers[4].in_features == 16 + 784 and model.layers[5].in_features == 16
    x = torch.randn(4, 1, 28, 28)
    out = model.forward_points(x)
    expected = F.leaky_relu(model.layers[4](torch.cat([out["layer4"], x.flatten(1)], 1)), 0.5)
    torch.testing.assert_close(out["layer5"], expected)
    # the input reaches layer 5 even when layers 1-4 carry nothing
    with torch.no_grad():
        model.layers[3].weight.zero_()
        model.layers[3].bias.zero_()
    a, b = model.forward_points(x)["layer5"], model.forward_points(x + 1)["layer5"]
    assert not torch.allclose(a, b)


def test_auxiliary_heads_add_their_losses():
    torch.manual_seed(0)
    model = mlp(aux_every=2)
    assert model.aux_at == [2, 4, 6]  # every 2 layers, before the last
    x, y = torch.randn(5, 1, 28, 28), torch.randint(0, 10, (5,))
    total, ce, logits = model.objective(x, y, weight_decay=0.0)
    out = model.forward_points(x)
    aux = sum(F.cross_entropy(model.aux[str(i)](out[f"layer{i}"]), y) for i in (2, 4, 6))
    torch.testing.assert_close(ce, F.cross_entropy(logits, y))
    torch.testing.assert_close(total, ce + aux)
    total.backward()
    assert model.aux["2"].weight.grad.abs().sum() > 0 and model.layers[0].weight.grad.abs().sum() > 0


def test_glorot_normal_initialisation():
    torch.manual_seed(0)
    w = build_model({"name": "deep_mlp", "depth": 2, "width": 512, "n_in": 512}).layers[1].weight
    assert abs(w.std().item() - (2 / (512 + 512)) ** 0.5) < 1e-3 and torch.all(
        build_model({"name": "deep_mlp"}).layers[0].bias == 0
    )


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


def traced_widths(model: dict, in_shape: tuple[int, ...]) -> dict[str, int]:
    """Probe points and flattened widths of a built model, from one forward pass on zeros."""
    net = build_model(model).eval()
    with torch.no_grad():
        out = net.forward_points(torch.zeros((1, *in_shape)))
    return {name: int(out[name][0].numel()) for name in net.points}


@pytest.mark.parametrize(
    ("model", "in_shape"),
    [
        ({"name": "mnist_convnet"}, (1, 28, 28)),
        ({"name": "mnist_convnet", "conv1_filters": 4, "conv2_filters": 6, "fc_units": 9, "n_classes": 3}, (1, 28, 28)),
        ({"name": "deep_mlp", "depth": 5, "width": 7, "n_in": 784, "aux_every": 2, "skip_to": 3}, (1, 28, 28)),
        ({"name": "deep_mlp", "depth": 3, "width": 4, "n_in": 16, "n_classes": 2}, (16,)),
    ],
)
def test_widths_known_without_torch_equal_the_built_models(model, in_shape):
    """The workflow computes points and widths without building models (fast start-up): same answer."""
    assert list(point_widths(model, in_shape).items()) == list(traced_widths(model, in_shape).items())


def test_model_arguments_known_without_torch_are_the_constructors():
    for name, cls in MODELS.items():
        params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        assert list(MODEL_ARGS[name]) == params
    with pytest.raises(TypeError, match="takes no \\['depth'\\]"):
        point_widths({"name": "mnist_convnet", "depth": 3}, (1, 28, 28))
