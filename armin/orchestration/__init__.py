"""Orchestration: specs -> Optuna trials -> Ray tasks -> the database (the only package that imports ray/optuna)."""
