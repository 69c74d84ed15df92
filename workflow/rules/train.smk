def previous_checkpoint(wildcards) -> list[str]:
    """The checkpoint a segment starts from: the one before it in the schedule (none for the first)."""
    exp = experiment(wildcards)
    step = int(wildcards.step)
    if step not in exp.steps:
        raise ValueError(f"step {step} is not a checkpoint of {exp.name}; its schedule is {list(exp.steps)}")
    prev = exp.previous_step(step)
    return [] if prev is None else [f"{RUN}/checkpoints/step{prev}.pt".format(**wildcards)]


rule train:
    input:
        data=dataset_files,
        start=previous_checkpoint,
    output:
        f"{RUN}/checkpoints/step{{step}}.pt",
    params:
        settings=lambda wc: as_json(experiment(wc).train_settings(int(wc.repeat))),
        start=lambda wc, input: f"--start {input.start}" if input.start else "",
    log:
        f"{LOGS}/train/{{experiment}}/r{{repeat}}/step{{step}}.log",
    benchmark:
        f"{BENCH}/train/{{experiment}}/r{{repeat}}/step{{step}}.tsv"
    threads: 2
    resources:
        mem_mb=3000,
        runtime=120,
    shell:
        "probes train --settings {params.settings:q} --data-dir {MNIST_DIR} --step {wildcards.step}"
        " {params.start} --out {output} --threads {threads} > {log} 2>&1"
