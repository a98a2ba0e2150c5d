"""The Temporal engine (issue 11): the optional extra, settings, `worker`, `run
--engine temporal`, `runs` on Temporal, deliveries deduplicated by the server, two
worker processes and a SIGKILL mid-foreach. Workflow behaviour itself is tested on
both engines in test_workflows.py and test_flows.py (the ``engine`` fixture)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from connector.cli import main
from connector.sandbox.seed import stable
from tests.conftest import (
    EXAMPLES,
    ON_SCORE_WF,
    ROOT,
    TemporalWorker,
    _die_with_parent,
    script,
    script_env,
    wait_for,
)
from tests.test_exactly_once import named

BACKEND = stable("interview:Backend Engineer")


def invoke(*args: str, **env: str):
    return CliRunner().invoke(main, list(args), env=env or None)


# --------------------------------------------------------------------------- 1. the extra


def test_help_listing_and_a_local_run_do_not_import_temporalio(tmp_path: Path) -> None:
    code = f"""
import sys
from click.testing import CliRunner
from connector.cli import main
r = CliRunner()
assert r.invoke(main, ["--help"]).exit_code == 0
assert "worker" in r.invoke(main, ["--help"]).output
assert r.invoke(main, ["run", "--help"]).exit_code == 0
res = r.invoke(main, ["run", {str(EXAMPLES / "screening.yaml")!r}, "--sandbox", "--json"])
assert res.exit_code == 0, res.output
assert r.invoke(main, ["runs"]).exit_code == 0
print(sorted(m for m in sys.modules if m.split(".")[0] == "temporalio"))
"""
    env = script_env(WILLO_STATE_DIR=str(tmp_path / "state"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    "args", [["worker"], ["run", str(EXAMPLES / "screening.yaml"), "--engine", "temporal"]]
)
def test_a_missing_extra_is_one_line_naming_it(monkeypatch, args) -> None:
    monkeypatch.setitem(sys.modules, "temporalio", None)  # import temporalio -> ImportError
    monkeypatch.setenv("WILLO_TEMPORAL_ADDRESS", "127.0.0.1:7233")
    r = invoke(*args)
    assert r.exit_code == 1
    assert r.stderr == (
        "error: the Temporal engine needs the optional extra 'temporal': "
        "pip install 'willo-connector[temporal]'\n"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "the Temporal engine needs WILLO_TEMPORAL_ADDRESS"),
        ({"WILLO_TEMPORAL_ADDRESS": "http://x:7233"}, "expected host:port"),
        ({"WILLO_TEMPORAL_ADDRESS": "x:1", "WILLO_TEMPORAL_TLS_CERT": "/nonexistent"}, "go together (mTLS)"),
        ({"WILLO_TEMPORAL_ADDRESS": "x:1", "WILLO_TEMPORAL_TASK_QUEUE": "a b"}, "WILLO_TEMPORAL_TASK_QUEUE"),
        ({"WILLO_TEMPORAL_ADDRESS": "x:1", "WILLO_TEMPORAL_HEARTBEAT": "0"}, "WILLO_TEMPORAL_HEARTBEAT"),
    ],
)
def test_bad_settings_are_one_line(monkeypatch, env, message) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    r = invoke("worker")
    assert r.exit_code == 1 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_an_unreachable_cluster_is_one_line_and_the_api_key_never_shows(monkeypatch) -> None:
    from tests.conftest import free_port

    key = "tmprl-api-key-0123456789abcdef"
    monkeypatch.setenv("WILLO_TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("WILLO_TEMPORAL_API_KEY", key)
    r = invoke("run", str(EXAMPLES / "screening.yaml"), "--engine", "temporal")
    assert r.exit_code == 1 and r.stderr.startswith("error: cannot reach Temporal at 127.0.0.1:")
    assert key not in r.stderr + r.stdout and "Traceback" not in r.stderr


def test_hosted_cluster_settings_build_tls(monkeypatch, tmp_path: Path) -> None:
    from connector.engines.temporal import TemporalSettings
    from connector.engines.temporal.client import tls_config

    cert, key, ca = (tmp_path / n for n in ("c.pem", "k.pem", "ca.pem"))
    for p in (cert, key, ca):
        p.write_bytes(b"pem")
    s = TemporalSettings.from_env(
        {
            "WILLO_TEMPORAL_ADDRESS": "ns.acct.tmprl.cloud:7233",
            "WILLO_TEMPORAL_NAMESPACE": "ns.acct",
            "WILLO_TEMPORAL_TLS_CERT": str(cert),
            "WILLO_TEMPORAL_TLS_KEY": str(key),
            "WILLO_TEMPORAL_TLS_CA": str(ca),
        }
    )
    tls = tls_config(s)
    assert s.tls and s.namespace == "ns.acct" and not isinstance(tls, bool)
    assert tls.client_cert == b"pem" and tls.server_root_ca_cert == b"pem"
    cloud = TemporalSettings.from_env(
        {"WILLO_TEMPORAL_ADDRESS": "x:7233", "WILLO_TEMPORAL_API_KEY": "k" * 20}
    )
    assert cloud.tls and tls_config(cloud) is True and cloud.api_key == "k" * 20
    assert TemporalSettings.from_env({"WILLO_TEMPORAL_ADDRESS": "x:7233"}).tls is False


# --------------------------------------------------------------------------- 3. run, detach, runs


def test_static_checks_run_locally_with_the_local_errors(sandbox, temporal_env, tmp_path: Path) -> None:
    """Nothing reaches Temporal (there is no worker): the errors are the local run's."""
    for args in (
        ["-i", "shortlist=nobody"],
        ["-i", f"candidates=@{tmp_path / 'missing.csv'}"],
    ):
        local = invoke("run", str(EXAMPLES / "screening.yaml"), *args)
        on_temporal = invoke("run", str(EXAMPLES / "screening.yaml"), "--engine", "temporal", *args)
        assert local.exit_code == on_temporal.exit_code != 0
        assert local.stderr == on_temporal.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("workflow: 1\nname: x\nsteps:\n  - id: a\n    use: willo.nope\n")
    local = invoke("run", str(bad))
    assert (
        local.stderr == invoke("run", str(bad), "--engine", "temporal").stderr
        and "willo.nope" in local.stderr
    )
    r = invoke("run", str(EXAMPLES / "screening.yaml"), "--engine", "temporal", "--sandbox")
    assert r.exit_code == 1 and "--sandbox answers requests in this process" in r.stderr
    assert "--detach goes with --engine temporal" in invoke("run", str(bad), "--detach").stderr


