"""Running actions: validate inputs, send the manifest's request (or call its
handler), check the output against the manifest's schema."""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connector.catalog import drift, schemas
from connector.catalog.index import Catalog, Manifest, get_catalog
from connector.catalog.plugins import PluginHost, get_host, handler_map
from connector.connections import DEFAULT, Account, account_of
from connector.errors import ActionError, ConfigError, ConnectorError, InputError, OutputError, PluginError
from connector.http.client import Settings, WilloClient, redact_body, redact_headers
from connector.workflows import expressions

if TYPE_CHECKING:
    from connector.connections import Connection
    from connector.http.outbound import Outbound
    from connector.http.pacing import Pacing

log = logging.getLogger(__name__)


@dataclass
class Call:
    """The outcome of one action call: its output and what was (or would be) sent."""

    action: str
    output: Any
    requests: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False


def input_problems(manifest: Manifest, inputs: Mapping[str, Any]) -> list[str]:
    if schemas.proves_valid(inputs, manifest.data["input"]):
        return []  # settled without jsonschema (which words the errors when there are some)
    return [f"{ptr or '/'}: {msg}" for ptr, msg in schemas.errors(dict(inputs), manifest.input_validator)]


def check_inputs(manifest: Manifest, inputs: Mapping[str, Any]) -> None:
    problems = input_problems(manifest, inputs)
    if problems:
        raise InputError(f"{manifest.id}: input " + "; ".join(problems))


