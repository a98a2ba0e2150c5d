"""The configuration file: named connections, settings and where secrets are.

One YAML file, named by ``WILLO_CONFIG`` (or ``WILLO_CONNECTIONS``, its name in
DESIGN §9), else ``connections.yaml`` in ``$XDG_CONFIG_HOME/willo-connector``::

    version: 1
    connections:                      # named Willo accounts (connector.connections)
      child-uk:
        base_url: https://api.willotalent.com/api/integrations/v2
        api_key_env: WILLO_KEY_CHILD_UK   # or api_key_file: /run/secrets/willo_uk
        rate_limit: 10/100
        daily_quota: 50000
    settings:                         # any WILLO_* setting but secrets
      WILLO_SCHEMA_MODE: strict
    secrets:                          # workflow secrets: where they are, never values
      SLACK_WEBHOOK: {env: SLACK_WEBHOOK_URL}
      CRM_TOKEN: {file: /run/secrets/crm}

It is validated by ``manifests/schemas/connections.schema.json``; every problem reads
``file:line: /pointer: message``. A secret written into the file itself (an
``api_key:``, ``WILLO_API_KEY`` under ``settings``, a secret's value) is refused with
where to put it instead, and the value is never shown. Precedence, for every setting:
a command-line flag, then the environment, then this file, then the default
(:func:`apply_settings` fills in what the environment leaves unset).
"""

from __future__ import annotations

import difflib
import os
import threading
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connector import redaction
from connector import secrets as workflow_secrets
from connector.errors import ConfigError, escape

if TYPE_CHECKING:
    from connector.yamlio import Document

FILE_NAME = "connections.yaml"
#: Environment variables naming the file, in the order they are read.
FILE_ENV = ("WILLO_CONFIG", "WILLO_CONNECTIONS")
#: Settings the file may not hold: secrets (a reference goes under ``secrets:`` or a
#: connection's ``api_key_env``/``api_key_file``) and the file's own name.
SECRET_SETTINGS = (
    "WILLO_API_KEY",
    "WILLO_WEBHOOK_SECRET",
    "WILLO_MCP_TOKEN",
    "WILLO_SANDBOX_API_KEY",
    "WILLO_TEMPORAL_API_KEY",
)
#: Settings of the ``default`` connection: in the file they are its fields.
CONNECTION_SETTINGS = {
    "WILLO_BASE_URL": "base_url",
    "WILLO_API_KEY_FILE": "api_key_file",
    "WILLO_AUTH_SCHEME": "auth_scheme",
    "WILLO_RATE_LIMIT": "rate_limit",
    "WILLO_DAILY_QUOTA": "daily_quota",
}
#: Settings that are paths: relative to the config file's folder.
PATH_SETTINGS = (
    "WILLO_STATE_DIR",
    "WILLO_TEMPORAL_TLS_CERT",
    "WILLO_TEMPORAL_TLS_KEY",
    "WILLO_TEMPORAL_TLS_CA",
)
#: Fields of a connection that would hold a key itself.
KEY_FIELDS = ("api_key", "key", "apikey", "token", "api_token", "password", "secret", "authorization")
MAX_FILE = 1024 * 1024


def config_path(env: Mapping[str, str] | None = None) -> tuple[Path, str | None]:
    """The config file and the variable that named it (None: the default place)."""
    env = os.environ if env is None else env
    named = [(name, env[name]) for name in FILE_ENV if env.get(name, "").strip()]
    if len(named) == 2 and Path(named[0][1]) != Path(named[1][1]):
        raise ConfigError(
            f"WILLO_CONFIG and WILLO_CONNECTIONS name two files ({named[0][1]}, {named[1][1]}); "
            "settings and connections are one file: set one of them"
        )
    if named:
        return Path(named[0][1]).expanduser(), named[0][0]
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "willo-connector" / FILE_NAME, None


