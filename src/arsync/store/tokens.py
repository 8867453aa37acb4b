"""Tokens at rest: the encrypted access and refresh tokens of each connector, and their times.

The blobs are encrypted before they reach this repository (connectors/oauth/vault.py): the
store never sees a token in clear text.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, insert, select, update

from arsync.store.models import StoredTokens, TokenTimes
from arsync.store.schema import tokens

if TYPE_CHECKING:
    from arsync.store.unit import Tx


class TokensRepo:
    def __init__(self, tx: Tx) -> None:
        self._tx = tx
        self._conn: Connection = tx.conn

    def load(self, connector_id: int) -> StoredTokens | None:
        row = self._conn.execute(
            select(tokens).where(tokens.c.connector_id == connector_id)
        ).first()
        if row is None:
            return None
        return StoredTokens(
            connector_id=row.connector_id,
            access_token=bytes(row.access_token),
            refresh_token=bytes(row.refresh_token),
            access_expires_at=row.access_expires_at,
            refresh_expires_at=row.refresh_expires_at,
            refreshed_at=row.refreshed_at,
            connected_at=row.connected_at,
            scope=row.scope,
            generation=row.generation,
        )

    def all(self) -> list[StoredTokens]:
        ids = self._conn.execute(select(tokens.c.connector_id)).scalars().all()
        return [t for t in map(self.load, ids) if t is not None]

    def times(self) -> dict[int, TokenTimes]:
        """Every connector's token times by connector id, in one query and without the blobs."""
        t = tokens.c
        rows = self._conn.execute(
            select(
                t.connector_id,
                t.access_expires_at,
                t.refresh_expires_at,
                t.refreshed_at,
                t.connected_at,
            )
        )
        return {
            row.connector_id: TokenTimes(
                connector_id=row.connector_id,
                access_expires_at=row.access_expires_at,
                refresh_expires_at=row.refresh_expires_at,
                refreshed_at=row.refreshed_at,
                connected_at=row.connected_at,
            )
            for row in rows
        }

    def save(
        self,
        connector_id: int,
        *,
        access_token: bytes,
        refresh_token: bytes,
        access_expires_at: datetime,
        refresh_expires_at: datetime | None,
        refreshed_at: datetime,
        connected_at: datetime,
        scope: str | None,
    ) -> int:
        """Store a connector's tokens; returns the row's new generation (bumped by every save,
        so a reader can tell someone else saved meanwhile)."""
        values = {
            "access_token": access_token,
            "refresh_token": refresh_token,
            "access_expires_at": access_expires_at,
            "refresh_expires_at": refresh_expires_at,
            "refreshed_at": refreshed_at,
            "connected_at": connected_at,
            "scope": scope,
        }
        generation = self._conn.execute(
            update(tokens)
            .where(tokens.c.connector_id == connector_id)
            .values(**values, generation=tokens.c.generation + 1)
            .returning(tokens.c.generation)
        ).scalar()
        if generation is None:
            generation = 1
            self._conn.execute(
                insert(tokens).values(connector_id=connector_id, generation=generation, **values)
            )
        return int(generation)

    def replace_blobs(self, connector_id: int, access_token: bytes, refresh_token: bytes) -> None:
        """The same tokens encrypted anew (a key rotation); the generation does not move."""
        self._conn.execute(
            update(tokens)
            .where(tokens.c.connector_id == connector_id)
            .values(access_token=access_token, refresh_token=refresh_token)
        )
