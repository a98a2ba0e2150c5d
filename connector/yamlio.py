"""Safe YAML loading that remembers the line of every node, keyed by JSON pointer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from connector.errors import escape, pointer

try:  # libyaml's parser is several times faster; the safe constructor is used either way
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

__all__ = ["Document", "YamlError", "escape", "load_file", "load_text", "pointer"]


@dataclass
class Document:
    """A parsed YAML file: its data and the 1-based line of each JSON pointer."""

    path: str
    data: Any
    lines: dict[str, int] = field(default_factory=dict)

    def line_of(self, pointer: str) -> int:
        """The line of ``pointer``, or of its nearest ancestor that has one."""
        while True:
            if pointer in self.lines:
                return self.lines[pointer]
            if not pointer:
                return 1
            pointer = pointer.rsplit("/", 1)[0]

    def where(self, pointer: str) -> str:
        return f"{self.path}:{self.line_of(pointer)}"


class YamlError(Exception):
    """Invalid YAML; ``str()`` is ``file:line: message``."""


def _walk(node: yaml.Node, ptr: str, lines: dict[str, int]) -> None:
    lines[ptr] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = f"{ptr}/{escape(str(key.value))}"
            lines[child] = key.start_mark.line + 1
            _walk(value, child, lines)
            lines[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, f"{ptr}/{index}", lines)


def load_text(text: str, path: str) -> Document:
    """Parse ``text`` safely; raise :class:`YamlError` naming the file and line."""
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise YamlError(f"{path}:{line}: invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise YamlError(f"{path}:1: invalid YAML: {exc}") from None
    lines: dict[str, int] = {}
    if node is not None:
        _walk(node, "", lines)
    return Document(path, data, lines)


def load_file(path: str | Path) -> Document:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlError(f"{p}:1: cannot read: {exc}") from None
    return load_text(text, str(p))
