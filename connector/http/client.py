"""The Willo HTTP client: settings, safety, pacing, retries, pagination, typed errors.

Knows nothing of Willo's paths (those live in manifests); it knows how to talk to
an API like Willo's: a base URL, a key in ``Authorization``, JSON bodies, DRF-style
pages and error bodies.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.util.retry import Retry

from connector import __version__, redaction, telemetry
from connector.errors import (
    AmbiguousRequestError,
    CassetteMiss,
    ConfigError,
    NetworkError,
    WilloError,
    error_for_status,
    field_errors,
    short,
)
from connector.http import step_timeout
from connector.http.deadline import DeadlineAdapter, DeadlineExceeded, deadline
from connector.http.pacing import Pacing, parse_rate, shared_pacer

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.willotalent.com/api/integrations/v2"
DEFAULT_RATE = "10/100"
RETRY_STATUSES = (429, 500, 502, 503, 504)
#: ``next`` links followed at most, for one list (30 a page: 300,000 items)
MAX_PAGES = 10_000
REDACTED = redaction.REDACTED

#: Hook called with the request dict (method, url, params, json, headers) before sending.
PrepareHook = Callable[[Mapping[str, Any], dict[str, Any]], None]


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> None:
    """HTTPS only, loopback aside."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and is_loopback(parts.hostname):
        return
    if parts.scheme == "http":
        raise ConfigError(
            f"refusing plain http:// to {parts.hostname}: Willo is HTTPS only "
            "(http is allowed for loopback hosts such as the sandbox)"
        )
    raise ConfigError(f"not an http(s) URL: {url!r}")


@dataclass
class Settings:
    """Client settings, from arguments or the environment (``WILLO_*``)."""

    base_url: str = DEFAULT_BASE_URL
    api_key: str | None = field(default=None, repr=False)
    auth_scheme: str = ""
    rate: str = DEFAULT_RATE
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    #: one attempt, from sending to the answer's last byte (WILLO_TOTAL_TIMEOUT)
    total_timeout: float = 120.0
    #: the longest Retry-After the client waits for; a longer one is reported instead
    max_retry_after: float = 120.0
    max_retries: int = 4
    backoff: float = 0.5

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        redaction.register_env(env)
        s = cls(
            base_url=env.get("WILLO_BASE_URL") or DEFAULT_BASE_URL,
            api_key=env.get("WILLO_API_KEY") or (None if "api_key" in overrides else key_from_file(env)),
            auth_scheme=env.get("WILLO_AUTH_SCHEME", ""),
            rate=env.get("WILLO_RATE_LIMIT") or DEFAULT_RATE,
        )
        if env.get("WILLO_TIMEOUT", "").strip():
            s.read_timeout = _seconds("WILLO_TIMEOUT", env["WILLO_TIMEOUT"])
        if env.get("WILLO_TOTAL_TIMEOUT", "").strip():
            s.total_timeout = _seconds("WILLO_TOTAL_TIMEOUT", env["WILLO_TOTAL_TIMEOUT"])
        if env.get("WILLO_MAX_RETRIES"):
            try:
                s.max_retries = int(env["WILLO_MAX_RETRIES"])
            except ValueError:
                raise ConfigError("WILLO_MAX_RETRIES is not a whole number") from None
            if s.max_retries < 0:
                raise ConfigError("WILLO_MAX_RETRIES cannot be negative")
        for k, v in overrides.items():
            if v is not None:
                setattr(s, k, v)
        s.base_url = s.base_url.rstrip("/")
        s.normalize()
        return s

    def normalize(self) -> None:
        """Strip the whitespace a key file or a Kubernetes secret leaves around the key
        and the scheme, refuse what cannot go in a header, and register the key as a
        secret. Error messages name the setting, never its value."""
        self.api_key = header_token("WILLO_API_KEY", self.api_key)
        self.auth_scheme = header_token("WILLO_AUTH_SCHEME", self.auth_scheme) or ""
        redaction.register(self.api_key)

    def authorization(self) -> str:
        if not self.api_key:
            raise ConfigError(
                "set WILLO_API_KEY to your Willo API key (Willo: Settings > Integrations), "
                "or use --sandbox to try the connector without an account"
            )
        self.normalize()  # settings may have been changed after from_env
        assert self.api_key is not None
        return f"{self.auth_scheme} {self.api_key}" if self.auth_scheme else self.api_key


