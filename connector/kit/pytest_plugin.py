"""pytest fixtures for plugin authors, shipped with willo-connector (``pytest11``).

Installed with the distribution, so a plugin's tests just use them::

    def test_on_the_sandbox(willo_connector):
        assert willo_connector.call("acme.count_interviews", {}).output["count"] == 2

    @pytest.mark.willo_cassette("acme.count_interviews")
    def test_from_its_cassette(willo_cassette):
        assert willo_cassette.call("acme.count_interviews", {}).output["count"] == 2

    def test_a_workflow(willo_run):
        report = willo_run("workflows/shortlist.yaml", {"interview": "..."}).assert_succeeded()
        assert report.output("shortlist")["stage"] == "Shortlisted"

Fixtures: ``willo_sandbox`` (a running sandbox, reset to demo data for each test),
``willo_connector`` (a connector on it, strict schema mode), ``willo_cassette`` (a
connector whose every request is answered from, or recorded into, the test's
cassette), ``willo_run`` (run a workflow, inspect its steps), ``willo_poll`` (poll a
trigger with its own ledger), ``willo_host`` (the plugins: override it to register
an in-process plugin), ``willo_record_mode`` and ``willo_cassette_path``.

Cassettes follow pytest-recording's conventions: ``--willo-record-mode`` takes its
modes (``none``: replay only; ``once``: record a cassette that does not exist yet,
else replay; ``new_episodes``: replay, and record requests the cassette lacks;
``all``: record everything, appending; ``rewrite``: delete, then record). The option
is namespaced so that it never clashes with pytest-recording's own ``--record-mode``
(which configures ``@pytest.mark.vcr``, not these fixtures). The default is ``once``
on a workstation and ``none`` where the ``CI`` environment variable is set: cassettes
record on the first run and replay in CI. A cassette lives at
``<test folder>/cassettes/<module>/<test>.yaml``, or ``<test folder>/cassettes/NAME.yaml``
with ``@pytest.mark.willo_cassette("NAME")``. Recordings are made against the
sandbox, or with ``--willo-target=live`` against the account of ``WILLO_API_KEY`` and
``WILLO_BASE_URL``; the key is scrubbed either way.

Settings (``[tool.pytest.ini_options]``): ``willo_record_mode``, ``willo_target``,
``willo_plugins`` (the plugins to load besides the built-ins; default: every installed
one), ``willo_schema_mode`` (default ``strict``).

This module imports only pytest when pytest starts; the host loads on first use.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

if TYPE_CHECKING:
    from connector.catalog.plugins import PluginHost
    from connector.kit.harness import RunReport, TriggerProbe
    from connector.sandbox import Sandbox
    from connector.workflows.runtime import Connector

RECORD_MODES = ("none", "once", "new_episodes", "all", "rewrite")
TARGETS = ("sandbox", "live")
REPLAY_BASE_URL = "https://willo.invalid/api/integrations/v2"


#: pytest's ini type for a whitespace-separated list (a name, not a string annotation for mypy)
_ARGS: Literal["args"] = "args"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("willo-connector")
    group.addoption(
        "--willo-record-mode",
        choices=RECORD_MODES,
        default=None,
        help="Record mode of willo_cassette (pytest-recording's modes). "
        "Default: once, or none when $CI is set.",
    )
    group.addoption(
        "--willo-target",
        choices=TARGETS,
        default=None,
        help="What willo_cassette records against: the sandbox (default) or the live account "
        "of WILLO_API_KEY/WILLO_BASE_URL.",
    )
    parser.addini("willo_record_mode", "Default --willo-record-mode.", default="")
    parser.addini("willo_target", "Default --willo-target.", default="sandbox")
    parser.addini(
        "willo_plugins",
        "Plugins (entry point names) to load besides the built-ins; default: every installed one.",
        type=_ARGS,
        default=[],
    )
    parser.addini("willo_schema_mode", "WILLO_SCHEMA_MODE of the fixtures' connectors.", default="strict")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "willo_cassette(name): the cassette of the willo_cassette fixture (default: the test's)"
    )


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def willo_record_mode(pytestconfig: pytest.Config) -> str:
    """The record mode: the option, else the ini setting, else ``once`` (``none`` in CI)."""
    mode = pytestconfig.getoption("willo_record_mode") or pytestconfig.getini("willo_record_mode")
    mode = str(mode or ("none" if _in_ci() else "once"))
    if mode not in RECORD_MODES:
        raise pytest.UsageError(f"willo_record_mode = {mode!r}: use one of {', '.join(RECORD_MODES)}")
    return mode


@pytest.fixture(scope="session")
def willo_host(pytestconfig: pytest.Config) -> PluginHost:
    """The built-ins and the installed plugins (only ``willo_plugins`` when set). With
    ``willo_plugins``, a failure of those plugins (or of their manifests) fails the
    tests that use it, with its reason; without, failures are warnings."""
    import importlib.metadata as md

    from connector import PROJECT_NAME
    from connector.catalog.index import get_catalog
    from connector.catalog.plugins import build_host

    wanted = [str(n) for n in pytestconfig.getini("willo_plugins")]
    eps = list(md.entry_points(group=PROJECT_NAME))
    if wanted:
        missing = sorted(set(wanted) - {ep.name for ep in eps})
        if missing:
            pytest.fail(f"willo_plugins names {', '.join(missing)}, which is not installed", pytrace=False)
        eps = [ep for ep in eps if ep.name in wanted]
    host = build_host(eps, strict=False)
    cat = get_catalog(host)
    failures = [f"plugin {n}: {e}" for n, e in host.failures]
    if wanted and (failures or cat.problems):
        pytest.fail("\n".join(failures + cat.problems), pytrace=False)
    for line in failures + cat.problems:  # not the plugins under test: say so, carry on
        warnings.warn(pytest.PytestWarning(f"willo-connector: {line}"), stacklevel=1)
    return host


@pytest.fixture(scope="session")
def willo_sandbox_server() -> Iterator[Sandbox]:
    """One sandbox for the session (on a free loopback port, no throttling)."""
    from connector.sandbox import Sandbox, SandboxOptions

    box = Sandbox(SandboxOptions(rate_limit=(0, 0), webhook_backoff=0.05))
    box.start()
    yield box
    box.stop()


@pytest.fixture
def willo_sandbox(willo_sandbox_server: Sandbox) -> Sandbox:
    """The running sandbox, reset to its demo data for this test."""
    willo_sandbox_server.reset()
    willo_sandbox_server.app.faults.planned.clear()
    return willo_sandbox_server


def _connector(host: PluginHost, pytestconfig: pytest.Config, **settings: Any) -> Connector:
    from connector.http.client import Settings
    from connector.workflows.runtime import Connector

    mode = str(pytestconfig.getini("willo_schema_mode") or "strict")
    return Connector(host, settings=Settings.from_env(**settings), schema_mode=mode)


@pytest.fixture
def willo_connector(
    willo_host: PluginHost, willo_sandbox: Sandbox, pytestconfig: pytest.Config
) -> Iterator[Connector]:
    """A connector on the sandbox, in strict schema mode (``willo_schema_mode``)."""
    conn = _connector(
        willo_host,
        pytestconfig,
        base_url=willo_sandbox.base_url,
        api_key=willo_sandbox.api_key,
        auth_scheme="",
        rate="0",
        backoff=0.01,
    )
    yield conn
    conn.client.close()


@pytest.fixture(scope="module")
def willo_cassette_dir(request: pytest.FixtureRequest) -> Path:
    """Where this module's cassettes live: ``cassettes/`` beside the test file."""
    return Path(request.path).parent / "cassettes"


