"""The catalog as an OpenAPI document: 3.1, or Swagger 2.0 for Power Automate.

Every action whose manifest has a declarative ``request`` becomes one operation
(operationId = the action id): path parameters from the path template, query
parameters from ``query``, the request body from ``json``, each typed by the input
schema of the input it comes from, and the 2xx response from the output schema.
Handler-backed composites (several requests decided in Python) cannot be written as
one operation: they are listed under ``x-willo-not-expressible`` with the reason.

Swagger 2.0 (``swagger2``) carries Power Automate's extensions: ``x-ms-summary``,
``x-ms-visibility``, ``x-ms-dynamic-values``/``x-ms-dynamic-list`` from the inputs'
``x-options``, and the webhook triggers as one trigger operation
(``x-ms-trigger``, ``x-ms-notification-content``). JSON Schema 2020-12 keywords that
Swagger 2.0 lacks are rewritten where an equivalent exists and dropped otherwise;
the document counts what was dropped under ``x-willo-downconverted``.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from connector import __version__
from connector.catalog.plugins import DEFAULT_PLUGINS
from connector.catalog.types import Catalog, Manifest
from connector.http.client import Settings
from connector.interop import safe_name

INPUT_EXPR = re.compile(r"^\{\{\s*input\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")
PATH_EXPR = re.compile(r"\{\{\s*input\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
SECURITY = "willoApiKey"
#: The 2xx answer Willo gives, by method (DRF's defaults; the sandbox answers the same).
STATUS = {"GET": "200", "PUT": "200", "PATCH": "200", "POST": "201", "DELETE": "204"}
#: The action whose request subscribes a webhook (the host's subscriptions use it too).
SUBSCRIBE_ACTION = "willo.create_webhook"
ERRORS = (
    "An error: 400 with Willo's field errors, 401 (no valid key), 403 (no permission or over "
    "quota), 404, or 429 with Retry-After."
)


class NotExpressible(Exception):
    """An action that no single OpenAPI operation describes; ``str()`` is the reason."""


@dataclass
class Param:
    """A path or query parameter: its wire name, where it goes, and what fills it."""

    name: str
    where: str  # path | query
    schema: dict[str, Any]
    required: bool
    description: str
    source: str | None  # the input it comes from; None for a fixed or computed value


@dataclass
class Operation:
    """One request-backed action, read from its manifest's request template."""

    manifest: Manifest
    method: str
    path: str  # OpenAPI form: /interviews/{interview}/
    params: list[Param]
    body: dict[str, Any] | None
    body_required: bool
    binary: bool
    connector_only: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "200" if self.binary else STATUS[self.method]


# --------------------------------------------------------------------------- reading manifests


def operation(manifest: Manifest) -> Operation:
    """The operation an action's request template describes, or :class:`NotExpressible`."""
    req = manifest.request
    if req is None:
        raise NotExpressible(
            f"handler-backed composite ({manifest.handler}): its requests are decided in Python; "
            "call it through willo-connector (call, run, or its MCP tool)"
        )
    schema = manifest.input_schema
    props: dict[str, Any] = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    used: set[str] = set()
    params: list[Param] = []

    def from_input(name: str, where: str) -> dict[str, Any]:
        if name not in props:
            raise NotExpressible(f"its {where} names input.{name}, which its input schema does not have")
        used.add(name)
        return copy.deepcopy(props[name])

    path = req["path"]
    for name in PATH_EXPR.findall(path):
        sub = from_input(name, "path")
        params.append(Param(name, "path", sub, True, _pop_description(sub, name), name))
    path = PATH_EXPR.sub(lambda m: "{" + m.group(1) + "}", path)
    if "{{" in path or "{%" in path:
        raise NotExpressible(f"its path {req['path']!r} computes a value from its inputs")
    if len({p.name for p in params}) != len(params):
        raise NotExpressible(f"its path {req['path']!r} uses one input twice")

    for key, value in (req.get("query") or {}).items():
        if isinstance(value, str) and (m := INPUT_EXPR.match(value)):
            sub = from_input(m.group(1), "query")
            desc = _pop_description(sub, key)
            params.append(Param(str(key), "query", sub, m.group(1) in required, desc, m.group(1)))
        elif isinstance(value, str) and ("{{" in value or "{%" in value):
            used.update(n for n in PATH_EXPR.findall(value) if n in props)
            params.append(Param(str(key), "query", {"type": "string"}, False, f"Computed: {value}", None))
        else:
            const = {"const": value, "default": value}
            params.append(Param(str(key), "query", const, True, f"Always {json.dumps(value)}.", None))

    body, body_required = None, False
    if "json" in req:
        body, body_required = _body(req["json"], props, required, used)
    return Operation(
        manifest=manifest,
        method=req["method"],
        path=path,
        params=params,
        body=body,
        body_required=body_required,
        binary=req.get("response") == "binary",
        connector_only=sorted(set(props) - used),
    )


