# The probe-solver benchmark (docs/performance.md, "Probe-solver benchmark"): not part of the default target.
# Run:  snakemake --cores 1 probe_benchmark
# One fit at a time, each on one thread (CPU time is the figure reported), so --cores 1. It needs the
# optional benchmark packages: pip install cyanure scikit-learn-intelex.

# (case name, experiment, checkpoint: "first", "last" or a step, point, training rows or None for all):
# the MNIST convnet's five probe-point classes at initialisation and after training (conv2_postpool on
# its first 10,000 training rows, the two full-rank wide points on 5,000), a 128-wide layer of the
# Figure 8 MLP at steps 500 and 5,000, its collapsed layer63, and layer49, whose C lies past the grid's
# upper end. The wide points' scikit-learn lbfgs rows are read off their trace run (BENCHMARK_WIDE).
BENCHMARK_CASES = [
    (f"convnet_{label}/{point}", "mnist_convnet", step, point, rows)
    for label, step in (("init", "first"), ("trained", "last"))
    for point, rows in (
        ("input", None),
        ("fc1_postact", None),
        ("conv2_postpool", 10000),
        ("conv2_postact", 5000),
        ("conv1_postact", 5000),
    )
] + [
    ("mlp128_skip_step500/layer96", "mlp128_skip", 500, "layer96", None),
    ("mlp128_skip_trained/layer96", "mlp128_skip", "last", "layer96", None),
    ("mlp128_skip_trained/layer63", "mlp128_skip", "last", "layer63", None),
    ("mlp128_skip_trained/layer49", "mlp128_skip", "last", "layer49", None),
]
BENCHMARK_REPEATS = 3
BENCHMARK_WIDE = [n for n, *_ in BENCHMARK_CASES if n.endswith(("conv2_postact", "conv1_postact"))]
BENCHMARK_WIDE_ARGS = " ".join(
    f"--case-methods {n}=project,cyanure,sklearnex,sklearnex_tuned,rmsprop --sklearn-from-trace {n}"
    f" --max-iter {n}=3000,1500"
    for n in BENCHMARK_WIDE
)
BENCHMARK_OUT = f"{RESULTS}/probe_benchmark"


def benchmark_cases() -> list[tuple[str, str, str]]:
    """(name, activation file, point) of every case, from the experiments in the config."""
    cases = []
    for name, exp_name, which, point, _ in BENCHMARK_CASES:
        exp = named("experiments", exp_name)
        step = exp.steps[0] if which == "first" else exp.steps[-1] if which == "last" else int(which)
        cases.append((name, f"{RESULTS}/{exp_name}/r0/activations/step{step}.h5", point))
    return cases


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
