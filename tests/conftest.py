"""Shared fixtures: a sandbox on a frozen clock, served over real loopback HTTP."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from arsync.sandbox import Sandbox, SandboxServer
from tests.support import make_sandbox


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """A test that configures logging (onto its captured stderr) leaves no trace in the next."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def sandbox_factory() -> Callable[..., Sandbox]:
    """`sandbox_factory(invoices=50, latency=0.2)`: a test sandbox with other settings."""
    return make_sandbox


@pytest.fixture
def sandbox() -> Sandbox:
    return make_sandbox()


@pytest.fixture
def server(sandbox: Sandbox) -> Iterator[SandboxServer]:
    with SandboxServer(sandbox) as running:
        yield running


#: The PostgreSQL every store test also runs on (trust auth on this machine and in CI).
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL schema of its own, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as err:  # pragma: no cover - the machine promises PostgreSQL
        admin.dispose()
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {err}")
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'arsync.db'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
def db_engine(db_url: str) -> Iterator[Engine]:
    """An engine on `db_url` with every table created (no migrations: see the store's tests)."""
    from arsync.store.schema import metadata

    engine = create_engine(db_url)
    metadata.create_all(engine)
    try:
        yield engine
    finally:
        engine.dispose()
