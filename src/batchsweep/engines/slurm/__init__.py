"""The Slurm engine: one `sbatch --array` per up to MaxArraySize children, each child running its slice of the
tasks (`batchsweep.task.remote`) from the code package kept in the store; progress from the store and
`squeue`; cancel by `scancel`. Nothing of batchsweep stays alive while Slurm runs the tasks."""

from batchsweep.engines.slurm.engine import SlurmEngine

__all__ = ["SlurmEngine"]
