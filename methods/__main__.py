"""CLI: ``python -m methods run ...`` (one run -> run.h5ad) and ``python -m methods list``."""

from __future__ import annotations

import argparse
import json
import sys

from methods import registry
from methods.attempts import MIN_MEM_LIMIT_MB


def memory_limit(text: str) -> int:
    """``--max-mem-mb``: a whole number of MB the run can start under (one argparse line otherwise;
    a limit below what the process already holds failed with "failed to map segment")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of MB, got '{text}'") from None
    if value < MIN_MEM_LIMIT_MB:
        raise argparse.ArgumentTypeError(
            f"{value} MB is below the {MIN_MEM_LIMIT_MB} MB a run needs before its method starts; give at "
            f"least {MIN_MEM_LIMIT_MB} (config key max_mem_mb)")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m methods", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one method on one dataset and write the run file")
    run.add_argument("--data", required=True, help="preprocessed dataset (.h5ad)")
    run.add_argument("--out", required=True, help="run file to write (run.h5ad)")
    run.add_argument("--method", required=True)
    run.add_argument("--setting", default="default")
    run.add_argument("--params", default="{}", help="JSON object of parameters")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--device", default="auto")
    run.add_argument("--threads", type=int, default=1)
    run.add_argument("--label-missing", type=float, default=0.0)
    run.add_argument("--max-mem-mb", type=memory_limit, default=None, help="memory limit of the run (MB)")
    run.add_argument("--strict", action="store_true", help="exit non-zero when the run fails")
    run.add_argument("--attempt", type=int, default=1, help="Snakemake's attempt number of this job")
    run.add_argument("--attempts", type=int, default=1,
                     help="attempts Snakemake makes in all; out of memory or time before the last exits 75")
    run.add_argument("--time-limit-s", type=float, default=None,
                     help="stop the method after this long (default: before a SLURM job's time limit)")
    run.add_argument("--run-time-limit-s", type=float, default=None,
                     help="the study's time limit per run (config run_time_limit_min): a run stopped by it is "
                          "recorded as failed, not retried")
    run.add_argument("--external", default=None,
                     help="your own method's MethodSpec as JSON (the workflow passes it; methods/external.py)")
    sub.add_parser("list", help="list registered methods")
    args = parser.parse_args(argv)

    if args.command == "list":
        for name, spec in sorted(registry.METHODS.items()):
            print(f"{name}\t{spec.output}\t{spec.input}\t{'gpu' if spec.gpu else 'cpu'}\t{spec.description}")
        return 0
    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as exc:
        print(f"error: --params is not valid JSON ({exc})", file=sys.stderr)
        return 2
    if args.external:
        try:
            registry.register(args.method, registry.MethodSpec(**json.loads(args.external)))
        except (json.JSONDecodeError, TypeError) as exc:
            print(f"error: --external is not a method spec as JSON ({exc})", file=sys.stderr)
            return 2
    from methods.attempts import RETRY_EXIT_CODE, RetryRun
    from methods.runner import DataFileError, OutputFolderError
    from methods.runner import run as run_one

    try:
        info = run_one(args.data, args.out, args.method, args.setting, params, args.seed,
                       device=args.device, threads=args.threads, label_missing=args.label_missing,
                       strict=args.strict, max_mem_mb=args.max_mem_mb, attempt=args.attempt,
                       attempts=args.attempts, time_limit_s=args.time_limit_s,
                       run_time_limit_s=args.run_time_limit_s)
    except (DataFileError, OutputFolderError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RetryRun as exc:
        print(f"{args.method} {args.setting} seed{args.seed}: {exc}; exiting with status {RETRY_EXIT_CODE} "
              "so that Snakemake retries the job with more memory and time", file=sys.stderr)
        return RETRY_EXIT_CODE
    print(f"{args.method} {args.setting} seed{args.seed}: {info['status']}"
          + (f" ({info['error']})" if info.get("error") else ""))
    return 0


if __name__ == "__main__":
    from guards.cli import guarded

    sys.exit(guarded("python -m methods", main))