def paged_inputs(manifest: Manifest, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
    """With ``all: true`` and no page size, the largest page (the page-size input's
    ``maximum``, which the manifest's ``pagination.page_size`` names): fewest requests."""
    req = manifest.data.get("request") or {}
    size = (req.get("pagination") or {}).get("page_size")
    if not size or not inputs.get("all") or inputs.get(size) is not None:
        return inputs
    biggest = ((manifest.data["input"].get("properties") or {}).get(size) or {}).get("maximum")
    return {**inputs, size: biggest} if biggest else inputs


@dataclass
class Stream:
    """The records of a list read with ``all: true``, page by page as they arrive
    (``batches``, to consume once; ``records`` flattens them); ``count`` is how many
    were given out so far, all of them at the end. :meth:`Connector.call` returns the
    same list as ``{**envelope(), items: [...]}``."""

    action: str
    items: str
    batches: Iterator[list[Any]] = field(default_factory=lambda: iter(()))
    count: int = 0

    @property
    def records(self) -> Iterator[Any]:
        return itertools.chain.from_iterable(self.batches)

    def envelope(self, count: int | None = None) -> dict[str, Any]:
        return {"count": self.count if count is None else count, "next": None, "previous": None}


def idempotent_for(manifest: Manifest, inputs: Mapping[str, Any]) -> bool:
    """May a retry resend this call after a failure that may have landed? The
    manifest's ``idempotent_when`` decides for these inputs, else ``idempotent``."""
    when = manifest.data.get("idempotent_when")
    if isinstance(when, str):
        return bool(expressions.evaluate(when, {"input": dict(inputs)}))
    return manifest.idempotent


class ActionContext:
    """What a handler receives as ``client`` (a :class:`connector.sdk.Client`): raw
    requests, paged lists, other actions, and outbound HTTP to other hosts (``http``)."""

    def __init__(self, connector: Connector, manifest: Manifest, idempotent: bool | None = None):
        self._connector = connector
        self.manifest = manifest
        self.idempotent = manifest.idempotent if idempotent is None else idempotent

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("manifest", self.manifest.data)
        # by method unless the manifest says (a handler's GETs are retried like any GET)
        kwargs.setdefault("idempotent", self.manifest.data.get("idempotent"))
        return self._connector.client.request(method, path, **kwargs)

    def paginate(self, method: str, path: str, **kwargs: Any) -> list[Any]:
        kwargs.setdefault("manifest", self.manifest.data)
        return self._connector.client.paginate(method, path, **kwargs)

    def http(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        """One request to any HTTP(S) URL, without the Willo key (see
        :class:`~connector.http.outbound.Outbound`); status, headers, json or text."""
        kwargs.setdefault("manifest", self.manifest.data)
        kwargs.setdefault("idempotent", self.idempotent)
        return self._connector.outbound.request(method, url, **kwargs)

    def call(self, action_id: str, inputs: Mapping[str, Any]) -> Any:
        return self._connector.call(action_id, inputs).output

    @property
    def settings(self) -> Settings:
        return self._connector.client.settings


class Connector:
    """The host's facade: catalog + client + handlers, for one connection (one Willo
    account). One per process and connection is typical: :meth:`using` gives the
    connector of another connection, from the :class:`ConnectorPool` that built this one."""

    def __init__(
        self,
        host: PluginHost | None = None,
        *,
        settings: Settings | None = None,
        client: WilloClient | None = None,
        dry_run: bool = False,
        schema_mode: str | None = None,
        pacer: Pacing | None = None,
        connection: Connection | None = None,
    ):
        self.host = host or get_host()
        self.catalog: Catalog = get_catalog(self.host)
        self.dry_run = dry_run
        self.serial = False  # True while a cassette answers: one request at a time
        self.connection = connection  # None: the environment's settings ("default")
        self.pool: ConnectorPool | None = None  # set by the pool that built it
        self._settings = settings
        self._client = client
        self._pacer = pacer
        self._outbound: Outbound | None = None
        self._handlers: dict[str, tuple[str, Callable[..., Any]]] | None = None
        self._pollers: dict[str, tuple[str, Callable[..., Any]]] | None = None
        self.schema_mode = schema_mode or os.environ.get("WILLO_SCHEMA_MODE", "warn")
        if self.schema_mode not in ("warn", "strict", "off"):
            raise ConfigError(f"WILLO_SCHEMA_MODE={self.schema_mode!r}: use warn, strict or off")
        filters = self.host.template_filters()
        if filters:
            expressions.add_filters(filters)

    @property
    def client(self) -> WilloClient:
        if self._client is None:
            self._client = WilloClient(
                self._settings or Settings.from_env(),
                prepare=self._prepare,
                dry_run=self.dry_run,
                pacer=self._pacer,
            )
        return self._client

    @property
    def connection_name(self) -> str:
        return self.connection.name if self.connection is not None else DEFAULT

    @property
    def account(self) -> Account:
        """The account this connector's requests go to (its rows in the state store)."""
        settings, name = self.client.settings, self.connection_name
        key = (settings.base_url, settings.api_key, name)
        cached: tuple[tuple[str, str | None, str], Account] | None = getattr(self, "_account", None)
        if cached is None or cached[0] != key:  # (two hashes: asked for every journal row)
            cached = self._account = (key, account_of(settings, name))
        return cached[1]

    def pool_names(self) -> list[str] | None:
        """The connection names :meth:`using` knows (None: it has none)."""
        return self.pool.names() if self.pool is not None else None

    def using(self, name: str | None) -> Connector:
        """The connector of connection ``name`` (this one for None or its own name)."""
        if not name or name == self.connection_name:
            return self
        if self.pool is None:
            raise ConfigError(
                f"connection {name!r}: this connector was built from settings, without named "
                "connections (the CLI's commands have them)"
            )
        return self.pool.get(name)

    @property
    def outbound(self) -> Outbound:
        """The client of ``http.request``: its own session, never the Willo key."""
        if self._outbound is None:
            from connector.http.outbound import Outbound

            settings = self._settings or self.client.settings
            self._outbound = Outbound(
                settings,
                prepare=self._prepare,
                forbidden=lambda: (self.client.settings.api_key,),
                dry_run=self.dry_run,
            )
        return self._outbound

    def _prepare(self, manifest: Mapping[str, Any], request: dict[str, Any]) -> None:
        self.host.call_quietly("prepare_request", manifest=manifest, request=request)

    def handler(self, manifest: Manifest) -> Callable[..., Any]:
        return self.plugin_handler(manifest)[1]

    def plugin_handler(self, manifest: Manifest) -> tuple[str, Callable[..., Any]]:
        """``(plugin, handler)`` of a handler action."""
        if self._handlers is None:
            self._handlers = handler_map(self.host)
        return self._handlers[manifest.handler or manifest.id]

    def poll_handler(self, manifest: Manifest) -> tuple[str, Callable[..., Any]]:
        """``(plugin, poll handler)`` of a polling trigger that names one."""
        if self._pollers is None:
            self._pollers = handler_map(self.host, "poll_handlers")
        return self._pollers[manifest.poll_handler or manifest.id]

    def run_plugin_code(
        self, manifest: Manifest, plugin: str, what: str, fn: Callable[..., Any], *args: Any
    ) -> Any:
        """Call a plugin's ``fn``; any failure is reported as the plugin's and the
        manifest's (never as an internal error of the host)."""
        try:
            return fn(*args)
        except ActionError as exc:
            exc.attribute(manifest.id, plugin)
            raise
        except ConnectorError:
            raise  # the client's typed errors, InputError...: already say what failed
        except Exception as exc:
            log.debug("%s of plugin %s failed", what, plugin, exc_info=True)
            err = PluginError(self._scrub(f"{what} raised {type(exc).__name__}: {exc}{_origin(exc)}"))
            err.attribute(manifest.id, plugin)
            raise err from exc

    def _scrub(self, text: str) -> str:
        return self._client.scrub(text) if self._client is not None else text

    # ------------------------------------------------------------------ calling

    def call(self, action_id: str, inputs: Mapping[str, Any]) -> Call:
        result = self.stream(action_id, inputs)
        if isinstance(result, Call):
            return result
        records = list(result.records)  # checked and converted page by page
        return Call(result.action, {**result.envelope(), result.items: records})

    def stream(self, action_id: str, inputs: Mapping[str, Any]) -> Call | Stream:
        """Like :meth:`call`, but a list read with ``all: true`` comes as a :class:`Stream`
        of its records, page by page, each page checked against the output schema before
        its records are given out (the first page is read before this returns)."""
        manifest = self.catalog.get(action_id, "action")
        inputs = dict(inputs)
        check_inputs(manifest, inputs)
        if self.dry_run:
            return self.preview(manifest, inputs)
        if manifest.handler:
            plugin, fn = self.plugin_handler(manifest)
            output = self.run_plugin_code(
                manifest,
                plugin,
                "handler",
                fn,
                inputs,
                ActionContext(self, manifest, idempotent_for(manifest, inputs)),
            )
            check_returned(manifest, plugin, output)
        else:
            pagination = (manifest.request or {}).get("pagination")
            if pagination and inputs.get("all"):
                return self._stream(manifest, paged_inputs(manifest, inputs), pagination)
            output = self._declarative(manifest, inputs)
        try:
            self.check_output(manifest, output)
        except OutputError as exc:
            # Willo answered 2xx: the request was sent whatever is wrong with the answer
            exc.sent, exc.output = True, output
            raise
        return Call(manifest.id, manifest.numbers(output))

    def _stream(self, manifest: Manifest, inputs: Mapping[str, Any], pagination: dict[str, Any]) -> Stream:
        parts = self.request_parts(manifest, inputs)
        field, client = pagination["items"], self.client
        pages = client.pages(
            parts["method"],
            parts["path"],
            params=parts["params"],
            next_field=pagination["next"],
            manifest=manifest.data,
        )
        stream = Stream(manifest.id, field)
        first = [next(pages)]  # a refused request fails here, before anything is given out

        def batches() -> Iterator[list[Any]]:
            page: Any = first.pop()
            while page is not None:
                batch = (page.get(field) if isinstance(page, dict) else None) or []
                page = None  # hold one page at a time
                # the page as the whole output would be checked and converted, alone
                out = {**stream.envelope(len(batch)), field: batch}
                try:
                    self.check_output(manifest, out)
                except OutputError as exc:
                    exc.sent, exc.output = True, out  # as for any answer: it was sent
                    raise
                batch = manifest.numbers(out)[field]
                stream.count += len(batch)
                yield batch
                page = next(pages, None)

        stream.batches = batches()
        return stream

    def request_parts(self, manifest: Manifest, inputs: Mapping[str, Any]) -> dict[str, Any]:
        req = manifest.request
        assert req is not None
        scope = {"input": inputs}
        parts: dict[str, Any] = {
            "method": req["method"],
            "path": expressions.render_path(req["path"], scope),
            "params": expressions.render(req.get("query") or {}, scope, omit_undefined=True),
            "json": None,
        }
        if "json" in req:
            parts["json"] = expressions.render(req["json"], scope, omit_undefined=True)
        return parts

    def _declarative(self, manifest: Manifest, inputs: Mapping[str, Any]) -> Any:
        parts = self.request_parts(manifest, inputs)
        req = manifest.request or {}
        return self.client.request(
            parts["method"],
            parts["path"],
            params=parts["params"],
            json=parts["json"],
            idempotent=manifest.idempotent,
            manifest=manifest.data,
            binary=req.get("response") == "binary",
        )

    def preview(self, manifest: Manifest, inputs: Mapping[str, Any]) -> Call:
        """A dry run of one action: the request it would send and its sample output."""
        sent: list[dict[str, Any]] = []
        if manifest.request is not None:
            parts = self.request_parts(manifest, paged_inputs(manifest, inputs))
            sent.append(
                self.client.preview(
                    parts["method"],
                    parts["path"],
                    params=parts["params"],
                    json=parts["json"],
                    manifest=manifest.data,
                )
            )
        else:
            shown = redact_body(dict(inputs))
            if isinstance(shown.get("headers"), dict):
                shown["headers"] = redact_headers(shown["headers"])
            sent.append({"handler": manifest.handler, "inputs": shown})
        return Call(manifest.id, manifest.data["sample"], sent, dry_run=True)

    def check_output(self, manifest: Manifest, output: Any) -> None:
        if self.schema_mode == "off":
            return
        report = manifest.drift.report(output)
        if not report:
            return
        if self.schema_mode == "strict":
            raise OutputError(f"{manifest.id}: output does not match its schema: " + "; ".join(report))
        drift.warn_once(manifest.id, report)


class ConnectorPool:
    """The connectors of one process, one per connection, each built when first asked
    for by ``make(name)`` and then shared (its client, its session, its budget)."""

    def __init__(self, make: Callable[[str], Connector], names: Iterable[str] = ()):
        self._make = make
        self._names = list(names)
        self._built: dict[str, Connector] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """Every connection this pool can build."""
        return list(self._names)

    def get(self, name: str) -> Connector:
        with self._lock:
            found = self._built.get(name)
            if found is None:
                found = self._built[name] = self._make(name)
                found.pool = self
            return found

    def connectors(self) -> list[Connector]:
        with self._lock:
            return list(self._built.values())

    def close(self) -> None:
        for conn in self.connectors():
            if conn._client is not None:
                conn._client.close()


def _origin(exc: BaseException) -> str:
    """`` (at file.py:LINE)`` for the innermost frame of the exception's traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" (at {Path(last.filename).name}:{last.lineno})"


def check_returned(manifest: Manifest, plugin: str, output: Any) -> None:
    """A handler's output must be JSON of the output schema's top-level type; anything
    else is the plugin's error, not drift."""
    wanted = manifest.output_schema.get("type")
    names = [str(t) for t in (wanted if isinstance(wanted, list) else [wanted])]
    got = drift.type_name(output)
    if wanted is not None and got not in names and not (got == "integer" and "number" in names):
        err = PluginError(f"handler returned {got}, not {' or '.join(names)} (its output schema's type)")
        err.attribute(manifest.id, plugin)
        raise err
    try:
        json.dumps(output)
    except (TypeError, ValueError) as exc:
        err = PluginError(f"handler returned a value that is not JSON: {exc}")
        err.attribute(manifest.id, plugin)
        raise err from None
