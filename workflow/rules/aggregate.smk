rule aggregate:
    input:
        probes=lambda wc: run_files(EXPERIMENTS[wc.experiment], PROBE_JSON),
        models=lambda wc: sorted(set(run_files(EXPERIMENTS[wc.experiment], MODEL_JSON))),
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
    log:
        f"{LOGS}/aggregate/{{experiment}}.log",
    benchmark:
        f"{BENCH}/aggregate/{{experiment}}.tsv"
    resources:
        mem_mb=500,
        runtime=10,
    shell:
        "probes aggregate --probes {input.probes} --models {input.models}"
        " --probes-csv {output.probes} --model-csv {output.model} > {log} 2>&1"


rule figure:
    input:
        lambda wc: f"{RESULTS}/{figure_spec(wc)['experiment']}/probes.csv",
    output:
        png=report(
            f"{RESULTS}/figures/{{figure}}.png",
            caption="../report/figure.rst",
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
        dpi=config["plot"]["dpi"],
    log:
        f"{LOGS}/figure/{{figure}}.log",
    benchmark:
        f"{BENCH}/figure/{{figure}}.tsv"
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "probes plot --probes-csv {input} --steps {params.steps} --panels {params.panels}"
        " --metric {params.metric} --dpi {params.dpi} --out {output.png} {output.pdf} > {log} 2>&1"
