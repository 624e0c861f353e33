"""Command line of the search stage (the workflow calls it; workflow/rules/search.smk).

    python -m search ask --plan PLAN.json --round R --dataset D --seeds 0 1 --runs-root OUT/runs
                         --selection SELECTION.json [--previous ROUND1.json ...] --out ROUNDR.json
    python -m search table --blocks BLOCKS.json --selection SELECTION.json --out OUT/tables/search.tsv

``ask`` scores the trials of the earlier round files (their runs' metrics.json) and writes the
next round's trials: {dataset, method, round, plan, sampler_seed, told: [{trial, setting,
score}], trials: [{trial, setting, values, params, runs: [run.h5ad per seed]}]}. ``table``
writes search.tsv (search/table.py). ``--selection`` is the aggregate step's JSON (metric set,
bio_weight).
"""

from __future__ import annotations

import argparse
import json
import sys

from metrics.aggregate import resolve_sets, write_table
from metrics.json_output import write_json_atomic
from search.ask import ask_round, round_seed
from search.plan import SearchPlan
from search.table import scored_trials, search_table


def ask(args, bio, batch, bio_weight) -> None:
    plan = SearchPlan.from_json(json.loads(args.plan))
    told = scored_trials(args.previous, bio, batch, bio_weight)
    trials = ask_round(plan, told, args.round)
    for t in trials:
        t["runs"] = [f"{args.runs_root}/{args.dataset}/{plan.method}/{t['setting']}/seed{s}/run.h5ad"
                     for s in args.seeds]
    write_json_atomic({"dataset": args.dataset, "method": plan.method, "round": args.round,
                       "plan": plan.to_json(), "sampler_seed": round_seed(plan.seed, args.round),
                       "told": [{"trial": t["trial"], "setting": t["setting"], "score": t["score"]} for t in told],
                       "trials": trials}, args.out)
    print(f"round {args.round}: told {len(told)} trials, asked {', '.join(t['setting'] for t in trials)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m search", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("ask")
    a.add_argument("--plan", required=True, help="the method's checked search block (JSON)")
    a.add_argument("--round", type=int, required=True)
    a.add_argument("--dataset", required=True)
    a.add_argument("--seeds", type=int, nargs="+", required=True)
    a.add_argument("--runs-root", required=True)
    a.add_argument("--previous", nargs="*", default=[])
    a.add_argument("--selection", default="{}")
    a.add_argument("--out", required=True)
    t = sub.add_parser("table")
    t.add_argument("--blocks", required=True, help='JSON list of {"grid_metrics": [...], "rounds": [...]}')
    t.add_argument("--selection", default="{}")
    t.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    selection = json.loads(args.selection)
    bio, batch = resolve_sets(selection)
    bio_weight = float(selection.get("bio_weight", 0.6))
    if args.command == "ask":
        ask(args, bio, batch, bio_weight)
    else:
        table = search_table(json.loads(args.blocks), bio, batch, bio_weight)
        write_table(table, args.out)
        print(f"{len(table)} rows")
    return 0


if __name__ == "__main__":
    from guards.cli import guarded

    sys.exit(guarded("python -m search", main, outputs=("--out",)))
