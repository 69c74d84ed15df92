rule extract:
    input:
        data=dataset_files,
        checkpoint=checkpoint_input,
    output:
        activations=(
            f"{RUN}/activations/step{{step}}.h5"
            if config["keep_activations"]
            else temp(f"{RUN}/activations/step{{step}}.h5")
        ),
        metrics=MODEL_JSON,
    params:
        data_dir=DATA_DIR,
        code=CODE["extract"],
        settings=lambda wc: as_json(experiment(wc).extract_settings(int(wc.repeat), int(wc.step))),
        # a checkpoint made elsewhere is identified by its content, not its mtime (ancient input)
        checkpoint_digest=checkpoint_digest,
    log:
        f"{LOGS}/extract/{{experiment}}/r{{repeat}}/step{{step}}.log",
    benchmark:
        f"{BENCH}/extract/{{experiment}}/r{{repeat}}/step{{step}}.tsv"
    threads: 1
    priority: step_priority  # below the probes' (probe.smk)
    resources:
        mem_mb=3000,
        # where it runs: how the job runs, not what it makes (a resource: changing it reruns nothing)
        device=DEVICE,
        runtime=60,
    shell:
        "probes extract --settings {params.settings:q} --checkpoint {input.checkpoint:q}"
        " --data-dir {params.data_dir:q} --out {output.activations:q} --metrics-out {output.metrics:q}"
        " --threads {threads} --device {resources.device} > {log:q} 2>&1"
