"""What the figures and animations show: percent throughout, the experiment's title, labelled
axes, layer ticks every 16 of 128, marked auxiliary heads and skip target, one legend, plain
numbers on the norms' log axis, and each animation frame's chance line and "frame k/N"."""

import matplotlib.pyplot as plt
import pytest
import yaml
from conftest import REPO

from probes.cli import main
from probes.config import Experiment
from probes.factory import build_model
from probes.plots import animation_figure, error_figure

CONVNET_POINTS = ["input", "conv1_postpool", "conv2_postpool", "fc1_postact", "logits"]


def table(points: list[str], steps=(0,), repeats: int = 1, experiment: str = "exp") -> list[dict]:
    """A probes table: error rising with depth, two repeats a little apart."""
    return [
        {"experiment": experiment, "repeat": r, "step": s, "point": p, "layer_index": i, "status": "ok",
         "train_error": 0.1 + 0.7 * i / len(points) + 0.01 * r, "test_error": 0.05 + 0.4 * i / len(points),
         "activation_norm": 4.0 * 0.9**i + 0.1 * r}
        for s in steps for r in range(repeats) for i, p in enumerate(points)
    ]  # fmt: skip


def mlp_points(depth: int) -> list[str]:
    return ["input"] + [f"layer{i}" for i in range(1, depth + 1)]


def texts(fig) -> list[str]:
    fig.canvas.draw()
    return [t.get_text() for t in fig.findobj(plt.Text) if t.get_text()]


def test_errors_are_in_percent_on_axis_bars_and_chance_with_one_legend_and_a_title():
    fig = error_figure(table(CONVNET_POINTS, steps=(0, 32)), [0, 32], ["(a) init", "(b) trained"], "test_error", 0.5)
    fig.canvas.draw()
    axes = fig.axes
    ticks = [t.get_text() for t in axes[0].get_yticklabels()]
    assert len(ticks) >= 3 and all(t.endswith("%") for t in ticks), ticks
    assert axes[0].get_ylabel() == "test prediction error (%)"
    bar_labels = [t.get_text() for t in axes[0].texts]
    assert len(bar_labels) == 5 and all(t.endswith("%") for t in bar_labels) and bar_labels[0] == "5.00%"
    assert [ax.get_xlabel() for ax in axes] == ["probe point", "probe point"]  # the convnet's axis, labelled
    assert [ax.get_title() for ax in axes] == ["(a) init\n(step 0)", "(b) trained\n(step 32)"]
    assert fig.get_suptitle().startswith("exp: test prediction error")
    # the chance legend once for the figure, not once per panel
    assert [ax.get_legend() for ax in axes] == [None, None] and len(fig.legends) == 1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["chance (50%)"]
    plt.close(fig)


def test_bar_labels_sit_above_the_error_bars():
    fig = error_figure(table(mlp_points(4), repeats=2), [0], ["p"], "train_error")
    ax = fig.axes[0]
    for label, bar in zip(ax.texts, ax.patches, strict=True):
        assert label.xy[1] > bar.get_height()  # at the error bar's top: the mean plus the spread
    plt.close(fig)


def test_a_129_point_figure_ticks_every_16_layers_and_marks_heads_and_skip():
    marks = [("auxiliary head", [f"layer{i}" for i in range(16, 128, 16)]), ("skip target", ["layer64"])]
    fig = error_figure(table(mlp_points(128), steps=(0, 500)), [0, 500], ["a", "b"], "train_error", 0.9, marks)
    fig.canvas.draw()
    for ax in fig.axes:
        assert list(ax.get_xticks()) == list(range(0, 129, 16))
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(i) for i in range(0, 129, 16)]
        assert ax.get_xlabel() == "layer (0 = input)"
        vertical = sorted(line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == "--")
        assert vertical == sorted([*range(16, 128, 16), 64])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["auxiliary head", "skip target", "chance (90%)"]
    plt.close(fig)


def test_a_mark_that_is_not_a_probe_point_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"t.csv: marked points \['layer9'\] \(head\) are not among its probe points"):
        error_figure(table(mlp_points(4)), [0], ["p"], "train_error", marks=[("head", ["layer9"])], source="t.csv")


