# One fetch rule per file set of the dataset registry (src/probes/datasets/): its outputs are the
# set's files under <data_dir>/<name>/, each MD5-verified; its sources, the registry's defaults with
# those the config's data.<name> block states.
for download in datasets.DOWNLOADS.values():

    rule:
        name:
            f"fetch_{download.name}"
        output:
            [f"{DATA_DIR}/{download.name}/{f}" for f in download.files],
        params:
            download=download.name,
            out=lambda wildcards, output: Path(output[0]).parent,
            sources=as_json(download.sources(config["data"].get(download.name))),
        log:
            f"{LOGS}/data/{download.name}.log",
        benchmark:
            f"{BENCH}/data/{download.name}.tsv"
        resources:
            mem_mb=500,
            runtime=15,
        shell:
            "probes fetch {params.download} --out {params.out:q} --sources {params.sources:q} > {log:q} 2>&1"
