"""The package's public names stay what they say after every submodule has been imported: a submodule named
like a function (`batchsweep/run.py`) would replace `batchsweep.run` in the package namespace once loaded."""

import importlib
import inspect
import pkgutil

import batchsweep


def test_public_names_survive_importing_every_module():
    for info in pkgutil.walk_packages(batchsweep.__path__, "batchsweep."):
        if info.name.rsplit(".", 1)[-1].startswith("_") and info.name != "batchsweep.scripts._introspect":
            continue
        try:
            importlib.import_module(info.name)
        except ImportError:  # an optional extra that is not installed (e.g. dask-jobqueue)
            continue
    for name in batchsweep.__all__:
        value = getattr(batchsweep, name)
        assert not inspect.ismodule(value), (
            f"batchsweep.{name} is the module {value.__name__}, not the API object"
        )
