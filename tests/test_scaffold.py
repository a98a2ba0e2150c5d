"""``new plugin|action|trigger``: names checked, a plugin that works as written, and
(marked ``venv``, run in CI) the whole path: generated, pip-installed into a fresh
virtualenv with this checkout, its own tests pass, and ``plugins verify`` passes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.catalog import plugins
from connector.cli import main
from connector.kit import scaffold
from connector.kit.verify import verify
from tests.conftest import ROOT, fake_entry_points


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def one_line_error(result, needle: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], result.stderr


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> scaffold.Plugin:
    """One generated plugin for the module's checks (recording makes it the dear part)."""
    return scaffold.new_plugin("acme", tmp_path_factory.mktemp("gen") / "willo-acme")


def test_new_plugin_writes_a_whole_project(made: scaffold.Plugin) -> None:
    files = sorted(str(p.relative_to(made.root)) for p in made.root.rglob("*") if p.is_file())
    assert files == [
        ".gitignore",
        "README.md",
        "pyproject.toml",
        "src/willo_acme/__init__.py",
        "src/willo_acme/handlers.py",
        "src/willo_acme/manifests/count_interviews.yaml",
        "src/willo_acme/manifests/high_score.yaml",
        "src/willo_acme/manifests/shortlist_best.yaml",
        "src/willo_acme/py.typed",
        "tests/cassettes/acme.count_interviews.yaml",
        "tests/cassettes/acme.high_score.yaml",
        "tests/cassettes/acme.shortlist_best.yaml",
        "tests/cassettes/inputs.json",
        "tests/cassettes/scenarios.yaml",
        "tests/test_plugin.py",
        "workflows/shortlist.yaml",
    ]
    pyproject = (made.root / "pyproject.toml").read_text()
    assert '[project.entry-points.willo_connector]\nacme = "willo_acme"' in pyproject
    assert 'willo_plugins = ["acme"]' in pyproject
    for path in made.root.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "@@" not in text, path
            assert "sk_sandbox_" not in text, path  # the recording's key is scrubbed


def test_the_generated_plugin_conforms_without_being_installed(made: scaffold.Plugin) -> None:
    with scaffold.loaded(made) as module:
        host = plugins.build_host([], extra=[("acme", module)])
        report = verify("acme", host=host, cassettes=made.cassettes)
    assert report.problems == []
    assert [c.split(":")[0] for c in report.checked] == [
        "acme.count_interviews",
        "acme.high_score",
        "acme.shortlist_best",
    ]
    assert all("replayed" in c for c in report.checked)
    assert "willo_acme" not in sys.modules  # loading it left nothing behind


def test_the_generated_code_is_lint_clean(made: scaffold.Plugin) -> None:
    ruff = Path(sys.executable).with_name("ruff")
    for args in (["check", "."], ["format", "--check", "."]):
        out = subprocess.run([str(ruff), *args], cwd=made.root, capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("Acme", "plugin name 'Acme': use lower-case letters, digits and underscores"),
        ("acme-tools", "(e.g. acme_tools)"),
        ("9lives", "starting with a letter"),
        ("willo", "plugin name 'willo' is reserved"),
        ("class", "is a Python keyword"),
        ("a" * 41, "at most 40 characters"),
    ],
)
def test_bad_plugin_names_are_one_line_errors(tmp_path: Path, name: str, needle: str) -> None:
    one_line_error(invoke("new", "plugin", name, "--dir", str(tmp_path / "p")), needle)
    assert not (tmp_path / "p").exists()


def test_new_plugin_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    one_line_error(invoke("new", "plugin", "acme", "--dir", str(tmp_path)), "is not an empty folder")
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_a_failed_generation_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(plugin: scaffold.Plugin, only=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(scaffold, "record_cassettes", boom)
    with pytest.raises(KeyboardInterrupt):
        scaffold.new_plugin("acme", tmp_path / "gone")
    assert not (tmp_path / "gone").exists()


def test_new_plugin_defaults_to_willo_name_in_the_current_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = invoke("new", "plugin", "beta_tools", "--no-record")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("created willo-beta-tools/ (plugin beta_tools, package willo_beta_tools)")
    assert (tmp_path / "willo-beta-tools" / "src" / "willo_beta_tools" / "handlers.py").is_file()
    assert not (tmp_path / "willo-beta-tools" / "tests" / "cassettes" / "inputs.json").exists()


def test_new_action_and_trigger_work_as_written(tmp_path: Path, monkeypatch) -> None:
    plugin = scaffold.new_plugin("gamma", tmp_path / "willo-gamma")
    monkeypatch.chdir(plugin.root / "src")  # found from a folder inside the plugin
    for args in (
        ("action", "list_matching"),
        ("action", "count_matching", "--handler"),
        ("trigger", "new_matching"),
        ("trigger", "new_candidate", "--handler"),
    ):
        r = invoke("new", *args)
        assert r.exit_code == 0, r.output
        assert f"tests/cassettes/gamma.{args[1]}.yaml" in r.stdout
    one_line_error(invoke("new", "action", "list_matching"), "list_matching.yaml: already exists")
    one_line_error(invoke("new", "action", "Bad"), "action name 'Bad'")
    with scaffold.loaded(plugin) as module:
        report = verify(
            "gamma", host=plugins.build_host([], extra=[("gamma", module)]), cassettes=plugin.cassettes
        )
    assert report.problems == []
    assert len(report.checked) == 7 and all("replayed" in c for c in report.checked)
    monkeypatch.chdir(tmp_path)
    one_line_error(invoke("new", "action", "x"), "not inside a plugin project")


# ------------------------------------------------------------------ the whole path, in a fresh venv


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd)}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return time.perf_counter() - t0


