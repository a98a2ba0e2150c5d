"""Requests to any HTTP(S) host, for the built-in ``http.request`` action.

Its own session and no pacing budget (the host is not Willo), the same retries,
deadline and typed errors as the Willo client (:class:`~connector.http.client.Transport`),
HTTPS only with loopback aside, ``prepare_request`` hooks run as for any request,
and the Willo API key never sent: it is never added, and a request that carries it
after the hooks ran (a hook copied it in) is refused. Response bodies are capped.
"""

from __future__ import annotations

import copy
import json as jsonlib
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from connector import __version__
from connector.errors import ConfigError, WilloError, error_for_status, short
from connector.http import step_timeout
from connector.http.client import PrepareHook, Settings, Transport, _plain, _Refuse, check_url
from connector.http.deadline import DeadlineAdapter
from connector.http.pacing import Pacer

MAX_RESPONSE = 10 * 1024 * 1024
IDEMPOTENT_METHODS = ("GET", "HEAD", "PUT", "DELETE", "OPTIONS")


class Outbound(Transport):
    """Sends ``http.request`` calls. Thread-safe; one per connector."""

    peer = "the host"
    stream = True
    counted_as = ("outbound_requests", None, "http.request")

    def __init__(
        self,
        settings: Settings,
        *,
        prepare: PrepareHook | None = None,
        forbidden: Callable[[], Iterable[str | None]] = lambda: (),
        dry_run: bool = False,
    ):
        self.settings = copy.copy(settings)  # timeouts and retries; never its key
        self.settings.api_key = None
        self.pacer = Pacer(0, 0)
        self._prepare = prepare
        self._forbidden = forbidden
        self.session = requests.Session()
        self.session.trust_env = False
        adapter: HTTPAdapter = _Refuse() if dry_run else DeadlineAdapter(pool_maxsize=16, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = f"willo-connector/{__version__}"
        self._verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self._proxies = {}
        self.requests_sent = 0

    def proxies(self, url: str) -> dict[str, str]:
        return dict(requests.utils.get_environ_proxies(url))

    def build(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        body: str | None = None,
        manifest: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The request as a dict, after the ``prepare_request`` hooks; checked."""
        check_url(url)
        req: dict[str, Any] = {
            "method": method.upper(),
            "url": url,
            "params": {k: _param(v) for k, v in (params or {}).items() if v is not None},
            "json": json,
            "data": body.encode("utf-8") if body is not None else None,
            "headers": {str(k): str(v) for k, v in (headers or {}).items()},
        }
        if json is not None and not any(k.lower() == "content-type" for k in req["headers"]):
            req["headers"]["Content-Type"] = "application/json"
        if self._prepare is not None:
            self._prepare(manifest or {}, req)
        check_url(req["url"])  # a hook may not turn it into plain http to a remote host
        self._refuse_keys(req)
        return req

    def _refuse_keys(self, req: dict[str, Any]) -> None:
        text = jsonlib.dumps([req["url"], req["headers"], req["params"]], default=str)
        body = req["json"] if req["json"] is not None else req["data"]
        text += (
            jsonlib.dumps(body, default=str)
            if not isinstance(body, bytes)
            else body.decode("utf-8", "replace")
        )
        for key in self._forbidden():
            if key and key in text:
                host = urlsplit(req["url"]).hostname
                raise ConfigError(
                    f"refusing to send the Willo API key to {host}: http.request never sends it "
                    "(a prepare_request hook or an input put it in the request)"
                )

    def request(
        self,
        method: str,
        url: str,
        *,
        idempotent: bool,
        timeout: float | None = None,
        fail_on_status: bool = True,
        **parts: Any,
    ) -> dict[str, Any]:
        """Send one request (retried as its idempotency allows); its status, headers
        and ``json`` (a JSON body) or ``text``."""
        req = self.build(method, url, **parts)
        with step_timeout.within(timeout):
            resp = self._send(req, idempotent)
        try:
            return self._decode(req, resp, fail_on_status, idempotent)
        finally:
            resp.close()

    def _decode(
        self, req: dict[str, Any], resp: requests.Response, fail_on_status: bool, idempotent: bool
    ) -> dict[str, Any]:
        method, url = req["method"], _plain(req["url"])
        if 300 <= resp.status_code < 400 and resp.status_code != 304 and fail_on_status:
            # not followed: a POST would go again as a GET, or nowhere; 304 answers a
            # conditional GET and is what the caller asked for
            raise self._redirect(resp, method, url, idempotent)
        raw = b""
        if method != "HEAD":
            for chunk in resp.iter_content(64 * 1024):  # decoded; stops past the cap
                raw += chunk
                if len(raw) > MAX_RESPONSE:
                    break
        if len(raw) > MAX_RESPONSE:
            raise WilloError(
                f"response body over {MAX_RESPONSE} bytes", status=resp.status_code, method=method, url=url
            )
        headers = {k.lower(): v for k, v in resp.headers.items()}
        out: dict[str, Any] = {"status": resp.status_code, "headers": headers}
        text = raw.decode(resp.encoding or "utf-8", errors="replace")
        if "json" in headers.get("content-type", "") and text.strip():
            try:
                out["json"] = jsonlib.loads(text)
            except ValueError:
                out["text"] = text
        else:
            out["text"] = text
        if resp.status_code >= 400 and fail_on_status:
            cls = error_for_status(resp.status_code)
            detail = f"{resp.reason or 'error'}" + (f": {short(text.strip(), 120)}" if text.strip() else "")
            retry_after = headers.get("retry-after", "")
            raise cls(
                detail,
                status=resp.status_code,
                method=method,
                url=url,
                retry_after=float(retry_after) if retry_after.isdigit() else None,
            )
        return out


def _param(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def idempotent_method(method: str) -> bool:
    return method.upper() in IDEMPOTENT_METHODS
