"""Accounts end to end, as real processes of the installed script (issue 10, tests):
two accounts on one state dir, polled and listened to at once, each emitting its own
events exactly once; three concurrent runs on one key sharing one rate budget, with
no 429 from a throttled sandbox."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import requests

from connector.sandbox import Sandbox, SandboxOptions
from connector.state.store import StateStore
from tests.conftest import free_port, script, script_env, wait_for

pytestmark = pytest.mark.subprocess

KEY_A = "sk_sandbox_account_a_00000000000000"
KEY_B = "sk_sandbox_account_b_11111111111111"
NEW_RESPONSE_WF = """\
workflow: 1
name: on-response
trigger: {use: willo.new_response}
steps:
  - id: who
    use: willo.get_participant
    with: {participant: "{{ trigger.data.participant.key }}"}
"""


class Lines:
    """A process's output lines, read by a thread as they come."""

    def __init__(self, stream: IO[str]):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def join(self) -> None:
        self._thread.join(timeout=10)


class Proc:
    def __init__(self, args: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen(
            [*script(), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.out = Lines(self.proc.stdout)
        self.err = Lines(self.proc.stderr)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=20)
        self.out.join()
        self.err.join()
        return code


def post(box: Sandbox, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    r = requests.post(
        box.base_url + path, json=body or {}, headers={"Authorization": box.api_key}, timeout=10
    )
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


@pytest.fixture
def accounts(tmp_path: Path) -> Iterator[tuple[Sandbox, Sandbox, dict[str, str]]]:
    a = Sandbox(SandboxOptions(api_key=KEY_A, rate_limit=(0, 0), webhook_backoff=0.05)).start()
    b = Sandbox(SandboxOptions(api_key=KEY_B, rate_limit=(0, 0), webhook_backoff=0.05)).start()
    config = tmp_path / "connections.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            connections:
              a: {{base_url: "{a.base_url}", api_key_env: KEY_A, rate_limit: "0"}}
              b: {{base_url: "{b.base_url}", api_key_env: KEY_B, rate_limit: "0"}}
            """
        )
    )
    env = script_env(
        WILLO_CONFIG=str(config),
        WILLO_STATE_DIR=str(tmp_path / "state"),
        WILLO_LEASE_SECONDS="5",
        KEY_A=KEY_A,
        KEY_B=KEY_B,
    )
    try:
        yield a, b, env
    finally:
        a.stop()
        b.stop()


def test_two_accounts_on_one_state_dir_polled_and_listened_to_at_once(accounts, tmp_path: Path) -> None:
    a, b, env = accounts
    wf = tmp_path / "on_response.yaml"
    wf.write_text(NEW_RESPONSE_WF)
    procs = {
        "poll-a": Proc(["poll", "willo.participant_completed", "-c", "a", "--interval", "1", "--json"], env),
        "poll-b": Proc(["poll", "willo.participant_completed", "-c", "b", "--interval", "1", "--json"], env),
        "listen-a": Proc(["listen", "-c", "a", "--workflow", str(wf), "--port", str(free_port())], env),
        "listen-b": Proc(["listen", "-c", "b", "--workflow", str(wf), "--port", str(free_port())], env),
    }
    try:
        for name in ("listen-a", "listen-b"):
            p = procs[name]
            wait_for(
                lambda p=p: any(x.startswith("subscribed") for x in p.err.lines), what=f"{name} to subscribe"
            )
        db = tmp_path / "state" / "state.sqlite3"

        def initialized() -> int:
            with sqlite3.connect(db) as conn:
                return int(conn.execute("SELECT COUNT(*) FROM triggers WHERE initialized = 1").fetchone()[0])

        wait_for(lambda: initialized() == 2, what="both first polls")
        # the same interview key in both (seeded alike), new participants in each
        emails = {"a": [f"a{i}@example.com" for i in range(3)], "b": [f"b{i}@example.com" for i in range(2)]}
        interview = next(iter(a.store.table("interviews")))
        for name, box in (("a", a), ("b", b)):
            for email in emails[name]:
                key = post(box, "/participants/", {"interview": interview, "email": email})["key"]
                post(box, f"/_sandbox/participants/{key}/respond")
        store = StateStore(tmp_path / "state")

        def succeeded() -> list[Any]:
            return store.query("SELECT * FROM runs WHERE status = 'succeeded'")

        wait_for(lambda: len(succeeded()) == 5, what="five runs")
        wait_for(
            lambda: len(procs["poll-a"].out.lines) >= 3 and len(procs["poll-b"].out.lines) >= 2,
            what="both polls to emit",
        )
        time.sleep(2.5)  # two more polls and dispatches: nothing more may come
    finally:
        codes = {name: p.stop() for name, p in procs.items()}
    for name, p in procs.items():
        assert not any("Traceback" in x for x in p.err.lines), (name, p.err.lines)
    assert codes == dict.fromkeys(procs, 0), {n: p.err.lines for n, p in procs.items()}
    polled = {n: sorted(json.loads(x)["email"] for x in procs[f"poll-{n}"].out.lines) for n in ("a", "b")}
    assert polled == {"a": emails["a"], "b": emails["b"]}  # each its own, exactly once
    runs = store.query("SELECT * FROM runs")
    assert len(runs) == 5 and all(r["status"] == "succeeded" for r in runs)
    by_account: dict[str, int] = {}
    for r in runs:
        by_account[r["account"].split("/")[0]] = by_account.get(r["account"].split("/")[0], 0) + 1
    assert by_account == {"a": 3, "b": 2}
    hooks = store.query("SELECT account, COUNT(*) AS n FROM events WHERE source = 'webhook' GROUP BY account")
    assert {r["account"].split("/")[0]: r["n"] for r in hooks} == {"a": 3, "b": 2}
    assert not store.query("SELECT 1 FROM events WHERE status != 'dispatched'")
    for box in (a, b):  # both listeners removed their own subscription, and only theirs
        assert (
            requests.get(box.base_url + "/webhooks/", headers={"Authorization": box.api_key}).json()["count"]
            == 0
        )


FOREACH_WF = """\
workflow: 1
name: invite forty
inputs: {type: object, properties: {interview: {type: string}, tag: {type: string}}}
steps:
  - id: invite
    use: willo.invite_participant
    foreach: "{{ range(40) | list }}"
    concurrency: 4
    with: {interview: "{{ inputs.interview }}", email: "{{ inputs.tag }}{{ item }}@example.com"}
"""


def test_three_runs_on_one_key_share_one_budget_and_draw_no_429(tmp_path: Path) -> None:
    """A sandbox throttled as Willo is (10/s, 100/min per key), three runs of a
    40-item foreach at once: 120 invites need a minute and more, and without a shared
    budget the three processes (30/s together) draw 429s. All succeed, none is refused."""
    wf = tmp_path / "forty.yaml"
    wf.write_text(FOREACH_WF.replace("{{ range(40) | list }}", "{{ " + str(list(range(40))) + " }}"))
    with Sandbox(SandboxOptions(rate_limit=(10, 100))) as box:
        interview = next(iter(box.store.table("interviews")))
        env = script_env(
            WILLO_BASE_URL=box.base_url,
            WILLO_API_KEY=box.api_key,
            WILLO_RATE_LIMIT="10/100",
            WILLO_STATE_DIR=str(tmp_path / "state"),
        )
        runs = [
            subprocess.Popen(
                [*script(), "run", str(wf), "-i", f"interview={interview}", "-i", f"tag=run{n}-", "--json"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in range(3)
        ]
        results = [p.communicate(timeout=240) for p in runs]
        stats = box.app.stats()
    for (out, err), p in zip(results, runs, strict=True):
        assert p.returncode == 0, err
        assert json.loads(out)["status"] == "succeeded"
        assert "429" not in err
    assert stats["by_status"] == {"201": 120}, stats  # zero 429s
    used = StateStore(tmp_path / "state").query("SELECT day_used FROM budgets")
    assert [r["day_used"] for r in used] == [120]
