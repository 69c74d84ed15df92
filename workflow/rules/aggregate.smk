rule aggregate:
    input:
        probes=lambda wc: run_files(experiment(wc), PROBE_JSON),
        models=lambda wc: sorted(set(run_files(experiment(wc), MODEL_JSON))),
    output:
        probes=report(
            f"{RESULTS}/{{experiment}}/probes.csv",
            caption="../report/probes_table.rst",
            category="Tables",
            labels={"experiment": "{experiment}", "table": "probes"},
        ),
        model=report(
            f"{RESULTS}/{{experiment}}/model.csv",
            caption="../report/model_table.rst",
            category="Tables",
            labels={"experiment": "{experiment}", "table": "model"},
        ),
        # each table's row count and SHA-256, checked by every reader (src/probes/files.py)
        digests=[f"{RESULTS}/{{experiment}}/probes.digest.json", f"{RESULTS}/{{experiment}}/model.digest.json"],
    params:
        code=CODE["aggregate"],
    log:
        f"{LOGS}/aggregate/{{experiment}}.log",
    benchmark:
        f"{BENCH}/aggregate/{{experiment}}.tsv"
    resources:
        mem_mb=500,
        runtime=10,
    shell:
        "probes aggregate --probes {input.probes:q} --models {input.models:q}"
        " --probes-csv {output.probes:q} --model-csv {output.model:q} > {log:q} 2>&1"


rule figure:
    input:
        lambda wc: f"{RESULTS}/{figure_spec(wc)['experiment']}/probes.csv",
    output:
        png=report(
            f"{RESULTS}/figures/{{figure}}.png",
            caption="../report/plot.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
        pdf=f"{RESULTS}/figures/{{figure}}.pdf",
    params:
        steps=lambda wc: " ".join(
            str(s) for s in EXPERIMENTS[figure_spec(wc)["experiment"]].resolve_steps(figure_spec(wc)["steps"], wc.figure)
        ),
        panels=lambda wc: " ".join(shlex.quote(p) for p in figure_spec(wc)["panels"]),
        metric=lambda wc: figure_spec(wc)["metric"],
        chance=lambda wc: chance_arg(figure_spec(wc)),
        marks=lambda wc: plot_marks(figure_spec(wc)),
        dpi=config["plot"]["dpi"],
        code=CODE["plot"],
    log:
        f"{LOGS}/figure/{{figure}}.log",
    benchmark:
        f"{BENCH}/figure/{{figure}}.tsv"
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "probes plot --probes-csv {input:q} --steps {params.steps} --panels {params.panels}"
        " --metric {params.metric} {params.chance} {params.marks} --dpi {params.dpi}"
        " --out {output.png:q} {output.pdf:q} > {log:q} 2>&1"


rule animation:
    input:
        probes=lambda wc: f"{RESULTS}/{animation_spec(wc)['experiment']}/probes.csv",
        model=lambda wc: f"{RESULTS}/{animation_spec(wc)['experiment']}/model.csv",
    output:
        gif=report(
            f"{RESULTS}/animations/{{animation}}.gif",
            caption="../report/plot.rst",
            category="Animations",
            labels={"animation": "{animation}"},
        ),
        others=[f"{RESULTS}/animations/{{animation}}.{ext}" for ext in ANIMATION_FORMATS if ext != "gif"],
    params:
        metric=lambda wc: animation_spec(wc)["metric"],
        fps=lambda wc: animation_spec(wc)["fps"],
        chance=lambda wc: chance_arg(animation_spec(wc)),
        marks=lambda wc: plot_marks(animation_spec(wc)),
        code=CODE["plot"],
    log:
        f"{LOGS}/animation/{{animation}}.log",
    benchmark:
        f"{BENCH}/animation/{{animation}}.tsv"
    resources:
        mem_mb=1000,
        runtime=30,
    shell:
        "probes animate --probes-csv {input.probes:q} --model-csv {input.model:q} --metric {params.metric}"
        " --fps {params.fps} {params.chance} {params.marks} --out {output:q} > {log:q} 2>&1"
