"""The AWS Batch engine: code and a manifest to S3, one SubmitJob per ≤ 10,000 children (array jobs),
progress from the array parents' statusSummary, logs from S3 or CloudWatch, cancel by terminating the parents.

Each child runs `tasks_per_child` tasks one after another (`batchsweep.task.remote`), so `max_parallel` caps
concurrency without a client-side loop, and short tasks do not each pay a container start.
"""

from batchsweep.engines.aws_batch.engine import AwsBatchEngine
from batchsweep.engines.aws_batch.logs import _log_lines, _log_streams
from batchsweep.engines.aws_batch.polling import DEFAULT_RUNNABLE_ADVICE, RUNNABLE_ADVICE, TERMINAL
from batchsweep.engines.aws_batch.settings import STORE_PREFIX, resolve_settings
from batchsweep.engines.aws_batch.submit import (
    DEFAULT_TASK_TIMEOUT_S,
    MAX_ARRAY,
    MAX_CHILD_TIMEOUT_S,
    MAX_OVERRIDES_CHARS,
    child_timeout_s,
    retry_strategy,
)
from batchsweep.task.arrayslice import CHILD_TARGET_S, tasks_per_child

__all__ = [
    "CHILD_TARGET_S",
    "DEFAULT_RUNNABLE_ADVICE",
    "DEFAULT_TASK_TIMEOUT_S",
    "MAX_ARRAY",
    "MAX_CHILD_TIMEOUT_S",
    "MAX_OVERRIDES_CHARS",
    "RUNNABLE_ADVICE",
    "STORE_PREFIX",
    "TERMINAL",
    "AwsBatchEngine",
    "_log_lines",
    "_log_streams",
    "child_timeout_s",
    "resolve_settings",
    "retry_strategy",
    "tasks_per_child",
]
