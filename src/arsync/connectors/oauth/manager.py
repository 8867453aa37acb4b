"""Single-flight token refresh: one connector's access tokens, refreshed one at a time.

Refreshing is where connections are lost, so the rules are strict (DESIGN.md, invariants):
- one refresh at a time per connector: a lock per connector in this process, and across
  processes the store's exclusive lock (a file lock beside SQLite, an advisory lock in
  PostgreSQL); inside the locks the tokens are read again, and a refresh someone else just
  made is used as is;
- no database transaction is open while the platform is called: the tokens are read in a short
  transaction, the refresh happens under the locks alone, and its result is saved in another
  short transaction, so a slow token endpoint never holds up another connector's writes;
- the rotated refresh token is committed before the new access token is handed out;
- a refresh whose reply is lost is retried with the same stored refresh token: both platforms
  accept the superseded token for a while (QBO 24 h, Xero 30 min), which also rescues a process
  killed between the platform's rotation and our commit;
- a refused refresh token (`invalid_grant`) marks the connector `reconnect_needed` and is never
  retried: only a person running `arsync connect NAME` can bring it back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from arsync.connectors.oauth.app import GrantRefused, OAuthApp, TokenRecord
from arsync.connectors.oauth.vault import TokenVault
from arsync.errors import DataError, ReconnectNeeded, TransientError
from arsync.store import ConnectorRow, ConnectorState

log = structlog.get_logger("arsync.oauth")

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
        refresh_margin: timedelta = timedelta(minutes=5),
        keepalive: timedelta = timedelta(days=7),
        attempts: int = 4,
        backoff: float = 1.0,
    ) -> None:
        self.vault = vault
        self.app = app
        self.connector_id = connector_id
        self.refresh_margin = refresh_margin
        self.keepalive = keepalive
        self._store = vault.store
        self._clock = vault.store.clock
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._lock = _thread_lock((repr(self._store), connector_id))
        self._state = threading.Lock()
        self._current: TokenRecord | None = None
        self._refused: str | None = None

    def __repr__(self) -> str:
        return f"TokenManager(connector_id={self.connector_id}, platform={self.app.platform!r})"

    # -- TokenSource -----------------------------------------------------------------------------
    def access_token(self) -> str:
        now = self._clock.now()
        with self._state:
            current, refused = self._current, self._refused
        if current is None:
            current = self.vault.load(self.connector_id)  # unlocked: the common, fresh case
        if current is not None and self._usable(current, now, refused):
            self._remember(current)
            return current.access_token
        record, _ = self._locked(lambda row: not self._usable(row, self._clock.now(), refused))
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
            fresh = row.access_fresh(self._clock.now(), self.refresh_margin)
            if not force:
                return not fresh
            return not fresh or seen is None or row.generation == seen

        record, _ = self._locked(needed)
        return record

    def keep_alive(self) -> bool:
        """Refresh when the refresh token has not been used for `keepalive`: an idle Xero link
        must never reach 60 days unused. True when it refreshed."""
        _, refreshed = self._locked(
            lambda row: self._clock.now() - row.refreshed_at >= self.keepalive
        )
        return refreshed

    # -- internals -------------------------------------------------------------------------------
    def _usable(self, record: TokenRecord, now: datetime, refused: str | None) -> bool:
        return record.access_token != refused and record.access_fresh(now, self.refresh_margin)

    def _remember(self, record: TokenRecord) -> None:
        with self._state:
            if self._current is None or record.generation >= self._current.generation:
                self._current = record

    def _locked(self, needed: Callable[[TokenRecord], bool]) -> tuple[TokenRecord, bool]:
        """Under the connector's locks: read the tokens, refresh if `needed`, save."""
        with self._lock, self._store.exclusive(f"tokens:{self.connector_id}", wait=True):
            with self._store.reading() as tx:
                row = tx.connectors.get(self.connector_id)
                record = self.vault.load(self.connector_id, tx)
            if record is None:
                raise ReconnectNeeded(
                    f"connector {row.name!r} has no tokens: run `arsync connect {row.name}`"
                )
            if row.status is ConnectorState.RECONNECT_NEEDED:
                raise self._reconnect_error(row, None)
            if not needed(record):
                self._remember(record)
                return record, False
            # No transaction is open here: the platform may take minutes to answer.
            try:
                fresh = self._refresh_with_retries(row, record)
            except GrantRefused as err:
                reason = (
                    f"{self.app.label} refused the refresh token ({err.error}); "
                    f"run `arsync connect {row.name}`"
                )
                with self._store.transaction() as tx:
                    tx.connectors.mark_reconnect_needed(self.connector_id, reason)
                log.warning("connector needs reconnecting", connector=row.name, error=err.error)
                raise self._reconnect_error(row, err.error) from err
            # committed before anyone is handed the new token
            result = self.vault.save(self.connector_id, fresh)
        log.info(
            "tokens refreshed",
            connector_id=self.connector_id,
            platform=self.app.platform,
            generation=result.generation,
        )
        self._remember(result)
        return result, True

    def _refresh_with_retries(self, row: ConnectorRow, record: TokenRecord) -> TokenRecord:
        """Refresh with the stored token; a lost reply is retried with the very same token."""
        delay = self._backoff
        for attempt in range(1, self._attempts + 1):
            try:
                return self.app.refresh(
                    record.refresh_token, previous=record, now=self._clock.now()
                )
            except (TransientError, DataError) as err:
                if attempt == self._attempts:
                    raise TransientError(
                        f"connector {row.name!r}: refreshing its tokens failed {attempt} times "
                        f"({err}); the stored refresh token is kept for the next try",
                        retry_after=getattr(err, "retry_after", None),
                    ) from err
                wait = getattr(err, "retry_after", None)
                self._clock.sleep(min(wait if wait is not None else delay, 60.0))
                delay *= 2
                log.info("token refresh retried", connector=row.name, attempt=attempt + 1)
        raise AssertionError("unreachable")  # pragma: no cover

    def _reconnect_error(self, row: ConnectorRow, error: str | None) -> ReconnectNeeded:
        why = f" ({error})" if error else ""
        return ReconnectNeeded(
            f"connector {row.name!r} needs reconnecting: {self.app.label} refused its refresh "
            f"token{why}. Run `arsync connect {row.name}` to connect it again."
        )


__all__ = ["TokenManager"]