def key_from_file(env: Mapping[str, str]) -> str | None:
    """The key in the file ``WILLO_API_KEY_FILE`` names (a Docker or Kubernetes
    secret), stripped; None when it is not set. Both it and ``WILLO_API_KEY`` set is
    an error, as is a file that cannot be read (named, its content never shown)."""
    path = env.get("WILLO_API_KEY_FILE", "").strip()
    if not path:
        return None
    if env.get("WILLO_API_KEY", "").strip():
        raise ConfigError("WILLO_API_KEY and WILLO_API_KEY_FILE are both set: set one of them")
    from connector.config import read_secret_file

    return read_secret_file(Path(path).expanduser(), "WILLO_API_KEY_FILE")


def header_token(name: str, value: str | None) -> str | None:
    """``value`` stripped; a ConfigError (that does not quote it) if it holds anything
    but visible ASCII: a line break or NUL inside, a space, a non-ASCII character."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    bad = next((c for c in value if not "!" <= c <= "~"), None)
    if bad is not None:
        what = (
            "a space"
            if bad == " "
            else "a non-ASCII character"
            if ord(bad) > 127
            else f"a control character (U+{ord(bad):04X})"
        )
        raise ConfigError(
            f"{name} holds {what} inside it and cannot be sent in a header; "
            "fix the setting (its value is not shown)"
        )
    return value


def _seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={short(raw)} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name}={short(raw)}: give a number of seconds greater than 0")
    return value


class _Refuse(HTTPAdapter):
    """Transport of a dry run: any attempt to send is a bug, and fails loudly."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"dry run: refusing to send {request.method} {request.url}")


