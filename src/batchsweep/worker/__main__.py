"""`python -m batchsweep.worker`: the task image's command (an AWS Batch child). It runs `batchsweep.worker.remote`,
which runs this child's slice of tasks with the same `execute_task` as every engine."""

import sys

from batchsweep.worker.remote import main

sys.exit(main())
