"""Connections: the Willo accounts a process talks to, by name.

A connection is one account: a base URL, an API key (from an environment variable or
a key file, never from the config file itself), an auth scheme, a rate limit and a
daily quota. The environment defines ``default`` (``WILLO_API_KEY`` or
``WILLO_API_KEY_FILE``, ``WILLO_BASE_URL``, ``WILLO_AUTH_SCHEME``,
``WILLO_RATE_LIMIT``, ``WILLO_DAILY_QUOTA``), over the config file's
``connections: default:`` when it has one; the config file
(:mod:`connector.config`) names more.

Everything the state store keeps for an account is keyed by its :class:`Account`:
the connection's name, its base URL and a fingerprint of its key (a hash, never the
key), so two accounts never share a cursor, an event or a journal entry, and a key
that changes is noticed. The rate budget is keyed by the base URL and key alone
(:attr:`Account.budget`): two names for one key are one budget at Willo.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connector import config as configfile
from connector.errors import ConfigError, escape
from connector.http.client import DEFAULT_BASE_URL, DEFAULT_RATE, Settings, check_url, header_token
from connector.http.pacing import ON_QUOTA, Pacer, SharedPacer, parse_rate, shared_pacer
from connector.state.budget import Limits

if TYPE_CHECKING:
    from connector.state.store import StateStore

DEFAULT = "default"
#: Willo's published daily quota per organisation.
DEFAULT_DAILY_QUOTA = 50_000


def fingerprint(key: str | None) -> str:
    """What identifies a key without revealing it: ``sha256:`` and 16 hex digits of a
    hash of it (``none`` without a key)."""
    if not key:
        return "none"
    return "sha256:" + hashlib.sha256(b"willo-connector key\0" + key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Account:
    """Who a request goes to: a connection's name, base URL and key fingerprint."""

    name: str
    base_url: str
    fingerprint: str

    @property
    def budget(self) -> str:
        """The rate budget's name: the server's account (base URL and key), whatever
        the connection is called."""
        text = f"{self.base_url.rstrip('/')}\n{self.fingerprint}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def id(self) -> str:
        """The key of this account's rows in the state store: ``name/`` and 10 hex
        digits of the base URL and key fingerprint."""
        return f"{self.name}/{self.budget[:10]}"

    def describe(self) -> str:
        return f"{self.name} ({self.base_url}, key {self.fingerprint})"


def account_of(settings: Settings, name: str = DEFAULT) -> Account:
    return Account(name, settings.base_url.rstrip("/"), fingerprint(settings.api_key))


