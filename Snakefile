# probes: linear classifier probes over training (Alain & Bengio, 2016).
# Run:  snakemake --cores 2            (settings in config.yaml)
# Each stage's rules live in workflow/rules/; each calls the `probes` CLI in src/.
from pathlib import Path

from snakemake.utils import min_version

from probes.configfiles import read as read_config

min_version("8.0")


report: "workflow/report/workflow.rst"


# a YAML syntax error in config.yaml named by line and column (Snakemake's own message names neither);
# --configfile files are read by Snakemake before this file: `probes check-config` names theirs
if Path("config.yaml").exists():
    read_config("config.yaml")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/probe.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/benchmark.smk"


rule all:
    default_target: True
    input:
        all_targets(),
