rule probe:
    input:
        f"{RUN}/activations/step{{step}}.h5",
    output:
        json=PROBE_JSON,
        weights=f"{RUN}/probes/step{{step}}/{{point}}.npz",
    params:
        settings=probe_settings,
    log:
        f"{LOGS}/probe/{{experiment}}/r{{repeat}}/step{{step}}/{{point}}.log",
    benchmark:
        f"{BENCH}/probe/{{experiment}}/r{{repeat}}/step{{step}}/{{point}}.tsv"
    threads: 1
    resources:
        mem_mb=lambda wc: experiment(wc).probe_mem_mb(wc.point),
        runtime=lambda wc: 10 + experiment(wc).widths[wc.point] // 100,
    shell:
        "probes fit --settings {params.settings:q} --activations {input}"
        " --out-json {output.json} --out-weights {output.weights} --threads {threads} > {log} 2>&1"
