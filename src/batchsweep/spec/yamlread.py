"""Reading untrusted YAML (a spec file): yaml.safe_load with alias expansion ("billion laughs") and nesting
depth capped before anything expands."""

from __future__ import annotations

from typing import Any

MAX_YAML_DEPTH = 64
MAX_YAML_NODES = 1_000_000  # after alias expansion: what validation and the task list would really hold


class TooComplex(ValueError):
    pass


class DuplicateKey(ValueError):
    """A mapping names one key twice (YAML would keep the last silently)."""


def _loader_class(*, c_parser: bool = True) -> type:
    """yaml.SafeLoader whose composer caps nesting depth. The events come from libyaml's C parser when PyYAML
    has it (a 100,000-value grid: 0.7 s instead of 2.9 s; its parser keeps its own stack and caps depth
    itself), and are composed by PyYAML's Python composer, where the depth is counted — never by the C
    composer, whose recursion nothing caps."""
    import yaml
    from yaml.composer import Composer

    class Capped(Composer):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self.depth += 1
            if self.depth > MAX_YAML_DEPTH:
                raise TooComplex(f"nested deeper than {MAX_YAML_DEPTH} levels; a spec is a few levels deep")
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    class Unique(yaml.constructor.SafeConstructor):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue  # `<<: *base` overrides by design; a complex key is refused by the constructor
                key = self.construct_object(key_node)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise DuplicateKey(
                        f"key {key!r} appears twice in one mapping, on lines {seen[key]} and {line}; "
                        "YAML would keep only the second: keep one"
                    )
                seen[key] = line
            return super().construct_mapping(node, deep=deep)

    if not (c_parser and yaml.__with_libyaml__):
        return type("Loader", (Capped, Unique, yaml.SafeLoader), {})
    from yaml._yaml import CParser

    class Loader(Capped, CParser, Unique, yaml.resolver.Resolver):
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            Unique.__init__(self)
            yaml.resolver.Resolver.__init__(self)

    return Loader


def bounded_yaml(text: str, *, c_parser: bool = True) -> Any:
    """yaml.safe_load with alias expansion ("billion laughs") and nesting depth capped, before anything
    expands."""
    import yaml

    loader = _loader_class(c_parser=c_parser)(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as e:
            if "maximum nesting depth" in str(e.problem):  # libyaml's own cap (1,000 levels), met before ours
                raise TooComplex(
                    f"nested deeper than {MAX_YAML_DEPTH} levels; a spec is a few levels deep"
                ) from None
            raise
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
                raise TooComplex(
                    f"its aliases expand to more than {MAX_YAML_NODES:,} values (a YAML alias bomb?); "
                    "write the values out or use fewer anchors"
                )
            continue
        if key in sizes:
            continue
        if key in active:
            raise TooComplex("a YAML alias refers to a node that contains it (a recursive anchor)")
        active.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]