def _pop_description(schema: dict[str, Any], name: str) -> str:
    text = schema.pop("description", None)
    return str(text) if text else _humanize(name) + "."


def _body(template: Any, props: dict[str, Any], required: set[str], used: set[str]) -> tuple[Any, bool]:
    """The JSON Schema of the body a template renders, and whether it is always sent."""
    if isinstance(template, dict):
        out: dict[str, Any] = {"type": "object", "properties": {}}
        needed = []
        for key, value in template.items():
            sub, always = _body(value, props, required, used)
            m = INPUT_EXPR.match(value) if isinstance(value, str) else None
            if m and m.group(1) != key:
                sub["x-willo-input"] = m.group(1)
            out["properties"][str(key)] = sub
            if always:
                needed.append(str(key))
        if needed:
            out["required"] = needed
        return out, True
    if isinstance(template, str) and (m := INPUT_EXPR.match(template)):
        name = m.group(1)
        if name not in props:
            raise NotExpressible(f"its body names input.{name}, which its input schema does not have")
        used.add(name)
        return copy.deepcopy(props[name]), name in required
    if isinstance(template, str) and ("{{" in template or "{%" in template):
        used.update(n for n in PATH_EXPR.findall(template) if n in props)
        return {"description": f"Computed by the connector: {template}"}, False
    if isinstance(template, list):
        items = [_body(v, props, required, used)[0] for v in template]
        return {"type": "array", "prefixItems": items, "minItems": len(items)}, True
    return {"const": template}, True


def operations(catalog: Catalog) -> tuple[list[Operation], list[dict[str, str]]]:
    """Every action as an operation, and the ones no operation describes (with why).

    Two actions on one path and method (a plugin's variant of a built-in request) cannot
    both be operations: the built-in one is kept, else the first by id."""
    ops: list[Operation] = []
    skipped: list[dict[str, str]] = []
    seen: dict[tuple[str, str], str] = {}
    order = sorted(catalog.of_kind("action"), key=lambda m: (m.plugin not in DEFAULT_PLUGINS, m.id))
    for m in order:
        try:
            op = operation(m)
        except NotExpressible as exc:
            skipped.append({"id": m.id, "kind": "action", "reason": str(exc)})
            continue
        where = (op.method, op.path.lower())
        if where in seen:
            skipped.append(
                {"id": m.id, "kind": "action", "reason": f"{op.method} {op.path} is also {seen[where]}"}
            )
            continue
        seen[where] = m.id
        ops.append(op)
    ops.sort(key=lambda op: op.manifest.id)
    skipped.sort(key=lambda item: item["id"])
    return ops, skipped


# --------------------------------------------------------------------------- OpenAPI 3.1


