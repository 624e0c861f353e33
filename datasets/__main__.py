"""``python -m datasets``: the data-stage CLI the Snakemake rules call.

Subcommands: ``simulate``, ``download``, ``preprocess``, ``subsample`` (see ``--help`` of each).
Outputs are written atomically (temporary file in the same folder, then ``os.replace``), so a
failed call leaves no output. Bad data exits with status 2 and one line ``error: ...`` on
stderr (no traceback); other failures keep their traceback. With ``--record-failure`` (what the
workflow passes unless ``strict: true``) bad data and failed downloads are recorded instead: the
output is a failed-dataset record (datasets/failure.py) and the exit status 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_DATA_ERROR = 2


def parse_bool(text: str) -> bool:
    """'true'/'false' (also yes/no, 1/0) -> bool, for ``--counts-integer``."""
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")


def optional_key(text: str) -> str | None:
    """Obs key option where ``none``/``null``/empty means "absent" (unlabelled data, no system)."""
    return None if text.strip().lower() in ("", "none", "null") else text


def scenario_name(text: str) -> str:
    """Validate ``--scenario`` up front (one argparse error line instead of a traceback)."""
    from datasets.simulate import parse_scenario
    from datasets.simulate_modalities import MODALITY_SCENARIOS
    from datasets.simulate_systems import SYSTEM_SCENARIOS

    if text in SYSTEM_SCENARIOS or text in MODALITY_SCENARIOS:
        return text
    try:
        parse_scenario(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{err}; or a systems scenario: {', '.join(SYSTEM_SCENARIOS)}; or a "
                                         f"modality scenario: {', '.join(MODALITY_SCENARIOS)}") from err
    return text


def read_h5ad(path: str):
    import anndata as ad

    from datasets.ingest import DataError

    if Path(path).is_symlink() and not Path(path).exists():
        raise DataError(f"input file '{path}' is a symbolic link that leads nowhere (a loop, or its target is "
                        "gone): point it to the real file")
    if not Path(path).is_file():
        raise DataError(f"input file '{path}' does not exist")
    try:
        return ad.read_h5ad(path)
    except OSError as err:
        raise DataError(f"cannot read '{path}' as h5ad: {err}") from err


def cmd_simulate(args: argparse.Namespace) -> None:
    from datasets import write_h5ad_atomic
    from datasets.simulate import describe_cells, simulate
    from datasets.simulate_modalities import MODALITY_SCENARIOS, describe_modalities, simulate_modalities
    from datasets.simulate_systems import SYSTEM_SCENARIOS, describe_systems, simulate_systems

    if args.scenario in MODALITY_SCENARIOS:  # one RNA batch and one of the other modality (--n-batches unused)
        adata = simulate_modalities(scenario=args.scenario, seed=args.seed, n_cells=args.n_cells,
                                    n_genes=args.n_genes)
        describe = describe_modalities
    elif args.scenario in SYSTEM_SCENARIOS:  # --n-batches: batches in each of the two systems
        adata = simulate_systems(scenario=args.scenario, seed=args.seed, n_cells=args.n_cells,
                                 n_genes=args.n_genes, batches_per_system=args.n_batches)
        describe = describe_systems
    else:
        adata = simulate(scenario=args.scenario, seed=args.seed, n_cells=args.n_cells, n_genes=args.n_genes,
                         n_batches=args.n_batches)
        describe = describe_cells
    write_h5ad_atomic(adata, args.out)
    print(describe(adata), file=sys.stderr)


def cmd_download(args: argparse.Namespace) -> None:
    import logging

    from datasets.download import fetch
    from datasets.ingest import DataError
    from datasets.registry import load_registry

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    registry = load_registry(Path(args.registry))
    if args.name not in registry:
        raise DataError(f"{args.registry}: no dataset '{args.name}'; known: {', '.join(sorted(registry))}")
    fetch(args.name, registry[args.name], Path(args.out), Path(args.lock), registry=registry)


def read_source(args: argparse.Namespace):
    """The raw AnnData and its provenance text: a raw h5ad (--raw) or a local file (--file-entry)."""
    import tempfile

    from datasets.failure import failed_dataset
    from datasets.ingest import DataError

    if args.file_entry is None:
        failed = failed_dataset(args.raw) if Path(args.raw).is_file() else None
        if failed:  # passed on with the stage that failed
            args.stage = failed["stage"]
            retry = f" (to try the download again, delete {args.raw} and {args.out})" \
                if failed["stage"] == "download" else ""
            raise DataError(failed["error"] + retry)
        return read_h5ad(args.raw), args.source or str(args.raw)
    from datasets.local_file import read_local, verify_or_record

    entry = json.loads(args.file_entry)
    sha = verify_or_record(args.name, entry, args.lock)
    with tempfile.TemporaryDirectory(dir=Path(args.out).parent, prefix=f".{args.name}-read-") as workdir:
        raw = read_local(args.name, entry, Path(workdir))
    return raw, args.source or f"{entry['path']} (sha256 {sha})"


def cmd_preprocess(args: argparse.Namespace) -> None:
    from datasets import write_h5ad_atomic
    from datasets.preprocess import preprocess

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    raw, source = read_source(args)
    adata = preprocess(raw, name=args.name, batch_key=args.batch_key, label_key=args.label_key,
                       system_key=args.system_key, counts=args.counts, counts_integer=args.counts_integer,
                       duplicate_cells=args.duplicate_cells, n_hvg=args.n_hvg, min_genes=args.min_genes,
                       min_cells=args.min_cells, n_pcs=args.n_pcs, seed=args.seed, source=source)
    write_h5ad_atomic(adata, args.out)


def cmd_subsample(args: argparse.Namespace) -> None:
    from datasets import write_h5ad_atomic
    from datasets.failure import failed_dataset, write_failed_dataset
    from datasets.ingest import DataError
    from datasets.preprocess import subsample

    failed = failed_dataset(args.data) if Path(args.data).is_file() else None
    if failed:  # the scaling runs of a failed dataset are recorded as failed, like its other runs
        write_failed_dataset(args.out, failed["name"], failed["stage"], failed["error"])
        return
    data = read_h5ad(args.data)
    try:
        sample = subsample(data, args.n, args.seed)
    except DataError as err:  # a size the data cannot give: its scaling runs fail, the study goes on
        write_failed_dataset(args.out, Path(args.data).stem, "subsample", str(err))
        print(f"error: {err}; recorded in {args.out}: its scaling runs are recorded as failed", file=sys.stderr)
        return
    write_h5ad_atomic(sample, args.out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m datasets", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="Splatter-style simulation (ResPAN scenarios) -> raw h5ad")
    sim.add_argument("--scenario", type=scenario_name, default="baseline", help="Splatter: baseline, batch1-<p>, rare1-<p>, common-<k>; "
                     "two systems: systems, systems-unique; two modalities: rna-atac, rna-spots")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--n-cells", type=int, default=4000, help="cells before filtering, split over batches")
    sim.add_argument("--n-genes", type=int, default=10000)
    sim.add_argument("--n-batches", type=int, default=2, help="batches (systems scenarios: batches per system)")
    sim.add_argument("--out", required=True, help="raw h5ad to write")
    sim.add_argument("--name", help="dataset name (in a failure record; default: the --out file name)")
    sim.add_argument("--record-failure", action="store_true",
                     help="a simulation that keeps no cell: write a failed-dataset record to --out and exit 0")
    sim.set_defaults(func=cmd_simulate, stage="simulate")

    dl = sub.add_parser("download", help="download a registry dataset -> raw h5ad")
    dl.add_argument("--name", required=True)
    dl.add_argument("--registry", default="config/datasets.yaml")
    dl.add_argument("--out", required=True)
    dl.add_argument("--lock", default="config/datasets.lock")
    dl.add_argument("--record-failure", action="store_true",
                    help="a failed download: write a failed-dataset record to --out and exit 0")
    dl.set_defaults(func=cmd_download, stage="download")

    pre = sub.add_parser("preprocess", help="validate + QC + normalize + HVG + PCA -> preprocessed h5ad")
    source = pre.add_mutually_exclusive_group(required=True)
    source.add_argument("--raw", help="raw h5ad (simulated or downloaded)")
    source.add_argument("--file-entry", help="a file: dataset's registry entry (JSON; datasets/local_file.py)")
    pre.add_argument("--lock", default="config/datasets.lock", help="lock file recording a local file's sha256")
    pre.add_argument("--out", required=True)
    pre.add_argument("--name", required=True, help="dataset name (used in messages and provenance)")
    pre.add_argument("--batch-key", required=True)
    pre.add_argument("--label-key", type=optional_key, default=None, help="obs key or 'none' (unlabelled)")
    pre.add_argument("--system-key", type=optional_key, default=None, help="obs key or 'none' (= batch)")
    pre.add_argument("--counts", default="X", help="X or layers/<name>")
    pre.add_argument("--counts-integer", type=parse_bool, default=None,
                     help="false accepts non-integer counts; default requires integers")
    pre.add_argument("--duplicate-cells", choices=("error", "make_unique"), default="error")
    pre.add_argument("--n-hvg", type=int, default=2000)
    pre.add_argument("--min-genes", type=int, default=200)
    pre.add_argument("--min-cells", type=int, default=3)
    pre.add_argument("--n-pcs", type=int, default=50)
    pre.add_argument("--seed", type=int, default=0)
    pre.add_argument("--source", default="", help="provenance text (default: the raw path)")
    pre.add_argument("--record-failure", action="store_true",
                     help="bad data: write a failed-dataset record to --out and exit 0")
    pre.set_defaults(func=cmd_preprocess, stage="preprocess")

    subs = sub.add_parser("subsample", help="batch-stratified subsample of a preprocessed h5ad")
    subs.add_argument("--data", required=True)
    subs.add_argument("--n", type=int, required=True)
    subs.add_argument("--seed", type=int, default=0)
    subs.add_argument("--out", required=True)
    subs.set_defaults(func=cmd_subsample)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from datasets.download import DownloadError
    from datasets.ingest import DataError
    from datasets.lock import LockFileError
    from datasets.registry import RegistryError

    try:
        args.func(args)
    except (DataError, DownloadError, RegistryError, LockFileError) as err:
        print(f"error: {err}", file=sys.stderr)
        if not getattr(args, "record_failure", False):
            return EXIT_DATA_ERROR
        from datasets.failure import write_failed_dataset

        write_failed_dataset(args.out, args.name or Path(args.out).stem, args.stage, str(err))
        print(f"recorded as a failed dataset in {args.out}: its runs are recorded as failed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from guards.cli import guarded

    sys.exit(guarded("python -m datasets", main))
