"""The engines: one module (or package) each. Which name maps to which engine is `batchsweep.registry`."""