def test_detach_prints_the_workflow_id_and_runs_show_reads_it_from_temporal(
    sandbox, temporal_worker: TemporalWorker, temporal_env: str
) -> None:
    r = invoke(
        "run",
        str(EXAMPLES / "screening.yaml"),
        "--engine",
        "temporal",
        "--detach",
        "-i",
        f"candidates=@{EXAMPLES / 'candidates.csv'}",
    )
    assert r.exit_code == 0, r.stderr
    run_id = r.stdout.strip()
    assert run_id.startswith(f"{temporal_env}-run-")

    def shown():
        out = invoke("runs", "show", run_id, "--json")
        return json.loads(out.stdout) if out.exit_code == 0 else {}

    wait_for(lambda: shown().get("status") == "succeeded", what="the detached run")
    info = shown()
    steps = {s["id"]: s for s in info["steps"]}
    assert info["engine"] == "temporal" and info["workflow"] == "screening"
    assert [i["status"] for i in steps["invite"]["items"]] == ["succeeded"] * 3
    assert steps["invite"]["items"][0]["source"].endswith("candidates.csv:2")
    assert steps["shortlist"]["output"]["stage"] == "Shortlisted"
    assert info["inputs"]["candidates"][0]["email"] == "ada@example.com"
    listed = json.loads(invoke("runs", "--engine", "temporal", "--json").stdout)
    assert listed[0]["id"] == run_id and listed[0]["status"] == "succeeded"
    assert listed[0]["units_succeeded"] == listed[0]["units"] == 5
    human = invoke("runs", "show", "--engine", "temporal", run_id)
    assert human.exit_code == 0 and "succeeded" in human.stdout and "invite" in human.stdout
    missing = invoke("runs", "show", "--engine", "temporal", f"{temporal_env}-run-nope")
    assert missing.exit_code == 1 and "no Temporal run" in missing.stderr


# --------------------------------------------------------------------------- 4. units and retries


def test_a_try_that_surely_did_not_land_is_resent_even_without_a_lookup(
    sandbox, temporal_worker: TemporalWorker, tmp_path: Path, monkeypatch
) -> None:
    """create_interview has no reconcile lookup: after a 503 (not taken) the next
    Temporal attempt sends it again, because the failed try said so in its heartbeat."""
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "workflow: 1\nname: create\nsteps:\n  - id: make\n    use: willo.create_interview\n"
        "    retry: {attempts: 3, backoff: 0.05}\n    with: {title: Temporal Engineer}\n"
    )
    plan = {1: "error_before"}  # a 503: Willo did not take it
    seen = [0]

    def next_fault() -> str | None:
        seen[0] += 1
        return plan.get(seen[0])

    monkeypatch.setattr(sandbox.app.faults, "next", next_fault)
    r = invoke("run", str(wf), "--engine", "temporal", "--json")
    assert r.exit_code == 0, r.stderr
    titles = [i["title"] for i in sandbox.store.table("interviews").values()]
    assert titles.count("Temporal Engineer") == 1
    assert json.loads(r.stdout)["steps"][0]["retries"] == 1


WF_AMBIGUOUS = """\
workflow: 1
name: ambiguous
steps:
  - id: make
    use: willo.create_interview
    retry: {attempts: 3, backoff: 0.05}
    with: {title: "{{ inputs.title }}"}
  - id: check
    use: willo.get_interview
    with: {interview: "{{ steps.make.output.key }}"}
inputs:
  type: object
  properties: {title: {type: string}}
"""


def _drop_next(sandbox) -> None:
    """The next request Willo takes, its answer lost (the sandbox's fault plan)."""
    r = requests.post(
        f"{sandbox.base_url}/_sandbox/faults",
        json={"next": ["drop_after"]},
        headers={"Authorization": sandbox.api_key},
    )
    assert r.status_code == 200, r.text


def _blocked_run(sandbox, wf: Path, title: str, detach: bool = True) -> tuple[str, dict]:
    """Start ``wf`` with its create's answer lost (detached, or waiting as a local run
    does: it returns blocked, exit 1); wait until it waits."""
    _drop_next(sandbox)
    if detach:
        r = invoke("run", str(wf), "--engine", "temporal", "--detach", "-i", f"title={title}")
        assert r.exit_code == 0, r.stderr
        run_id = r.stdout.strip()
    else:
        r = invoke("run", str(wf), "--engine", "temporal", "--json", "-i", f"title={title}")
        assert r.exit_code == 1, r.output
        result = json.loads(r.stdout)
        assert result["status"] == "blocked" and result["steps"][0]["status"] == "blocked", result
        assert "runs resolve" in result["error"], result
        run_id = result["run_id"]

    def shown() -> dict:
        out = invoke("runs", "show", run_id, "--json")
        return json.loads(out.stdout) if out.exit_code == 0 else {}

    wait_for(lambda: shown().get("status") == "blocked", what="the run to wait for an operator")
    return run_id, shown()


def _result_of(run_id: str) -> dict:
    """``runs show --json`` of ``run_id`` once it has finished."""
    shown: list[dict] = [{}]

    def over() -> bool:
        out = invoke("runs", "show", run_id, "--json")
        shown[0] = json.loads(out.stdout) if out.exit_code == 0 else {}
        return shown[0].get("status") in ("succeeded", "failed")

    wait_for(over, what=f"run {run_id} to finish")
    return shown[0]