@pytest.fixture
def willo_cassette_path(request: pytest.FixtureRequest, willo_cassette_dir: Path) -> Path:
    """This test's cassette: ``@pytest.mark.willo_cassette("NAME")`` names it, else
    ``<module>/<test>.yaml`` (pytest-recording's default)."""
    mark = request.node.get_closest_marker("willo_cassette")
    if mark is not None and mark.args:
        name = str(mark.args[0])
        return willo_cassette_dir / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    test = request.node.name
    if request.cls is not None:
        test = f"{request.cls.__name__}.{test}"
    for ch in "<>?%*:|\"'/\\":
        test = test.replace(ch, "-")
    return willo_cassette_dir / Path(request.path).stem / f"{test}.yaml"


@pytest.fixture
def willo_cassette(
    request: pytest.FixtureRequest,
    willo_host: PluginHost,
    willo_record_mode: str,
    willo_cassette_path: Path,
    pytestconfig: pytest.Config,
) -> Iterator[Connector]:
    """A connector whose requests are replayed from (or recorded into) this test's
    cassette, following ``willo_record_mode``; recordings go to the sandbox or, with
    ``--willo-target=live``, to the live account (key scrubbed)."""
    from connector.http.cassettes import record, replay

    path = willo_cassette_path
    replaying = willo_record_mode == "none" or (willo_record_mode == "once" and path.is_file())
    if replaying:
        if not path.is_file():
            pytest.fail(
                f"{path}: no such cassette (record mode none); record it with --willo-record-mode=once",
                pytrace=False,
            )
        conn = _connector(willo_host, pytestconfig, base_url=REPLAY_BASE_URL, api_key="cassette-replay")
        context = replay(path)
    else:
        settings, secrets = _recording_target(request, pytestconfig)
        conn = _connector(willo_host, pytestconfig, **settings)
        context = record(path, willo_record_mode, secrets)
    conn.serial = True
    with context:
        yield conn
    conn.client.close()


