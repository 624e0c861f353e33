"""``python -m datasets``: the data-stage CLI the Snakemake rules call.

Subcommands: ``simulate``, ``download``, ``preprocess``, ``subsample`` (see ``--help`` of each).
Outputs are written atomically (temporary file in the same folder, then ``os.replace``), so a
failed call leaves no output. Bad data exits with status 2 and one line ``error: ...`` on
stderr (no traceback); other failures keep their traceback.
"""

from __future__ import annotations

import argparse
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

    try:
        parse_scenario(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err
    return text


def read_h5ad(path: str):
    import anndata as ad

    from datasets.ingest import DataError

    if not Path(path).is_file():
        raise DataError(f"input file '{path}' does not exist")
    try:
        return ad.read_h5ad(path)
    except OSError as err:
        raise DataError(f"cannot read '{path}' as h5ad: {err}") from err


def cmd_simulate(args: argparse.Namespace) -> None:
    from datasets import write_h5ad_atomic
    from datasets.simulate import simulate

    adata = simulate(scenario=args.scenario, seed=args.seed, n_cells=args.n_cells, n_genes=args.n_genes,
                     n_batches=args.n_batches)
    write_h5ad_atomic(adata, args.out)


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


def cmd_preprocess(args: argparse.Namespace) -> None:
    from datasets import write_h5ad_atomic
    from datasets.preprocess import preprocess

    raw = read_h5ad(args.raw)
    adata = preprocess(raw, name=args.name, batch_key=args.batch_key, label_key=args.label_key,
                       system_key=args.system_key, counts=args.counts, counts_integer=args.counts_integer,
                       duplicate_cells=args.duplicate_cells, n_hvg=args.n_hvg, min_genes=args.min_genes,
                       min_cells=args.min_cells, n_pcs=args.n_pcs, seed=args.seed,
                       source=args.source or str(args.raw))
    write_h5ad_atomic(adata, args.out)


def cmd_subsample(args: argparse.Namespace) -> None:
    from datasets import write_h5ad_atomic
    from datasets.preprocess import subsample

    write_h5ad_atomic(subsample(read_h5ad(args.data), args.n, args.seed), args.out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m datasets", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="Splatter-style simulation (ResPAN scenarios) -> raw h5ad")
    sim.add_argument("--scenario", type=scenario_name, default="baseline", help="baseline, batch1-<p>, rare1-<p>, common-<k>")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--n-cells", type=int, default=4000, help="cells before filtering, split over batches")
    sim.add_argument("--n-genes", type=int, default=10000)
    sim.add_argument("--n-batches", type=int, default=2)
    sim.add_argument("--out", required=True, help="raw h5ad to write")
    sim.set_defaults(func=cmd_simulate)

    dl = sub.add_parser("download", help="download a registry dataset -> raw h5ad")
    dl.add_argument("--name", required=True)
    dl.add_argument("--registry", default="config/datasets.yaml")
    dl.add_argument("--out", required=True)
    dl.add_argument("--lock", default="config/datasets.lock")
    dl.set_defaults(func=cmd_download)

    pre = sub.add_parser("preprocess", help="validate + QC + normalize + HVG + PCA -> preprocessed h5ad")
    pre.add_argument("--raw", required=True)
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
    pre.set_defaults(func=cmd_preprocess)

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
        return EXIT_DATA_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