@dataclass
class Connection:
    """One named account, as configured (the key is read when it is needed)."""

    name: str
    base_url: str = DEFAULT_BASE_URL
    auth_scheme: str = ""
    rate: str = DEFAULT_RATE
    daily_quota: int = DEFAULT_DAILY_QUOTA
    on_quota: str = "wait"
    key_env: str | None = None
    key_file: Path | None = None
    description: str = ""
    #: where each field was set, for messages: ``file:line: /pointer`` or ``WILLO_X``
    where: dict[str, str] = field(default_factory=dict)

    def _at(self, fld: str) -> str:
        return self.where.get(fld) or self.where.get("") or f"connection {self.name}"

    @property
    def origin(self) -> str:
        """Where the connection is defined: ``environment`` or ``file:line``."""
        return self.where.get("", "environment")

    def key_source(self) -> str:
        if self.key_env:
            return f"environment variable {self.key_env}"
        if self.key_file:
            return f"file {self.key_file}"
        return "none"

    def api_key(self, required: bool = True) -> str | None:
        """The key, read now from its variable or file, stripped and checked; a
        one-line :class:`ConfigError` naming the setting (never the key) if it is
        missing (when ``required``), unreadable or unfit for a header."""
        label = self._at("key")
        if self.key_env:
            raw = os.environ.get(self.key_env)
            if raw is None or not raw.strip():
                if not required or (self.name == DEFAULT and self.key_env == "WILLO_API_KEY"):
                    return None  # the client says how to set it, when a request needs it
                raise ConfigError(f"{label}: connection {self.name}: {self.key_env} is not set")
            return header_token(f"{label}: connection {self.name}: the key in {self.key_env}", raw)
        if self.key_file:
            text = configfile.read_secret_file(self.key_file, f"{label}: connection {self.name}: key file")
            return header_token(f"{label}: connection {self.name}: the key in {self.key_file}", text)
        if required and self.name != DEFAULT:
            raise ConfigError(f"{label}: connection {self.name} has no key (api_key_env or api_key_file)")
        return None

    def limits(self) -> Limits:
        per_s, per_m = parse_rate(self.rate)
        return Limits(per_s, per_m, self.daily_quota)

    def settings(self, *, key: bool = True, **overrides: Any) -> Settings:
        """Client settings for this connection (timeouts and retries from the
        environment); ``key=False`` leaves a key that is not set unset (dry runs)."""
        values: dict[str, Any] = {
            "base_url": self.base_url,
            "auth_scheme": self.auth_scheme,
            "rate": self.rate,
        }
        if "api_key" not in overrides:
            values["api_key"] = self.api_key(required=key) if key else self.api_key(required=False)
        values.update(overrides)
        env = {k: v for k, v in os.environ.items() if k not in ("WILLO_API_KEY", "WILLO_API_KEY_FILE")}
        return Settings.from_env(env, **values)

    def account(self, key: str | None = None) -> Account:
        return Account(
            self.name, self.base_url.rstrip("/"), fingerprint(key if key is not None else self.api_key())
        )

    def pacer(self, store: StateStore | None, key: str | None) -> Pacer | SharedPacer:
        """This account's rate budget: shared through ``store`` by every process, or
        (without a store) in this process's memory."""
        limits = self.limits()
        account = self.account(key)
        if store is None:
            return shared_pacer(limits.per_second, limits.per_minute, account.budget)
        on_quota = os.environ.get("WILLO_ON_QUOTA", "").strip() or self.on_quota
        return SharedPacer(
            store, account.budget, limits, label=f"connection {self.name}", on_quota=on_quota, name=self.name
        )

    def usage(self, store: StateStore) -> dict[str, Any] | None:
        """This account's current use of its shared budget (today against the quota, the
        last second and minute, 429s: :func:`connector.state.budget.usage`), with the
        connection's name; None when its key cannot be read. For metrics."""
        try:
            key = self.api_key(required=False)
        except ConfigError:
            return None
        if not key:
            return None
        from connector.state.budget import usage

        used = usage(store, self.account(key).budget)
        return {**used, "connection": self.name, "per_day": self.daily_quota}

    def describe(self) -> dict[str, Any]:
        """For ``connections`` and ``config show``: everything but the key, which is
        shown as its fingerprint (or why it cannot be read)."""
        try:
            key = self.api_key(required=False)
            fp, problem = fingerprint(key), None if key else "not set"
        except ConfigError as exc:
            fp, problem = "none", str(exc)
        return {
            "name": self.name,
            "description": self.description,
            "base_url": self.base_url,
            "key": fp,
            "key_from": self.key_source(),
            "key_problem": problem,
            "auth_scheme": self.auth_scheme or "(bare key)",
            "rate_limit": self.rate,
            "daily_quota": self.daily_quota,
            "on_quota": os.environ.get("WILLO_ON_QUOTA", "").strip() or self.on_quota,
            "defined_in": self.origin,
        }


class UnknownConnection(ConfigError):
    """A connection name that no file or environment defines."""


class Connections:
    """Every connection this process knows: ``default`` and the config file's."""

    def __init__(self, items: dict[str, Connection], config: configfile.ConfigFile | None = None):
        self.items = items
        self.config = config

    def names(self) -> list[str]:
        return sorted(self.items, key=lambda n: (n != DEFAULT, n))

    def __contains__(self, name: object) -> bool:
        return name in self.items

    def get(self, name: str | None, where: str = "") -> Connection:
        """The connection ``name`` (None: ``default``); an unknown name is a one-line
        :class:`UnknownConnection` with the closest names (``where`` prefixes it)."""
        name = name or DEFAULT
        found = self.items.get(name)
        if found is not None:
            return found
        source = f" in {self.config.path}" if self.config else " (no connections file: see WILLO_CONFIG)"
        raise UnknownConnection(
            f"{where}unknown connection {name!r}{configfile.closest(name, self.names())}; "
            f"connections: {', '.join(self.names())}{source}"
        )


