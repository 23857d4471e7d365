"""A Run: start, watch, cancel, resume; the catalog of runs, their history, diff, replay, removal."""
