"""Adaptive hyperparameter search beside a method's grid (Optuna TPE, in rounds of runs).

plan.py checks a method's ``search:`` block and names its trials; ask.py proposes a round's
settings from the scored trials before it; table.py builds ``tables/search.tsv`` (grid and
search trials under one fixed score). The workflow wires them (workflow/rules/search.smk).
"""