def security_scheme(settings: Settings) -> dict[str, Any]:
    """The scheme matching the client's ``Authorization`` header (WILLO_AUTH_SCHEME)."""
    scheme = settings.auth_scheme.strip()
    if scheme.lower() == "bearer":
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "Your Willo API key, sent as `Authorization: Bearer <key>`.",
        }
    how = f"`Authorization: {scheme} <key>`" if scheme else "the bare key: `Authorization: <key>`"
    return {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": f"Your Willo API key (Willo: Settings > Integrations), sent as {how}.",
    }


def document(catalog: Catalog, settings: Settings) -> dict[str, Any]:
    """An OpenAPI 3.1 document of every request-backed action in ``catalog``."""
    ops, skipped = operations(catalog)
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation31(op)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": _info(catalog, len(ops)),
        "servers": [{"url": settings.base_url, "description": "WILLO_BASE_URL"}],
        "security": [{SECURITY: []}],
        "tags": _tags(op.manifest for op in ops),
        "paths": dict(sorted(paths.items())),
        "components": {"securitySchemes": {SECURITY: security_scheme(settings)}},
    }
    hooks = {
        m.id: {
            "post": {
                "summary": m.title,
                "description": m.data["description"],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": m.output_schema}},
                },
                "responses": {"200": {"description": "Accepted: answer 2xx once the event is stored."}},
            }
        }
        for m in catalog.of_kind("trigger")
        if m.data.get("strategy") == "webhook"
    }
    if hooks:
        doc["webhooks"] = hooks
    polling = [
        {"id": m.id, "kind": "trigger", "reason": "polling trigger: run it with willo-connector poll"}
        for m in catalog.of_kind("trigger")
        if m.data.get("strategy") != "webhook"
    ]
    doc["x-willo-not-expressible"] = skipped + polling
    return doc


def _info(catalog: Catalog, count: int) -> dict[str, Any]:
    plugins = sorted({m.plugin for m in catalog.manifests.values()})
    return {
        "title": "Willo",
        "version": __version__,
        "description": (
            f"Willo Integration API V2 as willo-connector {__version__} calls it: {count} operations, "
            f"one per request-backed action of its catalog (plugins: {', '.join(plugins)}). "
            "Actions that are not one request are listed under x-willo-not-expressible."
        ),
        "x-willo-generator": f"willo-connector {__version__}",
    }


def _tags(manifests: Iterable[Manifest]) -> list[dict[str, str]]:
    names = sorted({str(t) for m in manifests for t in m.data.get("tags") or []})
    return [{"name": n} for n in names]


def _operation31(op: Operation) -> dict[str, Any]:
    m = op.manifest
    out: dict[str, Any] = {
        "operationId": m.id,
        "summary": m.title,
        "description": m.data["description"],
    }
    if m.data.get("tags"):
        out["tags"] = [str(t) for t in m.data["tags"]]
    if op.params:
        out["parameters"] = [_param31(p) for p in op.params]
    if op.body is not None:
        out["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": op.body}},
        }
    out["responses"] = {op.status: _response31(op), "default": {"description": ERRORS}}
    out["x-willo-idempotent"] = m.idempotent
    if op.connector_only:
        out["x-willo-connector-only-inputs"] = op.connector_only
    return out


def _param31(p: Param) -> dict[str, Any]:
    out: dict[str, Any] = {"name": p.name, "in": p.where, "required": p.required}
    out["description"] = p.description
    out["schema"] = p.schema
    if p.source and p.source != p.name:
        out["x-willo-input"] = p.source
    return out


def _response31(op: Operation) -> dict[str, Any]:
    m = op.manifest
    if op.binary:
        return {
            "description": f"{m.title}: the file (willo-connector reports its type, size and SHA-256).",
            "content": {"*/*": {"schema": {}}},
        }
    if op.status == "204":
        return {"description": f"{m.title}: done (no content)."}
    return {
        "description": f"{m.title}: {m.output_schema.get('description') or 'the result'}",
        "content": {"application/json": {"schema": m.output_schema}},
    }


# --------------------------------------------------------------------------- Swagger 2.0

