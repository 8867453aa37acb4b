"""Tokens at rest: each connector's tokens Fernet-encrypted in the store, clear only in memory."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace

from cryptography.fernet import InvalidToken, MultiFernet

from arsync.connectors.oauth.app import TokenRecord
from arsync.errors import ConfigError
from arsync.store import Store, Tx


class TokenVault:
    def __init__(self, store: Store, fernet: MultiFernet) -> None:
        self.store = store
        self._fernet = fernet

    def __repr__(self) -> str:
        return f"TokenVault({self.store!r})"

    @contextlib.contextmanager
    def _within(self, tx: Tx | None, *, write: bool) -> Iterator[Tx]:
        if tx is not None:
            yield tx
            return
        with self.store.transaction() if write else self.store.reading() as own:
            yield own

    def load(self, connector_id: int, tx: Tx | None = None) -> TokenRecord | None:
        with self._within(tx, write=False) as t:
            stored = t.tokens.load(connector_id)
        if stored is None:
            return None
        return TokenRecord(
            access_token=self._decrypt(connector_id, stored.access_token),
            refresh_token=self._decrypt(connector_id, stored.refresh_token),
            access_expires_at=stored.access_expires_at,
            refresh_expires_at=stored.refresh_expires_at,
            refreshed_at=stored.refreshed_at,
            connected_at=stored.connected_at,
            scope=stored.scope,
            generation=stored.generation,
        )

    def save(self, connector_id: int, record: TokenRecord, tx: Tx | None = None) -> TokenRecord:
        """Store `record` encrypted; returns it with the generation the row now has."""
        with self._within(tx, write=True) as t:
            generation = t.tokens.save(
                connector_id,
                access_token=self._fernet.encrypt(record.access_token.encode()),
                refresh_token=self._fernet.encrypt(record.refresh_token.encode()),
                access_expires_at=record.access_expires_at,
                refresh_expires_at=record.refresh_expires_at,
                refreshed_at=record.refreshed_at,
                connected_at=record.connected_at,
                scope=record.scope,
            )
        return replace(record, generation=generation)

    def reencrypt(self) -> int:
        """Encrypt every stored token with the key ring's first key (after a rotation)."""
        n = 0
        with self.store.transaction() as tx:
            for stored in tx.tokens.all():
                try:
                    access = self._fernet.rotate(stored.access_token)
                    refresh = self._fernet.rotate(stored.refresh_token)
                except InvalidToken:
                    raise self._undecryptable(stored.connector_id) from None
                tx.tokens.replace_blobs(stored.connector_id, access, refresh)
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