def test_an_ambiguous_unit_waits_blocked_until_runs_resolve_settles_it(
    sandbox, temporal_worker: TemporalWorker, tmp_path: Path
) -> None:
    """As a local run: a create whose answer was lost, with no lookup, is never resent
    blindly. On Temporal the run waits (not fails) with the unit blocked; `runs show`
    says so and how to settle it; `runs resolve --sent --output-json` settles it with
    what Willo shows and the run goes on to use that output."""
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF_AMBIGUOUS)
    run_id, info = _blocked_run(sandbox, wf, "Blocked Role")
    made = named(sandbox, "interviews", "title", "Blocked Role")
    assert len(made) == 1  # it landed; its answer was lost
    (waiting,) = info["waiting"]
    assert (waiting["step"], waiting["item"], waiting["account"]) == ("make", -1, "default")
    assert waiting["not_sent"] == f"willo-connector runs resolve {run_id} --step make --not-sent"
    make = next(s for s in info["steps"] if s["id"] == "make")
    assert make["status"] == "blocked" and "no reconcile lookup" in make["error"]
    human = invoke("runs", "show", run_id)
    assert "waiting for an operator: step make" in human.stdout and "--sent" in human.stdout
    time.sleep(1.0)  # it waits, and sends nothing meanwhile
    assert len(named(sandbox, "interviews", "title", "Blocked Role")) == 1
    # refusals: one line each, the run unchanged
    early = invoke("resume", run_id)
    assert early.exit_code == 1 and "waits for an operator" in early.stderr and "runs resolve" in early.stderr
    unknown = invoke("runs", "resolve", run_id, "--step", "nope", "--sent")
    assert unknown.exit_code == 1 and "nope" in unknown.stderr and "Traceback" not in unknown.output
    item = invoke("runs", "resolve", run_id, "--step", "make", "--item", "2", "--not-sent")
    assert item.exit_code == 1 and "not a foreach" in item.stderr
    bare = invoke("runs", "resolve", run_id, "--step", "make", "--sent")
    assert bare.exit_code == 1 and "--output-json" in bare.stderr
    wrong = invoke("runs", "resolve", run_id, "--step", "make", "--sent", "--output-json", '{"key": 5}')
    assert wrong.exit_code == 1 and "/key" in wrong.stderr
    real = sandbox.app.interview_out(made[0])
    settled = invoke("runs", "resolve", run_id, "--step", "make", "--sent", "--output-json", json.dumps(real))
    assert settled.exit_code == 0, settled.output
    assert "settled as sent" in settled.stdout
    result = _result_of(run_id)
    assert result["status"] == "succeeded", result
    assert result["steps"][1]["output"]["key"] == made[0]["key"]
    assert len(named(sandbox, "interviews", "title", "Blocked Role")) == 1  # never resent
    again = invoke("runs", "resolve", run_id, "--step", "make", "--not-sent")
    assert again.exit_code == 1 and "is over" in again.stderr
    shown = json.loads(invoke("runs", "show", run_id, "--json").stdout)
    assert shown["status"] == "succeeded" and shown["waiting"] == []


