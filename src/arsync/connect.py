"""`arsync connect NAME`: the authorization-code flow in a browser, and storing what it yields.

The consent address carries a random `state`; the answer must bring it back. Normally arsync
listens on 127.0.0.1 for the browser's redirect (RFC 8252 loopback redirect); on a machine
without a browser (`headless`) the person opens the address elsewhere and pastes back the
address the browser ended on (the page itself fails to load there, but its address holds the
code). QBO names the company in the redirect (`realmId`); Xero lists the organisations the
consent covered at its connections endpoint, and when there are several a person chooses.
"""

from __future__ import annotations

import html
import queue
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from arsync.clock import SystemClock
from arsync.connectors.base import (
    PLATFORM_NAMES,
    QBO_LIMITS,
    XERO_LIMITS,
    Link,
    StaticTokens,
    factory_for,
)
from arsync.connectors.governor import RateGovernor
from arsync.connectors.http import ApiSession
from arsync.connectors.oauth import (
    AuthorizationRequest,
    OAuthApp,
    TokenRecord,
    TokenVault,
    safe_error_code,
)
from arsync.domain import CompanyInfo
from arsync.errors import ArsyncError, AuthError, ConfigError, DataError
from arsync.store import Store

#: how long the browser is kept waiting for the final page while arsync finishes
_PAGE_WAIT = 120.0
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class TenantChoice:
    """One company the consent covered: QBO realm or Xero organisation."""

    tenant_id: str
    name: str


@dataclass(frozen=True)
class Connection:
    """What a finished consent yields: the company and its tokens (repr hides the tokens)."""

    platform: str
    tenant_id: str
    #: the company's own facts, read with the new grant (Xero Organisation; QBO CompanyInfo
    #: and Preferences)
    company: CompanyInfo
    tokens: TokenRecord
    redirect_uri: str
    #: every company the consent covered (Xero may cover several)
    offered: tuple[TenantChoice, ...] = ()
    #: the API calls the connect made, by the minute (UTC): they count against the same
    #: limits as the connector's own, so they are written down with it
    usage: dict[datetime, int] = field(default_factory=dict)


def connect(
    app: OAuthApp,
    *,
    open_browser: bool,
    headless: bool,
    choose_tenant: Callable[[list[TenantChoice]], TenantChoice],
    port: int = 0,
    timeout: float = 300,
    echo: Callable[[str], None],
    read_line: Callable[[str], str],
) -> Connection:
    """Run the consent flow once; AuthError when it is denied, tampered with or times out.

    Nothing is stored here: hand the result to `store_connection`.
    """
    listener: _Listener | None = None
    redirect_uri = app.redirect_uri
    if not headless:
        if redirect_uri is not None and not _is_loopback(redirect_uri):
            echo(
                f"The app's redirect address ({redirect_uri}) is not on this machine, "
                "so arsync cannot catch the answer itself; continuing as with --headless."
            )
            headless = True
        else:
            listener = _Listener.open(redirect_uri, port)
            redirect_uri = redirect_uri or f"http://127.0.0.1:{listener.port}/callback"
    if redirect_uri is None:
        redirect_uri = f"http://127.0.0.1:{port}/callback" if port else "http://127.0.0.1/callback"
    request = app.authorization_request(redirect_uri)
    try:
        echo(f"Open this address in a browser to connect arsync to {app.label}:")
        echo(request.url)
        if listener is not None:
            if open_browser:
                webbrowser.open(request.url)
            echo("Waiting for the browser (Ctrl-C to give up)...")
            answer = listener.wait(timeout)
        else:
            echo(
                "After you approve, the browser lands on an address that may not load. "
                "Copy that whole address from the address bar and paste it here."
            )
            answer = _Answer(parse_redirect(read_line("Address the browser ended on: ")), None)
        try:
            return _finish(app, request, answer, choose_tenant)
        except ArsyncError as err:
            answer.reply(_page("arsync was not connected", str(err)), 400)
            raise
    finally:
        if listener is not None:
            listener.close()


def parse_redirect(text: str) -> dict[str, str]:
    """The query of a pasted redirect address (the whole address, or just its `?…` part)."""
    text = text.strip()
    query = urlsplit(text).query if "://" in text else text.lstrip("?")
    params = dict(parse_qsl(query, keep_blank_values=True))
    if not params:
        raise AuthError(
            "that is not the address the browser ended on: paste the whole address, starting "
            "with http, from the browser's address bar"
        )
    return params