def _recording_target(
    request: pytest.FixtureRequest, config: pytest.Config
) -> tuple[dict[str, Any], list[str]]:
    target = config.getoption("willo_target") or config.getini("willo_target") or "sandbox"
    if target == "live":
        from connector.http.client import Settings

        key = Settings.from_env().api_key
        if not key:
            pytest.fail("--willo-target=live needs WILLO_API_KEY (and WILLO_BASE_URL)", pytrace=False)
        return {}, [key]
    box: Sandbox = request.getfixturevalue("willo_sandbox")
    settings = {"base_url": box.base_url, "api_key": box.api_key, "auth_scheme": "", "rate": "0"}
    return settings, [box.api_key]


@pytest.fixture
def willo_run(request: pytest.FixtureRequest) -> Callable[..., RunReport]:
    """``willo_run(workflow, inputs=None, *, event=None, connector=None) -> RunReport``:
    validate and run a workflow (a path, or YAML text) on ``connector`` (default:
    ``willo_connector``); the report has ``status``, ``steps``, ``step(id)``,
    ``output(id)`` and ``assert_succeeded()``."""
    from connector.kit.harness import run_workflow

    def run(
        workflow: str | Path,
        inputs: dict[str, Any] | None = None,
        *,
        event: Any = None,
        connector: Any = None,
    ) -> RunReport:
        conn = connector if connector is not None else request.getfixturevalue("willo_connector")
        return run_workflow(conn, workflow, inputs, event=event)

    return run


@pytest.fixture
def willo_poll(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., TriggerProbe]]:
    """``willo_poll(trigger_id, connector=None, **options) -> probe``: a polling trigger
    with its own ledger; ``probe.events()`` polls once (the first poll only records
    what exists, as in production)."""
    from connector.kit.harness import TriggerProbe
    from connector.state.store import StateStore

    stores: list[StateStore] = []

    def poll(trigger_id: str, connector: Any = None, **options: Any) -> TriggerProbe:
        conn = connector if connector is not None else request.getfixturevalue("willo_connector")
        stores.append(StateStore(tmp_path / f"willo-state-{len(stores)}"))
        return TriggerProbe(conn, stores[-1], trigger_id, options)

    yield poll
    for store in stores:
        store.close()
