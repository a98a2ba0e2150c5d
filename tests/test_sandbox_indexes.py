"""The sandbox's indexes (issue 16): every list they page must be the list the handlers
gave before them, which scanned every record. Random writes through the API, then
every list read page by page, compared with that scan (kept here as the reference)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from werkzeug.test import Client

from connector.sandbox import Sandbox, SandboxOptions, tables
from connector.sandbox.app import API_PREFIX
from connector.sandbox.seed import stable

# ---------------------------------------------------------------------- the reference


def _newest(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=lambda i: i["created_at"], reverse=True)


def _search(items: list[dict[str, Any]], term: str | None, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    if not term:
        return items
    t = term.casefold()
    return [i for i in items if any(t in str(i.get(f) or "").casefold() for f in fields)]


def _order(
    items: list[dict[str, Any]], ordering: str | None, allowed: set[str], alias: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    if not ordering or ordering.lstrip("-") not in allowed:
        return _newest(items)
    name = ordering.lstrip("-")
    name = (alias or {}).get(name, name)
    present = [i for i in items if i.get(name) is not None]
    absent = [i for i in items if i.get(name) is None]
    present.sort(key=lambda i: (str(i[name]).casefold(), i["created_at"]), reverse=ordering.startswith("-"))
    return present + absent


def _filter(items: list[dict[str, Any]], args: dict[str, str], spec: dict[str, str]) -> list[dict[str, Any]]:
    for name, fld in spec.items():
        if args.get(name):
            items = [i for i in items if i.get(fld) == args[name]]
    return items


class Reference:
    def __init__(self, box: Sandbox):
        self.store = box.store

    def privileged(self, user: dict[str, Any]) -> bool:
        return user["role"] in ("owner", "admin")

    def interview_visible(self, user: dict[str, Any], itv: dict[str, Any]) -> bool:
        if self.privileged(user) or itv["_owner"] == user["key"]:
            return True
        dept = self.store.table("departments").get(itv.get("department") or "")
        return bool(dept and dept.get("is_global"))

    def participants(self, user: dict[str, Any], args: dict[str, str]) -> list[str]:
        interviews = self.store.table("interviews")
        items = [
            p
            for p in self.store.table("participants").values()
            if self.interview_visible(user, interviews[p["interview"]])
        ]
        spec = {"interview": "interview", "stage": "stage", "status": "status", "email": "email"}
        items = _filter(items, args, spec)
        items = _search(items, args.get("search"), ("email", "first_name", "last_name"))
        items = _order(items, args.get("ordering"), {"created_at", "completed_at", "updated_at"})
        return [p["key"] for p in items]

    def interviews(self, user: dict[str, Any], args: dict[str, str]) -> list[str]:
        items = [i for i in self.store.table("interviews").values() if self.interview_visible(user, i)]
        items = _filter(items, args, {"department": "department", "owner": "_owner"})
        items = _search(items, args.get("search"), ("title", "description"))
        items = _order(
            items,
            args.get("ordering"),
            {"created_at", "scheduled_at", "title"},
            {"scheduled_at": "created_at"},
        )
        return [i["key"] for i in items]

    def departments(self, user: dict[str, Any], args: dict[str, str]) -> list[str]:
        items = [
            d
            for d in self.store.table("departments").values()
            if self.privileged(user) or d["_owner"] == user["key"] or d.get("is_global", False)
        ]
        return [d["key"] for d in _newest(_search(items, args.get("search"), ("name", "description")))]


# ---------------------------------------------------------------------- the run


class Box:
    def __init__(self) -> None:
        self.box = Sandbox(SandboxOptions(seed="demo", rate_limit=(0, 0)))
        self.client = Client(self.box.app)
        self.owner = self.box.api_key
        self.standard = self.box.keys["standard"]

    def call(self, method: str, path: str, key: str | None = None, **kw: Any) -> Any:
        r = self.client.open(
            API_PREFIX + path, method=method, headers={"Authorization": key or self.owner}, **kw
        )
        return r.status_code, (r.get_json(silent=True) if r.data else None)

    def all_pages(self, path: str, args: dict[str, str], key: str, size: int) -> tuple[int, list[str]]:
        keys: list[str] = []
        page, count = 1, -1
        while True:
            status, body = self.call("GET", path, key, query_string={**args, "page_size": size, "page": page})
            assert status == 200, body
            count = body["count"]
            keys.extend(r["key"] for r in body["results"])
            if not body["next"]:
                return count, keys
            page += 1


EMAILS = [f"p{i}@example.com" for i in range(40)] + ["P1@Example.com"]
NAMES = [None, "Ada", "ada", "Bob", "Zoë", ""]
STAGES = ["Invited", "Completed", "Reviewed", "Shortlisted", "Rejected", "Hired"]


def _mutate(b: Box, rng: random.Random) -> None:
    store = b.box.store
    parts = list(store.table("participants"))
    itvs = list(store.table("interviews"))
    depts = list(store.table("departments"))
    op = rng.choice(
        ["invite"] * 6
        + ["stage", "name", "respond", "score", "delete_p", "itv", "itv_patch"] * 2
        + ["delete_itv", "delete_dept", "global", "user"]
    )
    if op == "invite" and itvs:
        body = {"interview": rng.choice(itvs), "email": rng.choice(EMAILS)}
        name = rng.choice(NAMES)
        if name is not None:
            body["first_name"] = name
        b.call("POST", "/participants/", json=body)
    elif op == "stage" and parts:
        b.call("PATCH", f"/participants/{rng.choice(parts)}/", json={"stage": rng.choice(STAGES)})
    elif op == "name" and parts:
        b.call("PATCH", f"/participants/{rng.choice(parts)}/", json={"last_name": rng.choice(NAMES)})
    elif op == "respond" and parts:
        b.call("POST", f"/_sandbox/participants/{rng.choice(parts)}/respond", json={})
    elif op == "score" and parts:
        b.call("POST", f"/_sandbox/participants/{rng.choice(parts)}/score", json={"score": rng.randint(0, 5)})
    elif op == "delete_p" and parts:
        b.call("DELETE", f"/participants/{rng.choice(parts)}/")
    elif op == "itv":
        key = rng.choice([b.owner, b.standard])
        body: dict[str, Any] = {"title": rng.choice(["SRE", "sre", "Analyst", "zeta", "Alpha"])}
        if depts and rng.random() < 0.7:
            body["department"] = rng.choice(depts)
        b.call("POST", "/interviews/", key, json=body)
    elif op == "itv_patch" and itvs:
        change = {"title": rng.choice(["beta", "Beta", "omega"])}
        if depts and rng.random() < 0.5:
            change = {"department": rng.choice([*depts, None])}
        b.call("PATCH", f"/interviews/{rng.choice(itvs)}/", json=change)
    elif op == "delete_itv" and len(itvs) > 2:
        b.call("DELETE", f"/interviews/{rng.choice(itvs)}/")
    elif op == "delete_dept" and len(depts) > 2:
        b.call("DELETE", f"/departments/{rng.choice(depts)}/")
    elif op == "global" and depts:
        b.call("PATCH", f"/departments/{rng.choice(depts)}/", json={"is_global": rng.random() < 0.5})
    elif op == "user":
        b.call(
            "POST", "/departments/", rng.choice([b.owner, b.standard]), json={"name": rng.choice(NAMES[1:])}
        )


def _check(b: Box, ref: Reference, rng: random.Random) -> None:
    store = b.box.store
    for key in (b.owner, b.standard):
        user = store.user_for(key)
        assert user is not None
        args: dict[str, str] = {}
        if rng.random() < 0.5 and store.table("interviews"):
            args["interview"] = rng.choice(list(store.table("interviews")))
        if rng.random() < 0.3:
            args["stage"] = rng.choice(STAGES)
        if rng.random() < 0.3:
            args["status"] = rng.choice(["invited", "completed"])
        if rng.random() < 0.15:
            args["email"] = rng.choice(EMAILS)
        if rng.random() < 0.2:
            args["search"] = rng.choice(["ada", "P1", "example", "zoë"])
        if rng.random() < 0.7:
            args["ordering"] = rng.choice(
                [
                    "created_at",
                    "-created_at",
                    "completed_at",
                    "-completed_at",
                    "updated_at",
                    "-updated_at",
                    "--updated_at",
                    "title",
                    "nonsense",
                ]
            )
        count, keys = b.all_pages("/participants/", args, key, rng.randint(1, 30))
        want = ref.participants(user, args)
        assert (count, keys) == (len(want), want), args

        args = {}
        if rng.random() < 0.4 and store.table("departments"):
            args["department"] = rng.choice(list(store.table("departments")))
        if rng.random() < 0.3:
            args["owner"] = rng.choice([u for u in store.table("users")])
        if rng.random() < 0.2:
            args["search"] = rng.choice(["sre", "a", "beta"])
        if rng.random() < 0.8:
            args["ordering"] = rng.choice(
                ["title", "-title", "scheduled_at", "-scheduled_at", "created_at", "x"]
            )
        count, keys = b.all_pages("/interviews/", args, key, rng.randint(1, 30))
        want = ref.interviews(user, args)
        assert (count, keys) == (len(want), want), args

        args = {"search": "a"} if rng.random() < 0.3 else {}
        count, keys = b.all_pages("/departments/", args, key, rng.randint(1, 30))
        assert keys == ref.departments(user, args)


@pytest.mark.parametrize("small", [1, tables.SMALL])
def test_indexed_lists_are_the_scanned_lists(small: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``small`` 1 keeps every bucket sorted (the maintained indexes); the default
    sorts small buckets when asked."""
    monkeypatch.setattr(tables, "SMALL", small)
    rng = random.Random(16)
    b = Box()
    ref = Reference(b.box)
    most = 0
    for _ in range(150):
        for _ in range(rng.randint(1, 12)):
            _mutate(b, rng)
        _check(b, ref, rng)
        most = max(most, len(b.box.store.table("participants")))
    assert most > 40  # the lists were long enough to page