def test_the_norms_log_axis_has_plain_numbers_and_no_minor_labels():
    fig = error_figure(table(mlp_points(32), repeats=2), [0], ["norms"], "activation_norm")
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "mean activation norm (log scale)"
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert labels and all(float(t) > 0 for t in labels), labels  # "2", "5", not "$4\\times10^{0}$"
    assert not [t.get_text() for t in ax.get_yticklabels(minor=True) if t.get_text()]
    assert list(ax.get_xticks()) == list(range(0, 33, 4))
    plt.close(fig)


def test_each_animation_frame_has_the_experiment_chance_line_and_frame_number():
    rows = table(mlp_points(6), steps=(0, 5, 20), experiment="tiny_mlp_aux")
    model = [{"repeat": 0, "step": s, "train_loss": 2.0, "test_acc": 0.5} for s in (0, 5, 20)]
    fig, frame, n = animation_figure(rows, model, "train_error", 0.9, [("auxiliary head", ["layer2", "layer4"])])
    assert n == 3
    for i in range(n):
        frame(i)
        ax = fig.axes[0]
        assert ax.get_title().startswith(f"step {(0, 5, 20)[i]} (frame {i + 1}/3): model train loss 2.000")
        assert any(list(line.get_ydata()) == [0.9, 0.9] for line in ax.lines)  # the chance line
        assert fig.get_suptitle().startswith("tiny_mlp_aux")
        assert len(fig.legends) == 1 and "chance (90%)" in texts(fig)
    plt.close(fig)


def test_marks_are_the_models_auxiliary_heads_and_skip_target():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    aux = Experiment("mlp128_aux", config)
    heads = build_model(aux.spec["model"]).aux_at
    assert aux.marks == [("auxiliary head (every 16 layers)", [f"layer{i}" for i in heads])]
    assert heads == list(range(16, 128, 16))
    assert Experiment("mlp128_skip", config).marks == [
        ("skip connection target (layer 64 also takes the input)", ["layer64"])
    ]
    assert Experiment("mlp128_plain", config).marks == Experiment("mnist_convnet", config).marks == []
    config["experiments"]["mlp128_aux"]["points"] = ["input", "layer16", "layer17"]  # only the probed ones
    assert Experiment("mlp128_aux", config).marks == [("auxiliary head (every 16 layers)", ["layer16"])]


def test_the_plot_command_takes_marks_and_refuses_unlabelled_ones(tmp_path, capsys):
    from probes.aggregate import aggregate  # the table as the workflow writes it (with its digest)
    from probes.files import write_json

    for step in (0, 5, 20):
        write_json([{**r, "width": 8} for r in table(mlp_points(6), steps=(step,))], tmp_path / f"p{step}.json")
        write_json({"experiment": "exp", "repeat": 0, "step": step, "train_loss": 1.0, "test_acc": 0.5},
                   tmp_path / f"m{step}.json")  # fmt: skip
    aggregate([tmp_path / f"p{s}.json" for s in (0, 5, 20)], [tmp_path / f"m{s}.json" for s in (0, 5, 20)],
              tmp_path / "probes.csv", tmp_path / "model.csv")  # fmt: skip
    base = ["--probes-csv", str(tmp_path / "probes.csv"), "--metric", "train_error", "--chance", "0.9"]
    marks = ["--mark", "layer2", "layer4", "--mark-label", "auxiliary head", "--mark", "layer3", "--mark-label", "skip"]
    main(["plot", *base, "--steps", "0", "20", "--panels", "a", "b", "--out", str(tmp_path / "f.png"), *marks])
    main(["animate", *base, "--model-csv", str(tmp_path / "model.csv"), "--out", str(tmp_path / "a.gif"), *marks])
    assert (tmp_path / "f.png").stat().st_size > 5000 and (tmp_path / "a.gif").stat().st_size > 5000
    with pytest.raises(SystemExit, match="2 --mark group\\(s\\) but 1 --mark-label\\(s\\)"):
        main(["plot", *base, "--steps", "0", "--panels", "a", "--out", str(tmp_path / "g.png"), *marks[:-2]])
