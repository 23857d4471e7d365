"""The engine conformance suite as a library: an engine package (inside batchsweep or outside it, registered
through the `batchsweep.engines` entry points) subclasses `Conformance` in its own tests with a fixture
returning its `Harness`; see `batchsweep.testing.conformance`. Imports pytest: for tests only."""

from batchsweep.testing.conformance import Conformance
from batchsweep.testing.harness import Harness

__all__ = ["Conformance", "Harness"]
