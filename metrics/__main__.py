"""Command line of the metrics stage.

    python -m metrics score --data DATA.h5ad --runs R1.h5ad R2.h5ad ... --out M1.json M2.json ...
                            [--options JSON | --options-file FILE]
    python -m metrics aggregate ...   (the tables and selection: ``metrics.aggregate.main``)

``score`` scores many runs in one process (numba/JAX compile once) and writes one
``metrics.json`` per run, atomically; options are documented in ``metrics/score.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _parse_options(text: str | None, path: str | None) -> dict:
    if path:
        text = Path(path).read_text()
    if not text:
        return {}
    try:
        opts = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"error: --options is not valid JSON: {exc}") from exc
    if not isinstance(opts, dict):
        raise SystemExit("error: --options must be a JSON object")
    return opts


def score_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m metrics score", description="Score run files.")
    parser.add_argument("--data", required=True, help="preprocessed dataset (.h5ad)")
    parser.add_argument("--runs", required=True, nargs="+", help="run.h5ad files")
    parser.add_argument("--out", required=True, nargs="+", help="metrics.json per run, same order")
    parser.add_argument("--options", default=None, help="JSON object of options")
    parser.add_argument("--options-file", default=None, help="file with the JSON options")
    args = parser.parse_args(argv)
    opts = _parse_options(args.options, args.options_file)
    from metrics.score import score_many

    try:
        results = score_many(args.data, args.runs, args.out, opts)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for run, res in zip(args.runs, results):
        n_ok = sum(v is not None for v in res["metrics"].values())
        print(f"{run}: {res['status']}, {n_ok}/{len(res['metrics'])} metrics, "
              f"{res['timing'].get('total', 0):.1f} s", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "score":
        return score_main(rest)
    if command == "aggregate":  # tables and selection
        from metrics.aggregate import main as aggregate_main

        return int(aggregate_main(rest) or 0)
    print(f"error: unknown command {command!r}; use 'score' or 'aggregate'", file=sys.stderr)
    return 2


if __name__ == "__main__":
    from guards.cli import guarded

    sys.exit(guarded("python -m metrics", main))
