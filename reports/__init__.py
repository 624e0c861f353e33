"""Reports stage: plotnine figures and the HTML report, drawn from the benchmark tables only.

``reports.figures.FIGURES`` lists the figures (name -> (function, description));
``python -m reports render ...`` renders them and writes the report (see ``reports/cli.py``).
"""