#: Keywords a Swagger 2.0 Schema Object has (besides ``x-`` extensions).
SWAGGER2_SCHEMA = {
    "$ref", "format", "title", "description", "default", "multipleOf", "maximum", "exclusiveMaximum",
    "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems",
    "uniqueItems", "maxProperties", "minProperties", "required", "enum", "type", "items", "allOf",
    "properties", "additionalProperties", "discriminator", "readOnly", "xml", "externalDocs", "example",
}  # fmt: skip
#: Keywords a Swagger 2.0 path or query parameter may carry beside name/in/required/description.
SWAGGER2_PARAM = {
    "type", "format", "items", "collectionFormat", "default", "maximum", "exclusiveMaximum", "minimum",
    "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems",
    "enum", "multipleOf",
}  # fmt: skip
PRIMITIVE = {"string", "number", "integer", "boolean", "array"}


class Downconverter:
    """JSON Schema 2020-12 to a Swagger 2.0 Schema Object, counting what it drops.

    Rewrites: ``type: [T, "null"]`` and a ``null`` in ``enum`` or in an ``anyOf``/``oneOf``
    -> ``T`` with ``x-nullable: true``; ``const`` -> a one-value ``enum``; numeric
    ``exclusiveMinimum``/``exclusiveMaximum`` -> ``minimum``/``maximum`` with the boolean
    flag; ``examples`` -> ``example``; an ``anyOf``/``oneOf`` of objects -> one object with
    every branch's properties (required: those all branches require); ``x-options`` ->
    ``x-ms-dynamic-values`` and ``x-ms-dynamic-list``. Dropped (no Swagger 2.0
    equivalent): other ``anyOf``/``oneOf`` (the value is left untyped), ``not``,
    ``if``/``then``/``else``, ``prefixItems``, ``contains``, ``dependentRequired``,
    ``dependentSchemas``, ``patternProperties``, ``propertyNames``,
    ``unevaluatedProperties``/``Items``, ``contentMediaType``/``Encoding``, ``$defs``,
    ``$comment``, ``deprecated``, ``writeOnly``, a list of several types.
    """

    def __init__(self, dynamic: dict[str, dict[str, Any]]):
        #: action id -> (operationId, collection) of the list operations in the document
        self.dynamic = dynamic
        self.dropped: Counter[str] = Counter()

    def schema(self, node: Any) -> dict[str, Any]:
        if not isinstance(node, dict):
            return {}
        s = dict(node)
        out: dict[str, Any] = {}
        nullable = False

        for key in ("anyOf", "oneOf"):
            if key not in s:
                continue
            branches = [b for b in s.pop(key) if isinstance(b, dict)]
            plain = [b for b in branches if not _is_null(b)]
            nullable = nullable or len(plain) < len(branches)
            if len(plain) == 1:
                s = {**plain[0], **s}
            elif plain and all(_object_like(b) for b in plain):
                s = {**merge_objects(plain), **s}
            else:
                self.dropped[key] += 1

        types = s.pop("type", None)
        if isinstance(types, list):
            named = [t for t in types if t != "null"]
            nullable = nullable or len(named) < len(types)
            if len(named) == 1:
                out["type"] = named[0]
            elif named:
                self.dropped["type (several)"] += 1
        elif isinstance(types, str) and types != "null":
            out["type"] = types
        elif types == "null":
            nullable = True

        if "const" in s:
            s.setdefault("enum", [s["const"]])
            s.pop("const")
        if "enum" in s:
            values = list(s.pop("enum"))
            if None in values:
                nullable = True
                values = [v for v in values if v is not None]
            if values:
                out["enum"] = values
                if "type" not in out:
                    kinds = {_json_type(v) for v in values}
                    if len(kinds) == 1:
                        out["type"] = kinds.pop()
        for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            value = s.pop(bound, None)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[flag] = value
                out[bound] = True
        if "examples" in s:
            examples = s.pop("examples")
            if isinstance(examples, list) and examples:
                s.setdefault("example", examples[0])
        options = s.pop("x-options", None)
        if isinstance(options, dict):
            out.update(self.dynamic_values(options))

        for key, value in s.items():
            if key == "properties" and isinstance(value, dict):
                out["properties"] = {str(k): self.property(str(k), v) for k, v in value.items()}
            elif key == "items":
                out["items"] = self.schema(value) if isinstance(value, dict) else {}
            elif key == "additionalProperties":
                out[key] = self.schema(value) if isinstance(value, dict) else bool(value)
            elif key == "allOf" and isinstance(value, list):
                out[key] = [self.schema(v) for v in value]
            elif key in SWAGGER2_SCHEMA or key.startswith("x-"):
                out[key] = value
            else:
                self.dropped[key] += 1
        if "required" in out:
            present = set(out.get("properties") or {})
            out["required"] = [r for r in out["required"] if r in present] if present else out["required"]
            if not out["required"]:
                out.pop("required")
        if out.get("type") == "array" and "items" not in out:
            out["items"] = {}
        if nullable:
            out["x-nullable"] = True
        if "default" in out and not _fits(out["default"], out.get("type")):
            out.pop("default")
            self.dropped["default (wrong type)"] += 1
        return out

    def property(self, name: str, node: Any) -> dict[str, Any]:
        out = self.schema(node)
        out.setdefault("x-ms-summary", out.get("title") or _humanize(name))
        return out

    def dynamic_values(self, options: dict[str, Any]) -> dict[str, Any]:
        target = self.dynamic.get(str(options.get("action")))
        if target is None or "value" not in options:
            self.dropped["x-options (list action not in the document)"] += 1
            return {}
        value, label = str(options["value"]), str(options.get("label", options["value"]))
        fixed = {str(k): {"value": v} for k, v in (options.get("with") or {}).items()}
        values: dict[str, Any] = {
            "operationId": target["operationId"],
            "value-collection": target["collection"],
            "value-path": value,
            "value-title": label,
        }
        listing: dict[str, Any] = {
            "operationId": target["operationId"],
            "itemsPath": target["collection"],
            "itemValuePath": value,
            "itemTitlePath": label,
        }
        if fixed:
            values["parameters"] = fixed
            listing["parameters"] = fixed
        return {"x-ms-dynamic-values": values, "x-ms-dynamic-list": listing}

    def parameter(self, p: Param) -> dict[str, Any]:
        """A Swagger 2.0 path or query parameter (primitive type, constraints beside it)."""
        s = self.schema(p.schema)
        out: dict[str, Any] = {"name": p.name, "in": p.where, "required": p.required}
        out["description"] = p.description
        out["x-ms-summary"] = s.get("title") or _humanize(p.name)
        if s.get("type") not in PRIMITIVE:
            if "type" in s:
                self.dropped[f"{s['type']} parameter"] += 1
            s["type"] = "string"
        for key, value in s.items():
            if key in SWAGGER2_PARAM or key.startswith("x-ms-"):
                out[key] = value
        if out["type"] == "array":
            items = s.get("items") or {}
            out["items"] = {k: v for k, v in items.items() if k in SWAGGER2_PARAM} or {"type": "string"}
            out["items"].setdefault("type", "string")
            out["collectionFormat"] = "multi" if p.where == "query" else "csv"
        if p.where == "path":
            out["x-ms-url-encoding"] = "single"
        if p.source is None and p.required:
            out["x-ms-visibility"] = "internal"
        elif p.required:
            out["x-ms-visibility"] = "important"
        elif p.name in ("page", "page_size"):
            out["x-ms-visibility"] = "advanced"
        return out


