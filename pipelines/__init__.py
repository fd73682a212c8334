"""pipelines: everything that runs — data (Ray Data), training (Ray Train + FSDP2), the study (Ray Tune),
analysis (Pareto fronts, power-law fits, plots), MLflow tracking and the ``vit-study`` CLI."""
