# The probe-solver benchmark (docs/performance.md, "Probe-solver benchmark"): not part of the default target.
# Run:  snakemake --cores 1 probe_benchmark
# One fit at a time, each on one thread (CPU time is the figure reported), so --cores 1. It needs the
# optional benchmark packages: pip install cyanure scikit-learn-intelex.

rule probe_benchmark:
    input:
        lambda wc: sorted({path for _, path, _ in benchmark_cases()}),
    output:
        table=report(f"{BENCHMARK_OUT}/table.md", category="Performance", caption="../report/benchmark.rst"),
        csv=f"{BENCHMARK_OUT}/table.csv",
        plot=report(f"{BENCHMARK_OUT}/benchmark.png", category="Performance", caption="../report/benchmark.rst"),
    params:
        cases=lambda wc: " ".join(f"--case {shlex.quote(f'{n}={p}:{pt}')}" for n, p, pt in benchmark_cases()),
        rows=" ".join(f"--rows {shlex.quote(f'{n}={r}')}" for n, *_, r in BENCHMARK_CASES if r),
        settings=lambda wc: as_json({n: EXPERIMENTS[e].probe_settings(pt) for n, e, _, pt, _ in BENCHMARK_CASES}),
        script=f"{workflow.basedir}/benchmarks/probe_benchmark.py",
        wide=BENCHMARK_WIDE_ARGS,
        repeats=BENCHMARK_REPEATS,
    log:
        f"{LOGS}/probe_benchmark.log",
    benchmark:
        f"{BENCH}/probe_benchmark.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=6 * 60,
    shell:
        "python {params.script:q} --probe-settings {params.settings:q} {params.cases} {params.rows} {params.wide}"
        ' --repeats {params.repeats} --out "$(dirname {output.table:q})" > {log:q} 2>&1'
