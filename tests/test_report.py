"""The report's templates rendered as Snakemake renders them (Jinja, then reStructuredText) for a
config: the landing page lists exactly the configured experiments, figures and animations, and
each caption says how its experiment was trained and probed, in tables."""

from types import SimpleNamespace

import jinja2
import pytest
import yaml
from conftest import REPO
from docutils import nodes
from docutils.core import publish_doctree
from snakemake.iocontainers import Wildcards

from probes.config import SCHEMA, fill_defaults, load_yaml

REPORT = REPO / "workflow/report"


def load(name: str) -> dict:
    """A config file as the workflow holds it: the schema's defaults filled in."""
    return fill_defaults(yaml.safe_load((REPO / name).read_text()), load_yaml(SCHEMA))


def render(template: str, config: dict, files=(), **wildcards) -> str:
    """``template`` as Snakemake's report renders a caption or the workflow description."""
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)  # as snakemake.report
    snakemake = SimpleNamespace(config=config, wildcards=Wildcards(fromdict=wildcards))
    return env.from_string((REPORT / template).read_text()).render(snakemake=snakemake, files=list(files),
                                                                    categories={})  # fmt: skip


def doctree(text: str) -> nodes.document:
    """The parsed reStructuredText; any docutils warning (a malformed table, say) fails."""
    return publish_doctree(text, settings_overrides={"halt_level": 2, "report_level": 2})


def column(tree: nodes.document, section: str, index: int = 0) -> list[str]:
    """The cells of column ``index`` of the table in ``section`` (without the header)."""
    [sec] = [s for s in tree.findall(nodes.section) if s[0].astext() == section]
    [table] = list(sec.findall(nodes.table))
    rows = list(table.findall(nodes.row))[1:]
    return [row[index].astext() for row in rows]


def settings(tree: nodes.document) -> dict[str, str]:
    [table] = list(tree.findall(nodes.table))
    return {row[0].astext(): row[1].astext() for row in list(table.findall(nodes.row))[1:]}


@pytest.mark.parametrize("config_file", ["workflow/config/tiny.yaml", "config.yaml"])
def test_the_landing_page_lists_exactly_the_configured_experiments_figures_and_animations(config_file):
    config = load(config_file)
    files = [SimpleNamespace(target=f"{name}.png", path=f"results/figures/{name}.png") for name in config["figures"]]
    text = render("workflow.rst", config, files[1:])  # the first figure not (yet) made
    tree = doctree(text)
    assert column(tree, "Experiments") == list(config["experiments"])
    assert column(tree, "Probes") == list(config["experiments"])
    first, *made = config["figures"]
    assert column(tree, "Figures") == [f"{first} (not in this report)", *made]
    heads = [f["caption"].split(": ")[0] for f in config["figures"].values()]  # "Figure 7 (section 3.4)"
    assert column(tree, "Figures", 1) == heads and column(tree, "Figures", 2) == [
        f["experiment"] for f in config["figures"].values()
    ]
    assert column(tree, "Animations") == [f"{a} (not in this report)" for a in config["animations"]]
    assert "align-items: safe center" in text  # a page taller than the window starts at its top
    # a figure in the report opens with its caption beside it
    assert f"resultPath:'results/figures/{made[0]}.png'" in text and "navbarMode:'resultinfo'" in text
    solvers = {e["probe"]["solver"] for e in config["experiments"].values()}
    assert ("scikit-learn's LogisticRegression (solver=lbfgs) for tiny_convnet;" in tree.astext()) == (
        "lbfgs" in solvers
    )
    assert "this project's preconditioned L-BFGS (same objective as scikit-learn's LogisticRegression) for" in text
    trained = column(tree, "Experiments", 3)
    for (name, exp), training in zip(config["experiments"].items(), trained, strict=True):
        assert ("never trained" in training) == (exp["train"]["epochs"] == 0), name
    if config_file == "config.yaml":
        assert "Figure 7" in tree.astext() and "solver=" not in text
        assert "at input: tol 1e-05" in column(tree, "Probes", 3)[2]  # mlp128_plain's override
    else:  # nothing of the default config's figures on a run without them
        assert "Figure 7" not in text and "mlp128" not in text and "fig3_untrained_mlp" not in text


def test_a_run_without_figures_or_animations_says_so():
    config = {**load("workflow/config/tiny.yaml"), "figures": {}, "animations": {}}
    text = doctree(render("workflow.rst", config)).astext()
    assert "No figures configured" in text and "No animations configured" in text


def test_captions_say_how_the_experiment_was_trained_and_probed_in_a_table():
    tiny = load("workflow/config/tiny.yaml")
    trained = doctree(render("plot.rst", tiny, figure="figure5_tiny"))
    table = settings(trained)
    assert table["training"] == "1 epoch of 32 minibatches of 64, optimizer sgd, lr 0.01 (x0.95 each epoch), " \
                                "momentum 0.9, weight decay 0.0005"  # fmt: skip
    assert "never trained" not in trained.astext()
    assert table["probe solver"] == "scikit-learn's LogisticRegression (solver=lbfgs)"
    assert table["model"] == "probes.models:MnistConvnet" and table["checkpoints"] == "steps 0, end"
    assert "one panel per checkpoint (steps 0, end = 32)" in trained.astext()
    untrained = doctree(render("plot.rst", tiny, figure="figure3_tiny"))
    table = settings(untrained)
    assert table["training"] == "never trained (train.epochs 0)"
    assert (
        table["probe solver"]
        == "this project's preconditioned L-BFGS (same objective as scikit-learn's LogisticRegression)"
    )
    assert "mean over 2 repeats" in untrained.astext() and "chance (50% error)" in untrained.astext()
    animation = doctree(render("plot.rst", tiny, animation="tiny_mlp_aux_train_error")).astext()
    assert "one frame per checkpoint of experiment tiny_mlp_aux" in animation and "chance (90% error)" in animation
    full = load("config.yaml")
    table = settings(doctree(render("plot.rst", full, figure="figure7")))
    assert table["training"] == "10 epochs of 500 minibatches of 100 (5,000 minibatches), optimizer rmsprop, lr 0.0001"
    assert table["at input"] == "tol 1e-05"
    for name in (*full["figures"], *tiny["figures"]):
        config = full if name in full["figures"] else tiny
        assert "{'" not in render("plot.rst", config, figure=name)  # no Python dicts


def test_the_report_of_checkpoints_made_elsewhere_names_their_directory():
    example = load("examples/config.yaml")
    for template, kw in (("plot.rst", {"figure": "small_resnet"}), ("plot.rst", {"animation": "small_resnet_test_error"}),
                         ("workflow.rst", {})):  # fmt: skip
        text = doctree(render(template, example, **kw)).astext()
        assert "trained elsewhere: checkpoints from examples/run/ckpts" in text, template
    table = settings(doctree(render("plot.rst", example, figure="small_resnet")))
    assert table["checkpoints"] == "the files of examples/run/ckpts matching step{step}.pt"
