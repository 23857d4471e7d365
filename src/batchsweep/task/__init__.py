"""What runs one task anywhere: the worker, the fork server, series, early stopping, usage, reaping."""
