"""What every resource of the sandbox shares: DRF's error bodies, pages, lookups,
django-filter's exact filters, body validation, permissions, and list helpers."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request

from connector.sandbox import framework as fw
from connector.sandbox import validate as v
from connector.sandbox.store import Store
from connector.sandbox.tables import INSERTION, NEWEST, Order, Record

if TYPE_CHECKING:
    from connector.sandbox.faults import Faults
    from connector.sandbox.webhooks import Deliverer


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        self.status, self.body, self.headers = status, body, headers or {}


def detail(status: int, message: str, **headers: str) -> ApiError:
    return ApiError(status, {"detail": message}, headers)


class Resource:
    """The helpers a resource's handlers use; :class:`~connector.sandbox.app.SandboxApp`
    mixes every resource in."""

    store: Store
    deliverer: Deliverer
    faults: Faults
    _reset: Callable[[], None] | None

    def page(
        self, request: Request, items: Sequence[Record], out: Callable[[Record], Record] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """DRF's page of ``items`` (only the page's records go through ``out``)."""
        args = request.args
        size = fw.page_size(args)
        try:
            number = int(args.get("page", 1))
        except ValueError:
            raise detail(404, "Invalid page.") from None
        pages = max(1, math.ceil(len(items) / size))
        if number < 1 or number > pages:
            raise detail(404, "Invalid page.")
        start = (number - 1) * size

        def link(n: int) -> str | None:
            return fw.page_link(request.base_url, args, n) if 1 <= n <= pages else None

        results = items[start : start + size]
        return 200, {
            "count": len(items),
            "next": link(number + 1),
            "previous": link(number - 1),
            "results": [out(r) for r in results] if out is not None else list(results),
        }

    def get(self, table: str, key: str) -> dict[str, Any]:
        record = self.store.table(table).get(key)
        if record is None:
            raise detail(404, fw.not_found(table))
        return record

    def filters(self, request: Request, spec: dict[str, tuple[str, Any]]) -> dict[str, str]:
        """django-filter's exact filters: ``{param: (field, table | choices | None)}``,
        as ``{field: value}`` for the parameters given.

        A key that names no record of ``table``, or a value not among ``choices``, is a
        400 naming the parameter; values are compared exactly (case included)."""
        errors: dict[str, list[str]] = {}
        values: dict[str, str] = {}
        for name, (fld, kind) in spec.items():
            value = request.args.get(name)
            if not value:
                continue
            if isinstance(kind, str):
                problem = fw.model_choice(self.store.table(kind), value)
            else:
                problem = fw.choice_filter(kind, value) if kind else None
            if problem:
                errors[name] = [problem]
            values[fld] = value
        if errors:
            raise ApiError(400, errors)
        return values

    def listing(
        self,
        request: Request,
        table: str,
        *,
        spec: dict[str, tuple[str, Any]] | None = None,
        search: tuple[str, ...] = (),
        order: Order = INSERTION,
        visible: Callable[[Record], bool] | None = None,
        viewer: Any = None,
    ) -> Sequence[Record]:
        """One list as the API filters it: ``spec``'s exact filters and ``order`` from the
        table's indexes; then ``?search=`` over ``search`` and ``visible`` (what ``viewer``
        may see), scanned and remembered until the next write."""
        values = self.filters(request, spec or {})
        view = self.store.table(table).select(values, order)
        term = request.args.get("search") if search else None
        if visible is None and not term:
            return view

        def scan() -> list[Record]:
            found = view[0 : len(view)]
            if visible is not None:
                found = [r for r in found if visible(r)]
            return _search(found, term, search)

        key = (tuple(sorted(values.items())), order, term, viewer, self.store.versions())
        return self.store.table(table).scan(key, scan)

    def clean(
        self, body: dict[str, Any], rules: dict[str, v.Rule], required: tuple[str, ...], partial: bool
    ) -> dict[str, Any]:
        data, errors = v.check(body, rules, required, partial)
        if errors:
            raise ApiError(400, errors)
        return data

    def ref(self, table: str, key: Any, name: str) -> None:
        if key is not None and key not in self.store.table(table):
            raise ApiError(400, {name: [f'Invalid pk "{key}" - object does not exist.']})

    # -------------------------------------------------------------- permissions

    @staticmethod
    def privileged(user: dict[str, Any]) -> bool:
        return user["role"] in ("owner", "admin")

    def require_admin(self, user: dict[str, Any]) -> None:
        if not self.privileged(user):
            raise detail(403, "You do not have permission to perform this action.")

    def dept_visible(self, user: dict[str, Any], dept: dict[str, Any]) -> bool:
        return self.privileged(user) or dept["_owner"] == user["key"] or dept.get("is_global", False)

    def interview_visible(self, user: dict[str, Any], itv: dict[str, Any]) -> bool:
        if self.privileged(user) or itv["_owner"] == user["key"]:
            return True
        dept = self.store.table("departments").get(itv.get("department") or "")
        return bool(dept and dept.get("is_global"))

    def check_interview(self, user: dict[str, Any], itv: dict[str, Any]) -> None:
        if not self.interview_visible(user, itv):
            raise detail(403, "You do not have permission to perform this action.")


def _public(record: dict[str, Any], *drop: str) -> dict[str, Any]:
    """What the API shows of a record: no internal ``_`` fields, nor ``drop``."""
    return {k: val for k, val in record.items() if not k.startswith("_") and k not in drop}


def _search(items: list[dict[str, Any]], term: str | None, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    if not term:
        return items
    t = term.casefold()
    return [i for i in items if any(t in str(i.get(f) or "").casefold() for f in fields)]


def ordering(value: str | None, allowed: set[str], alias: dict[str, str] | None = None) -> Order:
    """DRF's OrderingFilter: ``?ordering=[-]field`` among ``allowed``; anything else is
    ignored (newest first)."""
    if not value or value.lstrip("-") not in allowed:
        return NEWEST
    name = value.lstrip("-")
    return Order((alias or {}).get(name, name), desc=value.startswith("-"))
