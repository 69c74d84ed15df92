# The probe-fitting benchmark (docs/performance.md, "Probe-fitting benchmark"): not part of the default target.
# Run:  snakemake --cores 2 probe_benchmark   (hours: each baseline may run up to 30 minutes a layer)
rule probe_benchmark:
    input:
        lambda wc: sorted({path for _, path, _ in benchmark_cases()}),
    output:
        table=report(f"{BENCHMARK_OUT}/table.md", category="Performance", caption="../report/benchmark.rst"),
        csv=f"{BENCHMARK_OUT}/table.csv",
        plot=report(f"{BENCHMARK_OUT}/benchmark.png", category="Performance", caption="../report/benchmark.rst"),
    params:
        cases=lambda wc: " ".join(f"--case {shlex.quote(f'{n}={p}:{pt}')}" for n, p, pt in benchmark_cases()),
        settings=lambda wc: as_json({n: EXPERIMENTS[e].probe_settings(pt) for n, e, _, pt in BENCHMARK_CASES}),
        script=f"{workflow.basedir}/benchmarks/probe_benchmark.py",
        timeout=1800,
        out_of_core="convnet_trained/fc1_postact",  # streaming a wider layer re-reads GBs per iteration
    log:
        f"{LOGS}/probe_benchmark.log",
    benchmark:
        f"{BENCH}/probe_benchmark.tsv"
    threads: 1
    resources:
        mem_mb=16000,
        runtime=24 * 60,
    shell:
        "python {params.script:q} --probe-settings {params.settings:q}"
        " {params.cases} --timeout {params.timeout}"
        ' --out-of-core {params.out_of_core} --out "$(dirname {output.table:q})" > {log:q} 2>&1'