@dataclass(frozen=True)
class ConfigFile:
    """A loaded, valid config file."""

    path: Path
    doc: Document

    @property
    def data(self) -> dict[str, Any]:
        data = self.doc.data
        return data if isinstance(data, dict) else {}

    def where(self, ptr: str) -> str:
        """``file:line: /pointer`` of a value."""
        return f"{self.doc.where(ptr)}: {ptr}"

    def line(self, ptr: str) -> str:
        return self.doc.where(ptr)

    def relative(self, path: str) -> Path:
        """A path written in the file, relative to the file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.path.parent / p

    @property
    def connections(self) -> dict[str, dict[str, Any]]:
        return dict(self.data.get("connections") or {})

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.data.get("settings") or {})

    @property
    def secrets(self) -> dict[str, dict[str, str]]:
        return dict(self.data.get("secrets") or {})


_cache: dict[tuple[str, int, int], ConfigFile] = {}
_cache_lock = threading.Lock()


def load(env: Mapping[str, str] | None = None) -> ConfigFile | None:
    """The config file, validated; None when there is none at the default place (a
    file named by ``WILLO_CONFIG`` must exist). Raises :class:`ConfigError` listing
    every problem, one ``file:line: /pointer: message`` a line."""
    path, named_by = config_path(env)
    try:
        stat = path.stat()
    except FileNotFoundError:
        if named_by is None:
            return None
        raise ConfigError(f"{named_by}={path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; {named_by or 'the config file'} names a YAML file")
    if stat.st_size > MAX_FILE:
        raise ConfigError(f"{path}: {stat.st_size:,} bytes; a config file is at most {MAX_FILE:,}")
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        found = _cache.get(key)
    if found is not None:
        return found
    from connector.yamlio import YamlError, load_text  # PyYAML: only when there is a file

    try:
        text = path.read_text(encoding="utf-8")
        doc = load_text(text, str(path))
    except YamlError as exc:
        raise ConfigError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}:1: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    config = ConfigFile(path, doc)
    problems = check(config, text)
    if problems:
        raise ConfigError("\n".join(problems))
    with _cache_lock:
        _cache[key] = config
    return config


def check(config: ConfigFile, text: str | None = None) -> list[str]:
    """Every problem of a config file (secrets first: their values are never shown).
    With its ``text``, a file found valid before is not checked against the schema
    again (no jsonschema import at each command's start)."""
    data = config.doc.data
    if data is None:
        return []
    if not isinstance(data, dict):
        return [f"{config.line('')}: /: expected a mapping (connections:, settings:, secrets:)"]
    found = _secrets_inside(config, data)
    for name in data.get("settings") or {} if isinstance(data.get("settings"), dict) else ():
        if name in CONNECTION_SETTINGS:
            field = CONNECTION_SETTINGS[name]
            found.append(
                (f"/settings/{escape(name)}", f"{name} is the default connection's: write it as "
                 f"connections: default: {field}: ... in this file")
            )  # fmt: skip
    refused = {ptr for ptr, _ in found}
    for ptr, msg in _schema_errors(data, text):
        ptr = _at_unknown_field(data, ptr, msg)
        if not any(ptr == r or ptr.startswith(r + "/") or r.startswith(ptr + "/") for r in refused):
            found.append((ptr, _message(ptr, msg)))
    for name, conn in (
        (data.get("connections") or {}).items() if isinstance(data.get("connections"), dict) else ()
    ):
        base = f"/connections/{escape(str(name))}"
        if not isinstance(conn, dict) or any(r.startswith(base + "/") for r in refused):
            continue
        sources = [k for k in ("api_key_env", "api_key_file") if k in conn]
        if len(sources) == 2:
            found.append((f"{base}/api_key_file", "give api_key_env or api_key_file, not both"))
        elif not sources and name != "default":
            found.append(
                (base, "where is its key? add api_key_env: VARIABLE (the key in that environment "
                 "variable) or api_key_file: PATH (a file holding only the key)")
            )  # fmt: skip
    found.sort(key=lambda pair: (_line_no(config, pair[0]), pair[0]))
    seen: set[tuple[str, str]] = set()
    lines = []
    for ptr, msg in found:
        if (ptr, msg) not in seen:
            seen.add((ptr, msg))
            lines.append(f"{config.line(ptr)}: {ptr or '/'}: {msg}")
    return lines


def _schema_path() -> Path:
    from willo_manifests import ROOT

    return Path(ROOT) / "schemas" / "connections.schema.json"


def _schema_errors(data: Any, text: str | None) -> list[tuple[str, str]]:
    """The schema's errors; a file with the same text found valid before (a marker in
    the cache folder, keyed by the text and the schema's) is not checked again."""
    import hashlib

    marker = None
    if text is not None and not os.environ.get("WILLO_CONNECTOR_NO_CACHE"):
        try:
            digest = hashlib.sha256(_schema_path().read_bytes() + b"\0" + text.encode()).hexdigest()[:24]
        except OSError:
            digest = None
        if digest is not None:
            base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
            marker = Path(base) / "willo-connector" / f"config-ok-{digest}"
            if marker.exists():
                return []
    from connector.catalog import schemas

    found = schemas.errors(data, "connections")
    if not found and marker is not None:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError:  # a read-only home: checked again next time
            pass
    return found


def _at_unknown_field(data: Any, ptr: str, msg: str) -> str:
    """An unknown field's error points at the field (its line), not at its parent."""
    if not msg.startswith("unknown field"):
        return ptr
    import re

    names = re.findall(r"'([^']*)'", msg.split("(", 1)[-1])
    if len(names) != 1:
        return ptr
    return f"{ptr}/{escape(names[0])}"


def _line_no(config: ConfigFile, ptr: str) -> int:
    text = config.line(ptr).rsplit(":", 1)[-1]
    return int(text) if text.isdigit() else 0


def _message(ptr: str, msg: str) -> str:
    """Schema messages that name what to do where the schema alone would not."""
    parts = ptr.split("/")
    if len(parts) == 3 and parts[1] == "settings" and msg.startswith("unknown field"):
        return msg + " (see `willo-connector config show` for every setting)"
    return msg


def _secrets_inside(config: ConfigFile, data: dict[str, Any]) -> list[tuple[str, str]]:
    """A key or secret value written into the file: refused, never shown, and
    registered as a secret so that no output shows it either."""
    found: list[tuple[str, str]] = []
    connections = data.get("connections")
    if isinstance(connections, dict):
        for name, conn in connections.items():
            if not isinstance(conn, dict):
                continue
            base = f"/connections/{escape(str(name))}"
            for field, value in conn.items():
                if str(field).lower() in KEY_FIELDS:
                    _register(value)
                    found.append(
                        (f"{base}/{escape(str(field))}", "an API key is never read from this file (its value "
                         "is not shown): put it in an environment variable and name that with "
                         "api_key_env: VARIABLE, or in a file of its own named by api_key_file: PATH")
                    )  # fmt: skip
            env_name = conn.get("api_key_env")
            if isinstance(env_name, str) and not _looks_like_variable(env_name):
                _register(env_name)
                found.append(
                    (f"{base}/api_key_env", "api_key_env names an environment variable (in capitals, "
                     "e.g. WILLO_KEY_CHILD); this looks like a key itself (not shown): put the key in "
                     "that variable")
                )  # fmt: skip
    settings = data.get("settings")
    if isinstance(settings, dict):
        for name, value in settings.items():
            if str(name) in SECRET_SETTINGS or str(name).startswith(redaction.SECRET_ENV_PREFIXES):
                _register(value)
                hint = (
                    "a connection's api_key_env or api_key_file"
                    if name == "WILLO_API_KEY"
                    else "the secrets: section as a reference ({env: VARIABLE} or {file: PATH})"
                    if str(name).startswith(redaction.SECRET_ENV_PREFIXES)
                    else "the environment"
                )
                found.append(
                    (f"/settings/{escape(str(name))}", f"{name} is a secret and is never read from this "
                     f"file (its value is not shown): use {hint}")
                )  # fmt: skip
    secrets = data.get("secrets")
    if isinstance(secrets, dict):
        for name, ref in secrets.items():
            if not isinstance(ref, dict):
                _register(ref)
                found.append(
                    (f"/secrets/{escape(str(name))}", "a secret is written here as where it is, never as "
                     "its value (not shown): {env: VARIABLE} or {file: PATH}")
                )  # fmt: skip
    return found


def _looks_like_variable(name: str) -> bool:
    return bool(name) and all(c.isupper() or c.isdigit() or c == "_" for c in name) and not name[0].isdigit()


def _register(value: Any) -> None:
    if isinstance(value, str):
        redaction.register(value.strip())


# ---------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Setting:
    """One ``WILLO_*`` setting the file may hold."""

    name: str
    description: str
    default: str


def known_settings() -> list[Setting]:
    """Every setting of the ``settings:`` section, from its schema."""
    import json

    schema = json.loads(_schema_path().read_text(encoding="utf-8"))
    props = schema["properties"]["settings"]["properties"]
    return [Setting(n, p["description"], str(p.get("default", ""))) for n, p in props.items()]


#: What :func:`apply_settings` put in the environment: name -> (value, file:line).
_applied: dict[str, tuple[str, str]] = {}


def setting_text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def apply_settings(
    env: MutableMapping[str, str] | None = None, config: ConfigFile | None = None
) -> dict[str, str]:
    """Put the file's settings into ``env`` (``os.environ``) where it has none, so that
    every part of the connector reads them as it reads the environment (the
    environment wins over the file). Returns what was added, for :func:`unapply`."""
    env = os.environ if env is None else env
    config = config if config is not None else load(env)
    added: dict[str, str] = {}
    if config is None:
        return added
    for name, value in config.settings.items():
        if name in env:
            continue
        text = setting_text(value)
        if name in PATH_SETTINGS:
            text = str(config.relative(text))
        env[name] = added[name] = text
        _applied[name] = (text, config.line(f"/settings/{escape(name)}"))
    return added


def unapply(added: Mapping[str, str], env: MutableMapping[str, str] | None = None) -> None:
    """Take back what :func:`apply_settings` added (when a command ends in-process)."""
    env = os.environ if env is None else env
    for name, value in added.items():
        if env.get(name) == value:
            del env[name]
        _applied.pop(name, None)


def origin(name: str, env: Mapping[str, str] | None = None) -> str:
    """Where a setting's value comes from: ``environment``, the file (``file:line``) or
    ``default``."""
    env = os.environ if env is None else env
    if name in _applied and env.get(name) == _applied[name][0]:
        return _applied[name][1]
    if name in env:
        return "environment"
    return "default"


# ---------------------------------------------------------------------- secrets


def secret(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """The value of workflow secret ``name`` from the file's ``secrets:`` references,
    or None when the file has none by that name. A reference that leads nowhere (an
    unset variable, an unreadable file) is a :class:`ConfigError` naming its line.
    The value is registered as a secret (scrubbed from every output)."""
    env = os.environ if env is None else env
    config = load(env)
    if config is None:
        return None
    if name not in config.secrets:  # as WILLO_SECRET_<NAME>, the name in any case
        same = [k for k in config.secrets if k.upper() == name.upper()]
        if len(same) != 1:
            return None
        name = same[0]
    ref = config.secrets[name]
    ptr = f"/secrets/{escape(name)}"
    if "env" in ref:
        value = env.get(ref["env"], "").strip()
        if not value:
            raise ConfigError(f"{config.where(ptr + '/env')}: secret {name}: {ref['env']} is not set")
    else:
        value = read_secret_file(
            config.relative(ref["file"]), f"{config.where(ptr + '/file')}: secret {name}"
        )
    redaction.register(value)
    return value


#: The config file is a source of workflow secrets, after the environment
#: (``WILLO_SECRET_NAME`` wins): :func:`connector.secrets.lookup` asks it.
workflow_secrets.add_source("secrets: in the config file", lambda name: secret(name))


def read_secret_file(path: Path, label: str, limit: int = 64 * 1024) -> str:
    """The text of a file holding one secret, stripped; a one-line ConfigError
    (``label: ...``) naming the file, never its content."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(limit + 1)
    except FileNotFoundError:
        raise ConfigError(f"{label}: {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{label}: {path}: is a folder, not a file") from None
    except PermissionError:
        raise ConfigError(f"{label}: {path}: permission denied (cannot read it)") from None
    except OSError as exc:
        raise ConfigError(f"{label}: {path}: cannot read: {exc.strerror}") from None
    if len(raw) > limit:
        raise ConfigError(f"{label}: {path}: over {limit:,} bytes; it should hold only the secret")
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{label}: {path}: not UTF-8 text") from None
    if not text:
        raise ConfigError(f"{label}: {path}: is empty")
    return text


def secret_names(env: Mapping[str, str] | None = None) -> list[str]:
    config = load(env)
    return sorted(config.secrets) if config is not None else []


# ---------------------------------------------------------------------- showing


def show(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What ``config show`` prints: the file, every setting with its value and where it
    came from, and the secrets' references (never values). Connections are added by
    :mod:`connector.connections`."""
    env = os.environ if env is None else env
    path, named_by = config_path(env)
    config = load(env)
    settings = []
    for s in known_settings():
        value = env.get(s.name)
        settings.append(
            {
                "name": s.name,
                "value": value if value is not None else s.default,
                "source": origin(s.name, env) if value is not None else "default",
                "description": s.description,
            }
        )
    secrets: list[dict[str, Any]] = []
    for name, ref in (config.secrets if config else {}).items():
        kind, where = next(iter(ref.items()))
        secrets.append(
            {
                "name": name,
                "from": f"{kind} {where}",
                "source": config.line(f"/secrets/{escape(name)}") if config else "",
                "overridden_by": f"WILLO_SECRET_{name.upper()}"
                if f"WILLO_SECRET_{name.upper()}" in env
                else None,
            }
        )
    for name in sorted(k for k in env if k.startswith(redaction.SECRET_ENV_PREFIXES)):
        short = name[len(redaction.SECRET_ENV_PREFIXES[0]) :]
        if not any(str(s["name"]).upper() == short for s in secrets):
            secrets.append(
                {"name": short, "from": f"env {name}", "source": "environment", "overridden_by": None}
            )
    return {
        "file": str(path),
        "file_exists": config is not None,
        "named_by": named_by or "default location",
        "settings": settings,
        "secrets": secrets,
    }


def closest(name: str, names: Iterator[str] | list[str]) -> str:
    """`` (did you mean X?)`` for a misspelt name, else ``""``."""
    found = difflib.get_close_matches(name, list(names), n=2)
    return f" (did you mean {' or '.join(found)}?)" if found else ""


__all__ = [
    "CONNECTION_SETTINGS",
    "FILE_ENV",
    "FILE_NAME",
    "SECRET_SETTINGS",
    "ConfigFile",
    "Setting",
    "apply_settings",
    "check",
    "closest",
    "config_path",
    "known_settings",
    "load",
    "origin",
    "read_secret_file",
    "secret",
    "secret_names",
    "show",
    "unapply",
]