def check_redirect(params: dict[str, str], request: AuthorizationRequest, label: str) -> str:
    """The authorization code of a redirect that belongs to `request`; AuthError otherwise."""
    if params.get("state") != request.state:
        raise AuthError(
            "the answer from the browser does not belong to this connect attempt (its state "
            "does not match), so it was refused and nothing was stored. Run `arsync connect` "
            "again and use the address it prints."
        )
    error = params.get("error")
    if error == "access_denied":
        raise AuthError(
            f"access was denied on {label}'s consent page, so nothing was stored. Run "
            "`arsync connect` again and approve the connection (it needs someone allowed to "
            "connect apps to the company)."
        )
    if error is not None:
        raise AuthError(
            f"{label} refused the authorization ({safe_error_code(error)}); nothing was stored"
        )
    code = params.get("code")
    if not code:
        raise AuthError(
            "the answer from the browser carries no authorization code: use the whole address"
        )
    return code


def _finish(
    app: OAuthApp,
    request: AuthorizationRequest,
    answer: _Answer,
    choose_tenant: Callable[[list[TenantChoice]], TenantChoice],
) -> Connection:
    code = check_redirect(answer.params, request, app.label)
    if app.platform == "qbo" and not answer.params.get("realmId"):
        raise AuthError("QuickBooks did not say which company was connected (no realmId)")
    tokens = app.exchange_code(code, request.redirect_uri, request.code_verifier)
    usage = _Counted()
    session = _session(app, tokens, usage)
    try:
        offered, known = _companies(app, session, answer.params)
        if not offered:
            raise AuthError(
                f"the consent covered no {app.label} organisation: run `arsync connect` again "
                "and tick the organisation to connect"
            )
        if len(offered) == 1:
            chosen = offered[0]
            answer.reply(_page(f"arsync is connected to {chosen.name}", "You can close this tab."))
        else:
            answer.reply(
                _page(
                    f"arsync is connected to {app.label}",
                    "Choose the organisation in the terminal. You can close this tab.",
                )
            )
            chosen = choose_tenant(list(offered))
            if chosen.tenant_id not in {t.tenant_id for t in offered}:
                raise AuthError(
                    f"{chosen.name!r} is not among the organisations the consent covered"
                )
        company = known or _company(app, session, chosen.tenant_id)
    finally:
        session.governor.flush()
        session.close()
    return Connection(
        platform=app.platform,
        tenant_id=chosen.tenant_id,
        company=company,
        tokens=tokens,
        redirect_uri=request.redirect_uri,
        offered=tuple(offered),
        usage=dict(usage.counts),
    )


class _Counted:
    """A UsageLog that keeps the calls in memory until there is a connector to write them to."""

    def __init__(self) -> None:
        self.counts: dict[datetime, int] = {}

    def recent(self, since: datetime) -> list[tuple[datetime, int]]:
        return []

    def save(self, counts: dict[datetime, int]) -> None:
        for minute, calls in counts.items():
            self.counts[minute] = self.counts.get(minute, 0) + calls


def _session(app: OAuthApp, tokens: TokenRecord, usage: _Counted) -> ApiSession:
    limits = QBO_LIMITS if app.platform == "qbo" else XERO_LIMITS
    return ApiSession(
        platform=app.platform,
        tokens=StaticTokens(tokens.access_token),
        governor=RateGovernor(limits, app.clock, usage=usage),
        clock=app.clock,
    )


def _company(app: OAuthApp, session: ApiSession, tenant_id: str) -> CompanyInfo:
    """The chosen company's own facts, read by the platform's connector with the new grant."""
    limits = QBO_LIMITS if app.platform == "qbo" else XERO_LIMITS
    link = Link("connect", app.platform, tenant_id, app.endpoints.api_base, limits)
    return factory_for(app.platform)(link, session).company()


def _companies(
    app: OAuthApp, session: ApiSession, params: dict[str, str]
) -> tuple[list[TenantChoice], CompanyInfo | None]:
    """The companies the new grant reaches, with their names; for QBO, whose redirect names the
    one company, also that company's facts."""
    if app.platform == "qbo":
        realm = params["realmId"]
        company = _company(app, session, realm)
        return [TenantChoice(realm, company.name)], company
    url = app.endpoints.connections_url
    if url is None:
        raise ConfigError("the Xero endpoints lack connections_url")
    reply = session.call("GET", url, "Xero: listing the connected organisations")
    if not isinstance(reply.body, list):
        raise DataError("Xero's connections endpoint did not answer with a list")
    offered = [
        TenantChoice(str(row["tenantId"]), str(row.get("tenantName") or row["tenantId"]))
        for row in reply.body
        if isinstance(row, dict)
        and row.get("tenantId")
        and row.get("tenantType", "ORGANISATION") == "ORGANISATION"
    ]
    return offered, None


