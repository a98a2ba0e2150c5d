"""Operations, issue 15 items 1 and 2: log lines an on-call engineer can search (text
or JSON, with the run, step, item, trigger and event in context, secrets scrubbed),
and /health, /ready and /metrics on listen's port and on poll --metrics-port."""

from __future__ import annotations

import functools
import hashlib
import hmac
import io
import json
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import Client

from connector import redaction, telemetry
from connector.cli import main, setup_logging
from connector.observe import Probes, inbox_below, store_writable, wsgi
from connector.sandbox.seed import stable
from connector.state.store import StateStore
from connector.triggers.receiver import Inbox, make_app
from tests.conftest import ON_SCORE_WF, free_port, script, script_env
from tests.conftest import wait_for as wait_until

#: this file's bound on a wait (see conftest.wait_for)
wait_for = functools.partial(wait_until, timeout=20.0)

ADA = stable("participant:ada@example.com")
SECRET = "whsec_observe_tests_0123456789"

FOREACH = """\
workflow: 1
name: observed
inputs: {type: object, properties: {keys: {type: array}}}
steps:
  - id: one
    use: willo.list_languages
  - id: each
    use: willo.get_participant
    foreach: "{{ inputs['keys'] }}"
    concurrency: 3
    with: {participant: "{{ item }}"}
"""


