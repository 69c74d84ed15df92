rule probe:
    input:
        activations=f"{RUN}/activations/step{{step}}.h5",
        previous=previous_probe_weights,
        first=first_probe_weights,
    output:
        json=PROBE_JSON,
        weights=PROBE_WEIGHTS,
    params:
        settings=probe_settings,
        code=CODE["probe"],
        warm=lambda wildcards, input: file_option("--warm-start", input.previous),
        reuse=lambda wildcards, input: file_option("--reuse-from", input.first),
    log:
        f"{LOGS}/probe/{{experiment}}/r{{repeat}}/step{{step}}/{{job}}.log",
    benchmark:
        f"{BENCH}/probe/{{experiment}}/r{{repeat}}/step{{step}}/{{job}}.tsv"
    threads: 1
    # ahead of any ready training or extraction: each checkpoint's (temp) activations are probed and
    # deleted before more are extracted, which bounds the disk a run needs
    priority: 2
    resources:
        mem_mb=lambda wc: max(experiment(wc).probe_mem_mb(p) for p in job_points(wc)),
        runtime=lambda wc: sum(10 + experiment(wc).widths[p] // 100 for p in job_points(wc)),
        # where the solver's products run: how the job runs, not what it makes (a resource: changing it reruns nothing)
        device=DEVICE,
    shell:
        "probes fit --settings {params.settings:q} --activations {input.activations:q} {params.warm} {params.reuse}"
        " --out-json {output.json:q} --out-weights {output.weights:q} --threads {threads}"
        " --device {resources.device} > {log:q} 2>&1"
