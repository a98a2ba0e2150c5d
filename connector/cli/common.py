"""Helpers shared by the CLI's command modules: JSON output, inputs, the connector."""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import click

from connector.errors import InputError, short
from connector.limits import LimitError, loads_json


def input_option(help: str) -> Any:
    """``--input/-i K=V``, repeatable; shared by ``call`` and ``run``."""
    return click.option("--input", "-i", "inputs", multiple=True, metavar="K=V", help=help)


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")

#: ``--connection/-c NAME``, shared by every command that talks to Willo.
connection_option = click.option(
    "--connection",
    "-c",
    "connection",
    metavar="NAME",
    envvar="WILLO_CONNECTION",
    help="The connection (Willo account) to use: `default` (the environment's) or one "
    "of the config file's (see `willo-connector connections`).",
)


class LazySubcommands(click.Group):
    """A command group whose subcommands, ``{name: (module, attribute, help)}``, are
    imported on first use (so that a group's listing stays fast, and two modules can
    add subcommands to one group without touching each other)."""

    def __init__(self, *args: Any, subcommands: dict[str, tuple[str, str, str]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.subcommands = subcommands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.subcommands)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.subcommands:
            return None
        import importlib

        module, attr, _ = self.subcommands[cmd_name]
        cmd: click.Command = getattr(importlib.import_module(module), attr)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(n, self.subcommands[n][2]) for n in self.list_commands(ctx)])


def emit_json(value: Any, indent: bool = True) -> None:
    """``value`` as indented JSON on stdout (on one line without ``indent``: encoded in
    C, several times faster), secrets scrubbed, written as it is encoded (a large run
    report is never one string in memory); text that is not valid Unicode (a lone
    surrogate from the data) is written as a JSON escape rather than crashing."""
    if indent:
        chunks: Iterable[str] = json.JSONEncoder(indent=2, ensure_ascii=False, default=str).iterencode(value)
    else:
        chunks = _compact_chunks(value, _COMPACT.encode)
    with _Out() as out:
        parts: list[str] = []
        size = 0
        for chunk in chunks:  # a string is one chunk: never cut in two
            parts.append(chunk)
            size += len(chunk)
            if size >= _Out.LIMIT:
                out.write(clean_json("".join(parts)))
                parts.clear()
                size = 0
        out.write(clean_json("".join(parts)) + "\n")


_COMPACT = json.JSONEncoder(ensure_ascii=False, default=str, separators=(",", ":"))


def _compact_chunks(value: Any, encode: Callable[[Any], str], depth: int = 0) -> Iterator[str]:
    """``value`` as one-line JSON, in pieces: the outer objects and lists (a run report,
    its steps, their lists of items) are walked, each element within is encoded whole
    by the C encoder (``iterencode`` only ever uses the pure-Python one)."""
    if depth < 4 and isinstance(value, dict) and all(type(k) is str for k in value):
        yield "{"
        for i, (k, v) in enumerate(value.items()):
            yield ("," if i else "") + encode(k) + ":"
            yield from _compact_chunks(v, encode, depth + 1)
        yield "}"
    elif depth < 4 and isinstance(value, list):
        yield "["
        for i, v in enumerate(value):
            if i:
                yield ","
            yield from _compact_chunks(v, encode, depth + 1)
        yield "]"
    else:
        yield encode(value)


_SURROGATE = re.compile("[\ud800-\udfff]")


def say(text: str, level: str = "info") -> None:
    """A status line on stderr (listening on..., subscribed..., run ... started): as it
    is, or, under ``--log-format json``, as a JSON log line like every other."""
    from connector.redaction import scrub
    from connector.telemetry import status_line

    click.echo(status_line(scrub(text), level), err=True)


def clean_json(text: str) -> str:
    """JSON text with secrets scrubbed and lone surrogates escaped (they occur only
    inside strings, where ``\\uXXXX`` means the same)."""
    from connector.redaction import scrub

    text = scrub(text)
    if not text.isascii() and _SURROGATE.search(text):
        text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


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
            from connector.cli import pipe_closed

            pipe_closed()


def _compact(value: Any) -> str:
    return clean_json(_COMPACT.encode(value))


def _compact_lines(batch: list[Any]) -> str:
    """The records of a page as one-line JSON, a line each (no newline after the last),
    scrubbed as one text: one-line JSON holds no newline, and no secret does, so that
    is what scrubbing each line would give, without its cost a record."""
    encode = _COMPACT.encode
    return clean_json("\n".join([encode(record) for record in batch]))