def load(env: Mapping[str, str] | None = None) -> Connections:
    """The connections of the environment and the config file (validated)."""
    env = os.environ if env is None else env
    config = configfile.load(env)
    items: dict[str, Connection] = {}
    declared = config.connections if config else {}
    for name, spec in declared.items():
        if name != DEFAULT:
            items[name] = _from_file(name, spec, config)
    items[DEFAULT] = _default(env, config, declared.get(DEFAULT))
    return Connections(items, config)


def _from_file(name: str, spec: dict[str, Any], config: Any) -> Connection:
    base = f"/connections/{escape(name)}"
    where = {"": config.line(base)}
    for fld in spec:
        where[fld] = config.where(f"{base}/{escape(fld)}")
    where["key"] = where.get("api_key_env") or where.get("api_key_file") or where[""]
    conn = Connection(name, where=where, description=str(spec.get("description", "")))
    if "base_url" in spec:
        conn.base_url = str(spec["base_url"]).rstrip("/")
        _check_url(conn.base_url, where["base_url"])
    conn.auth_scheme = str(spec.get("auth_scheme", ""))
    conn.rate = str(spec.get("rate_limit", DEFAULT_RATE))
    conn.daily_quota = int(spec.get("daily_quota", DEFAULT_DAILY_QUOTA))
    conn.on_quota = str(spec.get("on_quota", "wait"))
    conn.key_env = spec.get("api_key_env")
    if spec.get("api_key_file"):
        conn.key_file = config.relative(str(spec["api_key_file"]))
    return conn


def _default(env: Mapping[str, str], config: Any, spec: dict[str, Any] | None) -> Connection:
    """``default``: the file's ``connections: default:`` (if any), each field
    overridden by its environment variable."""
    conn = _from_file(DEFAULT, spec, config) if spec is not None else Connection(DEFAULT)
    if spec is None:
        conn.where[""] = "environment"
    if env.get("WILLO_BASE_URL", "").strip():
        conn.base_url = env["WILLO_BASE_URL"].strip().rstrip("/")
        conn.where["base_url"] = "WILLO_BASE_URL"
    if "WILLO_AUTH_SCHEME" in env:
        conn.auth_scheme = env["WILLO_AUTH_SCHEME"]
        conn.where["auth_scheme"] = "WILLO_AUTH_SCHEME"
    if env.get("WILLO_RATE_LIMIT", "").strip():
        conn.rate = env["WILLO_RATE_LIMIT"]
        parse_rate(conn.rate)  # a one-line error now, naming the value
        conn.where["rate_limit"] = "WILLO_RATE_LIMIT"
    if env.get("WILLO_DAILY_QUOTA", "").strip():
        raw = env["WILLO_DAILY_QUOTA"].strip().replace("_", "").replace(",", "")
        if not raw.isdigit():
            raise ConfigError(
                f"WILLO_DAILY_QUOTA={raw[:20]!r}: give a whole number of requests a day (0: none)"
            )
        conn.daily_quota = int(raw)
        conn.where["daily_quota"] = "WILLO_DAILY_QUOTA"
    key_env = env.get("WILLO_API_KEY", "")
    key_file = env.get("WILLO_API_KEY_FILE", "").strip()
    if key_env.strip() and key_file:
        raise ConfigError("WILLO_API_KEY and WILLO_API_KEY_FILE are both set: set one of them")
    if key_env.strip():
        conn.key_env, conn.key_file, conn.where["key"] = "WILLO_API_KEY", None, "WILLO_API_KEY"
    elif key_file:
        conn.key_env, conn.key_file = None, Path(key_file).expanduser()
        conn.where["key"] = "WILLO_API_KEY_FILE"
    elif spec is None:
        conn.key_env, conn.where["key"] = "WILLO_API_KEY", "WILLO_API_KEY"  # unset: said when needed
    on_quota = env.get("WILLO_ON_QUOTA", "").strip()
    if on_quota and on_quota not in ON_QUOTA:
        raise ConfigError(f"WILLO_ON_QUOTA={on_quota[:20]!r}: use wait or fail")
    return conn


def _check_url(url: str, where: str) -> None:
    try:
        check_url(url)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


__all__ = [
    "DEFAULT",
    "DEFAULT_DAILY_QUOTA",
    "Account",
    "Connection",
    "Connections",
    "UnknownConnection",
    "account_of",
    "fingerprint",
    "load",
]