class Transport:
    """Sending with pacing, retries (urllib3 ``Retry`` semantics), the step deadline
    and typed transport errors; shared by the Willo client and the outbound client of
    ``http.request``. Subclasses set ``settings``, ``pacer``, ``session``."""

    #: who is at the other end, for messages ("cannot reach Willo")
    peer = "Willo"
    #: the metrics its attempts are counted under (``connector.telemetry``): every
    #: attempt, its 429s (None: not counted), and the action label when none is given
    counted_as: tuple[str, str | None, str] = ("api_requests", "api_throttled", "other")
    #: read the body lazily (the outbound client caps its size)
    stream = False
    settings: Settings
    pacer: Pacing
    session: requests.Session
    requests_sent: int
    _verify: bool | str
    _proxies: dict[str, str]

    def proxies(self, url: str) -> dict[str, str]:
        return self._proxies

    def _pace(self, method: str, url: str) -> None:
        """Wait for the rate budget; never send once the step's timeout has run out."""
        step_timeout.check(f"sending {method} {url}")
        self.pacer.acquire()
        try:
            step_timeout.check(f"sending {method} {url} (waiting for the rate limit)")
        except BaseException:
            self._release()  # never sent: not in flight
            raise

    def _release(self) -> None:
        """The request of this thread's slot is over without an answer (the pacer then
        stops counting it as in flight)."""
        release = getattr(self.pacer, "release", None)
        if release is not None:
            release()

    def _retry(self, idempotent: bool) -> Retry:
        n = self.settings.max_retries
        return Retry(
            total=n,
            connect=n,
            read=n if idempotent else 0,
            status=n,
            other=0,
            redirect=0,
            allowed_methods=None,
            status_forcelist=RETRY_STATUSES if idempotent else (429,),
            backoff_factor=self.settings.backoff,
            backoff_jitter=self.settings.backoff / 2,
            backoff_max=60,
            respect_retry_after_header=True,
            raise_on_status=False,
        )

    def _send(self, req: dict[str, Any], idempotent: bool, action: str | None = None) -> requests.Response:
        retry = self._retry(idempotent)
        attempts, throttled, default = self.counted_as
        action = action or default
        prepared = self.session.prepare_request(
            requests.Request(
                req["method"],
                req["url"],
                params=req["params"] or None,  # none: requests' costly checks of a mapping skipped
                json=req["json"],
                data=req.get("data"),
                headers=req["headers"],
            )
        )
        method, url = req["method"], _plain(req["url"])
        while True:
            self._pace(method, url)
            timeout = (
                step_timeout.cap(self.settings.connect_timeout),
                step_timeout.cap(self.settings.read_timeout),
            )
            self.requests_sent += 1
            began = time.monotonic()
            try:
                try:
                    resp = self._send_once(prepared, timeout, method, url)
                except BaseException:
                    self._release()
                    raise
            except requests.RequestException as exc:
                telemetry.inc(attempts, action=action, status="error")
                cause = _transport_cause(exc)
                if isinstance(cause, (ProtocolError, ReadTimeoutError)) and not idempotent:
                    raise AmbiguousRequestError(
                        f"connection lost after sending ({_reason(cause)}); not resent because "
                        "the request may have landed and is not idempotent",
                        method=method,
                        url=url,
                    ) from None
                try:
                    retry = retry.increment(method, url, error=cause)
                except MaxRetryError:
                    unreachable = isinstance(cause, (NewConnectionError, ConnectTimeoutError))
                    what = f"cannot reach {self.peer}" if unreachable else f"no answer from {self.peer}"
                    raise NetworkError(f"{what}: {_reason(cause)}", method=method, url=url) from None
                except Exception:  # Retry re-raises errors it will not retry
                    raise NetworkError(f"{_reason(cause)}", method=method, url=url) from None
                log.info("retrying %s %s after %s", method, url, _reason(cause))
                step_timeout.check(f"retrying {method} {url}", retry.get_backoff_time())
                retry.sleep()
                continue
            observe = getattr(self.pacer, "observe", None)
            if observe is not None:
                observe(time.monotonic() - began)  # how much round trips vary widens the slack
            code = resp.status_code
            telemetry.inc(attempts, action=action, status=str(code))
            if code == 429:
                if throttled is not None:
                    telemetry.inc(throttled, action=action)
                self.pacer.throttled(_retry_after(resp))
            if code in (retry.status_forcelist or ()) and retry.is_retry(
                method, code, "Retry-After" in resp.headers
            ):
                wait = _retry_after(resp)
                if wait is not None and wait > self.settings.max_retry_after:
                    log.warning(
                        "%s %s: Retry-After %g s is more than the %g s the client waits; not retried",
                        method,
                        url,
                        wait,
                        self.settings.max_retry_after,
                    )
                    return resp
                try:
                    retry = retry.increment(method, url, response=resp.raw)
                except MaxRetryError:
                    return resp
                log.info("retrying %s %s after HTTP %s", method, url, code)
                left = step_timeout.remaining()
                if left is not None and left <= (wait or retry.get_backoff_time()):
                    return resp  # the step's timeout comes first: report this answer
                retry.sleep(resp.raw)
                if self.stream:
                    resp.close()
                continue
            return resp

    def _send_once(
        self, prepared: requests.PreparedRequest, timeout: tuple[float, float], method: str, url: str
    ) -> requests.Response:
        """One attempt, within the total deadline (a watchdog ends a trickled answer)."""
        with deadline(self.settings.total_timeout) as attempt:
            try:
                return self.session.send(
                    prepared,
                    timeout=timeout,
                    allow_redirects=False,
                    proxies=self.proxies(prepared.url or ""),
                    verify=self._verify,
                    stream=self.stream,
                )
            except Exception as exc:
                if attempt.expired:
                    raise requests.ReadTimeout(DeadlineExceeded(attempt.seconds)) from None
                if isinstance(exc, requests.RequestException):
                    raise
                self._cassette_miss(exc, method, url)
                raise

    def _redirect(self, resp: requests.Response, method: str, url: str, idempotent: bool) -> WilloError:
        """A 3xx is never success: no client of ours follows a redirect (the Willo key
        would go with it; a POST would be sent again as a GET), and Django answers a
        path without its trailing slash with a 301 and an empty body, having done
        nothing."""
        location = resp.headers.get("Location", "")
        target = urljoin(resp.url or url, location) if location else ""
        hint = ""
        if target and urlsplit(target).path == urlsplit(url).path + "/":
            hint = "; the request path needs a trailing slash"
        text = (
            f"redirect to {short(target, 200)[1:-1] if target else '(no Location)'}, which the client "
            f"does not follow{hint}"
        )
        # a 303 answers a request that was carried out: for a create, it may have landed
        cls = AmbiguousRequestError if resp.status_code == 303 and not idempotent else WilloError
        return cls(redaction.scrub(text), status=resp.status_code, method=method, url=url)

    def _cassette_miss(self, exc: Exception, method: str, url: str) -> None:
        if type(exc).__name__ == "CannotOverwriteExistingCassetteException":  # vcrpy replay
            raise CassetteMiss("the cassette does not hold this request", method=method, url=url) from None


