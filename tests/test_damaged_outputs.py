"""Outputs damaged after their job wrote them are refused by every reader, naming the file and the
mend (delete it and rerun), never read as if whole: a table cut at a line boundary was drawn without
its missing rows with exit code 0."""

from __future__ import annotations

import json

import pytest
from conftest import activation_file
from test_probe import separable

from probes.aggregate import aggregate
from probes.files import DamagedFileError, digest_path, read_csv
from probes.plots import animate_error_by_point, plot_error_by_point
from probes.probe import fit_points
from probes.weights import previous_probes


@pytest.fixture
def tables(tmp_path):
    """A probes table of 3 steps x 6 layers and its model table, written by the aggregate."""
    x, y = separable(300, d=6, seed=1)
    points = {f"layer{i}": x[:, :i] for i in range(1, 7)}
    path = activation_file(tmp_path / "act.h5", points, y, splits=((0, 150), (150, 225), (225, 300)))
    probe = {"Cs": [0.1, 1.0], "solver": "preconditioned_lbfgs", "tol": 1e-5, "max_iter": 200}
    points = [{"point": f"layer{i}", "layer_index": i, "probe": probe} for i in range(1, 7)]
    fit_points({"experiment": "e", "repeat": 0, "step": 0, "points": points}, path, tmp_path / "p0.json",
               tmp_path / "p0.npz")  # fmt: skip
    records = json.loads((tmp_path / "p0.json").read_text())
    jsons, models = [], []
    for step in (0, 10, 20):
        (tmp_path / f"p{step}.json").write_text(json.dumps([{**r, "step": step} for r in records]))
        (tmp_path / f"m{step}.json").write_text(json.dumps({"experiment": "e", "repeat": 0, "step": step, "epoch": 0,
                                                             "train_loss": 1.0, "test_acc": 0.5}))  # fmt: skip
        jsons.append(tmp_path / f"p{step}.json")
        models.append(tmp_path / f"m{step}.json")
    aggregate(jsons, models, tmp_path / "probes.csv", tmp_path / "model.csv")
    return tmp_path


def test_a_table_cut_at_a_line_boundary_is_refused_by_the_figure_naming_it(tables):
    table = tables / "probes.csv"
    assert json.loads(digest_path(table).read_text())["rows"] == 18 and len(read_csv(table)) == 18
    plot_error_by_point(table, [0, 20], ["a", "b"], "train_error", [tables / "fig.png"])
    lines = table.read_text().splitlines(keepends=True)
    table.write_text("".join(lines[:-3]))  # the last step loses layers 4-6
    with pytest.raises(DamagedFileError, match=rf"{table}: 15 rows .* its job wrote 18 rows .* delete it and rerun"):
        plot_error_by_point(table, [0, 20], ["a", "b"], "train_error", [tables / "fig2.png"])
    assert not (tables / "fig2.png").exists()
    table.write_text("".join(lines[:9]))  # half the rows: refused before "no probes at step 20"
    with pytest.raises(DamagedFileError, match=rf"{table}: 8 rows"):
        animate_error_by_point(table, tables / "model.csv", "train_error", [tables / "a.gif"])


def test_a_table_cut_mid_line_or_edited_is_refused_naming_it(tables):
    table, model = tables / "probes.csv", tables / "model.csv"
    text = table.read_bytes()
    table.write_bytes(text[: len(text) - 40])  # mid-line: was "float() argument must be ... not 'NoneType'"
    with pytest.raises(DamagedFileError, match=rf"{table}: .*cut or changed after it was written"):
        read_csv(table)
    table.write_bytes(text)
    model.write_text(model.read_text().replace("0.5", "0.9"))
    with pytest.raises(DamagedFileError, match=rf"{model}: 3 rows .* its job wrote 3 rows"):
        animate_error_by_point(tables / "probes.csv", model, "train_error", [tables / "a.gif"])


def test_a_cut_probe_json_or_weights_file_is_refused_naming_it(tables):
    cut = tables / "p10.json"
    cut.write_text(cut.read_text()[:-200])  # was JSONDecodeError: Expecting ',' delimiter, no path
    with pytest.raises(DamagedFileError, match=rf"{cut}: unreadable JSON .* delete it and rerun"):
        aggregate([tables / "p0.json", cut], [tables / "m0.json"], tables / "probes.csv", tables / "model.csv")
    weights = tables / "p0.npz"
    assert previous_probes(weights, ["layer3"])["layer3"]["coef"].shape == (3, 3)
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # a warm start would have read it
    with pytest.raises(DamagedFileError, match=rf"{weights}: unreadable probe weights .* damaged or cut"):
        previous_probes(weights, ["layer3"])
    flipped = bytearray(data)
    flipped[data.index(b"\x93NUMPY", data.index(b"layer3.coef")) + 136] ^= 0xFF  # inside a member: its CRC fails
    weights.write_bytes(bytes(flipped))
    with pytest.raises(DamagedFileError, match=rf"{weights}: unreadable probe weights"):
        previous_probes(weights, ["layer1", "layer2", "layer3", "layer4", "layer5", "layer6"])


def test_the_flagged_probes_are_hatched_in_the_figure(tables):
    import matplotlib.pyplot as plt

    from probes.plots import _draw, error_by_point

    rows = read_csv(tables / "probes.csv")
    rows[2]["status"] = "C_limit"
    names, mean, std, flagged = error_by_point(rows, 0, "train_error")
    assert list(flagged) == [False, False, True, False, False, False]
    fig, ax = plt.subplots()
    _draw(ax, names, mean, std, flagged, 0.5, 1.0)
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert len(hatched) == 1 and "flagged" in " ".join(ax.get_legend_handles_labels()[1])
    plt.close(fig)
