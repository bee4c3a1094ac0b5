"""Reading YAML safely, with the position of every value.

PyYAML's safe loader still keeps the last of two duplicate keys, accepts any
number of alias expansions and hides line numbers once objects are built. This
module composes the node graph (with the C parser when present), then builds
plain Python values itself so that it can:

- reject duplicate mapping keys, naming both lines;
- reject every tag outside YAML's core schema (``!!python/object`` and friends);
- stop alias-expansion bombs after a fixed node budget (``NODE_BUDGET`` values);
- refuse a file larger than ``MAX_YAML_BYTES`` (1 MiB) or not a regular file before reading it;
- report empty and non-UTF-8 files;
- remember ``path -> (line, column)`` for schema errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from factory.errors import RegistryError, YAMLSyntaxError
from factory.untrusted import MAX_YAML_BYTES, decode_text, read_bytes

_Composer = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: Built values a single file may expand to; a registry file has a few hundred.
NODE_BUDGET = 200_000
#: Nesting depth a file may reach; registry files need fewer than ten levels.
MAX_DEPTH = 64

_CORE_TAGS = {
    "tag:yaml.org,2002:" + name for name in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")
}

JsonPath = tuple[str | int, ...]


@dataclass
class Document:
    """A parsed YAML file: its data and where each value came from."""

    path: Path
    data: Any
    positions: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)

    def where(self, json_path: JsonPath) -> tuple[int, int]:
        """(line, column), 1-based, of the value at ``json_path`` or its nearest parent."""
        json_path = tuple(json_path)
        while json_path not in self.positions and json_path:
            json_path = json_path[:-1]
        return self.positions.get(json_path, (1, 1))

    def line(self, *json_path: Any) -> int:
        return self.where(json_path)[0]


class _Builder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.budget = NODE_BUDGET
        self.positions: dict[JsonPath, tuple[int, int]] = {}
        self._scalars = yaml.SafeLoader("")
        self._built: set[int] = set()  # collection nodes already expanded: seeing one again is an alias
        self.aliased = False

    def error(self, node: yaml.Node, message: str, hint: str | None = None) -> YAMLSyntaxError:
        mark = node.start_mark
        return YAMLSyntaxError(message, file=self.path, line=mark.line + 1, column=mark.column + 1, hint=hint)

    def build(self, node: yaml.Node, path: JsonPath) -> Any:
        self.budget -= 1
        if self.budget < 0:
            # Aliased nodes carry the anchor's position; name the top-level entry being expanded.
            line, column = self.positions.get(path[:1], (node.start_mark.line + 1, node.start_mark.column + 1))
            if self.aliased:
                message = f"document expands to over {NODE_BUDGET} values through aliases (an alias-expansion bomb)"
                hint = "registry files never need this many values; remove the repeated aliases"
            else:
                message = f"document holds more than {NODE_BUDGET} values"
                hint = "registry files hold a few hundred values; split the file or check that it is a registry file"
            raise YAMLSyntaxError(message, file=self.path, line=line, column=column, hint=hint)
        if len(path) > MAX_DEPTH:
            raise self.error(
                node,
                f"values nested more than {MAX_DEPTH} levels deep",
                hint="registry files are a few levels deep; flatten the document",
            )
        self.positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if node.tag not in _CORE_TAGS:
            raise self.error(
                node,
                f"tag {node.tag!r} is not allowed",
                hint="registry YAML uses plain values only: strings, numbers, booleans, null, lists and mappings",
            )
        if isinstance(node, yaml.CollectionNode):
            if id(node) in self._built:
                self.aliased = True
            self._built.add(id(node))
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            seen: dict[Any, yaml.Node] = {}
            for key_node, value_node in self._pairs(node):
                key = self.build(key_node, path + ("<key>",))
                if not isinstance(key, (str, int, float, bool)) and key is not None:
                    raise self.error(key_node, "mapping keys must be plain scalars")
                if key in seen:
                    first = seen[key].start_mark.line + 1
                    raise self.error(
                        key_node,
                        f"duplicate key {key!r} (first defined on line {first})",
                        hint="YAML loaders silently keep the last value; remove or rename one of them",
                    )
                seen[key] = key_node
                here: JsonPath = (*path, key)  # type: ignore[arg-type]  # a float/bool/null key is a path part too
                self.positions[here] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                out[key] = self.build(value_node, here)
            self.positions.pop(path + ("<key>",), None)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        value = self._scalars.construct_object(node, deep=True)
        if node.tag.endswith(":timestamp"):
            return node.value  # keep dates as written; JSON Schema speaks strings
        return value

    def _pairs(self, node: yaml.MappingNode) -> Iterator[tuple[yaml.Node, yaml.Node]]:
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise self.error(key_node, "merge keys (<<) are not allowed", hint="write the keys out")
            yield key_node, value_node


def load_document(path: str | Path) -> Document:
    """Parse one YAML file into a :class:`Document`; raises :class:`YAMLSyntaxError` (or :class:`RegistryError`
    for a file that cannot be read, is not a regular file, or is larger than ``MAX_YAML_BYTES``)."""
    path = Path(path)
    raw = read_bytes(
        path,
        max_bytes=MAX_YAML_BYTES,
        error=RegistryError,
        what="a registry YAML file",
        hint="check that the file exists and is readable",
    )
    return parse_text(decode_text(raw, path, YAMLSyntaxError), path)


def parse_text(text: str, path: str | Path) -> Document:
    """Parse YAML ``text`` that came from ``path`` (used for git blobs too)."""
    path = Path(path)
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        node = yaml.compose(text, Loader=_Composer)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise YAMLSyntaxError(f"invalid YAML: {problem}", file=path, line=line, column=column) from None
    except yaml.YAMLError as exc:
        raise YAMLSyntaxError(f"invalid YAML: {exc}", file=path) from None
    except RecursionError:
        raise YAMLSyntaxError(
            f"values nested too deeply (more than {MAX_DEPTH} levels)",
            file=path,
            hint="registry files are a few levels deep; flatten the document",
        ) from None
    if node is None:
        raise YAMLSyntaxError(
            "file is empty (no YAML document)",
            file=path,
            line=1,
            hint="add a document with schema_version and kind, or delete the file",
        )
    builder = _Builder(path)
    data = builder.build(node, ())
    return Document(path=path, data=data, positions=builder.positions)