def store_connection(
    store: Store,
    vault: TokenVault,
    connector_name: str,
    platform: str,
    connection: Connection,
) -> int:
    """Record a finished consent in one transaction: the connector linked ("connected") with
    its company's facts, the tokens, and a "connected" event. Returns the connector's id.

    A connector keeps one company for life: its stored records belong to that company, so a
    consent for a different one is refused (ConfigError) and nothing changes.
    """
    if connection.platform != platform:
        raise ConfigError(
            f"connector {connector_name!r} is a {PLATFORM_NAMES.get(platform, platform)} "
            f"connector, but the consent was for {PLATFORM_NAMES[connection.platform]}"
        )
    with store.transaction() as tx:
        row, _ = tx.connectors.link(
            connector_name,
            platform,
            connection.tenant_id,
            connection.company,
            at=connection.tokens.connected_at,
        )
        vault.save(row.id, connection.tokens, tx)
        tx.usage.add(row.id, connection.usage)
    return row.id


# -- the loopback listener ---------------------------------------------------------------------


class _Answer:
    """The redirect's query, and the browser tab still waiting for its page (if any)."""

    def __init__(self, params: dict[str, str], pending: _PendingPage | None) -> None:
        self.params = params
        self._pending = pending

    def reply(self, page: str, status: int = 200) -> None:
        if self._pending is not None:
            self._pending.send(page, status)
            self._pending = None


#: a person's browser answers in the machine's real time, whatever clock arsync runs on
_REAL_TIME = SystemClock()


def _wait_for(ready: Callable[[], bool], timeout: float) -> bool:
    """Whether `ready()` came true within `timeout` seconds of real time.

    Polled with short sleeps rather than a timed lock wait, which some ways of running the
    machine's clock apart from its own (libfaketime, for one) turn into a wait without end.
    """
    deadline = _REAL_TIME.monotonic() + timeout
    while not ready():
        left = deadline - _REAL_TIME.monotonic()
        if left <= 0:
            return False
        _REAL_TIME.sleep(min(0.05, left))
    return True


class _PendingPage:
    def __init__(self) -> None:
        self._ready = threading.Event()
        self.page = _page("arsync", "Return to the terminal. You can close this tab.")
        self.status = 200

    def send(self, page: str, status: int) -> None:
        self.page, self.status = page, status
        self._ready.set()

    def wait(self, timeout: float) -> None:
        _wait_for(self._ready.is_set, timeout)


class _Listener:
    """An HTTP server on 127.0.0.1 that takes the first redirect to `path`."""

    def __init__(self, server: ThreadingHTTPServer, path: str) -> None:
        self._server = server
        self.path = path
        self.port: int = server.server_address[1]
        self.answers: queue.Queue[_Answer] = queue.Queue()
        self.done = threading.Event()
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.1,), name="arsync-connect", daemon=True
        )

    @classmethod
    def open(cls, redirect_uri: str | None, port: int) -> _Listener:
        path = "/callback"
        if redirect_uri is not None:
            parts = urlsplit(redirect_uri)
            port = parts.port or 80
            path = parts.path or "/"
        holder: list[_Listener] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                holder[0].handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the request line carries the authorization code

        try:
            server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        except OSError as err:
            raise ConfigError(
                f"cannot listen on 127.0.0.1:{port} for the browser's answer ({err.strerror}): "
                "choose another port, or connect with --headless"
            ) from err
        server.daemon_threads = True
        listener = cls(server, path)
        holder.append(listener)
        listener._thread.start()
        return listener

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        if parts.path != self.path:
            _respond(request, 404, _page("Not found", "This is arsync's connect listener."))
            return
        if self.done.is_set():
            _respond(request, 409, _page("arsync", "This connect attempt is over."))
            return
        self.done.set()
        pending = _PendingPage()
        self.answers.put(_Answer(dict(parse_qsl(parts.query, keep_blank_values=True)), pending))
        pending.wait(_PAGE_WAIT)
        _respond(request, pending.status, pending.page)

    def wait(self, timeout: float) -> _Answer:
        if _wait_for(lambda: not self.answers.empty(), timeout):
            return self.answers.get_nowait()
        raise AuthError(
            f"no answer from the browser within {timeout:.0f} seconds; nothing was stored. "
            "Run `arsync connect` again (or use --headless on a machine without a browser)"
        )

    def close(self) -> None:
        self.done.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _respond(request: BaseHTTPRequestHandler, status: int, page: str) -> None:
    body = page.encode("utf-8")
    request.send_response(status)
    request.send_header("Content-Type", "text/html; charset=utf-8")
    request.send_header("Content-Length", str(len(body)))
    request.send_header("Cache-Control", "no-store")
    request.send_header("Connection", "close")
    request.end_headers()
    request.wfile.write(body)


def _page(title: str, text: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;"
        "padding:0 1rem;color:#222}h1{font-size:1.4rem}</style></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
    )


def _is_loopback(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme == "http" and (parts.hostname or "") in _LOOPBACK_HOSTS


__all__ = [
    "Connection",
    "TenantChoice",
    "check_redirect",
    "connect",
    "parse_redirect",
    "store_connection",
]