def _is_null(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "null" or schema.get("const", 0) is None or schema.get("enum") == [None]


def _object_like(schema: dict[str, Any]) -> bool:
    t = schema.get("type")
    return t == "object" or (t is None and "properties" in schema)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _fits(value: Any, type_name: Any) -> bool:
    if type_name is None:
        return True
    actual = _json_type(value) if value is not None else "null"
    return actual == type_name or (actual == "integer" and type_name == "number")


def merge_objects(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    """One object schema holding every property of ``schemas`` (for a union Swagger 2.0
    cannot state): a property the schemas type differently is left untyped; required are
    the properties every schema requires."""
    props: dict[str, Any] = {}
    for s in schemas:
        for name, sub in (s.get("properties") or {}).items():
            if name not in props:
                props[name] = sub
            elif props[name] != sub:
                both = [props[name], sub]
                if all(isinstance(b, dict) and _object_like(b) for b in both):
                    props[name] = merge_objects(both)
                elif all(isinstance(b, dict) and set(b) <= {"const", "enum", "description"} for b in both):
                    values = [v for b in both for v in (b.get("enum") or [b.get("const")])]
                    props[name] = {
                        "enum": list(dict.fromkeys(values)),
                        "description": both[0].get("description"),
                    }
                else:
                    props[name] = {"description": sub.get("description") or props[name].get("description")}
    required = set.intersection(*(set(s.get("required") or []) for s in schemas)) if schemas else set()
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = sorted(required)
    return out


def swagger2(catalog: Catalog, settings: Settings) -> dict[str, Any]:
    """Swagger 2.0 for a Power Automate custom connector (import it as an OpenAPI file)."""
    ops, skipped = operations(catalog)
    base = urlsplit(settings.base_url)
    triggers = [m for m in catalog.of_kind("trigger") if m.data.get("strategy") == "webhook"]
    subscribe = next((op for op in ops if op.manifest.id == SUBSCRIBE_ACTION), None)
    if triggers and subscribe is not None:
        ops.remove(subscribe)
        skipped.append(
            {
                "id": subscribe.manifest.id,
                "kind": "action",
                "reason": f"{subscribe.method} {subscribe.path} is the webhook trigger's subscription "
                "here (Swagger 2.0 has one operation per path and method)",
            }
        )
    dynamic = {
        op.manifest.id: {
            "operationId": safe_name(op.manifest.id),
            "collection": (op.manifest.request or {}).get("pagination", {}).get("items", "results"),
        }
        for op in ops
        if op.method == "GET"
    }
    conv = Downconverter(dynamic)
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation2(op, conv)
    if triggers and subscribe is not None:
        item = paths.setdefault(subscribe.path, {})
        item["x-ms-notification-content"] = {
            "description": "One Willo event (fields of every event type; `event` says which).",
            "schema": conv.schema(merge_objects([m.output_schema for m in triggers])),
        }
        item[subscribe.method.lower()] = _trigger2(subscribe, triggers, conv)
    elif triggers:
        skipped += [
            {"id": m.id, "kind": "trigger", "reason": f"{SUBSCRIBE_ACTION} is not in the catalog"}
            for m in triggers
        ]
    skipped += [
        {
            "id": m.id,
            "kind": "trigger",
            "reason": "polling trigger: Power Automate polls only APIs that keep its trigger state; "
            "run it with willo-connector poll",
        }
        for m in catalog.of_kind("trigger")
        if m.data.get("strategy") != "webhook"
    ]
    security = security_scheme(settings)
    doc: dict[str, Any] = {
        "swagger": "2.0",
        "info": _info(catalog, len(ops)),
        "host": base.netloc,
        "basePath": base.path or "/",
        "schemes": [base.scheme],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": {
            SECURITY: {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": security["description"].replace(
                    "`Authorization: Bearer <key>`", "`Authorization: Bearer <key>` (type `Bearer <key>`)"
                ),
            }
        },
        "security": [{SECURITY: []}],
        "tags": _tags(op.manifest for op in ops),
        "paths": dict(sorted(paths.items())),
        "x-willo-not-expressible": skipped,
    }
    doc["x-willo-downconverted"] = dict(sorted(conv.dropped.items()))
    return doc


