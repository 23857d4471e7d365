"""The sweep spec: its schema, untrusted YAML reading, `--set` overrides and the distribution syntax."""