def metrics_of(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, parsed by prometheus_client's parser."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def sample(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def body_of(eid: str, event: str = "new_score") -> bytes:
    return json.dumps(
        {"id": eid, "event": event, "data": {"participant": {"key": ADA}, "interview": {"key": "i"}}}
    ).encode()


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    ts = str(int(time.time()))
    mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Willo-Timestamp": ts, "X-Willo-Signature": "sha256=" + mac, "Content-Type": "application/json"}


# ---------------------------------------------------------------------- 1: logs


def test_each_json_log_line_of_a_run_parses_and_carries_the_run_id(sandbox, tmp_path: Path) -> None:
    wf = tmp_path / "observed.yaml"
    wf.write_text(FOREACH)
    keys = json.dumps([ADA, ADA, ADA, ADA])
    r = CliRunner().invoke(
        main, ["--log-format", "json", "-vv", "run", str(wf), "-i", f"keys={keys}", "--json"]
    )
    assert r.exit_code == 0, r.output
    run_id = json.loads(r.stdout)["run_id"]
    lines = [json.loads(line) for line in r.stderr.splitlines() if line.strip()]  # every line parses
    assert lines and all({"time", "level", "logger", "message"} <= set(e) for e in lines)
    started = next(
        i for i, e in enumerate(lines) if e["message"].startswith(f"run {run_id} of observed started")
    )
    ended = next(
        i for i, e in enumerate(lines) if e["message"].startswith(f"run {run_id} of observed succeeded")
    )
    during = lines[started : ended + 1]
    assert len(during) > 6  # urllib3's request lines (-vv), from the foreach's worker threads too
    assert all(e.get("run_id") == run_id and e.get("workflow") == "observed" for e in during)
    requests_of_items = [e for e in during if e["logger"].startswith("urllib3") and e.get("step") == "each"]
    assert {e.get("item") for e in requests_of_items} == {0, 1, 2, 3}  # each item's own context
    assert all(e["time"].endswith("Z") and "T" in e["time"] for e in lines)


def test_text_lines_have_time_level_logger_and_context(sandbox, tmp_path: Path, monkeypatch) -> None:
    wf = tmp_path / "observed.yaml"
    wf.write_text(FOREACH)
    monkeypatch.setenv("WILLO_LOG_LEVEL", "info")
    r = CliRunner().invoke(main, ["run", str(wf), "-i", "keys=[]", "--json"])
    assert r.exit_code == 0, r.output
    run_id = json.loads(r.stdout)["run_id"]
    line = next(x for x in r.stderr.splitlines() if "succeeded in" in x)
    when, level, logger, *_ = line.split(" ")
    assert when.endswith("Z") and level == "info" and logger == "connector.workflows.runner:"
    assert line.endswith(f"run_id={run_id} workflow=observed")


def test_log_format_comes_from_the_environment_and_is_checked(monkeypatch) -> None:
    monkeypatch.setenv("WILLO_LOG_FORMAT", "yaml")
    r = CliRunner().invoke(main, ["actions"])
    assert r.exit_code == 2 and "--log-format" in r.stderr and "Traceback" not in r.output
    monkeypatch.setenv("WILLO_LOG_FORMAT", "json")
    monkeypatch.setenv("WILLO_LOG_LEVEL", "loud")
    r = CliRunner().invoke(main, ["actions"])
    assert r.exit_code == 2 and "--log-level" in r.stderr


@pytest.mark.parametrize("kind", ["text", "json"])
def test_secrets_are_scrubbed_from_every_part_of_a_line(kind: str) -> None:
    key = "sk_live_observe_0123456789abcdef"
    redaction.register(key)
    out = io.StringIO()
    setup_logging(1, kind)
    handler = logging.getLogger().handlers[0]
    handler.setStream(out)  # type: ignore[attr-defined]
    try:
        with telemetry.bind(trigger=f"t-{key}", run_id="r1"):
            logging.getLogger("connector.test").info("calling with %s", key)
            try:
                raise ValueError(f"bad {key}")
            except ValueError:
                logging.getLogger("connector.test").exception("failed: %r", {"k": key})
    finally:
        setup_logging(0)
    text = out.getvalue()
    assert key not in text and text.count("***") >= 4
    if kind == "json":
        entries = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        assert entries[0]["trigger"] == "t-***" and entries[0]["run_id"] == "r1"
        assert "ValueError: bad ***" in entries[1]["exc"]


# ---------------------------------------------------------------------- 2: metrics, in process


def test_metrics_parse_and_count_deliveries_as_they_arrive(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    inbox = Inbox(store, SECRET)
    probes = Probes(store, checks=[store_writable(store), inbox_below(store, 1000)], cache=0)
    client = Client(wsgi(probes, make_app(inbox)))

    def scrape() -> dict:
        resp = client.get("/metrics")
        assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/plain")
        return metrics_of(resp.get_data(as_text=True))

    before = scrape()
    for i in range(3):
        body = body_of(f"evt_metrics_{i}_{time.time_ns()}")
        assert client.post("/willo/webhooks", data=body, headers=signed(body)).status_code == 202
    body = body_of(f"evt_dup_{time.time_ns()}")
    assert client.post("/willo/webhooks", data=body, headers=signed(body)).status_code == 202
    assert client.post("/willo/webhooks", data=body, headers=signed(body)).status_code == 200
    assert client.post("/willo/webhooks", data=body, headers=signed(body, "wrong")).status_code == 401
    assert client.post("/willo/webhooks", data=b"[]", headers=signed(b"[]")).status_code == 400
    after = scrape()

    def moved(outcome: str) -> float:
        name = "willo_connector_deliveries_total"
        return sample(after, name, outcome=outcome) - sample(before, name, outcome=outcome)

    assert (moved("queued"), moved("duplicate"), moved("bad_signature"), moved("invalid")) == (4, 1, 1, 1)
    assert sample(after, "willo_connector_stored_events", status="queued") == 4  # read from the store
    assert sample(after, "willo_connector_inbox_depth", source="webhook") == 4
    assert sample(after, "willo_connector_state_bytes", file="db") > 0
    assert any(name == "process_cpu_seconds_total" for name, _ in after)
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json == {"status": "ready"}
    assert client.get("/health").json == {"status": "ok"}
    assert client.get("/nothing").status_code == 404  # the receiver's own answer
    openmetrics = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert openmetrics.get_data(as_text=True).rstrip().endswith("# EOF")


def test_ready_says_why_it_is_not(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    inbox = Inbox(store)
    probes = Probes(store, checks=[store_writable(store, timeout=0.2), inbox_below(store, 2)])
    client = Client(wsgi(probes, make_app(inbox)))
    for i in range(2):
        assert client.post("/willo/webhooks", data=body_of(f"evt_deep_{i}")).status_code == 202
    blocker = store._conn().__class__(store.path, isolation_level=None)  # another writer holds the lock
    blocker.execute("BEGIN IMMEDIATE")
    try:
        resp = client.get("/ready")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert resp.status_code == 503
    reasons = resp.json["reasons"]
    assert any("does not take writes" in r and "locked" in r for r in reasons)
    assert any("2 queued events are due, over WILLO_READY_MAX_INBOX=2" in r for r in reasons)
    assert client.get("/health").status_code == 200  # liveness is not readiness


def test_api_requests_and_throttles_are_counted_by_action_and_status(sandbox) -> None:
    from connector.http.client import Settings
    from connector.observe import metrics
    from connector.workflows.runtime import Connector

    registry = metrics().registry
    name = "willo_connector_api_requests_total"

    def value(action: str, status: str) -> float:
        return registry.get_sample_value(name, {"action": action, "status": status}) or 0.0

    before = (value("willo.list_languages", "200"), value("willo.list_languages", "503"))
    sandbox.app.faults.planned.extend(["error_before"])
    conn = Connector(settings=Settings.from_env(backoff=0.01))
    conn.call("willo.list_languages", {})  # a 503, retried (a GET), then a 200
    after = (value("willo.list_languages", "200"), value("willo.list_languages", "503"))
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)


def test_the_rate_budget_gauges_show_the_daily_quota_of_a_shared_budget(tmp_path: Path, monkeypatch) -> None:
    """`rate_budget_used` and `_limit` carry the day (today's use against the
    connection's daily quota) next to the second and the minute, by connection."""
    from connector.connections import Connection

    store = StateStore(tmp_path)
    monkeypatch.setenv("QUOTA_KEY", "sk_quota_" + "q" * 24)
    conn = Connection("quota", rate="5/50", daily_quota=700, key_env="QUOTA_KEY")
    pacer = conn.pacer(store, conn.api_key())
    for _ in range(3):
        pacer.acquire()
    probes = Probes(store, checks=[store_writable(store)], cache=0)
    found = metrics_of(
        Client(wsgi(probes, make_app(Inbox(store, SECRET)))).get("/metrics").get_data(as_text=True)
    )

    def gauge(kind: str, window: str) -> float:
        return sample(found, f"willo_connector_rate_budget_{kind}", account="quota", window=window)

    assert [gauge("used", w) for w in ("second", "minute", "day")] == [3, 3, 3]
    assert [gauge("limit", w) for w in ("second", "minute", "day")] == [5, 50, 700]


# ---------------------------------------------------------------------- listen, as a real process


def subscribed_line(line: str) -> bool:
    """The CLI's own "subscribed KEY to EVENTS" (text or JSON), said once the
    subscription is live; not the subscriptions module's info line "subscribed URL to
    EVENTS" (``-v``), logged while it is still being made (reading that one as the
    signal probed /ready before the subscription was live, under load)."""
    if line.startswith("subscribed "):
        message = line
    elif line.startswith("{"):
        try:
            message = str(json.loads(line).get("message", ""))
        except ValueError:
            return False
    else:
        return False
    words = message.split()
    return len(words) >= 3 and words[0] == "subscribed" and "://" not in words[1] and words[2] == "to"


class Listen:
    def __init__(self, sandbox, tmp_path: Path, *args: str, **env: str):
        wf = tmp_path / "on-score.yaml"
        wf.write_text(ON_SCORE_WF)
        self.port = free_port()
        self.proc = subprocess.Popen(
            [*script(), *args, "listen", "--port", str(self.port), "--workflow", str(wf)],
            env=script_env(
                WILLO_BASE_URL=sandbox.base_url,
                WILLO_API_KEY=sandbox.api_key,
                WILLO_RATE_LIMIT="0",
                WILLO_WEBHOOK_SECRET=SECRET,
                WILLO_STATE_DIR=str(tmp_path / "state"),
                XDG_CACHE_HOME=str(tmp_path / "cache"),
                **env,
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self.err: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            self.err.append(line)
            if subscribed_line(line):
                return
            assert self.proc.poll() is None, "".join(self.err) + self.proc.stderr.read()
        raise AssertionError("listener did not subscribe: " + "".join(self.err))

    def get(self, path: str) -> requests.Response:
        return requests.get(self.base + path, timeout=10)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        return "".join(self.err) + err


@pytest.mark.subprocess
def test_listen_serves_metrics_and_logs_each_delivery_event_and_run(sandbox, tmp_path: Path) -> None:
    listen = Listen(sandbox, tmp_path, "--log-format", "json", "-v")
    try:
        assert listen.get("/ready").json() == {"status": "ready"}
        before = metrics_of(listen.get("/metrics").text)
        body = body_of(f"evt_sub_{time.time_ns()}")
        resp = requests.post(listen.base + "/willo/webhooks", data=body, headers=signed(body), timeout=10)
        assert resp.status_code == 202

        def settled() -> bool:  # the store's gauges are read at most once a second
            found = metrics_of(listen.get("/metrics").text)
            return (
                sample(found, "willo_connector_stored_events", status="done") == 1
                and sample(found, "willo_connector_runs_total", workflow="on-score", status="succeeded") == 1
            )

        wait_for(settled)
        after = metrics_of(listen.get("/metrics").text)
        queued = ("willo_connector_deliveries_total", (("outcome", "queued"),))
        assert after[queued] - before.get(queued, 0) == 1
        assert sample(after, "willo_connector_events_dispatched_total", source="webhook", outcome="done") == 1
        assert sample(after, "willo_connector_run_duration_seconds_count", workflow="on-score",
                      status="succeeded") == 1  # fmt: skip
        assert sample(after, "willo_connector_api_requests_total", action="willo.get_participant",
                      status="200") == 1  # fmt: skip
        assert listen.get("/health").json()["subscription"]["live"] is True
    finally:
        err = listen.stop()
    logs = [json.loads(line) for line in err.splitlines() if line.strip()]  # every line is JSON
    accepted = next(e for e in logs if e["message"].startswith("delivery accepted"))
    assert accepted["trigger"] == "willo.new_score" and isinstance(accepted["event_id"], int)
    ran = next(e for e in logs if " succeeded in " in e["message"])
    done = next(e for e in logs if e["message"].startswith(f"event {accepted['event_id']} done"))
    assert ran["event_id"] == done["event_id"] == accepted["event_id"] and ran["run_id"] in done["message"]
    assert SECRET not in err and sandbox.api_key not in err


@pytest.mark.subprocess
def test_ready_goes_503_when_the_subscription_is_removed_behind_its_back(
    sandbox, tmp_path: Path, monkeypatch
) -> None:
    listen = Listen(sandbox, tmp_path, WILLO_LEASE_SECONDS="1", WILLO_MAX_RETRIES="0")
    try:
        assert listen.get("/ready").status_code == 200
        key = listen.get("/health").json()["subscription"]["webhook"]

        def refuse(*_args: Any, **_kwargs: Any) -> Any:
            from connector.sandbox.app import detail

            raise detail(503, "Service temporarily unavailable, try again later.")

        monkeypatch.setattr(sandbox.app, "webhooks_create", refuse)  # Willo will not take it back
        auth = {"Authorization": sandbox.api_key}
        assert requests.delete(f"{sandbox.base_url}/webhooks/{key}/", headers=auth).status_code == 204
        wait_for(lambda: listen.get("/ready").status_code == 503)  # verified with Willo every 2 s
        ready = listen.get("/ready").json()
        assert ready["status"] == "not ready"
        assert ready["reasons"] == [f"no live subscription: webhook {key} is no longer in Willo"]
        assert listen.get("/health").status_code == 200
        monkeypatch.undo()  # Willo is back: the listener subscribes again by itself
        wait_for(lambda: listen.get("/ready").status_code == 200)
    finally:
        listen.stop()


@pytest.mark.subprocess
def test_poll_interval_serves_metrics_and_rides_out_an_outage(sandbox, tmp_path: Path) -> None:
    port = free_port()
    sandbox.app.faults.planned.extend(["error_before"] * 2)  # the first poll fails: Willo is down
    proc = subprocess.Popen(
        [*script(), "-v", "poll", "willo.new_participant", "--interval", "1", "--metrics-port", str(port)],
        env=script_env(
            WILLO_BASE_URL=sandbox.base_url,
            WILLO_API_KEY=sandbox.api_key,
            WILLO_RATE_LIMIT="0",
            WILLO_MAX_RETRIES="0",
            WILLO_STATE_DIR=str(tmp_path / "state"),
            XDG_CACHE_HOME=str(tmp_path / "cache"),
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def polled() -> bool:
            try:
                found = metrics_of(requests.get(base + "/metrics", timeout=5).text)
            except requests.ConnectionError:
                return False
            lag = [
                v
                for (name, labels), v in found.items()
                if name == "willo_connector_poll_lag_seconds"
                and dict(labels)["ledger"] == "willo.new_participant"
                and dict(labels)["account"].startswith("default/")  # each account's ledger its own
            ]
            return sample(found, "willo_connector_polls_total", trigger="willo.new_participant") >= 1 and (
                len(lag) == 1 and lag[0] < 30
            )

        wait_for(polled, timeout=30)
        found = metrics_of(requests.get(base + "/metrics", timeout=5).text)
        assert sample(found, "willo_connector_api_requests_total", action="willo.list_participants",
                      status="503") >= 1  # fmt: skip
        assert requests.get(base + "/ready", timeout=5).json() == {"status": "ready"}
        assert proc.poll() is None  # the failed poll did not end it
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "poll of willo.new_participant failed" in err and "trying again in 1s" in err


def test_metrics_port_needs_a_long_lived_poller() -> None:
    r = CliRunner().invoke(main, ["poll", "willo.new_participant", "--once", "--metrics-port", "0"])
    assert r.exit_code == 2 and "leave out --once" in r.stderr


def test_one_shot_commands_do_not_import_prometheus_client(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from connector.cli import main\n"
        "r = CliRunner().invoke(main, ['state', 'show', '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print('prometheus_client' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=script_env(WILLO_STATE_DIR=str(tmp_path / "s")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_metrics_can_be_turned_off(tmp_path: Path, monkeypatch) -> None:
    from connector.observe import metrics_enabled

    store = StateStore(tmp_path)
    client = Client(wsgi(Probes(store, with_metrics=False), make_app(Inbox(store))))
    resp = client.get("/metrics")
    assert resp.status_code == 404 and resp.json == {"error": "metrics are off (WILLO_METRICS)"}
    assert client.get("/ready").status_code == 200
    assert metrics_enabled({}) and metrics_enabled({"WILLO_METRICS": "on"})
    assert not metrics_enabled({"WILLO_METRICS": "off"}) and not metrics_enabled({"WILLO_METRICS": "0"})
    monkeypatch.setenv("WILLO_METRICS", "sometimes")
    wf = tmp_path / "wf.yaml"
    wf.write_text(ON_SCORE_WF)
    r = CliRunner().invoke(main, ["listen", "--no-subscribe", "--port", "0", "--workflow", str(wf)])
    assert r.exit_code == 1 and r.stderr == "error: WILLO_METRICS='sometimes': give on or off\n"


@pytest.mark.subprocess
def test_under_systemd_listen_notifies_ready_and_pings_the_watchdog_from_its_probes(
    sandbox, tmp_path: Path
) -> None:
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="sd"))  # a short path: unix sockets allow ~100 bytes
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(folder / "notify"))
    sock.settimeout(20)
    try:
        listen = Listen(sandbox, tmp_path, NOTIFY_SOCKET=str(folder / "notify"), WATCHDOG_USEC="600000")
        try:
            got = [sock.recv(256).decode() for _ in range(3)]
            assert got[0] == "READY=1\nSTATUS=ready" and got[1:] == ["WATCHDOG=1", "WATCHDOG=1"]
            assert listen.get("/ready").status_code == 200  # it said ready because /ready said so
        finally:
            listen.stop()
        rest = []
        while True:
            try:
                rest.append(sock.recv(256).decode())
            except TimeoutError:
                break
            if rest[-1] == "STOPPING=1":
                break
        assert rest[-1] == "STOPPING=1"
    finally:
        sock.close()


def test_sd_notify_without_systemd_does_nothing(tmp_path: Path) -> None:
    from connector.observe import SystemdNotifier, local_url, sd_notify

    assert sd_notify("READY=1", {}) is False
    notifier = SystemdNotifier("http://127.0.0.1:1", {}).start()
    assert notifier._thread is None
    notifier.stop()
    assert local_url("0.0.0.0", 80) == "http://127.0.0.1:80" and local_url("::1", 9) == "http://[::1]:9"


def test_a_metrics_mistake_never_fails_what_it_counts(caplog) -> None:
    from connector.observe import metrics

    recorder = metrics()
    with caplog.at_level(logging.WARNING):
        recorder.observe("deliveries", 1.0, {"outcome": "queued"})  # a counter, observed
        recorder.inc("no_such_metric", {}, 1)
        recorder.inc("no_such_metric", {}, 1)
        telemetry.inc("runs", workflow=object(), status="x")  # type: ignore[arg-type]
    warned = [r.getMessage() for r in caplog.records]
    assert sum("no_such_metric" in m for m in warned) == 1  # once
    assert any("'deliveries' ignored: not a known histogram" in m for m in warned)


def test_a_flood_of_probes_costs_the_store_one_check_a_second(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    calls = []
    reads = []
    now = [1000.0]

    def counted() -> None:
        calls.append(1)

    probes = Probes(store, checks=[counted], clock=lambda: now[0])
    real = store.query

    def query(sql: str, args: tuple = ()) -> list:
        reads.append(sql)
        return real(sql, args)

    store.query = query  # type: ignore[method-assign]
    client = Client(wsgi(probes))
    for _ in range(200):  # all within one second
        assert client.get("/ready").status_code == 200
        assert client.get("/metrics").status_code == 200
    first_reads = len(reads)
    assert len(calls) == 1 and 0 < first_reads < 10
    now[0] += 1.0  # a second later: checked and read again, once
    for _ in range(50):
        client.get("/ready")
        client.get("/metrics")
    assert len(calls) == 2 and len(reads) == 2 * first_reads


def test_a_line_break_in_a_message_cannot_forge_a_text_line() -> None:
    out = io.StringIO()
    setup_logging(1, "text")
    logging.getLogger().handlers[0].setStream(out)  # type: ignore[attr-defined]
    try:
        with telemetry.bind(trigger="t\nfake"):
            logging.getLogger("connector.test").info("id %s", "evt\n2026-01-01T00:00:00.000Z error forged: x")
    finally:
        setup_logging(0)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and "evt\\n2026" in lines[0] and "trigger=t\\nfake" in lines[0]


# ---------------------------------------------------------------------- serve


@pytest.mark.subprocess
def test_serve_answers_probes_on_both_ports_counts_its_work_and_logs_only_json(
    sandbox, tmp_path: Path, receiver
) -> None:
    import tempfile

    from tests.conftest import EXAMPLES

    metrics_port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="sd"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(folder / "notify"))
    sock.settimeout(30)
    proc = subprocess.Popen(
        [
            *script(),
            "--log-format",
            "json",
            "-v",
            "serve",
            str(EXAMPLES / "ops"),
            "--port",
            "0",
            "--metrics-port",
            str(metrics_port),
        ],
        env=script_env(
            WILLO_BASE_URL=sandbox.base_url,
            WILLO_API_KEY=sandbox.api_key,
            WILLO_RATE_LIMIT="0",
            WILLO_STATE_DIR=str(tmp_path / "state"),
            XDG_CACHE_HOME=str(tmp_path / "cache"),
            WILLO_SECRET_CHAT_WEBHOOK=f"{receiver.url}/hooks/T000/B000/chat-secret-path",
            NOTIFY_SOCKET=str(folder / "notify"),
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{metrics_port}"
    try:
        assert sock.recv(256).decode() == "READY=1\nSTATUS=ready"  # from its own /ready

        def ready() -> bool:
            try:
                return requests.get(base + "/ready", timeout=5).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(ready, timeout=30)
        requests.post(
            f"{sandbox.base_url}/_sandbox/participants/{ADA}/respond",
            headers={"Authorization": sandbox.api_key},
        )

        def notified() -> bool:
            found = metrics_of(requests.get(base + "/metrics", timeout=5).text)
            return (
                sample(found, "willo_connector_runs_total", workflow="notify-on-response", status="succeeded")
                == 1
            )

        wait_for(notified, timeout=30)
        found = metrics_of(requests.get(base + "/metrics", timeout=5).text)
        assert sample(found, "willo_connector_deliveries_total", outcome="queued") >= 1
        assert (
            sample(found, "willo_connector_outbound_requests_total", action="http.request", status="200") == 1
        )
        assert sample(found, "willo_connector_api_throttled_total", action="http.request") == 0
        health = requests.get(base + "/health", timeout=5).json()
        assert health["status"] == "ok" and health["subscription"]["live"] is True
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        sock.close()
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]  # every line is JSON
    messages = [e["message"] for e in lines]
    assert "serve: stopped" in messages and any(
        m.startswith("serve: metrics on http://127.0.0.1:") for m in messages
    )
    run = next(
        e
        for e in lines
        if e["message"].startswith("run ") and " of notify-on-response succeeded" in e["message"]
    )
    assert run["trigger"] == "willo.new_response" and isinstance(run["event_id"], int)
    assert "chat-secret-path" not in err


def test_poll_logs_each_emitted_event_with_its_id(sandbox, tmp_path: Path) -> None:
    from tests.test_triggers import invite

    run = CliRunner()
    assert run.invoke(main, ["poll", "willo.new_participant", "--once"]).exit_code == 0
    invite(sandbox, "first@example.com")
    invite(sandbox, "second@example.com")
    r = run.invoke(main, ["--log-format", "json", "-v", "poll", "willo.new_participant", "--once", "--json"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in r.stderr.splitlines() if line.strip()]
    emitted = [e for e in lines if " emitted: " in e["message"]]
    store = StateStore(tmp_path / "state")
    ids = [row[0] for row in store.query("SELECT id FROM events ORDER BY id")]
    assert [e["event_id"] for e in emitted] == ids and len(ids) == 2
    assert all(e["trigger"] == "willo.new_participant" for e in emitted)
    done = [e for e in lines if e["message"].startswith("event ") and e["message"].endswith(" done")]
    assert [e["event_id"] for e in done] == ids
