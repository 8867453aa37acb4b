"""OAuth 2.0 for QBO and Xero: the key, tokens encrypted at rest, single-flight refresh.

Refreshing is where connections are lost, so the rules are strict (DESIGN.md, invariants):
- one refresh at a time per connector: a lock per connector in this process, plus a row lock
  (`SELECT … FOR UPDATE`) on PostgreSQL or an exclusive `flock` on SQLite across processes;
  inside the lock the row is read again, and a refresh someone else just made is used as is;
- the rotated refresh token is committed before the new access token is handed out;
- a refresh whose reply is lost is retried with the same stored refresh token: both platforms
  accept the superseded token for a while (QBO 24 h, Xero 30 min), which also rescues a process
  killed between the platform's rotation and our commit;
- a refused refresh token (`invalid_grant`) marks the connector `reconnect_needed` and is never
  retried: only a person running `arsync connect NAME` can bring it back.
Tokens, client secrets and PKCE verifiers never reach logs, reprs or exception messages.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import structlog
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Connection, Engine, insert, select, update

from arsync.connectors.base import PLATFORM_NAMES, Endpoints
from arsync.connectors.http import retry_after_seconds
from arsync.errors import (
    ArsyncError,
    AuthError,
    ConfigError,
    DataError,
    RateLimited,
    ReconnectNeeded,
    TransientError,
)
from arsync.store.locks import file_lock
from arsync.store.locks import lock_dir as store_lock_dir
from arsync.store.schema import connectors, events, tokens

log = structlog.get_logger("arsync.oauth")

#: systemd's LoadCredential= puts credentials in this directory
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"


#: what arsync asks for: reading the ledger, sending reminders and writing notes
DEFAULT_SCOPES: dict[str, tuple[str, ...]] = {
    "qbo": ("com.intuit.quickbooks.accounting",),
    "xero": ("offline_access", "accounting.transactions", "accounting.contacts"),
}

#: access-token lifetimes when a reply leaves out expires_in (API-FACTS.md)
_ACCESS_LIFETIME = {"qbo": timedelta(seconds=3600), "xero": timedelta(seconds=1800)}
#: Xero's refresh token dies 60 days after issue if unused; its replies do not say so
XERO_REFRESH_IDLE = timedelta(days=60)

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def utc_now() -> datetime:
    return datetime.now(UTC)


# -- the key -----------------------------------------------------------------------------------


def generate_key() -> str:
    """A new Fernet key as the text one line of a key file holds."""
    return Fernet.generate_key().decode("ascii")


def load_key(
    path: Path | None, *, credential: str | None = None, create: bool = False
) -> MultiFernet:
    """The key ring that encrypts tokens at rest.

    The file holds Fernet keys, one a line (blank lines and `#` comments are skipped): the first
    encrypts, every one decrypts, so a key is rotated by putting a new one on top. `credential`
    reads `$CREDENTIALS_DIRECTORY/<credential>` (systemd `LoadCredential=`) instead of `path`.
    `create` makes a missing file (mode 0600, new directories 0700); a credential never is made.
    """
    if credential is not None:
        directory = os.environ.get(CREDENTIALS_ENV)
        if not directory:
            raise ConfigError(
                f"the token key is configured as the credential {credential!r}, but "
                f"${CREDENTIALS_ENV} is not set: run arsync under systemd with "
                f"LoadCredential={credential}:/path/to/key, or configure the key file's path"
            )
        path = Path(directory) / credential
        create = False  # systemd hands credentials over read-only
    if path is None:
        raise ConfigError("no token key file is configured (it encrypts the stored tokens)")
    if create and not path.exists():
        _create_key_file(path)
    return MultiFernet([Fernet(key) for key in _read_key_file(path)])


def _create_key_file(path: Path) -> None:
    missing: list[Path] = []
    parent = path.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    try:
        for directory in reversed(missing):
            # not Path.mkdir(parents=True): it makes the parents with the default mode
            with contextlib.suppress(FileExistsError):
                os.mkdir(directory, 0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return  # another process made it first: read theirs
    except OSError as err:
        raise ConfigError(f"cannot create the token key file {path}: {err.strerror}") from err
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(generate_key() + "\n")
        out.flush()
        os.fsync(out.fileno())
    log.info("token key created", path=str(path))


def _read_key_file(path: Path) -> list[bytes]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise ConfigError(
            f"the token key file {path} does not exist: restore it from a backup, or let arsync "
            "create a new one (tokens stored with the old key then need `arsync connect` again)"
        ) from None
    except OSError as err:
        raise ConfigError(f"cannot read the token key file {path}: {err.strerror}") from err
    with os.fdopen(fd, "rb") as handle:
        # fstat on the open file: the mode checked is the mode of the file read
        mode = os.fstat(handle.fileno()).st_mode & 0o777
        if mode & 0o077:
            raise ConfigError(
                f"the token key file {path} is open to other users (mode {mode:04o}); "
                f"run `chmod 600 {path}`"
            )
        raw = handle.read()
    try:
        lines = raw.decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise ConfigError(f"the token key file {path} is not a text file of keys") from None
    keys: list[bytes] = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            Fernet(text)
        except ValueError:
            # never echo the line: it may be a real key with a typo
            raise ConfigError(
                f"line {number} of the token key file {path} is not a Fernet key "
                "(32 url-safe base64-encoded bytes)"
            ) from None
        keys.append(text.encode("ascii"))
    if not keys:
        raise ConfigError(f"the token key file {path} holds no key")
    return keys


# -- tokens at rest ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenRecord:
    """One connector's tokens as stored (clear text only in memory; the repr hides them)."""

    access_token: str
    refresh_token: str
    access_expires_at: datetime
    refresh_expires_at: datetime | None
    #: when the refresh token was last used or issued (Xero: 60 days unused and it dies)
    refreshed_at: datetime
    connected_at: datetime
    scope: str | None = None
    #: bumped by every save, so a reader can tell someone refreshed meanwhile
    generation: int = 0

    def access_fresh(self, now: datetime, margin: timedelta = timedelta(0)) -> bool:
        """The access token is good for longer than `margin` from `now`."""
        return now + margin < self.access_expires_at

    def __repr__(self) -> str:
        return (
            "TokenRecord(access_token=<hidden>, refresh_token=<hidden>, "
            f"access_expires_at={self.access_expires_at.isoformat()}, "
            f"refresh_expires_at="
            f"{self.refresh_expires_at.isoformat() if self.refresh_expires_at else None}, "
            f"refreshed_at={self.refreshed_at.isoformat()}, "
            f"connected_at={self.connected_at.isoformat()}, scope={self.scope!r}, "
            f"generation={self.generation})"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class ConnectorState:
    """What the token code needs of a connectors row."""

    id: int
    name: str
    platform: str
    tenant_id: str | None
    status: str


class TokenVault:
    """Tokens in the `tokens` table, Fernet-encrypted; the reconnect-needed mark on connectors."""

    def __init__(
        self, engine: Engine, fernet: MultiFernet, *, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.engine = engine
        self._fernet = fernet
        self._clock = clock

    def __repr__(self) -> str:
        return f"TokenVault({self.engine.url.render_as_string(hide_password=True)!r})"

    @contextlib.contextmanager
    def _using(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
            return
        with self.engine.begin() as own:
            yield own

    def connector(self, connector_id: int, conn: Connection | None = None) -> ConnectorState | None:
        c = connectors.c
        with self._using(conn) as db:
            row = db.execute(
                select(c.id, c.name, c.platform, c.tenant_id, c.status).where(c.id == connector_id)
            ).first()
        if row is None:
            return None
        return ConnectorState(row.id, row.name, row.platform, row.tenant_id, row.status)

    def load(
        self, connector_id: int, conn: Connection | None = None, *, for_update: bool = False
    ) -> TokenRecord | None:
        """The stored tokens; `for_update` locks the row until `conn`'s transaction ends
        (PostgreSQL; SQLite has no row locks and SQLAlchemy leaves the clause out)."""
        query = select(tokens).where(tokens.c.connector_id == connector_id)
        if for_update:
            query = query.with_for_update()
        with self._using(conn) as db:
            row = db.execute(query).first()
        if row is None:
            return None
        return TokenRecord(
            access_token=self._decrypt(connector_id, row.access_token),
            refresh_token=self._decrypt(connector_id, row.refresh_token),
            access_expires_at=row.access_expires_at,
            refresh_expires_at=row.refresh_expires_at,
            refreshed_at=row.refreshed_at,
            connected_at=row.connected_at,
            scope=row.scope,
            generation=row.generation,
        )

    def save(
        self, connector_id: int, record: TokenRecord, conn: Connection | None = None
    ) -> TokenRecord:
        """Store `record` encrypted; returns it with the generation the row now has."""
        values: dict[str, Any] = {
            "access_token": self._fernet.encrypt(record.access_token.encode()),
            "refresh_token": self._fernet.encrypt(record.refresh_token.encode()),
            "access_expires_at": record.access_expires_at,
            "refresh_expires_at": record.refresh_expires_at,
            "refreshed_at": record.refreshed_at,
            "connected_at": record.connected_at,
            "scope": record.scope,
        }
        with self._using(conn) as db:
            generation = db.execute(
                update(tokens)
                .where(tokens.c.connector_id == connector_id)
                .values(**values, generation=tokens.c.generation + 1)
                .returning(tokens.c.generation)
            ).scalar()
            if generation is None:
                generation = 1
                db.execute(
                    insert(tokens).values(
                        connector_id=connector_id, generation=generation, **values
                    )
                )
        return replace(record, generation=int(generation))

    def mark_reconnect_needed(
        self,
        connector_id: int,
        reason: str,
        conn: Connection | None = None,
        *,
        at: datetime | None = None,
    ) -> None:
        """The grant is dead: flag the connector and say so in the paper trail."""
        with self._using(conn) as db:
            db.execute(
                update(connectors)
                .where(connectors.c.id == connector_id)
                .values(status="reconnect_needed", status_reason=reason)
            )
            db.execute(
                insert(events).values(
                    connector_id=connector_id,
                    at=at or self._clock(),
                    entity="connector",
                    action="reconnect_needed",
                    detail={"reason": reason},
                )
            )

    def reencrypt(self) -> int:
        """Encrypt every stored token with the key ring's first key (after a rotation)."""
        n = 0
        with self.engine.begin() as db:
            rows = db.execute(
                select(tokens.c.connector_id, tokens.c.access_token, tokens.c.refresh_token)
            ).all()
            for row in rows:
                try:
                    access = self._fernet.rotate(row.access_token)
                    refresh = self._fernet.rotate(row.refresh_token)
                except InvalidToken:
                    raise self._undecryptable(row.connector_id) from None
                db.execute(
                    update(tokens)
                    .where(tokens.c.connector_id == row.connector_id)
                    .values(access_token=access, refresh_token=refresh)
                )
                n += 1
        return n

    def _decrypt(self, connector_id: int, blob: bytes) -> str:
        try:
            return self._fernet.decrypt(blob).decode()
        except InvalidToken:
            raise self._undecryptable(connector_id) from None

    @staticmethod
    def _undecryptable(connector_id: int) -> ConfigError:
        return ConfigError(
            f"the stored tokens of connector {connector_id} cannot be decrypted with the "
            "configured key file: restore the key they were stored with (keep old keys below "
            "the new one when rotating), or run `arsync connect` for the connector again"
        )


# -- the OAuth app -----------------------------------------------------------------------------


class GrantRefused(AuthError):
    """The token endpoint refused the grant itself (a code or refresh token): `invalid_grant`."""

    def __init__(self, message: str, *, error: str) -> None:
        super().__init__(message)
        self.error = error


@dataclass(frozen=True)
class AuthorizationRequest:
    """One consent attempt: the address to open and what must come back with the code."""

    url: str
    state: str
    redirect_uri: str
    code_verifier: str | None = None

    def __repr__(self) -> str:
        return f"AuthorizationRequest(url={self.url!r}, redirect_uri={self.redirect_uri!r})"


_SAFE_WORD = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def safe_error_code(value: object) -> str:
    """An OAuth `error` value fit for a message: a bare word, or a placeholder."""
    if isinstance(value, str) and _SAFE_WORD.fullmatch(value):
        return value
    return "unrecognised error"


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256: base64url(sha256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def token_record_from_reply(
    platform: str,
    body: Any,
    now: datetime,
    *,
    previous: TokenRecord | None = None,
    scopes: Sequence[str] = (),
) -> TokenRecord:
    """A token endpoint's JSON reply as a TokenRecord (times from `now`, when it arrived)."""
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise DataError("the token endpoint's reply carries no access token")
    refresh = body.get("refresh_token")
    if not isinstance(refresh, str) or not refresh:
        if previous is None:
            raise DataError(
                "the token endpoint gave no refresh token (for Xero, offline_access must be "
                "among the scopes)"
            )
        refresh = previous.refresh_token  # QBO may leave an unchanged token out
    expires_in = _seconds(body.get("expires_in"))
    access_life = (
        timedelta(seconds=expires_in) if expires_in is not None else _ACCESS_LIFETIME[platform]
    )
    refresh_in = _seconds(body.get("x_refresh_token_expires_in"))
    refresh_expires: datetime | None
    if refresh_in is not None:
        refresh_expires = now + timedelta(seconds=refresh_in)
    elif platform == "xero":
        refresh_expires = now + XERO_REFRESH_IDLE
    else:
        refresh_expires = None
    scope = body.get("scope")
    if not isinstance(scope, str) or not scope:
        scope = previous.scope if previous and previous.scope else " ".join(scopes) or None
    return TokenRecord(
        access_token=body["access_token"],
        refresh_token=refresh,
        access_expires_at=now + access_life,
        refresh_expires_at=refresh_expires,
        refreshed_at=now,
        connected_at=previous.connected_at if previous else now,
        scope=scope,
        generation=previous.generation if previous else 0,
    )


def _seconds(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


class OAuthApp:
    """arsync's registered app on one platform: consent URL, code exchange, refresh, revoke.

    Client authentication is HTTP Basic (both platforms take it). Xero gets PKCE (S256) on top
    of the secret; QBO, a confidential client, the secret alone. All HTTP goes through httpx.
    """

    def __init__(
        self,
        platform: str,
        client_id: str,
        client_secret: str,
        endpoints: Endpoints | None = None,
        scopes: Sequence[str] | None = None,
        redirect_uri: str | None = None,
        *,
        http: httpx.Client | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if platform not in PLATFORM_NAMES:
            raise ConfigError(f"unknown platform {platform!r}: use 'qbo' or 'xero'")
        self.platform = platform
        self.client_id = client_id
        self._client_secret = client_secret
        self.endpoints = endpoints or Endpoints.production(platform)
        self.scopes = tuple(scopes or DEFAULT_SCOPES[platform])
        self.redirect_uri = redirect_uri
        self.clock = clock
        self._own_http = http is None
        self.http = http or httpx.Client(timeout=DEFAULT_TIMEOUT)

    @property
    def label(self) -> str:
        return PLATFORM_NAMES[self.platform]

    @property
    def uses_pkce(self) -> bool:
        return self.platform == "xero"

    def __repr__(self) -> str:
        return f"OAuthApp(platform={self.platform!r}, client_id={self.client_id!r})"

    def close(self) -> None:
        if self._own_http:
            self.http.close()

    def __enter__(self) -> OAuthApp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- consent -------------------------------------------------------------------------------
    def authorization_request(self, redirect_uri: str) -> AuthorizationRequest:
        """The consent address with a fresh random `state` (and PKCE verifier for Xero)."""
        state = secrets.token_urlsafe(24)
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(self.scopes),
            "state": state,
        }
        verifier = None
        if self.uses_pkce:
            verifier = secrets.token_urlsafe(64)  # 86 characters: within RFC 7636's 43..128
            params["code_challenge"] = pkce_challenge(verifier)
            params["code_challenge_method"] = "S256"
        sep = "&" if "?" in self.endpoints.authorize_url else "?"
        url = f"{self.endpoints.authorize_url}{sep}{urlencode(params)}"
        return AuthorizationRequest(url, state, redirect_uri, verifier)

    def exchange_code(
        self,
        code: str,
        redirect_uri: str,
        code_verifier: str | None = None,
        *,
        now: datetime | None = None,
    ) -> TokenRecord:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if code_verifier:
            form["code_verifier"] = code_verifier
        body = self._token_call(form, f"{self.label}: exchanging the authorization code")
        return token_record_from_reply(self.platform, body, now or self.clock(), scopes=self.scopes)

    def refresh(
        self,
        refresh_token: str,
        *,
        previous: TokenRecord | None = None,
        now: datetime | None = None,
    ) -> TokenRecord:
        """New tokens for `refresh_token`. GrantRefused when the platform refuses the token;
        TransientError when the answer was lost (the same token may then be tried again)."""
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        body = self._token_call(form, f"{self.label}: refreshing tokens")
        return token_record_from_reply(
            self.platform, body, now or self.clock(), previous=previous, scopes=self.scopes
        )

    def revoke(self, token: str) -> None:
        """Revoke the grant behind a refresh token (both platforms end the whole grant)."""
        what = f"{self.label}: revoking tokens"
        url = self.endpoints.revoke_url
        if self.platform == "qbo":
            response = self._post(url, what, json={"token": token})
        else:
            response = self._post(url, what, data={"token": token})
        if response.status_code >= 400:
            raise self._refusal(response, what)

    # -- the token endpoint ----------------------------------------------------------------------
    def _post(self, url: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.post(
                url,
                auth=(self.client_id, self._client_secret),
                headers={"Accept": "application/json"},
                **kwargs,
            )
        except httpx.TimeoutException as err:
            raise TransientError(f"{what}: timed out") from err
        except httpx.TransportError as err:
            # the request may have been performed: a lost reply (type name only, no body)
            raise TransientError(f"{what}: connection failed ({type(err).__name__})") from err

    def _token_call(self, form: dict[str, str], what: str) -> Any:
        response = self._post(self.endpoints.token_url, what, data=form)
        if response.status_code >= 400:
            raise self._refusal(response, what)
        try:
            return response.json()
        except ValueError:
            # a 200 we cannot read may still have rotated the token: worth another try
            raise TransientError(f"{what}: the reply was not JSON") from None

    def _refusal(self, response: httpx.Response, what: str) -> ArsyncError:
        """The error a failed token or revoke call stands for; never quotes the body."""
        status = response.status_code
        if status == 429:
            return RateLimited(
                f"{what}: rate limited (HTTP 429)",
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        if status >= 500:
            return TransientError(
                f"{what}: the platform failed (HTTP {status})",
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        error = safe_error_code(body.get("error") if isinstance(body, dict) else None)
        if error in ("invalid_client", "unauthorized_client") or status == 401:
            return AuthError(
                f"{what}: {self.label} refused the app's credentials ({error}, HTTP {status}): "
                "check the connector's client_id and client_secret"
            )
        return GrantRefused(f"{what}: refused ({error}, HTTP {status})", error=error)


# -- single-flight refresh ---------------------------------------------------------------------

_LOCKS: dict[tuple[str, int], threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _thread_lock(key: tuple[str, int]) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


class TokenManager:
    """A TokenSource for one connector: access tokens from the store, refreshed single-flight."""

    def __init__(
        self,
        vault: TokenVault,
        app: OAuthApp,
        connector_id: int,
        *,
        lock_dir: Path | None = None,
        refresh_margin: timedelta = timedelta(minutes=5),
        keepalive: timedelta = timedelta(days=7),
        clock: Callable[[], datetime] | None = None,
        attempts: int = 4,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.vault = vault
        self.app = app
        self.connector_id = connector_id
        self.refresh_margin = refresh_margin
        self.keepalive = keepalive
        self._clock = clock or app.clock
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._sleep = sleep
        engine = vault.engine
        if engine.dialect.name == "postgresql":
            self._lock_path: Path | None = None  # the row lock does it
        else:
            directory = lock_dir or store_lock_dir(engine)
            self._lock_path = directory / f"connector-{connector_id}.lock" if directory else None
        where = (
            str(self._lock_path)
            if self._lock_path
            else engine.url.render_as_string(hide_password=True)
        )
        self._lock = _thread_lock((where, connector_id))
        self._state = threading.Lock()
        self._current: TokenRecord | None = None
        self._refused: str | None = None

    def __repr__(self) -> str:
        return f"TokenManager(connector_id={self.connector_id}, platform={self.app.platform!r})"

    # -- TokenSource -----------------------------------------------------------------------------
    def access_token(self) -> str:
        now = self._clock()
        with self._state:
            current, refused = self._current, self._refused
        if current is None:
            current = self.vault.load(self.connector_id)  # unlocked: the common, fresh case
        if current is not None and self._usable(current, now, refused):
            self._remember(current)
            return current.access_token
        record, _ = self._locked(lambda row: not self._usable(row, self._clock(), refused))
        return record.access_token

    def invalidate(self, token: str) -> None:
        """After a 401: the next access_token() refreshes, unless `token` was already replaced."""
        with self._state:
            self._refused = token

    # -- more ----------------------------------------------------------------------------------
    def refresh(self, force: bool = False) -> TokenRecord:
        """Refresh when the access token is (nearly) stale, or always with `force`; a refresh
        another thread or process made meanwhile counts as done."""
        with self._state:
            seen = self._current.generation if self._current else None

        def needed(row: TokenRecord) -> bool:
            fresh = row.access_fresh(self._clock(), self.refresh_margin)
            if not force:
                return not fresh
            return not fresh or seen is None or row.generation == seen

        record, _ = self._locked(needed)
        return record

    def keep_alive(self) -> bool:
        """Refresh when the refresh token has not been used for `keepalive`: an idle Xero link
        must never reach 60 days unused. True when it refreshed."""
        _, refreshed = self._locked(lambda row: self._clock() - row.refreshed_at >= self.keepalive)
        return refreshed

    # -- internals -------------------------------------------------------------------------------
    def _usable(self, record: TokenRecord, now: datetime, refused: str | None) -> bool:
        return record.access_token != refused and record.access_fresh(now, self.refresh_margin)

    def _remember(self, record: TokenRecord) -> None:
        with self._state:
            if self._current is None or record.generation >= self._current.generation:
                self._current = record

    @contextlib.contextmanager
    def _process_lock(self) -> Iterator[None]:
        if self._lock_path is None:
            yield
            return
        self._lock_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with file_lock(self._lock_path):
            yield

    def _locked(self, needed: Callable[[TokenRecord], bool]) -> tuple[TokenRecord, bool]:
        """Under the connector's locks: re-read the row, refresh if `needed(row)`, commit."""
        failure: ArsyncError | None = None
        result: TokenRecord | None = None
        refreshed = False
        with self._lock, self._process_lock(), self.vault.engine.begin() as conn:
            # the row lock first: on PostgreSQL it is what serialises processes
            record = self.vault.load(self.connector_id, conn, for_update=True)
            state = self.vault.connector(self.connector_id, conn)
            if state is None or record is None:
                name = state.name if state else str(self.connector_id)
                failure = ReconnectNeeded(
                    f"connector {name!r} has no tokens: run `arsync connect {name}`"
                )
            elif state.status == "reconnect_needed":
                failure = self._reconnect_error(state, None)
            elif not needed(record):
                result = record
            else:
                try:
                    fresh = self._refresh_with_retries(state, record)
                except GrantRefused as err:
                    reason = (
                        f"{self.app.label} refused the refresh token ({err.error}); "
                        f"run `arsync connect {state.name}`"
                    )
                    self.vault.mark_reconnect_needed(
                        self.connector_id, reason, conn, at=self._clock()
                    )
                    failure = self._reconnect_error(state, err.error)
                    failure.__cause__ = err
                    log.warning(
                        "connector needs reconnecting", connector=state.name, error=err.error
                    )
                except ArsyncError as err:
                    failure = err
                else:
                    # committed when this block ends, before anyone is handed the new token
                    result = self.vault.save(self.connector_id, fresh, conn)
                    refreshed = True
        if failure is not None:
            raise failure
        assert result is not None
        if refreshed:
            log.info(
                "tokens refreshed",
                connector_id=self.connector_id,
                platform=self.app.platform,
                generation=result.generation,
            )
        self._remember(result)
        return result, refreshed

    def _refresh_with_retries(self, state: ConnectorState, record: TokenRecord) -> TokenRecord:
        """Refresh with the stored token; a lost reply is retried with the very same token."""
        delay = self._backoff
        for attempt in range(1, self._attempts + 1):
            try:
                return self.app.refresh(record.refresh_token, previous=record, now=self._clock())
            except (TransientError, DataError) as err:
                if attempt == self._attempts:
                    raise TransientError(
                        f"connector {state.name!r}: refreshing its tokens failed {attempt} times "
                        f"({err}); the stored refresh token is kept for the next try",
                        retry_after=getattr(err, "retry_after", None),
                    ) from err
                wait = getattr(err, "retry_after", None)
                self._sleep(min(wait if wait is not None else delay, 60.0))
                delay *= 2
                log.info("token refresh retried", connector=state.name, attempt=attempt + 1)
        raise AssertionError("unreachable")  # pragma: no cover

    def _reconnect_error(self, state: ConnectorState, error: str | None) -> ReconnectNeeded:
        why = f" ({error})" if error else ""
        return ReconnectNeeded(
            f"connector {state.name!r} needs reconnecting: {self.app.label} refused its refresh "
            f"token{why}. Run `arsync connect {state.name}` to connect it again."
        )
