"""The AWS emulator on one machine: moto's standalone server with the stack deployed, and a player that runs
each submitted container's command locally (forked from a zygote in the test suite)."""
