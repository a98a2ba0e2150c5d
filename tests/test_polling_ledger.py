"""The polling ledger's exactly-once promise (issue 9 item 2, issue 18 item 10):
a first poll on an empty list, timestamps compared as times (DRF drops the fraction
when microseconds are 0), and a property test of random arrivals across pages and
polls."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import requests
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.catalog.index import get_catalog
from connector.cli import main
from connector.connections import Account
from connector.state.store import StateStore
from connector.triggers import polling
from connector.triggers.polling import Poller, order_key

START = datetime(2026, 1, 1, 0, 0, 16, tzinfo=UTC)


def drf_time(t: datetime) -> str:
    """As DRF renders a DateTimeField: no fraction when microseconds are 0."""
    text = t.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return text


# ---------------------------------------------------------------------- 9.2 against the sandbox


def test_a_first_poll_on_an_empty_list_loses_nothing_after(sandbox) -> None:
    auth = {"Authorization": sandbox.api_key}
    itv = requests.post(sandbox.base_url + "/interviews/", json={"title": "Empty at first"}, headers=auth)
    assert itv.status_code == 201, itv.text
    key = itv.json()["key"]
    run = CliRunner()
    args = ["poll", "willo.new_participant", "--with", f"interview={key}", "--once", "--json"]
    first = run.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert first.stdout == ""
    emails = [f"late{i:02d}@example.com" for i in range(31)]
    for email in emails:
        r = requests.post(
            sandbox.base_url + "/participants/", json={"interview": key, "email": email}, headers=auth
        )
        assert r.status_code == 201, r.text
    second = run.invoke(main, args)
    assert second.exit_code == 0, second.output
    got = [json.loads(line)["email"] for line in second.stdout.splitlines()]
    assert got == emails  # all 31, oldest first
    third = run.invoke(main, args)
    assert third.exit_code == 0 and third.stdout == ""


# ---------------------------------------------------------------------- a list we control


@dataclass
class _Call:
    output: Any


@dataclass
class _Client:
    requests_sent: int = 0


@dataclass
class FakeList:
    """``willo.list_participants`` with ``ordering=-created_at``: newest first, ties in
    a stable order (by creation), DRF-style pages, timestamps rendered as DRF does."""

    catalog: Any = field(default_factory=get_catalog)
    client: _Client = field(default_factory=_Client)
    items: list[dict[str, Any]] = field(default_factory=list)
    before_page: Any = None  # called with the page number before each page is answered
    connection_name: str = "default"  # a connector's account, as the poller keys its ledger by it
    account: Any = field(default_factory=lambda: Account("default", "http://x", "none"))

    def add(self, when: datetime) -> dict[str, Any]:
        n = len(self.items)
        item = {
            "key": f"p{n:04d}",
            "email": f"p{n:04d}@example.com",
            "created_at": drf_time(when),
            "_t": when,
        }
        self.items.append(item)
        return item

    def call(self, action: str, inputs: dict[str, Any]) -> _Call:
        assert action == "willo.list_participants"
        assert inputs.get("ordering") in ("-created_at", "created_at")
        probe = inputs["ordering"] == "created_at"  # the poller checks once that ordering is honoured
        if self.before_page is not None and not probe:
            self.before_page(inputs["page"])
        self.client.requests_sent += 1
        ordered = [
            i for _, i in sorted(enumerate(self.items), key=lambda p: (p[1]["_t"], p[0]), reverse=not probe)
        ]
        size, page = inputs["page_size"], inputs["page"]
        chunk = ordered[(page - 1) * size : page * size]
        more = page * size < len(ordered)
        return _Call(
            {
                "count": len(ordered),
                "next": f"http://x/participants/?page={page + 1}" if more else None,
                "previous": None,
                "results": [{k: v for k, v in i.items() if k != "_t"} for i in chunk],
            }
        )


def emitted_keys(store: StateStore, poller: Poller) -> list[str]:
    rows = store.query("SELECT payload FROM events WHERE trigger = ? ORDER BY id", (poller.name,))
    return [json.loads(r["payload"])["key"] for r in rows]


# ---------------------------------------------------------------------- 18.10: times, not strings


def test_order_keys_compare_times_not_strings() -> None:
    whole, half = "2026-01-01T00:00:16Z", "2026-01-01T00:00:16.500000Z"
    assert whole > half  # as strings: the bug
    assert order_key(whole) < order_key(half)
    assert order_key("2026-01-01T02:00:16+02:00") == order_key(whole)
    assert order_key(None) is None
    assert order_key(7) < order_key(10)


def _order_key_the_long_way(text: str) -> str:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return text
    when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@settings(max_examples=300, deadline=None)
@given(
    st.tuples(
        st.integers(0, 9999),
        st.integers(0, 19),
        st.integers(0, 39),
        st.integers(0, 29),
        st.integers(0, 69),
        st.integers(0, 69),
        st.integers(0, 999_999),
    )
)
def test_an_order_key_already_canonical_is_what_parsing_gives(parts) -> None:
    """A timestamp in order_key's own form (a backfill's every item: DRF's timestamps in
    UTC with microseconds) is taken as it is: the same key as parsed and re-formatted,
    invalid dates (kept as they are) and years before 1000 (unpadded by strftime) included."""
    y, mo, d, h, mi, s, us = parts
    text = f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}.{us:06d}Z"
    assert order_key(text) == _order_key_the_long_way(text)


def test_a_newer_item_in_the_same_second_is_not_taken_for_an_older_one(tmp_path) -> None:
    fake = FakeList()
    fake.add(START)  # 00:00:16Z: the cursor after the first poll
    store = StateStore(tmp_path)
    poller = Poller(fake, store, "willo.new_participant")  # type: ignore[arg-type]
    assert poller.poll().events == []
    half = fake.add(START + timedelta(microseconds=500000))  # 00:00:16.500000Z: newer
    later = fake.add(START + timedelta(seconds=1))  # 00:00:17Z
    assert [e["key"] for e in poller.poll().events] == [half["key"], later["key"]]
    assert poller.poll().events == []


def test_a_tie_with_the_cursor_beyond_the_first_page_is_not_lost(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(polling, "PAGE_SIZE", 2)
    fake = FakeList()
    fake.add(START)
    store = StateStore(tmp_path)
    poller = Poller(fake, store, "willo.new_participant")  # type: ignore[arg-type]
    poller.poll()
    ties = [fake.add(START) for _ in range(3)]  # same whole second as the cursor
    assert sorted(e["key"] for e in poller.poll().events) == sorted(t["key"] for t in ties)


# ---------------------------------------------------------------------- the property


STEPS = st.lists(
    st.one_of(
        # items arriving between polls: how many, and the clock's step before each
        st.tuples(st.just("arrive"), st.lists(st.sampled_from([0, 500000, 1000000, 1, 2500000]), max_size=7)),
        # a poll, with arrivals before some of its pages: (page, how many)
        st.tuples(
            st.just("poll"),
            st.lists(st.tuples(st.integers(2, 4), st.integers(1, 4)), max_size=2),
        ),
    ),
    max_size=8,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    existing=st.integers(0, 7),
    page_size=st.integers(1, 4),
    steps=STEPS,
)
def test_every_item_is_emitted_exactly_once(existing: int, page_size: int, steps: list[Any]) -> None:
    """Random arrivals between polls and between the pages of a poll, whole-second and
    fractional timestamps, ties: every item that arrives after the first poll is emitted
    exactly once, none that existed before it is, and each poll emits oldest first."""
    clock = [START]

    def tick(micros: int) -> datetime:
        clock[0] += timedelta(microseconds=micros)
        return clock[0]

    fake = FakeList()
    for _ in range(existing):
        fake.add(tick(1000000))
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(polling, "PAGE_SIZE", page_size):
        store = StateStore(tmp)
        poller = Poller(fake, store, "willo.new_participant")  # type: ignore[arg-type]
        poller.poll()
        baseline = {i["key"] for i in fake.items}
        for kind, plan in [*steps, ("poll", [])]:
            if kind == "arrive":
                for micros in plan:
                    fake.add(tick(micros))
                continue
            mid = dict(plan)

            def arrive_mid(page: int, mid: dict[int, int] = mid) -> None:
                for _ in range(mid.pop(page, 0)):
                    fake.add(tick(250000))

            fake.before_page = arrive_mid
            result = poller.poll()
            fake.before_page = None
            keys = [order_key(e["created_at"]) for e in result.events]
            assert keys == sorted(keys), "a poll emits oldest first"
        result = poller.poll()  # one more, after the last arrivals
        got = emitted_keys(store, poller)
        store.close()
    assert len(got) == len(set(got)), "an item was emitted twice"
    expected = {i["key"] for i in fake.items} - baseline
    assert set(got) == expected, f"lost: {sorted(expected - set(got))}, extra: {sorted(set(got) - expected)}"


def test_a_poll_handler_sees_an_integer_cursor_as_an_integer() -> None:
    from connector.triggers.polling import cursor_value, order_key

    assert cursor_value(order_key(42)) == 42
    assert cursor_value(order_key("2026-01-01T00:00:16Z")) == "2026-01-01T00:00:16.000000Z"
    assert cursor_value(None) is None
