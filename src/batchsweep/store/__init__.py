"""The store: every path of a run (local directory or S3 prefix), run.json, reuse index, packs, run lock."""