@pytest.mark.venv
def test_generated_installed_tested_and_verified_in_a_fresh_venv(tmp_path: Path) -> None:
    """The issue's path, as an author takes it. Bounded: every step has a timeout, and
    installs use the local wheels/index and pip's cache (no build isolation)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WILLO_", "VIRTUAL_ENV", "CI"))}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), WILLO_STATE_DIR=str(tmp_path / "state"))
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env, 120)
    py, pip = str(venv / "bin" / "python"), [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    _run([*pip, "setuptools>=68", "wheel"], tmp_path, env)
    _run([*pip, "--no-build-isolation", str(ROOT)], tmp_path, env)
    cli = str(venv / "bin" / "willo-connector")
    timings = {"new plugin": _run([cli, "new", "plugin", "acme"], tmp_path, env, 120)}
    root = tmp_path / "willo-acme"
    timings["pip install -e plugin"] = _run([*pip, "--no-build-isolation", "-e", ".[test]"], root, env)
    timings["pytest (local: once)"] = _run(
        [py, "-m", "pytest", "-q", "-p", "no:cacheprovider"], root, env, 300
    )
    ci = {**env, "CI": "true"}
    timings["pytest (CI: none)"] = _run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider"], root, ci, 300)
    timings["plugins verify"] = _run([cli, "plugins", "verify", "acme"], root, env, 120)
    # the SDK is typed: the generated plugin (handlers, tests) type-checks against it
    mypy = [str(Path(sys.executable).with_name("mypy")), "--python-executable", py, "--strict"]
    mypy += ["--cache-dir", str(tmp_path / "mypy"), "--ignore-missing-imports", "src", "tests"]
    timings["mypy --strict"] = _run(mypy, root, env, 300)
    listing = subprocess.run([cli, "plugins"], cwd=root, env=env, capture_output=True, text=True, timeout=60)
    assert (
        listing.returncode == 0
        and "acme 0.1.0  [ok]  willo-acme (willo_acme)  (3 manifests)" in listing.stdout
    )
    print("scaffold timings:", {k: round(v, 2) for k, v in timings.items()})


def test_a_failed_new_action_puts_the_plugins_files_back(tmp_path: Path, monkeypatch) -> None:
    plugin = scaffold.new_plugin("delta", tmp_path / "willo-delta")
    handlers = plugin.package_dir / "handlers.py"
    scenarios = plugin.cassettes / "scenarios.yaml"
    before = (handlers.read_text(), scenarios.read_text())

    def boom(plugin: scaffold.Plugin, only=None):
        raise scaffold.ScaffoldError("plugin delta: failed to import: NameError: HANDLERS")

    monkeypatch.setattr(scaffold, "record_cassettes", boom)
    r = invoke("new", "action", "count_matching", "--handler", "--dir", str(plugin.root))
    one_line_error(r, "failed to import")
    assert (handlers.read_text(), scenarios.read_text()) == before
    assert not (plugin.manifests / "count_matching.yaml").exists()


def test_an_unwritable_folder_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("x")
    one_line_error(
        invoke("new", "plugin", "acme", "--dir", str(tmp_path / "a_file" / "sub")), "cannot create"
    )


def test_verify_says_to_install_the_plugin_of_the_current_folder(tmp_path: Path, monkeypatch) -> None:
    scaffold.new_plugin("eps", tmp_path / "willo-eps", record=False)
    fake_entry_points(monkeypatch, [])  # none installed
    monkeypatch.chdir(tmp_path / "willo-eps" / "tests")
    one_line_error(
        invoke("plugins", "verify", "eps"), f"install it first: pip install -e {tmp_path / 'willo-eps'}"
    )


def test_help_lists_the_kit_commands() -> None:
    out = invoke("--help").stdout
    for cmd in ("new", "record", "export", "plugins"):
        assert f"  {cmd} " in out, cmd
    assert "  verify " in invoke("plugins", "--help").stdout
    assert "  docs " in invoke("export", "--help").stdout
