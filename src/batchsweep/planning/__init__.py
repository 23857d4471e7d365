"""A sweep becomes a Plan: the parameter space expanded, every check before anything is written, content
keys, reuse, and the adaptive search whose rounds a run drives."""