def emit_records(batches: Iterable[list[Any]]) -> None:
    """JSON Lines: one record a line, each page written (and flushed) as it arrives."""
    with _Out() as out:
        for batch in batches:
            if batch:
                out.write(_compact_lines(batch) + "\n")
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
            if indent:
                for record in batch:
                    text = clean_json(json.dumps(record, indent=2, ensure_ascii=False, default=str))
                    out.write(("\n    " if first else ",\n    ") + text.replace("\n", "\n    "))
                    first = False
            elif batch:
                out.write(("" if first else ",") + _compact_lines(batch).replace("\n", ","))
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


def echo(text: str, err: bool = False) -> None:
    """``click.echo`` with every registered secret scrubbed (for human output that shows
    requests, outputs or errors)."""
    from connector.redaction import scrub

    click.echo(scrub(text), err=err)


def _load_file_value(spec: str, name: str) -> Any:
    path = Path(spec)
    if not path.is_file():
        raise InputError(f"--input {name}=@{short(spec)}: no such file")
    if path.suffix.lower() == ".csv":
        return load_csv(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        from connector.yamlio import YamlError, load_file

        try:
            return load_file(path).data
        except YamlError as exc:
            raise InputError(str(exc)) from None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not UTF-8 text (byte {exc.start}); give a UTF-8 file, or JSON/CSV/YAML by suffix"
        ) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    if path.suffix.lower() == ".json":
        try:
            return loads_json(text)
        except ValueError as exc:
            raise InputError(f"{path}: invalid JSON: {exc}") from None
    return text


class CsvRows(list[dict[str, str]]):
    """The rows of a CSV file, with the file and the 1-based line each row starts on."""

    def __init__(self, rows: list[dict[str, str]], path: str, lines: list[int]):
        super().__init__(rows)
        self.path = path
        self.lines = lines


DELIMITERS = ",;\t|"


def _dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    """The file's delimiter, sniffed from its start; when the sniffer cannot tell (a
    ragged row), the one the header line uses most; a comma when in doubt."""
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS)
    except csv.Error:
        header = sample.lstrip("\r\n").split("\n", 1)[0]
        best = max(DELIMITERS, key=header.count)

        class Found(csv.excel):
            delimiter = best if header.count(best) else ","

        return Found


def load_csv(path: Path) -> CsvRows:
    """Rows of a CSV with a header line. The delimiter (comma, semicolon, tab, bar) is
    sniffed, a byte-order mark skipped, blank lines ignored; a problem names the file
    and its 1-based line."""
    rows: list[dict[str, str]] = []
    lines: list[int] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            dialect = _dialect(fh.read(64 * 1024))
            fh.seek(0)
            reader = csv.reader(fh, dialect)
            header = next(reader, None)
            if not header or not any(h.strip() for h in header):
                raise InputError(f"{path}:1: empty CSV (expected a header row)")
            header = [h.strip() for h in header]
            if any(not h for h in header) or len(set(header)) != len(header):
                raise InputError(f"{path}:1: header has empty or repeated column names")
            start = reader.line_num + 1
            for row in reader:
                first, start = start, reader.line_num + 1
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise InputError(
                        f"{path}:{first}: row has {len(row)} cells, the header has {len(header)}"
                    )
                rows.append({h: c.strip() for h, c in zip(header, row, strict=True)})
                lines.append(first)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start}); save the CSV as UTF-8") from None
    except csv.Error as exc:
        raise InputError(f"{path}:{reader.line_num}: {exc}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read CSV: {exc.strerror}") from None
    return CsvRows(rows, str(path), lines)


def csv_origins(values: Mapping[str, Any]) -> dict[str, Any]:
    """Which inputs came from CSV files: ``{name: {file, lines}}``."""
    return {k: {"file": v.path, "lines": v.lines} for k, v in values.items() if isinstance(v, CsvRows)}


def coerce(raw: str, schema: Mapping[str, Any] | None) -> Any:
    """A command-line string as the type its schema wants (JSON for non-strings)."""
    types = (schema or {}).get("type")
    names = types if isinstance(types, list) else [types] if types else []
    if names and set(names) <= {"string", "null"}:
        return raw
    if "$ref" in (schema or {}) or not names or names != ["string"]:
        try:
            return loads_json(raw)
        except LimitError as exc:
            raise InputError(f"value {short(raw)}: {exc}") from None
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
            raise InputError(f"{flag} {short(pair)}: expected NAME=VALUE")
        if raw.startswith("@"):
            out[name] = _load_file_value(raw[1:], name)
        else:
            out[name] = coerce(raw, (properties or {}).get(name))
    return out


def parse_json_object(text: str, flag: str) -> dict[str, Any]:
    try:
        value = loads_json(text)
    except ValueError as exc:
        raise InputError(f"{flag}: invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InputError(f"{flag}: expected a JSON object")
    return value


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()
