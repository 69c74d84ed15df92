rule train:
    input:
        data=train_inputs,
    output:
        f"{RUN}/checkpoints/step{{step}}.pt",
    params:
        data_dir=DATA_DIR,
        code=CODE["train"],
        settings=lambda wc: as_json(experiment(wc).train_settings(int(wc.repeat))),
    log:
        f"{LOGS}/train/{{experiment}}/r{{repeat}}/step{{step}}.log",
    benchmark:
        f"{BENCH}/train/{{experiment}}/r{{repeat}}/step{{step}}.tsv"
    threads: 1  # more with --set-threads train=N: one core each keeps both cores busy here
    # earlier checkpoints first (a job resumes from the latest checkpoint already on disk, so in
    # reverse order each would train from scratch), all below probe jobs; extractions share the order
    priority: step_priority
    resources:
        mem_mb=3000,
        runtime=120,
        # how often to save a resume snapshot: how the job runs, not what it makes (a resource,
        # so changing it reruns nothing; also --set-resources train:snapshot_seconds=N)
        snapshot_seconds=SNAPSHOT_SECONDS,
        device=DEVICE,
    shell:
        "probes train --settings {params.settings:q} --data-dir {params.data_dir:q} --step {wildcards.step}"
        ' --resume-dir "$(dirname {output:q})" --snapshot-seconds {resources.snapshot_seconds}'
        " --out {output:q} --threads {threads} --device {resources.device} > {log:q} 2>&1"
