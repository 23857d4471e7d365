"""What several benches share: counting every AWS API call a process makes, and the pandas task script."""

from __future__ import annotations

from collections import Counter
from typing import Any

CALLS: Counter[str] = Counter()

# A task whose cold start is dominated by importing numpy and pandas (what warm start saves).
HEAVY = '''\
import argparse

import numpy as np
import pandas as pd

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=int, required=True)
args = parser.parse_args()
frame = pd.DataFrame({"a": np.arange(100) * args.x})
print(int(frame["a"].sum()))
'''


def observe_every_call() -> None:
    """Count each AWS API call made by any client in this process in CALLS (an observer: the call still goes
    to moto)."""
    import botocore.client

    real = botocore.client.BaseClient._make_api_call

    def counted(self: Any, operation_name: str, api_params: Any) -> Any:
        CALLS.update([f"{self.meta.service_model.endpoint_prefix}.{operation_name}"])
        return real(self, operation_name, api_params)

    botocore.client.BaseClient._make_api_call = counted  # type: ignore[method-assign]

    # Many small objects are read through presigned URLs (`S3Backend.read_one_of_many`), sent on the client's
    # own connection pool without an API call: counted as the GetObject each one is.
    import botocore.httpsession

    send = botocore.httpsession.URLLib3Session.send

    def counted_send(self: Any, request: Any) -> Any:
        if "X-Amz-Signature=" in request.url:
            CALLS.update(["s3.GetObject"])
        return send(self, request)

    botocore.httpsession.URLLib3Session.send = counted_send  # type: ignore[method-assign]
