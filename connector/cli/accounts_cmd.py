"""``connections`` (and ``connections test NAME``) and ``config show``: the accounts
this machine talks to, their keys' fingerprints and budgets, and every setting with
where it came from."""

from __future__ import annotations

from typing import Any

import click

from connector.cli.common import emit_json, json_option
from connector.cli.run_cmd import state_dir_option

#: The request ``connections test`` makes: the smallest authenticated read (one interview).
TEST_ACTION = "willo.list_interviews"
TEST_INPUTS = {"page_size": 1}
#: The schemes tried after a 401 (DRF's TokenAuthentication says ``Token``).
SCHEMES = ("", "Bearer", "Token")


def _scheme_name(scheme: str) -> str:
    return scheme or "(bare key)"


def _listing(state_dir: str | None) -> list[dict[str, Any]]:
    from connector import connections
    from connector.errors import ConfigError
    from connector.state.budget import usage
    from connector.state.store import StateStore

    known = connections.load()
    store = StateStore(state_dir)
    rows = []
    for name in known.names():
        conn = known.get(name)
        info = conn.describe()
        try:
            key = conn.api_key(required=False)
        except ConfigError:
            key = None
        if key:
            account = conn.account(key)
            info["account"] = account.id
            used = usage(store, account.budget)
            info["today"] = {
                "used": used["used_today"],
                "quota": conn.daily_quota,
                "day": used["day"],
                "renews_at": used["renews_at"],
                "last_minute": used["last_minute"],
                "throttles": used["throttles"],
            }
        else:
            info["account"] = None
            info["today"] = None
        rows.append(info)
    return rows


@click.group(invoke_without_command=True)
@state_dir_option
@json_option
@click.pass_context
def connections(ctx: click.Context, state_dir: str | None, as_json: bool) -> None:
    """List the connections (Willo accounts): base URL, key fingerprint (never the
    key), limits and today's use of the daily quota. `connections test NAME` checks one."""
    if ctx.invoked_subcommand is not None:
        return
    rows = _listing(state_dir)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        today = r["today"]
        use = (
            f"{today['used']:,} of {today['quota']:,} today"
            if today and today["quota"]
            else f"{today['used']:,} today (no quota)"
            if today
            else "no key"
        )
        key = r["key"] if not r["key_problem"] else f"none ({r['key_problem']})"
        click.echo(f"{r['name']}  {r['base_url']}")
        if r["description"]:
            click.echo(f"  {r['description']}")
        click.echo(f"  key: {key} from {r['key_from']}; auth: {r['auth_scheme']}")
        click.echo(f"  limits: {r['rate_limit']} per second/minute, {use}; defined in {r['defined_in']}")


def probe(conn: Any, scheme: str) -> dict[str, Any]:
    """One authenticated request with ``scheme``: ``{"scheme", "status", "detail",
    "challenge"}`` (status None: no answer)."""
    from connector.errors import ConnectorError

    manifest = conn.catalog.get(TEST_ACTION, "action")
    client = conn.client
    saved = client.settings.auth_scheme
    client.settings.auth_scheme = scheme
    try:
        parts = conn.request_parts(manifest, TEST_INPUTS)
        req = client.build(parts["method"], parts["path"], params=parts["params"], manifest=manifest.data)
        resp = client._send(req, True)
    except ConnectorError as exc:
        return {"scheme": scheme, "status": None, "detail": str(exc), "challenge": None}
    finally:
        client.settings.auth_scheme = saved
    detail = ""
    if resp.status_code >= 400:
        try:
            client._decode(req, resp, False)
        except ConnectorError as exc:
            detail = getattr(exc, "message", str(exc))
    else:
        try:
            body = resp.json()
            detail = f"the key sees {body.get('count', '?')} interviews"
        except ValueError:
            detail = "not JSON"
    return {
        "scheme": scheme,
        "status": resp.status_code,
        "detail": detail,
        "challenge": resp.headers.get("WWW-Authenticate"),
    }


