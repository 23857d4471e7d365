"""Reading untrusted YAML (a spec file): yaml.safe_load with alias expansion ("billion laughs") and nesting depth
capped before anything expands."""

from __future__ import annotations

from typing import Any

MAX_YAML_DEPTH = 64
MAX_YAML_NODES = 1_000_000  # after alias expansion: what validation and the task list would really hold


class TooComplex(ValueError):
    pass


def bounded_yaml(text: str) -> Any:
    """yaml.safe_load with alias expansion ("billion laughs") and nesting depth capped, before anything expands."""
    import yaml

    class Loader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self.depth += 1
            if self.depth > MAX_YAML_DEPTH:
                raise TooComplex(f"nested deeper than {MAX_YAML_DEPTH} levels; a spec is a few levels deep")
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    loader = Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _expanded_size(root)
        return loader.construct_document(root)
    finally:
        loader.dispose()


def _expanded_size(root: Any) -> int:
    """Nodes the document holds once every alias is expanded; raises TooComplex above MAX_YAML_NODES."""
    import yaml

    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children: list[Any] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            active.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[key] > MAX_YAML_NODES:
                raise TooComplex(f"its aliases expand to more than {MAX_YAML_NODES:,} values (a YAML alias bomb?); "
                                  "write the values out or use fewer anchors")
            continue
        if key in sizes:
            continue
        if key in active:
            raise TooComplex("a YAML alias refers to a node that contains it (a recursive anchor)")
        active.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]