def test_not_sent_sends_the_waiting_unit_again_and_the_run_goes_on(
    sandbox, temporal_worker: TemporalWorker, tmp_path: Path
) -> None:
    """The operator checked Willo and the create is not there: `--not-sent` (as
    JSON, through the installed script too) sends it again, once."""
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF_AMBIGUOUS)
    run_id, _info = _blocked_run(sandbox, wf, "Lost Role", detach=False)
    for row in named(sandbox, "interviews", "title", "Lost Role"):
        del sandbox.store.table("interviews")[row["key"]]  # it is not in Willo
    proc = subprocess.run(
        [*script(), "runs", "resolve", run_id, "--step", "make", "--not-sent", "--json"],
        env=script_env(**{k: v for k, v in os.environ.items() if k.startswith("WILLO_")}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    done = json.loads(proc.stdout)
    assert done["status"] == "not sent" and done["engine"] == "temporal"
    result = _result_of(run_id)
    assert result["status"] == "succeeded", result
    made = named(sandbox, "interviews", "title", "Lost Role")
    assert len(made) == 1 and result["steps"][1]["output"]["key"] == made[0]["key"]
    twice = invoke("runs", "resolve", run_id, "--step", "make", "--not-sent")
    assert twice.exit_code == 1


# --------------------------------------------------------------------------- 5. deliveries


def test_a_delivery_sent_three_times_starts_one_workflow(
    sandbox, temporal_worker: TemporalWorker, temporal_env: str, tmp_path: Path
) -> None:
    """Two listeners (two machines: two state stores) both subscribed, so Willo delivers
    the event to each; a third delivery of the same event reaches a third dispatcher.
    One workflow runs; the other starts are refused by the server and count as done."""
    from connector.engines.temporal import TemporalSettings
    from connector.engines.temporal.events import Starter, event_handler
    from connector.workflows.model import load
    from tests.test_triggers import ListenProcess, free_port

    wf = tmp_path / "score.yaml"
    wf.write_text(ON_SCORE_WF)
    env = {k: os.environ[k] for k in ("WILLO_TEMPORAL_ADDRESS", "WILLO_TEMPORAL_TASK_QUEUE")}
    listeners = []
    try:
        for n in (1, 2):
            home = tmp_path / f"machine{n}"
            home.mkdir()
            listeners.append(ListenProcess(sandbox, home, [wf], free_port(), WILLO_ENGINE="temporal", **env))
        ada = stable("participant:ada@example.com")
        requests.post(
            f"{sandbox.base_url}/_sandbox/participants/{ada}/score",
            json={"score": 4},
            headers={"Authorization": sandbox.api_key},
        )
        settings = TemporalSettings.from_env()
        deliveries = requests.get(
            sandbox.base_url + "/_sandbox/deliveries", headers={"Authorization": sandbox.api_key}
        ).json()["results"]
        assert len(deliveries) == 2 and deliveries[0]["id"] == deliveries[1]["id"]  # one event, two listeners
        event_id = deliveries[0]["id"]
        wait_for(lambda: _done_events(tmp_path / "machine1") + _done_events(tmp_path / "machine2") == 2)
        # the third delivery, to a dispatcher of its own
        from connector.catalog.index import get_catalog

        starter = Starter(settings)
        try:
            payload = _payload_of(tmp_path / "machine1")
            handler = event_handler(starter, [load(wf, get_catalog())])
            third = handler("willo.new_score", payload, {"dedupe": payload["id"], "id": 1})
        finally:
            starter.close()
    finally:
        errs = [lp.stop() for lp in listeners]
    assert all("Traceback" not in e for e in errs), errs
    runs = asyncio.run(_runs_with_prefix(settings, f"{temporal_env}-event-"))
    assert len(runs) == 1, runs
    assert runs[0][0] == third and event_id in third and "-default-" in third  # the account, the event
    wait_for(lambda: asyncio.run(_runs_with_prefix(settings, f"{temporal_env}-event-"))[0][1] == "COMPLETED")


async def busy(handle, pid: int) -> bool:
    """Is a unit of the run in flight on the worker process ``pid`` (Temporal's default
    worker identity is ``PID@HOST``)?"""
    desc = await handle.describe()
    return any(
        a.last_worker_identity.startswith(f"{pid}@") and a.state == 2  # PENDING_ACTIVITY_STATE_STARTED
        for a in desc.raw_description.pending_activities
    )


def _done_events(home: Path) -> int:
    from connector.state.store import StateStore

    store = StateStore(home / "state")
    return int(store.query("SELECT COUNT(*) AS n FROM events WHERE status = 'dispatched'")[0]["n"])


def _payload_of(home: Path) -> dict:
    from connector.state.store import StateStore

    row = StateStore(home / "state").query("SELECT payload FROM events")[0]
    return json.loads(row["payload"])


async def _runs_with_prefix(settings, prefix: str) -> list[tuple[str, str]]:
    from connector.engines.temporal.client import connect

    client = await connect(settings)
    found = []
    async for ex in client.list_workflows(f"WorkflowId STARTS_WITH '{prefix}'"):
        found.append((ex.id, ex.status.name if ex.status else ""))
    return found


# --------------------------------------------------------------------------- 2. worker processes


class WorkerProcess:
    """``willo-connector worker`` as the installed script."""

    def __init__(self, sandbox, tmp_path: Path, name: str, *args: str):
        self.log = (tmp_path / f"{name}.log").open("w+")
        env = script_env(
            WILLO_BASE_URL=sandbox.base_url,
            WILLO_API_KEY=sandbox.api_key,
            WILLO_RATE_LIMIT="0",
            WILLO_STATE_DIR=str(tmp_path / name),
            XDG_CACHE_HOME=str(tmp_path / "cache"),
            **{k: v for k, v in os.environ.items() if k.startswith("WILLO_TEMPORAL_")},
        )
        self.proc = subprocess.Popen(
            [*script(), "worker", *args],
            env=env,
            stdout=self.log,
            stderr=self.log,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        wait_for(lambda: "task queues" in Path(self.log.name).read_text() or self.proc.poll() is not None, 60)
        assert self.proc.poll() is None, Path(self.log.name).read_text()

    def stop(self, sig: int = signal.SIGTERM) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        return Path(self.log.name).read_text()


BULK = """\
workflow: 1
name: bulk
inputs: {type: object, properties: {people: {type: array}}}
steps:
  - id: invite
    use: willo.find_or_invite_participant
    foreach: "{{ inputs.people }}"
    concurrency: 6
    retry: {attempts: 10, backoff: 0.2, max_backoff: 2}
    with: {interview: INTERVIEW, email: "{{ item }}"}
""".replace("INTERVIEW", BACKEND)


@pytest.mark.subprocess
def test_two_worker_processes_one_killed_mid_foreach_invite_each_candidate_once(
    sandbox, temporal_env: str, tmp_path: Path
) -> None:
    """60 invites at a 20% fault rate on two `willo-connector worker` processes; one is
    SIGKILLed mid-foreach: its units go to the other, which settles (looks up) what
    they may have sent; the run succeeds and every candidate is invited exactly once.
    Then the screening example on the survivor; then SIGTERM drains it."""
    from connector.engines.temporal import TemporalSettings
    from connector.engines.temporal import client as tc
    from connector.workflows.model import load
    from connector.workflows.runner import prepare_inputs

    faults = sandbox.app.faults
    first = WorkerProcess(sandbox, tmp_path, "w1", "--concurrency", "3")
    second = WorkerProcess(sandbox, tmp_path, "w2", "--concurrency", "3")
    try:
        wf_path = tmp_path / "bulk.yaml"
        wf_path.write_text(BULK)
        from connector.catalog.index import get_catalog

        wf = load(wf_path, get_catalog())
        people = [f"temporal-{i}@example.com" for i in range(60)]
        settings = TemporalSettings.from_env()
        req = tc.run_request(settings, wf, prepare_inputs(wf, {"people": people}))

        def invited() -> list[str]:
            return [
                p["email"]
                for p in sandbox.store.table("participants").values()
                if p["email"].startswith("temporal-")
            ]

        async def go():
            client = await tc.connect(settings)
            handle = await tc.start_run(client, settings, req)
            deadline = time.monotonic() + 120
            while len(invited()) < 15 or not await busy(handle, first.proc.pid):
                assert time.monotonic() < deadline, "the first worker never had a unit in flight"
                await asyncio.sleep(0.02)
            first.proc.send_signal(signal.SIGKILL)  # mid-foreach, with units in flight on it
            return await asyncio.wait_for(tc.wait(handle), 240)

        faults.rate, faults._rng = 0.2, random.Random(11)
        try:
            result = asyncio.run(go())
        finally:
            faults.rate = 0.0
        assert result.status == "succeeded", result.error
        assert sum(faults.injected.values()) > 10
        assert sorted(invited()) == sorted(people)  # each exactly once
        assert len(result.steps[0].output) == 60
        # the screening example, on the surviving worker
        r = invoke(
            "run", str(EXAMPLES / "screening.yaml"), "--engine", "temporal", "--json",
            "-i", f"candidates=@{EXAMPLES / 'candidates.csv'}",
        )  # fmt: skip
        assert r.exit_code == 0, r.stderr
        assert json.loads(r.stdout)["status"] == "succeeded"
    finally:
        first.stop(signal.SIGKILL)
        log = second.stop(signal.SIGTERM)
    assert second.proc.returncode == 0, log
    assert "stopping: no new work" in log and "worker stopped" in log and "Traceback" not in log


# --------------------------------------------------------------------------- 6. the account's budget

LANGS = """\
workflow: 1
name: langs
inputs: {type: object, properties: {pages: {type: array}}}
steps:
  - id: get
    use: willo.list_languages
    foreach: "{{ inputs.pages }}"
    concurrency: 8
    with: {page: 1, page_size: "{{ item }}"}
"""


def test_every_request_reserves_its_slot_in_the_accounts_shared_budget(
    sandbox, temporal_env: str, tmp_path: Path, monkeypatch
) -> None:
    """A worker's requests pace through the account's budget workflow: with Willo
    throttling at 4/s and the account's limit at 4/s, 16 requests at concurrency 8
    get no 429; the budget workflow counted every one."""
    from connector.engines.temporal import TemporalSettings
    from connector.sandbox.framework import Throttle

    monkeypatch.setenv("WILLO_RATE_LIMIT", "4/0")
    throttle = Throttle(4, 0)
    throttled = []

    def check(key):
        wait = Throttle.check(throttle, key)
        if wait > 0:
            throttled.append(wait)
        return wait

    monkeypatch.setattr(throttle, "check", check)
    monkeypatch.setattr(sandbox.app, "throttle", throttle)
    worker = TemporalWorker()
    try:
        wf = tmp_path / "langs.yaml"
        wf.write_text(LANGS)
        r = invoke(
            "run", str(wf), "--engine", "temporal", "--json", "-i", f"pages={json.dumps(list(range(1, 17)))}"
        )
        assert r.exit_code == 0, r.stderr
        assert json.loads(r.stdout)["status"] == "succeeded"
        settings = TemporalSettings.from_env()
        usage = asyncio.run(_query(settings, settings.budget_id("default"), "usage"))
        assert (usage["used"], throttled) == (16, []) and usage["limits"] == [4, 0, 0]
    finally:
        worker.stop()
    assert throttled == []


def test_a_spent_daily_quota_holds_the_unit_until_it_renews(
    sandbox, temporal_env: str, tmp_path: Path, monkeypatch
) -> None:
    from connector.engines.temporal import TemporalSettings
    from connector.engines.temporal import client as tc

    monkeypatch.setenv("WILLO_RATE_LIMIT", "50/0")
    monkeypatch.setenv("WILLO_DAILY_QUOTA", "3")
    worker = TemporalWorker()
    before = sandbox.app.requests_served
    try:
        wf = tmp_path / "langs.yaml"
        wf.write_text(LANGS.replace("concurrency: 8", "concurrency: 1"))
        r = invoke("run", str(wf), "--engine", "temporal", "--detach", "-i", "pages=[1, 2, 3, 4, 5]")
        assert r.exit_code == 0, r.stderr
        run_id = r.stdout.strip()
        settings = TemporalSettings.from_env()

        async def pending() -> str:
            client = await tc.connect(settings)
            desc = await client.get_workflow_handle(run_id).describe()
            return " ".join(a.last_failure.message for a in desc.raw_description.pending_activities)

        wait_for(lambda: "daily quota" in asyncio.run(pending()), what="the quota to be spent")
        message = asyncio.run(pending())
        assert "account default: its daily quota (3 requests a UTC day) is spent; it renews at " in message
        assert sandbox.app.requests_served - before == 3  # and nothing more was sent
        assert asyncio.run(_status(settings, run_id)) == "RUNNING"  # waiting, durably, for tomorrow
    finally:
        asyncio.run(_terminate(settings, run_id))
        worker.stop()


async def _query(settings, workflow_id: str, name: str):
    from connector.engines.temporal.client import connect

    client = await connect(settings)
    return await client.get_workflow_handle(workflow_id).query(name)


async def _status(settings, workflow_id: str) -> str:
    from connector.engines.temporal.client import connect

    client = await connect(settings)
    desc = await client.get_workflow_handle(workflow_id).describe()
    return desc.status.name if desc.status else ""


async def _terminate(settings, workflow_id: str) -> None:
    from connector.engines.temporal.client import connect

    client = await connect(settings)
    await client.get_workflow_handle(workflow_id).terminate("test over")


# --------------------------------------------------------------------------- 5. polling triggers

WF_NEW = """\
workflow: 1
name: on-new
trigger: {use: willo.new_participant}
steps:
  - id: who
    use: willo.get_participant
    with: {participant: "{{ trigger.key }}"}
"""


def test_a_poller_on_temporal_is_one_workflow_with_a_durable_cursor(
    sandbox, temporal_worker: TemporalWorker, temporal_env: str, tmp_path: Path
) -> None:
    """Two `poll --engine temporal` of one trigger: one poller (the second finds it
    running). Each new participant starts one run, however many polls see it; a
    `--once` poller hands its cursor on to the next."""
    from connector.engines.temporal import TemporalSettings
    from tests.test_triggers import invite

    wf = tmp_path / "new.yaml"
    wf.write_text(WF_NEW)
    settings = TemporalSettings.from_env()
    once = invoke(
        "poll", "willo.new_participant", "--engine", "temporal", "--run", str(wf), "--once", "--json"
    )
    assert once.exit_code == 0, once.stderr
    assert json.loads(once.stdout)["runs_started"] == 0  # the first poll records what exists
    invite(sandbox, "first-new@example.com")
    again = invoke(
        "poll", "willo.new_participant", "--engine", "temporal", "--run", str(wf), "--once", "--json"
    )
    assert json.loads(again.stdout)["runs_started"] == 1  # the cursor was handed on
    args = ("poll", "willo.new_participant", "--engine", "temporal", "--run", str(wf), "--interval", "1")
    first = invoke(*args)
    second = invoke(*args)
    assert first.exit_code == second.exit_code == 0, first.stderr + second.stderr
    assert "polling on Temporal every 1s" in first.stderr
    assert "already polling on Temporal" in second.stderr and "not started twice" in second.stderr
    poller = first.stderr.split("(")[-1].split(")")[0]
    try:
        for e in ("p1@example.com", "p2@example.com", "p3@example.com"):
            invite(sandbox, e)

        def done() -> list[tuple[str, str]]:
            return [
                r
                for r in asyncio.run(_runs_with_prefix(settings, f"{temporal_env}-event-"))
                if r[1] == "COMPLETED"
            ]

        wait_for(lambda: len(done()) == 4, what="a run per new participant")
        time.sleep(2.5)  # two more polls see the same participants
        runs = asyncio.run(_runs_with_prefix(settings, f"{temporal_env}-event-"))
        assert len(runs) == 4, runs
    finally:
        asyncio.run(_terminate(settings, poller))


def test_a_stopped_poller_hands_its_cursor_to_the_next(
    sandbox, temporal_worker: TemporalWorker, temporal_env: str, tmp_path: Path
) -> None:
    """The poller's `stop` signal ends it after the poll in hand with its ledger; the
    next `poll` starts from that ledger: what came meanwhile runs once, what it had
    seen does not run again."""
    from connector.engines.temporal import TemporalSettings
    from connector.engines.temporal import client as tc
    from tests.test_triggers import invite

    wf = tmp_path / "new.yaml"
    wf.write_text(WF_NEW)
    settings = TemporalSettings.from_env()
    args = ("poll", "willo.new_participant", "--engine", "temporal", "--run", str(wf), "--interval", "1")
    first = invoke(*args, "--json")
    assert first.exit_code == 0, first.stderr
    poller = json.loads(first.stdout)["poller"]
    wait_for(lambda: asyncio.run(_polls(settings, poller)) >= 1, what="the first poll")
    invite(sandbox, "before-stop@example.com")
    wait_for(lambda: len(asyncio.run(_runs_with_prefix(settings, f"{temporal_env}-event-"))) == 1)

    async def stop() -> dict:
        client = await tc.connect(settings)
        handle = client.get_workflow_handle(poller)
        await handle.signal("stop")
        return await handle.result()

    ended = asyncio.run(stop())
    assert ended["stopped"] is True and ended["ledger"]
    invite(sandbox, "while-stopped@example.com")
    again = invoke(*args, "--once", "--json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["runs_started"] == 1  # only the one that came meanwhile
    assert len(asyncio.run(_runs_with_prefix(settings, f"{temporal_env}-event-"))) == 2


def test_inputs_over_the_payload_limit_are_one_line(sandbox, temporal_env: str, tmp_path: Path) -> None:
    wf = tmp_path / "w.yaml"
    wf.write_text(
        "workflow: 1\nname: big\ninputs: {type: object, properties: {people: {type: array}}}\nsteps:\n"
        "  - id: a\n    use: willo.list_languages\n    foreach: '{{ inputs.people }}'\n    with: {page_size: 1}\n"
    )
    big = tmp_path / "in.json"
    big.write_text(json.dumps({"people": ["x" * 1000] * 2200}))
    r = invoke("run", str(wf), "--engine", "temporal", "--input-file", str(big), "--detach")
    assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("error: Temporal did not start the run: ")
    assert "over the cluster's payload limit" in r.stderr and "split the inputs" in r.stderr


def test_two_operators_settling_one_unit_at_once_one_wins(
    sandbox, temporal_worker: TemporalWorker, tmp_path: Path
) -> None:
    """Two `runs resolve --sent` of one waiting unit at once (two processes): one
    settles it, the other is refused in one line; the run goes on once."""
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF_AMBIGUOUS)
    run_id, _info = _blocked_run(sandbox, wf, "Raced Role")
    (made,) = named(sandbox, "interviews", "title", "Raced Role")
    real = json.dumps(sandbox.app.interview_out(made))
    env = script_env(**{k: v for k, v in os.environ.items() if k.startswith("WILLO_")})
    args = [*script(), "runs", "resolve", run_id, "--step", "make", "--sent", "--output-json", real]
    procs = [
        subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    codes = sorted(code for code, _out, _err in outs)
    assert codes == [0, 1], outs
    (refused,) = [err for code, _out, err in outs if code == 1]
    assert "Traceback" not in refused and len(refused.strip().splitlines()) == 1, refused
    result = _result_of(run_id)
    assert result["status"] == "succeeded" and len(named(sandbox, "interviews", "title", "Raced Role")) == 1


def test_a_local_run_is_settled_locally_whatever_the_default_engine(sandbox, tmp_path: Path) -> None:
    """WILLO_ENGINE=temporal is only the default: a run the local store has is settled
    in the local store (no Temporal cluster is asked)."""
    from connector.state.store import StateStore
    from connector.workflows.model import load
    from connector.workflows.runtime import Connector
    from tests.test_exactly_once import ONE_DEPT, write

    wf_path = write(tmp_path, ONE_DEPT)
    store = StateStore()
    conn = Connector()
    wf = load(wf_path, conn.catalog)
    run_id = store.new_run(wf.path, wf.name, wf.text, {}, None, {})
    store.mark_unit(run_id, "dept", -1, "willo.create_department", "sending", inputs={"name": "Ops"})
    conn.call("willo.create_department", {"name": "Ops"})
    settled = invoke("runs", "resolve", run_id, "--step", "dept", "--sent", WILLO_ENGINE="temporal")
    assert settled.exit_code == 0, settled.output
    assert store.units(run_id)[("dept", -1)]["status"] == "succeeded"


WF_FOREACH_AMBIGUOUS = """\
workflow: 1
name: roles
steps:
  - id: make
    use: willo.create_interview
    foreach: "{{ ['Role A', 'Role B', 'Role C'] }}"
    concurrency: 1
    with: {title: "{{ item }}"}
"""


def test_a_waiting_foreach_item_holds_the_next_under_on_error_stop_and_survives_its_workers(
    sandbox, temporal_env: str, tmp_path: Path, monkeypatch
) -> None:
    """Item 1's answer is lost: it waits, item 2 does not start (on_error: stop), and
    the wait outlives every worker (stopped, a new one started). `--item` is required
    and checked; `--item 1 --not-sent` sends it again and the run finishes the rest."""
    seen = [0]

    def next_fault() -> str | None:
        seen[0] += 1
        return "drop_after" if seen[0] == 2 else None

    monkeypatch.setattr(sandbox.app.faults, "next", next_fault)
    wf = tmp_path / "roles.yaml"
    wf.write_text(WF_FOREACH_AMBIGUOUS)
    worker = TemporalWorker()
    try:
        r = invoke("run", str(wf), "--engine", "temporal", "--detach")
        assert r.exit_code == 0, r.stderr
        run_id = r.stdout.strip()

        def shown() -> dict:
            out = invoke("runs", "show", run_id, "--json")
            return json.loads(out.stdout) if out.exit_code == 0 else {}

        wait_for(lambda: shown().get("status") == "blocked", what="item 1 to wait")
        assert [w["item"] for w in shown()["waiting"]] == [1]
    finally:
        worker.stop()

    def titles() -> list[str]:
        interviews = sandbox.store.table("interviews").values()
        return sorted(i["title"] for i in interviews if i["title"].startswith("Role "))

    assert titles() == ["Role A", "Role B"]  # Role C never started
    worker = TemporalWorker()  # every worker was gone; the run still waits
    try:
        bare = invoke("runs", "resolve", run_id, "--step", "make", "--not-sent")
        assert bare.exit_code == 1 and "give --item N (items to settle: 1)" in bare.stderr
        done = invoke("runs", "resolve", run_id, "--step", "make", "--item", "0", "--not-sent")
        assert done.exit_code == 1 and "item 0 is succeeded; nothing to settle" in done.stderr
        for key, row in list(sandbox.store.table("interviews").items()):
            if row["title"] == "Role B":
                del sandbox.store.table("interviews")[key]  # the operator checked: not in Willo
        settled = invoke("runs", "resolve", run_id, "--step", "make", "--item", "1", "--not-sent")
        assert settled.exit_code == 0, settled.output
        result = _result_of(run_id)
        assert result["status"] == "succeeded", result
        assert titles() == ["Role A", "Role B", "Role C"]
    finally:
        worker.stop()


# --------------------------------------------------------------------------- two accounts

WF_TWO_ACCOUNTS = """\
workflow: 1
name: two-accounts
steps:
  - id: on_a
    use: willo.list_languages
    connection: a
    foreach: "{{ [1, 2, 3, 4, 5, 6, 7, 8] }}"
    concurrency: 8
    with: {page: 1, page_size: "{{ item }}"}
  - id: on_b
    use: willo.list_languages
    connection: b
    foreach: "{{ [1, 2, 3, 4, 5, 6, 7, 8] }}"
    concurrency: 8
    with: {page: 1, page_size: "{{ item }}"}
"""


def test_two_connections_on_temporal_each_on_its_own_queue_and_budget(
    temporal_env: str, tmp_path: Path, monkeypatch
) -> None:
    """A config file with two accounts (two sandboxes throttling at 4/s; each
    connection's limit 3/s, the slack a loaded machine's round trips need): a run
    whose steps name one each puts each account's units on that account's task queue,
    each request through that account's budget workflow with its connection's limits,
    and neither sandbox answers a 429 to 8 requests sent 8 at a time."""
    from connector import connections
    from connector.engines.temporal import TemporalSettings, accounts
    from connector.engines.temporal import client as tc
    from connector.sandbox import Sandbox, SandboxOptions
    from tests.test_accounts_e2e import KEY_A, KEY_B

    boxes = {
        "a": Sandbox(SandboxOptions(api_key=KEY_A, rate_limit=(4, 0))).start(),
        "b": Sandbox(SandboxOptions(api_key=KEY_B, rate_limit=(4, 0))).start(),
    }
    quota = {"a": 1000, "b": 2000}  # each connection's own daily quota reaches its budget
    config = tmp_path / "connections.yaml"
    config.write_text(
        "connections:\n"
        + "".join(
            f'  {n}: {{base_url: "{box.base_url}", api_key_env: KEY_{n.upper()}, rate_limit: "3/0", '
            f"daily_quota: {quota[n]}}}\n"
            for n, box in boxes.items()
        )
    )
    monkeypatch.setenv("WILLO_CONFIG", str(config))
    monkeypatch.setenv("KEY_A", KEY_A)
    monkeypatch.setenv("KEY_B", KEY_B)
    worker = None
    try:
        worker = TemporalWorker(accounts.fleet_of(connections.load(), ["a", "b"]), accounts=["a", "b"])
        wf = tmp_path / "two.yaml"
        wf.write_text(WF_TWO_ACCOUNTS)
        r = invoke("run", str(wf), "--engine", "temporal", "--json", "-c", "a")
        assert r.exit_code == 0, r.stderr
        result = json.loads(r.stdout)
        assert result["status"] == "succeeded"
        settings = TemporalSettings.from_env()

        async def queues() -> dict[str, set[str]]:
            client = await tc.connect(settings)
            found: dict[str, set[str]] = {}
            async for event in client.get_workflow_handle(result["run_id"]).fetch_history_events():
                attrs = event.activity_task_scheduled_event_attributes
                if event.HasField("activity_task_scheduled_event_attributes") and (
                    attrs.activity_type.name == "willo.unit"
                ):
                    step = json.loads(attrs.input.payloads[0].data)["unit"]["step"]
                    found.setdefault(step, set()).add(attrs.task_queue.name)
            return found

        assert asyncio.run(queues()) == {
            "on_a": {settings.unit_queue("a")},
            "on_b": {settings.unit_queue("b")},
        }
        for name, box in boxes.items():
            usage = asyncio.run(_query(settings, settings.budget_id(name), "usage"))
            assert usage["used"] == 8 and usage["limits"] == [3, 0, quota[name]], (name, usage)
            assert box.app.stats()["by_status"] == {"200": 8}, (name, box.app.stats())  # zero 429s
        # a poller of connection b polls b (its own workflow id, on b's queue), not a
        new = tmp_path / "new.yaml"
        new.write_text(WF_NEW)
        polled = invoke(
            "poll",
            "willo.new_participant",
            "--engine",
            "temporal",
            "--run",
            str(new),
            "-c",
            "b",
            "--once",
            "--json",
        )
        assert polled.exit_code == 0, polled.stderr
        assert json.loads(polled.stdout)["poller"] == settings.poller_id(
            "b", "willo.new_participant", {}, "on-new"
        )
        assert boxes["a"].app.stats()["requests"] == 8 and boxes["b"].app.stats()["requests"] > 8
        unknown = invoke(
            "poll", "willo.new_participant", "--engine", "temporal", "--run", str(new), "-c", "nope"
        )
        assert unknown.exit_code != 0 and "unknown connection 'nope'" in unknown.stderr
    finally:
        if worker is not None:
            worker.stop()
        for box in boxes.values():
            box.stop()


# --------------------------------------------------------------------------- rerun and resume

WF_RERUN = """\
workflow: 1
name: rerun-me
inputs:
  type: object
  properties: {who: {type: string}}
steps:
  - id: dept
    use: willo.create_department
    with: {name: Rerun Dept}
  - id: who
    use: willo.get_participant
    with: {participant: "{{ inputs.who }}"}
"""


def test_rerun_and_resume_of_a_failed_temporal_run(
    sandbox, temporal_worker: TemporalWorker, tmp_path: Path
) -> None:
    """A run fails on its second step (the participant is gone: a 404, not retried).
    `rerun --failed` and `resume` start a new Temporal run linked to it that reuses the
    department made (not created again) and runs the failed step; `rerun` runs it all
    again from the same file and inputs."""
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF_RERUN)
    ada = stable("participant:ada@example.com")
    table = sandbox.store.table("participants")

    def failed_run() -> str:
        saved = table.pop(ada)
        try:
            r = invoke("run", str(wf), "--engine", "temporal", "--json", "-i", f"who={ada}")
        finally:
            table[ada] = saved
        assert r.exit_code == 1, r.output
        result = json.loads(r.stdout)
        assert result["status"] == "failed" and result["run_id"].startswith(
            os.environ["WILLO_TEMPORAL_TASK_QUEUE"]
        )
        return result["run_id"]

    def depts() -> int:
        return len(named(sandbox, "departments", "name", "Rerun Dept"))

    first = failed_run()
    assert depts() == 1
    again = invoke("rerun", first, "--failed", "--json")
    assert again.exit_code == 0, again.output
    result = json.loads(again.stdout)
    assert result["status"] == "succeeded" and result["run_id"] != first
    assert result["steps"][1]["output"]["key"] == ada
    assert depts() == 1  # reused, not created again
    shown = json.loads(invoke("runs", "show", result["run_id"], "--json").stdout)
    assert shown["rerun_of"] == first and shown["engine"] == "temporal"
    nothing = invoke("rerun", result["run_id"], "--failed")
    assert nothing.exit_code == 1 and "nothing failed" in nothing.stderr

    second = failed_run()
    assert depts() == 2
    resumed = invoke("resume", second, "--json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["status"] == "succeeded" and depts() == 2

    whole = invoke("rerun", first, "--json")  # all of it, from the same file and inputs
    assert whole.exit_code == 0, whole.output
    assert json.loads(whole.stdout)["status"] == "succeeded" and depts() == 3


# --------------------------------------------------------------------------- serve on Temporal

WF_NIGHTLY = """\
workflow: 1
name: nightly
trigger:
  use: schedule
  with: {cron: "0 3 * * *", timezone: Europe/Paris, catch_up: false}
steps:
  - id: mark
    use: willo.create_department
    with: {name: "nightly {{ trigger.timezone }} {{ trigger.missed }} {{ trigger.scheduled_at[:4] }}"}
"""

WF_NEW_FAST = WF_NEW.replace("{use: willo.new_participant}", "{use: willo.new_participant, interval: 1}")


class ServeProcess:
    """``willo-connector serve DIR --engine temporal`` as a subprocess (a machine of its own)."""

    def __init__(self, sandbox, home: Path, directory: Path, temporal_env: str):
        env = script_env(
            WILLO_BASE_URL=sandbox.base_url,
            WILLO_API_KEY=sandbox.api_key,
            WILLO_RATE_LIMIT="0",
            WILLO_STATE_DIR=str(home / "state"),
            XDG_CACHE_HOME=str(home / "cache"),
            WILLO_TEMPORAL_ADDRESS=os.environ["WILLO_TEMPORAL_ADDRESS"],
            WILLO_TEMPORAL_TASK_QUEUE=temporal_env,
        )
        self.proc = subprocess.Popen(
            [*script(), "serve", str(directory), "--engine", "temporal", "--port", "0", "--no-subscribe"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_die_with_parent,
        )
        self.lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            self.lines.append(line)
            if "SIGTERM or Ctrl-C stops" in line:
                return
            assert self.proc.poll() is None, "".join(self.lines) + self.proc.stderr.read()
        raise AssertionError("serve did not start: " + "".join(self.lines))

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err
        return "".join(self.lines) + err


def test_two_serves_on_temporal_make_one_schedule_and_one_poller_each_item_runs_once(
    sandbox, temporal_worker: TemporalWorker, temporal_env: str, tmp_path: Path
) -> None:
    """Two `serve --engine temporal` of one folder (two machines): one Temporal
    Schedule and one poller between them; each new participant starts one run however
    many polls see it; a scheduled time starts one run whose trigger event is the
    local scheduler's."""
    from connector.engines.temporal import TemporalSettings
    from connector.engines.temporal import client as tc
    from tests.test_triggers import invite

    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "nightly.yaml").write_text(WF_NIGHTLY)
    (folder / "new.yaml").write_text(WF_NEW_FAST)
    settings = TemporalSettings.from_env()
    serves = []
    try:
        for n in (1, 2):
            home = tmp_path / f"machine{n}"
            home.mkdir()
            serves.append(ServeProcess(sandbox, home, folder, temporal_env))
        said = "".join(serves[0].lines) + "".join(serves[1].lines)
        sid = settings.schedule_id("default", "nightly")
        assert said.count(f"nightly on Temporal ({sid}, created)") == 1
        assert said.count(f"nightly on Temporal ({sid}, updated)") == 1
        assert said.count(", started)") == 1 and said.count("polling already; updated)") == 1

        async def schedules() -> list[str]:
            client = await tc.connect(settings)
            return [s.id async for s in await client.list_schedules() if s.id.startswith(f"{temporal_env}-")]

        assert asyncio.run(schedules()) == [sid]
        poller = settings.poller_id("default", "willo.new_participant", {}, "on-new")
        wait_for(lambda: asyncio.run(_polls(settings, poller)) >= 1, what="the first poll")
        for e in ("s1@example.com", "s2@example.com"):
            invite(sandbox, e)

        def done() -> list[tuple[str, str]]:
            return [
                r
                for r in asyncio.run(_runs_with_prefix(settings, f"{temporal_env}-event-"))
                if r[1] == "COMPLETED"
            ]

        wait_for(lambda: len(done()) == 2, what="a run per new participant")

        async def trigger() -> None:
            client = await tc.connect(settings)
            await client.get_schedule_handle(sid).trigger()

        asyncio.run(trigger())
        wait_for(
            lambda: [
                d for d in sandbox.store.table("departments").values() if d["name"].startswith("nightly")
            ],
            what="the scheduled run",
        )
        time.sleep(2.5)  # more polls see the same participants; nothing more starts
        assert len(asyncio.run(_runs_with_prefix(settings, f"{temporal_env}-event-"))) == 2
        (made,) = [d for d in sandbox.store.table("departments").values() if d["name"].startswith("nightly")]
        assert made["name"].startswith("nightly Europe/Paris False 20"), made["name"]
    finally:
        errs = [s.stop() for s in serves]
        asyncio.run(_cleanup(settings, temporal_env))
    assert all("Traceback" not in e and "serve: stopped" in e for e in errs), errs


async def _polls(settings, wf_id: str) -> int:
    """Polls a poller workflow has made (completed ``willo.poll`` activities)."""
    from connector.engines.temporal import client as tc

    client = await tc.connect(settings)
    found = 0
    async for event in client.get_workflow_handle(wf_id).fetch_history_events():
        found += event.HasField("activity_task_completed_event_attributes")
    return found


async def _cleanup(settings, prefix: str) -> None:
    """Delete the test's schedules and end its pollers (they live on the server)."""
    from connector.engines.temporal import client as tc

    client = await tc.connect(settings)
    async for s in await client.list_schedules():
        if s.id.startswith(f"{prefix}-"):
            await client.get_schedule_handle(s.id).delete()
    for wf_id, status in await _runs_with_prefix(settings, f"{prefix}-poll-"):
        if status == "RUNNING":
            await _terminate(settings, wf_id)


def test_a_schedule_is_created_once_then_updated_to_the_file_as_it_is(
    temporal_env: str, tmp_path: Path
) -> None:
    """ensure_schedule: the first call creates the one schedule of the workflow on the
    account (catch_up by default: the latest missed time, once), a second one updates
    it to the file as it is now (its cron, its zone, catch_up: false)."""
    from datetime import timedelta

    from temporalio.client import ScheduleOverlapPolicy

    from connector.catalog.index import get_catalog
    from connector.engines.temporal import TemporalSettings
    from connector.engines.temporal import client as tc
    from connector.workflows.model import load

    settings = TemporalSettings.from_env()
    path = tmp_path / "nightly.yaml"
    path.write_text(WF_NIGHTLY.replace(", catch_up: false", ""))
    first = load(path, get_catalog())
    path.write_text(WF_NIGHTLY.replace("0 3 * * *", "30 6 * * 1-5").replace("Europe/Paris", "Asia/Tokyo"))
    second = load(path, get_catalog())

    async def go() -> list:
        client = await tc.connect(settings)
        made = await tc.ensure_schedule(client, settings, first, "default", str(tmp_path))
        before = await client.get_schedule_handle(made[0]).describe()
        again = await tc.ensure_schedule(client, settings, second, "default", str(tmp_path))
        after = await client.get_schedule_handle(made[0]).describe()
        await client.get_schedule_handle(made[0]).delete()
        return [made, again, before.schedule, after.schedule]

    made, again, before, after = asyncio.run(go())
    assert made == (settings.schedule_id("default", "nightly"), True) and again == (made[0], False)
    assert before.policy.catchup_window == timedelta(days=365)
    assert before.policy.overlap == ScheduleOverlapPolicy.BUFFER_ONE
    assert before.spec.time_zone_name == "Europe/Paris"
    assert after.spec.time_zone_name == "Asia/Tokyo" and after.policy.catchup_window == timedelta(seconds=10)
    assert after.spec != before.spec
