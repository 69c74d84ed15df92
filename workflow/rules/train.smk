rule train:
    input:
        data=dataset_files,
        start=previous_checkpoint,
    output:
        f"{RUN}/checkpoints/step{{step}}.pt",
    params:
        data_dir=MNIST_DIR,
        settings=lambda wc: as_json(experiment(wc).train_settings(int(wc.repeat))),
        start=lambda wc, input: f"--start {input.start}" if input.start else "",
    log:
        f"{LOGS}/train/{{experiment}}/r{{repeat}}/step{{step}}.log",
    benchmark:
        f"{BENCH}/train/{{experiment}}/r{{repeat}}/step{{step}}.tsv"
    threads: 1  # more with --set-threads train=N: one core each keeps both cores busy here
    resources:
        mem_mb=3000,
        runtime=120,
    shell:
        "probes train --settings {params.settings:q} --data-dir {params.data_dir} --step {wildcards.step}"
        " {params.start} --out {output} --threads {threads} > {log} 2>&1"
