"""probes: linear classifier probes over training (Alain & Bengio, 2016) as a Snakemake workflow."""

__version__ = "0.1.0"
