"""`python -m batchsweep.worker`: the task image's command (an AWS Batch child). It runs
`batchsweep.task.remote`, which runs this child's slice of tasks with the same `execute_task` as every
engine."""

import sys

from batchsweep.task.remote import main

if __name__ == "__main__":
    sys.exit(main())
