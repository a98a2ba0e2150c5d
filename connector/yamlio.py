"""Safe YAML loading that remembers the line of every node, keyed by JSON pointer.

Loading is safe (PyYAML's safe constructor, libyaml's parser where available) and
bounded: aliases may add at most :data:`connector.limits.MAX_ALIAS_NODES` nodes
when expanded (a "billion laughs" file is refused at once), an alias may not refer
to the node that contains it, containers nest at most
:data:`connector.limits.MAX_DEPTH` deep, and a value PyYAML cannot build (the date
``2001-13-45``, an integer of 5,000 digits) is a :class:`YamlError` naming its line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.resolver import Resolver

from connector.errors import escape, pointer
from connector.limits import MAX_ALIAS_NODES, MAX_DEPTH

__all__ = ["Document", "YamlError", "escape", "load_file", "load_text", "pointer"]

try:  # libyaml's parser is several times faster; the safe constructor is used either way
    from yaml._yaml import CParser as _Parser

    _LIBYAML = True
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    _LIBYAML = False


class _BoundedComposer(Composer):
    """PyYAML's composer, counting as it goes: depth, alias expansion, recursion."""

    check_event: Any  # the parser's, mixed in
    peek_event: Any

    def _start_bounds(self) -> None:
        self._depth = 0
        self._expanded = 0  # nodes, counting an alias as the size of what it names
        self._aliased = 0  # of which aliases added
        self._sizes: dict[str, int] = {}
        self._open: set[str] = set()

    def compose_document(self) -> Any:
        self._start_bounds()
        return super().compose_document()

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            anchor = event.anchor
            if anchor in self._open:
                raise ComposerError(
                    None, None, f"recursive alias *{anchor} (inside the node it names)", event.start_mark
                )
            size = self._sizes.get(anchor, 1)
            self._aliased += size
            self._expanded += size
            if self._aliased > MAX_ALIAS_NODES:
                raise ComposerError(
                    None,
                    None,
                    f"aliases expand to more than {MAX_ALIAS_NODES} nodes (an alias bomb?)",
                    event.start_mark,
                )
            return super().compose_node(parent, index)
        event = self.peek_event()
        if self._depth >= MAX_DEPTH:
            raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        anchor = event.anchor
        start = self._expanded
        self._expanded += 1
        self._depth += 1
        if anchor is not None:
            self._open.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open.discard(anchor)
        if anchor is not None:
            self._sizes[anchor] = self._expanded - start
        return node


class _CheckedConstructor(SafeConstructor):
    """The safe constructor; a value it cannot build is an error at that value's line,
    and so is a mapping key that JSON cannot hold (a date, bytes): quote it."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        mapping = super().construct_mapping(node, deep)
        for key in mapping:
            if not isinstance(key, (str, int, float, bool, type(None))):
                raise ConstructorError(
                    None,
                    None,
                    f"a mapping key must be text or a number, not {type(key).__name__} (quote it)",
                    node.start_mark,
                )
        return mapping

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:  # ValueError (2001-13-45), AttributeError (!!timestamp ''), ...
            reason = (str(exc) or type(exc).__name__).split(";")[0]  # not Python's advice on int digits
            raise ConstructorError(None, None, f"cannot read this value: {reason}", node.start_mark) from None


if _LIBYAML:

    class _Loader(_BoundedComposer, _Parser, _CheckedConstructor, Resolver):
        def __init__(self, stream: str) -> None:
            _Parser.__init__(self, stream)
            Composer.__init__(self)
            _CheckedConstructor.__init__(self)
            Resolver.__init__(self)

else:  # pragma: no cover - PyYAML's pure-Python parser, as yaml.SafeLoader has it
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Loader(_BoundedComposer, Reader, Scanner, Parser, _CheckedConstructor, Resolver):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)
            Composer.__init__(self)
            _CheckedConstructor.__init__(self)
            Resolver.__init__(self)


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


def _walk(node: yaml.Node, ptr: str, lines: dict[str, int], seen: set[int]) -> None:
    """Record the line of every pointer. A node met again (through an alias) is not
    walked again: the pointers below an alias take the alias's line."""
    lines[ptr] = node.start_mark.line + 1
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = f"{ptr}/{escape(str(key.value))}"
            _walk(value, child, lines, seen)
            lines[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, f"{ptr}/{index}", lines, seen)


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
        raise YamlError(f"{path}:{line}: invalid YAML: {_first_line(exc.problem or exc)}") from None
    except yaml.YAMLError as exc:
        raise YamlError(f"{path}:1: invalid YAML: {_first_line(exc)}") from None
    except RecursionError:  # pragma: no cover - the depth bound comes first
        raise YamlError(f"{path}:1: invalid YAML: nested too deep") from None
    lines: dict[str, int] = {}
    if node is not None:
        _walk(node, "", lines, set())
    return Document(path, data, lines)


def _first_line(message: object) -> str:
    lines = str(message).strip().splitlines()
    return lines[0] if lines else "unreadable"


def load_file(path: str | Path) -> Document:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlError(f"{p}:1: cannot read: {exc}") from None
    return load_text(text, str(p))