def _summary(text: str) -> str:
    """Power Automate's rules for a summary: no ``/\\<>*%&?``, at most 80 characters, and
    no trailing punctuation or space."""
    text = re.sub(r"[/\\<>*%&?]", " ", text)
    text = re.sub(r"\s+", " ", text).strip()[:80]
    return re.sub(r"[^A-Za-z0-9)]+$", "", text)


def _operation2(op: Operation, conv: Downconverter) -> dict[str, Any]:
    m = op.manifest
    out: dict[str, Any] = {
        "operationId": safe_name(m.id),
        "summary": _summary(m.title),
        "description": m.data["description"],
        "x-willo-action": m.id,
    }
    if m.data.get("tags"):
        out["tags"] = [str(t) for t in m.data["tags"]]
    if op.method == "PUT":
        out["x-ms-visibility"] = "advanced"  # replace: the PATCH (update) is the usual choice
    params = [conv.parameter(p) for p in op.params]
    if op.body is not None:
        params.append(
            {
                "name": "body",
                "in": "body",
                "required": op.body_required,
                "description": f"{m.title}: the fields to send.",
                "schema": conv.schema(op.body),
            }
        )
    if params:
        out["parameters"] = params
    if op.binary:
        out["produces"] = ["application/octet-stream"]
        ok: dict[str, Any] = {"description": f"{m.title}: the file.", "schema": {"type": "file"}}
    elif op.status == "204":
        ok = {"description": f"{m.title}: done (no content)."}
    else:
        ok = {"description": _summary(m.title), "schema": conv.schema(m.output_schema)}
    out["responses"] = {op.status: ok, "default": {"description": ERRORS}}
    out["x-willo-idempotent"] = m.idempotent
    if op.connector_only:
        out["x-willo-connector-only-inputs"] = op.connector_only
    return out


