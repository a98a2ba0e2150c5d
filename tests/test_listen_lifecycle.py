"""`listen` as operators run it: rolling restarts share one subscription (issue 9
item 3), and SIGTERM stops it at once in every state, with nothing lost (item 7).
Real subprocesses of the installed script against the sandbox."""

from __future__ import annotations

import functools
import json
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from connector.sandbox.seed import stable
from connector.state.store import StateStore
from tests.conftest import free_port, script, script_env
from tests.conftest import wait_for as wait_until

#: this file's bound on a wait (see conftest.wait_for)
wait_for = functools.partial(wait_until, timeout=15.0)

pytestmark = pytest.mark.subprocess

ADA = stable("participant:ada@example.com")
WF = """\
workflow: 1
name: on-score
trigger: {use: willo.new_score}
steps:
  - id: who
    use: willo.get_participant
    with: {participant: "{{ trigger.data.participant.key }}"}
  - id: again
    use: willo.get_participant
    with: {participant: "{{ trigger.data.participant.key }}"}
"""
STOP_BOUND = 5.0  # generous: the figures (well under 2 s) are measured by benchmarks/bench_listen_stop.py


class Listen:
    """``willo-connector listen`` in its own process."""

    def __init__(
        self, sandbox, tmp_path: Path, port: int | None = None, public_url: str | None = None, **env
    ):
        wf = tmp_path / "on-score.yaml"
        wf.write_text(WF)
        self.port = port or free_port()
        self.env = script_env(
            WILLO_BASE_URL=sandbox.base_url,
            WILLO_API_KEY=sandbox.api_key,
            WILLO_RATE_LIMIT="0",
            WILLO_STATE_DIR=str(tmp_path / "state"),
            XDG_CACHE_HOME=str(tmp_path / "cache"),
            **env,
        )
        args = [*script(), "listen", "--port", str(self.port), "--workflow", str(wf)]
        if public_url:
            args += ["--public-url", public_url]
        self.proc = subprocess.Popen(
            args, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self.err: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            self.err.append(line)
            if line.startswith("subscribed"):
                return
            assert self.proc.poll() is None, "".join(self.err) + self.proc.stderr.read()
        raise AssertionError("listener did not subscribe: " + "".join(self.err))

    def health(self) -> dict[str, Any]:
        return requests.get(self.base + "/health", timeout=5).json()

    def stop(self) -> tuple[float, str]:
        """SIGTERM; the seconds until the process is gone, and its stderr."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        return time.monotonic() - t0, "".join(self.err) + err


def hooks(sandbox) -> list[dict[str, Any]]:
    return requests.get(sandbox.base_url + "/webhooks/", headers={"Authorization": sandbox.api_key}).json()[
        "results"
    ]


def score(sandbox, value: int = 4) -> None:
    r = requests.post(
        f"{sandbox.base_url}/_sandbox/participants/{ADA}/score",
        json={"score": value},
        headers={"Authorization": sandbox.api_key},
    )
    assert r.status_code < 300, r.text


def runs(tmp_path: Path) -> list[Any]:
    return StateStore(tmp_path / "state").query("SELECT * FROM runs ORDER BY started_at")


# ---------------------------------------------------------------------- 9.3: rolling restart


def test_a_rolling_restart_keeps_the_subscription(sandbox, tmp_path: Path) -> None:
    port_b = free_port()
    public = f"http://127.0.0.1:{port_b}"  # the load balancer's address: B's port here
    a = Listen(sandbox, tmp_path, public_url=public)
    try:
        (first,) = hooks(sandbox)
        assert a.health()["subscription"]["live"] is True
        b = Listen(sandbox, tmp_path, port=port_b, public_url=public)
    except BaseException:
        a.stop()
        raise
    try:
        assert [h["key"] for h in hooks(sandbox)] == [first["key"]]  # reused, not duplicated
        _, err = a.stop()
        assert "Traceback" not in err
        assert "kept" in err  # A says it left the subscription to B
        assert [h["key"] for h in hooks(sandbox)] == [first["key"]]
        health = b.health()
        assert health["status"] == "ok" and health["subscription"]["live"] is True
        assert health["subscription"]["webhook"] == first["key"]
        score(sandbox)  # delivered to B, which runs the workflow
        wait_for(lambda: [r["status"] for r in runs(tmp_path)] == ["succeeded"])
    finally:
        _, err = b.stop()
    assert "Traceback" not in err and "unsubscribed" in err
    assert hooks(sandbox) == []  # the last one out removes it


def test_health_says_when_this_receiver_has_no_live_subscription(
    sandbox, tmp_path: Path, monkeypatch
) -> None:
    lp = Listen(sandbox, tmp_path, WILLO_LEASE_SECONDS="1")
    try:
        (hook,) = hooks(sandbox)
        health = lp.health()
        assert health["status"] == "ok" and health["subscription"]["live"] is True
        assert health["subscription"]["webhook"] == hook["key"]
        real = sandbox.app.dispatch

        def refuse_new_webhooks(request):  # Willo is refusing to subscribe for now
            if request.method == "POST" and request.path.rstrip("/").endswith("/webhooks"):
                sandbox.app.faults.planned.append("error_before")
            return real(request)

        monkeypatch.setattr(sandbox.app, "dispatch", refuse_new_webhooks)
        del sandbox.store.table("webhooks")[hook["key"]]  # removed behind its back
        wait_for(lambda: lp.health()["subscription"]["live"] is False, timeout=10)
        health = lp.health()
        assert (
            health["status"] == "no_subscription" and "no longer in Willo" in health["subscription"]["reason"]
        )
        monkeypatch.setattr(sandbox.app, "dispatch", real)
        # it subscribes again on its own
        wait_for(lambda: lp.health()["subscription"]["live"] is True, timeout=10)
        assert len(hooks(sandbox)) == 1
    finally:
        lp.stop()
    assert hooks(sandbox) == []


# ---------------------------------------------------------------------- 9.7: stop at once


def slow_participant_gets(sandbox, monkeypatch, seconds: float) -> threading.Event:
    """Make the run's GET /participants/<key>/ hang ``seconds``; returns an event set
    when one such request has started."""
    real = sandbox.app.dispatch
    started = threading.Event()

    def dispatch(request):
        if request.method == "GET" and f"/participants/{ADA}" in request.path:
            started.set()
            time.sleep(seconds)
        return real(request)

    monkeypatch.setattr(sandbox.app, "dispatch", dispatch)
    return started


def test_sigterm_while_idle(sandbox, tmp_path: Path) -> None:
    lp = Listen(sandbox, tmp_path)
    took, err = lp.stop()
    assert took < STOP_BOUND and lp.proc.returncode == 0, (took, err)
    assert "Traceback" not in err and hooks(sandbox) == []


def test_sigterm_mid_run_interrupts_it_and_a_restart_resumes_it(sandbox, tmp_path: Path, monkeypatch) -> None:
    started = slow_participant_gets(sandbox, monkeypatch, 8)
    lp = Listen(sandbox, tmp_path)
    score(sandbox)
    assert started.wait(15)
    took, err = lp.stop()
    assert took < STOP_BOUND, (took, err)
    assert "Traceback" not in err and hooks(sandbox) == []
    store = StateStore(tmp_path / "state")
    (run,) = runs(tmp_path)
    assert run["status"] != "succeeded"
    assert store.query("SELECT status FROM events")[0]["status"] in ("queued", "dispatching")
    monkeypatch.undo()
    again = Listen(sandbox, tmp_path)
    try:
        wait_for(lambda: store.query("SELECT status FROM events")[0]["status"] == "dispatched")
    finally:
        again.stop()
    (run,) = runs(tmp_path)
    assert (run["status"], run["attempts"]) == ("succeeded", 2)


def test_sigterm_right_after_a_run(sandbox, tmp_path: Path) -> None:
    lp = Listen(sandbox, tmp_path)
    score(sandbox)
    wait_for(lambda: [r["status"] for r in runs(tmp_path)] == ["succeeded"])
    took, err = lp.stop()
    assert took < STOP_BOUND, (took, err)
    assert "Traceback" not in err and hooks(sandbox) == []


def test_sigterm_while_a_sender_holds_a_connection_open(sandbox, tmp_path: Path) -> None:
    lp = Listen(sandbox, tmp_path)
    idle = socket.create_connection(("127.0.0.1", lp.port))
    half = socket.create_connection(("127.0.0.1", lp.port))
    half.sendall(b"POST /willo/webhooks HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    try:
        took, err = lp.stop()
    finally:
        idle.close()
        half.close()
    assert took < STOP_BOUND, (took, err)
    assert "Traceback" not in err and hooks(sandbox) == []


def test_a_delivery_accepted_during_shutdown_is_kept(sandbox, tmp_path: Path) -> None:
    """Whatever got a 2xx is in the inbox and is processed by the next listener."""
    lp = Listen(sandbox, tmp_path)
    body = json.dumps(
        {
            "id": "evt_late",
            "event": "new_score",
            "data": {"participant": {"key": ADA}, "interview": {"key": "i"}},
        }
    ).encode()
    answers: list[int] = []

    def send() -> None:
        for _ in range(200):
            try:
                r = requests.post(lp.base + "/willo/webhooks", data=body, timeout=2)
                answers.append(r.status_code)
            except requests.RequestException:
                return

    sender = threading.Thread(target=send)
    sender.start()
    _, err = lp.stop()
    sender.join()
    assert "Traceback" not in err
    store = StateStore(tmp_path / "state")
    if 202 in answers:
        assert store.query("SELECT COUNT(*) AS n FROM events")[0]["n"] == 1
