"""The results table written out (`batchsweep.report.export`)."""

from __future__ import annotations

import json
import warnings

import pandas as pd

from batchsweep.report.export import export


def test_json_times_stay_whole_milliseconds_since_the_epoch_without_a_pandas_warning():
    """pandas 4 turns `to_json`'s default for datetimes into ISO text and pandas 3 warns of it: the JSON
    export writes the milliseconds itself, as it always has (rounded down, before 1970 too; a missing time
    null), so the file is the same under either."""
    df = pd.DataFrame({"task": [0, 1, 2], "started_at": [1e9 + 0.1234567, None, -1.0005],
                       "ended_at": [1.7e9 + 0.9999996, 5.0, -0.0005]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = export(df, "json", None)
    assert text is not None
    assert json.loads(text) == [
        {"task": 0, "started_at": 1000000000123, "ended_at": 1700000001000},
        {"task": 1, "started_at": None, "ended_at": 5000},
        {"task": 2, "started_at": -1001, "ended_at": -1},
    ]
