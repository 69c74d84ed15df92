# probes: linear classifier probes over training (Alain & Bengio, 2016).
# Run:  snakemake --cores 2                                         (the paper: config.yaml)
#       snakemake --cores 2 --configfile workflow/config/tiny.yaml  (a tiny version of every experiment)
# Each stage's rules live in workflow/rules/; each calls the `probes` CLI in src/.
import os
from pathlib import Path

from snakemake.utils import min_version

from probes.configfiles import read as read_config

min_version("8.0")


report: "workflow/report/workflow.rst"


# config.yaml is the configuration only when no --configfile is given: a config file named on
# the command line (or in a profile) is the whole configuration, not an overlay onto the paper's.
# An overlay (workflow/config/quick.yaml, videos.yaml) is named after the file it changes:
#   snakemake --cores 2 --configfile config.yaml workflow/config/quick.yaml
if not workflow.overwrite_configfiles:
    # a YAML syntax error in config.yaml named by line and column (Snakemake's own message names neither);
    # --configfile files are read by Snakemake before this file: `probes check-config` names theirs
    if Path("config.yaml").exists():
        read_config("config.yaml")

    configfile: "config.yaml"


if workflow.overwrite_configfiles:
    from probes.configfiles import incomplete

    # the first file is the base: whole on its own (an overlay's misspelt entry is named by common.smk)
    _missing = incomplete(read_config(workflow.overwrite_configfiles[0]))
    if _missing:
        _here = os.path.abspath(os.curdir)
        _named = " ".join(
            os.path.relpath(f) if os.path.abspath(f).startswith(_here + os.sep) else str(f)
            for f in workflow.overwrite_configfiles
        )
        raise WorkflowError(
            f"{_named}: not a whole configuration (no {_missing}). "
            "A file given with --configfile replaces config.yaml; to apply an overlay onto config.yaml, name "
            f"config.yaml first: --configfile config.yaml {_named}"
        )


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
