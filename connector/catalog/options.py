"""Dynamic options: the live choices of an input field, for form builders.

An input property may carry ``x-options: {action, value, label, with}``: the list
action that supplies its choices and which item fields are the value and the label.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from connector.catalog.types import Catalog
from connector.errors import BadRequest, InputError


class Caller(Protocol):
    """What options need of a connector: its catalog, and a way to call an action."""

    catalog: Catalog

    def call(self, action_id: str, inputs: Mapping[str, Any]) -> Any: ...


def option_spec(conn: Caller, action_id: str, field: str) -> dict[str, Any]:
    manifest = conn.catalog.get(action_id)
    props = manifest.input_schema.get("properties", {})
    if field not in props:
        raise InputError(f"{action_id}: no input /{field} (inputs: {', '.join(props) or 'none'})")
    spec = props[field].get("x-options")
    if not spec:
        raise InputError(f"{action_id}: input /{field} has no dynamic options")
    return dict(spec)


def list_options(
    conn: Caller, action_id: str, field: str, extra: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """``[{value, label}]`` from the field's list action, every page."""
    spec = option_spec(conn, action_id, field)
    inputs = {**(spec.get("with") or {}), **(extra or {}), "all": True}
    try:
        result = conn.call(spec["action"], inputs).output
    except BadRequest as exc:  # e.g. django-filter refusing a key that names nothing
        raise InputError(
            f"{action_id}: options for /{field}: {spec['action']} refused {exc.short()}"
        ) from None
    return [
        {"value": item.get(spec["value"]), "label": str(item.get(spec.get("label", spec["value"])))}
        for item in result.get("results", [])
    ]
