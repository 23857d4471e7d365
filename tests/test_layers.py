"""Every module of the package has a place in the layers contract (pyproject's [tool.importlinter]), so the
contract that `make lint` checks covers the whole house: a new module must be placed before it lands."""

import pkgutil
from pathlib import Path

import tomllib

import batchsweep

ROOT = Path(__file__).resolve().parents[1]
# run as scripts in a child process, import nothing of ours
STANDALONE = {"batchsweep.scripts._introspect", "batchsweep.task._hydrarun"}


def test_every_module_is_in_a_layer():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    placed = {name.strip() for layer in layers for name in layer.replace(":", "|").split("|")}
    missing = []
    for info in pkgutil.walk_packages(batchsweep.__path__, "batchsweep."):
        if info.ispkg and any(p.startswith(info.name + ".") for p in placed):
            continue  # a namespace of modules placed one by one (aws, infra)
        if info.name in STANDALONE or any(info.name == p or info.name.startswith(p + ".") for p in placed):
            continue
        missing.append(info.name)
    assert not missing, f"not in any layer of [tool.importlinter] in pyproject.toml: {missing}"


def test_no_backend_name_is_spelt_outside_the_engines_and_the_registry():
    """What differs between engines is theirs (`Engine` hooks: price, size, memory limit, where tasks run):
    code that branches on a backend's name would leave a plug-in engine out, so the names appear nowhere
    else."""
    import ast

    from batchsweep import registry

    names = set(registry.ENGINES)
    package = ROOT / "src" / "batchsweep"
    found = []
    for path in sorted(package.rglob("*.py")):
        where = path.relative_to(package).as_posix()
        if where.startswith("engines/") or where == "registry.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{where}:{node.lineno}: {node.value!r}")
    assert not found, "a backend's name outside engines/ and registry.py (give Engine a hook instead):\n" + \
        "\n".join(found)


def test_no_line_of_the_package_is_wider_than_the_house_allows():
    """ruff's E501 passes a line that ends in a pragma (`# noqa`, `# type: ignore`) or a URL, and never
    reads the report's script and style: 110 columns hold for those too (a pragma's reason goes on the line
    above)."""
    pkg = ROOT / "src" / "batchsweep"
    paths = [path for pattern in ("*.py", "*.js", "*.css") for path in pkg.rglob(pattern)]
    wide = [f"{path.relative_to(pkg)}:{n}" for path in paths
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if len(line) > 110]
    assert not wide, f"lines over 110 columns: {wide}"