@connections.command("test")
@click.argument("name", default="default")
@state_dir_option
@json_option
def test(name: str, state_dir: str | None, as_json: bool) -> None:
    """Make one cheap authenticated request on connection NAME and say what works: the
    key, the base URL and, on a 401, which auth scheme (bare, Bearer, Token) the server
    accepts. Exits 1 unless the request succeeded as configured."""
    import sys

    from connector.cli.context import connector_for
    from connector.state.store import StateStore

    store = StateStore(state_dir)
    with connector_for(connection=name, store=store) as conn:
        spec = conn.connection
        assert spec is not None
        if not conn.client.settings.api_key:
            from connector.errors import ConfigError

            raise ConfigError(
                f"connection {name}: no key (set WILLO_API_KEY, or see `willo-connector connections`)"
            )
        configured = conn.client.settings.auth_scheme
        report: dict[str, Any] = {
            "connection": name,
            "base_url": conn.client.settings.base_url,
            "key": conn.account.fingerprint,
            "key_from": spec.key_source(),
            "auth_scheme": configured,
        }
        first = probe(conn, configured)
        tried = [first]
        if first["status"] == 401:
            tried += [probe(conn, s) for s in SCHEMES if s != configured]
    accepted = [t["scheme"] for t in tried if t["status"] is not None and t["status"] not in (401,)]
    report["tried"] = tried
    report["ok"] = first["status"] is not None and first["status"] < 400
    report["accepted_scheme"] = accepted[0] if accepted else None
    report["hint"] = _hint(name, spec, first, accepted)
    if as_json:
        emit_json(report)
    else:
        click.echo(f"connection {name}: {report['base_url']}, key {report['key']} from {report['key_from']}")
        for t in tried:
            status = t["status"] if t["status"] is not None else "no answer"
            challenge = (
                f" (server asks for: {t['challenge']})" if t["challenge"] and t["status"] == 401 else ""
            )
            click.echo(f"  auth {_scheme_name(t['scheme']):<11} -> {status}: {t['detail']}{challenge}")
        click.echo(report["hint"])
    if not report["ok"]:
        sys.exit(1)


def _hint(name: str, spec: Any, first: dict[str, Any], accepted: list[str]) -> str:
    status = first["status"]
    if status is None:
        return "no answer: check the base URL and the network (nothing was authenticated)"
    if status < 400:
        return f"ok: the key works with auth scheme {_scheme_name(first['scheme'])}"
    if status == 401 and accepted:
        scheme = accepted[0]
        where = spec.where.get("auth_scheme") or spec.where.get("") or "environment"
        how = (
            f"WILLO_AUTH_SCHEME={scheme}"
            if name == "default" and where in ("environment", "WILLO_AUTH_SCHEME")
            else f"auth_scheme: {scheme!r} for connection {name} ({where})"
        )
        return (
            f"the server refuses the key as configured but accepts it with {_scheme_name(scheme)}: set {how}"
        )
    if status == 401:
        return (
            "the server refuses the key with every scheme (bare, Bearer, Token): check the key and base URL"
        )
    if status == 403:
        return "the key is valid but may not list interviews (403): check its role and permissions"
    if status == 429:
        return "authenticated, but throttled now (429): the key works; try again later"
    return f"HTTP {status}: {first['detail']}"


@click.group()
def config() -> None:
    """The config file (WILLO_CONFIG, else connections.yaml in the XDG config folder)."""


@config.command("show")
@json_option
def show(as_json: bool) -> None:
    """Every setting with its value and where it came from (flag aside: environment,
    the config file's line, or the default), the connections with their keys masked
    (a fingerprint) and the secrets' references (never their values)."""
    from connector import config as configfile
    from connector import connections

    info = configfile.show()
    info["connections"] = [connections.load().get(n).describe() for n in connections.load().names()]
    if as_json:
        emit_json(info)
        return
    exists = "" if info["file_exists"] else " (not there: no file)"
    click.echo(f"config file: {info['file']}{exists}, from {info['named_by']}")
    click.echo("settings (precedence: flag > environment > file > default):")
    for s in info["settings"]:
        click.echo(f"  {s['name']} = {s['value']}  [{s['source']}]")
    click.echo("connections:")
    for c in info["connections"]:
        key = c["key"] if not c["key_problem"] else f"none ({c['key_problem']})"
        click.echo(
            f"  {c['name']}: {c['base_url']}, key {key} from {c['key_from']}, auth {c['auth_scheme']}, "
            f"rate {c['rate_limit']}, quota {c['daily_quota']:,}/day, on quota {c['on_quota']}  "
            f"[{c['defined_in']}]"
        )
    click.echo("secrets (references; values never shown):" if info["secrets"] else "secrets: none")
    for s in info["secrets"]:
        over = f", overridden by {s['overridden_by']}" if s["overridden_by"] else ""
        click.echo(f"  {s['name']}: {s['from']}  [{s['source']}{over}]")
