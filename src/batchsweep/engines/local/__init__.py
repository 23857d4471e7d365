"""The local engine: a detached runner on this machine, with its GPU/vCPU/memory leases."""
