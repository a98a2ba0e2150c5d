"""Helpers shared by the CLI's command modules: JSON output, inputs, the connector."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import click

from connector.errors import InputError


def input_option(help: str) -> Any:
    """``--input/-i K=V``, repeatable; shared by ``call`` and ``run``."""
    return click.option("--input", "-i", "inputs", multiple=True, metavar="K=V", help=help)


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")


def emit_json(value: Any) -> None:
    """``value`` as indented JSON on stdout, written as it is encoded (a large run report
    is never one string in memory)."""
    encoder = json.JSONEncoder(indent=2, ensure_ascii=False, default=str)
    with _Out() as out:
        for chunk in encoder.iterencode(value):
            out.write(chunk)
        out.write("\n")


class _Out:
    """stdout, buffered up to a page and flushed at :meth:`flush`; a reader that goes
    away (``| head``) ends the command quietly, as a pipe's writer does (exit 141)."""

    LIMIT = 1 << 16

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0

    def write(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)
        if self.size >= self.LIMIT:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            sys.stdout.write("".join(self.parts))
            self.parts.clear()
            self.size = 0
        sys.stdout.flush()

    def __enter__(self) -> _Out:
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        broken = isinstance(exc, BrokenPipeError)
        if not broken:
            try:  # what was given out before a failure reaches the reader too
                self.flush()
            except BrokenPipeError:
                broken = True
        if broken:
            import contextlib
            import os

            with contextlib.suppress(OSError, ValueError):  # not a real file (tests)
                # nothing more reaches the reader; do not fail again at exit
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(141) from None


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))


def emit_records(batches: Iterable[list[Any]]) -> None:
    """JSON Lines: one record a line, each page written (and flushed) as it arrives."""
    with _Out() as out:
        for batch in batches:
            for record in batch:
                out.write(_compact(record))
                out.write("\n")
            out.flush()


def emit_list(head: Mapping[str, Any], items: str, batches: Iterable[list[Any]], tail: Any) -> None:
    """``{**head, items: [...records], **tail()}`` written as the pages arrive: indented
    as :func:`emit_json` writes it on a terminal, on one line elsewhere. ``tail`` is
    called once every record is out (a count)."""
    indent = stdout_is_terminal()
    with _Out() as out:
        if indent:
            out.write("{\n")
            for k, v in head.items():
                out.write(f"  {_compact(k)}: {json.dumps(v, indent=2, ensure_ascii=False, default=str)},\n")
            out.write(f"  {_compact(items)}: [")
        else:
            out.write("{" + "".join(f"{_compact(k)}:{_compact(v)}," for k, v in head.items()))
            out.write(_compact(items) + ":[")
        first = True
        for batch in batches:
            for record in batch:
                if indent:
                    text = json.dumps(record, indent=2, ensure_ascii=False, default=str)
                    out.write(("\n    " if first else ",\n    ") + text.replace("\n", "\n    "))
                else:
                    out.write(_compact(record) if first else "," + _compact(record))
                first = False
            out.flush()
        rest = tail()
        if indent:
            out.write(
                ("]" if first else "\n  ]")
                + "".join(
                    f",\n  {_compact(k)}: {json.dumps(v, indent=2, ensure_ascii=False, default=str)}"
                    for k, v in rest.items()
                )
                + "\n}\n"
            )
        else:
            out.write("]" + "".join(f",{_compact(k)}:{_compact(v)}" for k, v in rest.items()) + "}\n")


def _load_file_value(spec: str, name: str) -> Any:
    path = Path(spec)
    if not path.is_file():
        raise InputError(f"--input {name}=@{spec}: no such file")
    if path.suffix.lower() == ".csv":
        return load_csv(path)
    if path.suffix.lower() == ".json":
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(f"{path}: invalid JSON: {exc}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        from connector.yamlio import YamlError, load_file

        try:
            return load_file(path).data
        except YamlError as exc:
            raise InputError(str(exc)) from None
    return path.read_text(encoding="utf-8")


def load_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV with a header line; a row with the wrong number of cells is named."""
    rows: list[dict[str, str]] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if not header:
                raise InputError(f"{path}: empty CSV (expected a header row)")
            header = [h.strip() for h in header]
            if any(not h for h in header) or len(set(header)) != len(header):
                raise InputError(f"{path}:1: header has empty or repeated column names")
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise InputError(
                        f"{path}:{reader.line_num}: row has {len(row)} cells, the header has {len(header)}"
                    )
                rows.append({h: c.strip() for h, c in zip(header, row, strict=True)})
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read CSV: {exc}") from None
    return rows


def coerce(raw: str, schema: Mapping[str, Any] | None) -> Any:
    """A command-line string as the type its schema wants (JSON for non-strings)."""
    types = (schema or {}).get("type")
    names = types if isinstance(types, list) else [types] if types else []
    if names and set(names) <= {"string", "null"}:
        return raw
    if "$ref" in (schema or {}) or not names or names != ["string"]:
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def parse_inputs(
    pairs: Iterable[str], properties: Mapping[str, Any] | None = None, flag: str = "--input"
) -> dict[str, Any]:
    """``k=v`` pairs; ``k=@file.csv`` / ``@file.json`` / ``@file.yaml`` load a file."""
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InputError(f"{flag} {pair!r}: expected NAME=VALUE")
        if raw.startswith("@"):
            out[name] = _load_file_value(raw[1:], name)
        else:
            out[name] = coerce(raw, (properties or {}).get(name))
    return out


def parse_json_object(text: str, flag: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InputError(f"{flag}: invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InputError(f"{flag}: expected a JSON object")
    return value


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()
