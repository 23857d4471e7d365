"""A run's results table, its HTML report and plots, live progress, and what a run cost."""