class WilloClient(Transport):
    """Sends requests to Willo. Thread-safe; share one per process."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        prepare: PrepareHook | None = None,
        pacer: Pacing | None = None,
        session: requests.Session | None = None,
        dry_run: bool = False,
    ):
        self.settings = settings or Settings.from_env()
        self.settings.normalize()
        check_url(self.settings.base_url)
        self._prepare = prepare
        per_s, per_m = parse_rate(self.settings.rate)
        self.pacer: Pacing = pacer or shared_pacer(per_s, per_m, _budget_name(self.settings))
        self.dry_run = dry_run
        self.session = session or requests.Session()
        adapter: HTTPAdapter = (
            _Refuse() if dry_run else DeadlineAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
        )
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        # Read proxy and CA settings from the environment once, not on every request.
        self._proxies = requests.utils.get_environ_proxies(self.settings.base_url)
        self._verify: bool | str = (
            os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        )
        self.session.trust_env = False
        self.session.headers["User-Agent"] = f"willo-connector/{__version__}"
        self.session.headers["Accept"] = "application/json"
        self.requests_sent = 0
        self.max_pages = MAX_PAGES

    # ------------------------------------------------------------------ building

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            self._same_origin(path)
            return path
        return self.settings.base_url + "/" + path.lstrip("/")

    def _same_origin(self, url: str) -> None:
        base, other = urlsplit(self.settings.base_url), urlsplit(url)
        if (base.scheme, base.netloc) != (other.scheme, other.netloc):
            raise WilloError(
                f"refusing to follow {other.scheme}://{other.netloc}: not the configured "
                "Willo host, and the API key would be sent there"
            )

    def build(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        manifest: Mapping[str, Any] | None = None,
        authorize: bool = True,
    ) -> dict[str, Any]:
        """The request as a dict (after ``prepare_request`` hooks), not yet sent."""
        headers = {"Authorization": self.settings.authorization()} if authorize else {}
        if json is not None:
            headers["Content-Type"] = "application/json"
        req: dict[str, Any] = {
            "method": method.upper(),
            "url": self.url(path),
            "params": {k: _param(v) for k, v in (params or {}).items() if v is not None},
            "json": json,
            "headers": headers,
        }
        if self._prepare is not None:
            self._prepare(manifest or {}, req)
        check_url(req["url"])
        return req

    def preview(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """What :meth:`request` would send, with the key redacted (for dry runs)."""
        authorize = bool(self.settings.api_key)
        req = self.build(method, path, authorize=authorize, **kwargs)
        req["headers"] = redact_headers(req["headers"])
        req["json"] = redact_body(req["json"])
        if not authorize:
            req["headers"]["Authorization"] = "<WILLO_API_KEY, not set>"
        return req

    # ------------------------------------------------------------------ sending

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotent: bool | None = None,
        manifest: Mapping[str, Any] | None = None,
        binary: bool = False,
    ) -> Any:
        """Send one request (paced, retried) and return its decoded JSON body."""
        req = self.build(method, path, params=params, json=json, manifest=manifest)
        if idempotent is None:
            idempotent = req["method"] in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS")
        resp = self._send(req, idempotent, action=str((manifest or {}).get("id") or "other"))
        return self._decode(req, resp, binary, idempotent)

    def _decode(
        self, req: dict[str, Any], resp: requests.Response, binary: bool, idempotent: bool = True
    ) -> Any:
        method, url = req["method"], _plain(req["url"])
        if resp.status_code >= 400:
            raise self._error(resp, method, url)
        if 300 <= resp.status_code < 400:
            raise self._redirect(resp, method, url, idempotent)
        if binary:
            body = resp.content
            return {
                "content_type": resp.headers.get("Content-Type", ""),
                "size": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
            }
        if resp.status_code == 204 or not resp.content:
            return {}
        try:
            return resp.json()
        except ValueError:
            raise WilloError(
                f"expected JSON, got {resp.headers.get('Content-Type', 'no content type')}",
                status=resp.status_code,
                method=method,
                url=url,
            ) from None

    def _error(self, resp: requests.Response, method: str, url: str) -> WilloError:
        message, fields = parse_error_body(resp)
        retry_after = _retry_after(resp)
        if retry_after is not None and retry_after > self.settings.max_retry_after:
            message += (
                f" (Retry-After {retry_after:g} s is more than the {self.settings.max_retry_after:g} s "
                "the client waits; try again later)"
            )
        cls = error_for_status(resp.status_code)
        return cls(
            self.scrub(message),
            status=resp.status_code,
            method=method,
            url=url,
            field_errors={self.scrub(k): self._scrub_all(v) for k, v in fields.items()},
            retry_after=retry_after,
        )

    def _scrub_all(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.scrub(str(v)) for v in value]
        return self.scrub(str(value))

    def scrub(self, text: str) -> str:
        return redaction.scrub(text)

    def pages(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        next_field: str = "next",
        manifest: Mapping[str, Any] | None = None,
    ) -> Iterator[Any]:
        """Each page of a paged list as it arrives, following ``next`` links on the same
        host (a generator: the next page is asked for when this one is done with); a link
        already fetched (a loop) or more than :attr:`max_pages` pages is an error."""
        # the links fetched, as given (a loop repeats its links as they were given, so
        # it is seen without encoding each one again); the first also as it was sent
        first = self.url(path)
        seen = {full_url(first, params)}
        if not params:
            seen.add(first)  # (a link back to it, given as it was asked)
        fetched = 1  # (the first may be in ``seen`` twice)
        page = self.request(method, path, params=params, manifest=manifest)
        while True:
            nxt = page.get(next_field) if isinstance(page, dict) else None
            yield page
            if not nxt:
                return
            link = self._rebase(urljoin(first, str(nxt)))
            if link in seen:
                raise WilloError(
                    f"pagination loops: the next link {short(link, 120)} was already fetched",
                    method=method,
                    url=_plain(link),
                )
            if fetched >= self.max_pages:
                raise WilloError(
                    f"more than {self.max_pages} pages; stopped (is the next link ever null?)",
                    method=method,
                    url=_plain(link),
                )
            seen.add(link)
            fetched += 1
            page = self.request(method, link, manifest=manifest)

    def paginate(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        items: str = "results",
        next_field: str = "next",
        manifest: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> list[Any]:
        """Every item of a paged list (see :meth:`pages`), in one list."""
        found: list[Any] = []
        for page in self.pages(method, path, params=params, next_field=next_field, manifest=manifest):
            found.extend(page.get(items) or [])
            if limit is not None and len(found) >= limit:
                break
        return found

    def _rebase(self, url: str) -> str:
        """A ``next`` link as a URL on the configured base: the key goes nowhere else.

        (A link on another host, e.g. in a cassette recorded against the sandbox, is
        asked of the configured host for the same path and query.)"""
        base, link = urlsplit(self.settings.base_url), urlsplit(url)
        if not link.path.startswith(base.path):
            raise WilloError(f"refusing to follow a next link outside the API: {link.path}")
        query = f"?{link.query}" if link.query else ""
        return f"{base.scheme}://{base.netloc}{link.path}{query}"

    def close(self) -> None:
        self.session.close()


def _budget_name(settings: Settings) -> str:
    """Which in-memory budget a client without its own pacer draws on: one per base
    URL and key (as :attr:`connector.connections.Account.budget` names shared ones)."""
    key = hashlib.sha256((settings.api_key or "").encode()).hexdigest()[:16]
    return f"{settings.base_url.rstrip('/')}#{key}"


def full_url(url: str, params: Mapping[str, Any] | None) -> str:
    """``url`` with ``params`` encoded exactly as :meth:`WilloClient.request` sends them."""
    prepared = requests.PreparedRequest()
    prepared.prepare_url(url, {k: _param(v) for k, v in (params or {}).items() if v is not None})
    return str(prepared.url)


def _param(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _plain(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _transport_cause(exc: requests.RequestException) -> Exception:
    cause: Any = exc.args[0] if exc.args else exc
    if isinstance(cause, MaxRetryError) and cause.reason is not None:
        cause = cause.reason
    if isinstance(exc, requests.ConnectTimeout) and not isinstance(cause, ConnectTimeoutError):
        return ConnectTimeoutError(str(cause))
    if isinstance(exc, requests.ReadTimeout) and not isinstance(cause, ReadTimeoutError):
        return ReadTimeoutError(None, "", str(cause))  # type: ignore[arg-type]
    if isinstance(cause, (NewConnectionError, ConnectTimeoutError, ProtocolError, ReadTimeoutError)):
        return cause
    return ProtocolError(str(cause))


def _retry_after(resp: requests.Response) -> float | None:
    """The Retry-After header in seconds (a number or an HTTP date), if usable."""
    raw = resp.headers.get("Retry-After", "").strip()
    if not raw:
        return None
    try:
        if raw.isdigit():
            return float(raw)
        return max(0.0, float(Retry().parse_retry_after(raw)))
    except Exception:  # urllib3 raises InvalidHeader for a value it cannot read
        return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DeadlineExceeded):
        return f"no complete answer within {exc.seconds:g} s (WILLO_TOTAL_TIMEOUT)"
    if isinstance(exc, NewConnectionError):
        return "connection refused or host not found"
    if isinstance(exc, ConnectTimeoutError):
        return "connect timed out"
    if isinstance(exc, ReadTimeoutError):
        return "read timed out"
    return "connection closed without a response"


def parse_error_body(resp: requests.Response) -> tuple[str, dict[str, list[str]]]:
    """Willo's (DRF-style) error body: the message, and the field errors by pointer
    (``{"detail": ...}``, ``{"field": [msgs]}`` and every nested shape, see
    :func:`connector.errors.field_errors`)."""
    try:
        body = resp.json()
    except (ValueError, RecursionError):  # not JSON, or nested past what the parser takes
        return resp.reason or f"HTTP {resp.status_code}", {}
    if isinstance(body, dict):
        detail = next(
            (body.pop(k) for k in ("detail", "message", "error") if isinstance(body.get(k), str)), None
        )
        for k in ("code", "status"):
            if not isinstance(body.get(k), (dict, list)):
                body.pop(k, None)
    else:
        detail = None
    general, fields = field_errors(body)
    detail = detail or " ".join(general) or None
    if not detail:
        detail = "invalid request" if fields else (resp.reason or f"HTTP {resp.status_code}")
    return str(detail), fields


SECRET_FIELDS = ("secret", "password", "token", "api_key")


def redact_body(body: Any) -> Any:
    """A JSON body with secret-looking fields (a webhook's ``secret``...) redacted."""
    if isinstance(body, dict):
        return {k: REDACTED if k.lower() in SECRET_FIELDS and v else redact_body(v) for k, v in body.items()}
    if isinstance(body, list):
        return [redact_body(v) for v in body]
    return body


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        k: (REDACTED if k.lower() in ("authorization", "x-api-key", "cookie") else v)
        for k, v in headers.items()
    }