def _trigger2(subscribe: Operation, triggers: list[Manifest], conv: Downconverter) -> dict[str, Any]:
    """The webhook trigger: Power Automate subscribes with its callback URL and removes the
    subscription with a DELETE to the Location of the 201."""
    events = sorted({str(m.data["webhook"]["event"]) for m in triggers})
    body = conv.schema(subscribe.body or {"type": "object"})
    props = body.setdefault("properties", {})
    props["url"] = {
        "type": "string",
        "description": "Power Automate's callback URL.",
        "x-ms-notification-url": True,
        "x-ms-visibility": "internal",
        "x-ms-summary": "Callback URL",
    }
    props["events"] = {
        "type": "array",
        "items": {"type": "string", "enum": events},
        "description": "The Willo events that start the flow: " + ", ".join(events) + ".",
        "x-ms-summary": "Events",
        "x-ms-visibility": "important",
    }
    for name in list(props):
        if name not in ("url", "events"):
            props[name].setdefault("x-ms-visibility", "internal")
            if name == "secret":
                props.pop(name)  # Power Automate cannot check a signature
    body["required"] = ["url", "events"]
    return {
        "operationId": "willo-webhook_event",
        "summary": "When a Willo event occurs",
        "description": "Starts the flow on each chosen Willo event: "
        + "; ".join(f"{m.data['webhook']['event']}: {m.title} ({m.id})" for m in triggers),
        "x-ms-trigger": "single",
        "x-ms-trigger-hint": "To see it work, make one of the chosen events happen in Willo.",
        "x-willo-triggers": [m.id for m in triggers],
        "parameters": [{"name": "body", "in": "body", "required": True, "schema": body}],
        "responses": {
            "201": {
                "description": "Subscribed; Power Automate deletes the subscription at the Location.",
                "headers": {"Location": {"type": "string", "description": "URL of the subscription."}},
                "schema": conv.schema(subscribe.manifest.output_schema),
            },
            "default": {"description": ERRORS},
        },
    }


def _humanize(name: str) -> str:
    text = name.replace("_", " ").replace("-", " ").strip()
    return text[:1].upper() + text[1:] if text else name
