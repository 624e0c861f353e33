"""Checks of what a user gives the benchmark, shared by the workflow and the command lines.

``guards.study_config``: the study config at plan time (output folder, metric names, sizes
against the data, device), one line per problem naming the key and what to do.
``guards.yaml_files``: YAML loading that refuses a key given twice (plain YAML keeps the last
one without a word). ``guards.cli``: the top-level handler of every ``python -m ...`` command,
so that a user gets one line, not a traceback. Pure Python: every env can import it.
"""
