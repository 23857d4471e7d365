"""The Dask engine: tasks on a Dask cluster (dask-jobqueue's Slurm included), a summary written per task."""
