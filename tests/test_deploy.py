"""Operations, issue 15 item 6: the deployment recipes are checked where they can be
here (the unit by systemd-analyze; the Dockerfile by the rules hadolint applies, read
by hand, since no image can be built on this machine), the container's health check
works against a real listen, and the operations guide names every metric served."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from werkzeug.test import Client

from connector.observe import SPEC, Probes, wsgi
from connector.state.store import StateStore
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
OPS = ROOT / "docs" / "operations.md"


def instructions(text: str) -> list[tuple[str, str]]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped)."""
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_dockerfile_follows_the_rules_a_linter_would_check() -> None:
    steps = instructions((DEPLOY / "Dockerfile").read_text())
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM") :]
    for word, rest in steps:
        if word == "FROM":  # DL3006/DL3007: a tagged base, never latest
            image = rest.split()[0]
            assert ":" in image and not image.endswith(":latest"), rest
        if word == "RUN" and "pip " in rest:  # DL3042: no pip cache in the image
            assert "--no-cache-dir" in rest, rest
        if word == "RUN" and "apt-get install" in rest:  # DL3015
            assert "--no-install-recommends" in rest and "rm -rf /var/lib/apt/lists" in rest
        assert word != "ADD", "COPY, not ADD (DL3020)"
        assert word != "MAINTAINER"
    final_words = [w for w, _ in final]
    user = [rest for w, rest in final if w == "USER"]
    assert user and not user[-1].startswith(("root", "0")), "the process does not run as root (DL3002)"
    assert final_words.index("USER") < final_words.index("ENTRYPOINT")
    entry = dict(final)["ENTRYPOINT"]
    assert json.loads(entry) == ["willo-connector"], "exec form: SIGTERM reaches the process itself"
    assert json.loads(dict(final)["CMD"])
    assert dict(final)["STOPSIGNAL"] == "SIGTERM"
    env = dict(final)["ENV"]
    state = re.search(r"WILLO_STATE_DIR=(\S+)", env)
    assert state and json.loads(dict(final)["VOLUME"]) == [state.group(1)], "state lives on the volume"
    health = dict(final)["HEALTHCHECK"]
    assert "/ready" in health and "--timeout=" in health and "CMD [" in health
    probe = re.search(r"WILLO_PROBE_URL=http://127.0.0.1:(\d+)", env)
    cmd = json.loads(dict(final)["CMD"])
    assert probe and cmd[0] == "serve" and cmd[cmd.index("--metrics-port") + 1] == probe.group(1)
    assert probe.group(1) in dict(final)["EXPOSE"].split()
    copied = [rest.split()[0] for w, rest in steps if w == "COPY" and not rest.startswith("--from")]
    for src in copied:  # everything it copies exists in the repository
        assert (ROOT / src).exists(), src
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".git" in ignored and ".venv" in ignored


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = (DEPLOY / "willo-connector.service").read_text()
    script = Path(sys.executable).with_name("willo-connector")
    here = tmp_path / "willo-connector.service"
    here.write_text(unit.replace("/opt/willo-connector/bin/willo-connector", str(script)))
    out = subprocess.run(["systemd-analyze", "verify", str(here)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr  # no unknown keys either
    for needed in (
        "Type=notify",
        "WatchdogSec=",
        "KillSignal=SIGTERM",
        "StateDirectory=",
        "Restart=on-failure",
    ):
        assert needed in unit
    assert "Environment=WILLO_STATE_DIR=/var/lib/willo-connector" in unit  # the StateDirectory


def test_the_containers_health_check_reads_ready(tmp_path: Path) -> None:
    from waitress.server import create_server

    store = StateStore(tmp_path)
    reasons: list[str] = []
    probes = Probes(store, checks=[lambda: reasons[0] if reasons else None], cache=0)
    server = create_server(wsgi(probes), host="127.0.0.1", port=0, threads=2)
    import threading

    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.effective_port}"

        def check(*args: str) -> subprocess.CompletedProcess[str]:
            env = {"WILLO_PROBE_URL": url, "HTTP_PROXY": "http://proxy.invalid:1", "PATH": "/usr/bin:/bin"}
            return subprocess.run(
                [sys.executable, str(DEPLOY / "healthcheck.py"), *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )

        ok = check()
        assert ok.returncode == 0 and '"ready"' in ok.stdout
        reasons.append("no live subscription: webhook gone")
        bad = check()
        assert bad.returncode == 1 and "webhook gone" in bad.stdout
        assert check("/health").returncode == 0
    finally:
        server.close()
        time.sleep(0.1)
    gone = subprocess.run(
        [sys.executable, str(DEPLOY / "healthcheck.py")],
        env={"WILLO_PROBE_URL": "http://127.0.0.1:1"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert gone.returncode == 1 and "Traceback" not in gone.stderr


def test_the_operations_guide_names_every_metric_served(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from connector import telemetry
    from connector.http.pacing import shared_pacer

    shared_pacer(10, 100)  # a pacer in use: its budget is served too
    store = StateStore(tmp_path)
    with store.tx() as db:
        db.execute(
            "INSERT INTO triggers (name, trigger, options, polls, updated_at) VALUES ('t', 't', '{}', 1, 0)"
        )
        db.execute(
            "INSERT INTO events (source, trigger, dedupe, payload, status, received_at)"
            " VALUES ('webhook', 't', 'd', '{}', 'queued', 0)"
        )
    for name, (kind, _metric, _help, labels) in SPEC.items():  # every counter and histogram, once used
        if kind == "counter":
            telemetry.inc(name, **dict.fromkeys(labels, "x"))
        else:
            telemetry.observe(name, 1.0, **dict.fromkeys(labels, "x"))
    text = Client(wsgi(Probes(store, ledgers=lambda: ["t"]))).get("/metrics").get_data(as_text=True)
    served = {f.name for f in text_string_to_metric_families(text) if f.name.startswith("willo_connector_")}
    guide = OPS.read_text()
    documented = set(re.findall(r"`(willo_connector_[a-z_]+)`", guide))
    normalized = {d.removesuffix("_total") for d in documented}
    assert served == normalized, served ^ normalized
    assert {"willo_connector_" + m[1] for m in SPEC.values()} <= served


def test_the_settings_and_statuses_are_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    guide = OPS.read_text()
    for name in (
        "WILLO_LOG_FORMAT",
        "WILLO_LOG_LEVEL",
        "WILLO_RETENTION_DAYS",
        "WILLO_READY_MAX_INBOX",
        "WILLO_METRICS",
    ):
        assert f"`{name}" in readme and name in guide, name
    assert "(docs/operations.md)" in readme and "(CHANGELOG.md)" in readme
    from connector.triggers.events import SHOWN

    for stored, shown in SHOWN.items():  # the queue's vocabulary, both words
        assert f"| {shown} | `{stored}` |" in guide
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert changelog.startswith("# Changelog") and "## 0.2.0" in changelog
