rule train:
    input:
        data=dataset_files,
    output:
        f"{RUN}/checkpoints/step{{step}}.pt",
    params:
        data_dir=MNIST_DIR,
        code=CODE["train"],
        settings=lambda wc: as_json(experiment(wc).train_settings(int(wc.repeat))),
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
        " --resume-dir $(dirname {output}) --snapshot-minutes {SNAPSHOT_MINUTES}"
        " --out {output} --threads {threads} > {log} 2>&1"