def test_a_filter_naming_nothing_is_still_a_400_and_unique_invites_hold() -> None:
    b = Box()
    status, body = b.call("GET", "/participants/", query_string={"interview": "0" * 32})
    assert status == 400 and "interview" in body
    itv = stable("interview:Backend Engineer")
    assert b.call("POST", "/participants/", json={"interview": itv, "email": "new@example.com"})[0] == 201
    status, body = b.call("POST", "/participants/", json={"interview": itv, "email": "new@example.com"})
    assert status == 400 and "non_field_errors" in body
    # another case is another e-mail (exact, as Django compares)
    assert b.call("POST", "/participants/", json={"interview": itv, "email": "New@example.com"})[0] == 201


def test_participants_seeds_a_bulk_interview_that_pages_like_any_other() -> None:
    box = Sandbox(SandboxOptions(seed="none", participants=100, rate_limit=(0, 0)))
    b = Client(box.app)
    bulk = stable("interview:Bulk hiring")
    headers = {"Authorization": box.api_key}
    r = b.get(
        f"{API_PREFIX}/participants/",
        query_string={"interview": bulk, "page_size": 30, "page": 4},
        headers=headers,
    )
    body = r.get_json()
    assert body["count"] == 100 and len(body["results"]) == 10 and body["next"] is None
    r = b.get(f"{API_PREFIX}/participants/", query_string={"status": "completed"}, headers=headers)
    assert r.get_json()["count"] == 33
    key = stable("participant:bulk:7")
    assert (
        b.get(f"{API_PREFIX}/participants/{key}/", headers=headers).get_json()["email"]
        == "candidate000007@example.com"
    )


@pytest.mark.subprocess
def test_the_sandbox_command_serves_bulk_participants_and_stops_on_sigterm() -> None:
    import signal
    import subprocess

    import requests

    from tests.conftest import script, script_env

    proc = subprocess.Popen(
        [*script(), "sandbox", "--port", "0", "--rate-limit", "0", "--participants", "2500"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=script_env(),
    )
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().strip().split("=", 1)[1]
        key = proc.stdout.readline().strip().split("=", 1)[1]
        s = requests.Session()
        s.headers["Authorization"] = key
        url, seen = f"{base}/participants/?page_size=30", []
        while url:
            page = s.get(url, timeout=10).json()
            seen.extend(p["key"] for p in page["results"])
            url = page["next"]
        assert len(seen) == len(set(seen)) == 2505  # and the demo's five
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "sandbox stopped" in err and "Traceback" not in err
