"""The study's analysis: pure functions from a results table to a frontier, scaling-law fits and figures.

- ``contract``: the MLflow tag, param and metric names the study writes and the report reads.
- ``results_table``: the table's columns, validation, best lr per grid cell, Parquet/CSV.
- ``pareto``: the accuracy-vs-compute frontier.  ``powerlaw``: saturating/plain power laws with bootstrap intervals.
- ``scaling_fits``: error vs compute, data size, model size.  ``compute_optimal``: N_opt per budget and its trend.
- ``plots``: the figures.  ``report.build_report``: all of it into one directory.
- ``mlflow_source.table_from_mlflow`` and ``report_command`` (``vit-study report``): the same from MLflow alone.

Nothing here imports Ray or torch; MLflow is imported only by the MLflow modules.
"""
